//! The ehrchain client SDK: everything a client does that encrypts, decrypts or decides what
//! to sign, over any node's public API.
//!
//! Only clients see plaintext. A [`Session`] holds one account's unlocked key and talks to a
//! [`Node`]; the node receives signed transactions, signed requests, ciphertext and sealed
//! keys, never content, symptoms or keys in the clear. The CLI, the web portal and any other
//! app are thin layers over these modules:
//!
//! - [`records`]: encrypt and upload, anchor, list with titles, the audited read, review;
//! - [`consent`]: grants, revocations, key rotation, access requests, planned by pure
//!   functions over one fetched snapshot;
//! - [`clinical`]: symptom reports, prescriptions, workflow items;
//! - [`emergency`]: guardians, break-glass requests, shares checked and combined here;
//! - [`audit`]: the audit trail, audit proofs and their offline check;
//! - [`qr`], [`schemas`] (the plaintext content formats), [`predict`] (local decision
//!   support).
//!
//! This crate links no HTTP server, storage engine or consensus engine.
#![forbid(unsafe_code)]

pub mod audit;
pub mod bench;
pub mod clinical;
pub mod consent;
pub mod emergency;
mod error;
pub mod predict;
pub mod qr;
pub mod records;
pub mod schemas;
pub mod session;
pub mod transport;

pub(crate) use error::invalid;
pub use error::{Error, Result};
pub use session::Session;
pub use transport::Node;

pub use ehrchain_api as api;
pub use ehrchain_crypto::{self as crypto, Keypair, Keystore};
