//! Benchmark driver for candidate (b): jmt over redb.

use crate::common::*;
use crate::jmt_store::{Overlay, Store};
use crate::verify_jmt;
use jmt::{KeyHash, Sha256Jmt};
use std::{path::Path, time::Instant};

const C: &str = "jmt";
/// redb page cache (the only cache; jmt keeps nothing resident between blocks): 64 MiB, or
/// `JMT_CACHE_MIB` for the cache-size experiment.
fn cache_bytes() -> usize {
    std::env::var("JMT_CACHE_MIB").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(64) << 20
}
const PREFILL_CHUNK: u64 = 50_000;

pub fn prefill(dir: &Path, n: u64) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let store = Store::open(dir, cache_bytes())?;
    let mut rng = Rng(1);
    let start = Instant::now();
    let mut version = 0;
    let mut i = 0;
    while i < n {
        let end = (i + PREFILL_CHUNK).min(n);
        let snap = store.snapshot()?;
        let tree = Sha256Jmt::new(&snap);
        let ws: Vec<_> = (i..end).map(|j| (KeyHash(key(j)), Some(value(&mut rng)))).collect();
        let (_root, batch) = tree.put_value_set(ws, version)?;
        drop(snap);
        store.commit(version, &batch)?;
        if store.defer_stale {
            store.prune()?;
        }
        version += 1;
        i = end;
    }
    let secs = start.elapsed().as_secs_f64();
    write_meta(dir, n);
    let disk = disk_bytes(dir);
    let (rss, hwm) = rss_mib();
    report(C, "prefill", &[
        ("entries", n.to_string()),
        ("secs", format!("{secs:.2}")),
        ("entries_per_sec", format!("{:.0}", n as f64 / secs.max(1e-9))),
        ("disk_bytes", disk.to_string()),
        ("disk_bytes_per_entry", format!("{:.0}", disk as f64 / n.max(1) as f64)),
        ("rss_mib", format!("{rss:.0}")),
        ("hwm_mib", format!("{hwm:.0}")),
    ]);
    Ok(())
}

