//! Integration tests of the node: multi-validator consensus on the deterministic runtime
//! with the real chain (execution + redb storage), restart from storage, and the API.

use ehrchain_consensus::{Ledger, Verdict, sim};
use ehrchain_crypto::Keypair;
use ehrchain_ledger::{GenesisAccount, GenesisState};
use ehrchain_node::{Chain, config::BlockConfig, mempool::MempoolLimits, store::ChainStore};
use ehrchain_types::{Block, Hash, PublicKey, SignedTransaction, Transaction, TxPayload};
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU32, Ordering},
};

struct Net {
    dirs: Vec<tempfile::TempDir>,
    /// Every validator's current chain; a restart replaces its entry with the chain reopened
    /// from the validator's data dir (`None` only while it does so).
    chains: Arc<Mutex<Vec<Option<Arc<Chain>>>>>,
    /// `(validator, incarnation, height)` of every reopened chain, in order.
    reopened: Arc<Mutex<Vec<(usize, u32, u64)>>>,
    genesis: GenesisState,
    senders: Vec<Keypair>,
    block: BlockConfig,
}

impl Net {
    fn chains(&self) -> Vec<Arc<Chain>> {
        (0..self.dirs.len()).map(|v| self.chain(v)).collect()
    }

    fn chain(&self, v: usize) -> Arc<Chain> {
        self.chains.lock().unwrap()[v].clone().expect("open")
    }

    fn reopened(&self) -> Vec<(usize, u32, u64)> {
        self.reopened.lock().unwrap().clone()
    }

    /// The simulation's ledger factory. Incarnation 0 is the chain opened (and given its
    /// transactions) before the run. A restart drops the crashed incarnation's chain, which
    /// nothing else may hold any more, and opens the validator's data dir again the way
    /// `run_node` does: the recovered chain has only what the store made durable.
    /// `wrap` may put a validator's chain behind a [`Ledger`] adapter (a fault).
    fn ledgers(
        &self,
        wrap: Option<Wrap>,
    ) -> impl Fn(usize, u32) -> Arc<dyn Ledger> + Send + 'static {
        let chains = self.chains.clone();
        let reopened = self.reopened.clone();
        let paths: Vec<std::path::PathBuf> =
            self.dirs.iter().map(|d| d.path().to_path_buf()).collect();
        let (genesis, block) = (self.genesis.clone(), self.block);
        move |v, incarnation| {
            let mut chains = chains.lock().unwrap();
            let chain = if incarnation == 0 {
                chains[v].clone().expect("open")
            } else {
                let crashed = chains[v].take().expect("open");
                assert_eq!(
                    Arc::strong_count(&crashed),
                    1,
                    "validator {v}'s crashed incarnation still holds its chain"
                );
                drop(crashed);
                let chain = open_chain_with(&paths[v], &genesis, block);
                reopened
                    .lock()
                    .unwrap()
                    .push((v, incarnation, chain.snapshot().tip.height));
                chains[v] = Some(chain.clone());
                chain
            };
            match &wrap {
                Some(wrap) => wrap(v, chain),
                None => chain,
            }
        }
    }
}

/// Puts validator `v`'s chain behind an adapter, or returns it as it is.
type Wrap = Arc<dyn Fn(usize, Arc<Chain>) -> Arc<dyn Ledger> + Send + Sync>;

/// A validator's chain with faults injected.
struct Faulty {
    chain: Arc<Chain>,
    /// How far this validator's clock runs ahead of the engine's (everyone else's).
    clock_ahead_ms: u64,
    /// How many more times its disk refuses to commit a finalized block above height 3.
    commit_failures: Arc<AtomicU32>,
}

impl Faulty {
    fn new(chain: Arc<Chain>) -> Faulty {
        Faulty {
            chain,
            clock_ahead_ms: 0,
            commit_failures: Arc::default(),
        }
    }
}

impl Ledger for Faulty {
    fn propose(
        &self,
        parent: &Block,
        view: u64,
        proposer: PublicKey,
        now_ms: u64,
    ) -> Option<Block> {
        let now_ms = now_ms + self.clock_ahead_ms;
        self.chain.propose(parent, view, proposer, now_ms)
    }
    fn verify(&self, parent: &Block, block: &Block, now_ms: u64) -> Verdict {
        self.chain
            .verify(parent, block, now_ms + self.clock_ahead_ms)
    }
    fn has_state(&self, id: &Hash) -> bool {
        self.chain.has_state(id)
    }
    fn finalized_height(&self) -> u64 {
        self.chain.finalized_height()
    }
    fn has_pending(&self) -> bool {
        self.chain.has_pending()
    }
    fn take_gossip(&self) -> Vec<u8> {
        self.chain.take_gossip()
    }
    fn receive_gossip(&self, bytes: &[u8], now_ms: u64) {
        self.chain
            .receive_gossip(bytes, now_ms + self.clock_ahead_ms)
    }
    fn finalized_many(&self, blocks: &[(&Block, Option<Vec<u8>>)]) -> Result<(), String> {
        let fail = blocks.iter().any(|(b, _)| b.header.height > 3)
            && self
                .commit_failures
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
        if fail {
            return Err("no space left on device".into());
        }
        self.chain.finalized_many(blocks)
    }
}

fn genesis(senders: &[Keypair]) -> GenesisState {
    GenesisState {
        chain_id: "sim".into(),
        timestamp_ms: 0,
        synthetic_records: 0,
        accounts: senders
            .iter()
            .map(|k| GenesisAccount {
                public_key: k.public_key(),
                role: None,
                balance: 1_000,
                encryption_key: Some(k.encryption().public()),
            })
            .collect(),
    }
}

fn open_chain(dir: &std::path::Path, g: &GenesisState) -> Arc<Chain> {
    open_chain_with(dir, g, BlockConfig::default())
}

fn open_chain_with(dir: &std::path::Path, g: &GenesisState, block: BlockConfig) -> Arc<Chain> {
    let store = ChainStore::open(&dir.join("chain.redb")).unwrap();
    Arc::new(Chain::open(store, g, MempoolLimits::default(), block).unwrap())
}

fn net_with(validators: usize, senders: usize, block: BlockConfig) -> Net {
    let senders: Vec<Keypair> = (0..senders)
        .map(|i| Keypair::from_seed(&[i as u8 + 1; 32]))
        .collect();
    let g = genesis(&senders);
    let dirs: Vec<_> = (0..validators)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let chains: Vec<_> = dirs
        .iter()
        .map(|d| open_chain_with(d.path(), &g, block))
        .collect();
    Net {
        dirs,
        chains: Arc::new(Mutex::new(chains.into_iter().map(Some).collect())),
        reopened: Arc::default(),
        genesis: g,
        senders,
        block,
    }
}

/// `per_sender` transfers from every sender, in nonce order.
fn transfers(senders: &[Keypair], per_sender: u64) -> Vec<SignedTransaction> {
    let sink = Keypair::from_seed(&[200; 32]).account();
    let mut out = Vec::new();
    for n in 0..per_sender {
        for k in senders {
            out.push(k.sign_tx(Transaction {
                chain_id: "sim".into(),
                signer: k.public_key(),
                nonce: n,
                payload: TxPayload::Transfer {
                    to: sink,
                    amount: 1,
                },
            }));
        }
    }
    out
}

/// Every validator receives every transaction (as gossip would deliver them).
fn submit_all(chains: &[Arc<Chain>], txs: &[SignedTransaction]) {
    for c in chains {
        for t in txs {
            c.submit(t.clone(), 0).unwrap();
        }
    }
}

fn finalized_count(c: &Chain) -> u64 {
    c.snapshot().state.accounts.values().map(|a| a.nonce).sum()
}

/// Checks the safety invariants over the honest chains and returns the block ids of their
/// common prefix: no two different finalized blocks at one height, equal state roots, and
/// every submitted transaction finalized exactly once.
fn check_agreement(chains: &[Arc<Chain>], expected_txs: u64) -> Vec<Hash> {
    let min_height = chains
        .iter()
        .map(|c| c.snapshot().tip.height)
        .min()
        .unwrap();
    let mut ids = Vec::new();
    for h in 0..=min_height {
        let blocks: Vec<_> = chains
            .iter()
            .map(|c| c.store().block(h).unwrap().unwrap())
            .collect();
        for b in &blocks[1..] {
            assert_eq!(
                b.id(),
                blocks[0].id(),
                "two different finalized blocks at height {h}"
            );
            assert_eq!(b.header.state_root, blocks[0].header.state_root);
        }
        ids.push(blocks[0].id());
    }
    for c in chains {
        let total: u64 = (1..=c.snapshot().tip.height)
            .map(|h| c.store().block(h).unwrap().unwrap().txs.len() as u64)
            .sum();
        assert_eq!(
            total, expected_txs,
            "each transaction is finalized exactly once"
        );
        assert_eq!(finalized_count(c), expected_txs);
    }
    ids
}

struct SimRun {
    net: Net,
    ids: Vec<Hash>,
    outcome: sim::SimOutcome,
}

/// How a simulation is set up besides its [`sim::SimConfig`].
struct Setup {
    /// Transfers from each of 10 senders.
    per_sender: u64,
    /// Submit every transaction to this validator only (`Some(i)`; the others learn them
    /// through gossip), or to every validator.
    submit_to: Option<usize>,
    block: BlockConfig,
    /// Faults injected through a [`Ledger`] adapter.
    wrap: Option<Wrap>,
}

impl Setup {
    fn new(per_sender: u64) -> Setup {
        Setup {
            per_sender,
            submit_to: None,
            block: BlockConfig::default(),
            wrap: None,
        }
    }
}

/// Runs a simulation in which every honest validator holds every transaction, until all
/// honest validators have finalized all of them; then checks agreement.
fn run_sim(cfg: &sim::SimConfig, per_sender: u64) -> SimRun {
    run_sim_with(cfg, Setup::new(per_sender))
}

/// [`run_sim`], submitting every transaction to one validator only (`Some(i)`): the others
/// learn them through gossip.
fn run_sim_submitting_to(cfg: &sim::SimConfig, per_sender: u64, only: Option<usize>) -> SimRun {
    // Small blocks when submitting to one validator, so that several leaders must include them.
    let block = match only {
        Some(_) => BlockConfig {
            max_txs: 10,
            ..BlockConfig::default()
        },
        None => BlockConfig::default(),
    };
    run_sim_with(
        cfg,
        Setup {
            submit_to: only,
            block,
            ..Setup::new(per_sender)
        },
    )
}

/// Runs a simulation as `setup` says until every honest validator has finalized every
/// transaction (the honest chains are read afresh each time, so a restarted validator counts
/// with its reopened chain); then checks agreement.
fn run_sim_with(cfg: &sim::SimConfig, setup: Setup) -> SimRun {
    let n = net_with(cfg.validators, 10, setup.block);
    let txs = transfers(&n.senders, setup.per_sender);
    let chains = n.chains();
    match setup.submit_to {
        Some(i) => submit_all(&chains[i..=i], &txs),
        None => submit_all(&chains, &txs),
    }
    drop(chains);
    let expected = txs.len() as u64;
    let byzantine = cfg.byzantine.map(|(b, _)| b);
    let honest: Vec<usize> = (0..cfg.validators)
        .filter(|i| Some(*i) != byzantine)
        .collect();
    let watch = n.chains.clone();
    let watched = honest.clone();
    let gblock = ehrchain_ledger::genesis(&n.genesis).0;
    let outcome = sim::run(cfg, gblock, n.ledgers(setup.wrap), move || {
        let chains = watch.lock().unwrap();
        watched.iter().all(|&i| {
            let chain = chains[i].as_ref().expect("open");
            finalized_count(chain) == expected && chain.snapshot().tip.height >= 5
        })
    });
    assert!(
        outcome.done,
        "the network did not finalize every transaction in time ({cfg:?})"
    );
    let honest: Vec<Arc<Chain>> = honest.iter().map(|&i| n.chain(i)).collect();
    let ids = check_agreement(&honest, expected);
    SimRun {
        net: n,
        ids,
        outcome,
    }
}

