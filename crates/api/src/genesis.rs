//! The genesis file: the chain id, the initial accounts and the validator set. It is the
//! trust anchor of every offline check (audit proofs, chain verification).

use ehrchain_types::{PublicKey, entries::GenesisState};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

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

/// A genesis file that breaks a rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenesisError {
    #[error("genesis file is malformed: {0}")]
    Malformed(String),
    #[error("genesis: chain_id is empty")]
    NoChainId,
    #[error("genesis: no validators")]
    NoValidators,
    #[error("genesis: duplicate validator keys")]
    DuplicateValidator,
    #[error("genesis: an account is listed twice")]
    DuplicateAccount,
    #[error(
        "genesis: synthetic_records is {0}, above the benchmark limit of {MAX_SYNTHETIC_RECORDS}"
    )]
    TooManySynthetic(u64),
}

/// The most synthetic records a (benchmark) genesis may ask every node to build.
pub const MAX_SYNTHETIC_RECORDS: u64 = 20_000_000;

impl GenesisFile {
    /// Parses and checks a genesis file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<GenesisFile, GenesisError> {
        let g: GenesisFile =
            serde_json::from_slice(bytes).map_err(|e| GenesisError::Malformed(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// Checks the rules a genesis must follow, naming the broken one.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.ledger.chain_id.is_empty() {
            return Err(GenesisError::NoChainId);
        }
        if self.ledger.synthetic_records > MAX_SYNTHETIC_RECORDS {
            return Err(GenesisError::TooManySynthetic(
                self.ledger.synthetic_records,
            ));
        }
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        let mut keys: Vec<_> = self.validators.iter().map(|v| v.public_key).collect();
        keys.sort();
        keys.dedup();
        if keys.len() != self.validators.len() {
            return Err(GenesisError::DuplicateValidator);
        }
        let mut accounts: Vec<_> = self.ledger.accounts.iter().map(|a| a.public_key).collect();
        accounts.sort();
        accounts.dedup();
        if accounts.len() != self.ledger.accounts.len() {
            return Err(GenesisError::DuplicateAccount);
        }
        Ok(())
    }

    /// The validators' consensus keys, in genesis order.
    pub fn validator_keys(&self) -> Vec<PublicKey> {
        self.validators.iter().map(|v| v.public_key).collect()
    }
}
