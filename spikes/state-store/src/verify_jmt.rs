//! A standalone verifier of `jmt` 0.12 `SparseMerkleProof`s (borsh-encoded), over `sha2` only:
//! what a client SDK would carry instead of linking `jmt` (or commonware). Cross-checked against
//! `jmt`'s own verifier in the benchmark (including a tampered proof and a proof of absence).

use sha2::{Digest as _, Sha256};

const LEAF: &[u8] = b"JMT::LeafNode";
const INTERNAL: &[u8] = b"JMT::IntrnalNode";
const PLACEHOLDER: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut s = Sha256::new();
    for p in parts {
        s.update(p);
    }
    s.finalize().into()
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (x, rest) = b.split_at(n);
    *b = rest;
    Some(x)
}

fn arr(b: &mut &[u8]) -> Option<[u8; 32]> {
    take(b, 32).map(|x| x.try_into().unwrap())
}

/// `value = Some(v)`: proves `key -> v`; `None`: proves `key` is absent. `key` is the 32-byte
/// key hash, `root` the state root from a (certified) block header.
pub fn verify(proof: &[u8], root: &[u8; 32], key: &[u8; 32], value: Option<&[u8]>) -> bool {
    let mut b = proof;
    // leaf: Option<(key_hash, value_hash)>
    let leaf = match take(&mut b, 1) {
        Some([0]) => None,
        Some([1]) => match (arr(&mut b), arr(&mut b)) {
            (Some(k), Some(v)) => Some((k, v)),
            _ => return false,
        },
        _ => return false,
    };
    // siblings: Vec<SparseMerkleNode>, bottom-up; each hashed according to its tag.
    let Some(n) = take(&mut b, 4).map(|x| u32::from_le_bytes(x.try_into().unwrap()) as usize) else {
        return false;
    };
    if n > 256 {
        return false;
    }
    let mut siblings = Vec::with_capacity(n);
    for _ in 0..n {
        let d = match take(&mut b, 1) {
            Some([0]) => PLACEHOLDER,
            Some([1]) => match (arr(&mut b), arr(&mut b)) {
                (Some(l), Some(r)) => h(&[INTERNAL, &l, &r]),
                _ => return false,
            },
            Some([2]) => match (arr(&mut b), arr(&mut b)) {
                (Some(k), Some(v)) => h(&[LEAF, &k, &v]),
                _ => return false,
            },
            _ => return false,
        };
        siblings.push(d);
    }
    if !b.is_empty() {
        return false;
    }
    let bit = |i: usize| (key[i / 8] >> (7 - i % 8)) & 1 == 1; // MSB-first
    match (value, &leaf) {
        (Some(v), Some((k, vh))) => {
            if k != key || *vh != h(&[v]) {
                return false;
            }
        }
        (Some(_), None) => return false,
        (None, Some((k, _))) => {
            // Another key's leaf sits where `key` would be: it must share the path so far.
            if k == key || (0..n).any(|i| bit(i) != ((k[i / 8] >> (7 - i % 8)) & 1 == 1)) {
                return false;
            }
        }
        (None, None) => {}
    }
    let mut acc = leaf.map_or(PLACEHOLDER, |(k, v)| h(&[LEAF, &k, &v]));
    for (depth, s) in (0..n).rev().zip(siblings.iter()) {
        acc = if bit(depth) { h(&[INTERNAL, s, &acc]) } else { h(&[INTERNAL, &acc, s]) };
    }
    &acc == root
}
