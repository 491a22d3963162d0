//! Starting a validator node from its configuration.

use crate::{
    Chain, NodeConfig,
    api::{ApiState, router},
    config::read_validator_key,
    store::ChainStore,
};
use ehrchain_consensus::tcp::{TcpValidator, public_key_of_seed};
use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// What to do once the node is up: by default serve until a shutdown signal.
pub type Until = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Opens the chain and runs a validator with its HTTP API until `until` resolves (or a
/// shutdown signal, if `until` is `None`). `on_ready` is called with the chain once the API
/// is listening.
pub fn run_node(
    cfg: &NodeConfig,
    until: Option<Until>,
    on_ready: impl FnOnce(Arc<Chain>) + Send + 'static,
) -> anyhow::Result<()> {
    let genesis = crate::genesis::load(&cfg.genesis)?;
    let seed = read_validator_key(&cfg.validator_key)?;
    let me = public_key_of_seed(&seed)?;
    let Some(entry) = genesis.validators.iter().find(|v| v.public_key.0 == me) else {
        anyhow::bail!(
            "the key in {} is not a validator in {}",
            cfg.validator_key.display(),
            cfg.genesis.display()
        );
    };
    if entry.p2p_address.port() != cfg.p2p_listen.port() {
        anyhow::bail!(
            "p2p_listen {} does not match this validator's genesis address {}",
            cfg.p2p_listen,
            entry.p2p_address
        );
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", cfg.data_dir.display()))?;
    raise_open_files_limit();
    let store =
        ChainStore::open_with_cache(&cfg.data_dir.join("chain.redb"), cfg.store.cache_bytes)?;
    let chain = Arc::new(Chain::open(store, &genesis.ledger, cfg.mempool, cfg.block)?);
    // The engine binds the peer port itself and cannot report a failure to us cleanly, so
    // check it first (a port another process holds is the usual case).
    drop(
        std::net::TcpListener::bind(cfg.p2p_listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {} for peers: {e}", cfg.p2p_listen))?,
    );
    let listener = std::net::TcpListener::bind(cfg.api_listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for the API: {e}", cfg.api_listen))?;
    listener.set_nonblocking(true)?;
    let blobs = crate::blobs::BlobStore::from_config(&cfg.data_dir, &cfg.blobs)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let limits = Arc::new(crate::limits::Limits::new(&cfg.data_dir, &cfg.limits));
    // Several validators without a shared bucket: every record's content is erasure-coded
    // across them (issue 16); a single validator, or an S3 bucket, keeps whole blobs.
    let position = genesis
        .validators
        .iter()
        .position(|v| v.public_key.0 == me)
        .expect("checked above");
    let rpc_slot = Arc::new(std::sync::OnceLock::new());
    let placement = match (
        crate::coding::Params::for_validators(genesis.validators.len()),
        &cfg.blobs.s3,
    ) {
        (Some(params), None) => Some(Arc::new(crate::placement::Placement {
            params,
            store: crate::coding::ShardStore::open(&cfg.data_dir.join("shards"))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            me: position,
            rpc: rpc_slot.clone(),
            counters: chain.metrics.shards.clone(),
            tmp_dir: cfg.data_dir.clone(),
            limits: limits.clone(),
        })),
        _ => None,
    };
    let rpc = placement
        .clone()
        .map(|p| ehrchain_consensus::tcp::RpcSetup {
            handler: Arc::new(crate::placement::PlacementHandler(p)),
            slot: rpc_slot.clone(),
        });
    let state = ApiState {
        chain: chain.clone(),
        genesis: Arc::new(genesis.clone()),
        blobs: Arc::new(blobs),
        blob_cfg: cfg.blobs.clone(),
        limits: limits.clone(),
        placement,
        followers: Arc::new(cfg.followers.iter().copied().collect()),
    };
    let housekeeping = housekeeping(state.clone());
    let height = chain.snapshot().tip.height;
    tracing::info!(api = %cfg.api_listen, p2p = %cfg.p2p_listen, height, "node starting");
    let ready_chain = chain.clone();
    let main = async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("listener is non-blocking");
        let stop = until.unwrap_or_else(|| Box::pin(shutdown_signal()));
        on_ready(ready_chain);
        let chores = tokio::spawn(housekeeping);
        let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await;
        chores.abort();
        if let Err(e) = served {
            tracing::error!(error = %e, "API server failed");
        }
        tracing::info!("node stopping");
    };
    let validators = genesis
        .validators
        .iter()
        .map(|v| (v.public_key.0, v.p2p_address))
        .collect();
    ehrchain_consensus::tcp::run(
        TcpValidator {
            signer_seed: seed,
            listen: cfg.p2p_listen,
            validators,
            genesis: chain.genesis_block().clone(),
            storage_dir: cfg.data_dir.join("engine"),
            leader_timeout: Duration::from_millis(cfg.block.leader_timeout_ms),
            idle_block_interval: Duration::from_millis(cfg.block.idle_block_interval_ms),
            rpc,
        },
        chain,
        main,
    )?;
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: the engine's archives keep their
/// sections open and every peer and client holds a socket, and the usual soft default (1,024)
/// is far below what the system allows a service.
pub(crate) fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
        }
    }
    tracing::info!(open_files_limit = ?getrlimit(Resource::Nofile).current, "open-files limit");
}

/// How often the free space is read again.
const DISK_REFRESH: Duration = Duration::from_millis(250);
/// How often while the disk is below the watermark: the ballast must go before something else
/// takes the last bytes (a statvfs call costs microseconds).
const DISK_REFRESH_LOW: Duration = Duration::from_millis(20);
/// How often unanchored blobs are checked for anchoring and expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The node's background chores: keep the disk watermark current (and the ballast in place),
/// and count, expire and delete uploaded blobs that no record anchors. Blobs already in the
/// store at start and not anchored are adopted, with their time starting now.
pub(crate) async fn housekeeping(s: ApiState) {
    // A snapshot per blob: one held across the whole listing would keep the store from
    // reusing the pages that blocks free meanwhile.
    let found = (s.blobs)
        .list_where(|c| !s.chain.snapshot().state.has_content(c))
        .await;
    match found {
        Ok(found) => {
            for (content, size) in found {
                s.limits.pending.adopt(content, size);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the blob store"),
    }
    // The disk watch runs on its own thread, so a busy async runtime never delays releasing
    // the ballast.
    let limits = Arc::downgrade(&s.limits);
    let (free_gauge, low_gauge) = (
        s.chain.metrics.disk_free_bytes.clone(),
        s.chain.metrics.storage_low.clone(),
    );
    let spawned = std::thread::Builder::new()
        .name("disk-watch".into())
        .spawn(move || watch_disk(&limits, &free_gauge, &low_gauge));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the disk watch");
    }
    if let Some(p) = s.placement.clone() {
        let s2 = s.clone();
        tokio::spawn(async move { shard_chores(&s2, &p).await });
    }
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep_pending_blobs(&s).await;
    }
}

/// When a validator first looks for shards to repair (soon after start: a node that was down
/// or lost its disk catches up at once), and how often after that. Each round lists the shard
/// store and walks the anchored contents, O(records) in time, so it is not frequent; it goes
/// a bucket of the shard store at a time ([`crate::coding::bucket_of`]), so its memory is a
/// 256th of that.
const SHARD_CHORES_FIRST: Duration = Duration::from_secs(10);
const SHARD_CHORES_EVERY: Duration = Duration::from_secs(300);
/// Pause between two repaired stripes: at most about 8 MB/s of repair per validator.
const REPAIR_PAUSE: Duration = Duration::from_millis(250);

/// Erasure-coded storage's chores: rebuild this validator's missing shards of anchored
/// contents (bounded in rate), and delete shards of contents no record anchored
/// within the unanchored-upload expiry (plus a minute).
async fn shard_chores(s: &ApiState, p: &crate::placement::Placement) {
    let mut unanchored: std::collections::HashMap<ehrchain_types::Hash, std::time::Instant> =
        std::collections::HashMap::new();
    let ttl = s.limits.pending.ttl() + Duration::from_secs(60);
    let mut wait = SHARD_CHORES_FIRST;
    loop {
        tokio::time::sleep(wait).await;
        wait = SHARD_CHORES_EVERY;
        // Missing contents found so far this round and not yet repaired.
        p.counters.repair_pending.set(0);
        for bucket in 0..=u8::MAX {
            let Ok(held) = p.store.list_bucket(bucket).await else {
                continue;
            };
            sweep_unanchored_shards(s, p, bucket, &held, &mut unanchored, ttl).await;
            repair_bucket(s, p, bucket, held).await;
        }
    }
}

/// Deletes the shards in `bucket` (`held`, sorted) of contents no record has anchored for
/// `ttl` since they were first seen unanchored.
async fn sweep_unanchored_shards(
    s: &ApiState,
    p: &crate::placement::Placement,
    bucket: u8,
    held: &[ehrchain_types::Hash],
    unanchored: &mut std::collections::HashMap<ehrchain_types::Hash, std::time::Instant>,
    ttl: Duration,
) {
    // A state holds a snapshot of the store, which keeps the store from reusing the pages
    // later blocks free: it is dropped before anything long (the repair pass).
    let state = s.chain.snapshot().state;
    let now = std::time::Instant::now();
    unanchored.retain(|c, _| {
        crate::coding::bucket_of(c) != bucket
            || (held.binary_search(c).is_ok() && !state.has_content(c))
    });
    let found: Vec<_> = (held.iter())
        .filter(|c| !state.has_content(c))
        .copied()
        .collect();
    drop(state);
    for c in found {
        let since = *unanchored.entry(c).or_insert(now);
        if now.duration_since(since) >= ttl && p.store.delete(&c).await.is_ok() {
            p.counters.swept.inc();
            unanchored.remove(&c);
        }
    }
}

/// Rebuilds this validator's shards of the anchored contents in `bucket` it holds nothing of
/// (`held`, sorted, is what it holds): a wiped or new node.
async fn repair_bucket(
    s: &ApiState,
    p: &crate::placement::Placement,
    bucket: u8,
    held: Vec<ehrchain_types::Hash>,
) {
    // The committed state is all in the store: scan its content index off the runtime.
    let todo = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || s.chain.store().contents_missing_from(bucket, &held))
            .await
    };
    let todo = match todo {
        Ok(Ok(todo)) => todo,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot list anchored contents");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "listing anchored contents failed");
            return;
        }
    };
    p.counters.repair_pending.inc_by(todo.len() as i64);
    // One after another: the pause between stripes bounds the rate.
    for c in todo {
        p.counters.repair_pending.dec();
        // A fresh snapshot per content: it knows every content the scan found.
        let state = s.chain.snapshot().state;
        let Some(record) = state
            .record_with_content(&c)
            .and_then(|id| state.record(&id))
        else {
            continue;
        };
        drop(state);
        let expected = record.coding;
        match p.repair(&c, expected, REPAIR_PAUSE).await {
            Ok(n) if n > 0 => {
                tracing::info!(content = %crate::blobs::cid_string(&c), shards = n, "rebuilt this validator's shards")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(content = %crate::blobs::cid_string(&c), error = %e, "cannot repair yet")
            }
        }
    }
}

