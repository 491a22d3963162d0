//! The one place that instantiates Commonware `simplex` + `marshal` for ehrchain.
//!
//! The rest of the node sees only [`Ledger`]: build a block on a parent, verify a block
//! against its parent, apply a finalized block. Everything generic over the engine lives
//! here and is instantiated here (for the tokio runtime in [`tcp`], for the deterministic
//! runtime in this crate's tests), because those instantiations are expensive to compile.
//!
//! # Restart contract
//! Marshal delivers finalized blocks in height order, at least once: after a crash every
//! block above the last acknowledged height comes again. [`Ledger::finalized_many`] must
//! therefore be idempotent, and must have made the block durable before it returns `Ok`;
//! only then is the block acknowledged to marshal.

pub mod block;
pub mod certificate;
pub mod engine;
pub mod rpc;
pub mod sim;
pub mod tcp;

pub use block::{ChainBlock, digest_of, hash_of};
pub use engine::{Channels, EngineConfig, start_validator};

use ehrchain_types::{Block, PublicKey};

/// The application seen by the consensus engine. Implemented by the node over its ledger
/// state, mempool and storage; object-safe so the engine is instantiated once.
pub trait Ledger: Send + Sync + 'static {
    /// Builds a block on `parent` for `view`, proposed by `proposer` at `now_ms`. `None`
    /// skips the slot (e.g. the parent's state is unknown).
    fn propose(&self, parent: &Block, view: u64, proposer: PublicKey, now_ms: u64)
    -> Option<Block>;

    /// Whether `block` is a valid child of `parent`, judged at `now_ms` by the engine's clock.
    /// The engine asks only once [`Ledger::has_state`] holds for `parent` (it replays unknown
    /// ancestors first). [`Verdict::Invalid`] is final: the engine never asks again about this
    /// block in this view, so answer it only for blocks that are invalid forever. A block that
    /// may become valid later gets [`Verdict::NotYet`], and the engine asks again then.
    fn verify(&self, parent: &Block, block: &Block, now_ms: u64) -> Verdict;

    /// Whether this node knows the state after block `id`: the last finalized block, or a
    /// block it proposed or verified since. Blocks certified without this node verifying them
    /// have no known state; the engine then replays them from an ancestor whose state is known
    /// (through [`Ledger::verify`]) before building on them.
    fn has_state(&self, id: &ehrchain_types::Hash) -> bool;

    /// The height of the last finalized block.
    fn finalized_height(&self) -> u64;

    /// Whether there are transactions waiting to be proposed. With none, a leader waits up to
    /// the idle block interval before proposing an empty block.
    fn has_pending(&self) -> bool;

    /// Transactions this node admitted from its own clients since the last call, encoded for
    /// gossip to the other validators (empty when there are none). Each transaction is handed
    /// out once.
    fn take_gossip(&self) -> Vec<u8>;

    /// Admits transactions gossiped by another validator (bytes from [`Ledger::take_gossip`]
    /// of a peer; hostile until checked), at `now_ms` by the engine's clock. Invalid ones are
    /// dropped.
    fn receive_gossip(&self, bytes: &[u8], now_ms: u64);

    /// Applies consecutive finalized blocks durably and atomically: all of them or none.
    /// Blocks arrive in height order from 1 (genesis is written at start-up); a block at or
    /// below the applied height is a redelivery and must be ignored. Each comes with the
    /// engine's encoded finality certificate. The engine hands over every block that is
    /// waiting when the ledger is behind, so one durable write carries several blocks.
    fn finalized_many(&self, blocks: &[(&Block, Option<Vec<u8>>)]) -> Result<(), String>;

    /// [`Ledger::finalized_many`] for one block.
    fn finalized(&self, block: &Block, finalization: Option<Vec<u8>>) -> Result<(), String> {
        self.finalized_many(&[(block, finalization)])
    }
}

/// The answer of [`Ledger::verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A valid child of its parent.
    Valid,
    /// Invalid forever: the engine does not vote for it and never asks again.
    Invalid,
    /// Cannot be judged before the engine's clock reads `at_ms` (e.g. the block's timestamp is
    /// further ahead of this node's clock than the tolerated drift). The engine waits until then,
    /// or until the view ends without it, and asks again. How far ahead `at_ms` may lie is
    /// the ledger's rule, and it must have a bound: past it the answer is [`Verdict::Invalid`].
    NotYet { at_ms: u64 },
}
