//! Throughput of the blob erasure coding (issue 16): encode and decode MB/s over a 100 MB
//! buffer, and the bytes each node stores against the blob size.
//!
//! `cargo run --release -p ehrchain-node --example bench_coding [MB] [runs]`

use bytes::Bytes;
use ehrchain_node::coding::{Params, decode_blob, encode_blob};
use std::time::Instant;

fn random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mb: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let size = mb * 1_000_000;
    let data = random(size);
    println!("blob {mb} MB, median of {runs} runs, one thread (Sequential strategy)");
    println!(
        "{:>3} {:>3} {:>12} {:>14} {:>15} {:>16} {:>9} {:>9}",
        "n",
        "k",
        "encode MB/s",
        "dec orig MB/s",
        "dec recov MB/s",
        "bytes per node",
        "per node",
        "all nodes"
    );
    for n in [4usize, 7] {
        let params = Params::for_validators(n).expect("n >= 2");
        let (mut enc, mut dec_k, mut dec_pref) = (Vec::new(), Vec::new(), Vec::new());
        let mut per_node = 0u64;
        for _ in 0..runs {
            let mut shards: Vec<Vec<Bytes>> = Vec::new();
            let t = Instant::now();
            let m = encode_blob(params, &data[..], |_, _, s| {
                shards.push(s);
                Ok::<_, std::io::Error>(())
            })
            .expect("encode");
            enc.push(size as f64 / 1e6 / t.elapsed().as_secs_f64());
            // Bytes node 1 stores: its encoded shard of every stripe.
            per_node = shards.iter().map(|s| s[1].len() as u64).sum();

            // From the k original shards (the cheapest case: a re-encode to verify).
            let mut out = Vec::with_capacity(size);
            let t = Instant::now();
            decode_blob(
                &m,
                None,
                |s, i| Some(shards[s as usize][i as usize].clone()),
                &mut out,
            )
            .expect("decode");
            dec_k.push(size as f64 / 1e6 / t.elapsed().as_secs_f64());
            assert!(out == data);

            // From the last k shards (all but possibly one are recovery shards: a real decode).
            let start = params.n - params.k;
            let mut out = Vec::with_capacity(size);
            let t = Instant::now();
            decode_blob(
                &m,
                Some(start),
                |s, i| Some(shards[s as usize][i as usize].clone()),
                &mut out,
            )
            .expect("decode");
            dec_pref.push(size as f64 / 1e6 / t.elapsed().as_secs_f64());
            assert!(out == data);
        }
        println!(
            "{:>3} {:>3} {:>12.0} {:>14.0} {:>15.0} {:>16} {:>8.3}x {:>8.3}x",
            params.n,
            params.k,
            median(enc),
            median(dec_k),
            median(dec_pref),
            per_node,
            per_node as f64 / size as f64,
            (per_node * u64::from(params.n)) as f64 / size as f64,
        );
    }
    println!(
        "dec orig: from shards 0..k (originals); dec recov: from shards n-k..n (recovery shards). \
         per node / all nodes: bytes stored over the blob size."
    );
}
