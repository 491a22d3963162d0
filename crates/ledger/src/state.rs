//! The ledger state: accounts with role, approval, balance and nonce.

use borsh::{BorshDeserialize, BorshSerialize};
use ehrchain_types::{AccountId, Hash, PublicKey, Role, domain};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
        }
    }
}

/// An account present at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    pub public_key: PublicKey,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub balance: u64,
}

/// The ledger part of a genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisState {
    pub chain_id: String,
    /// Genesis time in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub accounts: Vec<GenesisAccount>,
}

/// The whole ledger state. Ordered maps only, so the encoding (and root) is canonical.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct State {
    pub chain_id: String,
    pub accounts: BTreeMap<AccountId, Account>,
}

impl State {
    /// Builds the genesis state. Genesis accounts with a role are active at once.
    pub fn genesis(g: &GenesisState) -> State {
        let mut accounts = BTreeMap::new();
        for a in &g.accounts {
            let id = AccountId::from_public_key(&a.public_key);
            let acct = Account {
                public_key: Some(a.public_key),
                role: a.role,
                status: if a.role.is_some() {
                    AccountStatus::Active
                } else {
                    AccountStatus::Unregistered
                },
                balance: a.balance,
                ..Account::default()
            };
            let prev = accounts.insert(id, acct);
            assert!(prev.is_none(), "genesis lists account {id} twice");
        }
        State {
            chain_id: g.chain_id.clone(),
            accounts,
        }
    }

    /// The state root: a tagged SHA-256 over the canonical encoding of the whole state.
    ///
    /// This is O(state) per block, which is fine at consortium scale (it hashes ~1 MB for
    /// 10,000 accounts); a Merkleised state with proofs can replace it behind this function.
    pub fn root(&self) -> Hash {
        domain::tagged_hash(domain::STATE_ROOT, &[&ehrchain_types::encode(self)])
    }

    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// Sum of all balances: constant, because only genesis mints.
    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| a.balance as u128).sum()
    }
}