/// Changes the chain database at `path` behind the node's back (a test's corruption).
fn edit_store(path: &std::path::Path, f: &dyn Fn(&redb::WriteTransaction)) {
    let db = redb::Database::open(path).unwrap();
    let w = db.begin_write().unwrap();
    f(&w);
    w.commit().unwrap();
}

/// The offline check of the stored state at `path` against a replay's state.
fn check_store(
    path: &std::path::Path,
    replay: &ehrchain_ledger::State,
) -> Result<ehrchain_node::store::StateCheck, String> {
    let store = ChainStore::open(path).unwrap();
    store.check_state(replay).map_err(|e| e.to_string())
}

fn secs(s: u64) -> std::time::Duration {
    std::time::Duration::from_secs(s)
}

#[test]
fn four_validators_finalize_and_agree() {
    let cfg = sim::SimConfig {
        seed: 7,
        ..sim::SimConfig::default()
    };
    assert!(run_sim(&cfg, 20).ids.len() > 5);
}

#[test]
fn transactions_submitted_to_one_validator_reach_every_leader() {
    let cfg = sim::SimConfig {
        seed: 51,
        ..sim::SimConfig::default()
    };
    let run = run_sim_submitting_to(&cfg, 20, Some(0));
    let chain = run.net.chain(1);
    let v0 = ehrchain_types::PublicKey(sim::validator_public_key(0));
    let proposers_with_txs: std::collections::BTreeSet<_> = (1..=chain.snapshot().tip.height)
        .map(|h| chain.store().block(h).unwrap().unwrap())
        .filter(|b| !b.txs.is_empty())
        .map(|b| b.header.proposer)
        .collect();
    assert!(
        proposers_with_txs.iter().any(|p| *p != v0),
        "only the validator that received the transactions ever included them"
    );
}

#[test]
fn seven_validators_with_loss_and_delay() {
    let cfg = sim::SimConfig {
        seed: 11,
        validators: 7,
        delivery_per_mille: 900,
        latency: std::time::Duration::from_millis(60),
        jitter: std::time::Duration::from_millis(40),
        ..sim::SimConfig::default()
    };
    run_sim(&cfg, 5);
}

#[test]
fn lossy_four_validators() {
    let cfg = sim::SimConfig {
        seed: 12,
        delivery_per_mille: 850,
        jitter: std::time::Duration::from_millis(40),
        ..sim::SimConfig::default()
    };
    run_sim(&cfg, 5);
}

#[test]
fn partition_heals_without_fork() {
    // 2/2: nobody has a quorum until the partition heals.
    let cfg = sim::SimConfig {
        seed: 21,
        faults: vec![sim::Fault::Partition {
            at: secs(1),
            until: secs(15),
            group: vec![0, 1],
        }],
        ..sim::SimConfig::default()
    };
    run_sim(&cfg, 5);
    // 3/1: the majority keeps finalizing; the isolated one catches up after healing.
    let cfg = sim::SimConfig {
        seed: 22,
        faults: vec![sim::Fault::Partition {
            at: secs(0),
            until: secs(10),
            group: vec![3],
        }],
        ..sim::SimConfig::default()
    };
    run_sim(&cfg, 5);
}

#[test]
fn crashed_validator_restarts_and_catches_up() {
    let cfg = sim::SimConfig {
        seed: 31,
        faults: vec![sim::Fault::Crash {
            v: 2,
            at: secs(1),
            restart_at: secs(12),
        }],
        ..sim::SimConfig::default()
    };
    run_sim(&cfg, 10);
}

#[test]
fn crashed_validator_recovers_from_its_storage_mid_run() {
    // Five transactions a block, so that the crash lands with most of them still pending.
    let cfg = sim::SimConfig {
        seed: 32,
        faults: vec![sim::Fault::Crash {
            v: 2,
            at: std::time::Duration::from_millis(1_500),
            restart_at: secs(8),
        }],
        ..sim::SimConfig::default()
    };
    let setup = Setup {
        block: BlockConfig {
            max_txs: 5,
            ..BlockConfig::default()
        },
        ..Setup::new(40)
    };
    let run = run_sim_with(&cfg, setup);
    let reopened = run.net.reopened();
    let crashed = run.net.chain(2);
    let tip = crashed.snapshot().tip.height;
    let [(2, 1, recovered)] = reopened[..] else {
        panic!("validator 2 was not reopened from its data dir exactly once: {reopened:?}");
    };
    // It had finalized blocks before the crash, and transactions were still in flight: some
    // were finalized only above the height it recovered.
    assert!(recovered > 0, "the crash came before any block was final");
    let late_txs: usize = (recovered + 1..=tip)
        .map(|h| crashed.store().block(h).unwrap().unwrap().txs.len())
        .sum();
    assert!(late_txs > 0, "every transaction was final before the crash");
    // The reopened chain applied blocks after the restart, and every honest chain agrees on
    // every common height (`check_agreement` in `run_sim_with`): the same block and state root.
    assert!(tip > recovered, "the recovered validator made no progress");
    assert!(run.ids.len() as u64 > recovered + 1);
    let snap = crashed.snapshot();
    assert_eq!(snap.state.root(), snap.tip.state_root);
}

#[test]
fn blocks_from_a_fast_clock_are_verified_once_due() {
    let drift = 200;
    let proposed_by_fast = |ahead_ms: u64| {
        let cfg = sim::SimConfig {
            seed: 71,
            ..sim::SimConfig::default()
        };
        let setup = Setup {
            block: BlockConfig {
                max_txs: 10,
                max_clock_drift_ms: drift,
                ..BlockConfig::default()
            },
            wrap: Some(Arc::new(move |v, chain| match v {
                0 => Arc::new(Faulty {
                    clock_ahead_ms: ahead_ms,
                    ..Faulty::new(chain)
                }),
                _ => chain,
            })),
            ..Setup::new(10)
        };
        let run = run_sim_with(&cfg, setup);
        let chain = run.net.chain(1);
        let fast = PublicKey(sim::validator_public_key(0));
        (1..=chain.snapshot().tip.height)
            .filter(|&h| chain.store().block(h).unwrap().unwrap().header.proposer == fast)
            .count()
    };
    // 1.5 drifts ahead: the others wait until its blocks are within one drift of their clocks,
    // then vote for them (answering `false` at once would refuse every one for good).
    assert!(proposed_by_fast(drift * 3 / 2) > 0);
    // 2.5 drifts ahead is past the bound: its blocks are refused, and the others carry on.
    assert_eq!(proposed_by_fast(drift * 5 / 2), 0);
}

#[test]
fn a_stalled_executor_catches_up_without_gaps() {
    // Validator 1 cannot commit for about 10 s (one retry a second) while the others finalize:
    // marshal holds back its blocks until the executor acknowledges, then hands over the rest
    // in order. Nothing is dropped (a gap would trip `Chain::finalized`'s height assertion) and
    // nothing deadlocks (it finalizes every transaction).
    let cfg = sim::SimConfig {
        seed: 81,
        ..sim::SimConfig::default()
    };
    let failures = Arc::new(AtomicU32::new(10));
    let failing = failures.clone();
    let setup = Setup {
        block: BlockConfig {
            max_txs: 10,
            ..BlockConfig::default()
        },
        wrap: Some(Arc::new(move |v, chain| match v {
            1 => Arc::new(Faulty {
                commit_failures: failing.clone(),
                ..Faulty::new(chain)
            }),
            _ => chain,
        })),
        ..Setup::new(10)
    };
    let run = run_sim_with(&cfg, setup);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "the disk never filled");
    // It committed past the blocks that failed, and `check_agreement` found every height the
    // same as on the others.
    assert!(run.net.chain(1).snapshot().tip.height > 4);
}

#[test]
fn late_validator_with_empty_storage_catches_up() {
    let cfg = sim::SimConfig {
        seed: 61,
        faults: vec![sim::Fault::Join { v: 3, at: secs(15) }],
        ..sim::SimConfig::default()
    };
    let run = run_sim(&cfg, 10);
    // It joined long after the first blocks were final and still holds the whole chain.
    assert!(run.ids.len() > 10);
    let late = run.net.chain(3);
    assert_eq!(late.store().block(1).unwrap().unwrap().id(), run.ids[1]);
}

#[test]
fn byzantine_validators_do_not_break_safety() {
    for (seed, kind) in [
        (41, sim::Byzantine::Conflicter),
        (42, sim::Byzantine::Nuller),
        (43, sim::Byzantine::Outdated),
        (44, sim::Byzantine::NullifyOnly),
    ] {
        let cfg = sim::SimConfig {
            seed,
            byzantine: Some((3, kind)),
            ..sim::SimConfig::default()
        };
        let run = run_sim(&cfg, 5);
        for (by, who) in &run.outcome.blocked {
            assert_eq!(
                *who, 3,
                "{kind:?}: honest validator {by} was blocked instead of the Byzantine one"
            );
        }
    }
}

#[test]
fn same_seed_same_run() {
    let cfg = sim::SimConfig {
        seed: 3,
        faults: vec![sim::Fault::Crash {
            v: 1,
            at: secs(1),
            restart_at: secs(4),
        }],
        ..sim::SimConfig::default()
    };
    let a = run_sim(&cfg, 5);
    let b = run_sim(&cfg, 5);
    assert_eq!(a.outcome.audit, b.outcome.audit, "same seed, different run");
    let common = a.ids.len().min(b.ids.len());
    assert_eq!(
        a.ids[..common],
        b.ids[..common],
        "same seed, different chain"
    );
    let c = run_sim(&sim::SimConfig { seed: 4, ..cfg }, 5);
    assert_ne!(a.outcome.audit, c.outcome.audit, "the seed has no effect");
}

#[test]
fn restart_reopens_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let senders: Vec<Keypair> = (0..2).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
    let g = genesis(&senders);
    let chain = open_chain(dir.path(), &g);
    // Drive the chain by hand as the engine would: propose on the tip, finalize.
    let txs = transfers(&senders, 3);
    for t in &txs {
        chain.submit(t.clone(), 0).unwrap();
    }
    let tip = chain.store().tip().unwrap().unwrap();
    let b1 = chain
        .propose(&tip, 1, ehrchain_types::PublicKey([1; 32]), 1_000)
        .unwrap();
    assert_eq!(b1.txs.len(), 6);
    chain.finalized(&b1, None).unwrap();
    // A redelivery after restart is ignored.
    chain.finalized(&b1, None).unwrap();
    let root = chain.snapshot().tip.state_root;
    drop(chain);
    let again = open_chain(dir.path(), &g);
    assert_eq!(again.snapshot().tip.height, 1);
    assert_eq!(again.snapshot().tip.state_root, root);
    // The finalized transactions are refused as replays, not re-admitted.
    let err = again.submit(txs[0].clone(), 0).unwrap_err();
    assert!(err.to_string().contains("replayed"), "{err}");
    // Another chain's genesis cannot open this store.
    let other = genesis(&senders[..1]);
    let store = ChainStore::open(&dir.path().join("other.redb")).unwrap();
    drop(store);
    drop(again);
    let store = ChainStore::open(&dir.path().join("chain.redb")).unwrap();
    let err = Chain::open(
        store,
        &other,
        MempoolLimits::default(),
        BlockConfig::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("fresh data dir"), "{err}");
    // The same genesis written differently (accounts in another order): another file
    // digest, the same genesis block, so the store is accepted.
    let mut reordered = g.clone();
    reordered.accounts.reverse();
    let again = open_chain(dir.path(), &reordered);
    assert_eq!(again.snapshot().tip.state_root, root);
}

