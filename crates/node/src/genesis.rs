//! The genesis file: the chain id, the initial accounts and the validator set.

use ehrchain_ledger::GenesisState;
use ehrchain_types::{Block, PublicKey};
use serde::{Deserialize, Serialize};
use std::{net::SocketAddr, path::Path};

/// One validator of the consortium.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisValidator {
    /// A human name (e.g. the institution).
    pub name: String,
    /// Consensus (ed25519) public key.
    pub public_key: PublicKey,
    /// Where the validator accepts peer connections.
    pub p2p_address: SocketAddr,
}

/// The genesis file (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisFile {
    #[serde(flatten)]
    pub ledger: GenesisState,
    pub validators: Vec<GenesisValidator>,
}

impl GenesisFile {
    pub fn load(path: &Path) -> anyhow::Result<GenesisFile> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read genesis file {}: {e}", path.display()))?;
        let g: GenesisFile = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("genesis file {} is malformed: {e}", path.display()))?;
        g.validate()?;
        Ok(g)
    }

    /// Checks the rules a genesis must follow, naming the broken one.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.ledger.chain_id.is_empty(),
            "genesis: chain_id is empty"
        );
        anyhow::ensure!(!self.validators.is_empty(), "genesis: no validators");
        let mut keys: Vec<_> = self.validators.iter().map(|v| v.public_key).collect();
        keys.sort();
        keys.dedup();
        anyhow::ensure!(
            keys.len() == self.validators.len(),
            "genesis: duplicate validator keys"
        );
        let mut accounts: Vec<_> = self.ledger.accounts.iter().map(|a| a.public_key).collect();
        accounts.sort();
        accounts.dedup();
        anyhow::ensure!(
            accounts.len() == self.ledger.accounts.len(),
            "genesis: an account is listed twice"
        );
        Ok(())
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        crate::config::write_atomic(path, &json)
    }

    /// The genesis block.
    pub fn block(&self) -> Block {
        ehrchain_ledger::genesis(&self.ledger).0
    }
}
