//! Fuzzes `AuditProof::verify` (the offline check of `ehrchain audit verify`) where JSON
//! mutation rarely reaches: the fuzzer edits the fields of a valid proof (its numbers, the
//! leaf, the Merkle path, the finality certificate, the validator list). Every edited proof
//! must fail cleanly, or still prove exactly the original event in the original block.
#![no_main]

use ehrchain_fuzz::{genesis, sample_proof};
use ehrchain_node::proof::Verified;
use libfuzzer_sys::{
    arbitrary::{self, Arbitrary},
    fuzz_target,
};
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
enum Edit {
    Height(u64),
    Index(u64),
    TreeSize(u64),
    HeaderHeight(u64),
    HeaderView(u64),
    Leaf(Patch),
    Path(Patch),
    Finalization(Patch),
    DropValidator(u8),
}

/// Changes hex-encoded bytes: flips bits of one byte, then truncates or extends.
#[derive(Arbitrary, Debug)]
struct Patch {
    at: u16,
    xor: u8,
    truncate: Option<u16>,
    append: Vec<u8>,
}

impl Patch {
    fn apply(&self, hex_bytes: &mut String) {
        let mut b = hex::decode(&*hex_bytes).expect("the sample is hex");
        if !b.is_empty() {
            let i = self.at as usize % b.len();
            b[i] ^= self.xor;
        }
        if let Some(n) = self.truncate {
            b.truncate(n as usize);
        }
        b.extend_from_slice(&self.append);
        *hex_bytes = hex::encode(b);
    }
}

fuzz_target!(|edits: Vec<Edit>| {
    let mut p = sample_proof().clone();
    for edit in &edits {
        match edit {
            Edit::Height(h) => p.height = *h,
            Edit::Index(i) => p.index = *i,
            Edit::TreeSize(n) => p.tree_size = *n,
            Edit::HeaderHeight(h) => p.header.height = *h,
            Edit::HeaderView(v) => p.header.view = *v,
            Edit::Leaf(patch) => patch.apply(&mut p.leaf),
            Edit::Path(patch) => patch.apply(&mut p.path),
            Edit::Finalization(patch) => patch.apply(&mut p.finalization),
            Edit::DropValidator(i) => {
                if !p.validators.is_empty() {
                    p.validators.remove(*i as usize % p.validators.len());
                }
            }
        }
    }
    if let Ok(v) = p.verify(genesis(), &ehrchain_node::proof::EngineFinality) {
        static ORIGINAL: OnceLock<Verified> = OnceLock::new();
        let original = ORIGINAL.get_or_init(|| sample_proof().verify(genesis(), &ehrchain_node::proof::EngineFinality).expect("valid"));
        assert_eq!(&v, original, "an edited proof proves something else");
    }
});