/// Proposes a block of everything `chain`'s mempool holds on its tip and finalizes it.
fn finalize_next(chain: &Chain, txs: &[SignedTransaction]) -> Block {
    for t in txs {
        chain.submit(t.clone(), 0).unwrap();
    }
    let tip = chain.store().tip().unwrap().unwrap();
    let time = (tip.header.height + 1) * 1_000;
    let b = chain
        .propose(&tip, 1, ehrchain_types::PublicKey([1; 32]), time)
        .unwrap();
    assert_eq!(b.txs.len(), txs.len());
    chain.finalized(&b, None).unwrap();
    b
}

/// The lookup indexes live in a database of their own, merged behind the block writes: a
/// transaction is found as soon as its block is committed; an index left behind by a crash is
/// brought up to the chain from the stored blocks at open; an index of another chain is built
/// again; a store of the old layout loses its index tables.
#[test]
fn lookup_indexes_are_redone_from_the_chain_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let senders: Vec<Keypair> = (0..2).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
    let g = genesis(&senders);
    let chain = open_chain(dir.path(), &g);
    let first = transfers(&senders[..1], 3);
    finalize_next(&chain, &first);
    // Found at once: the index's merge runs a second later at the soonest.
    let (loc, tx, _) = chain.finalized_tx(&first[2].id()).unwrap().unwrap();
    assert_eq!((loc.height, loc.index, tx.id()), (1, 2, first[2].id()));
    drop(chain);
    let index = dir.path().join("chain.index");
    let after_first = dir.path().join("index-after-block-1");
    copy_dir(&index, &after_first);
    let chain = open_chain(dir.path(), &g);
    let second = transfers(&senders[1..], 2);
    finalize_next(&chain, &second);
    drop(chain);
    // A crash before the merge wrote block 2: the index holds block 1 only.
    copy_dir(&after_first, &index);
    let chain = open_chain(dir.path(), &g);
    let (loc, ..) = chain.finalized_tx(&second[1].id()).unwrap().unwrap();
    assert_eq!((loc.height, loc.index), (2, 1));
    drop(chain);
    // Another chain's index (its block 2 is not this chain's) is emptied and built from this
    // chain. Its second block holds the same transaction as this chain's first block does,
    // elsewhere.
    let other_dir = tempfile::tempdir().unwrap();
    let other_g = genesis(&senders[..1]);
    let other = open_chain(other_dir.path(), &other_g);
    let theirs = transfers(&senders[..1], 2);
    finalize_next(&other, &theirs[..1]);
    finalize_next(&other, &theirs[1..]);
    assert_eq!(theirs[1].id(), first[1].id());
    drop(other);
    copy_dir(&other_dir.path().join("chain.index"), &index);
    // A store of the old layout kept the index in the chain database: that table goes.
    let old_txs: redb::TableDefinition<&[u8; 32], (u64, u32)> = redb::TableDefinition::new("txs");
    // So did one of the record indexes, and another (format 4) had the content index alone
    // in a directory of its own. Its state format is upgraded (5: an older build refuses the
    // store, whose record indexes it would not find), and the record indexes are built.
    let old_by_patient: redb::TableDefinition<(&[u8; 20], &[u8; 16]), ()> =
        redb::TableDefinition::new("records_by_patient");
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
    edit_store(&dir.path().join("chain.redb"), &|w| {
        w.open_table(old_txs)
            .unwrap()
            .insert(&[9; 32], (1, 0))
            .unwrap();
        w.open_table(old_by_patient)
            .unwrap()
            .insert((&[1; 20], &[2; 16]), ())
            .unwrap();
        w.open_table(meta)
            .unwrap()
            .insert("state_format", b"4".as_slice())
            .unwrap();
    });
    let old_contents = dir.path().join("chain.contents");
    copy_dir(&dir.path().join("chain.records"), &old_contents);
    let chain = open_chain(dir.path(), &g);
    let ours = (first.iter().enumerate().map(|(i, t)| (t, 1, i)))
        .chain(second.iter().enumerate().map(|(i, t)| (t, 2, i)));
    for (t, height, index) in ours {
        let (loc, ..) = chain.finalized_tx(&t.id()).unwrap().unwrap();
        assert_eq!((loc.height, loc.index as usize), (height, index));
    }
    drop(chain);
    let db = redb::Database::open(dir.path().join("chain.redb")).unwrap();
    let r = db.begin_read().unwrap();
    assert!(
        r.open_table(old_txs).is_err() && r.open_table(old_by_patient).is_err(),
        "the old index tables are dropped"
    );
    assert!(!old_contents.exists());
    let format = r
        .open_table(meta)
        .unwrap()
        .get("state_format")
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(format, b"5");
    drop(r);
    drop(db);
    // The index of a version that kept it in a redb file is removed.
    let old_index = dir.path().join("chain.index.redb");
    std::fs::write(&old_index, b"an index of the old layout").unwrap();
    drop(open_chain(dir.path(), &g));
    assert!(!old_index.exists());
    // A damaged index is named, with what to do about it.
    std::fs::remove_dir_all(&index).unwrap();
    std::fs::write(&index, vec![0x5a; 100_000]).unwrap();
    let err = ChainStore::open(&dir.path().join("chain.redb")).unwrap_err();
    assert!(err.to_string().contains("chain.index"), "{err}");
    assert!(err.to_string().contains("delete it"), "{err}");
}

/// The tree nodes a block replaces leave the store a generation (32 blocks) later, deleted in
/// key order over the next generation's blocks: after three generations, the first two
/// generations' replaced nodes are gone, the store holds exactly the live tree plus the
/// third generation's replaced nodes, and the state reads back whole after a restart.
#[test]
fn replaced_tree_nodes_are_deleted_a_generation_later() {
    let dir = tempfile::tempdir().unwrap();
    let senders: Vec<Keypair> = (0..3).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
    let g = genesis(&senders);
    let (_, mut memory) = ehrchain_ledger::genesis(&g);
    let chain = open_chain(dir.path(), &g);
    let blocks = 3 * 32;
    let txs = transfers(&senders, blocks);
    let mut parent = chain.store().tip().unwrap().unwrap();
    let mut pending: Vec<Block> = Vec::new();
    for (h, batch) in txs.chunks(senders.len()).enumerate() {
        chain.submit_batch(batch.to_vec(), 0);
        let b = chain
            .propose(&parent, h as u64 + 1, PublicKey([1; 32]), 1_000 + h as u64)
            .unwrap();
        assert_eq!(b.txs.len(), senders.len());
        memory = ehrchain_ledger::verify_block(&parent.header, &memory, &b)
            .unwrap()
            .0;
        parent = b.clone();
        pending.push(b);
        // Batches of 1 to 5 blocks, some of them across a generation's end.
        if pending.len() > h % 5 {
            let many: Vec<_> = pending.iter().map(|p| (p, None)).collect();
            chain.finalized_many(&many).unwrap();
            pending.clear();
        }
    }
    let many: Vec<_> = pending.iter().map(|p| (p, None)).collect();
    chain.finalized_many(&many).unwrap();
    assert_eq!(chain.snapshot().tip.height, blocks);
    let stats = chain.store().tree_stats().unwrap();
    assert_eq!(stats.oldest_stale_height, Some(2 * 32 + 1), "{stats:?}");
    assert_eq!(stats.stale_present, stats.stale_logged, "{stats:?}");
    assert!(stats.stale_logged >= 32 * 3, "{stats:?}");
    let live = memory.tree.node_count() as u64;
    assert_eq!(stats.nodes, live + stats.stale_present, "{stats:?}");
    drop(chain);
    let again = open_chain(dir.path(), &g);
    let snap = again.snapshot();
    assert_eq!(snap.state.root(), memory.root());
    let walk = snap.state.tree.check();
    assert_eq!((walk.missing, walk.bad_hashes), (0, 0));
    assert_eq!(stats.nodes, walk.nodes + stats.stale_present);
    // The offline check (`chain verify --data-dir`) agrees, and names what a changed byte or a
    // lost tree node breaks.
    let check = again.store().check_state(&memory).unwrap();
    assert_eq!(check.tree_nodes_orphaned, 0);
    for k in &senders {
        assert_eq!(
            snap.state.account(&k.account()),
            memory.account(&k.account())
        );
        let key = ehrchain_ledger::StateKey::Account(k.account());
        let (value, proof) = snap.state.prove(&key);
        let digest = ehrchain_ledger::tree::entry_digest(&value.unwrap());
        ehrchain_ledger::tree::verify_proof(&proof, &snap.state.tree.root(), &key, Some(digest))
            .unwrap();
    }
    drop((snap, again));
    let path = dir.path().join("chain.redb");
    let entries: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("state");
    let tree: redb::TableDefinition<&[u8; 41], &[u8]> = redb::TableDefinition::new("tree");
    let account = ehrchain_types::encode(&ehrchain_ledger::StateKey::Account(senders[0].account()));
    use redb::ReadableTable as _;
    let edit = |f: &dyn Fn(&redb::WriteTransaction)| edit_store(&path, f);
    let checked = || check_store(&path, &memory);
    let original = {
        let db = redb::Database::open(&path).unwrap();
        let r = db.begin_read().unwrap();
        let t = r.open_table(entries).unwrap();
        t.get(account.as_slice()).unwrap().unwrap().value().to_vec()
    };
    let mut changed = original.clone();
    *changed.last_mut().unwrap() ^= 1;
    edit(&|w| {
        let mut t = w.open_table(entries).unwrap();
        t.insert(account.as_slice(), changed.as_slice()).unwrap();
    });
    let err = checked().unwrap_err();
    assert!(err.contains("differs from the replay"), "{err}");
    edit(&|w| {
        let mut t = w.open_table(entries).unwrap();
        t.insert(account.as_slice(), original.as_slice()).unwrap();
        // The newest node is part of the newest tree.
        let mut nodes = w.open_table(tree).unwrap();
        let newest = *nodes.last().unwrap().unwrap().0.value();
        nodes.remove(&newest).unwrap();
    });
    let err = checked().unwrap_err();
    assert!(err.contains("lacks 1 node"), "{err}");
}

/// A block whose deletions change nothing (a grant made and revoked in the same block, so the
/// key is absent before and after) leaves no tree node behind: after two generations the
/// store holds exactly the nodes reachable from the root and the replaced ones not yet
/// deleted. (Before, each such block wrote a copy of the root under a new version and
/// orphaned the old one for good.)
#[test]
fn a_grant_made_and_revoked_in_one_block_orphans_no_tree_node() {
    use ehrchain_types::{Category, Grantee, Role};
    let dir = tempfile::tempdir().unwrap();
    let patients: Vec<Keypair> = (0..3).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
    let doctor = Keypair::from_seed(&[9; 32]);
    let mut g = genesis(&patients);
    for a in &mut g.accounts {
        a.role = Some(Role::Patient);
    }
    g.accounts.push(GenesisAccount {
        public_key: doctor.public_key(),
        role: Some(Role::Doctor),
        balance: 0,
        encryption_key: Some(doctor.encryption().public()),
    });
    let chain = open_chain(dir.path(), &g);
    let mut parent = chain.store().tip().unwrap().unwrap();
    let blocks = 2 * 32 + 5;
    for h in 0..blocks {
        let mut txs = Vec::new();
        for k in &patients {
            let tx = |nonce, payload| {
                k.sign_tx(Transaction {
                    chain_id: "sim".into(),
                    signer: k.public_key(),
                    nonce,
                    payload,
                })
            };
            txs.push(tx(
                2 * h,
                TxPayload::Grant {
                    to: Grantee::Account(doctor.account()),
                    categories: vec![Category::Vitals],
                    expires_ms: None,
                    write: false,
                    wraps: vec![],
                },
            ));
            txs.push(tx(
                2 * h + 1,
                TxPayload::Revoke {
                    from: Grantee::Account(doctor.account()),
                    categories: vec![],
                    rotations: vec![],
                },
            ));
        }
        chain.submit_batch(txs, 0);
        let b = chain
            .propose(&parent, h + 1, PublicKey([1; 32]), 1_000 + h)
            .unwrap();
        assert_eq!(b.txs.len(), 2 * patients.len());
        chain.finalized(&b, None).unwrap();
        parent = b;
    }
    let receipts = chain.store().receipts(blocks).unwrap();
    assert!(
        receipts
            .iter()
            .all(|r| matches!(r.outcome, ehrchain_types::TxOutcome::Applied)),
        "{receipts:?}"
    );
    let stats = chain.store().tree_stats().unwrap();
    let walk = chain.snapshot().state.tree.check();
    assert!(
        walk.nodes > 0 && walk.missing == 0 && walk.bad_hashes == 0,
        "{walk:?}"
    );
    assert_eq!(stats.nodes, walk.nodes + stats.stale_present, "{stats:?}");
}

