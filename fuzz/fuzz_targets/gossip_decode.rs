//! Fuzzes the validator-to-validator transaction gossip message (channel `CH_GOSSIP`):
//! `Chain::receive_gossip` decodes a `Vec<SignedTransaction>` of at most 8 MiB and checks all
//! their signatures in one batch.
#![no_main]

use ehrchain_types::{SignedTransaction, decode, encode, verify_signatures};
use libfuzzer_sys::fuzz_target;

/// `MAX_GOSSIP_BYTES` of crates/node/src/chain.rs.
const MAX_GOSSIP_BYTES: usize = 8 * 1024 * 1024;
/// `MAX_OUTBOX` of crates/node/src/chain.rs: how many of a message's transactions are admitted.
const MAX_OUTBOX: usize = 20_000;

fuzz_target!(init: ehrchain_fuzz::write_seeds("gossip_decode"), |data: &[u8]| {
    let Ok(batch) = decode::<Vec<SignedTransaction>>(data, MAX_GOSSIP_BYTES) else {
        return;
    };
    assert_eq!(encode(&batch), data, "a non-canonical encoding decodes");
    let batch: Vec<_> = batch.into_iter().take(MAX_OUTBOX).collect();
    let results = verify_signatures(&batch);
    assert_eq!(results.len(), batch.len());
    // A batch never changes a transaction's verdict (ADR 0005).
    for (stx, result) in batch.iter().zip(&results) {
        assert_eq!(&stx.verify_signature(), result);
    }
});
