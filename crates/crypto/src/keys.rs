//! An account's ed25519 signing key.

use ed25519_dalek::{Signer, SigningKey};
use ehrchain_types::{AccountId, PublicKey, Signature, SignedTransaction, Transaction};

/// An ed25519 key pair. The secret half is zeroized on drop and never printed.
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.account())
    }
}

impl Keypair {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate() -> Keypair {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("the OS random source is available");
        Keypair(SigningKey::from_bytes(&seed))
    }

    /// Rebuilds a key from its 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        Keypair(SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed. Handle with care: callers must zeroize it.
    pub fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn account(&self) -> AccountId {
        AccountId::from_public_key(&self.public_key())
    }

    /// Signs a transaction over its domain-tagged canonical bytes.
    pub fn sign_tx(&self, tx: Transaction) -> SignedTransaction {
        assert_eq!(
            tx.signer,
            self.public_key(),
            "signing another account's transaction"
        );
        let signature = Signature(self.0.sign(&tx.signing_bytes()).to_bytes());
        SignedTransaction { tx, signature }
    }

    /// The account's HPKE key pair, derived from the same seed.
    pub fn encryption(&self) -> crate::EncryptionKeypair {
        crate::EncryptionKeypair::derive(&self.seed())
    }

    /// Signs arbitrary bytes that already start with their own domain tag.
    pub fn sign_tagged(&self, tag: &[u8], message: &[u8]) -> Signature {
        let mut bytes = tag.to_vec();
        bytes.extend_from_slice(message);
        Signature(self.0.sign(&bytes).to_bytes())
    }
}

impl Keypair {
    /// Signs an API request (see [`ehrchain_types::request`]).
    pub fn sign_request(
        &self,
        chain_id: &str,
        method: &str,
        path_and_query: &str,
        body: &ehrchain_types::Hash,
        timestamp_ms: u64,
    ) -> ehrchain_types::request::RequestAuth {
        let msg =
            ehrchain_types::request::message(chain_id, method, path_and_query, timestamp_ms, body);
        ehrchain_types::request::RequestAuth {
            key: self.public_key(),
            timestamp_ms,
            body: *body,
            signature: self.sign_tagged(ehrchain_types::domain::REQUEST, &msg),
        }
    }
}
