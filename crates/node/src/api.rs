//! The JSON HTTP API under `/api/v1`, documented by `openapi.json` (served at
//! `/api/v1/openapi.json`), plus `/metrics` and `/healthz`.
//!
//! Errors are one type, [`ApiError`]: a status code, a stable machine code and a message
//! for the user, sent as `{"error": {"code", "message"}}`; the cause of an internal failure
//! goes to the log only. Every error answer has that envelope, the framework's own
//! rejections too (bad query strings, bad path parameters, wrong methods, unknown routes,
//! missing content types, bodies too large): [`uniform_errors`], the outermost layer,
//! rewrites whatever else a 4xx or 5xx carries, catches handler panics and refuses
//! over-long URIs. No error message quotes more than [`ECHO_CHARS`] characters of the
//! caller's input ([`clip_quoted`]). Request bodies and patient data are never logged.

use crate::{
    GenesisFile, chain::Chain, mempool::MempoolError, store::StoreError, visibility,
    visibility::Viewer,
};
use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use ehrchain_ledger::TxError;
use ehrchain_ledger::contracts::token::escrow_account;
use ehrchain_types::{AccountId, Block, Hash, SignedTransaction};
use serde::Deserialize;

pub use ehrchain_api::{
    AccountView, BatchRequest, BatchResult, BlockSummary, BlockView, MAX_BATCH, RawBlockView,
    ReceiptsView, StatusView, SubmitRequest, SubmitResponse, TxView,
};
use std::sync::Arc;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted batch submission body.
pub const MAX_BATCH_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    pub chain: Arc<Chain>,
    pub genesis: Arc<GenesisFile>,
    pub blobs: Arc<crate::blobs::BlobStore>,
    pub blob_cfg: crate::config::BlobConfig,
    pub limits: Arc<crate::limits::Limits>,
    /// Erasure-coded storage across the validators (none on a single validator or with S3).
    pub placement: Option<Arc<crate::placement::Placement>>,
    /// Accounts this validator serves block bodies to as members: follower nodes of
    /// institutions that are not validators (`followers` in the config).
    pub followers: Arc<std::collections::BTreeSet<AccountId>>,
}

/// The client's IP address, when the server was started with connection info (the real
/// server always is; in-process test routers are not).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

impl ApiState {
    /// The checks every submission passes before admission: the disk watermark and the rate
    /// limits of the client's address (per request) and of each sender (per transaction).
    fn admit_submission<'a>(
        &self,
        addr: &ClientAddr,
        senders: impl Iterator<Item = &'a SignedTransaction>,
    ) -> Result<(), ApiError> {
        self.check_submission(addr, senders).inspect_err(|e| {
            self.chain.metrics.submissions_refused.inc();
            match e {
                crate::limits::LimitError::StorageLow => self.chain.metrics.storage_refusals.inc(),
                _ => self.chain.metrics.rate_limited.inc(),
            };
        })?;
        Ok(())
    }

    fn check_submission<'a>(
        &self,
        addr: &ClientAddr,
        senders: impl Iterator<Item = &'a SignedTransaction>,
    ) -> Result<(), crate::limits::LimitError> {
        let now = std::time::Instant::now();
        self.limits.disk.check_tx()?;
        if let Some(ip) = addr.0 {
            self.limits.submissions_by_address.check(&ip, 1.0, now)?;
        }
        let mut per_sender: std::collections::BTreeMap<AccountId, f64> = Default::default();
        for stx in senders {
            *per_sender.entry(stx.tx.sender()).or_default() += 1.0;
        }
        for (who, n) in per_sender {
            self.limits.txs_by_account.check(&who, n, now)?;
        }
        Ok(())
    }
}

