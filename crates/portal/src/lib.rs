//! The ehrchain web portal: every role's pages and the chain explorer.
//!
//! The portal is a client, like the CLI: it holds users' keystores (the CLI's files,
//! encrypted with Argon2id), unlocks a key only into that user's session memory, encrypts and
//! decrypts in this process through the client SDK, and talks to a node's public API. The
//! node never receives plaintext or an unwrapped key. It depends on `ehrchain-api` and
//! `ehrchain-client`, never on the node.
#![forbid(unsafe_code)]

pub mod admin;
pub mod charts;
pub mod demo;
pub mod doctor;
pub mod emergency;
pub mod explorer;
pub mod insurance;
pub mod patient;
pub mod pharmacy;
pub mod public;
pub mod templates;
pub mod web;

use axum::{Router, middleware};
use ehrchain_client::Node;
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

/// How a portal is started.
#[derive(Clone, Debug)]
pub struct PortalConfig {
    /// The node's API base URL.
    pub node: String,
    /// The address to listen on (default loopback: run the portal on your own machine).
    pub listen: SocketAddr,
    /// The keystore directory (the CLI's `--home`).
    pub home: PathBuf,
    /// The chain's genesis file, the trust anchor for checking audit proofs (optional).
    pub genesis: Option<PathBuf>,
    /// A signed-in session ends after this long without a request.
    pub idle_timeout: Duration,
    /// Extra `Host` values to answer to (`host:port`), when served behind a name.
    pub public_hosts: Vec<String>,
    /// The largest file a user may upload.
    pub max_upload: u64,
    /// Mark the session cookie `Secure` (the portal is reached over HTTPS, e.g. behind a TLS
    /// proxy named with `public_hosts`).
    pub secure_cookies: bool,
}

/// Default idle timeout of a signed-in session.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Default upload limit (the portal streams uploads to a temporary file, then encrypts).
pub const MAX_UPLOAD: u64 = 256 * 1024 * 1024;

impl PortalConfig {
    pub fn new(node: &str, listen: SocketAddr, home: PathBuf) -> PortalConfig {
        PortalConfig {
            node: node.trim_end_matches('/').to_string(),
            listen,
            home,
            genesis: None,
            idle_timeout: IDLE_TIMEOUT,
            public_hosts: Vec::new(),
            max_upload: MAX_UPLOAD,
            secure_cookies: false,
        }
    }
}

/// The portal's shared state.
pub struct Portal {
    pub cfg: PortalConfig,
    /// Unsigned access to the node (public pages).
    pub node: Node,
    pub visits: web::Visits,
    pub hosts: Vec<String>,
    /// Bounds the key derivations (sign-in, registration) running at once.
    pub kdf: tokio::sync::Semaphore,
}

impl Portal {
    pub fn keystore(&self) -> ehrchain_client::Keystore {
        ehrchain_client::Keystore::new(&self.cfg.home)
    }
}

/// Every page of the portal.
pub fn router(portal: Arc<Portal>) -> Router {
    Router::new()
        .merge(public::routes())
        .merge(explorer::routes())
        .merge(patient::routes())
        .merge(doctor::routes())
        .merge(emergency::routes())
        .merge(pharmacy::routes())
        .merge(insurance::routes())
        .merge(admin::routes())
        .fallback(public::not_found)
        .layer(middleware::from_fn_with_state(portal.clone(), web::guard))
        .layer(axum::extract::DefaultBodyLimit::max(
            usize::try_from(portal.cfg.max_upload).unwrap_or(usize::MAX) + 64 * 1024,
        ))
        .with_state(portal)
}

/// Builds the portal for `cfg`, listening on `listener` (bound by the caller, so a busy port
/// is reported before anything starts).
pub fn portal(cfg: PortalConfig, listen: SocketAddr) -> Arc<Portal> {
    let hosts = web::allowed_hosts(listen, &cfg.public_hosts);
    Arc::new(Portal {
        node: Node::new(&cfg.node),
        cfg,
        visits: web::Visits::default(),
        hosts,
        kdf: tokio::sync::Semaphore::new(web::KDF_AT_ONCE),
    })
}

/// Serves the portal on an already bound listener until `stop` resolves.
pub async fn serve(
    cfg: PortalConfig,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let app = router(portal(cfg, addr)).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

/// Runs the portal on its own runtime in this thread (for `ehrchain portal` and
/// `ehrchain dev`), on a listener bound by the caller.
pub fn run_blocking(cfg: PortalConfig, listener: std::net::TcpListener) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        serve(cfg, listener, std::future::pending()).await
    })
}
