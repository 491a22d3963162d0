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
    /// Nothing was applied except consuming the nonce; `reason` names the rule (encoded as a
    /// code with typed fields, never as a sentence; the JSON form shows both).
    Rejected {
        #[serde(flatten)]
        reason: crate::Refusal,
    },
}

/// The receipt of a transaction in a block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_id: Hash,
    pub outcome: TxOutcome,
}

/// RFC 6962 Merkle tree hash over a list of leaves (the empty tree hashes to SHA-256 of "").
///
/// Computed straight from the RFC's definition: each leaf hashed once, each inner node once
/// (2n - 1 hashes), where appending to an incremental tree rehashes the path to the root on
/// every push. Inclusion proofs against these roots come from `ct_merkle`, which a test holds
/// to the same roots.
pub fn merkle_root<L: AsRef<[u8]>>(leaves: impl IntoIterator<Item = L>) -> Hash {
    use sha2::{Digest, Sha256};
    let hashes: Vec<[u8; 32]> = leaves
        .into_iter()
        .map(|leaf| {
            Sha256::new_with_prefix([0u8])
                .chain_update(leaf)
                .finalize()
                .into()
        })
        .collect();
    /// MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of two
    /// below n.
    fn mth(hashes: &[[u8; 32]]) -> [u8; 32] {
        match hashes.len() {
            0 => Sha256::digest([]).into(),
            1 => hashes[0],
            n => {
                let k = 1 << (n - 1).ilog2();
                Sha256::new_with_prefix([1u8])
                    .chain_update(mth(&hashes[..k]))
                    .chain_update(mth(&hashes[k..]))
                    .finalize()
                    .into()
            }
        }
    }
    Hash(mth(&hashes))
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
