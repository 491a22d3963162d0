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
/// and each block's finality certificate against the genesis validators.
pub fn verify_data_dir(db: &Path, genesis: &GenesisFile) -> anyhow::Result<VerifySummary> {
    let store = ChainStore::open(db)?;
    let ids: BTreeMap<u64, Hash> = store.indexed_ids()?.into_iter().collect();
    let mut blocks = Vec::new();
    for (height, bytes) in store.raw_blocks()? {
        blocks.push(Ok(BlockSource {
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
        }));
    }
    verify_blocks(genesis, blocks)
}

/// Verifies a chain from the genesis given its blocks in height order (from a data dir, or
/// fetched by a consortium member from a node's API). A source error stops the run there.
pub fn verify_blocks(
    genesis: &GenesisFile,
    blocks: impl IntoIterator<Item = anyhow::Result<BlockSource>>,
) -> anyhow::Result<VerifySummary> {
    let validators: Vec<[u8; 32]> = genesis.validators.iter().map(|v| v.public_key.0).collect();
    let mut certificates = 0u64;
    let mut items = Vec::new();
    let bad = |height: u64, reason: String| ChainError::BadBlock { height, reason };
    for (expected, source) in (0u64..).zip(blocks) {
        let source = source?;
        let height = source.height;
        let item = (|| {
            if height != expected {
                return Err(bad(expected, "missing from the store".into()));
            }
            let block: Block =
                ehrchain_types::decode(&source.bytes, ehrchain_types::MAX_BLOCK_BYTES)
                    .map_err(|e| bad(height, format!("stored bytes do not decode: {e}")))?;
            let id = source.indexed_id.unwrap_or_else(|| block.id());
            if height > 0 {
                let cert = source
                    .certificate
                    .as_ref()
                    .ok_or_else(|| bad(height, "no finality certificate stored".into()))?;
                ehrchain_consensus::certificate::verify_finalization(
                    &validators,
                    cert,
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
