//! Offline verification of a node's data dir against a genesis file.

use crate::{
    GenesisFile,
    store::{ChainStore, StateCheck},
};
use ehrchain_ledger::ChainError;
use ehrchain_types::{Block, Hash};
use serde::Serialize;
use std::{collections::BTreeMap, path::Path};

/// What a successful verification covered.
#[derive(Debug, Serialize)]
pub struct VerifySummary {
    pub blocks: u64,
    pub transactions: u64,
    pub certificates: u64,
    pub tip: Hash,
    pub state_root: Hash,
    /// The data dir's stored state compared with the replay's (a data dir only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_state: Option<StateCheck>,
}

/// One block to verify: its height, canonical bytes, finality certificate (none for
/// genesis) and, when the source keeps one, the id its index claims.
#[derive(Debug)]
pub struct BlockSource {
    pub height: u64,
    pub bytes: Vec<u8>,
    pub certificate: Option<Vec<u8>>,
    pub indexed_id: Option<Hash>,
}

/// Re-verifies every stored block from the genesis file: decoding, id, parent link, time,
/// transaction Merkle root, every signature, re-execution to the receipts and state roots,
/// and each block's finality certificate against the genesis validators; then compares the
/// stored state (entries, record indexes, every tree node) with the replay's
/// ([`ChainStore::check_state`]). The replay holds the whole state in memory.
pub fn verify_data_dir(db: &Path, genesis: &GenesisFile) -> anyhow::Result<VerifySummary> {
    let store = ChainStore::open(db)?;
    let ids: BTreeMap<u64, Hash> = store.indexed_ids()?.into_iter().collect();
    // Read as the replay goes: one block in memory at a time.
    let blocks = store.raw_blocks()?.map(|item| {
        let (height, bytes) = item?;
        Ok(BlockSource {
            height,
            bytes,
            certificate: if height > 0 {
                store.finalization(height)?
            } else {
                None
            },
            indexed_id: Some(ids.get(&height).copied().ok_or_else(|| {
                anyhow::anyhow!("block {height}: no entry in the block id index")
            })?),
        })
    });
    let (mut summary, state) = replay_blocks(genesis, blocks)?;
    summary.stored_state = Some(store.check_state(&state)?);
    Ok(summary)
}

/// Verifies a chain from the genesis given its blocks in height order (from a data dir, or
/// fetched by a consortium member from a node's API). A source error stops the run there.
pub fn verify_blocks(
    genesis: &GenesisFile,
    blocks: impl IntoIterator<Item = anyhow::Result<BlockSource>>,
) -> anyhow::Result<VerifySummary> {
    replay_blocks(genesis, blocks).map(|(summary, _)| summary)
}

/// [`verify_blocks`], with the state the replay reached.
fn replay_blocks(
    genesis: &GenesisFile,
    blocks: impl IntoIterator<Item = anyhow::Result<BlockSource>>,
) -> anyhow::Result<(VerifySummary, ehrchain_ledger::State)> {
    let validators: Vec<[u8; 32]> = genesis.validators.iter().map(|v| v.public_key.0).collect();
    let certificates = std::cell::Cell::new(0u64);
    // The first error of the source (not of a block), which stops the replay there.
    let source_error = std::cell::Cell::new(None);
    let bad = |height: u64, reason: String| ChainError::BadBlock { height, reason };
    // Lazy: the replay pulls one block at a time and stops at the first error.
    let items = (0u64..).zip(blocks).map(|(expected, source)| {
        let source = source.map_err(|e| {
            source_error.set(Some(e));
            bad(expected, "the source failed".into())
        })?;
        let height = source.height;
        if height != expected {
            return Err(bad(expected, "missing from the store".into()));
        }
        let block: Block = ehrchain_types::decode(&source.bytes, ehrchain_types::MAX_BLOCK_BYTES)
            .map_err(|e| bad(height, format!("stored bytes do not decode: {e}")))?;
        let id = source.indexed_id.unwrap_or_else(|| block.id());
        if height > 0 {
            let cert = source
                .certificate
                .as_ref()
                .ok_or_else(|| bad(height, "no finality certificate stored".into()))?;
            ehrchain_consensus::certificate::verify_finalization(&validators, cert, &block.id())
                .map_err(|e| bad(height, e))?;
            certificates.set(certificates.get() + 1);
        }
        Ok((height, id, block))
    });
    let replayed = ehrchain_ledger::verify_chain_state(&genesis.ledger, items);
    if let Some(e) = source_error.take() {
        return Err(e);
    }
    let (s, state) = replayed?;
    let certificates = certificates.get();
    let summary = VerifySummary {
        blocks: s.blocks,
        transactions: s.transactions,
        certificates,
        tip: s.tip,
        state_root: s.state_root,
        stored_state: None,
    };
    Ok((summary, state))
}
