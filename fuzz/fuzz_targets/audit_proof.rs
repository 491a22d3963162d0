//! Fuzzes the offline check of audit proofs (`ehrchain audit verify`): a JSON proof file
//! parsed as `AuditProof` (`from_file_bytes`, and plain JSON) and `AuditProof::verify` against
//! a fixed genesis, down to the finality certificate's decoding and signatures.
#![no_main]

use ehrchain_node::proof::AuditProof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: ehrchain_fuzz::write_seeds("audit_proof"), |data: &[u8]| {
    let Ok(proof) = serde_json::from_slice::<AuditProof>(data) else {
        return;
    };
    let file = AuditProof::from_file_bytes(data);
    assert_eq!(file.is_ok(), proof.to_file_bytes() == data);
    let _ = proof.verify(ehrchain_fuzz::genesis(), &ehrchain_node::proof::EngineFinality);
});
