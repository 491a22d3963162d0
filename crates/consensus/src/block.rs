//! The engine's view of an ehrchain block: canonical bytes plus a cached digest.

use bytes::{Buf as _, BufMut};
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, Write};
use commonware_consensus::{Heightable, types::Height};
use commonware_cryptography::{Digestible, sha256::Digest};
use ehrchain_types::{Block, Hash, MAX_BLOCK_BYTES};
use std::sync::Arc;

/// Converts a ledger hash into the engine's digest type.
pub fn digest_of(h: &Hash) -> Digest {
    Digest::from(h.0)
}

/// Converts an engine digest into a ledger hash.
pub fn hash_of(d: &Digest) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Hash(out)
}

/// A block as carried by consensus. The digest is the ledger block id (the header hash,
/// which commits to every transaction byte through the transaction root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBlock {
    pub block: Arc<Block>,
    bytes: bytes::Bytes,
    digest: Digest,
}

impl ChainBlock {
    pub fn new(block: Block) -> ChainBlock {
        let bytes = bytes::Bytes::from(ehrchain_types::encode(&block));
        let digest = digest_of(&block.id());
        ChainBlock {
            block: Arc::new(block),
            bytes,
            digest,
        }
    }
}

impl Write for ChainBlock {
    fn write(&self, buf: &mut impl BufMut) {
        self.bytes.write(buf);
    }
}

impl EncodeSize for ChainBlock {
    fn encode_size(&self) -> usize {
        self.bytes.encode_size()
    }
}

impl Read for ChainBlock {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let bytes = bytes::Bytes::read_cfg(buf, &RangeCfg::from(..=MAX_BLOCK_BYTES))?;
        let block: Block = ehrchain_types::decode(bytes.chunk(), MAX_BLOCK_BYTES)
            .map_err(|_| CodecError::Invalid("ehrchain::Block", "malformed block encoding"))?;
        // Canonical: re-encoding must give the same bytes, or two encodings could share a digest.
        if ehrchain_types::encode(&block).as_slice() != bytes.chunk() {
            return Err(CodecError::Invalid(
                "ehrchain::Block",
                "non-canonical encoding",
            ));
        }
        let digest = digest_of(&block.id());
        Ok(ChainBlock {
            block: Arc::new(block),
            bytes,
            digest,
        })
    }
}

impl Digestible for ChainBlock {
    type Digest = Digest;
    fn digest(&self) -> Digest {
        self.digest
    }
}

impl Heightable for ChainBlock {
    fn height(&self) -> Height {
        Height::new(self.block.header.height)
    }
}

impl commonware_consensus::Block for ChainBlock {
    fn parent(&self) -> Digest {
        digest_of(&self.block.header.parent)
    }
}