impl From<crate::limits::LimitError> for ApiError {
    fn from(e: crate::limits::LimitError) -> Self {
        use crate::limits::LimitError;
        let (status, code) = match &e {
            LimitError::StorageLow => (StatusCode::INSUFFICIENT_STORAGE, "storage_low"),
            LimitError::Quota { .. } => (StatusCode::FORBIDDEN, "quota_exceeded"),
            LimitError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        };
        let retry_after_secs = match &e {
            LimitError::RateLimited { retry_after_secs } => Some((*retry_after_secs).max(1)),
            _ => None,
        };
        ApiError {
            retry_after_secs,
            ..ApiError::new(status, code, e.to_string())
        }
    }
}

/// An API failure: status, stable code, message for the user.
///
/// The message is what the caller reads (quotes of its own input are clipped to
/// [`ECHO_CHARS`] when sent); `detail` is what only the node's log gets. A `500` without a
/// `detail` is taken to carry its cause in the message: the caller reads a generic message and
/// the log the rest.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The cause, for the log only (storage errors, paths, panics); never sent.
    pub detail: Option<String>,
    /// Seconds after which a refused request may succeed (`429`): sent as `Retry-After`.
    pub retry_after_secs: Option<u64>,
    /// The ledger rule that refused a transaction (code `rejected`): sent as `refusal`, its
    /// stable code with typed fields and message.
    pub refusal: Option<Box<ehrchain_types::Refusal>>,
}

/// What the caller of a failed `500` reads.
const INTERNAL_MESSAGE: &str = "internal error (the node's log has the cause)";

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
            refusal: None,
            retry_after_secs: None,
        }
    }

    /// An internal failure: `500` with a generic message; `detail` goes to the log.
    pub fn internal(code: &'static str, detail: impl std::fmt::Display) -> Self {
        ApiError {
            detail: Some(detail.to_string()),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, INTERNAL_MESSAGE)
        }
    }

    /// The same error with a cause for the log.
    #[must_use]
    pub fn with_detail(mut self, detail: impl std::fmt::Display) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// The `{"code", "message"}` object as sent (inside `{"error": …}`, or per transaction
    /// in a batch answer).
    pub fn to_info(&self) -> ehrchain_api::ErrorInfo {
        // A 500's message may carry its cause unless the cause was put apart in `detail`.
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR && self.detail.is_none() {
            INTERNAL_MESSAGE.to_string()
        } else {
            clip_quoted(&self.message)
        };
        ehrchain_api::ErrorInfo {
            code: self.code.to_string(),
            message,
            refusal: self.refusal.as_deref().cloned(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    /// The one place a server error is logged (once per request: [`uniform_errors`] passes
    /// JSON answers through untouched).
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                status = self.status.as_u16(),
                code = self.code,
                message = %self.message,
                detail = self.detail.as_deref().unwrap_or(""),
                "request failed"
            );
        }
        let mut resp = (
            self.status,
            Json(ehrchain_api::ErrorBody {
                error: self.to_info(),
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal("storage", e)
    }
}

/// How many characters of the caller's input an error message may quote.
pub const ECHO_CHARS: usize = 32;
/// Longest error message sent, in characters.
pub const MAX_MESSAGE_CHARS: usize = 400;
/// Longest request target (path and query) served; a longer one is refused with `414`.
/// (Beyond 64 KiB the HTTP parser refuses it first, with an empty `414`.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The first [`ECHO_CHARS`] characters of a caller's input, with `…` when cut.
pub fn clip(input: &str) -> String {
    match input.char_indices().nth(ECHO_CHARS) {
        Some((end, _)) => format!("{}…", &input[..end]),
        None => input.to_string(),
    }
}

/// `message` with every quoted span (`"…"`, as `{:?}` writes input, and `` `…` ``, as serde
/// does) clipped to [`ECHO_CHARS`] characters and the whole to [`MAX_MESSAGE_CHARS`]: what an
/// error message built around the caller's input may send back of it. Idempotent.
pub fn clip_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE_CHARS + 4));
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        let mut quoted = String::new();
        let mut closed = false;
        while let Some(d) = chars.next() {
            if d == c {
                closed = true;
                break;
            }
            quoted.push(d);
            if d == '\\'
                && c == '"'
                && let Some(escaped) = chars.next()
            {
                quoted.push(escaped);
            }
        }
        out.push_str(&clip(&quoted));
        if closed {
            out.push(c);
        }
    }
    match out.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &out[..end]),
        None => out,
    }
}

