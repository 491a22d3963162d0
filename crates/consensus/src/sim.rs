//! A seeded, deterministic multi-validator harness: Commonware's deterministic runtime and
//! simulated network, with latency, jitter and message loss, driving real [`Ledger`]s.
//! Used by tests (and later by simulation sweeps); the same seed gives the same run.

use crate::{
    Channels, EngineConfig, Ledger,
    engine::{CH_BACKFILL, CH_BROADCAST, CH_CERT, CH_RESOLVE, CH_VOTE},
    start_validator,
};
use commonware_cryptography::{Signer as _, ed25519};
use commonware_p2p::simulated;
use commonware_runtime::{Clock, Quota, Runner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, Probability, ordered::Set};
use ehrchain_types::Block;
use std::{sync::Arc, time::Duration};

/// One simulated network.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub validators: usize,
    pub latency: Duration,
    pub jitter: Duration,
    /// Delivery probability of each message, as `numerator / 1000`.
    pub delivery_per_mille: u64,
    /// Virtual time after which the run gives up.
    pub max_virtual_time: Duration,
    pub leader_timeout: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            validators: 4,
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
            delivery_per_mille: 1000,
            max_virtual_time: Duration::from_secs(120),
            leader_timeout: Duration::from_secs(1),
        }
    }
}

/// The consensus keys of a simulation's validators (derived from their index).
pub fn validator_keys(n: usize) -> Vec<ed25519::PrivateKey> {
    (0..n as u64).map(ed25519::PrivateKey::from_seed).collect()
}

/// The public key bytes of validator `i`.
pub fn validator_public_key(i: usize) -> [u8; 32] {
    let pk = ed25519::PrivateKey::from_seed(i as u64).public_key();
    let mut out = [0u8; 32];
    out.copy_from_slice(pk.as_ref());
    out
}

/// Runs `cfg.validators` validators over `ledgers` (one per validator, same genesis) until
/// `done()` holds (checked every 50 ms of virtual time) or the virtual time limit passes.
/// Returns whether `done` held and the virtual time it took.
pub fn run(
    cfg: &SimConfig,
    genesis: Block,
    ledgers: Vec<Arc<dyn Ledger>>,
    done: impl Fn() -> bool + Send + 'static,
) -> (bool, Duration) {
    assert_eq!(ledgers.len(), cfg.validators, "one ledger per validator");
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(cfg.seed)
            .with_timeout(Some(cfg.max_virtual_time + Duration::from_secs(60))),
    );
    let cfg = cfg.clone();
    runner.start(|context| async move {
        let keys = validator_keys(cfg.validators);
        let set = Set::try_from(keys.iter().map(|k| k.public_key()).collect::<Vec<_>>())
            .expect("distinct keys");
        let (network, oracle) = simulated::Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size: ehrchain_types::MAX_BLOCK_BYTES as u32 + 64 * 1024,
                max_peers_per_set: NZUsize!(cfg.validators),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            set.iter().cloned(),
        )
        .await;
        network.start();
        let delivery = Probability::new(cfg.delivery_per_mille, 1000).expect("per mille ≤ 1000");
        for a in set.iter() {
            for b in set.iter() {
                if a != b {
                    oracle
                        .add_link(
                            a.clone(),
                            b.clone(),
                            simulated::Link {
                                latency: cfg.latency,
                                jitter: cfg.jitter,
                                success_rate: delivery,
                            },
                        )
                        .await
                        .expect("link");
                }
            }
        }
        let quota = Quota::per_second(NZU32!(1_000_000));
        for (i, (key, ledger)) in keys.into_iter().zip(ledgers).enumerate() {
            let control = oracle.control(key.public_key());
            let channels = Channels {
                vote: control.register(CH_VOTE, quota).await.expect("register"),
                cert: control.register(CH_CERT, quota).await.expect("register"),
                resolve: control.register(CH_RESOLVE, quota).await.expect("register"),
                backfill: control
                    .register(CH_BACKFILL, quota)
                    .await
                    .expect("register"),
                broadcast: control
                    .register(CH_BROADCAST, quota)
                    .await
                    .expect("register"),
            };
            let engine_cfg = EngineConfig {
                signer: key,
                validators: set.clone(),
                genesis: genesis.clone(),
                partition_prefix: format!("v{i}"),
                leader_timeout: cfg.leader_timeout,
                idle_block_interval: cfg.leader_timeout / 4,
            };
            start_validator(
                context.child("validator").with_attribute("v", i),
                engine_cfg,
                control.clone(),
                oracle.manager(),
                channels,
                ledger,
            )
            .await;
        }
        let start = context.current();
        loop {
            if done() {
                return (
                    true,
                    context.current().duration_since(start).unwrap_or_default(),
                );
            }
            let elapsed = context.current().duration_since(start).unwrap_or_default();
            if elapsed > cfg.max_virtual_time {
                return (false, elapsed);
            }
            context.sleep(Duration::from_millis(50)).await;
        }
    })
}
