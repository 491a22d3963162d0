//! The genesis file (its format is `ehrchain_api::genesis`): loading, saving, the genesis
//! block.

use ehrchain_types::Block;
use std::path::Path;

pub use ehrchain_api::genesis::{GenesisError, GenesisFile, GenesisValidator};

/// Reads and checks a genesis file.
pub fn load(path: &Path) -> anyhow::Result<GenesisFile> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read genesis file {}: {e}", path.display()))?;
    GenesisFile::from_json(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes a genesis file atomically.
pub fn save(genesis: &GenesisFile, path: &Path) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(genesis)?;
    crate::config::write_atomic(path, &json)
}

/// The genesis block.
pub fn block(genesis: &GenesisFile) -> Block {
    ehrchain_ledger::genesis(&genesis.ledger).0
}
