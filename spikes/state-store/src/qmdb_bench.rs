//! Benchmark driver for candidate (a): commonware-storage QMDB, `current::ordered::variable`
//! (authenticated current values + exclusion proofs, variable-size values) over the MMR family.

use crate::common::*;
use commonware_codec::EncodeSize as _;
use commonware_cryptography::{Sha256, sha256::Digest};
use commonware_parallel::Rayon;
use commonware_runtime::{
    BLOB_PAGE_SIZE, Runner as _, Strategizer, Supervisor as _,
    buffer::paged::{CacheRef, page_size},
    tokio::{Config, Context, Runner},
};
use commonware_storage::{
    journal::contiguous::variable::Config as VConfig,
    merkle::{full::Config as MerkleConfig, mmr},
    qmdb::{
        any::value::VariableEncoding,
        current::{VariableConfig, ordered::variable::Db as OCVariable},
        floor::Proportional,
    },
    translator::EightCap,
};
use commonware_utils::{NZU64, NZUsize};
use std::{num::NonZeroUsize, path::Path, time::Instant};

const C: &str = "qmdb";
type Db = OCVariable<mmr::Family, Context, Digest, Vec<u8>, Sha256, EightCap, 32, Rayon>;
type VarVecCfg = ((), (commonware_codec::RangeCfg<usize>, ()));

/// Page cache: 16,384 x 4 KiB = 64 MiB, the same budget as redb's cache for jmt.
const PAGE_CACHE_PAGES: NonZeroUsize = NZUsize!(16_384);
const PREFILL_CHUNK: u64 = 50_000;

fn cfg(ctx: &impl Strategizer) -> VariableConfig<EightCap, VarVecCfg, Rayon> {
    let page_cache = CacheRef::new(page_size(BLOB_PAGE_SIZE), PAGE_CACHE_PAGES);
    let items = NZU64!(1_000_000);
    VariableConfig {
        merkle_config: MerkleConfig {
            journal_partition: "state-merkle".into(),
            metadata_partition: "state-merkle-meta".into(),
            items_per_blob: items,
            write_buffer: NZUsize!(2 << 20),
            replay_buffer: NZUsize!(2 << 20),
            strategy: ctx.strategy(NZUsize!(2)),
            page_cache: page_cache.clone(),
        },
        journal_config: VConfig {
            partition: "state-log".into(),
            items_per_section: items,
            compression: None,
            codec_config: ((), ((0..=10_000).into(), ())),
            page_cache,
            write_buffer: NZUsize!(2 << 20),
            replay_buffer: NZUsize!(2 << 20),
        },
        grafted_metadata_partition: "state-grafted-meta".into(),
        translator: EightCap,
        init_cache: Some(NZUsize!(1 << 18)),
        init_buffer: NZUsize!(1 << 21),
        init_concurrency: (),
    }
}

fn runner(dir: &Path) -> Runner {
    Runner::new(Config::default().with_storage_directory(dir))
}

pub fn prefill(dir: &Path, n: u64) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let d = dir.to_path_buf();
    runner(dir).start(|ctx| async move {
        let mut db = Db::init(ctx.child("state"), cfg(&ctx), None).await.unwrap();
        let mut rng = Rng(1);
        let start = Instant::now();
        let mut i = 0;
        while i < n {
            let end = (i + PREFILL_CHUNK).min(n);
            let mut batch = db.new_batch();
            for j in i..end {
                batch = batch.write(Digest(key(j)), Some(value(&mut rng)));
            }
            let m = batch.merkleize(&db, None, &mut Proportional).await.unwrap();
            db = db.apply_batch(m).await.unwrap();
            db = db.commit().await.unwrap();
            let b = db.sync_boundary();
            db = db.prune(b).await.unwrap();
            i = end;
        }
        let db = db.sync().await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        drop(db);
        write_meta(&d, n);
        let disk = disk_bytes(&d);
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
    });
}

