//! Follower nodes (`ehrchain follow`): a non-voting node for an institution that is not a
//! validator. It pulls finalized blocks with their finality certificates from validators'
//! APIs, checks each certificate against the genesis validator set (never against anything
//! the validator says), executes the block, and commits it to its own store exactly as a
//! validator does. It serves the whole read API from its own state, and forwards what it
//! cannot answer itself (submissions, uploads, record content) to a validator.
//!
//! Block bodies are shown to consortium members only, so a validator serves them to a
//! follower whose account is a member (the admin, an approved auditor) or is listed in the
//! validator's `followers` configuration.

use crate::{
    Chain,
    api::{ApiState, router},
    chain::Snapshot,
    run::{Until, housekeeping, raise_open_files_limit, shutdown_signal},
    store::ChainStore,
};
use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use ehrchain_api::{FinalityCheck, GenesisFile, RawBlockView, StatusView};
use ehrchain_crypto::Keypair;
use ehrchain_types::{Block, MAX_BLOCK_BYTES, PublicKey, decode, request::HEADER};
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

/// Where a follower keeps its chain, whom it follows and where it serves.
#[derive(Clone, Debug)]
pub struct FollowerConfig {
    pub data_dir: PathBuf,
    pub genesis: PathBuf,
    /// Validators' API base URLs, tried in order.
    pub upstreams: Vec<String>,
    pub api_listen: SocketAddr,
}

/// The validators a follower forwards to and pulls from.
#[derive(Debug)]
pub struct Upstream {
    urls: Vec<String>,
    agent: ureq::Agent,
}

/// How long one call to a validator may take (a forwarded upload included).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest body a follower forwards either way. Larger uploads and downloads go to a
/// validator directly (the client names one with `--node`).
pub const MAX_FORWARD_BYTES: usize = 64 << 20;
/// How often a follower that is caught up asks for new blocks.
const POLL: Duration = Duration::from_millis(200);
/// How long after a failure (no validator reachable, a block refused).
const RETRY: Duration = Duration::from_secs(2);
/// Blocks applied in one round before the tip is asked again.
const ROUND: u64 = 512;

impl Upstream {
    pub fn new(urls: Vec<String>) -> Upstream {
        Upstream {
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(CALL_TIMEOUT))
                .max_redirects(0)
                .build()
                .into(),
        }
    }

    /// Sends one request to the first validator that answers: (status, content type, body).
    fn call(
        &self,
        method: &str,
        path_and_query: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(u16, Option<String>, Vec<u8>), String> {
        let mut last = String::from("no upstream validator configured");
        for base in &self.urls {
            let mut req = ureq::http::Request::builder()
                .method(method)
                .uri(format!("{base}{path_and_query}"));
            if let Some(a) = auth {
                req = req.header(HEADER, a);
            }
            if let Some(c) = content_type {
                req = req.header("content-type", c);
            }
            let req = req.body(body.clone()).map_err(|e| e.to_string())?;
            match self.agent.run(req) {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let ct = resp
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let bytes = resp
                        .body_mut()
                        .with_config()
                        .limit(MAX_FORWARD_BYTES as u64)
                        .read_to_vec()
                        .map_err(|e| format!("{base}: {e}"))?;
                    return Ok((status, ct, bytes));
                }
                Err(e) => last = format!("{base}: {e}"),
            }
        }
        Err(last)
    }

    /// A JSON GET, signed by `key` when given.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        signer: Option<(&Keypair, &str)>,
    ) -> Result<T, String> {
        let auth = signer.map(|(key, chain_id)| {
            key.sign_request(
                chain_id,
                "GET",
                path,
                &ehrchain_types::request::empty_body(),
                crate::api::now_ms(),
            )
            .header_value()
        });
        let (status, _, body) = self.call("GET", path, auth.as_deref(), None, Vec::new())?;
        if status != 200 {
            let msg = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            return Err(format!("{path} answered {status}: {msg}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{path}: malformed answer: {e}"))
    }
}

/// Why a follower refused a block.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("block {0} does not decode: {1}")]
    Malformed(u64, String),
    #[error("asked for block {asked}, got block {got}")]
    WrongHeight { asked: u64, got: u64 },
    #[error("block {0} has no finality certificate")]
    NoCertificate(u64),
    #[error("block {0}'s finality certificate is not from the genesis validators: {1}")]
    Certificate(u64, String),
    #[error("block {0} does not apply to this node's state: {1}")]
    Execution(u64, String),
}