/// Keeps the disk watermark current and the ballast in place: every [`DISK_REFRESH`], and
/// every [`DISK_REFRESH_LOW`] while the disk is below the watermark. Ends with the node.
fn watch_disk(
    limits: &std::sync::Weak<crate::limits::Limits>,
    free_gauge: &prometheus_client::metrics::gauge::Gauge,
    low_gauge: &prometheus_client::metrics::gauge::Gauge,
) {
    while let Some(limits) = limits.upgrade() {
        let disk = &limits.disk;
        // A statvfs call; rarely, the ballast is written again (a few MiB, once).
        let free = disk.refresh();
        free_gauge.set(free.min(i64::MAX as u64) as i64);
        low_gauge.set(i64::from(disk.is_low()));
        let pause = if disk.is_low() {
            DISK_REFRESH_LOW
        } else {
            DISK_REFRESH
        };
        drop(limits);
        std::thread::sleep(pause);
    }
}

/// Stops counting uploads that a record now anchors, and deletes those that expired.
pub async fn sweep_pending_blobs(s: &ApiState) {
    let m = &s.chain.metrics;
    let state = s.chain.snapshot().state;
    let sweep = s.limits.pending.sweep(|h| state.has_content(h));
    for content in &sweep.expired {
        match s.blobs.delete(content).await {
            Ok(()) => {
                m.blobs_expired.inc();
            }
            Err(e) => tracing::warn!(error = %e, "cannot delete an expired blob"),
        }
    }
    if !sweep.expired.is_empty() {
        tracing::info!(
            count = sweep.expired.len(),
            "deleted uploaded blobs that no record anchored in time"
        );
    }
    let (count, bytes) = s.limits.pending.totals();
    m.pending_blobs.set(count as i64);
    m.pending_blob_bytes.set(bytes.min(i64::MAX as u64) as i64);
}
