//! The part of the state a node keeps on disk instead of in memory.
//!
//! A [`State`](crate::State) is an in-memory overlay of what changed since a snapshot of the
//! node's store, over that snapshot (a [`Cold`] view). Records, their two indexes and the
//! state tree's nodes grow with everything the chain has ever stored, so they live in the
//! store; accounts, keys, grants, requests and workflow items stay in memory. A node that
//! commits a block writes the overlay and starts the committed state over with an empty
//! overlay on a snapshot taken after the commit, so memory holds the changes of the blocks
//! not yet finalized, not the chain's history.
//!
//! Every view is a consistent snapshot of finalized data, and an overlay holds every change
//! made since its snapshot, so reads through a state are exactly the state's entries no
//! matter how far the store has moved on since. A state with no view (tests, offline
//! verification) holds everything in memory.

use ehrchain_types::{AccountId, Hash, RecordId};

use crate::state::Record;

/// A node's key in the state tree: version (big-endian), nibble count, path bytes.
pub type TreeNodeKey = [u8; 41];

/// A read-only snapshot of the stored part of the state. A read that fails (the disk is gone)
/// panics: a node that cannot read its state must not execute or vote on blocks.
pub trait Cold: Send + Sync + std::fmt::Debug {
    /// A stored record.
    fn record(&self, id: &RecordId) -> Option<Record>;
    /// The record whose ciphertext has this hash.
    fn record_with_content(&self, content: &Hash) -> Option<RecordId>;
    /// A patient's record ids after `after`, in order, at most `limit`.
    fn records_of(
        &self,
        patient: &AccountId,
        after: Option<RecordId>,
        limit: usize,
    ) -> Vec<RecordId>;
    /// A stored tree node, borsh-encoded.
    fn tree_node(&self, key: &TreeNodeKey) -> Option<Vec<u8>>;
}
