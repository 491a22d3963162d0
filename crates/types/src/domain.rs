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
/// Audit event id: hash of the event's leaf bytes.
pub const AUDIT_EVENT_ID: &[u8] = b"ehrchain/audit-event/v1";
/// Workflow item id (slot, prescription, invoice, claim…): hash of kind and creating tx.
pub const ITEM_ID: &[u8] = b"ehrchain/item-id/v1";
/// The escrow account of appointment fees (an id no key can sign for).
pub const ESCROW_ACCOUNT: &[u8] = b"ehrchain/escrow-account/v1";
/// Signed API requests (reads of lists and blobs).
pub const REQUEST: &[u8] = b"ehrchain/request/v2";
/// HPKE `info` when sealing a category key to a recipient.
pub const HPKE_CATEGORY_KEY: &[u8] = b"ehrchain/hpke/category-key/v1";
/// HPKE `info` when sealing a record's data key to a recipient.
pub const HPKE_DATA_KEY: &[u8] = b"ehrchain/hpke/data-key/v1";
/// HPKE `info` when sealing an access request's reason to the patient.
pub const HPKE_REASON: &[u8] = b"ehrchain/hpke/reason/v1";
/// Associated data of a data key wrapped under a category key.
pub const DATA_KEY_WRAP: &[u8] = b"ehrchain/data-key-wrap/v1";
/// Associated data of a record's encrypted metadata.
pub const RECORD_META: &[u8] = b"ehrchain/record-meta/v1";
/// Associated data of the chunks of a record's content stream.
pub const RECORD_CONTENT: &[u8] = b"ehrchain/record-content/v1";
/// HKDF info deriving the plaintext-commitment key from a data key.
pub const COMMITMENT_KEY: &[u8] = b"ehrchain/commitment-key/v1";
/// HKDF info deriving an account's X25519 key from its ed25519 seed.
pub const ENCRYPTION_KEY: &[u8] = b"ehrchain/x25519/v1";
/// HPKE `info` when a patient seals a guardian's share of their emergency key to it.
pub const HPKE_GUARDIAN_SHARE: &[u8] = b"ehrchain/hpke/guardian-share/v1";
/// HPKE `info` when a guardian re-seals its share to the doctor of an emergency request.
pub const HPKE_EMERGENCY_SHARE: &[u8] = b"ehrchain/hpke/emergency-share/v1";
/// HPKE `info` when a doctor seals an emergency request's note to the patient or a guardian.
pub const HPKE_EMERGENCY_NOTE: &[u8] = b"ehrchain/hpke/emergency-note/v1";
/// HKDF info deriving a patient's emergency X25519 key from the shared secret.
pub const EMERGENCY_KEY: &[u8] = b"ehrchain/emergency-key/v1";
/// Digest a guardian publishes of the share (and salt) it hands a doctor.
pub const SHARE_DIGEST: &[u8] = b"ehrchain/emergency-share-digest/v1";
/// Manifest of an erasure-coded blob: its content hash, size and stripe commitments.
pub const CODING_MANIFEST: &[u8] = b"ehrchain/coding-manifest/v1";
/// Digest of a genesis file's ledger part (JSON), which a node's store records it was made from.
pub const GENESIS_FILE: &[u8] = b"ehrchain/genesis-file/v1";
/// Patient QR code payload.
pub const QR: &[u8] = b"ehrchain/qr/v1";
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
