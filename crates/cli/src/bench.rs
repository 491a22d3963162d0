//! `ehrchain bench`: committed token-transfer throughput of a fresh single-validator chain.
//!
//! Starts a real node (consensus, execution, redb storage) in-process on loopback ports,
//! pre-signs all transfers outside the timed window, submits them from several threads into
//! the node's mempool (the same admission path as the HTTP API, without HTTP parsing) and
//! measures from the first submission until the last transaction is finalized.

use anyhow::Context as _;
use clap::Args;
use ehrchain_crypto::Keypair;
use ehrchain_ledger::{GenesisAccount, GenesisState};
use ehrchain_node::{
    Chain, GenesisFile, NodeConfig,
    config::{BlockConfig, write_validator_key},
    genesis::GenesisValidator,
    mempool::MempoolLimits,
};
use ehrchain_types::{AccountId, PublicKey, SignedTransaction, Transaction, TxPayload};
use serde_json::json;
use std::{
    collections::HashMap,
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::{Duration, Instant},
};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Scenario to run (only `transfers` so far).
    #[arg(default_value = "transfers")]
    scenario: String,
    /// Transactions per run.
    #[arg(long, default_value_t = 20_000)]
    txs: usize,
    /// Distinct sending accounts.
    #[arg(long, default_value_t = 200)]
    senders: usize,
    /// Submitting threads.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Runs; the report gives the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Most transactions per block.
    #[arg(long, default_value_t = 5_000)]
    block_txs: usize,
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

struct RunResult {
    tps: f64,
    elapsed: f64,
    blocks: u64,
    p50_ms: f64,
    p99_ms: f64,
    rejected: usize,
    disk_bytes: u64,
}

