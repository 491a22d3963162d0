//! `ehrchain bench`: a load generator and report against a fresh network of real validator
//! processes on loopback.
//!
//! Every run starts a new testnet (`validators` processes of this binary), pre-signs all
//! transactions outside the timed window, submits them over HTTP in batches from `clients`
//! threads (each sender's transactions through one client and one node, in nonce order; many
//! senders, since a few senders serialise on their nonces), follows finalized blocks on node 0
//! and reports committed throughput, submit→finalized latency, failures, block interval, CPU
//! and peak memory per node and bytes on disk per transaction.

use anyhow::{Context as _, bail};
use clap::Args;
use ehrchain_client::Node as Client;
use ehrchain_crypto::Keypair;
use ehrchain_ledger::GenesisAccount;
use ehrchain_node::{
    api::{BatchRequest, BatchResult, ReceiptsView, StatusView},
    testnet,
};
use ehrchain_types::{Hash, SignedTransaction, Transaction, TxPayload};
use serde_json::json;
use std::{
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenario: `transfers` (token transfers), `consent` (grant and revoke, alternating),
    /// `records` (anchoring encrypted records) — load on a fresh network — `client`
    /// (client-side costs: encryption throughput, audited read latency, grant cost with
    /// 10,000 records; see `bench_client.rs`), or `soak` (mixed load of transfers, consent,
    /// uploads and audited reads for `--duration`, with memory and open files over time;
    /// see `soak.rs`).
    #[arg(default_value = "transfers")]
    scenario: String,
    /// Validators, each its own process.
    #[arg(long, default_value_t = 1)]
    validators: usize,
    /// Transactions per run.
    #[arg(long, default_value_t = 20_000)]
    txs: usize,
    /// Distinct sending accounts.
    #[arg(long, default_value_t = 1_000)]
    senders: usize,
    /// Submitting client threads.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Offered load in tx/s across all clients (0: as fast as the node admits them; `half`:
    /// half the throughput the phase before it committed). Comma-separated for load phases
    /// run one after another on the same network (e.g. `0,half`: saturation, then latency at
    /// half of it, on one prefilled state). For `soak`, one figure: the background transfers
    /// per second beside the patients' mix.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    rate: Vec<Rate>,
    /// Transactions per HTTP batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Runs; the report gives the median run by throughput.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// `soak`: how long to run the mixed load (e.g. `30m`).
    #[arg(long, default_value = "5m")]
    duration: String,
    /// `soak`: seconds per reported interval.
    #[arg(long, default_value_t = 60)]
    interval: u64,
    /// `soak`: bytes of each uploaded record.
    #[arg(long, default_value_t = 64 * 1024)]
    record_bytes: usize,
    /// Records already on the chain when the load starts, comma-separated for one run set
    /// per size (e.g. `0,1000000`): a generated genesis state of synthetic records
    /// (`GenesisState::synthetic_records`), so nothing is signed to prefill.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    prefill: Vec<u64>,
}

/// The offered load of a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// This many tx/s across all clients; 0: as fast as the node admits them.
    Fixed(u64),
    /// Half the throughput the phase before it committed.
    Half,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        match s.trim() {
            "half" => Ok(Rate::Half),
            n => n.parse().map(Rate::Fixed).map_err(|_| {
                format!("{n:?} is not a rate: give tx/s (0: as fast as admitted) or `half`")
            }),
        }
    }
}