/// A prefill larger than one chunk is stored as it is built, and the chain reads records,
/// indexes and tree nodes through its store: nothing of it stays in memory, the root is the
/// one an all-in-memory genesis computes, and blocks built on unfinalized parents (which drop
/// what committed blocks wrote as they go) end at the roots an in-memory replay reaches.
#[test]
fn a_stored_state_reads_through_the_store_and_agrees_with_memory() {
    let dir = tempfile::tempdir().unwrap();
    let senders: Vec<Keypair> = (0..3).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
    let mut g = genesis(&senders);
    let n = 45_000;
    g.synthetic_records = n;
    let (gblock, mut memory) = ehrchain_ledger::genesis(&g);
    // Blocks hold one transaction per sender at most, so a block that counted its
    // ancestors' transactions against the limit would come out empty (checked below).
    let block = BlockConfig {
        max_txs: senders.len(),
        ..BlockConfig::default()
    };
    let chain = open_chain_with(dir.path(), &g, block);
    assert_eq!(chain.genesis_block().id(), gblock.id());
    let snap = chain.snapshot();
    assert_eq!(snap.state.records_in_memory(), 0, "records stay on disk");
    assert_eq!(snap.state.tree.node_count(), 0, "tree nodes stay on disk");
    for i in [0, 7, 20_000, n - 1] {
        let r = ehrchain_ledger::state::synthetic_record(i, n);
        assert_eq!(snap.state.record(&r.id), Some(r.clone()));
        assert_eq!(snap.state.record_with_content(&r.content), Some(r.id));
        assert_eq!(
            snap.state.records_of_after(&r.patient, None, 10),
            memory.records_of_after(&r.patient, None, 10)
        );
        // A proof read through the store verifies against the header's root.
        let key = ehrchain_ledger::StateKey::Record(r.id);
        let (value, proof) = snap.state.prove(&key);
        let digest = ehrchain_ledger::tree::entry_digest(&value.unwrap());
        ehrchain_ledger::tree::verify_proof(&proof, &snap.state.tree.root(), &key, Some(digest))
            .unwrap();
    }
    assert!(
        snap.state
            .record(&ehrchain_types::RecordId([0xee; 16]))
            .is_none()
    );
    drop(snap);

    // Each block is built on the one before while that one is not finalized yet, and the
    // finalized blocks are committed three at a time (as the executor does when it lags).
    // A block holds only transactions its unfinalized ancestors do not already carry, though
    // the mempool keeps those until they are finalized.
    let txs = transfers(&senders, 8);
    let mut parent = chain.store().tip().unwrap().unwrap();
    let mut pending: Vec<Block> = Vec::new();
    for (h, batch) in txs.chunks(senders.len()).enumerate() {
        for t in batch {
            chain.submit(t.clone(), 0).unwrap();
        }
        let b = chain
            .propose(&parent, h as u64 + 1, PublicKey([1; 32]), 1_000 + h as u64)
            .unwrap();
        assert_eq!(b.txs.len(), senders.len());
        assert!(b.txs.iter().all(|t| batch.contains(t)));
        if pending.len() == 3 {
            let many: Vec<_> = pending.iter().map(|p| (p, None)).collect();
            chain.finalized_many(&many).unwrap();
            assert_eq!(chain.snapshot().tip.id(), pending[2].header.id());
            pending.clear();
        }
        let prev = memory.clone();
        memory = ehrchain_ledger::verify_block(&parent.header, &prev, &b)
            .unwrap()
            .0;
        parent = b.clone();
        pending.push(b);
    }
    // A redelivered block in front of new ones is skipped.
    let committed = chain.store().tip().unwrap().unwrap();
    let mut many: Vec<_> = vec![(&committed, None)];
    many.extend(pending.iter().map(|p| (p, None)));
    chain.finalized_many(&many).unwrap();
    let snap = chain.snapshot();
    assert_eq!(snap.tip.height, 8);
    assert_eq!(snap.state.root(), memory.root());
    assert_eq!(snap.tip.state_root, memory.root());
    assert_eq!(snap.state.tree.node_count(), 0);
    drop(snap);
    drop(chain);
    let again = open_chain(dir.path(), &g);
    let snap = again.snapshot();
    assert_eq!(snap.state.root(), memory.root());
    let r = ehrchain_ledger::state::synthetic_record(3, n);
    assert_eq!(snap.state.record(&r.id), Some(r.clone()));

    // The offline check (`chain verify --data-dir`) finds the prefill and the blocks as the
    // replay has them, and names a record missing from an index and a tree node whose bytes
    // were replaced by another node's.
    let check = again.store().check_state(&memory).unwrap();
    assert!(
        check.records >= n && check.tree_nodes_orphaned == 0,
        "{check:?}"
    );
    // The record indexes may hold records of a block whose commit failed (they are written
    // first): no snapshot of the store sees them, nor does the check count them.
    let tip = again.store().tip().unwrap().unwrap().header.height;
    let mut unseen = ehrchain_ledger::state::synthetic_record(n + 1, n + 2);
    unseen.patient = r.patient;
    let listed = |s: &ehrchain_ledger::State| s.records_of_after(&r.patient, None, 1000);
    let before = listed(&again.snapshot().state);
    assert!(before.contains(&r), "{before:?}");
    (again.store().records())
        .write(
            &[ehrchain_node::index::IndexedRecord {
                id: unseen.id.0,
                content: unseen.content.0,
                patient: unseen.patient.0,
                height: tip + 1,
            }],
            None,
            None,
        )
        .unwrap();
    assert_eq!(
        again.snapshot().state.record_with_content(&unseen.content),
        None
    );
    assert_eq!(listed(&again.snapshot().state), before);
    let cold = again.store().cold_view().unwrap();
    assert_eq!(
        ehrchain_ledger::Cold::record_with_content(&*cold, &unseen.content),
        None
    );
    assert!(
        !ehrchain_ledger::Cold::records_of(&*cold, &r.patient, None, 1000).contains(&unseen.id)
    );
    drop(cold);
    assert_eq!(
        again.store().check_state(&memory).unwrap().records,
        check.records
    );
    // A later block recorded as written (a commit cut short by a crash) is accepted at open:
    // the tip is among the indexes' recent blocks, so they are not built again.
    (again.store().records())
        .write(&[], Some((tip + 1, [7; 32])), None)
        .unwrap();
    drop((snap, again));
    let again = open_chain(dir.path(), &g);
    let held = |c: &ChainStore| c.records().content(&unseen.content.0, u64::MAX).unwrap();
    assert_eq!(held(again.store()), Some(unseen.id.0));
    assert_eq!(listed(&again.snapshot().state), before);
    // Indexes whose block at the tip's height is another one (a fork's, copied beside this
    // chain store) are built again.
    (again.store().records())
        .write(&[], Some((tip, [9; 32])), None)
        .unwrap();
    drop(again);
    let again = open_chain(dir.path(), &g);
    assert_eq!(held(again.store()), None);
    assert_eq!(again.store().check_state(&memory).unwrap(), check);
    drop(again);
    // Lost record indexes are built again from the stored records.
    std::fs::remove_dir_all(dir.path().join("chain.records")).unwrap();
    let again = open_chain(dir.path(), &g);
    let snap = again.snapshot();
    assert_eq!(snap.state.record_with_content(&r.content), Some(r.id));
    let last = ehrchain_ledger::state::synthetic_record(n - 1, n);
    assert_eq!(snap.state.record_with_content(&last.content), Some(last.id));
    assert_eq!(listed(&snap.state), before);
    assert_eq!(again.store().check_state(&memory).unwrap(), check);
    drop((snap, again));
    // A record missing from the patient index is named.
    let patients = || {
        let db = fjall::Database::builder(dir.path().join("chain.records"))
            .open()
            .unwrap();
        let ks = db
            .keyspace("record_patients", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        (db, ks, [r.patient.0.as_slice(), &r.id.0].concat())
    };
    let (db, ks, key) = patients();
    let height = ks.get(&key).unwrap().expect("the record is indexed");
    ks.remove(&key).unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
    drop((ks, db));
    let path = dir.path().join("chain.redb");
    let checked = || check_store(&path, &memory);
    let err = checked().unwrap_err();
    assert!(err.contains("missing from an index"), "{err}");
    let (db, ks, key) = patients();
    ks.insert(&key, height).unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
    drop((ks, db));
    let tree: redb::TableDefinition<&[u8; 41], &[u8]> = redb::TableDefinition::new("tree");
    let edit = |f: &dyn Fn(&redb::WriteTransaction)| edit_store(&path, f);
    edit(&|w| {
        use redb::ReadableTable as _;
        let mut nodes = w.open_table(tree).unwrap();
        let oldest = nodes.first().unwrap().unwrap().1.value().to_vec();
        let newest = *nodes.last().unwrap().unwrap().0.value();
        nodes.insert(&newest, oldest.as_slice()).unwrap();
    });
    let err = checked().unwrap_err();
    assert!(
        err.contains("whose hash is wrong") && !err.contains("and has 0 node"),
        "{err}"
    );

    // A node stopped while storing a prefill left parts of it and no genesis block: the
    // next start refuses the data dir rather than mixing them with a new genesis state.
    let other = tempfile::tempdir().unwrap();
    let store = ChainStore::open(&other.path().join("chain.redb")).unwrap();
    let part = ehrchain_ledger::State::genesis(&g);
    store.store_genesis_part(&part, &part.all_keys()).unwrap();
    let err = Chain::open(store, &g, MempoolLimits::default(), BlockConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("interrupted"), "{err}");
}

#[test]
fn invalid_blocks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let senders: Vec<Keypair> = (0..2).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
    let g = genesis(&senders);
    let chain = open_chain(dir.path(), &g);
    let tip = chain.store().tip().unwrap().unwrap();
    for t in transfers(&senders, 1) {
        chain.submit(t, 0).unwrap();
    }
    let good = chain
        .propose(&tip, 1, ehrchain_types::PublicKey([1; 32]), 1_000)
        .unwrap();
    assert_eq!(chain.verify(&tip, &good, 1_000), Verdict::Valid);
    // A forged signature.
    let mut forged = good.clone();
    forged.txs[0].signature.0[0] ^= 1;
    forged.header.tx_root = ehrchain_types::block::tx_root(&forged.txs);
    assert_eq!(chain.verify(&tip, &forged, 1_000), Verdict::Invalid);
    // A wrong state root.
    let mut wrong_root = good.clone();
    wrong_root.header.state_root = Hash([9; 32]);
    assert_eq!(chain.verify(&tip, &wrong_root, 1_000), Verdict::Invalid);
    // A timestamp far in the future.
    let mut future = good.clone();
    future.header.timestamp_ms = 1_000 + 3_600_000;
    assert_eq!(chain.verify(&tip, &future, 1_000), Verdict::Invalid);
}

