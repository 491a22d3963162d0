//! A seeded, deterministic multi-validator harness: Commonware's deterministic runtime and
//! simulated network, with latency, jitter and message loss, partitions that heal, crashed
//! validators rebuilt from their storage, and Byzantine validators (the engine's own mocks),
//! driving real [`Ledger`]s. The same configuration and seed give the same run, event for
//! event.

use crate::{
    Channels, EngineConfig, Ledger,
    engine::{CH_BACKFILL, CH_BROADCAST, CH_CERT, CH_GOSSIP, CH_RESOLVE, CH_VOTE},
    start_validator,
};
use commonware_consensus::{
    simplex::{mocks, scheme::ed25519::Scheme},
    types::ViewDelta,
};
use commonware_cryptography::{Sha256, Signer as _, ed25519};
use commonware_p2p::simulated;
use commonware_runtime::{
    Clock, Handle, Quota, Runner as _, Spawner as _, Supervisor as _, deterministic,
};
use commonware_utils::{NZU32, NZUsize, Probability, ordered::Set};
use ehrchain_types::Block;
use std::{sync::Arc, time::Duration};

type Pk = ed25519::PublicKey;
type Ctx = deterministic::Context;

/// A fault injected at a point of virtual time (measured from the start of the run).
#[derive(Clone, Debug)]
pub enum Fault {
    /// Cut every link between `group` and the other validators during `[at, until)`.
    Partition {
        at: Duration,
        until: Duration,
        group: Vec<usize>,
    },
    /// Crash validator `v` at `at`: all its tasks stop, and whatever they held in memory is
    /// gone. At `restart_at` it starts again from its storage alone: the engine reopens its
    /// partitions and the application is built anew by the ledger factory of [`run`].
    Crash {
        v: usize,
        at: Duration,
        restart_at: Duration,
    },
    /// Validator `v` is not started until `at`, with empty storage: it joins late and must
    /// fetch every finalized block it missed.
    Join { v: usize, at: Duration },
}

