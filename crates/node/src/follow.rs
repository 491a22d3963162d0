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
    /// The validator that answered last: asked first next time.
    preferred: std::sync::atomic::AtomicUsize,
    /// Forwarded requests in flight (each holds a blocking thread while the validator works).
    forwarding: Arc<tokio::sync::Semaphore>,
}

/// Forwarded requests one follower runs at once; more are answered `503 busy`.
const MAX_FORWARDING: usize = 32;

/// An answer from a validator: status, content type, body.
type Answer = (u16, Option<String>, Vec<u8>);

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
            preferred: Default::default(),
            forwarding: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDING)),
        }
    }

    /// Sends one request to the validators in turn, from the one that answered last, until
    /// one gives an answer `accept` takes; the last answer or error otherwise.
    fn call(
        &self,
        method: &str,
        path_and_query: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
        accept: impl Fn(u16) -> bool,
    ) -> Result<Answer, String> {
        use std::sync::atomic::Ordering;
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last = Err(String::from("no upstream validator configured"));
        for i in 0..self.urls.len() {
            let at = (first + i) % self.urls.len();
            let answer = self.call_one(
                &self.urls[at],
                method,
                path_and_query,
                auth,
                content_type,
                body,
            );
            if matches!(&answer, Ok((status, _, _)) if accept(*status)) {
                self.preferred.store(at, Ordering::Relaxed);
                return answer;
            }
            last = answer;
        }
        last
    }

    fn call_one(
        &self,
        base: &str,
        method: &str,
        path_and_query: &str,
        auth: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Answer, String> {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{base}{path_and_query}"));
        if let Some(a) = auth {
            req = req.header(HEADER, a);
        }
        if let Some(c) = content_type {
            req = req.header("content-type", c);
        }
        let req = req.body(body.to_vec()).map_err(|e| e.to_string())?;
        let mut resp = self.agent.run(req).map_err(|e| format!("{base}: {e}"))?;
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
        Ok((status, ct, bytes))
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
        // Any validator that answers well will do: one that refuses (not listing this
        // follower) or fails is passed over for the next.
        let (status, _, body) = self.call("GET", path, auth.as_deref(), None, &[], |s| s == 200)?;
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

/// Whether a follower forwards this request to a validator instead of answering it, and the
/// largest body it takes: the writes (submissions, uploads), record content (a follower holds
/// none), and the reads a client must have current for its next write (an account's next
/// nonce, a transaction's status, the upload pre-check). Nothing else is forwarded.
fn forwarded(method: &Method, path: &str) -> Option<usize> {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
    };
    match *method {
        Method::POST if path == "/api/v1/transactions" || path == "/api/v1/transactions/batch" => {
            Some(crate::api::MAX_BATCH_BODY_BYTES)
        }
        Method::PUT if under("/api/v1/blobs/") => Some(MAX_FORWARD_BYTES),
        Method::GET
            if under("/api/v1/accounts/")
                || under("/api/v1/transactions/")
                || path == "/api/v1/blobs/check"
                || path
                    .strip_prefix("/api/v1/records/")
                    .and_then(|r| r.strip_suffix("/content"))
                    .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
        {
            Some(0)
        }
        _ => None,
    }
}

/// The middleware of a follower's router: forwards what [`forwarded`] selects, byte for byte
/// with its signature header (a signed request names the chain, method, path and body, never
/// the host, so it verifies at the validator unchanged).
pub async fn forward(
    axum::extract::State((up, chain)): axum::extract::State<(Arc<Upstream>, Arc<Chain>)>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(limit) = forwarded(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    // Uploads are signed: one without a signature would only be refused by the validator, so
    // it is refused here before its body is read.
    if req.method() == Method::PUT && !req.headers().contains_key(HEADER) {
        return crate::api::ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("missing {HEADER} header: uploads must be signed by an account key"),
        )
        .into_response();
    }
    let Ok(permit) = up.forwarding.clone().try_acquire_owned() else {
        return crate::api::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "this follower is forwarding as many requests as it may; try again shortly",
        )
        .into_response();
    };
    let tx_status =
        req.method() == Method::GET && req.uri().path().starts_with("/api/v1/transactions/");
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return crate::api::ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "a follower forwards at most {limit} bytes here; send larger uploads to a validator"
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
        let _permit = permit;
        // A validator that answers, whatever it answers, has the final word; only one that
        // cannot be reached is passed over.
        up.call(&method, &pq, auth.as_deref(), ct.as_deref(), &body, |_| {
            true
        })
    })
    .await;
    match answer {
        Ok(Ok((status, ct, bytes))) => {
            if tx_status && status == 200 {
                read_your_writes(&chain, &bytes).await;
            }
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

/// How long a follower holds a transaction's "finalized" answer back while it catches up.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Read-your-writes through a follower: a transaction the validator reports finalized at a
/// height the follower has not applied yet is reported only once the follower has (or after
/// [`CATCH_UP`]), so the client's next read through the follower sees what it just wrote.
async fn read_your_writes(chain: &Chain, answer: &[u8]) {
    let Ok(view) = serde_json::from_slice::<ehrchain_api::TxView>(answer) else {
        return;
    };
    let Some(height) = view.height.filter(|_| view.status == "finalized") else {
        return;
    };
    let mut tip = chain.subscribe();
    let _ = tokio::time::timeout(CATCH_UP, tip.wait_for(|h| *h >= height)).await;
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
        let ready = chain.clone();
        let chores = tokio::spawn(housekeeping(state.clone()));
        let following = tokio::spawn(follow(
            chain,
            state.genesis.clone(),
            up.clone(),
            Arc::new(key),
        ));
        let app = router(state)
            .layer(axum::middleware::from_fn_with_state((up, ready), forward))
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
        let fwd = |m: Method, p: &str| forwarded(&m, p).is_some();
        assert!(fwd(Method::POST, "/api/v1/transactions"));
        assert!(fwd(Method::POST, "/api/v1/transactions/batch"));
        assert!(fwd(Method::PUT, "/api/v1/blobs/abc"));
        assert!(fwd(Method::GET, "/api/v1/records/abc/content"));
        assert!(fwd(Method::GET, "/api/v1/accounts/ehr00"));
        assert!(fwd(Method::GET, "/api/v1/transactions/abc"));
        assert!(fwd(Method::GET, "/api/v1/blobs/check"));
        // Everything else is answered by the follower (or refused by its router).
        assert!(!fwd(Method::GET, "/api/v1/records/abc"));
        assert!(!fwd(Method::GET, "/api/v1/records//content"));
        assert!(!fwd(Method::GET, "/api/v1/state/proof"));
        assert!(!fwd(Method::GET, "/api/v1/status"));
        assert!(!fwd(Method::GET, "/api/v1/accounts"));
        assert!(!fwd(Method::DELETE, "/api/v1/transactions"));
        assert!(!fwd(Method::POST, "/api/v1/anything"));
        assert!(!fwd(Method::PUT, "/api/v1/blobs/a/b"));
        assert_eq!(
            forwarded(&Method::POST, "/api/v1/transactions"),
            Some(crate::api::MAX_BATCH_BODY_BYTES)
        );
    }
}