#[test]
fn blocks_ahead_of_the_clock_wait_within_twice_the_drift() {
    let dir = tempfile::tempdir().unwrap();
    let senders: Vec<Keypair> = (0..2).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
    let g = genesis(&senders);
    let drift = BlockConfig::default().max_clock_drift_ms;
    let chain = open_chain(dir.path(), &g);
    let tip = chain.store().tip().unwrap().unwrap();
    for t in transfers(&senders, 1) {
        chain.submit(t, 0).unwrap();
    }
    // Proposed by a clock 1.5 drifts ahead of ours.
    let ts = 100_000 + drift * 3 / 2;
    let block = chain
        .propose(&tip, 1, ehrchain_types::PublicKey([1; 32]), ts)
        .unwrap();
    let check = |now_ms: u64, expected: Verdict| {
        assert_eq!(chain.verify(&tip, &block, now_ms), expected, "at {now_ms}");
    };
    // Transient skew: not a final `Invalid`, but a time to ask again.
    check(100_000, Verdict::NotYet { at_ms: ts - drift });
    check(ts - drift - 1, Verdict::NotYet { at_ms: ts - drift });
    check(ts - drift, Verdict::Valid);
    check(ts, Verdict::Valid);
    // Twice the drift ahead is still waited for; further ahead is refused for good.
    check(ts - 2 * drift, Verdict::NotYet { at_ms: ts - drift });
    check(ts - 2 * drift - 1, Verdict::Invalid);
}

#[test]
fn gossip_is_admitted_at_the_engine_clock() {
    let dir = tempfile::tempdir().unwrap();
    let doctor = Keypair::from_seed(&[9; 32]);
    let mut g = genesis(&[]);
    g.accounts.push(GenesisAccount {
        public_key: doctor.public_key(),
        role: Some(ehrchain_types::Role::Doctor),
        balance: 0,
        encryption_key: Some(doctor.encryption().public()),
    });
    let chain = open_chain(dir.path(), &g);
    // Admission dry-runs the transaction at the time it is given: a slot must start later.
    let slot = doctor.sign_tx(Transaction {
        chain_id: "sim".into(),
        signer: doctor.public_key(),
        nonce: 0,
        payload: TxPayload::AddSlot {
            start_ms: 60_000,
            minutes: 30,
            fee: 0,
        },
    });
    let gossip = ehrchain_types::encode(&vec![slot.clone()]);
    chain.receive_gossip(&gossip, 60_000);
    assert!(
        !chain.is_pending(&slot.id()),
        "admitted after the slot began"
    );
    // The engine's clock (a simulation's starts at 0) decides, not the wall clock.
    chain.receive_gossip(&gossip, 1_000);
    assert!(
        chain.is_pending(&slot.id()),
        "refused before the slot began"
    );
}

mod api {
    use super::*;
    use axum::{
        body::{Body, to_bytes},
        http::{Request, StatusCode},
    };
    use ehrchain_node::{
        GenesisFile,
        api::{ApiState, router},
        genesis::GenesisValidator,
    };
    use ehrchain_types::request::empty_body;
    use serde_json::Value;
    use tower::ServiceExt as _;

    fn app() -> (tempfile::TempDir, axum::Router, Vec<Keypair>) {
        let (dir, router, senders, _) = app_with_chain();
        (dir, router, senders)
    }

    fn app_with_chain() -> (tempfile::TempDir, axum::Router, Vec<Keypair>, Arc<Chain>) {
        let (dir, state, senders) = app_state(ehrchain_node::limits::LimitsConfig {
            min_free_bytes: 0,
            ballast_bytes: 0,
            ..Default::default()
        });
        let chain = state.chain.clone();
        (dir, router(state), senders, chain)
    }

    /// The auditor named in the test genesis (a consortium member).
    fn auditor() -> Keypair {
        Keypair::from_seed(&[9; 32])
    }

    fn app_state(
        limits: ehrchain_node::limits::LimitsConfig,
    ) -> (tempfile::TempDir, ApiState, Vec<Keypair>) {
        let dir = tempfile::tempdir().unwrap();
        let senders: Vec<Keypair> = (0..2).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
        let mut g = genesis(&senders);
        // The first sender is a registered patient (blob uploads need a registration).
        g.accounts[0].role = Some(ehrchain_types::Role::Patient);
        g.accounts.push(ehrchain_ledger::GenesisAccount {
            public_key: auditor().public_key(),
            role: Some(ehrchain_types::Role::Auditor),
            balance: 0,
            encryption_key: None,
        });
        let chain = open_chain(dir.path(), &g);
        let genesis = GenesisFile {
            ledger: g,
            validators: vec![GenesisValidator {
                name: "v0".into(),
                public_key: ehrchain_types::PublicKey(sim::validator_public_key(0)),
                p2p_address: "127.0.0.1:1".parse().unwrap(),
            }],
        };
        let blobs =
            ehrchain_node::blobs::BlobStore::open(&dir.path().join("blobs"), 1 << 20).unwrap();
        let state = ApiState {
            chain: chain.clone(),
            genesis: Arc::new(genesis),
            blobs: Arc::new(blobs),
            blob_cfg: ehrchain_node::config::BlobConfig::default(),
            limits: Arc::new(ehrchain_node::limits::Limits::new(dir.path(), &limits)),
            placement: None,
            followers: Default::default(),
        };
        (dir, state, senders)
    }

    async fn call(
        app: &axum::Router,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn submit_body(t: &SignedTransaction) -> String {
        serde_json::json!({"tx": hex::encode(ehrchain_types::encode(t))}).to_string()
    }

    #[tokio::test]
    async fn submissions_get_clear_status_codes() {
        let (_dir, app, senders) = app();
        let (s, v) = call(&app, "GET", "/api/v1/status", None).await;
        assert_eq!((s, v["chain_id"].as_str()), (StatusCode::OK, Some("sim")));
        let t = transfers(&senders, 1).remove(0);
        let (s, v) = call(&app, "POST", "/api/v1/transactions", Some(submit_body(&t))).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        assert_eq!(v["id"].as_str().unwrap(), t.id().to_string());
        let (s, v) = call(&app, "POST", "/api/v1/transactions", Some(submit_body(&t))).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("already_pending"))
        );
        let (_, v) = call(
            &app,
            "GET",
            &format!("/api/v1/transactions/{}", t.id()),
            None,
        )
        .await;
        assert_eq!(v["status"], "pending");
        let (_, v) = call(
            &app,
            "GET",
            &format!("/api/v1/accounts/{}", t.tx.sender()),
            None,
        )
        .await;
        assert_eq!(
            (v["nonce"].as_u64(), v["next_nonce"].as_u64()),
            (Some(0), Some(1))
        );

