//! The ledger node: durable storage, mempool, the consensus application, HTTP API, metrics.
//!
//! [`chain::Chain`] owns the committed state and implements the consensus engine's
//! [`ehrchain_consensus::Ledger`]; [`api`] serves it over HTTP; [`run`] starts a validator
//! from a [`config::NodeConfig`]; [`dev`] prepares the single-validator development chain.

pub mod api;
pub mod authz;
pub mod blobs;
pub mod chain;
pub mod clinical_api;
pub mod coding;
pub mod config;
pub mod dev;
pub mod follow;
pub mod genesis;
pub mod index;
pub mod limits;
pub mod mempool;
pub mod metrics;
pub mod placement;
pub mod proof;
pub mod records_api;
pub mod run;
pub mod store;
pub mod testnet;
pub mod verify;
pub mod visibility;

pub use chain::Chain;
pub use config::NodeConfig;
pub use genesis::GenesisFile;
