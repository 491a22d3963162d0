//! Content addresses of blobs: CIDv1, raw codec, sha2-256 of the ciphertext.

use cid::Cid;
use ehrchain_types::Hash;

/// Multicodec of raw bytes.
const RAW: u64 = 0x55;
/// Multihash code of sha2-256.
const SHA2_256: u64 = 0x12;

/// The CIDv1 (raw, sha2-256) text of a content hash, e.g. `bafkrei…`.
pub fn cid_string(content: &Hash) -> String {
    let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, &content.0)
        .expect("a 32-byte digest fits a 64-byte multihash");
    Cid::new_v1(RAW, mh).to_string()
}

/// Parses a CID and returns its sha2-256 digest; only CIDv1 raw sha2-256 is accepted.
pub fn parse_cid(s: &str) -> Result<Hash, String> {
    let cid = Cid::try_from(s.trim()).map_err(|e| format!("invalid CID {s:?}: {e}"))?;
    let mh = cid.hash();
    if cid.version() != cid::Version::V1 || cid.codec() != RAW || mh.code() != SHA2_256 {
        return Err(format!(
            "unsupported CID {s:?}: ehrchain stores CIDv1 with the raw codec and sha2-256"
        ));
    }
    let digest: [u8; 32] = mh
        .digest()
        .try_into()
        .map_err(|_| format!("CID {s:?} does not carry a 32-byte digest"))?;
    Ok(Hash(digest))
}