/// The stable code of an error answer that carries no code of its own.
fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        413 => "too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "invalid_body",
        429 => "rate_limited",
        503 => "unavailable",
        507 => "storage_low",
        s if s >= 500 => "internal",
        _ => "bad_request",
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().to_ascii_lowercase();
            v.starts_with("application/json")
                || v.split(';').next().is_some_and(|t| t.ends_with("+json"))
        })
}

/// The outermost layer: every error answer gets the JSON envelope.
///
/// Refuses a request target longer than [`MAX_URI_BYTES`] (`414`), turns a handler panic into
/// a logged `500`, and rewrites any 4xx/5xx that is not JSON — the framework's rejections of
/// query strings, path parameters and bodies, `405` of a known path with the wrong method
/// (its `Allow` header kept) — into `{"error": {"code", "message"}}` with the status's code
/// and the framework's text, its quotes of the input clipped.
pub async fn uniform_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use futures::FutureExt as _;
    let target_len = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path().len(), |p| p.as_str().len());
    if target_len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {target_len} bytes; at most {MAX_URI_BYTES} are served"),
        )
        .into_response();
    }
    let method = req.method().clone();
    let resp = match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            return ApiError::internal("internal", format!("handler panicked: {what}"))
                .into_response();
        }
    };
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let allow = parts.headers.get(header::ALLOW).cloned();
    let message = if !text.is_empty() {
        text
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = allow
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        format!(
            "method {} is not allowed here (allowed: {allowed})",
            clip(method.as_str())
        )
    } else if status == StatusCode::NOT_FOUND {
        "no such endpoint (see /api/v1/openapi.json)".to_string()
    } else {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_ascii_lowercase()
    };
    let mut out = ApiError::new(status, code_for_status(status), message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

impl From<MempoolError> for ApiError {
    fn from(e: MempoolError) -> Self {
        let (status, code) = match &e {
            MempoolError::Invalid(TxError::NonceReplayed { .. }) => {
                (StatusCode::CONFLICT, "replayed")
            }
            MempoolError::Invalid(TxError::NonceGap { .. }) | MempoolError::TooFarAhead { .. } => {
                (StatusCode::CONFLICT, "nonce_gap")
            }
            MempoolError::AlreadyPending(_) | MempoolError::NonceTaken { .. } => {
                (StatusCode::CONFLICT, "already_pending")
            }
            MempoolError::Invalid(TxError::BadSignature(_)) => {
                (StatusCode::BAD_REQUEST, "bad_signature")
            }
            MempoolError::Invalid(TxError::WrongChain { .. }) => {
                (StatusCode::BAD_REQUEST, "wrong_chain")
            }
            MempoolError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "rejected"),
            MempoolError::Full(_) => (StatusCode::SERVICE_UNAVAILABLE, "mempool_full"),
        };
        let refusal = match &e {
            MempoolError::Invalid(TxError::Refused(r)) => Some(Box::new(r.clone())),
            _ => None,
        };
        ApiError {
            refusal,
            ..ApiError::new(status, code, e.to_string())
        }
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

pub(crate) fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| {
        ApiError::bad_request(format!("invalid {what}: {}", clip_quoted(&e.to_string())))
    })
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/genesis", get(genesis))
        .route("/api/v1/accounts", get(list_accounts))
        .route("/api/v1/accounts/{id}", get(account))
        .route("/api/v1/transactions", post(submit))
        .route(
            "/api/v1/transactions/batch",
            post(submit_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)),
        )
        .route("/api/v1/transactions/{id}", get(transaction))
        .route("/api/v1/blocks", get(list_blocks))
        .route("/api/v1/blocks/{height}", get(block))
        .route("/api/v1/blocks/{height}/raw", get(block_raw))
        .route("/api/v1/blocks/{height}/receipts", get(block_receipts))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::records_api::routes())
        .merge(crate::clinical_api::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint (see /api/v1/openapi.json)") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        // Outermost: every error answer in the JSON envelope (see `uniform_errors`).
        .layer(axum::middleware::from_fn(uniform_errors))
        .with_state(state)
}

