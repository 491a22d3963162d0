//! Signing keys and password-protected keystores.
//!
//! A keystore file holds one ed25519 signing key encrypted under a key derived from the
//! owner's passphrase with Argon2id; the cipher is XChaCha20-Poly1305 with the public key
//! and account bound as associated data, so a file whose header was swapped fails to open.

pub mod emergency;
pub mod envelope;
pub mod keys;
pub mod keystore;

pub use envelope::{CategoryKey, DataKey, EncryptionKeypair, EnvelopeError};
pub use keys::Keypair;
pub use keystore::{Keystore, KeystoreError, KeystoreFile};
