//! The wire contract of ehrchain: what a node's HTTP API takes and answers, and the files
//! clients exchange (audit proofs, the genesis file).
//!
//! Nodes serve these types and every client (the CLI, the portal, any app) reads them, so a
//! change here is a change of the public API. The ledger's values (accounts, records, grants,
//! items, audit events, receipts) are the canonical types of `ehrchain_types`; the views here
//! wrap them with what the node adds (an id, where on the ledger, why the caller may see it).
//! No tokio, no HTTP server, no storage: a client links this crate without the node.
#![forbid(unsafe_code)]

pub mod cid;
pub mod error;
pub mod genesis;
pub mod proof;
pub mod views;

pub use error::{ErrorBody, ErrorInfo};
pub use genesis::{GenesisFile, GenesisValidator};
pub use proof::{AuditProof, FinalityCheck, Verified};
pub use views::*;

/// The signed-request header and message (defined with the other signed structures in
/// `ehrchain_types`).
pub use ehrchain_types::request;

/// The path prefix of every endpoint.
pub const PREFIX: &str = "/api/v1";

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
