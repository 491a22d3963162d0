//! `ehrchain bench soak`: mixed load for a set time on a fresh validator — transfers,
//! consent changes, records with uploads and audited reads, each through the real client
//! flows — reporting throughput per interval and the node's memory, open files and disk at
//! the start and the end, so leaks and growth show up.

use crate::{
    bench::{self, percentile},
    parse_duration,
};
use anyhow::Context as _;
use ehrchain_client::{Keypair, Node, Session, consent, records};
use ehrchain_ledger::GenesisAccount;
use ehrchain_types::{Category, Grantee, Role, TxPayload};
use serde::Serialize;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The soak's settings (from `ehrchain bench soak --duration … --interval … --clients …
/// --record-bytes …`).
#[derive(Debug, Clone)]
pub struct SoakArgs {
    /// How long to run, e.g. `30m`.
    pub duration: String,
    /// Seconds per reported interval.
    pub interval: u64,
    /// Client threads, each a patient working through the mix in a loop.
    pub clients: usize,
    /// Size of each uploaded record, in bytes.
    pub record_bytes: usize,
    /// Background token transfers per second, from their own accounts, beside the patients'
    /// mix (0: none).
    pub rate: u64,
}

/// The shortest time one client takes for one round of the mix.
const ROUND: Duration = Duration::from_millis(1500);

/// Every this many rounds a client grants and revokes one more category (consent churn).
const CHURN_EVERY: u64 = 5;

/// Operations of the mix, in the order each client runs them.
const OPS: [&str; 5] = ["transfer", "grant", "record_add", "read", "revoke"];