pub fn bench(dir: &Path, blocks: usize) -> anyhow::Result<()> {
    let mut next_index = read_meta(dir);
    let entries0 = next_index;
    // Reopen (after prefill's last commit; redb opens without repair after a clean close).
    let t = Instant::now();
    let store = Store::open(dir, cache_bytes())?;
    let mut version = store.latest_version()?.map_or(0, |v| v + 1);
    let reopen_ms = ms(t.elapsed());
    let mut rng = Rng(7 + entries0);

    // (2) per-block apply of 2,000 changes: root computation, then durable commit.
    let (mut root_ms, mut commit_ms, mut total_ms) = (vec![], vec![], vec![]);
    let mut prune_ms = vec![];
    let mut _root = jmt::RootHash([0; 32]);
    for _ in 0..blocks {
        let ws = block_write_set(&mut rng, &mut next_index);
        let t0 = Instant::now();
        let snap = store.snapshot()?;
        let tree = Sha256Jmt::new(&snap);
        let (r, batch) = tree.put_value_set(ws.into_iter().map(|(k, v)| (KeyHash(k), Some(v))), version)?;
        let t1 = Instant::now();
        drop(snap);
        store.commit(version, &batch)?;
        let t2 = Instant::now();
        _root = r;
        version += 1;
        root_ms.push(ms(t1 - t0));
        commit_ms.push(ms(t2 - t1));
        total_ms.push(ms(t2 - t0));
        // The deferred pass, timed apart (a background thread's work, off the block path).
        if store.defer_stale {
            let t3 = Instant::now();
            store.prune()?;
            prune_ms.push(ms(t3.elapsed()));
        }
    }
    let prune_med = if prune_ms.is_empty() { 0.0 } else { median_p99(&prune_ms).0 };
    let (rss, hwm) = rss_mib();

    // (4) speculative: B on the committed state, C on uncommitted B, then B is discarded and a
    // sibling B' is committed instead.
    let snap = store.snapshot()?;
    let ws_b = block_write_set(&mut rng, &mut next_index);
    let ws_c = block_write_set(&mut rng, &mut next_index);
    let ws_b2 = block_write_set(&mut rng, &mut next_index);
    let tree = Sha256Jmt::new(&snap);
    let t0 = Instant::now();
    let (_rb, batch_b) = tree.put_value_set(ws_b.into_iter().map(|(k, v)| (KeyHash(k), Some(v))), version)?;
    let spec_b_ms = ms(t0.elapsed());
    let overlay = Overlay { base: &snap, layers: vec![&batch_b] };
    let tree_c = Sha256Jmt::new(&overlay);
    let t0 = Instant::now();
    let (_rc, batch_c) = tree_c.put_value_set(ws_c.iter().cloned().map(|(k, v)| (KeyHash(k), Some(v))), version + 1)?;
    let spec_child_ms = ms(t0.elapsed());
    // Reads through the overlay see C's parent B (and C's own batch as the top layer).
    let overlay_c = Overlay { base: &snap, layers: vec![&batch_b, &batch_c] };
    assert!(Sha256Jmt::new(&overlay_c).get(KeyHash(ws_c[1].0), version + 1)?.is_some());
    let overlay_bytes = batch_b.node_batch.nodes().len() * 100
        + batch_b.node_batch.values().values().map(|v| v.as_ref().map_or(0, |v| v.len())).sum::<usize>();
    let t0 = Instant::now();
    drop(overlay_c);
    drop(tree_c);
    drop(overlay);
    drop(batch_c);
    drop(batch_b); // discard B and its child: nothing was written
    let discard_us = t0.elapsed().as_secs_f64() * 1e6;
    let (rb2, batch_b2) = tree.put_value_set(ws_b2.into_iter().map(|(k, v)| (KeyHash(k), Some(v))), version)?;
    drop(tree);
    drop(snap);
    store.commit(version, &batch_b2)?;
    if store.defer_stale {
        store.prune()?;
    }
    let root = rb2;
    let last_version = version;

    // (5) proofs against the committed root.
    let snap = store.snapshot()?;
    let tree = Sha256Jmt::new(&snap);
    let (mut inc_bytes, mut inc_us, mut inc_own_us) = (vec![], vec![], vec![]);
    let (mut exc_bytes, mut exc_us, mut exc_own_us) = (vec![], vec![], vec![]);
    let mut prng = Rng(99);
    for _ in 0..200 {
        let k = key(prng.below(entries0.max(1)));
        let (v, proof) = tree.get_with_proof(KeyHash(k), last_version)?;
        if entries0 == 0 {
            break;
        }
        let v = v.expect("present");
        let bytes = borsh::to_vec(&proof)?;
        inc_bytes.push(bytes.len() as f64);
        let t = Instant::now();
        proof.verify_existence(root, KeyHash(k), &v)?;
        inc_us.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        assert!(verify_jmt::verify(&bytes, &root.0, &k, Some(&v)));
        inc_own_us.push(t.elapsed().as_secs_f64() * 1e6);
        let mut bad = v.clone();
        bad[0] ^= 1;
        assert!(!verify_jmt::verify(&bytes, &root.0, &k, Some(&bad)));
        assert!(proof.verify_existence(root, KeyHash(k), &bad).is_err());
        let mut badp = bytes.clone();
        let l = badp.len();
        badp[l - 3] ^= 1;
        assert!(!verify_jmt::verify(&badp, &root.0, &k, Some(&v)));
    }
    for j in 0..200u64 {
        let k = key(u64::MAX - j); // never inserted
        let (v, proof) = tree.get_with_proof(KeyHash(k), last_version)?;
        assert!(v.is_none());
        let bytes = borsh::to_vec(&proof)?;
        exc_bytes.push(bytes.len() as f64);
        let t = Instant::now();
        proof.verify_nonexistence(root, KeyHash(k))?;
        exc_us.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        assert!(verify_jmt::verify(&bytes, &root.0, &k, None));
        exc_own_us.push(t.elapsed().as_secs_f64() * 1e6);
        // An absence proof must not prove presence of anything for that key.
        assert!(!verify_jmt::verify(&bytes, &root.0, &k, Some(b"x")));
    }
    drop(tree);
    drop(snap);
    drop(store);
    write_meta(dir, next_index);

    // (6) reopen after the last commit and check the root survived.
    let t = Instant::now();
    let store = Store::open(dir, cache_bytes())?;
    let v = store.latest_version()?.unwrap();
    let snap = store.snapshot()?;
    let r2 = Sha256Jmt::new(&snap).get_root_hash(v)?;
    let reopen2_ms = ms(t.elapsed());
    assert_eq!(r2, root);

    let (rm, rp) = median_p99(&root_ms);
    let (cm, cp) = median_p99(&commit_ms);
    let (tm, tp) = median_p99(&total_ms);
    let f = |x: &[f64]| format!("{:.0}", median_p99(x).0);
    let f1 = |x: &[f64]| format!("{:.1}", median_p99(x).0);
    let disk = disk_bytes(dir);
    report(C, "bench", &[
        ("entries", entries0.to_string()),
        ("blocks", blocks.to_string()),
        ("root_ms_med", format!("{rm:.1}")),
        ("root_ms_p99", format!("{rp:.1}")),
        ("commit_ms_med", format!("{cm:.1}")),
        ("commit_ms_p99", format!("{cp:.1}")),
        ("block_ms_med", format!("{tm:.1}")),
        ("block_ms_p99", format!("{tp:.1}")),
        ("prune_ms_med", format!("{prune_med:.1}")),
        ("rss_mib", format!("{rss:.0}")),
        ("hwm_mib", format!("{hwm:.0}")),
        ("spec_parent_ms", format!("{spec_b_ms:.1}")),
        ("spec_child_ms", format!("{spec_child_ms:.1}")),
        ("spec_overlay_kib", format!("{}", overlay_bytes / 1024)),
        ("discard_us", format!("{discard_us:.0}")),
        ("incl_proof_bytes", f(&inc_bytes)),
        ("incl_verify_us", f1(&inc_us)),
        ("incl_verify_own_us", f1(&inc_own_us)),
        ("excl_proof_bytes", f(&exc_bytes)),
        ("excl_verify_us", f1(&exc_us)),
        ("excl_verify_own_us", f1(&exc_own_us)),
        ("reopen_ms", format!("{reopen_ms:.1}")),
        ("reopen_after_bench_ms", format!("{reopen2_ms:.1}")),
        ("disk_bytes_after", disk.to_string()),
    ]);
    Ok(())
}
