//! Starting a validator node from its configuration.

use crate::{
    Chain, GenesisFile, NodeConfig,
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
    let genesis = GenesisFile::load(&cfg.genesis)?;
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
    let store = ChainStore::open(&cfg.data_dir.join("chain.redb"))?;
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
    let state = ApiState {
        chain: chain.clone(),
        genesis: Arc::new(genesis.clone()),
        blobs: Arc::new(blobs),
        blob_cfg: cfg.blobs.clone(),
    };
    let height = chain.snapshot().tip.height;
    tracing::info!(api = %cfg.api_listen, p2p = %cfg.p2p_listen, height, "node starting");
    let ready_chain = chain.clone();
    let main = async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("listener is non-blocking");
        let stop = until.unwrap_or_else(|| Box::pin(shutdown_signal()));
        on_ready(ready_chain);
        if let Err(e) = axum::serve(listener, router(state))
            .with_graceful_shutdown(stop)
            .await
        {
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
            genesis: genesis.block(),
            storage_dir: cfg.data_dir.join("engine"),
            leader_timeout: Duration::from_millis(cfg.block.leader_timeout_ms),
            idle_block_interval: Duration::from_millis(cfg.block.idle_block_interval_ms),
        },
        chain,
        main,
    )?;
    Ok(())
}
