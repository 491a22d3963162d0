//! Shared workload, measurement and reporting helpers.

use sha2::{Digest as _, Sha256};
use std::{path::Path, time::Duration};

/// Changes per block (the write set).
pub const BLOCK_CHANGES: usize = 2_000;

/// The key of entry `i`: 32 bytes, like ehrchain's hashed state keys.
pub fn key(i: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"ehrchain/spike/key");
    h.update(i.to_be_bytes());
    h.finalize().into()
}

/// splitmix64: a tiny deterministic PRNG (no `rand` dependency).
#[derive(Clone)]
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A record-shaped value: 300..=600 bytes of incompressible bytes.
pub fn value(rng: &mut Rng) -> Vec<u8> {
    let len = 300 + rng.below(301) as usize;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// One block's write set: half updates of existing keys, half inserts of new keys.
pub fn block_write_set(rng: &mut Rng, next_index: &mut u64) -> Vec<([u8; 32], Vec<u8>)> {
    let mut ws = Vec::with_capacity(BLOCK_CHANGES);
    for j in 0..BLOCK_CHANGES {
        let k = if j % 2 == 0 && *next_index > 0 {
            key(rng.below(*next_index))
        } else {
            let k = key(*next_index);
            *next_index += 1;
            k
        };
        ws.push((k, value(rng)));
    }
    ws
}

/// (VmRSS, VmHWM) in MiB from /proc/self/status.
pub fn rss_mib() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// Allocated bytes on disk under `dir` (st_blocks * 512), recursively.
pub fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                total += disk_bytes(&e.path());
            } else {
                total += md.blocks() * 512;
            }
        }
    }
    total
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (median, p99) of a sample, in the sample's unit.
pub fn median_p99(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = v[v.len() / 2];
    let idx = ((v.len() as f64) * 0.99).ceil() as usize;
    let p99 = v[idx.saturating_sub(1).min(v.len() - 1)];
    (med, p99)
}

/// Sidecar file with the next never-used key index, so `bench` can follow `prefill`.
pub fn write_meta(dir: &Path, next_index: u64) {
    std::fs::write(dir.join("spike-meta.txt"), next_index.to_string()).unwrap();
}
pub fn read_meta(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("spike-meta.txt"))
        .expect("run prefill first")
        .trim()
        .parse()
        .unwrap()
}

/// One machine-readable result line: `RESULT candidate phase k=v ...`.
pub fn report(candidate: &str, phase: &str, fields: &[(&str, String)]) {
    let mut line = format!("RESULT {candidate} {phase}");
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    println!("{line}");
}
