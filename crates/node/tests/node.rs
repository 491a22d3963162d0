//! Integration tests of the node: multi-validator consensus on the deterministic runtime
//! with the real chain (execution + redb storage), restart from storage, and the API.

use ehrchain_consensus::{Ledger, sim};
use ehrchain_crypto::Keypair;
use ehrchain_ledger::{GenesisAccount, GenesisState};
use ehrchain_node::{Chain, config::BlockConfig, mempool::MempoolLimits, store::ChainStore};
use ehrchain_types::{Hash, SignedTransaction, Transaction, TxPayload};
use std::sync::Arc;

struct Net {
    _dirs: Vec<tempfile::TempDir>,
    chains: Vec<Arc<Chain>>,
    genesis: GenesisState,
    senders: Vec<Keypair>,
}

fn genesis(senders: &[Keypair]) -> GenesisState {
    GenesisState {
        chain_id: "sim".into(),
        timestamp_ms: 0,
        accounts: senders
            .iter()
            .map(|k| GenesisAccount {
                public_key: k.public_key(),
                role: None,
                balance: 1_000,
            })
            .collect(),
    }
}

fn open_chain(dir: &std::path::Path, g: &GenesisState) -> Arc<Chain> {
    let store = ChainStore::open(&dir.join("chain.redb")).unwrap();
    Arc::new(Chain::open(store, g, MempoolLimits::default(), BlockConfig::default()).unwrap())
}

fn net(validators: usize, senders: usize) -> Net {
    let senders: Vec<Keypair> = (0..senders)
        .map(|i| Keypair::from_seed(&[i as u8 + 1; 32]))
        .collect();
    let g = genesis(&senders);
    let dirs: Vec<_> = (0..validators)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let chains = dirs.iter().map(|d| open_chain(d.path(), &g)).collect();
    Net {
        _dirs: dirs,
        chains,
        genesis: g,
        senders,
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

/// Checks the safety invariants and returns the block ids of the common prefix.
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
        // Every submitted transaction finalized exactly once.
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

fn run_sim(cfg: &sim::SimConfig, per_sender: u64) -> (Net, Vec<Hash>) {
    let n = net(cfg.validators, 10);
    let txs = transfers(&n.senders, per_sender);
    submit_all(&n.chains, &txs);
    let expected = txs.len() as u64;
    let watch = n.chains.clone();
    let ledgers: Vec<Arc<dyn Ledger>> = n
        .chains
        .iter()
        .map(|c| c.clone() as Arc<dyn Ledger>)
        .collect();
    let gblock = ehrchain_ledger::genesis(&n.genesis).0;
    let (ok, _elapsed) = sim::run(cfg, gblock, ledgers, move || {
        watch
            .iter()
            .all(|c| finalized_count(c) == expected && c.snapshot().tip.height >= 5)
    });
    assert!(ok, "the network did not finalize every transaction in time");
    let ids = check_agreement(&n.chains, expected);
    (n, ids)
}

#[test]
fn four_validators_finalize_and_agree() {
    let cfg = sim::SimConfig {
        seed: 7,
        ..sim::SimConfig::default()
    };
    let (_n, ids) = run_sim(&cfg, 20);
    assert!(ids.len() > 5);
}

#[test]
fn lossy_network_still_finalizes() {
    let cfg = sim::SimConfig {
        seed: 11,
        delivery_per_mille: 900,
        jitter: std::time::Duration::from_millis(40),
        ..sim::SimConfig::default()
    };
    run_sim(&cfg, 5);
}

#[test]
fn same_seed_same_chain() {
    let cfg = sim::SimConfig {
        seed: 3,
        ..sim::SimConfig::default()
    };
    let (_a, ids_a) = run_sim(&cfg, 5);
    let (_b, ids_b) = run_sim(&cfg, 5);
    let common = ids_a.len().min(ids_b.len());
    assert!(common > 5);
    assert_eq!(
        ids_a[..common],
        ids_b[..common],
        "same seed, different chain"
    );
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
    assert!(
        Chain::open(
            store,
            &other,
            MempoolLimits::default(),
            BlockConfig::default()
        )
        .is_err()
    );
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
    assert!(chain.verify(&tip, &good, 1_000));
    // A forged signature.
    let mut forged = good.clone();
    forged.txs[0].signature.0[0] ^= 1;
    forged.header.tx_root = ehrchain_types::block::tx_root(&forged.txs);
    assert!(!chain.verify(&tip, &forged, 1_000));
    // A wrong state root.
    let mut wrong_root = good.clone();
    wrong_root.header.state_root = Hash([9; 32]);
    assert!(!chain.verify(&tip, &wrong_root, 1_000));
    // A timestamp far in the future.
    let mut future = good.clone();
    future.header.timestamp_ms = 1_000 + 3_600_000;
    assert!(!chain.verify(&tip, &future, 1_000));
}
