//! The state layer at scale: per-block cost and memory with a state pre-filled with N records.
//!
//! `cargo run --release -p ehrchain-ledger --example bench_state -- 0 1000000 [blocks]`
//!
//! For each size: bulk-loads N synthetic records (no signing), builds the tree, then runs
//! `blocks` blocks of 2,000 changes (1,000 new records, 1,000 changed ones), each on a clone of
//! its parent as the node does, keeping the last 3 states alive (speculative blocks).
//! Prints the medians and p99 of the clone, the writes and the tree update, resident memory
//! and tree nodes per entry.

use ehrchain_ledger::{State, StateKey, state::synthetic_record};
use std::{collections::BTreeSet, time::Instant};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: sizes then blocks"))
        .collect();
    let (sizes, blocks) = match args.len() {
        0 => (vec![0, 100_000], 30),
        1 => (args, 30),
        _ => (args[..args.len() - 1].to_vec(), args[args.len() - 1]),
    };
    println!(
        "size,prefill_s,rss_after_prefill_mib,block_p50_ms,block_p99_ms,clone_p50_ms,writes_p50_ms,tree_p50_ms,rss_after_blocks_mib,tree_nodes_per_entry"
    );
    for n in sizes {
        let t = Instant::now();
        let mut state = State::empty("bench");
        for i in 0..n {
            state.insert_record(synthetic_record(i, n));
        }
        let inserted = t.elapsed().as_secs_f64();
        state.rebuild_tree();
        let prefill = t.elapsed().as_secs_f64();
        eprintln!(
            "{n}: records inserted in {inserted:.1} s, tree built in {:.1} s",
            prefill - inserted
        );
        let rss_prefill = rss_mib();
        let mut next = n;
        let mut live: Vec<State> = Vec::new();
        let (mut total, mut clone, mut writes, mut tree) = (vec![], vec![], vec![], vec![]);
        for b in 0..blocks {
            let t0 = Instant::now();
            let mut post = state.clone();
            let t1 = Instant::now();
            let mut touched = BTreeSet::new();
            for _ in 0..1000 {
                let r = synthetic_record(next, n);
                next += 1;
                touched.insert(StateKey::Record(r.id));
                post.insert_record(r);
            }
            if n + b * 1000 > 0 {
                for j in 0..1000u64 {
                    let i = (j * 7919 + b * 104_729) % next.max(1);
                    let mut r = synthetic_record(i, n);
                    r.reviewed_ms = Some(b);
                    touched.insert(StateKey::Record(r.id));
                    post.insert_record(r);
                }
            }
            let t2 = Instant::now();
            post.update_tree(&touched);
            let t3 = Instant::now();
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            total.push(ms(t0, t3));
            clone.push(ms(t0, t1));
            writes.push(ms(t1, t2));
            tree.push(ms(t2, t3));
            live.push(std::mem::replace(&mut state, post));
            if live.len() > 3 {
                live.remove(0);
            }
        }
        let entries = state.records_in_memory().max(1) as f64;
        println!(
            "{n},{prefill:.1},{rss_prefill:.0},{:.1},{:.1},{:.3},{:.1},{:.1},{:.0},{:.2}",
            pct(&mut total.clone(), 0.5),
            pct(&mut total, 0.99),
            pct(&mut clone, 0.5),
            pct(&mut writes, 0.5),
            pct(&mut tree, 0.5),
            rss_mib(),
            state.tree.node_count() as f64 / entries,
        );
        drop(live);
    }
}
