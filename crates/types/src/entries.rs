//! The values the ledger stores under its keys: accounts, records, grants and access
//! requests. Public and canonical (borsh): state proofs prove them, clients decode them, and
//! the API shows them inside its views (`ehrchain-api`). The state machine that changes them
//! is `ehrchain-ledger`.

use crate::{
    AccountId, Category, EncryptionKey, Hash, HexBytes, KeyWrap, PublicKey, RecordId, RecordKey,
    RequestId, Role, SealedKey,
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Where an account stands with the identity contract.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Holds tokens or a key but has not registered a role.
    Unregistered,
    /// Registered in a professional role, waiting for the consortium admin.
    Pending,
    /// May act in its role.
    Active,
}

impl AccountStatus {
    pub fn name(self) -> &'static str {
        match self {
            AccountStatus::Unregistered => "unregistered",
            AccountStatus::Pending => "pending",
            AccountStatus::Active => "active",
        }
    }
}

/// One account. Holds no personal data: role, organisation name and a public licence number
/// at most.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Account {
    /// Known once the account has signed a transaction (or from genesis).
    pub public_key: Option<PublicKey>,
    pub role: Option<Role>,
    pub status: AccountStatus,
    pub organisation: Option<String>,
    pub licence: Option<String>,
    /// Who approved the account, and at which height.
    pub approved_by: Option<AccountId>,
    pub approved_at: Option<u64>,
    pub balance: u64,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
    /// The X25519 key others seal keys to (published when registering).
    pub encryption_key: Option<EncryptionKey>,
    /// The account's encrypted profile record (category demographics).
    pub profile: Option<RecordId>,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            public_key: None,
            role: None,
            status: AccountStatus::Unregistered,
            organisation: None,
            licence: None,
            approved_by: None,
            approved_at: None,
            balance: 0,
            nonce: 0,
            encryption_key: None,
            profile: None,
        }
    }
}

/// Where a record stands.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RecordStatus {
    /// Written by someone other than the patient; not in the chart until the patient approves.
    Pending,
    /// In the chart.
    Active,
    /// The patient rejected it; it never enters the chart.
    Rejected,
}

/// A record anchored on the ledger: where its ciphertext is and how its key is kept. No
/// plaintext: the title travels in `meta`, encrypted under the record's data key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Record {
    pub id: RecordId,
    pub patient: AccountId,
    pub author: AccountId,
    pub category: Category,
    /// SHA-256 of the ciphertext (CIDv1, raw codec, sha2-256).
    pub content: Hash,
    pub size: u64,
    pub commitment: Hash,
    pub meta: HexBytes,
    pub key: RecordKey,
    pub status: RecordStatus,
    pub created_ms: u64,
    pub height: u64,
    pub reviewed_ms: Option<u64>,
    /// The root of the content's erasure-coding manifest, when it was placed across the
    /// validators (`RecordDraft::coding`).
    #[serde(default)]
    pub coding: Option<Hash>,
}

/// Consent from a patient to a grantee.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Grant {
    pub categories: Vec<Category>,
    pub expires_ms: Option<u64>,
    pub write: bool,
    pub granted_ms: u64,
    /// The patient's category keys sealed to each recipient (every epoch).
    pub wraps: Vec<KeyWrap>,
}

impl Grant {
    /// Whether the grant allows reading `category` at `now_ms`.
    pub fn covers(&self, category: Category, now_ms: u64) -> bool {
        self.categories.contains(&category) && !self.expired(now_ms)
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| now_ms >= e)
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Open,
    Approved,
    Denied,
}

/// A professional's request for access, waiting in the patient's inbox.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: RequestId,
    pub requester: AccountId,
    pub patient: AccountId,
    pub categories: Vec<Category>,
    pub write: bool,
    /// The reason, sealed to the patient (HPKE).
    pub reason: SealedKey,
    pub status: RequestStatus,
    pub created_ms: u64,
    pub answered_ms: Option<u64>,
}

/// An account present at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    pub public_key: PublicKey,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub balance: u64,
    #[serde(default)]
    pub encryption_key: Option<EncryptionKey>,
}

/// The ledger part of a genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisState {
    pub chain_id: String,
    /// Genesis time in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub accounts: Vec<GenesisAccount>,
    /// Synthetic records the genesis state holds (`ehrchain_ledger::state::synthetic_record`):
    /// the bulk prefill of a benchmark, so a chain starts with millions of records without
    /// signing each one. Zero, and absent from the file, on every real chain.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub synthetic_records: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