/// Checks one finalized block from a validator and commits it: it must be the next height,
/// carry a certificate by a quorum of `validators` (the genesis set) over its id, and execute
/// on the follower's own state to the roots its header names.
pub fn accept(
    chain: &Chain,
    validators: &[PublicKey],
    finality: &dyn FinalityCheck,
    height: u64,
    bytes: &[u8],
    certificate: Option<&[u8]>,
) -> Result<(), Refused> {
    let block: Block =
        decode(bytes, MAX_BLOCK_BYTES).map_err(|e| Refused::Malformed(height, e.to_string()))?;
    if block.header.height != height {
        return Err(Refused::WrongHeight {
            asked: height,
            got: block.header.height,
        });
    }
    let cert = certificate.ok_or(Refused::NoCertificate(height))?;
    finality
        .check(validators, cert, &block.id())
        .map_err(|e| Refused::Certificate(height, e))?;
    chain
        .apply_finalized(&block, cert.to_vec())
        .map_err(|e| Refused::Execution(height, e))
}

/// Pulls and applies blocks until the follower reaches the validator's tip (at most
/// [`ROUND`]); returns how many it applied.
fn sync_round(
    chain: &Chain,
    genesis: &GenesisFile,
    up: &Upstream,
    key: &Keypair,
) -> Result<u64, String> {
    let chain_id = genesis.ledger.chain_id.as_str();
    let status: StatusView = up.get_json("/api/v1/status", None)?;
    if status.genesis_id != chain.genesis_block().id() {
        return Err(format!(
            "the upstream validator runs another chain (genesis {}, ours {})",
            status.genesis_id,
            chain.genesis_block().id()
        ));
    }
    let validators = genesis.validator_keys();
    let mut applied = 0;
    let mut local = chain.snapshot().tip.height;
    while local < status.height && applied < ROUND {
        let h = local + 1;
        let raw: RawBlockView = up
            .get_json(&format!("/api/v1/blocks/{h}/raw"), Some((key, chain_id)))
            .map_err(|e| {
                if e.contains(" 403:") {
                    format!(
                        "{e} (the validator must list this follower's account {} under `followers` in its config)",
                        ehrchain_types::AccountId::from_public_key(&key.public_key())
                    )
                } else {
                    e
                }
            })?;
        let bytes = hex::decode(&raw.bytes).map_err(|_| format!("block {h}: bytes are not hex"))?;
        let cert = raw
            .finalization
            .map(hex::decode)
            .transpose()
            .map_err(|_| format!("block {h}: certificate is not hex"))?;
        accept(
            chain,
            &validators,
            &crate::proof::EngineFinality,
            h,
            &bytes,
            cert.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        applied += 1;
        local = h;
    }
    Ok(applied)
}

/// The follow loop: catch up, then poll for new blocks; on a failure, wait and try again
/// (another validator, if several are configured).
async fn follow(
    chain: Arc<Chain>,
    genesis: Arc<GenesisFile>,
    up: Arc<Upstream>,
    key: Arc<Keypair>,
) {
    let mut failing = false;
    loop {
        let (c, g, u, k) = (chain.clone(), genesis.clone(), up.clone(), key.clone());
        let round = tokio::task::spawn_blocking(move || sync_round(&c, &g, &u, &k)).await;
        let wait = match round {
            Ok(Ok(n)) => {
                if failing || n > 0 {
                    tracing::info!(
                        applied = n,
                        height = chain.snapshot().tip.height,
                        "following"
                    );
                }
                failing = false;
                if n > 0 { Duration::ZERO } else { POLL }
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot follow the validators; retrying");
                }
                failing = true;
                RETRY
            }
            Err(e) => {
                tracing::error!(error = %e, "follow task failed");
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Whether a follower forwards this request to a validator instead of answering it: every
/// write (submissions, uploads) and record content, which a follower does not hold.
fn forwarded(method: &Method, path: &str) -> bool {
    !(method == Method::GET || method == Method::HEAD)
        || (path.starts_with("/api/v1/records/") && path.ends_with("/content"))
}

/// The middleware of a follower's router: forwards what [`forwarded`] selects, byte for byte
/// with its signature header (a signed request names the chain, method, path and body, never
/// the host, so it verifies at the validator unchanged).
pub async fn forward(
    axum::extract::State(up): axum::extract::State<Arc<Upstream>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if !forwarded(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_FORWARD_BYTES).await else {
        return crate::api::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "a follower forwards at most {} MiB; send larger uploads to a validator",
                MAX_FORWARD_BYTES >> 20
            ),
        )
        .into_response();
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (auth, ct) = (header(HEADER), header("content-type"));
    let method = parts.method.to_string();
    let pq = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string());
    let answer = tokio::task::spawn_blocking(move || {
        up.call(&method, &pq, auth.as_deref(), ct.as_deref(), body.to_vec())
    })
    .await;
    match answer {
        Ok(Ok((status, ct, bytes))) => {
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(v) = ct.and_then(|c| HeaderValue::from_str(&c).ok()) {
                resp.headers_mut().insert("content-type", v);
            }
            resp
        }
        Ok(Err(e)) => crate::api::ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_unreachable",
            format!("this follower could not reach a validator to forward the request: {e}"),
        )
        .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Runs a follower until `until` resolves (or a shutdown signal). `on_ready` gets the chain
/// once the API listens.
pub fn run_follower(
    cfg: &FollowerConfig,
    key: Keypair,
    until: Option<Until>,
    on_ready: impl FnOnce(Arc<Chain>) + Send + 'static,
) -> anyhow::Result<()> {
    if cfg.upstreams.is_empty() {
        anyhow::bail!("give at least one validator to follow (--upstream URL)");
    }
    let genesis = crate::genesis::load(&cfg.genesis)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", cfg.data_dir.display()))?;
    raise_open_files_limit();
    let store = ChainStore::open(&cfg.data_dir.join("chain.redb"))?;
    let chain = Arc::new(Chain::open(
        store,
        &genesis.ledger,
        Default::default(),
        Default::default(),
    )?);
    let listener = std::net::TcpListener::bind(cfg.api_listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for the API: {e}", cfg.api_listen))?;
    listener.set_nonblocking(true)?;
    let blob_cfg = crate::config::BlobConfig::default();
    let blobs = crate::blobs::BlobStore::from_config(&cfg.data_dir, &blob_cfg)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let limits = Arc::new(crate::limits::Limits::new(
        &cfg.data_dir,
        &Default::default(),
    ));
    let up = Arc::new(Upstream::new(cfg.upstreams.clone()));
    let state = ApiState {
        chain: chain.clone(),
        genesis: Arc::new(genesis.clone()),
        blobs: Arc::new(blobs),
        blob_cfg,
        limits,
        placement: None,
        followers: Default::default(),
    };
    let Snapshot { tip, .. } = chain.snapshot();
    tracing::info!(
        api = %cfg.api_listen,
        height = tip.height,
        account = %ehrchain_types::AccountId::from_public_key(&key.public_key()),
        upstreams = ?cfg.upstreams,
        "follower starting"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("listener is non-blocking");
        let stop = until.unwrap_or_else(|| Box::pin(shutdown_signal()));
        on_ready(chain.clone());
        let chores = tokio::spawn(housekeeping(state.clone()));
        let following = tokio::spawn(follow(
            chain,
            state.genesis.clone(),
            up.clone(),
            Arc::new(key),
        ));
        let app = router(state)
            .layer(axum::middleware::from_fn_with_state(up, forward))
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await;
        chores.abort();
        following.abort();
        if let Err(e) = served {
            tracing::error!(error = %e, "API server failed");
        }
        tracing::info!("follower stopping");
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_content_are_forwarded_reads_are_answered() {
        assert!(forwarded(&Method::POST, "/api/v1/transactions"));
        assert!(forwarded(&Method::PUT, "/api/v1/blobs/abc"));
        assert!(forwarded(&Method::GET, "/api/v1/records/abc/content"));
        assert!(!forwarded(&Method::GET, "/api/v1/records/abc"));
        assert!(!forwarded(&Method::GET, "/api/v1/state/proof"));
        assert!(!forwarded(&Method::GET, "/api/v1/status"));
    }
}