fn dir_size(p: &std::path::Path) -> u64 {
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn one_run(args: &BenchArgs) -> anyhow::Result<RunResult> {
    anyhow::ensure!(
        args.senders >= 1 && args.txs >= 1 && args.clients >= 1,
        "counts must be at least 1"
    );
    let dir = tempfile::tempdir()?;
    let senders: Vec<Keypair> = (0..args.senders).map(|_| Keypair::generate()).collect();
    let sink = Keypair::generate().account();
    let validator = Keypair::generate();
    let (api, p2p) = (free_port()?, free_port()?);
    let genesis = GenesisFile {
        ledger: GenesisState {
            chain_id: "ehrchain-bench".into(),
            timestamp_ms: ehrchain_node::api::now_ms(),
            accounts: senders
                .iter()
                .map(|k| GenesisAccount {
                    public_key: k.public_key(),
                    role: None,
                    balance: 1_000_000_000,
                })
                .collect(),
        },
        validators: vec![GenesisValidator {
            name: "bench".into(),
            public_key: PublicKey(ehrchain_consensus::tcp::public_key_of_seed(
                &validator.seed(),
            )?),
            p2p_address: p2p,
        }],
    };
    genesis.save(&dir.path().join("genesis.json"))?;
    write_validator_key(&dir.path().join("validator.key"), &validator.seed())?;
    let cfg = NodeConfig {
        data_dir: dir.path().join("data"),
        genesis: dir.path().join("genesis.json"),
        validator_key: dir.path().join("validator.key"),
        api_listen: api,
        p2p_listen: p2p,
        mempool: MempoolLimits {
            max_txs: args.txs.max(1) + 1,
            max_per_sender: (args.txs / args.senders + 2) as u64,
        },
        block: BlockConfig {
            max_txs: args.block_txs,
            ..BlockConfig::default()
        },
    };
    // Pre-sign everything outside the timed window.
    let mut nonces = vec![0u64; senders.len()];
    let txs: Vec<SignedTransaction> = (0..args.txs)
        .map(|i| {
            let s = i % senders.len();
            let n = nonces[s];
            nonces[s] += 1;
            senders[s].sign_tx(Transaction {
                chain_id: "ehrchain-bench".into(),
                signer: senders[s].public_key(),
                nonce: n,
                payload: TxPayload::Transfer {
                    to: sink,
                    amount: 1,
                },
            })
        })
        .collect();

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Arc<Chain>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node_cfg = cfg.clone();
    let node = std::thread::spawn(move || {
        ehrchain_node::run::run_node(
            &node_cfg,
            Some(Box::pin(async move {
                let _ = stop_rx.await;
            })),
            move |chain| {
                let _ = ready_tx.send(chain);
            },
        )
    });
    let chain = ready_rx
        .recv_timeout(Duration::from_secs(60))
        .context("node did not start")?;
    // Let the engine settle on its first views.
    let h0 = chain.snapshot().tip.height;
    let settle = Instant::now();
    while chain.snapshot().tip.height < h0 + 1 && settle.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }

    let start = Instant::now();
    let submitted_at: Arc<std::sync::Mutex<HashMap<ehrchain_types::Hash, Instant>>> =
        Default::default();
    let chunks: Vec<Vec<SignedTransaction>> = {
        // Keep each sender's transactions in one client, in nonce order.
        let mut c = vec![Vec::new(); args.clients];
        for t in txs {
            let s = AccountId::from_public_key(&t.tx.signer);
            c[(s.0[0] as usize) % args.clients].push(t);
        }
        c
    };
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let chain = chain.clone();
            let submitted_at = submitted_at.clone();
            std::thread::spawn(move || {
                let mut refused = 0usize;
                for t in chunk {
                    let id = t.id();
                    let now = Instant::now();
                    match chain.submit(t, ehrchain_node::api::now_ms()) {
                        Ok(_) => {
                            submitted_at.lock().expect("lock").insert(id, now);
                        }
                        Err(_) => refused += 1,
                    }
                }
                refused
            })
        })
        .collect();
    let refused: usize = handles
        .into_iter()
        .map(|h| h.join().expect("submitter"))
        .sum();
    let expected = args.txs - refused;
    // Follow finalized blocks and time each transaction.
    let mut latencies = Vec::with_capacity(expected);
    let mut seen = chain.snapshot().tip.height.min(h0);
    let mut rejected = 0usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    while latencies.len() < expected && Instant::now() < deadline {
        let tip = chain.snapshot().tip.height;
        while seen < tip {
            seen += 1;
            let now = Instant::now();
            if let Some(b) = chain.store().block(seen)? {
                let map = submitted_at.lock().expect("lock");
                for t in &b.txs {
                    if let Some(at) = map.get(&t.id()) {
                        latencies.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                    }
                }
                rejected += chain
                    .store()
                    .receipts(seen)?
                    .iter()
                    .filter(|r| !matches!(r.outcome, ehrchain_types::TxOutcome::Applied))
                    .count();
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let blocks = seen - h0;
    let _ = stop_tx.send(());
    let _ = node.join();
    anyhow::ensure!(
        latencies.len() == expected,
        "only {} of {expected} transactions finalized",
        latencies.len()
    );
    anyhow::ensure!(
        refused == 0,
        "{refused} transactions were refused at submission"
    );
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(RunResult {
        tps: expected as f64 / elapsed,
        elapsed,
        blocks,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        rejected,
        disk_bytes: dir_size(&cfg.data_dir),
    })
}

pub fn run(json_out: bool, args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.scenario == "transfers",
        "unknown scenario {:?}: only `transfers` exists so far",
        args.scenario
    );
    let mut results = Vec::new();
    for i in 0..args.runs.max(1) {
        let r = one_run(&args)?;
        if !json_out {
            eprintln!(
                "run {}: {:.0} tx/s ({} txs in {:.2}s, {} blocks), latency p50 {:.0} ms p99 {:.0} ms",
                i + 1,
                r.tps,
                args.txs,
                r.elapsed,
                r.blocks,
                r.p50_ms,
                r.p99_ms
            );
        }
        results.push(r);
    }
    results.sort_by(|a, b| a.tps.total_cmp(&b.tps));
    let m = &results[results.len() / 2];
    let report = json!({
        "scenario": args.scenario,
        "validators": 1,
        "txs": args.txs,
        "senders": args.senders,
        "clients": args.clients,
        "runs": results.len(),
        "median_tps": m.tps,
        "min_tps": results[0].tps,
        "max_tps": results[results.len() - 1].tps,
        "median_run": {"elapsed_s": m.elapsed, "blocks": m.blocks, "latency_p50_ms": m.p50_ms,
                        "latency_p99_ms": m.p99_ms, "rejected_receipts": m.rejected,
                        "disk_bytes_per_tx": m.disk_bytes as f64 / args.txs as f64},
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "transfers, 1 validator, {} txs from {} senders, median of {} runs:\n  committed: {:.0} tx/s (min {:.0}, max {:.0})\n  latency submit->finalized: p50 {:.0} ms, p99 {:.0} ms\n  blocks: {}, disk: {:.0} bytes/tx",
            args.txs,
            args.senders,
            results.len(),
            m.tps,
            results[0].tps,
            results[results.len() - 1].tps,
            m.p50_ms,
            m.p99_ms,
            m.blocks,
            m.disk_bytes as f64 / args.txs as f64
        );
    }
    Ok(())
}