/// Per-node resource use.
#[derive(Clone, Debug, serde::Serialize)]
struct NodeUse {
    cpu_seconds: f64,
    peak_rss_mb: f64,
    disk_bytes: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
struct RunReport {
    prefill: u64,
    /// The phase's offered load in tx/s (0: as fast as the node admitted).
    offered_tps: u64,
    committed_tps: f64,
    elapsed_s: f64,
    finalized: usize,
    refused: usize,
    rejected: usize,
    lost: usize,
    failure_rate: f64,
    latency_ms_p50: f64,
    latency_ms_p95: f64,
    latency_ms_p99: f64,
    /// Of the latency, the part before the block carrying the transaction was built: its
    /// wait at the node (admission, mempool), p50 and p99 (block timestamp − submit time).
    wait_ms_p50: f64,
    wait_ms_p99: f64,
    blocks: u64,
    block_interval_ms: f64,
    /// The longest time between two consecutive blocks' timestamps in the phase.
    block_gap_ms_max: f64,
    mean_block_txs: f64,
    disk_bytes_per_tx: f64,
    /// Node 0's data dir over every record the chain holds (prefill and load).
    disk_bytes_per_record: f64,
    /// Node 0's resident memory right after start (the prefilled state loaded), MB.
    start_rss_mb: f64,
    /// Node 0's block builds in the phase (its `/metrics`).
    builds: Timing,
    /// Node 0's durable writes of finalized blocks in the phase.
    commits: Timing,
    nodes: Vec<NodeUse>,
}

/// What a node's histogram of a block timing counted in a phase: how many, their mean, and
/// the bucket bounds (ms) under which 99 % and all of them fell.
#[derive(Clone, Debug, Default, serde::Serialize)]
struct Timing {
    count: u64,
    mean_ms: f64,
    p99_ms_at_most: f64,
    max_ms_at_most: f64,
}

/// A histogram of `/metrics` text: its count, sum and cumulative buckets (upper bound in
/// seconds, count).
#[derive(Clone, Debug, Default)]
struct Histo {
    count: f64,
    sum: f64,
    buckets: Vec<(f64, f64)>,
}

fn histogram(metrics: &str, name: &str) -> Histo {
    let mut h = Histo::default();
    for line in metrics.lines() {
        let Some((key, value)) = line.strip_prefix(name).and_then(|r| r.split_once(' ')) else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        match key {
            "_count" => h.count = v,
            "_sum" => h.sum = v,
            k => {
                if let Some(le) =
                    (k.strip_prefix("_bucket{le=\"")).and_then(|k| k.strip_suffix("\"}"))
                {
                    h.buckets.push((le.parse().unwrap_or(f64::INFINITY), v));
                }
            }
        }
    }
    h
}

/// Node 0's block build and commit histograms (empty if it does not answer).
fn node_histograms(url: &str) -> (Histo, Histo) {
    let text = ureq::get(&format!("{url}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    (
        histogram(&text, "ehrchain_block_build_seconds"),
        histogram(&text, "ehrchain_block_commit_seconds"),
    )
}

/// What `after` counted since `before`.
fn timing(before: &Histo, after: &Histo) -> Timing {
    let count = after.count - before.count;
    let within = |q: f64| -> f64 {
        (after.buckets.iter())
            .map(|&(le, n)| {
                let was = (before.buckets.iter())
                    .find(|b| b.0 == le)
                    .map_or(0.0, |b| b.1);
                (le, n - was)
            })
            .find(|&(_, n)| n >= q * count)
            .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
    };
    Timing {
        count: count as u64,
        mean_ms: if count > 0.0 {
            (after.sum - before.sum) / count * 1000.0
        } else {
            0.0
        },
        p99_ms_at_most: within(0.99),
        max_ms_at_most: within(1.0),
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            total += if md.is_dir() {
                dir_size(&e.path())
            } else {
                md.len()
            };
        }
    }
    total
}

/// CPU seconds and peak resident memory of a live process, from /proc.
fn process_use(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |x| x.1)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat (11 and 12 after the name);
    // the kernel's USER_HZ is 100 on Linux.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    (cpu, status_mb(pid, "VmHWM:"))
}

/// A memory figure of `/proc/PID/status` (`VmHWM:` peak, `VmRSS:` now), in MB.
fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Resident memory of a live process now, in MB.
fn process_rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

fn free_base_port(n: usize) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let base = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if (base as usize) + 2 * n < 65_000
            && (0..2 * n as u16)
                .all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return Ok(base);
        }
    }
    bail!("no free range of {} ports on 127.0.0.1", 2 * n)
}

