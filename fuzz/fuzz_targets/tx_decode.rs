//! Fuzzes transaction decoding (`POST transactions`, `decode::<SignedTransaction>` with
//! `MAX_TX_BYTES`): canonical re-encoding and the signature check of whatever decodes.
#![no_main]

use ehrchain_types::{MAX_TX_BYTES, SignedTransaction, decode, encode, verify_signatures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: ehrchain_fuzz::write_seeds("tx_decode"), |data: &[u8]| {
    let Ok(stx) = decode::<SignedTransaction>(data, MAX_TX_BYTES) else {
        return;
    };
    // Canonical: one transaction, one encoding (its hash and signature are over these bytes).
    assert_eq!(encode(&stx), data, "a non-canonical encoding decodes");
    let alone = stx.verify_signature();
    // One signature rule for one or many (ADR 0005): in a batch it gets the same result.
    assert!(verify_signatures([&stx, &stx]).iter().all(|r| *r == alone));
    stx.id();
});