/// Counts each answered request by route template, method and status
/// (`ehrchain_http_requests`).
async fn count_requests(
    State(s): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    // Any token is a valid method: only the standard ones become labels.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m,
        _ => "other",
    }
    .to_string();
    let resp = next.run(req).await;
    s.chain
        .metrics
        .http_requests
        .get_or_create(&crate::metrics::RequestLabels {
            route,
            method,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

async fn status(State(s): State<ApiState>) -> ApiResult<StatusView> {
    let snap = s.chain.snapshot();
    Ok(Json(StatusView {
        chain_id: snap.state.chain_id.clone(),
        genesis_id: s.chain.genesis_block().id(),
        height: snap.tip.height,
        tip_id: snap.tip.id(),
        tip_timestamp_ms: snap.tip.timestamp_ms,
        state_root: snap.tip.state_root,
        mempool_size: snap.mempool_size,
        validators: s.genesis.validators.len(),
        accounts: snap.state.accounts.len(),
        total_supply: snap.state.total_supply(),
        escrow_account: escrow_account(),
        escrow_balance: snap
            .state
            .account(&escrow_account())
            .map_or(0, |a| a.balance),
    }))
}

async fn genesis(State(s): State<ApiState>) -> ApiResult<GenesisFile> {
    Ok(Json((*s.genesis).clone()))
}

async fn account(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<AccountView> {
    let id: AccountId = parse("account id", &id)?;
    let snap = s.chain.snapshot();
    let found = snap.state.account(&id);
    Ok(Json(AccountView {
        id,
        next_nonce: s.chain.next_nonce(&id),
        exists: found.is_some(),
        profile_fingerprint: found
            .and_then(|a| a.profile)
            .and_then(|p| snap.state.record(&p))
            .map(|r| {
                ehrchain_types::records::profile_fingerprint(&r.id, &r.content, &r.commitment)
            }),
        account: found.cloned().unwrap_or_default(),
    }))
}

#[derive(Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<usize>,
    role: Option<String>,
    status: Option<String>,
}

async fn list_accounts(
    State(s): State<ApiState>,
    Query(q): Query<Page>,
) -> ApiResult<Vec<AccountView>> {
    let limit = q.limit.unwrap_or(100).min(1000);
    let after: Option<AccountId> = q.after.as_deref().map(|a| parse("after", a)).transpose()?;
    let role: Option<ehrchain_types::Role> =
        q.role.as_deref().map(|r| parse("role", r)).transpose()?;
    let status = q.status.as_deref();
    if let Some(st) = status
        && !["unregistered", "pending", "active"].contains(&st)
    {
        return Err(ApiError::bad_request(
            "invalid status: expected unregistered, pending or active",
        ));
    }
    let snap = s.chain.snapshot();
    let lo = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    let range = snap.state.accounts.range((lo, std::ops::Bound::Unbounded));
    let out = range
        .filter(|(_, a)| role.is_none_or(|r| a.role == Some(r)))
        .filter(|(_, a)| status.is_none_or(|st| a.status.name() == st))
        .take(limit)
        .map(|(id, a)| AccountView {
            id: *id,
            next_nonce: a.nonce,
            exists: true,
            profile_fingerprint: None,
            account: a.clone(),
        })
        .collect();
    Ok(Json(out))
}

/// A JSON request body, read like axum's `Json` (the same body limits and `Content-Type`
/// rule, the same statuses: `400` not JSON, `413` too large, `415` not sent as
/// `application/json`, `422` JSON of the wrong shape), refused with an [`ApiError`] whose
/// message is serde's without the JSON path: a path names the caller's own keys, unquoted, so
/// it could not be clipped.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(body_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected Content-Type: application/json",
            ));
        }
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|e| body_error(e.status(), &e.body_text()))?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            let status = match e.classify() {
                serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            body_error(status, &e.to_string())
        })
    }
}