#[derive(Serialize, Debug, Clone)]
struct Sample {
    at_s: f64,
    ops_per_s: f64,
    /// Background transfers admitted per second.
    pump_tx_per_s: f64,
    ops: [u64; 5],
    errors: u64,
    rss_mb: f64,
    open_files: usize,
    disk_mb: f64,
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn run(json_out: bool, args: SoakArgs) -> anyhow::Result<()> {
    let duration = parse_duration(&args.duration)?;
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(args.interval >= 1, "--interval must be at least 1");
    let dir = tempfile::tempdir()?;
    let patients: Vec<Keypair> = (0..args.clients).map(|_| Keypair::generate()).collect();
    // One doctor per client, so no two threads sign with one account's nonces.
    let doctors: Vec<Keypair> = (0..args.clients).map(|_| Keypair::generate()).collect();
    let mut accounts: Vec<GenesisAccount> = patients
        .iter()
        .map(|k| GenesisAccount {
            public_key: k.public_key(),
            role: Some(Role::Patient),
            balance: 1_000_000,
            encryption_key: Some(k.encryption().public()),
        })
        .collect();
    accounts.extend(doctors.iter().map(|d| GenesisAccount {
        public_key: d.public_key(),
        role: Some(Role::Doctor),
        balance: 0,
        encryption_key: Some(d.encryption().public()),
    }));
    // The background transfer load: enough senders that each stays far below the
    // per-account rate limit.
    let pump_senders: Vec<Keypair> = (0..(args.rate / 2).clamp(1, 2_000))
        .map(|_| Keypair::generate())
        .collect();
    accounts.extend(pump_senders.iter().map(|k| GenesisAccount {
        public_key: k.public_key(),
        role: None,
        balance: 1_000_000_000,
        encryption_key: None,
    }));
    let (net, urls) = bench::start_network(dir.path(), 1, accounts, 0)?;
    let pid = net.pid(0);
    let node_dir = ehrchain_node::testnet::node_dir(dir.path(), 0);
    let url = urls[0].clone();
    let counts: Arc<[AtomicU64; 6]> = Arc::new(Default::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = patients
        .into_iter()
        .zip(doctors)
        .enumerate()
        .map(|(i, (key, doctor))| {
            let (url, counts, stop) = (url.clone(), counts.clone(), stop.clone());
            let bytes = args.record_bytes;
            std::thread::spawn(move || -> anyhow::Result<()> {
                let me = Session::new(Node::new(&url), key)?;
                let doc = Session::new(Node::new(&url), doctor)?;
                let to = Grantee::Account(doc.me);
                let scratch = tempfile::tempdir()?;
                // Lab records are read every round under one standing grant; consent churns on
                // the other categories in turn, so no category's key epochs pile up (a grant
                // wraps every epoch of a category, at most 96 in one transaction).
                consent::grant(&me, &to, &[Category::Lab], None, false)?;
                let churn = [
                    Category::Notes,
                    Category::Vitals,
                    Category::Imaging,
                    Category::Medication,
                ];
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let data: Vec<u8> = (0..bytes).map(|b| (b as u64 ^ round) as u8).collect();
                    let category = churn[(round / CHURN_EVERY) as usize % churn.len()];
                    let step = |op: usize| -> anyhow::Result<()> {
                        match op {
                            0 => {
                                me.submit(vec![TxPayload::Transfer {
                                    to: doc.me,
                                    amount: 1,
                                }])?;
                            }
                            1 => {
                                consent::grant(&me, &to, &[category], None, false)?;
                            }
                            2 => {
                                let added = records::add_record_from(
                                    &me,
                                    &me.me,
                                    Category::Lab,
                                    &data[..],
                                    Some(format!("soak {i}/{round}")),
                                    None,
                                    false,
                                )?;
                                let out = scratch.path().join("read.bin");
                                let got = records::get_record(&doc, &added.record, &out)?;
                                anyhow::ensure!(
                                    got.decision == ehrchain_types::Decision::Allowed,
                                    "the doctor's read was denied: {}",
                                    got.reason
                                );
                                anyhow::ensure!(std::fs::read(&out)? == data, "read back differs");
                                std::fs::remove_file(&out)?;
                                counts[3].fetch_add(1, Ordering::Relaxed);
                            }
                            4 => {
                                consent::revoke(&me, &to, &[category])?;
                            }
                            _ => {}
                        }
                        Ok(())
                    };
                    let began = Instant::now();
                    let ops: &[usize] = if round.is_multiple_of(CHURN_EVERY) {
                        &[0, 1, 2, 4]
                    } else {
                        &[0, 2]
                    };
                    for &op in ops {
                        match step(op) {
                            Ok(()) => counts[op].fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                if counts[5].fetch_add(1, Ordering::Relaxed) < 5 {
                                    eprintln!("soak client {i}: {} failed: {e:#}", OPS[op]);
                                }
                                0
                            }
                        };
                    }
                    // Each client is one patient at a human-plausible pace, within the node's
                    // default per-account and per-address upload limits.
                    std::thread::sleep(ROUND.saturating_sub(began.elapsed()));
                }
                Ok(())
            })
        })
        .collect();
    let pumped = Arc::new(AtomicU64::new(0));
    let pump = (args.rate > 0).then(|| {
        let (url, stop, pumped, rate) = (url.clone(), stop.clone(), pumped.clone(), args.rate);
        std::thread::spawn(move || pump_transfers(&url, pump_senders, rate, &stop, &pumped))
    });
    let start = Instant::now();
    let total =
        |c: &[AtomicU64; 6]| -> [u64; 6] { std::array::from_fn(|i| c[i].load(Ordering::Relaxed)) };
    let sample = |at: f64, ops: [u64; 5], errors: u64, pumped: u64, secs: f64| Sample {
        at_s: at,
        ops_per_s: ops.iter().sum::<u64>() as f64 / secs,
        pump_tx_per_s: pumped as f64 / secs,
        ops,
        errors,
        rss_mb: rss_mb(pid),
        open_files: open_files(pid),
        disk_mb: bench::dir_size(&node_dir) as f64 / 1e6,
    };
    let first = sample(0.0, [0; 5], 0, 0, 1.0);
    if !json_out {
        eprintln!(
            "soak: {} clients for {}; node rss {:.0} MB, {} open files at start",
            args.clients, args.duration, first.rss_mb, first.open_files
        );
    }
    let mut samples = vec![first];
    let mut last = [0u64; 6];
    let mut last_pumped = 0u64;
    let mut last_at = start;
    while start.elapsed() < duration {
        let left = duration.saturating_sub(start.elapsed());
        std::thread::sleep(left.min(Duration::from_secs(args.interval)));
        let now = total(&counts);
        let mut ops = [0u64; 5];
        for (i, o) in ops.iter_mut().enumerate() {
            *o = now[i] - last[i];
        }
        let now_pumped = pumped.load(Ordering::Relaxed);
        let s = sample(
            start.elapsed().as_secs_f64(),
            ops,
            now[5] - last[5],
            now_pumped - last_pumped,
            last_at.elapsed().as_secs_f64(),
        );
        last_pumped = now_pumped;
        if !json_out {
            eprintln!(
                "{:>6.0} s: {:>5.0} tx/s background, {:>5.1} ops/s (transfer {}, grant {}, record {}, read {}, revoke {}), errors {}, rss {:.0} MB, {} files, disk {:.0} MB",
                s.at_s,
                s.pump_tx_per_s,
                s.ops_per_s,
                s.ops[0],
                s.ops[1],
                s.ops[2],
                s.ops[3],
                s.ops[4],
                s.errors,
                s.rss_mb,
                s.open_files,
                s.disk_mb
            );
        }
        samples.push(s);
        last = now;
        last_at = Instant::now();
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = pump {
        p.join()
            .map_err(|_| anyhow::anyhow!("the transfer pump panicked"))?
            .context("transfer pump")?;
    }
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a soak client panicked"))?
            .context("soak client")?;
    }
    drop(net);
    let rates: Vec<f64> = {
        let mut r: Vec<f64> = samples[1..].iter().map(|s| s.ops_per_s).collect();
        r.sort_by(f64::total_cmp);
        r
    };
    let pump_rates: Vec<f64> = {
        let mut p: Vec<f64> = samples[1..].iter().map(|s| s.pump_tx_per_s).collect();
        p.sort_by(f64::total_cmp);
        p
    };
    let (start_s, end_s) = (&samples[0], samples.last().expect("one sample"));
    let report = serde_json::json!({
        "duration_s": start.elapsed().as_secs_f64(),
        "clients": args.clients,
        "ops": OPS,
        "ops_per_s_median": percentile(&rates, 0.5),
        "pump_tx_per_s_median": percentile(&pump_rates, 0.5),
        "ops_per_s_min": rates.first().copied().unwrap_or(0.0),
        "ops_per_s_max": rates.last().copied().unwrap_or(0.0),
        "errors": samples.iter().map(|s| s.errors).sum::<u64>(),
        "rss_mb_start": start_s.rss_mb,
        "rss_mb_end": end_s.rss_mb,
        "open_files_start": start_s.open_files,
        "open_files_end": end_s.open_files,
        "disk_mb_end": end_s.disk_mb,
        "samples": samples,
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "soak {:.0} s, {} clients + {:.0} tx/s background: median {:.1} ops/s (min {:.1}, max {:.1}), {} errors; node rss {:.0} -> {:.0} MB, open files {} -> {}, disk {:.0} MB",
            report["duration_s"].as_f64().unwrap_or(0.0),
            args.clients,
            report["pump_tx_per_s_median"].as_f64().unwrap_or(0.0),
            report["ops_per_s_median"].as_f64().unwrap_or(0.0),
            report["ops_per_s_min"].as_f64().unwrap_or(0.0),
            report["ops_per_s_max"].as_f64().unwrap_or(0.0),
            report["errors"],
            start_s.rss_mb,
            end_s.rss_mb,
            start_s.open_files,
            end_s.open_files,
            end_s.disk_mb
        );
    }
    Ok(())
}

