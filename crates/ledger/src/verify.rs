//! Offline chain verification: replay every block from genesis and recompute everything.

use crate::{GenesisState, State, execute};
use ehrchain_types::{Block, Hash};

/// The first thing wrong with a chain.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("block {height}: {reason}")]
    BadBlock { height: u64, reason: String },
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    pub blocks: u64,
    pub transactions: u64,
    pub tip: Hash,
    pub state_root: Hash,
}

/// Verifies a chain given as `(height, stored id, block)` in height order from genesis:
/// the stored id must equal the recomputed header hash, each block must link to its parent,
/// and re-executing it must reproduce its transaction, receipts and state roots.
pub fn verify_chain(
    genesis: &GenesisState,
    blocks: impl IntoIterator<Item = Result<(u64, Hash, Block), ChainError>>,
) -> Result<ChainSummary, ChainError> {
    verify_chain_state(genesis, blocks).map(|(summary, _)| summary)
}

/// [`verify_chain`], returning the replayed state after the last block too (held in memory
/// whole), for comparing with a node's stored state.
pub fn verify_chain_state(
    genesis: &GenesisState,
    blocks: impl IntoIterator<Item = Result<(u64, Hash, Block), ChainError>>,
) -> Result<(ChainSummary, State), ChainError> {
    let (gblock, mut state) = execute::genesis(genesis);
    let mut parent = gblock.header;
    let mut summary = ChainSummary {
        blocks: 0,
        transactions: 0,
        tip: parent.id(),
        state_root: state.root(),
    };
    let bad = |height: u64, reason: String| ChainError::BadBlock { height, reason };
    for item in blocks {
        let (height, stored_id, block) = item?;
        if block.header.height != height {
            return Err(bad(
                height,
                format!("stored at height {height} but says {}", block.header.height),
            ));
        }
        if block.id() != stored_id {
            return Err(bad(
                height,
                format!("header hashes to {}, stored id is {stored_id}", block.id()),
            ));
        }
        if height == 0 {
            if block.header != parent {
                return Err(bad(
                    0,
                    "genesis block does not match the genesis file".into(),
                ));
            }
            summary.blocks = 1;
            continue;
        }
        let (post, _) = execute::verify_block(&parent, &state, &block)
            .map_err(|e| bad(height, e.to_string()))?;
        state = post;
        summary.blocks += 1;
        summary.transactions += block.txs.len() as u64;
        parent = block.header;
    }
    summary.tip = parent.id();
    summary.state_root = state.root();
    Ok((summary, state))
}
