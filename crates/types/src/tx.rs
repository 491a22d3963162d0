//! Transactions: what an account asks the ledger to do, signed with its key.

use crate::{
    AccountId, Hash, PublicKey, Role, Signature,
    domain::{self, tagged_hash},
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Longest organisation name accepted.
pub const MAX_ORGANISATION_LEN: usize = 128;
/// Longest licence number accepted.
pub const MAX_LICENCE_LEN: usize = 64;

/// The body of a transaction: one operation of one contract. New variants are only ever
/// appended, so the encoding of existing ones never changes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxPayload {
    /// Register the signer's account in a role. Professional roles start pending.
    ///
    /// `licence` is a professional register number (public in the registers that issue it),
    /// so the approver can check it; no other personal detail goes on the ledger.
    Register {
        role: Role,
        organisation: Option<String>,
        licence: Option<String>,
    },
    /// The consortium admin approves a pending professional account.
    Approve { account: AccountId },
    /// Move tokens from the signer to another account.
    Transfer { to: AccountId, amount: u64 },
}

impl TxPayload {
    /// A short name of the operation, for receipts, metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TxPayload::Register { .. } => "register",
            TxPayload::Approve { .. } => "approve",
            TxPayload::Transfer { .. } => "transfer",
        }
    }
}

/// An unsigned transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Transaction {
    /// The chain this transaction is meant for; another chain refuses it.
    pub chain_id: String,
    /// The author's public key; the account is derived from it.
    pub signer: PublicKey,
    /// The author's next nonce: each account's transactions apply in nonce order, once.
    pub nonce: u64,
    pub payload: TxPayload,
}

impl Transaction {
    /// The bytes the author signs: the domain tag, then the canonical encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = domain::TX_SIGNATURE.to_vec();
        borsh::to_writer(&mut out, self).expect("encoding into a Vec cannot fail");
        out
    }

    /// The transaction id: a tagged hash of the unsigned transaction, so the same operation
    /// has the same id whatever the signature bytes.
    pub fn id(&self) -> Hash {
        tagged_hash(domain::TX_ID, &[&crate::encode(self)])
    }

    /// The author's account.
    pub fn sender(&self) -> AccountId {
        AccountId::from_public_key(&self.signer)
    }
}

/// A transaction with its author's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

/// Why a signature does not check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the signer field is not a valid ed25519 public key")]
    BadPublicKey,
    #[error("the signature does not match the transaction and signer")]
    Mismatch,
}

impl SignedTransaction {
    /// Checks the signature (strict ed25519: no malleable signatures, no small-order keys).
    pub fn verify_signature(&self) -> Result<(), SignatureError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.tx.signer.0)
            .map_err(|_| SignatureError::BadPublicKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&self.signature.0);
        key.verify_strict(&self.tx.signing_bytes(), &sig)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// The transaction id (see [`Transaction::id`]).
    pub fn id(&self) -> Hash {
        self.tx.id()
    }
}