/// A request body the handler could not take, with the status's code and `detail` (its
/// quotes of the body clipped).
pub(crate) fn body_error(status: StatusCode, detail: &str) -> ApiError {
    ApiError::new(
        status,
        code_for_status(status),
        format!("request body: {}", clip_quoted(detail)),
    )
}

fn decode_tx(hex_tx: &str) -> Result<SignedTransaction, ApiError> {
    let bytes = hex::decode(hex_tx.trim()).map_err(|_| ApiError::bad_request("tx is not hex"))?;
    ehrchain_types::decode(&bytes, ehrchain_types::MAX_TX_BYTES)
        .map_err(|e| ApiError::bad_request(format!("tx does not decode: {e}")))
}

async fn submit(
    State(s): State<ApiState>,
    addr: ClientAddr,
    JsonBody(req): JsonBody<SubmitRequest>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let stx = decode_tx(&req.tx)?;
    s.admit_submission(&addr, std::iter::once(&stx))?;
    let id = s.chain.submit(stx, now_ms())?;
    Ok((StatusCode::ACCEPTED, Json(SubmitResponse { id })))
}

async fn submit_batch(
    State(s): State<ApiState>,
    addr: ClientAddr,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Result<Json<Vec<BatchResult>>, ApiError> {
    if req.txs.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds at most {MAX_BATCH} transactions"
        )));
    }
    // Decode everything first, so that the well-formed transactions are admitted together
    // (one signature batch, one lock).
    let mut well_formed = Vec::new();
    let decode_errors: Vec<Option<ApiError>> = req
        .txs
        .iter()
        .map(|t| decode_tx(t).map(|stx| well_formed.push(stx)).err())
        .collect();
    s.admit_submission(&addr, well_formed.iter())?;
    let mut admitted = s.chain.submit_batch(well_formed, now_ms()).into_iter();
    let results = decode_errors
        .into_iter()
        .map(|d| {
            let result = match d {
                Some(e) => Err(e),
                None => admitted
                    .next()
                    .expect("one admission result per well-formed transaction")
                    .map_err(ApiError::from),
            };
            match result {
                Ok(id) => BatchResult {
                    id: Some(id),
                    error: None,
                },
                Err(e) => BatchResult {
                    id: None,
                    error: Some(e.to_info()),
                },
            }
        })
        .collect();
    Ok(Json(results))
}

