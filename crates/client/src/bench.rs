//! Client-side cost probes for `ehrchain bench client`: the machine's ChaCha20-Poly1305
//! speed (the yardstick), the envelope's encryption speed, what padding costs, and what
//! sealing grant wraps costs. No node involved.

use crate::{Error, Result};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, aead::AeadInOut};
use ehrchain_crypto::{CategoryKey, DataKey, envelope};
use ehrchain_types::{AccountId, EncryptionKey, KeyWrap, RecordId};
use serde_json::json;
use std::time::Instant;

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n => v[n / 2],
    }
}

/// Milliseconds to seal a fresh category key for each of `wraps` to `recipient`: the
/// client's share of a grant's cost.
pub fn rewrap_ms(recipient: &EncryptionKey, patient: &AccountId, wraps: &[KeyWrap]) -> Result<f64> {
    let t = Instant::now();
    for w in wraps {
        let ck = CategoryKey::generate();
        envelope::seal_category_key(recipient, &ck, patient, w.category, w.epoch)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

pub fn mb_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

/// Single-core ChaCha20-Poly1305 (IETF, 12-byte nonce) over 64 KiB chunks: the yardstick.
pub fn chacha_baseline() -> f64 {
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buf = vec![1u8; 64 * 1024];
    let total = 128 * 1024 * 1024;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..total / buf.len() {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let _tag = cipher
                .encrypt_inout_detached(&nonce.into(), b"", buf.as_mut_slice().into())
                .expect("encrypt");
        }
        runs.push(mb_s(total, t.elapsed().as_secs_f64()));
    }
    median(&mut runs)
}

/// splitmix64 (Steele, Lea and Flood, OOPSLA 2014): a fixed, seeded stream of sizes, so two
/// runs of the benchmark report the same padding figures.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Mean and max of `extra(L) / L` in percent over `sizes`.
fn overhead_pct(sizes: &[u64], extra: impl Fn(u64) -> u64) -> (f64, f64) {
    let pcts: Vec<f64> = sizes
        .iter()
        .map(|&l| extra(l) as f64 / l as f64 * 100.0)
        .collect();
    let mean = pcts.iter().sum::<f64>() / pcts.len().max(1) as f64;
    (mean, pcts.iter().copied().fold(0.0, f64::max))
}

/// The ciphertext length of the previous, unpadded format: header, plaintext, one tag per
/// chunk. The yardstick for what padding adds.
fn unpadded_ciphertext_len(l: u64) -> u64 {
    envelope::HEADER as u64 + l + 16 * l.div_ceil(envelope::CHUNK as u64).max(1)
}

/// The padding overhead: from the bucket function over 1,000 log-uniform sizes, and measured
/// on real encryptions (streamed from a generator, so 100 MB needs no buffer).
pub fn padding_overhead() -> Result<serde_json::Value> {
    let mut state = 0x00e4_c4a1_u64;
    let (lo, hi) = (100f64.ln(), 100e6f64.ln());
    let sizes: Vec<u64> = (0..1000)
        .map(|_| {
            let u = (splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
            (lo + (hi - lo) * u).exp().round() as u64
        })
        .collect();
    let above_floor: Vec<u64> = sizes
        .iter()
        .copied()
        .filter(|&l| l >= envelope::PAD_FLOOR)
        .collect();
    let padding = |l: u64| envelope::padded_len(l) - l;
    let ciphertext = |l: u64| envelope::ciphertext_len(l) - l;
    let unpadded = |l: u64| unpadded_ciphertext_len(l) - l;
    let (pad_mean, pad_max) = overhead_pct(&sizes, padding);
    let (pad_floor_mean, pad_floor_max) = overhead_pct(&above_floor, padding);
    let (ct_mean, ct_max) = overhead_pct(&sizes, ciphertext);
    let (v1_mean, v1_max) = overhead_pct(&sizes, unpadded);
    let total: u64 = sizes.iter().sum();
    let stored: u64 = sizes.iter().map(|&l| envelope::ciphertext_len(l)).sum();
    let stored_v1: u64 = sizes.iter().map(|&l| unpadded_ciphertext_len(l)).sum();
    let mut lengths: Vec<u64> = sizes.iter().map(|&l| envelope::ciphertext_len(l)).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let mut measured = Vec::new();
    for l in [8u64, 57, 1_000, 100_000, 1_000_000, 10_000_000, 100_000_000] {
        let dk = DataKey::generate();
        let input = std::io::Read::take(std::io::repeat(0x5a), l);
        let t = Instant::now();
        let e = envelope::encrypt_stream(&dk, &RecordId([1; 16]), input, std::io::sink())?;
        let secs = t.elapsed().as_secs_f64();
        if e.size != envelope::ciphertext_len(l) {
            return Err(Error::Protocol(format!(
                "a {l}-byte record encrypted to {} bytes, not its bucket's {}",
                e.size,
                envelope::ciphertext_len(l)
            )));
        }
        measured.push(json!({
            "plaintext_bytes": l,
            "ciphertext_bytes": e.size,
            "padding_pct": padding(l) as f64 / l as f64 * 100.0,
            "ciphertext_overhead_pct": (e.size - l) as f64 / l as f64 * 100.0,
            "unpadded_overhead_pct": unpadded(l) as f64 / l as f64 * 100.0,
            // Throughput means little for a few bytes: only megabyte records report it.
            "mb_s": (l >= 1_000_000).then(|| mb_s(l as usize, secs)),
        }));
    }
    Ok(json!({
        "floor_bytes": envelope::PAD_FLOOR,
        "sizes": sizes.len(),
        "padding_pct": {"mean": pad_mean, "max": pad_max},
        "padding_pct_at_least_floor": {
            "sizes": above_floor.len(), "mean": pad_floor_mean, "max": pad_floor_max,
        },
        "ciphertext_overhead_pct": {"mean": ct_mean, "max": ct_max},
        "unpadded_ciphertext_overhead_pct": {"mean": v1_mean, "max": v1_max},
        "bytes_stored_overhead_pct": (stored - total) as f64 / total as f64 * 100.0,
        "unpadded_bytes_stored_overhead_pct": (stored_v1 - total) as f64 / total as f64 * 100.0,
        "distinct_ciphertext_lengths": lengths.len(),
        "measured": measured,
    }))
}

pub fn encrypt_only(size: usize) -> f64 {
    let data = vec![0x5au8; size];
    let mut runs = Vec::new();
    for _ in 0..3 {
        let dk = DataKey::generate();
        let t = Instant::now();
        envelope::encrypt_stream(&dk, &RecordId([1; 16]), data.as_slice(), std::io::sink())
            .expect("encrypt");
        runs.push(mb_s(size, t.elapsed().as_secs_f64()));
    }
    median(&mut runs)
}