pub(crate) struct Network {
    children: Vec<Child>,
}

impl Network {
    /// The process id of validator `i`.
    pub(crate) fn pid(&self, i: usize) -> u32 {
        self.children[i].id()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for c in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.children {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a fresh testnet of `validators` processes of this binary in `dir` with the given
/// genesis accounts, and waits until every node has finalized a block.
pub(crate) fn start_network(
    dir: &Path,
    validators: usize,
    accounts: Vec<GenesisAccount>,
    prefill: u64,
) -> anyhow::Result<(Network, Vec<String>)> {
    let base = free_base_port(validators)?;
    let configs = testnet::init_with(dir, validators, base, "ehrchain-bench", accounts)?;
    if prefill > 0 {
        let path = dir.join("genesis.json");
        let mut genesis = ehrchain_node::genesis::load(&path)?;
        genesis.ledger.synthetic_records = prefill;
        ehrchain_node::genesis::save(&genesis, &path)?;
    }
    let exe = std::env::current_exe()?;
    let mut net = Network {
        children: Vec::new(),
    };
    for i in 0..configs.len() {
        let log = std::fs::File::create(testnet::node_dir(dir, i).join("node.log"))?;
        net.children.push(
            Command::new(&exe)
                .args(["node", "--config"])
                .arg(testnet::node_config(dir, i))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
    }
    let urls: Vec<String> = configs
        .iter()
        .map(|c| format!("http://{}", c.api_listen))
        .collect();
    let start_wait = Instant::now();
    loop {
        let up = urls.iter().all(|u| {
            Client::new(u)
                .get::<StatusView>("/api/v1/status")
                .is_ok_and(|s| s.height >= 1)
        });
        if up {
            break;
        }
        // Building a prefilled genesis state takes a while: minutes per million records,
        // more per million as the store grows (about 80 minutes for ten million here).
        if start_wait.elapsed() > Duration::from_secs(60 + prefill / 500) {
            bail!(
                "the network did not start (see node logs in {})",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((net, urls))
}

/// One run: a fresh network holding `prefill` records, then each load phase of `--rate` in
/// turn on it, each sender's transactions going on from the phase before.
fn one_run(args: &BenchArgs, prefill: u64) -> anyhow::Result<Vec<RunReport>> {
    let dir = tempfile::tempdir()?;
    let senders: Vec<Keypair> = (0..args.senders).map(|_| Keypair::generate()).collect();
    let sink = Keypair::generate().account();
    let doctor = Keypair::generate();
    let records = args.scenario != "transfers";
    let mut accounts: Vec<GenesisAccount> = senders
        .iter()
        .map(|k| GenesisAccount {
            public_key: k.public_key(),
            role: records.then_some(ehrchain_types::Role::Patient),
            balance: 1_000_000_000,
            encryption_key: records.then(|| k.encryption().public()),
        })
        .collect();
    // The observer follows block receipts, which the node shows consortium members only: a
    // genesis auditor.
    let auditor = Keypair::generate();
    accounts.push(GenesisAccount {
        public_key: auditor.public_key(),
        role: Some(ehrchain_types::Role::Auditor),
        balance: 0,
        encryption_key: None,
    });
    accounts.push(GenesisAccount {
        public_key: doctor.public_key(),
        role: Some(ehrchain_types::Role::Doctor),
        balance: 0,
        encryption_key: Some(doctor.encryption().public()),
    });
    let (net, urls) = start_network(dir.path(), args.validators, accounts, prefill)?;
    let start_rss_mb = net.children.first().map_or(0.0, |c| process_rss_mb(c.id()));
    let observer = Client::new(&urls[0]);
    // The records scenario needs each patient's category key first (untimed).
    let first_nonce = if args.scenario == "records" {
        setup_keys(&senders, &urls, &observer)?;
        1
    } else {
        0
    };
    let net_ctx = Phase {
        args,
        dir: dir.path(),
        net: &net,
        urls: &urls,
        observer: &observer,
        auditor: &auditor,
        senders: &senders,
        doctor: &doctor,
        sink,
        prefill,
        start_rss_mb,
        first_nonce,
    };
    let mut sent = vec![0u64; senders.len()];
    let mut reports: Vec<RunReport> = Vec::new();
    for rate in &args.rate {
        let offered = match rate {
            Rate::Fixed(n) => *n,
            Rate::Half => {
                let before = reports.last().context("`half` needs a phase before it")?;
                ((before.committed_tps / 2.0).round() as u64).max(1)
            }
        };
        if let Some(before) = reports.last()
            && before.refused + before.lost > 0
        {
            // Their senders' later nonces would wait on the missing ones forever.
            eprintln!(
                "warning: the phase before lost or refused transactions; the phases after it are skipped"
            );
            break;
        }
        reports.push(net_ctx.load(offered, &mut sent)?);
    }
    Ok(reports)
}

/// What a load phase runs on: the network of a run and its accounts.
struct Phase<'a> {
    args: &'a BenchArgs,
    dir: &'a Path,
    net: &'a Network,
    urls: &'a [String],
    observer: &'a Client,
    auditor: &'a Keypair,
    senders: &'a [Keypair],
    doctor: &'a Keypair,
    sink: ehrchain_types::AccountId,
    prefill: u64,
    start_rss_mb: f64,
    first_nonce: u64,
}

impl Phase<'_> {
    /// Submits `--txs` transactions at `offered` tx/s (0: as fast as admitted), `sent[s]`
    /// being how many sender `s` sent before, and follows them until finalized.
    fn load(&self, offered: u64, sent: &mut [u64]) -> anyhow::Result<RunReport> {
        let Phase {
            args,
            dir,
            net,
            urls,
            observer,
            auditor,
            senders,
            doctor,
            sink,
            prefill,
            start_rss_mb,
            first_nonce,
        } = *self;
        let cpu_before: Vec<f64> = (net.children.iter())
            .map(|c| process_use(c.id()).0)
            .collect();
        // Pre-sign outside the timed window; each sender's transactions stay in nonce order.
        let mut per_sender: Vec<Vec<SignedTransaction>> = vec![Vec::new(); senders.len()];
        for i in 0..args.txs {
            let s = i % senders.len();
            let k = sent[s];
            sent[s] += 1;
            let payload = payload(&args.scenario, &senders[s], doctor, sink, s, k);
            per_sender[s].push(senders[s].sign_tx(Transaction {
                chain_id: "ehrchain-bench".into(),
                signer: senders[s].public_key(),
                nonce: first_nonce + k,
                payload,
            }));
        }
        let mut work: Vec<Vec<(Hash, String)>> = vec![Vec::new(); args.clients];
        for (s, txs) in per_sender.into_iter().enumerate() {
            for t in txs {
                work[s % args.clients].push((t.id(), hex::encode(ehrchain_types::encode(&t))));
            }
        }
        let start_height = observer.get::<StatusView>("/api/v1/status")?.height;
        let histograms_before = node_histograms(&urls[0]);
        // Each transaction's submit time, monotonic and wall-clock (ms, to compare with
        // block timestamps).
        let submitted: Arc<Mutex<HashMap<Hash, (Instant, u64)>>> =
            Arc::new(Mutex::new(HashMap::with_capacity(args.txs)));
        let start = Instant::now();
        // Set when the phase times out: the clients stop sending into the next phase.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let per_client_rate = if offered == 0 {
            0.0
        } else {
            offered as f64 / args.clients as f64
        };
        let handles: Vec<_> = work
            .into_iter()
            .enumerate()
            .map(|(c, txs)| {
                let client = Client::new(&urls[c % urls.len()]);
                let submitted = submitted.clone();
                let stop = stop.clone();
                // At a given rate, send a batch every 20 ms or so rather than a big one now and
                // then: bursts would leave mempools empty in between and measure the burst.
                let batch = if per_client_rate > 0.0 {
                    ((per_client_rate * 0.02).ceil() as usize).min(args.batch)
                } else {
                    args.batch
                }
                .clamp(1, ehrchain_client::api::MAX_BATCH);
                std::thread::spawn(move || -> anyhow::Result<usize> {
                    let mut refused = 0;
                    let began = Instant::now();
                    let mut sent = 0usize;
                    for chunk in txs.chunks(batch) {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        if per_client_rate > 0.0 {
                            let due =
                                began + Duration::from_secs_f64(sent as f64 / per_client_rate);
                            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                        }
                        // Record the submit time before sending: a block may be finalized
                        // before the response is read.
                        let at = (Instant::now(), ehrchain_client::api::now_ms());
                        {
                            let mut map = submitted.lock().expect("lock");
                            for (id, _) in chunk {
                                map.insert(*id, at);
                            }
                        }
                        let req = BatchRequest {
                            txs: chunk.iter().map(|(_, h)| h.clone()).collect(),
                        };
                        let results: Vec<BatchResult> =
                            client.post("/api/v1/transactions/batch", &req)?;
                        let mut map = submitted.lock().expect("lock");
                        for ((id, _), r) in chunk.iter().zip(results) {
                            if r.id.is_none() {
                                map.remove(id);
                                refused += 1;
                            }
                        }
                        sent += chunk.len();
                    }
                    Ok(refused)
                })
            })
            .collect();

        // Follow finalized blocks on node 0 while the clients submit.
        let mut latencies = Vec::with_capacity(args.txs);
        let mut waits = Vec::with_capacity(args.txs);
        let mut seen = start_height;
        let mut rejected = 0usize;
        let mut timestamps = Vec::new();
        let mut block_txs = Vec::new();
        let mut last_final = start;
        // Twice the time the offered rate takes to send them all, a minute at least.
        let sending_s = (args.txs as u64 * 2).checked_div(offered).unwrap_or(0);
        let deadline = start + Duration::from_secs(60 + (args.txs as u64 / 200).max(sending_s));
        let mut refused = None;
        let mut handles = Some(handles);
        loop {
            if refused.is_none()
                && handles
                    .as_ref()
                    .is_some_and(|h| h.iter().all(|t| t.is_finished()))
            {
                let mut r = 0;
                for h in handles.take().expect("handles") {
                    r += h.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
                }
                refused = Some(r);
            }
            let tip = observer.get::<StatusView>("/api/v1/status")?.height;
            while seen < tip {
                seen += 1;
                let now = Instant::now();
                let path = format!("/api/v1/blocks/{seen}/receipts");
                let auth = auditor
                    .sign_request(
                        "ehrchain-bench",
                        "GET",
                        &path,
                        &ehrchain_client::api::request::empty_body(),
                        ehrchain_client::api::now_ms(),
                    )
                    .header_value();
                let view: ReceiptsView = observer.get_signed(&path, &auth)?;
                rejected += view
                    .receipts
                    .iter()
                    .filter(|r| !matches!(r.outcome, ehrchain_types::TxOutcome::Applied))
                    .count();
                timestamps.push(view.timestamp_ms);
                block_txs.push(view.receipts.len());
                let map = submitted.lock().expect("lock");
                for r in &view.receipts {
                    if let Some((at, at_ms)) = map.get(&r.tx_id) {
                        latencies.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                        waits.push(view.timestamp_ms.saturating_sub(*at_ms) as f64);
                        last_final = now;
                    }
                }
            }
            if let Some(r) = refused
                && latencies.len() + r >= args.txs
            {
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(handles) = handles {
            let mut r = 0;
            for h in handles {
                r += h.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
            }
            refused = Some(r);
        }
        let refused = refused.unwrap_or(0);
        let histograms_after = node_histograms(&urls[0]);
        let nodes: Vec<NodeUse> = net
            .children
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (cpu_seconds, peak_rss_mb) = process_use(c.id());
                NodeUse {
                    cpu_seconds: cpu_seconds - cpu_before[i],
                    peak_rss_mb,
                    disk_bytes: dir_size(&testnet::node_dir(dir, i).join("data")),
                }
            })
            .collect();
        let elapsed = last_final.duration_since(start).as_secs_f64().max(1e-9);
        let finalized = latencies.len();
        let lost = args.txs - finalized - refused;
        latencies.sort_by(|a, b| a.total_cmp(b));
        waits.sort_by(|a, b| a.total_cmp(b));
        let blocks = seen - start_height;
        let interval = if timestamps.len() > 1 {
            (timestamps[timestamps.len() - 1] - timestamps[0]) as f64
                / (timestamps.len() - 1) as f64
        } else {
            0.0
        };
        let node0_disk = nodes.first().map_or(0, |n| n.disk_bytes) as f64;
        let records = prefill + sent.iter().sum::<u64>();
        Ok(RunReport {
            prefill,
            offered_tps: offered,
            disk_bytes_per_record: node0_disk / records as f64,
            start_rss_mb,
            committed_tps: finalized as f64 / elapsed,
            elapsed_s: elapsed,
            finalized,
            refused,
            rejected,
            lost,
            failure_rate: (refused + rejected + lost) as f64 / args.txs as f64,
            latency_ms_p50: percentile(&latencies, 0.50),
            latency_ms_p95: percentile(&latencies, 0.95),
            latency_ms_p99: percentile(&latencies, 0.99),
            blocks,
            wait_ms_p50: percentile(&waits, 0.50),
            wait_ms_p99: percentile(&waits, 0.99),
            block_interval_ms: interval,
            block_gap_ms_max: (timestamps.windows(2))
                .map(|w| w[1].saturating_sub(w[0]))
                .max()
                .unwrap_or(0) as f64,
            mean_block_txs: block_txs.iter().sum::<usize>() as f64 / block_txs.len().max(1) as f64,
            disk_bytes_per_tx: node0_disk / sent.iter().sum::<u64>().max(1) as f64,
            builds: timing(&histograms_before.0, &histograms_after.0),
            commits: timing(&histograms_before.1, &histograms_after.1),
            nodes,
        })
    }
}

/// The `k`-th transaction of sender `s` in a scenario.
fn payload(
    scenario: &str,
    sender: &Keypair,
    doctor: &Keypair,
    sink: ehrchain_types::AccountId,
    s: usize,
    k: u64,
) -> TxPayload {
    use ehrchain_types::{Category, Grantee, HexBytes, RecordKey};
    let random = |n: usize| {
        let mut v = vec![0u8; n];
        getrandom::fill(&mut v).expect("OS random source");
        v
    };
    match scenario {
        "consent" if k.is_multiple_of(2) => TxPayload::Grant {
            to: Grantee::Account(doctor.account()),
            categories: vec![Category::Vitals],
            expires_ms: None,
            write: false,
            wraps: vec![],
        },
        "consent" => TxPayload::Revoke {
            from: Grantee::Account(doctor.account()),
            categories: vec![],
            rotations: vec![],
        },
        "records" => TxPayload::AddRecord(ehrchain_types::RecordDraft {
            id: ehrchain_crypto::envelope::new_record_id(),
            patient: sender.account(),
            category: Category::Lab,
            content: ehrchain_types::domain::tagged_hash(
                b"ehrchain/bench/v1",
                &[&(s as u64).to_be_bytes(), &k.to_be_bytes()],
            ),
            size: 1_000_000,
            commitment: Hash(random(32).try_into().expect("32 bytes")),
            meta: HexBytes(random(ehrchain_types::records::SEALED_META_BYTES)),
            key: RecordKey::Category {
                epoch: 0,
                wrapped: HexBytes(random(72)),
            },
            profile: false,
            coding: None,
        }),
        _ => TxPayload::Transfer {
            to: sink,
            amount: 1,
        },
    }
}

/// Gives every sender a `lab` key (epoch 0) and waits until all are finalized.
fn setup_keys(senders: &[Keypair], urls: &[String], observer: &Client) -> anyhow::Result<()> {
    let txs: Vec<String> = senders
        .iter()
        .map(|k| {
            let rotation =
                ehrchain_client::consent::fresh_rotation(k, ehrchain_types::Category::Lab, 0)
                    .expect("own key is valid");
            let t = k.sign_tx(Transaction {
                chain_id: "ehrchain-bench".into(),
                signer: k.public_key(),
                nonce: 0,
                payload: TxPayload::RotateKey { rotation },
            });
            hex::encode(ehrchain_types::encode(&t))
        })
        .collect();
    let client = Client::new(&urls[0]);
    for chunk in txs.chunks(ehrchain_client::api::MAX_BATCH) {
        let _: Vec<BatchResult> = client.post(
            "/api/v1/transactions/batch",
            &BatchRequest {
                txs: chunk.to_vec(),
            },
        )?;
    }
    let last = senders.last().expect("at least one sender").account();
    let start = Instant::now();
    loop {
        let a: ehrchain_client::api::AccountView =
            observer.get(&format!("/api/v1/accounts/{last}"))?;
        if a.account.nonce >= 1 {
            // Blocks apply senders in submission order; wait one more block for stragglers.
            std::thread::sleep(Duration::from_millis(500));
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("setting up the patients' keys did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run(json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    if args.scenario == "client" {
        return crate::bench_client::run(json_out);
    }
    if args.scenario == "soak" {
        return crate::soak::run(
            json_out,
            crate::soak::SoakArgs {
                duration: args.duration,
                interval: args.interval,
                clients: args.clients,
                record_bytes: args.record_bytes,
                rate: match args.rate.as_slice() {
                    [Rate::Fixed(n)] => *n,
                    _ => bail!("`soak` takes one --rate in tx/s"),
                },
            },
        );
    }
    if !["transfers", "consent", "records"].contains(&args.scenario.as_str()) {
        bail!(
            "unknown scenario {:?} (expected transfers, consent, records, client or soak)",
            args.scenario
        );
    }
    anyhow::ensure!(
        args.validators >= 1 && args.validators <= testnet::MAX_VALIDATORS,
        "--validators must be between 1 and {}",
        testnet::MAX_VALIDATORS
    );
    anyhow::ensure!(
        args.txs >= 1 && args.senders >= 1 && args.clients >= 1 && args.runs >= 1,
        "counts must be at least 1"
    );
    anyhow::ensure!(
        args.txs.div_ceil(args.senders) <= 1_000,
        "each sender may queue at most 1000 transactions: use --senders {} or more",
        args.txs.div_ceil(1_000)
    );
    anyhow::ensure!(
        args.rate.first() != Some(&Rate::Half),
        "`half` needs a phase before it (e.g. --rate 0,half)"
    );
    // One entry per (prefill, phase): the median run by throughput, and every run's.
    let mut results = Vec::new();
    for &prefill in &args.prefill {
        let mut phases: Vec<Vec<RunReport>> = vec![Vec::new(); args.rate.len()];
        for i in 0..args.runs {
            let reports = one_run(&args, prefill)
                .with_context(|| format!("run {} with {prefill} records prefilled", i + 1))?;
            for (p, r) in reports.into_iter().enumerate() {
                if !json_out {
                    eprintln!(
                        "prefill {prefill}, run {}, offered {}: {:.0} tx/s, p50 {:.0} ms, p99 {:.0} ms, failures {:.2}%",
                        i + 1,
                        offered_label(r.offered_tps),
                        r.committed_tps,
                        r.latency_ms_p50,
                        r.latency_ms_p99,
                        r.failure_rate * 100.0
                    );
                }
                phases[p].push(r);
            }
        }
        for mut runs in phases {
            if runs.is_empty() {
                continue;
            }
            // A saturating phase measures throughput, a phase at a given rate its latency.
            if runs[0].offered_tps == 0 {
                runs.sort_by(|a, b| a.committed_tps.total_cmp(&b.committed_tps));
            } else {
                runs.sort_by(|a, b| a.latency_ms_p99.total_cmp(&b.latency_ms_p99));
            }
            let median = runs[runs.len() / 2].clone();
            if !json_out {
                print_summary(&args, &runs, &median);
            }
            results.push((median, runs));
        }
    }
    if json_out {
        let report = json!({
            "scenario": args.scenario,
            "validators": args.validators,
            "txs": args.txs,
            "senders": args.senders,
            "clients": args.clients,
            "runs": args.runs,
            "results": results.iter().map(|(m, runs)| json!({
                "prefill": m.prefill,
                "offered_tps": m.offered_tps,
                "median": m,
                "all_tps": runs.iter().map(|r| r.committed_tps).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if results.len() > 1 {
        println!(
            "\nprefilled records | offered tx/s | tx/s | p50 ms | p99 ms | block interval ms | node0 RSS at start / peak MB | disk bytes/record"
        );
        for (m, _) in &results {
            println!(
                "{:>17} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {:.0}",
                m.prefill,
                offered_label(m.offered_tps),
                m.committed_tps,
                m.latency_ms_p50,
                m.latency_ms_p99,
                m.block_interval_ms,
                m.start_rss_mb,
                m.nodes.first().map_or(0.0, |n| n.peak_rss_mb),
                m.disk_bytes_per_record
            );
        }
    }
    Ok(())
}

/// An offered load for reports: tx/s, or "max" for as fast as admitted.
fn offered_label(tps: u64) -> String {
    if tps == 0 {
        "max".into()
    } else {
        tps.to_string()
    }
}

fn print_summary(args: &BenchArgs, runs: &[RunReport], m: &RunReport) {
    println!(
        "{} x {} txs, {} validator(s), {} senders, {} clients, {} records prefilled, offered {} tx/s, median of {} runs (by throughput at max, else by p99)",
        args.scenario,
        args.txs,
        args.validators,
        args.senders,
        args.clients,
        m.prefill,
        offered_label(m.offered_tps),
        runs.len()
    );
    println!(
        "  committed throughput   {:>10.0} tx/s   (runs: {})",
        m.committed_tps,
        runs.iter()
            .map(|r| format!("{:.0}", r.committed_tps))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  latency submit->final  p50 {:.0} ms  p95 {:.0} ms  p99 {:.0} ms",
        m.latency_ms_p50, m.latency_ms_p95, m.latency_ms_p99
    );
    println!(
        "  of which before its block  p50 {:.0} ms  p99 {:.0} ms",
        m.wait_ms_p50, m.wait_ms_p99
    );
    println!(
        "  failures               {:.2}%  (refused {}, rejected {}, not finalized {})",
        m.failure_rate * 100.0,
        m.refused,
        m.rejected,
        m.lost
    );
    println!(
        "  blocks                 {} (every {:.0} ms, longest gap {:.0} ms, {:.0} txs each)",
        m.blocks, m.block_interval_ms, m.block_gap_ms_max, m.mean_block_txs
    );
    println!(
        "  disk (node0, so far)   {:.0} bytes/tx, {:.0} bytes/record",
        m.disk_bytes_per_tx, m.disk_bytes_per_record
    );
    for (what, t) in [("block builds", &m.builds), ("block writes", &m.commits)] {
        println!(
            "  node0 {what}     {} (mean {:.1} ms, 99 % within {:.0} ms, all within {:.0} ms)",
            t.count, t.mean_ms, t.p99_ms_at_most, t.max_ms_at_most
        );
    }
    println!("  node0 memory at start  {:.0} MB", m.start_rss_mb);
    for (i, n) in m.nodes.iter().enumerate() {
        println!(
            "  node{i}                  cpu {:.1} s in the phase, peak memory since start {:.0} MB",
            n.cpu_seconds, n.peak_rss_mb
        );
    }
}