/// Sends signed transfers in batches at about `rate` a second, round-robin over `senders`,
/// counting the admitted ones, until `stop`.
fn pump_transfers(
    url: &str,
    senders: Vec<Keypair>,
    rate: u64,
    stop: &AtomicBool,
    admitted: &AtomicU64,
) -> anyhow::Result<()> {
    use ehrchain_client::api::{BatchRequest, BatchResult};
    let client = Node::new(url);
    let sink = Keypair::generate().account();
    let mut nonces = vec![0u64; senders.len()];
    let tick = Duration::from_millis(100);
    let per_tick = (rate / 10).max(1) as usize;
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let txs = (0..per_tick)
            .map(|_| {
                let i = next % senders.len();
                next += 1;
                let k = &senders[i];
                let t = k.sign_tx(ehrchain_types::Transaction {
                    chain_id: "ehrchain-bench".into(),
                    signer: k.public_key(),
                    nonce: nonces[i],
                    payload: TxPayload::Transfer {
                        to: sink,
                        amount: 1,
                    },
                });
                nonces[i] += 1;
                hex::encode(ehrchain_types::encode(&t))
            })
            .collect();
        let results: Vec<BatchResult> =
            client.post("/api/v1/transactions/batch", &BatchRequest { txs })?;
        let ok = results.iter().filter(|r| r.id.is_some()).count();
        anyhow::ensure!(
            ok == results.len(),
            "the node refused background transfers: {:?}",
            results.iter().find_map(|r| r.error.clone())
        );
        admitted.fetch_add(ok as u64, Ordering::Relaxed);
        std::thread::sleep(tick.saturating_sub(began.elapsed()));
    }
    Ok(())
}
