//! Domain-separation tags. Each signed or hashed structure has its own tag, so bytes signed
//! for one purpose are never valid for another.

/// Signature over a transaction.
pub const TX_SIGNATURE: &[u8] = b"ehrchain/tx/v1";
/// Transaction id: hash of the unsigned transaction.
pub const TX_ID: &[u8] = b"ehrchain/txid/v1";
/// Block id: hash of the block header.
pub const BLOCK_ID: &[u8] = b"ehrchain/block/v1";
/// Account id: hash of an ed25519 public key.
pub const ACCOUNT_ID: &[u8] = b"ehrchain/account/v1";
/// State root: hash of the canonical ledger state.
pub const STATE_ROOT: &[u8] = b"ehrchain/state/v1";
/// Consensus votes and certificates (namespace given to the engine).
pub const CONSENSUS: &[u8] = b"ehrchain/consensus/v1";
/// Peer-to-peer handshakes between validators.
pub const P2P: &[u8] = b"ehrchain/p2p/v1";

/// Returns SHA-256 over `tag || parts...`.
pub fn tagged_hash(tag: &[u8], parts: &[&[u8]]) -> crate::Hash {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((tag.len() as u32).to_be_bytes());
    h.update(tag);
    for p in parts {
        h.update(p);
    }
    crate::Hash(h.finalize().into())
}
