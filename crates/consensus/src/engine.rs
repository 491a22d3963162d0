//! Wiring of one validator: buffered broadcast, marshal (ordered finalized blocks with
//! back-fill), the `Inline` application adapter and the simplex engine. Generic over the
//! runtime and the network so the same code runs on the deterministic runtime with a
//! simulated network (tests) and on tokio with authenticated TCP (production).

use crate::{ChainBlock, Ledger, Verdict};
use commonware_actor::{
    Feedback,
    mailbox::{self, Policy},
};
use commonware_broadcast::buffered;
use commonware_codec::Encode as _;
use commonware_consensus::{
    Application, Heightable as _, Reporter,
    marshal::{
        self, Start, Update,
        ancestry::Ancestry,
        core::{Actor as MarshalActor, Mailbox as MarshalMailbox},
        resolver::p2p as marshal_resolver,
        standard::{Inline, Standard},
    },
    simplex::{self, elector::RoundRobin, scheme::ed25519::Scheme, types::Context},
    types::{Epoch, FixedEpocher, ViewDelta},
};
use commonware_cryptography::{
    Digested, Digestible as _, Sha256, Signer as _, certificate::ConstantProvider, ed25519,
    sha256::Digest,
};
use commonware_p2p::{Blocker, Provider, Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::{archive::prunable, translator::EightCap};
use commonware_utils::{
    Acknowledgement as _, NZDuration, NZU16, NZU64, NZUsize, acknowledgement::Exact, ordered::Set,
};
use ehrchain_types::{Block, PublicKey};
use futures::StreamExt as _;
use std::{
    collections::VecDeque,
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

type PK = ed25519::PublicKey;

/// Channel ids, the same on every node.
pub const CH_VOTE: u64 = 0;
pub const CH_CERT: u64 = 1;
pub const CH_RESOLVE: u64 = 2;
pub const CH_BACKFILL: u64 = 3;
pub const CH_BROADCAST: u64 = 4;
pub const CH_GOSSIP: u64 = 5;

/// How often a validator forwards its newly admitted transactions to its peers.
const GOSSIP_INTERVAL: Duration = Duration::from_millis(20);

/// The network channels a validator needs.
pub struct Channels<S, R> {
    pub vote: (S, R),
    pub cert: (S, R),
    pub resolve: (S, R),
    pub backfill: (S, R),
    pub broadcast: (S, R),
    /// Transactions submitted to one validator, forwarded to the others so that every leader
    /// can include them.
    pub gossip: (S, R),
}

/// What a validator needs besides its network and runtime.
#[derive(Clone)]
pub struct EngineConfig {
    pub signer: ed25519::PrivateKey,
    pub validators: Set<PK>,
    /// The genesis block; every validator must have the same one.
    pub genesis: Block,
    /// Prefix of this validator's storage partitions.
    pub partition_prefix: String,
    /// How long a leader has to propose before the view times out.
    pub leader_timeout: Duration,
    /// With an empty mempool, how long after its parent an empty block is proposed. Must be
    /// well below `leader_timeout`.
    pub idle_block_interval: Duration,
}

/// The application handed to marshal's `Inline` adapter.
#[derive(Clone)]
struct App {
    ledger: Arc<dyn Ledger>,
    idle_block_interval: Duration,
    /// The longest a leader holds a proposal back for the writer (see [`MAX_UNWRITTEN`]).
    max_hold: Duration,
}

/// How many blocks a leader's parent may be ahead of this node's last written (finalized and
/// committed) block before the leader holds its proposal back, for at most a quarter of the
/// leader timeout. With a large state each durable write costs more, and small blocks
/// proposed faster than they are written only grow the backlog; and every block proposed
/// ahead of the writer is one more the transactions behind it wait for (2 rather than 8
/// took a light load's median latency from ~200–390 ms to ~95 ms: ADR 0008).
const MAX_UNWRITTEN: u64 = 2;

/// Heights per section of marshal's archives of finalized blocks and certificates. Each
/// section is a key file and a value file per archive, and the archive keeps every section
/// open, so the node holds 4 files per this many heights: with 1,024 (the first choice) a
/// loaded node gained a file every few seconds and would exhaust a 1,024-descriptor limit
/// within hours (found by `bench soak`). The archives are never pruned, because they are what
/// a lagging or new validator back-fills from.
const ARCHIVE_SECTION: std::num::NonZeroU64 = NZU64!(65_536);
/// Names the archives' on-disk layout: a section size is fixed for a partition's lifetime,
/// so a new size gets new partitions (a data dir written with the old size keeps its old
/// partitions unused; its chain lives in the node's own store).
const ARCHIVE_LAYOUT: &str = "-s65536";

fn now_ms<E: Clock>(clock: &E) -> u64 {
    clock
        .current()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn ledger_key(pk: &PK) -> PublicKey {
    let mut out = [0u8; 32];
    out.copy_from_slice(pk.as_ref());
    PublicKey(out)
}

/// Most ancestors replayed to recover the state a block builds on.
const MAX_REPLAY: usize = 256;
/// How often a replay that has to wait for the finalized tip to move looks again.
const REPLAY_POLL: Duration = Duration::from_millis(50);

impl App {
    /// [`Ledger::verify`], waiting on the runtime's clock while the answer is
    /// [`Verdict::NotYet`]. The ledger bounds how far ahead it defers (past that, a block is
    /// invalid), and consensus drops this future when the view ends, so the wait is bounded.
    async fn verify_when_due<E: Clock>(&self, clock: &E, parent: &Block, block: &Block) -> bool {
        loop {
            let now = now_ms(clock);
            match self.ledger.verify(parent, block, now) {
                Verdict::Valid => return true,
                Verdict::Invalid => return false,
                Verdict::NotYet { at_ms } => {
                    // At least a millisecond, so that an instant already past cannot spin.
                    let at = at_ms.max(now + 1);
                    tracing::debug!(
                        height = block.header.height,
                        wait_ms = at - now,
                        "block is ahead of this node's clock; verifying it later"
                    );
                    clock
                        .sleep_until(UNIX_EPOCH + Duration::from_millis(at))
                        .await;
                }
            }
        }
    }

    /// Makes sure the ledger knows the state after `parent`: walks back the ancestry to a block
    /// whose state is known and verifies the blocks in between (oldest first). Such blocks were
    /// certified by a quorum without this node verifying them, e.g. while it was busy or before
    /// it restarted (speculative states are not stored).
    ///
    /// `false` means that `parent` can never extend the finalized chain (or that the ancestry
    /// ended, which only happens when marshal stops). Running into the finalized height without
    /// meeting a known state is such a case only if the finalized tip did not move meanwhile:
    /// see [`App::rescan`]. Too long a walk is not: it waits for the finalized tip to catch up.
    async fn ensure_state<E: Clock>(
        &self,
        clock: &E,
        parent: &Digested<ChainBlock>,
        ancestry: &mut impl Ancestry<ChainBlock>,
    ) -> bool {
        // The blocks walked past, newest first; none had a known state when it was walked.
        let mut missing: Vec<Digested<ChainBlock>> = Vec::new();
        let mut cursor = parent.clone();
        while !self.ledger.has_state(&cursor.inner().block.id()) {
            let height = cursor.inner().block.header.height;
            if height > self.ledger.finalized_height() && missing.len() < MAX_REPLAY {
                missing.push(cursor.clone());
                let Some(next) = ancestry.next().await else {
                    tracing::debug!(
                        missing = missing.len(),
                        "ancestry ended before a known state"
                    );
                    return false;
                };
                cursor = next;
                continue;
            }
            missing.push(cursor);
            let Some(known) = self.rescan(clock, &missing).await else {
                return false;
            };
            cursor = missing[known].clone();
            missing.truncate(known);
            break;
        }
        for child in missing.iter().rev() {
            if !self
                .verify_when_due(clock, &cursor.inner().block, &child.inner().block)
                .await
            {
                return false;
            }
            cursor = child.clone();
        }
        true
    }

    /// Finds the newest of `walked` (a chain, newest first, ending at or below the finalized
    /// height or `MAX_REPLAY` long) whose state the ledger knows now. Below the finalized tip
    /// only the tip's state is known, and the tip moves while a walk runs: it may have moved
    /// onto a block already walked past. A scan during which the finalized height stood still
    /// is conclusive: with the tip at or above the oldest walked block and not among them, the
    /// walked chain forks off below the tip (or its child is already decided), so `None` is
    /// final. With the tip still below them all, the walk was too long: wait for it to rise.
    async fn rescan<E: Clock>(&self, clock: &E, walked: &[Digested<ChainBlock>]) -> Option<usize> {
        let oldest = walked
            .last()
            .expect("a walk holds its start")
            .inner()
            .block
            .header
            .height;
        loop {
            let floor = self.ledger.finalized_height();
            if let Some(i) = walked
                .iter()
                .position(|b| self.ledger.has_state(&b.inner().block.id()))
            {
                return Some(i);
            }
            if self.ledger.finalized_height() != floor {
                continue;
            }
            if floor >= oldest {
                tracing::debug!(
                    oldest,
                    floor,
                    "no known state on this branch down to the finalized height"
                );
                return None;
            }
            clock.sleep(REPLAY_POLL).await;
        }
    }
}

impl<E: Spawner + Metrics + Clock> Application<E> for App {
    type SigningScheme = Scheme;
    type Context = Context<Digest, PK>;
    type Block = ChainBlock;
    type Input = ();

    async fn propose(
        &mut self,
        (rt, ctx): (E, Self::Context),
        mut ancestry: impl Ancestry<ChainBlock>,
        _: (),
    ) -> Option<Digested<ChainBlock>> {
        let parent = ancestry.next().await?;
        if !self.ensure_state(&rt, &parent, &mut ancestry).await {
            return None;
        }
        let ledger = self.ledger.clone();
        let view = ctx.round.view().get();
        // An idle chain makes a block per idle interval, not one per round trip.
        let idle_until =
            parent.inner().block.header.timestamp_ms + self.idle_block_interval.as_millis() as u64;
        while !ledger.has_pending() && now_ms(&rt) < idle_until {
            rt.sleep(Duration::from_millis(5)).await;
        }
        // While this node's finalized blocks wait to be written, hold the proposal back a
        // little: the block collects more transactions and the writer catches up, rather than
        // many small blocks each paying a whole durable write and the backlog growing.
        let parent_height = parent.inner().block.header.height;
        let hold_until = now_ms(&rt) + self.max_hold.as_millis() as u64;
        while parent_height > ledger.finalized_height() + MAX_UNWRITTEN && now_ms(&rt) < hold_until
        {
            rt.sleep(Duration::from_millis(5)).await;
        }
        let block = ledger.propose(
            &parent.inner().block,
            view,
            ledger_key(&ctx.leader),
            now_ms(&rt),
        )?;
        let block = ChainBlock::new(block);
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (rt, _ctx): (E, Self::Context),
        mut ancestry: impl Ancestry<ChainBlock>,
    ) -> bool {
        let Some(block) = ancestry.next().await else {
            return false;
        };
        let Some(parent) = ancestry.next().await else {
            return false;
        };
        if !self.ensure_state(&rt, &parent, &mut ancestry).await {
            return false;
        }
        self.verify_when_due(&rt, &parent.inner().block, &block.inner().block)
            .await
    }
}

/// Most finalized blocks marshal hands out before the application acknowledges one. The
/// executor acknowledges a block only once the ledger has made it durable, so this window is
/// the backpressure from the ledger to marshal: with a slow or full disk, marshal stops
/// dispatching (it keeps storing finalizations in its own archives and hands them out later),
/// and nothing waits on the executor that the executor waits on, so it cannot deadlock.
/// It is also the most blocks the executor writes at once: when the ledger falls behind
/// consensus (a large state makes each write cost more), the blocks waiting go to disk in one
/// transaction, so the cost of a durable write is shared instead of paid per block. Measured
/// (ADR 0008): a window of 16 took the 4-validator half-load benchmark's p99 from ~110 ms to
/// ~2 s (cause not found); 4 and 1 do not.
const MAX_PENDING_ACKS: NonZeroUsize = NZUsize!(4);

/// A finalized block for the executor, with marshal's acknowledgement.
struct FinalizedBlock {
    block: Digested<ChainBlock>,
    ack: Exact,
}

impl Policy for FinalizedBlock {
    type Overflow = VecDeque<FinalizedBlock>;

    /// Keeps a block that finds the queue full, in order: dropping one would drop its
    /// acknowledgement, which stops marshal. The queue holds [`MAX_PENDING_ACKS`] blocks, as
    /// many as marshal dispatches without an acknowledgement, so this never happens unless
    /// marshal breaks its own window; then the overflow holds what marshal over-dispatched.
    fn handle(overflow: &mut VecDeque<FinalizedBlock>, message: FinalizedBlock) {
        overflow.push_back(message);
    }
}

/// Forwards marshal's ordered finalized blocks to the executor task. Tips (a finalization
/// seen before its block is stored) are not forwarded: the executor needs only the blocks,
/// which follow in order, and marshal reports a tip per finalization without any window.
#[derive(Clone)]
struct FinalizedBlocks(mailbox::Sender<FinalizedBlock>);

impl Reporter for FinalizedBlocks {
    type Activity = Update<ChainBlock>;
    fn report(&mut self, update: Update<ChainBlock>) -> Feedback {
        match update {
            Update::Tip(..) => Feedback::Ok,
            Update::Block(block, ack) => {
                let feedback = self.0.enqueue(FinalizedBlock { block, ack });
                if feedback == Feedback::Backoff {
                    tracing::warn!("marshal dispatched more finalized blocks than its window");
                }
                feedback
            }
        }
    }
}

/// Applies finalized blocks in order; acknowledges each only once it is durable. The blocks
/// already waiting when one arrives are applied with it, in one durable write. A storage
/// failure (a full disk) is retried until it clears, so nothing is skipped or half-applied.
async fn run_executor<E: Clock>(
    clock: E,
    ledger: Arc<dyn Ledger>,
    marshal: MarshalMailbox<Scheme, Standard<ChainBlock>>,
    mut rx: mailbox::Receiver<FinalizedBlock>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < MAX_PENDING_ACKS.get() {
            match rx.try_recv() {
                Ok(next) => waiting.push(next),
                Err(_) => break,
            }
        }
        let mut blocks = Vec::with_capacity(waiting.len());
        for FinalizedBlock { block, .. } in &waiting {
            let height = block.height();
            if height.get() == 0 {
                continue;
            }
            let finalization = marshal
                .get_finalization(height)
                .await
                .map(|f| f.encode().to_vec());
            blocks.push((&*block.inner().block, finalization));
        }
        let mut attempts = 0u64;
        while !blocks.is_empty() {
            match ledger.finalized_many(&blocks) {
                Ok(()) => break,
                Err(e) => {
                    if attempts.is_power_of_two() {
                        let first = blocks[0].0.header.height;
                        let last = blocks[blocks.len() - 1].0.header.height;
                        tracing::error!(first, last, error = %e, attempts, "cannot apply finalized blocks; retrying");
                    }
                    attempts += 1;
                    clock.sleep(Duration::from_secs(1)).await;
                }
            }
        }
        drop(blocks);
        for FinalizedBlock { ack, .. } in waiting {
            ack.acknowledge();
        }
    }
}

/// Starts one validator. Returns once every actor is running.
pub async fn start_validator<E, S, R, Bl, Pv>(
    context: E,
    cfg: EngineConfig,
    blocker: Bl,
    peers: Pv,
    ch: Channels<S, R>,
    ledger: Arc<dyn Ledger>,
) where
    E: Spawner + Clock + Storage + Metrics + rand_core::CryptoRng,
    S: Sender<PublicKey = PK>,
    R: Receiver<PublicKey = PK>,
    Bl: Blocker<PublicKey = PK>,
    Pv: Provider<PublicKey = PK>,
{
    let me = cfg.signer.public_key();
    let prefix = cfg.partition_prefix.clone();
    let scheme = Scheme::signer(
        ehrchain_types::domain::CONSENSUS,
        cfg.validators.clone(),
        cfg.signer.clone(),
    )
    .expect("this validator's key is in the validator set");
    let page_cache = CacheRef::new(NZU16!(16_384), NZUsize!(1_000));
    let epocher = FixedEpocher::new(NZU64!(u64::MAX));
    let genesis = ChainBlock::new(cfg.genesis.clone());
    let genesis_digest = genesis.digest();

    let resolver = marshal_resolver::init(
        context.child("marshal_resolver"),
        marshal_resolver::Config {
            public_key: me.clone(),
            peer_provider: peers.clone(),
            blocker: blocker.clone(),
            mailbox_size: NZUsize!(1024),
            fetch_timeout: NZDuration!(Duration::from_secs(2)),
            fetch_retry_delay: Duration::from_millis(100),
            priority_requests: false,
            priority_responses: false,
        },
        ch.backfill,
    );

    let (broadcast_engine, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: me.clone(),
            mailbox_size: NZUsize!(1024),
            deque_size: 16,
            priority: false,
            codec_config: (),
            peer_provider: peers,
            strategy: Sequential,
        },
    );
    broadcast_engine.start(ch.broadcast);

    let finalizations = prunable::Archive::init(
        context.child("finalizations_by_height"),
        prunable::Config {
            translator: EightCap,
            metadata_partition: format!("{prefix}-finalizations{ARCHIVE_LAYOUT}-metadata"),
            key_partition: format!("{prefix}-finalizations{ARCHIVE_LAYOUT}-key"),
            key_page_cache: page_cache.clone(),
            value_partition: format!("{prefix}-finalizations{ARCHIVE_LAYOUT}-value"),
            compression: None,
            codec_config: <Scheme as commonware_cryptography::certificate::Verifier>::certificate_codec_config_unbounded(),
            items_per_section: ARCHIVE_SECTION,
            key_write_buffer: NZUsize!(1 << 20),
            value_write_buffer: NZUsize!(1 << 20),
            replay_buffer: NZUsize!(1 << 20),
        },
    )
    .await
    .expect("finalizations archive opens");
    let blocks = prunable::Archive::init(
        context.child("finalized_blocks"),
        prunable::Config {
            translator: EightCap,
            metadata_partition: format!("{prefix}-blocks{ARCHIVE_LAYOUT}-metadata"),
            key_partition: format!("{prefix}-blocks{ARCHIVE_LAYOUT}-key"),
            key_page_cache: page_cache.clone(),
            value_partition: format!("{prefix}-blocks{ARCHIVE_LAYOUT}-value"),
            compression: None,
            codec_config: (),
            items_per_section: ARCHIVE_SECTION,
            key_write_buffer: NZUsize!(1 << 20),
            value_write_buffer: NZUsize!(1 << 20),
            replay_buffer: NZUsize!(1 << 20),
        },
    )
    .await
    .expect("blocks archive opens");

    let (actor, marshal, _floor) = MarshalActor::init(
        context.child("marshal"),
        finalizations,
        blocks,
        marshal::Config {
            provider: ConstantProvider::<Scheme, Epoch>::new(scheme.clone()),
            epocher: epocher.clone(),
            start: Start::Genesis(Digested::precomputed(genesis, genesis_digest)),
            partition_prefix: format!("{prefix}-marshal"),
            mailbox_size: NZUsize!(1024),
            view_retention: ViewDelta::new(10),
            prunable_items_per_section: NZU64!(1024),
            page_cache: page_cache.clone(),
            replay_buffer: NZUsize!(1 << 20),
            key_write_buffer: NZUsize!(1 << 20),
            value_write_buffer: NZUsize!(1 << 20),
            block_codec_config: (),
            max_repair: NZUsize!(10),
            max_pending_acks: MAX_PENDING_ACKS,
            strategy: Sequential,
        },
    )
    .await;
    let (tx, rx) = mailbox::new(context.child("finalized_queue"), MAX_PENDING_ACKS);
    actor.start(FinalizedBlocks(tx), buffer, resolver);
    let exec_marshal = marshal.clone();
    let exec_ledger = ledger.clone();
    context
        .child("executor")
        .spawn(move |ctx| run_executor(ctx, exec_ledger, exec_marshal, rx));

    let (mut gossip_out, mut gossip_in) = ch.gossip;
    let out_ledger = ledger.clone();
    context.child("gossip_out").spawn(move |ctx| async move {
        // Gossip is best effort: a peer that is not connected misses the batch (the
        // transaction still reaches it in a block). Wait until the network has finalized a
        // block, so that transactions submitted at start-up are not sent to nobody.
        let start_height = out_ledger.finalized_height();
        loop {
            ctx.sleep(GOSSIP_INTERVAL).await;
            if out_ledger.finalized_height() <= start_height {
                continue;
            }
            let batch = out_ledger.take_gossip();
            if !batch.is_empty() {
                gossip_out.send(Recipients::All, batch, false);
            }
        }
    });
    let in_ledger = ledger.clone();
    context.child("gossip_in").spawn(move |ctx| async move {
        while let Ok((_from, msg)) = gossip_in.recv().await {
            in_ledger.receive_gossip(msg.as_ref(), now_ms(&ctx));
        }
    });

    let inline = Inline::new(
        context.child("inline"),
        App {
            ledger,
            idle_block_interval: cfg.idle_block_interval.min(cfg.leader_timeout / 2),
            max_hold: cfg.leader_timeout / 4,
        },
        marshal,
        epocher,
    );
    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: inline.clone(),
            relay: inline.clone(),
            reporter: inline,
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size: NZUsize!(1024),
            epoch: Epoch::zero(),
            floor: simplex::Floor::Genesis(genesis_digest),
            leader_timeout: cfg.leader_timeout,
            certification_timeout: cfg.leader_timeout * 2,
            timeout_retry: Duration::from_secs(10),
            fetch_timeout: NZDuration!(Duration::from_secs(1)),
            fetch_retry_delay: Duration::from_millis(100),
            view_retention: ViewDelta::new(10),
            skip: simplex::SkipPolicy::Enabled {
                timeout: Duration::from_secs(11),
                budget: simplex::SkipBudget::Participants,
            },
            replay_buffer: NZUsize!(1 << 20),
            write_buffer: NZUsize!(1 << 20),
            page_cache,
            forward: simplex::ForwardPolicy::Disabled,
            track_historical_votes: false,
        },
    );
    engine.start(ch.vote, ch.cert, ch.resolve);
}