/// A Byzantine behaviour, from the engine's mocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// Votes for two different payloads in the same view.
    Conflicter,
    /// Votes to nullify and to finalize in the same view.
    Nuller,
    /// Re-signs proposals from old views.
    Outdated,
    /// Votes to nullify every proposal.
    NullifyOnly,
}

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
    pub faults: Vec<Fault>,
    /// A validator replaced by a Byzantine mock (its ledger is not used).
    pub byzantine: Option<(usize, Byzantine)>,
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
            faults: Vec::new(),
            byzantine: None,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct SimOutcome {
    /// Whether `done` held before the virtual time limit.
    pub done: bool,
    pub virtual_time: Duration,
    /// The runtime's audit hash over every event of the run: equal for equal runs.
    pub audit: String,
    /// `(blocker, blocked)` validator indices of peers that honest validators blocked.
    pub blocked: Vec<(usize, usize)>,
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

fn link(cfg: &SimConfig) -> simulated::Link {
    simulated::Link {
        latency: cfg.latency,
        jitter: cfg.jitter,
        success_rate: Probability::new(cfg.delivery_per_mille, 1000).expect("per mille ≤ 1000"),
    }
}

/// Cuts (`None`) or restores (`Some`) every link crossing the boundary of `group`.
async fn set_links(
    oracle: &simulated::Oracle<Pk, Ctx>,
    pks: &[Pk],
    group: &[usize],
    link: Option<&simulated::Link>,
) {
    for a in 0..pks.len() {
        for b in 0..pks.len() {
            if a == b || group.contains(&a) == group.contains(&b) {
                continue;
            }
            // Already cut or already linked is fine: partitions may overlap.
            let _ = match link {
                None => oracle.remove_link(pks[a].clone(), pks[b].clone()).await,
                Some(l) => {
                    oracle
                        .add_link(pks[a].clone(), pks[b].clone(), l.clone())
                        .await
                }
            };
        }
    }
}

async fn register(
    oracle: &simulated::Oracle<Pk, Ctx>,
    pk: &Pk,
    quota: Quota,
) -> Channels<simulated::Sender<Pk, Ctx>, simulated::Receiver<Pk>> {
    let control = oracle.control(pk.clone());
    Channels {
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
        gossip: control.register(CH_GOSSIP, quota).await.expect("register"),
    }
}

/// Starts honest validator `i` under a holder task; aborting the returned handle crashes the
/// validator with everything it spawned.
async fn start_honest(
    context: &Ctx,
    oracle: &simulated::Oracle<Pk, Ctx>,
    i: usize,
    incarnation: u32,
    cfg: EngineConfig,
    ledger: Arc<dyn Ledger>,
    quota: Quota,
) -> Handle<()> {
    let pk = cfg.signer.public_key();
    let channels = register(oracle, &pk, quota).await;
    let (tx, rx) = futures::channel::oneshot::channel::<Ctx>();
    let holder = context
        .child("validator")
        .with_attribute("v", i)
        .with_attribute("incarnation", incarnation)
        .spawn(move |ctx| async move {
            let _ = tx.send(ctx.child("node"));
            // The holder must never finish: finishing would abort the validator's tasks.
            futures::future::pending::<()>().await;
        });
    let node_ctx = rx.await.expect("holder task started");
    start_validator(
        node_ctx,
        cfg,
        oracle.control(pk),
        oracle.manager(),
        channels,
        ledger,
    )
    .await;
    holder
}

async fn start_byzantine(
    context: &Ctx,
    oracle: &simulated::Oracle<Pk, Ctx>,
    i: usize,
    kind: Byzantine,
    key: ed25519::PrivateKey,
    set: Set<Pk>,
    quota: Quota,
) -> Handle<()> {
    let scheme = Scheme::signer(ehrchain_types::domain::CONSENSUS, set, key.clone())
        .expect("byzantine key is in the set");
    let ch = register(oracle, &key.public_key(), quota).await;
    let ctx = context.child("byzantine").with_attribute("v", i);
    match kind {
        Byzantine::Conflicter => mocks::conflicter::Conflicter::<_, _, Sha256>::new(
            ctx,
            mocks::conflicter::Config { scheme },
        )
        .start(ch.vote),
        Byzantine::Nuller => {
            mocks::nuller::Nuller::<_, _, Sha256>::new(ctx, mocks::nuller::Config { scheme })
                .start(ch.vote)
        }
        Byzantine::Outdated => mocks::outdated::Outdated::<_, _, Sha256>::new(
            ctx,
            mocks::outdated::Config {
                scheme,
                view_delta: ViewDelta::new(40),
            },
        )
        .start(ch.vote),
        Byzantine::NullifyOnly => mocks::nullify_only::NullifyOnly::<_, _, Sha256>::new(
            ctx,
            mocks::nullify_only::Config { scheme },
        )
        .start(ch.vote),
    }
}

enum Event {
    Cut(Vec<usize>),
    Heal(Vec<usize>),
    Crash(usize),
    Restart(usize),
}

/// Runs `cfg.validators` validators (same genesis) until `done()` holds (checked every 50 ms
/// of virtual time, after every scheduled fault has happened) or the virtual time limit passes.
///
/// `ledger(v, incarnation)` builds validator `v`'s application each time `v` starts:
/// incarnation 0 at the start of the run, one more at each restart (a validator that joins
/// late starts at 1). For an incarnation above 0 it must rebuild the application from `v`'s
/// storage alone, as a process does after a crash, so that the run tests recovery; the
/// previous incarnation's tasks have all stopped by then. It is not called for the Byzantine
/// validator.
pub fn run(
    cfg: &SimConfig,
    genesis: Block,
    ledger: impl Fn(usize, u32) -> Arc<dyn Ledger> + Send + 'static,
    done: impl Fn() -> bool + Send + 'static,
) -> SimOutcome {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(cfg.seed)
            .with_timeout(Some(cfg.max_virtual_time + Duration::from_secs(60))),
    );
    let cfg = cfg.clone();
    runner.start(|context| async move {
        let keys = validator_keys(cfg.validators);
        let pks: Vec<Pk> = keys.iter().map(|k| k.public_key()).collect();
        let set = Set::try_from(pks.clone()).expect("distinct keys");
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
        let all: Vec<usize> = (0..cfg.validators).collect();
        for a in &all {
            for b in &all {
                if a != b {
                    oracle
                        .add_link(pks[*a].clone(), pks[*b].clone(), link(&cfg))
                        .await
                        .expect("link");
                }
            }
        }
        let quota = Quota::per_second(NZU32!(1_000_000));
        let engine_cfg = |i: usize| EngineConfig {
            signer: keys[i].clone(),
            validators: set.clone(),
            genesis: genesis.clone(),
            partition_prefix: format!("v{i}"),
            leader_timeout: cfg.leader_timeout,
            idle_block_interval: cfg.leader_timeout / 4,
        };
        let late: Vec<usize> = cfg
            .faults
            .iter()
            .filter_map(|f| match f {
                Fault::Join { v, .. } => Some(*v),
                _ => None,
            })
            .collect();
        let mut handles: Vec<Option<Handle<()>>> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if late.contains(&i) {
                handles.push(None);
                continue;
            }
            let h = match cfg.byzantine {
                Some((b, kind)) if b == i => {
                    start_byzantine(&context, &oracle, i, kind, key.clone(), set.clone(), quota)
                        .await
                }
                _ => {
                    start_honest(&context, &oracle, i, 0, engine_cfg(i), ledger(i, 0), quota).await
                }
            };
            handles.push(Some(h));
        }
        let mut schedule: Vec<(Duration, Event)> = Vec::new();
        for f in &cfg.faults {
            match f {
                Fault::Partition { at, until, group } => {
                    schedule.push((*at, Event::Cut(group.clone())));
                    schedule.push((*until, Event::Heal(group.clone())));
                }
                Fault::Crash { v, at, restart_at } => {
                    assert!(at < restart_at, "validator {v} restarts before it crashes");
                    schedule.push((*at, Event::Crash(*v)));
                    schedule.push((*restart_at, Event::Restart(*v)));
                }
                Fault::Join { v, at } => schedule.push((*at, Event::Restart(*v))),
            }
        }
        schedule.sort_by_key(|(t, _)| *t);
        let mut schedule = std::collections::VecDeque::from(schedule);
        let mut incarnations = vec![0u32; cfg.validators];
        let start = context.current();
        let elapsed = |c: &Ctx| c.current().duration_since(start).unwrap_or_default();
        let finished = loop {
            while schedule
                .front()
                .is_some_and(|(t, _)| *t <= elapsed(&context))
            {
                let (_, event) = schedule.pop_front().expect("front exists");
                match event {
                    Event::Cut(group) => set_links(&oracle, &pks, &group, None).await,
                    Event::Heal(group) => set_links(&oracle, &pks, &group, Some(&link(&cfg))).await,
                    Event::Crash(v) => {
                        if let Some(h) = handles[v].take() {
                            h.abort();
                            let _ = h.await;
                        }
                        // The validator's tasks drop what they hold (its ledger too) when they
                        // are next polled: leave the events after a crash to the next round,
                        // so that a restart never meets the crashed incarnation still alive.
                        break;
                    }
                    Event::Restart(v) => {
                        incarnations[v] += 1;
                        handles[v] = Some(
                            start_honest(
                                &context,
                                &oracle,
                                v,
                                incarnations[v],
                                engine_cfg(v),
                                ledger(v, incarnations[v]),
                                quota,
                            )
                            .await,
                        );
                    }
                }
            }
            if schedule.is_empty() && done() {
                break true;
            }
            if elapsed(&context) > cfg.max_virtual_time {
                break false;
            }
            context.sleep(Duration::from_millis(50)).await;
        };
        let virtual_time = elapsed(&context);
        let index = |pk: &Pk| pks.iter().position(|p| p == pk).expect("known peer");
        let blocked = oracle
            .blocked()
            .await
            .unwrap_or_default()
            .iter()
            .map(|(a, b)| (index(a), index(b)))
            .collect();
        SimOutcome {
            done: finished,
            virtual_time,
            audit: context.auditor().state(),
            blocked,
        }
    })
}
