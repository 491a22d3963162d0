//! Fuzzes block decoding (`decode::<Block>` with `MAX_BLOCK_BYTES`, and the consensus
//! engine's `ChainBlock` codec that wraps it on the wire) and block id computation.
#![no_main]

use commonware_codec::{Encode as _, Read as _};
use commonware_cryptography::Digestible as _;
use ehrchain_consensus::{ChainBlock, digest_of};
use ehrchain_types::{Block, MAX_BLOCK_BYTES, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: ehrchain_fuzz::write_seeds("block_decode"), |data: &[u8]| {
    let block = decode::<Block>(data, MAX_BLOCK_BYTES).ok();
    if let Some(block) = &block {
        assert_eq!(encode(block), data, "a non-canonical encoding decodes");
        assert_eq!(block.id(), block.header.id());
    }
    // The engine's codec: the same bytes behind a length prefix. It must accept exactly
    // what the ledger codec accepts, with the block id as its digest.
    let framed = bytes::Bytes::copy_from_slice(data).encode();
    match ChainBlock::read_cfg(&mut framed.clone(), &()) {
        Ok(cb) => {
            let block = block.expect("the engine accepts a block the ledger codec refuses");
            assert_eq!(*cb.block, block);
            assert_eq!(cb.digest(), digest_of(&block.id()));
            assert_eq!(cb.encode().as_ref(), framed.as_ref());
        }
        Err(_) => assert!(block.is_none(), "the engine refuses a valid block"),
    }
});
