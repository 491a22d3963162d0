//! Offline verification of a node's data dir against a genesis file.

use crate::{GenesisFile, store::ChainStore};
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
}

/// Re-verifies every stored block from the genesis file: decoding, id, parent link, time,
/// transaction Merkle root, every signature, re-execution to the receipts and state roots,
/// and each block's finality certificate against the genesis validators.
pub fn verify_data_dir(db: &Path, genesis: &GenesisFile) -> anyhow::Result<VerifySummary> {
    let store = ChainStore::open(db)?;
    let ids: BTreeMap<u64, Hash> = store.indexed_ids()?.into_iter().collect();
    let validators: Vec<[u8; 32]> = genesis.validators.iter().map(|v| v.public_key.0).collect();
    let raw = store.raw_blocks()?;
    let mut certificates = 0u64;
    let mut items = Vec::with_capacity(raw.len());
    let bad = |height: u64, reason: String| ChainError::BadBlock { height, reason };
    for (expected, (height, bytes)) in (0u64..).zip(raw) {
        let item = (|| {
            if height != expected {
                return Err(bad(expected, "missing from the store".into()));
            }
            let block: Block = ehrchain_types::decode(&bytes, ehrchain_types::MAX_BLOCK_BYTES)
                .map_err(|e| bad(height, format!("stored bytes do not decode: {e}")))?;
            let id = *ids
                .get(&height)
                .ok_or_else(|| bad(height, "no entry in the block id index".into()))?;
            if height > 0 {
                let cert = store
                    .finalization(height)
                    .map_err(|e| bad(height, e.to_string()))?
                    .ok_or_else(|| bad(height, "no finality certificate stored".into()))?;
                ehrchain_consensus::certificate::verify_finalization(
                    &validators,
                    &cert,
                    &block.id(),
                )
                .map_err(|e| bad(height, e))?;
                certificates += 1;
            }
            Ok((height, id, block))
        })();
        let failed = item.is_err();
        items.push(item);
        if failed {
            break;
        }
    }
    let s = ehrchain_ledger::verify_chain(&genesis.ledger, items)?;
    Ok(VerifySummary {
        blocks: s.blocks,
        transactions: s.transactions,
        certificates,
        tip: s.tip,
        state_root: s.state_root,
    })
}