        let mut forged = transfers(&senders, 1).remove(1);
        forged.signature.0[0] ^= 1;
        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/transactions",
            Some(submit_body(&forged)),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_signature"))
        );
        let overdraft = senders[1].sign_tx(Transaction {
            chain_id: "sim".into(),
            signer: senders[1].public_key(),
            nonce: 0,
            payload: TxPayload::Transfer {
                to: senders[0].account(),
                amount: 5_000,
            },
        });
        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/transactions",
            Some(submit_body(&overdraft)),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("insufficient balance: have 1000, need 5000")
        );
        // The rule that refused it, as a stable code with typed fields.
        assert_eq!(v["error"]["code"], "rejected");
        assert_eq!(
            v["error"]["refusal"],
            serde_json::json!({
                "code": "insufficient_balance",
                "balance": 1000,
                "needed": 5000,
                "message": "insufficient balance: have 1000, need 5000",
            })
        );
        let (s, _) = call(
            &app,
            "POST",
            "/api/v1/transactions",
            Some("{\"tx\": \"zz\"}".into()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = call(
            &app,
            "POST",
            "/api/v1/transactions",
            Some("not json".into()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let huge = format!("{{\"tx\": \"{}\"}}", "00".repeat(100_000));
        let (s, _) = call(&app, "POST", "/api/v1/transactions", Some(huge)).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        let (s, _) = call(&app, "GET", "/api/v1/accounts/nope", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = call(&app, "GET", "/api/v1/blocks/99", None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    /// No endpoint receives plaintext: decision support runs on the client.
    #[tokio::test]
    async fn predict_is_not_served() {
        let (_dir, app, _) = app();
        let body = r#"{"symptoms": ["fever", "cough"], "top": 2}"#;
        let (s, v) = call(&app, "POST", "/api/v1/predict", Some(body.into())).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    }

    #[tokio::test]
    async fn every_documented_path_is_served() {
        let (_dir, app, senders) = app();
        let doc: Value = serde_json::from_str(ehrchain_node::api::OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 12);
        let acct = senders[0].account().to_string();
        for (path, ops) in paths {
            let concrete = path
                .replace(
                    "{id}",
                    if path.contains("accounts") {
                        &acct
                    } else {
                        "00"
                    },
                )
                .replace("{height}", "0");
            for method in ops.as_object().unwrap().keys() {
                let body = (method == "post").then(|| "{}".to_string());
                let (s, v) = call(&app, &method.to_uppercase(), &concrete, body).await;
                assert_ne!(
                    v["error"]["message"]
                        .as_str()
                        .map(|m| m.starts_with("no such endpoint")),
                    Some(true),
                    "{method} {path} is documented but not routed"
                );
                assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            }
        }
        let (s, v) = call(&app, "GET", "/api/v1/nothing", None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
    }

    /// Sends `req` and returns the status, the headers and the body as text.
    async fn raw(
        app: &axum::Router,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = app.clone().oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// Checks an error answer: the JSON envelope with a snake_case code, a bounded message,
    /// and no run of the caller's input longer than the echo limit.
    fn assert_envelope(
        what: &str,
        (status, headers, body): &(StatusCode, axum::http::HeaderMap, String),
        want: (StatusCode, &str),
    ) {
        use ehrchain_node::api::{ECHO_CHARS, MAX_MESSAGE_CHARS};
        assert_eq!(*status, want.0, "{what}: {body}");
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{what}: {body}"
        );
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
        let err = v["error"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: {body}"));
        assert_eq!(err.len(), 2, "{what}: {body}");
        assert_eq!(err["code"], want.1, "{what}: {body}");
        let message = err["message"].as_str().unwrap();
        assert!(!message.is_empty() && message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        // Every long input below is made of 'x' (or 'X' and '0'): no longer run may come back.
        for c in ['x', 'X', '0'] {
            let echo = c.to_string().repeat(ECHO_CHARS + 1);
            assert!(!body.contains(&echo), "{what} echoes its input: {body}");
        }
    }

    fn get(uri: &str) -> Request<Body> {
        Request::builder().uri(uri).body(Body::empty()).unwrap()
    }

    fn post(uri: &str, content_type: Option<&str>, body: String) -> Request<Body> {
        let mut req = Request::builder().method("POST").uri(uri);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.body(Body::from(body)).unwrap()
    }

    /// The framework's own rejections (query strings, path parameters, methods, routes,
    /// content types, body shapes and sizes, URI length) answer with the same JSON envelope as
    /// the handlers' errors, with stable codes, and quote at most a short prefix of the input.
    #[tokio::test]
    async fn every_error_is_the_json_envelope_without_long_echoes() {
        use ehrchain_node::api::MAX_URI_BYTES;
        let (_dir, app, senders) = app();
        let x = "x".repeat(2_000);
        let bad = StatusCode::BAD_REQUEST;
        let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
            // Query strings the extractor cannot read, and values the handler refuses.
            (
                "query: not a number",
                get(&format!("/api/v1/accounts?limit={x}")),
                bad,
                "bad_request",
            ),
            (
                "query: negative",
                get("/api/v1/blocks?before=-1&limit=2"),
                bad,
                "bad_request",
            ),
            (
                "query: unknown role",
                get(&format!("/api/v1/accounts?role={x}")),
                bad,
                "bad_request",
            ),
            (
                "query: bad account",
                get(&format!("/api/v1/accounts?after=ehr{x}")),
                bad,
                "bad_request",
            ),
            // Path parameters: not a height, not an id, not UTF-8 ("Invalid URL").
            (
                "path: height",
                get(&format!("/api/v1/blocks/{x}")),
                bad,
                "bad_request",
            ),
            (
                "path: account",
                get(&format!("/api/v1/accounts/{x}")),
                bad,
                "bad_request",
            ),
            (
                "path: not UTF-8",
                get(&format!("/api/v1/accounts/%FF%FE{x}")),
                bad,
                "bad_request",
            ),
            (
                "path: event id",
                get(&format!("/api/v1/audit/evt{x}/proof")),
                bad,
                "bad_request",
            ),
            // Unknown routes and wrong methods.
            (
                "unknown route",
                get(&format!("/api/v1/{x}")),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                "outside the API",
                get("/favicon.ico"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                "wrong method",
                Request::builder()
                    .method("DELETE")
                    .uri("/api/v1/status")
                    .body(Body::empty())
                    .unwrap(),
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            (
                "wrong method with a body",
                post(
                    &format!("/api/v1/accounts/{x}"),
                    Some("application/json"),
                    x.clone(),
                ),
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            // Bodies: wrong or missing content type, not JSON, the wrong shape, too large.
            (
                "wrong content type",
                post(
                    "/api/v1/transactions",
                    Some("text/plain"),
                    format!("{{\"tx\": \"{x}\"}}"),
                ),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                "no content type",
                post(
                    "/api/v1/transactions/batch",
                    None,
                    format!("{{\"txs\": [\"{x}\"]}}"),
                ),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                "not JSON",
                post("/api/v1/transactions", Some("application/json"), x.clone()),
                bad,
                "bad_request",
            ),
            (
                "JSON of the wrong shape",
                post(
                    "/api/v1/transactions",
                    Some("application/json"),
                    format!("{{\"tx\": 1, \"{x}\": \"{x}\"}}"),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            ),
            (
                "a string of the wrong type",
                post(
                    "/api/v1/transactions/batch",
                    Some("application/json"),
                    format!("{{\"txs\": \"{x}\"}}"),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            ),
            (
                "tx not hex",
                post(
                    "/api/v1/transactions",
                    Some("application/json"),
                    format!("{{\"tx\": \"{x}\"}}"),
                ),
                bad,
                "bad_request",
            ),
            (
                "body too large",
                post(
                    "/api/v1/transactions",
                    Some("application/json"),
                    format!("{{\"tx\": \"{}\"}}", "0".repeat(100_000)),
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
            ),
            // A request target over the limit (the HTTP parser itself stops at 64 KiB).
            (
                "URI too long",
                get(&format!(
                    "/api/v1/accounts?after={}",
                    "X".repeat(MAX_URI_BYTES)
                )),
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
            ),
            // Signed endpoints: no signature, and an input the handler quotes.
            (
                "unsigned",
                get(&format!("/api/v1/records?patient={x}")),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
            ),
        ];
        for (what, req, status, code) in cases {
            let answer = raw(&app, req).await;
            assert_envelope(what, &answer, (status, code));
            if status == StatusCode::METHOD_NOT_ALLOWED {
                assert!(
                    answer.1.contains_key("allow"),
                    "{what}: 405 keeps its Allow header"
                );
            }
        }
        let kinds = format!("/api/v1/items?kind={x}");
        let auth = senders[0].sign_request(
            "sim",
            "GET",
            &kinds,
            &empty_body(),
            ehrchain_node::api::now_ms(),
        );
        let req = Request::builder()
            .uri(&kinds)
            .header(ehrchain_types::request::HEADER, auth.header_value())
            .body(Body::empty())
            .unwrap();
        assert_envelope(
            "signed: unknown kind",
            &raw(&app, req).await,
            (bad, "bad_request"),
        );
    }

    /// A handler that panics answers a 500 envelope with a generic message (the cause goes to
    /// the log only), and the quoting rule clips every quoted run of input.
    #[tokio::test]
    async fn panics_and_quotes_are_contained() {
        use ehrchain_node::api::{ECHO_CHARS, clip, clip_quoted, uniform_errors};
        let app = axum::Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    if true {
                        panic!("secret cause");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/text",
                axum::routing::get(|| async { (StatusCode::CONFLICT, "plain text") }),
            )
            .layer(axum::middleware::from_fn(uniform_errors));
        let answer = raw(&app, get("/boom")).await;
        assert_envelope(
            "panic",
            &answer,
            (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        );
        assert!(!answer.2.contains("secret"), "{}", answer.2);
        let answer = raw(&app, get("/text")).await;
        assert_envelope("plain text", &answer, (StatusCode::CONFLICT, "conflict"));
        assert!(answer.2.contains("plain text"));

        let long = "y".repeat(100);
        assert_eq!(clip(&long).chars().count(), ECHO_CHARS + 1);
        assert_eq!(clip("short"), "short");
        let m = clip_quoted(&format!("bad {long:?} and `{long}` and \"{long}"));
        assert!(!m.contains(&"y".repeat(ECHO_CHARS + 1)), "{m}");
        assert_eq!(m.matches(&"y".repeat(ECHO_CHARS)).count(), 3, "{m}");
        assert_eq!(clip_quoted(&m), m, "idempotent");
        let escaped = clip_quoted(&format!("{:?}", format!("a\"{long}")));
        assert!(!escaped.contains(&"y".repeat(ECHO_CHARS + 1)), "{escaped}");
        assert!(
            clip_quoted(&"z".repeat(10_000)).chars().count()
                <= ehrchain_node::api::MAX_MESSAGE_CHARS + 1
        );
    }

    async fn call_signed(
        app: &axum::Router,
        key: &Keypair,
        method: &str,
        path: &str,
        body: Vec<u8>,
        tamper: impl FnOnce(&mut ehrchain_types::request::RequestAuth),
    ) -> (StatusCode, Value) {
        let body_hash = ehrchain_crypto::envelope::content_hash(&body);
        let mut auth = key.sign_request(
            "sim",
            method,
            path,
            &body_hash,
            ehrchain_node::api::now_ms(),
        );
        tamper(&mut auth);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(ehrchain_types::request::HEADER, auth.header_value())
            .body(Body::from(body))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn blobs_and_signed_requests_fail_safely() {
        use ehrchain_node::blobs::cid_string;
        let (dir, app, senders) = app();
        let (patient, stranger) = (&senders[0], &senders[1]);
        let body = b"ciphertext bytes".to_vec();
        let cid = cid_string(&ehrchain_crypto::envelope::content_hash(&body));
        let path = format!("/api/v1/blobs/{cid}");
        let stored = |c: &str| dir.path().join("blobs").join(c).exists();
        let code = |v: &Value| v["error"]["code"].as_str().map(str::to_string);

        // No signature, a forged one, one made for another path: refused, nothing stored.
        let (s, v) = call(&app, "PUT", &path, Some("x".into())).await;
        assert_eq!(
            (s, code(&v).as_deref()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
        let (s, v) = call_signed(&app, patient, "PUT", &path, body.clone(), |a| {
            a.signature.0[3] ^= 1
        })
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not match")
        );
        let other = format!("/api/v1/blobs/{}", cid_string(&Hash([1; 32])));
        let replayed = patient.sign_request(
            "sim",
            "PUT",
            &other,
            &empty_body(),
            ehrchain_node::api::now_ms(),
        );
        let (s, _) =
            call_signed(&app, patient, "PUT", &path, body.clone(), |a| *a = replayed).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, v) = call_signed(&app, patient, "PUT", &path, body.clone(), |a| {
            a.timestamp_ms -= 600_000
        })
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        // The signature covers the body: one made over another body (here an empty one, as
        // for a read) does not let this body in, and a read signed over a body is refused.
        let over_empty = patient.sign_request(
            "sim",
            "PUT",
            &path,
            &empty_body(),
            ehrchain_node::api::now_ms(),
        );
        let (s, v) = call_signed(&app, patient, "PUT", &path, body.clone(), |a| {
            *a = over_empty
        })
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("another body"),
            "{v}"
        );
        let keys = format!("/api/v1/keys?patient={}", patient.account());
        let (s, v) = call_signed(&app, patient, "GET", &keys, b"x".to_vec(), |_| {}).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("takes none"),
            "{v}"
        );
        let (s, v) = call_signed(&app, patient, "GET", &keys, Vec::new(), |_| {}).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // An unregistered account may not fill the disk.
        let (s, _) = call_signed(&app, stranger, "PUT", &path, body.clone(), |_| {}).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(!stored(&cid));

        // Bytes that do not match the CID (and the signed hash: altered on the way) are
        // refused and never visible under it.
        let mut tampered = body.clone();
        tampered[0] ^= 1;
        let honest = patient.sign_request(
            "sim",
            "PUT",
            &path,
            &ehrchain_crypto::envelope::content_hash(&body),
            ehrchain_node::api::now_ms(),
        );
        let (s, v) = call_signed(&app, patient, "PUT", &path, tampered, |a| *a = honest).await;
        assert_eq!(
            (s, code(&v).as_deref()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("cid_mismatch"))
        );
        assert!(!stored(&cid));
        // Larger than the limit (1 MiB in this app): 413, nothing stored.
        let big = vec![7u8; (1 << 20) + 1];
        let big_cid = cid_string(&ehrchain_crypto::envelope::content_hash(&big));
        let big_path = format!("/api/v1/blobs/{big_cid}");
        let (s, v) = call_signed(&app, patient, "PUT", &big_path, big, |_| {}).await;
        assert_eq!(
            (s, code(&v).as_deref()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
        );
        assert!(!stored(&big_cid));
        // A malformed CID is a bad request.
        let (s, _) = call_signed(
            &app,
            patient,
            "PUT",
            "/api/v1/blobs/notacid",
            body.clone(),
            |_| {},
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        // The real thing.
        let (s, v) = call_signed(&app, patient, "PUT", &path, body.clone(), |_| {}).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["size"].as_u64(), Some(body.len() as u64));
        assert!(stored(&cid));

        // Reads: listings of someone else's records are empty, not an error that would reveal
        // anything.
        let rec = "rec00000000000000000000000000000000";
        let content = format!("/api/v1/records/{rec}/content");
        // A record that does not exist looks exactly like one the requester may not read.
        let (s, v) = call_signed(&app, stranger, "GET", &content, vec![], |_| {}).await;
        assert_eq!(
            (s, code(&v).as_deref()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let list = format!("/api/v1/records?patient={}", patient.account());
        let (s, v) = call_signed(&app, stranger, "GET", &list, vec![], |_| {}).await;
        assert_eq!((s, v), (StatusCode::OK, serde_json::json!([])));
        let audit = format!("/api/v1/audit?patient={}", patient.account());
        let (s, _) = call_signed(&app, stranger, "GET", &audit, vec![], |_| {}).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, v) = call_signed(&app, patient, "GET", &audit, vec![], |_| {}).await;
        assert_eq!((s, v), (StatusCode::OK, serde_json::json!([])));
        let (s, _) = call(&app, "GET", "/api/v1/audit/evt00/proof", None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }

    /// Runs `txs` through one block on the chain, as the engine would.
    fn commit(chain: &Chain, txs: Vec<SignedTransaction>) {
        let now = ehrchain_node::api::now_ms();
        for t in txs {
            chain.submit(t, now).unwrap();
        }
        let tip = chain.store().tip().unwrap().unwrap();
        let b = chain
            .propose(
                &tip,
                tip.header.height + 1,
                ehrchain_types::PublicKey([1; 32]),
                now,
            )
            .unwrap();
        chain.finalized(&b, None).unwrap();
    }

    /// Requests are counted by route template, method and status: no id in a label, and no
    /// label from an arbitrary method.
    #[tokio::test]
    async fn requests_are_counted_by_route_template() {
        let (_dir, app, senders) = app();
        let acct = senders[0].account().to_string();
        for _ in 0..2 {
            call(&app, "GET", &format!("/api/v1/accounts/{acct}"), None).await;
        }
        call(&app, "GET", "/api/v1/nowhere", None).await;
        call(&app, "BREW", "/api/v1/status", None).await;
        let req = Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let text =
            String::from_utf8(to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        assert!(
            text.contains(
                r#"ehrchain_http_requests_total{route="/api/v1/accounts/{id}",method="GET",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"route="unmatched",method="GET",status="404""#),
            "{text}"
        );
        assert!(text.contains(r#"method="other""#), "{text}");
        assert!(!text.contains(&acct) && !text.contains("BREW"), "{text}");
    }

    /// Every list is paged: a bounded page size and a cursor that walks the whole list
    /// exactly once (records by id, the audit trail newest first).
    #[tokio::test]
    async fn lists_are_paged_with_a_cursor() {
        use ehrchain_types::Category;
        let (_dir, app, senders, chain) = app_with_chain();
        let patient = &senders[0];
        let sign = |nonce, payload| {
            patient.sign_tx(Transaction {
                chain_id: "sim".into(),
                signer: patient.public_key(),
                nonce,
                payload,
            })
        };
        let ck = ehrchain_crypto::CategoryKey::generate();
        let rotation = ehrchain_client::consent::fresh_rotation(patient, Category::Lab, 0).unwrap();
        let mut txs = vec![sign(0, TxPayload::RotateKey { rotation })];
        for n in 1..=5u64 {
            let draft = ehrchain_client::records::draft_in_memory(
                patient.account(),
                Category::Lab,
                0,
                &ck,
                b"x",
            )
            .unwrap();
            txs.push(sign(n, TxPayload::AddRecord(draft)));
        }
        commit(&chain, txs);
        let walk = |base: String, cursor: &'static str, key: &'static str| {
            let app = app.clone();
            async move {
                let mut seen: Vec<String> = Vec::new();
                let mut pages = 0;
                loop {
                    let mut path = format!("{base}&limit=2");
                    if let Some(last) = seen.last() {
                        path += &format!("&{cursor}={last}");
                    }
                    let (s, v) = call_signed(&app, patient, "GET", &path, vec![], |_| {}).await;
                    assert_eq!(s, StatusCode::OK, "{path}: {v}");
                    let page = v.as_array().unwrap().clone();
                    assert!(page.len() <= 2, "{v}");
                    pages += 1;
                    seen.extend(page.iter().map(|x| x[key].as_str().unwrap().to_string()));
                    if page.len() < 2 {
                        return (seen, pages);
                    }
                }
            }
        };
        let me = patient.account();
        let (records, pages) = walk(format!("/api/v1/records?patient={me}"), "after", "id").await;
        assert_eq!((records.len(), pages), (5, 3), "{records:?}");
        let mut sorted = records.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, records, "records come once each, in id order");
        let (events, _) = walk(format!("/api/v1/audit?patient={me}"), "before", "id").await;
        // One key rotation and five additions, newest first, each once.
        assert_eq!(events.len(), 6, "{events:?}");
        let mut unique = events.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 6);
        // A page size over the bound is served at the bound; a bad cursor is refused.
        let (s, v) = call_signed(
            &app,
            patient,
            "GET",
            &format!("/api/v1/records?patient={me}&limit=1000000"),
            vec![],
            |_| {},
        )
        .await;
        assert_eq!((s, v.as_array().map(Vec::len)), (StatusCode::OK, Some(5)));
        let (s, _) = call_signed(
            &app,
            patient,
            "GET",
            "/api/v1/records?after=nope",
            vec![],
            |_| {},
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        // Cursors the fuzzer found: one of another kind than the list (it made `range` panic:
        // start after end), and an audit cursor naming no event.
        let sym = format!("sym{}", "ab".repeat(16));
        let slot = format!("slot{}", "00".repeat(16));
        for path in [
            format!("/api/v1/items?kind=slot&open=true&after={sym}"),
            format!("/api/v1/items?kind=slot&after={sym}"),
            format!("/api/v1/items?kind=report&after={slot}"),
        ] {
            let (s, v) = call_signed(&app, patient, "GET", &path, vec![], |_| {}).await;
            assert_eq!((s, v), (StatusCode::OK, serde_json::json!([])), "{path}");
        }
        let (s, v) = call_signed(
            &app,
            patient,
            "GET",
            &format!("/api/v1/audit?before=evt{}", "00".repeat(32)),
            vec![],
            |_| {},
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    }

    #[tokio::test]
    async fn record_content_needs_a_finalized_allowed_read() {
        use ehrchain_crypto::envelope;
        use ehrchain_types::{Category, HexBytes, RecordKey, Rotation};
        let (_dir, app, senders, chain) = app_with_chain();
        let (patient, stranger) = (&senders[0], &senders[1]);
        let sign = |k: &Keypair, nonce, payload| {
            k.sign_tx(Transaction {
                chain_id: "sim".into(),
                signer: k.public_key(),
                nonce,
                payload,
            })
        };
        let ck = ehrchain_crypto::CategoryKey::generate();
        let own = envelope::seal_category_key(
            &patient.encryption().public(),
            &ck,
            &patient.account(),
            Category::Lab,
            0,
        )
        .unwrap();
        let id = envelope::new_record_id();
        let dk = ehrchain_crypto::DataKey::generate();
        let (ct, e) = envelope::encrypt_bytes(&dk, &id, b"lab result");
        let cid = ehrchain_node::blobs::cid_string(&e.content);
        let (s, _) = call_signed(
            &app,
            patient,
            "PUT",
            &format!("/api/v1/blobs/{cid}"),
            ct.clone(),
            |_| {},
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        commit(
            &chain,
            vec![
                sign(
                    patient,
                    0,
                    TxPayload::RotateKey {
                        rotation: Rotation {
                            category: Category::Lab,
                            own,
                            wraps: vec![],
                        },
                    },
                ),
                sign(
                    patient,
                    1,
                    TxPayload::AddRecord(ehrchain_types::RecordDraft {
                        id,
                        patient: patient.account(),
                        category: Category::Lab,
                        content: e.content,
                        size: e.size,
                        commitment: e.commitment,
                        meta: HexBytes(vec![0; ehrchain_types::records::SEALED_META_BYTES]),
                        key: RecordKey::Category {
                            epoch: 0,
                            wrapped: HexBytes(envelope::wrap_data_key(&ck, &dk, &id)),
                        },
                        profile: false,
                        coding: None,
                    }),
                ),
            ],
        );
        let content = format!("/api/v1/records/{id}/content");
        // The patient may read, but not without an audited read on the ledger first.
        let (s, v) = call_signed(&app, patient, "GET", &content, vec![], |_| {}).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no audited read")
        );
        // A stranger's read is recorded as denied and serves nothing.
        let enrol = TxPayload::Enrol {
            role: ehrchain_types::Role::Patient,
            organisation: None,
            licence: None,
            encryption_key: stranger.encryption().public(),
        };
        commit(&chain, vec![sign(stranger, 0, enrol)]);
        let denied_read = sign(stranger, 1, TxPayload::ReadRecord { record: id });
        let denied_id = denied_read.id();
        commit(&chain, vec![denied_read]);
        let (s, _) = call_signed(&app, stranger, "GET", &content, vec![], |_| {}).await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // Who sees what of that denied read. Anyone: its place on the ledger, nothing else.
        let tx_path = format!("/api/v1/transactions/{denied_id}");
        let (s, v) = call(&app, "GET", &tx_path, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["redacted"], true);
        assert!(v["tx"].is_null() && v["sender"].is_null() && v["receipt"].is_null());
        assert_eq!(v["events"], serde_json::json!([]), "{v}");
        // The block shows ids and counts only, and its receipts and raw bytes are refused.
        let height = v["height"].as_u64().unwrap();
        let (_, b) = call(&app, "GET", &format!("/api/v1/blocks/{height}"), None).await;
        assert_eq!(b["tx_ids"], serde_json::json!([denied_id]));
        assert!(b["txs"].is_null() && b["receipts"].is_null(), "{b}");
        for tail in ["raw", "receipts"] {
            let (s, v) = call(
                &app,
                "GET",
                &format!("/api/v1/blocks/{height}/{tail}"),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{tail}: {v}");
            assert_eq!(v["error"]["code"], "members_only");
        }
        // The reader: only that it was denied, not whose record, its category or why.
        let (_, reader_view) = call_signed(&app, stranger, "GET", &tx_path, vec![], |_| {}).await;
        assert_eq!(reader_view["redacted"], false);
        let ev = &reader_view["events"][0];
        assert_eq!(ev["decision"], "denied");
        assert_eq!(
            ev["reason"],
            serde_json::json!({"code": "withheld", "message": "no record you may read"})
        );
        assert_eq!(
            ev["reason"]["code"],
            ehrchain_node::visibility::DENIED_READ.code()
        );
        assert_eq!(
            ev["patient"],
            ehrchain_types::AccountId([0; 20]).to_string()
        );
        assert_eq!(ev["categories"], serde_json::json!([]));
        // The patient and a member (the auditor) see the real event.
        for who in [patient, &auditor()] {
            let (_, v) = call_signed(&app, who, "GET", &tx_path, vec![], |_| {}).await;
            let ev = &v["events"][0];
            assert_eq!(ev["patient"], patient.account().to_string(), "{v}");
            assert_eq!(ev["reason"]["code"], "no_consent", "{v}");
            assert_eq!(ev["reason"]["category"], "lab", "{v}");
            assert_eq!(ev["reason"]["message"], "no consent for lab records", "{v}");
            assert_eq!(ev["actor"], stranger.account().to_string());
        }
        let (_, b) = call_signed(
            &app,
            &auditor(),
            "GET",
            &format!("/api/v1/blocks/{height}"),
            vec![],
            |_| {},
        )
        .await;
        assert_eq!(b["txs"].as_array().unwrap().len(), 1, "{b}");
        // A read of a record that does not exist looks the same to the reader.
        let unknown = sign(
            stranger,
            2,
            TxPayload::ReadRecord {
                record: ehrchain_types::RecordId([7; 16]),
            },
        );
        let unknown_path = format!("/api/v1/transactions/{}", unknown.id());
        commit(&chain, vec![unknown]);
        let (_, u) = call_signed(&app, stranger, "GET", &unknown_path, vec![], |_| {}).await;
        let (seen, unknown_seen) = (&reader_view["events"][0], &u["events"][0]);
        for field in [
            "action",
            "decision",
            "reason",
            "patient",
            "categories",
            "counterparty",
        ] {
            assert_eq!(seen[field], unknown_seen[field], "{field}");
        }
        assert_eq!(u["receipt"]["outcome"], reader_view["receipt"]["outcome"]);
        commit(
            &chain,
            vec![sign(patient, 2, TxPayload::ReadRecord { record: id })],
        );
        let req = Request::builder()
            .method("GET")
            .uri(&content)
            .header(
                ehrchain_types::request::HEADER,
                patient
                    .sign_request(
                        "sim",
                        "GET",
                        &content,
                        &empty_body(),
                        ehrchain_node::api::now_ms(),
                    )
                    .header_value(),
            )
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        assert_eq!(bytes.as_ref(), ct.as_slice());
        let (back, commitment) = envelope::decrypt_bytes(&dk, &id, &bytes).unwrap();
        assert_eq!(
            (back.as_slice(), commitment),
            (b"lab result".as_slice(), e.commitment)
        );
        // Both reads are in the patient's audit trail, with their decisions.
        let audit = format!("/api/v1/audit?patient={}", patient.account());
        let (_, v) = call_signed(&app, patient, "GET", &audit, vec![], |_| {}).await;
        let reads: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "read")
            .map(|e| e["decision"].as_str().unwrap())
            .collect();
        assert_eq!(reads, ["allowed", "denied"]);
    }

    use ehrchain_node::limits::LimitsConfig;
    use sha2::Digest as _;

    /// Uploads count against the uploader's quota until a record anchors them or they expire;
    /// an expired upload is deleted from the store and frees the quota; the check endpoint
    /// answers as the upload would.
    #[tokio::test]
    async fn upload_quotas_hold_and_unanchored_blobs_expire() {
        let (dir, state, senders) = app_state(LimitsConfig {
            min_free_bytes: 0,
            ballast_bytes: 0,
            max_pending_blobs_per_account: 1,
            max_pending_bytes_per_account: 1000,
            pending_blob_ttl_secs: 1,
            ..Default::default()
        });
        let app = ehrchain_node::api::router(state.clone());
        let patient = &senders[0];
        let put = |bytes: Vec<u8>| {
            let cid = ehrchain_node::blobs::cid_string(&ehrchain_types::Hash(
                sha2::Sha256::digest(&bytes).into(),
            ));
            (format!("/api/v1/blobs/{cid}"), bytes)
        };
        let (ok_path, ok_bytes) = put(vec![1; 600]);
        let (s, v) = call_signed(&app, patient, "PUT", &ok_path, ok_bytes, |_| {}).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        // A second blob is over the one-blob quota, and the check says so first.
        let (s, v) = call_signed(
            &app,
            patient,
            "GET",
            "/api/v1/blobs/check?size=10",
            vec![],
            |_| {},
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("quota_exceeded"))
        );
        let (second, bytes) = put(vec![2; 10]);
        let (s, v) = call_signed(&app, patient, "PUT", &second, bytes.clone(), |_| {}).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("quota_exceeded"))
        );
        // After the time to live, the sweep deletes the unanchored blob and frees the quota.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        ehrchain_node::run::sweep_pending_blobs(&state).await;
        let stored: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("bafk"))
            .collect();
        assert!(stored.is_empty(), "expired blob still stored: {stored:?}");
        let (s, v) = call_signed(&app, patient, "PUT", &second, bytes, |_| {}).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        // Bytes count too: 10 stored + 995 more exceed 1,000.
        let (s, _) = call_signed(
            &app,
            patient,
            "GET",
            "/api/v1/blobs/check?size=995",
            vec![],
            |_| {},
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(
            state
                .chain
                .metrics
                .render()
                .contains("ehrchain_blobs_expired_total 1")
        );
    }

    /// Below the disk watermark, uploads and submissions get 507 with a clear code.
    #[tokio::test]
    async fn below_the_watermark_uploads_and_transactions_are_refused() {
        let (_dir, state, senders) = app_state(LimitsConfig {
            min_free_bytes: u64::MAX / 2,
            ballast_bytes: 0,
            ..Default::default()
        });
        let app = ehrchain_node::api::router(state);
        let (s, v) = call_signed(
            &app,
            &senders[0],
            "GET",
            "/api/v1/blobs/check?size=1",
            vec![],
            |_| {},
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::INSUFFICIENT_STORAGE, Some("storage_low"))
        );
        let t = transfers(&senders, 1);
        let (s, v) = call(
            &app,
            "POST",
            "/api/v1/transactions",
            Some(submit_body(&t[0])),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::INSUFFICIENT_STORAGE, Some("storage_low"))
        );
    }

    /// Submissions past an account's rate get 429.
    #[tokio::test]
    async fn submissions_are_rate_limited_per_account() {
        let (_dir, state, senders) = app_state(LimitsConfig {
            min_free_bytes: 0,
            ballast_bytes: 0,
            txs_per_second_per_account: 1,
            ..Default::default()
        });
        let app = ehrchain_node::api::router(state);
        let t = transfers(&senders[..1], 3);
        for tx in &t[..2] {
            let (s, v) = call(&app, "POST", "/api/v1/transactions", Some(submit_body(tx))).await;
            assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        }
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/transactions")
            .header("content-type", "application/json")
            .body(Body::from(submit_body(&t[2])))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        // The answer says when to come back.
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(retry.as_deref(), Some("1"), "{:?}", resp.headers());
        let v: Value =
            serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 20).await.unwrap()).unwrap();
        assert_eq!(v["error"]["code"], "rate_limited");
    }
}

/// The consensus key of a validator signs API requests with the same ed25519 key, so a
/// validator operator is a consortium member through its key.
#[test]
fn validator_seed_signs_as_its_consensus_key() {
    let seed = [5u8; 32];
    assert_eq!(
        Keypair::from_seed(&seed).public_key().0,
        ehrchain_consensus::tcp::public_key_of_seed(&seed).unwrap()
    );
}

/// A batch is admitted transaction by transaction: one bad signature, a duplicate, a replay, a
/// nonce gap or a wrong chain refuses that transaction only, with its own reason, and every
/// other one is admitted (one signature batch for the lot).
#[test]
fn batch_admission_refuses_only_the_bad_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let senders: Vec<Keypair> = (0..4).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
    let g = genesis(&senders);
    let chain = open_chain(dir.path(), &g);
    let good = transfers(&senders, 2); // nonces 0 and 1 of every sender
    let mut forged = good[1].clone();
    forged.signature.0[0] ^= 1;
    let mut other_chain = good[2].clone();
    other_chain.tx.chain_id = "elsewhere".into();
    let gap = {
        let k = &senders[3];
        k.sign_tx(Transaction {
            chain_id: "sim".into(),
            signer: k.public_key(),
            nonce: 5_000,
            payload: TxPayload::Transfer {
                to: k.account(),
                amount: 1,
            },
        })
    };
    let batch = vec![
        good[0].clone(), // admitted
        forged,          // bad signature
        good[0].clone(), // duplicate within the batch
        other_chain,     // wrong chain
        gap,             // too far ahead
        good[3].clone(), // admitted
        good[4].clone(), // admitted: sender 0's nonce 1, after nonce 0 above
    ];
    let results = chain.submit_batch(batch, 0);
    let errors: Vec<String> = results
        .iter()
        .map(|r| r.as_ref().err().map_or(String::new(), ToString::to_string))
        .collect();
    assert!(results[0].is_ok(), "{errors:?}");
    assert!(errors[1].contains("signature"), "{errors:?}");
    assert!(errors[2].contains("already pending"), "{errors:?}");
    assert!(errors[3].contains("elsewhere"), "{errors:?}");
    assert!(errors[4].contains("too far ahead"), "{errors:?}");
    assert!(results[5].is_ok() && results[6].is_ok(), "{errors:?}");
    assert_eq!(chain.snapshot().mempool_size, 3);
    // The forged copy did not take sender 1's nonce 0: the real one is still admitted.
    assert!(chain.submit(good[1].clone(), 0).is_ok());
    // Once finalized, resubmitting is a replay, refused before any signature work.
    let tip = chain.store().tip().unwrap().unwrap();
    let b1 = chain
        .propose(&tip, 1, ehrchain_types::PublicKey([1; 32]), 1_000)
        .unwrap();
    assert_eq!(b1.txs.len(), 4);
    chain.finalized(&b1, None).unwrap();
    let again = chain.submit_batch(vec![good[0].clone(), good[1].clone()], 0);
    assert!(again.iter().all(|r| {
        r.as_ref()
            .is_err_and(|e| e.to_string().contains("replayed"))
    }));
}

/// A follower (issue 14) takes a finalized block only with a certificate by a quorum of the
/// genesis validators over that very block, then executes it and reaches the validators'
/// state root; anything else is refused and changes nothing.
#[test]
fn a_follower_checks_every_certificate_against_the_genesis_validators() {
    use ehrchain_node::follow::{Refused, accept};
    let cfg = sim::SimConfig {
        seed: 21,
        ..sim::SimConfig::default()
    };
    let run = run_sim(&cfg, 5);
    let source = run.net.chain(0);
    let tip = source.snapshot().tip.height;
    assert!(tip >= 2);
    let genesis_set: Vec<PublicKey> = (0..cfg.validators)
        .map(|i| PublicKey(sim::validator_public_key(i)))
        .collect();
    // Validators that are not the genesis set: keys of a different simulation's validators.
    let other_set: Vec<PublicKey> = (10..10 + cfg.validators)
        .map(|i| PublicKey(sim::validator_public_key(i)))
        .collect();
    let finality = ehrchain_node::proof::EngineFinality;
    let dir = tempfile::tempdir().unwrap();
    let follower = open_chain(dir.path(), &run.net.genesis);
    let store = source.store();
    let raw = |h: u64| {
        (
            store.block_bytes(h).unwrap().unwrap(),
            store.finalization(h).unwrap().unwrap(),
        )
    };
    let (b1, c1) = raw(1);
    let refused = |r: Result<(), Refused>| r.expect_err("must be refused");
    // A valid certificate, but by validators the follower's genesis does not name.
    assert!(matches!(
        refused(accept(&follower, &other_set, &finality, 1, &b1, Some(&c1))),
        Refused::Certificate(1, _)
    ));
    // A changed byte of the certificate.
    let mut bad = c1.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        refused(accept(
            &follower,
            &genesis_set,
            &finality,
            1,
            &b1,
            Some(&bad)
        )),
        Refused::Certificate(1, _) | Refused::Malformed(..)
    ));
    // The certificate of block 2 on block 1, and block 1 with a changed timestamp.
    let (_, c2) = raw(2);
    assert!(matches!(
        refused(accept(
            &follower,
            &genesis_set,
            &finality,
            1,
            &b1,
            Some(&c2)
        )),
        Refused::Certificate(1, _)
    ));
    let mut block: Block = ehrchain_types::decode(&b1, usize::MAX).unwrap();
    block.header.timestamp_ms += 1;
    let forged = ehrchain_types::encode(&block);
    assert!(matches!(
        refused(accept(
            &follower,
            &genesis_set,
            &finality,
            1,
            &forged,
            Some(&c1)
        )),
        Refused::Certificate(1, _)
    ));
    // No certificate; the wrong height; garbage.
    assert!(matches!(
        refused(accept(&follower, &genesis_set, &finality, 1, &b1, None)),
        Refused::NoCertificate(1)
    ));
    assert!(matches!(
        refused(accept(
            &follower,
            &genesis_set,
            &finality,
            2,
            &b1,
            Some(&c1)
        )),
        Refused::WrongHeight { asked: 2, got: 1 }
    ));
    assert!(matches!(
        refused(accept(
            &follower,
            &genesis_set,
            &finality,
            1,
            &[1, 2, 3],
            Some(&c1)
        )),
        Refused::Malformed(1, _)
    ));
    assert_eq!(
        follower.snapshot().tip.height,
        0,
        "a refused block changed nothing"
    );
    // The real blocks, in order: the follower reaches the validators' state.
    for h in 1..=tip {
        let (b, c) = raw(h);
        accept(&follower, &genesis_set, &finality, h, &b, Some(&c)).unwrap();
    }
    let (f, s) = (follower.snapshot(), source.snapshot());
    assert_eq!(f.tip, s.tip);
    assert_eq!(f.state.root(), s.state.root());
    assert_eq!(
        follower.store().finalization(tip).unwrap(),
        store.finalization(tip).unwrap()
    );
    // Reopened from its store, the follower has the same state (the stored tree reaches the
    // header's root). A state reads through a snapshot of the store, which keeps the
    // database open: every one must go first.
    drop((f, follower));
    let again = open_chain(dir.path(), &run.net.genesis);
    assert_eq!(again.snapshot().state.root(), s.state.root());
}

/// Copies directory `from` over `to` (emptied first): an index as it was on disk at a moment.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