async fn transaction(
    State(s): State<ApiState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> ApiResult<TxView> {
    let id: Hash = parse("transaction id", &id)?;
    if let Some((loc, tx, receipt)) = s.chain.finalized_tx(&id)? {
        let all: Vec<(usize, ehrchain_types::AuditEvent)> = s
            .chain
            .store()
            .audit_events(loc.height)?
            .into_iter()
            .enumerate()
            .filter(|(_, e)| e.tx == id)
            .collect();
        let mut view = TxView {
            events: Vec::new(),
            id,
            status: "finalized".into(),
            height: Some(loc.height),
            index: Some(loc.index),
            sender: None,
            receipt: None,
            tx: None,
            redacted: true,
        };
        if visibility::may_see_tx(&viewer, &tx, all.iter().map(|(_, e)| e)) {
            view.events = all
                .into_iter()
                .filter_map(|(i, e)| {
                    visibility::event_for(&viewer, &e)
                        .map(|e| crate::records_api::EventView::new(loc.height, i as u32, e))
                })
                .collect();
            view.sender = Some(tx.tx.sender());
            view.receipt = Some(receipt);
            view.tx = Some(tx);
            view.redacted = false;
        }
        return Ok(Json(view));
    }
    let status = if s.chain.is_pending(&id) {
        "pending"
    } else {
        "unknown"
    };
    Ok(Json(TxView {
        id,
        status: status.into(),
        height: None,
        index: None,
        sender: None,
        receipt: None,
        tx: None,
        events: Vec::new(),
        redacted: false,
    }))
}

/// The stored block at the `height` of a request path, or 400 / 404.
fn stored_block(s: &ApiState, height: &str) -> Result<(u64, Block), ApiError> {
    let height: u64 = parse("height", height)?;
    let block = s
        .chain
        .store()
        .block(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    Ok((height, block))
}

/// Refuses a viewer that is not a consortium member.
fn members_only(viewer: &Viewer) -> Result<(), ApiError> {
    if viewer.member {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "members_only",
        "block bodies and receipts are shown to consortium members only (validators, the admin, approved auditors), with a signed request",
    ))
}

async fn block(
    State(s): State<ApiState>,
    viewer: Viewer,
    Path(height): Path<String>,
) -> ApiResult<BlockView> {
    let (height, block) = stored_block(&s, &height)?;
    let store = s.chain.store();
    let tx_ids = block.txs.iter().map(|t| t.id()).collect();
    let (txs, receipts) = if viewer.member {
        (Some(block.txs), Some(store.receipts(height)?))
    } else {
        (None, None)
    };
    Ok(Json(BlockView {
        id: block.header.id(),
        header: block.header,
        tx_ids,
        txs,
        receipts,
        finalization: store.finalization(height)?.map(hex::encode),
        redacted: !viewer.member,
    }))
}

async fn block_receipts(
    State(s): State<ApiState>,
    viewer: Viewer,
    Path(height): Path<String>,
) -> ApiResult<ReceiptsView> {
    members_only(&viewer)?;
    let (height, block) = stored_block(&s, &height)?;
    Ok(Json(ReceiptsView {
        height,
        id: block.id(),
        timestamp_ms: block.header.timestamp_ms,
        receipts: s.chain.store().receipts(height)?,
    }))
}

async fn block_raw(
    State(s): State<ApiState>,
    viewer: Viewer,
    Path(height): Path<String>,
) -> ApiResult<RawBlockView> {
    members_only(&viewer)?;
    let height: u64 = parse("height", &height)?;
    let store = s.chain.store();
    let bytes = store
        .block_bytes(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    Ok(Json(RawBlockView {
        height,
        bytes: hex::encode(bytes),
        finalization: store.finalization(height)?.map(hex::encode),
    }))
}

#[derive(Deserialize)]
struct BlockPage {
    /// Highest height to list (default: the tip).
    before: Option<u64>,
    limit: Option<u64>,
}

async fn list_blocks(
    State(s): State<ApiState>,
    Query(q): Query<BlockPage>,
) -> ApiResult<Vec<BlockSummary>> {
    let tip = s.chain.snapshot().tip.height;
    let top = q.before.unwrap_or(tip).min(tip);
    let limit = q.limit.unwrap_or(20).min(200);
    let mut out = Vec::new();
    for h in (top.saturating_sub(limit.saturating_sub(1))..=top).rev() {
        if let Some(b) = s.chain.store().block(h)? {
            out.push(BlockSummary {
                id: b.id(),
                height: h,
                timestamp_ms: b.header.timestamp_ms,
                tx_count: b.header.tx_count,
                proposer: b.header.proposer,
                state_root: b.header.state_root,
            });
        }
    }
    Ok(Json(out))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.chain.metrics.render(),
    )
}

pub use ehrchain_api::now_ms;
