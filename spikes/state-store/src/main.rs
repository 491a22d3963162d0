//! Spike for issue 14: an authenticated on-disk state store.
//!
//! usage:
//!   state-store-spike prefill <qmdb|jmt> <dir> <entries>
//!   state-store-spike bench   <qmdb|jmt> <dir> <blocks>
//!
//! Output: `RESULT <candidate> <phase> key=value ...` lines (see RESULTS.md).

mod common;
mod jmt_bench;
mod jmt_store;
mod qmdb_bench;
mod verify_jmt;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: state-store-spike <prefill|bench> <qmdb|jmt> <dir> <entries|blocks>";
    if a.len() != 4 {
        anyhow::bail!(usage);
    }
    let dir = PathBuf::from(&a[2]);
    let n: u64 = a[3].parse()?;
    match (a[0].as_str(), a[1].as_str()) {
        ("prefill", "qmdb") => qmdb_bench::prefill(&dir, n),
        ("prefill", "jmt") => jmt_bench::prefill(&dir, n)?,
        ("bench", "qmdb") => qmdb_bench::bench(&dir, n as usize),
        ("bench", "jmt") => jmt_bench::bench(&dir, n as usize)?,
        _ => anyhow::bail!(usage),
    }
    Ok(())
}
