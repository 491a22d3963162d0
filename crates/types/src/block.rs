//! Blocks, their headers and transaction receipts.

use crate::{
    Hash, PublicKey, SignedTransaction,
    domain::{self, tagged_hash},
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// A block header. Its hash is the block id; it commits to the transactions (Merkle root),
/// the outcome of each (receipts root) and the state after executing them (state root).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct BlockHeader {
    /// 0 for genesis, parent height + 1 after.
    pub height: u64,
    /// Id of the parent block ([`Hash::ZERO`] for genesis).
    pub parent: Hash,
    /// Milliseconds since the Unix epoch, set by the proposer; strictly increasing.
    pub timestamp_ms: u64,
    /// The consensus view in which the block was proposed (0 for genesis).
    pub view: u64,
    /// The proposing validator's consensus key (all zero for genesis).
    pub proposer: PublicKey,
    /// Number of transactions in the block.
    pub tx_count: u32,
    /// RFC 6962 Merkle root over the block's encoded signed transactions.
    pub tx_root: Hash,
    /// RFC 6962 Merkle root over the encoded receipts, in transaction order.
    pub receipts_root: Hash,
    /// Root of the ledger state after executing this block.
    pub state_root: Hash,
    /// RFC 6962 Merkle root over the audit events the block's transactions produced.
    pub audit_root: Hash,
}

impl BlockHeader {
    /// The block id.
    pub fn id(&self) -> Hash {
        tagged_hash(domain::BLOCK_ID, &[&crate::encode(self)])
    }
}

/// A block: header plus transactions.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTransaction>,
}

impl Block {
    /// The block id (the hash of the header).
    pub fn id(&self) -> Hash {
        self.header.id()
    }
}

/// What happened to one transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxOutcome {
    /// Every effect of the transaction was applied.
    Applied,
    /// Nothing was applied except consuming the nonce; `reason` says why.
    Rejected { reason: String },
}

/// The receipt of a transaction in a block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_id: Hash,
    pub outcome: TxOutcome,
}

/// RFC 6962 Merkle tree hash over a list of leaves (the empty tree hashes to SHA-256 of "").
pub fn merkle_root<L: AsRef<[u8]>>(leaves: impl IntoIterator<Item = L>) -> Hash {
    let mut tree = ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, L>::new();
    for leaf in leaves {
        tree.push(leaf);
    }
    let root = tree.root();
    let mut out = [0u8; 32];
    out.copy_from_slice(root.as_bytes());
    Hash(out)
}

/// The Merkle root over a block's signed transactions (signatures included, so the block id
/// commits to every byte of the block).
pub fn tx_root(txs: &[SignedTransaction]) -> Hash {
    merkle_root(txs.iter().map(crate::encode))
}

/// The Merkle root over receipts.
pub fn receipts_root(receipts: &[Receipt]) -> Hash {
    merkle_root(receipts.iter().map(crate::encode))
}