pub fn bench(dir: &Path, blocks: usize) {
    let d = dir.to_path_buf();
    runner(dir).start(|ctx| async move {
        let mut next_index = read_meta(&d);
        let entries0 = next_index;
        let t = Instant::now();
        let mut db = Db::init(ctx.child("state"), cfg(&ctx), None).await.unwrap();
        let reopen_ms = ms(t.elapsed());
        let (rss_open, _) = rss_mib();
        let mut rng = Rng(7 + entries0);

        // (2) per-block apply: merkleize (root) then apply + commit (durable) + prune.
        let (mut root_ms, mut commit_ms, mut total_ms) = (vec![], vec![], vec![]);
        for _ in 0..blocks {
            let ws = block_write_set(&mut rng, &mut next_index);
            let t0 = Instant::now();
            let mut batch = db.new_batch();
            for (k, v) in ws {
                batch = batch.write(Digest(k), Some(v));
            }
            let m = batch.merkleize(&db, None, &mut Proportional).await.unwrap();
            let _root = m.root();
            let t1 = Instant::now();
            db = db.apply_batch(m).await.unwrap();
            db = db.commit().await.unwrap();
            let b = db.sync_boundary();
            db = db.prune(b).await.unwrap();
            let t2 = Instant::now();
            root_ms.push(ms(t1 - t0));
            commit_ms.push(ms(t2 - t1));
            total_ms.push(ms(t2 - t0));
        }
        let (rss, hwm) = rss_mib();

        // (4) speculative: B on the committed db, C on uncommitted B; discard B (and C), then
        // apply a sibling B' instead.
        let ws_b = block_write_set(&mut rng, &mut next_index);
        let ws_c = block_write_set(&mut rng, &mut next_index);
        let ws_b2 = block_write_set(&mut rng, &mut next_index);
        let t0 = Instant::now();
        let mut bb = db.new_batch();
        for (k, v) in ws_b {
            bb = bb.write(Digest(k), Some(v));
        }
        let b = bb.merkleize(&db, None, &mut Proportional).await.unwrap();
        let spec_b_ms = ms(t0.elapsed());
        let t0 = Instant::now();
        let mut cb = b.new_batch::<Sha256>();
        for (k, v) in ws_c.iter().cloned() {
            cb = cb.write(Digest(k), Some(v));
        }
        let c = cb.merkleize(&db, None, &mut Proportional).await.unwrap();
        let spec_child_ms = ms(t0.elapsed());
        // Reads through C see B's writes and C's own.
        assert!(c.get(&Digest(ws_c[1].0), &db).await.unwrap().is_some());
        let mut bb2 = db.new_batch();
        for (k, v) in ws_b2 {
            bb2 = bb2.write(Digest(k), Some(v));
        }
        let b2 = bb2.merkleize(&db, None, &mut Proportional).await.unwrap();
        let t0 = Instant::now();
        drop(c);
        drop(b); // discard B and its child: nothing was written
        let discard_us = t0.elapsed().as_secs_f64() * 1e6;
        db = db.apply_batch(b2).await.unwrap();
        db = db.commit().await.unwrap();
        let root = db.root();

        // (5) proofs of a value and of absence against the committed root.
        let (mut inc_bytes, mut inc_us) = (vec![], vec![]);
        let (mut exc_bytes, mut exc_us) = (vec![], vec![]);
        let mut prng = Rng(99);
        if entries0 > 0 {
            for _ in 0..200 {
                let k = Digest(key(prng.below(entries0)));
                let v = db.get(&k).await.unwrap().expect("present");
                let p = db.key_value_proof(k).await.unwrap();
                inc_bytes.push(p.encode_size() as f64);
                let t = Instant::now();
                let ok = p.verify::<Sha256, VariableEncoding<Vec<u8>>>(k, v.clone(), &root);
                inc_us.push(t.elapsed().as_secs_f64() * 1e6);
                assert!(ok);
                let mut bad = v.clone();
                bad[0] ^= 1;
                assert!(!p.verify::<Sha256, VariableEncoding<Vec<u8>>>(k, bad, &root));
            }
        }
        for j in 0..200u64 {
            let k = Digest(key(u64::MAX - j));
            let p = db.exclusion_proof(&k).await.unwrap();
            exc_bytes.push(p.encode_size() as f64);
            let t = Instant::now();
            let ok = p.verify::<Sha256>(&k, &root);
            exc_us.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(ok);
        }

        drop(db);
        write_meta(&d, next_index);
        // (6) reopen after the last commit (not sync): may replay from the recovery watermark.
        let t = Instant::now();
        let db = Db::init(ctx.child("state2"), cfg(&ctx), None).await.unwrap();
        let reopen2_ms = ms(t.elapsed());
        assert_eq!(db.root(), root);
        drop(db);

        let (rm, rp) = median_p99(&root_ms);
        let (cm, cp) = median_p99(&commit_ms);
        let (tm, tp) = median_p99(&total_ms);
        let f = |x: &[f64]| format!("{:.0}", median_p99(x).0);
        let f1 = |x: &[f64]| format!("{:.1}", median_p99(x).0);
        let disk = disk_bytes(&d);
        report(C, "bench", &[
            ("entries", entries0.to_string()),
            ("blocks", blocks.to_string()),
            ("root_ms_med", format!("{rm:.1}")),
            ("root_ms_p99", format!("{rp:.1}")),
            ("commit_ms_med", format!("{cm:.1}")),
            ("commit_ms_p99", format!("{cp:.1}")),
            ("block_ms_med", format!("{tm:.1}")),
            ("block_ms_p99", format!("{tp:.1}")),
            ("rss_mib", format!("{rss:.0}")),
            ("hwm_mib", format!("{hwm:.0}")),
            ("rss_after_open_mib", format!("{rss_open:.0}")),
            ("spec_parent_ms", format!("{spec_b_ms:.1}")),
            ("spec_child_ms", format!("{spec_child_ms:.1}")),
            ("discard_us", format!("{discard_us:.0}")),
            ("incl_proof_bytes", f(&inc_bytes)),
            ("incl_verify_us", f1(&inc_us)),
            ("excl_proof_bytes", f(&exc_bytes)),
            ("excl_verify_us", f1(&exc_us)),
            ("reopen_ms", format!("{reopen_ms:.1}")),
            ("reopen_after_commit_ms", format!("{reopen2_ms:.1}")),
            ("disk_bytes_after", disk.to_string()),
        ]);
    });
}
