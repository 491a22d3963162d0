//! The JSON HTTP API under `/api/v1`, documented by `openapi.json` (served at
//! `/api/v1/openapi.json`), plus `/metrics` and `/healthz`.
//!
//! Errors are one type, [`ApiError`]: a status code, a stable machine code and a message
//! for the user. Request bodies and patient data are never logged.

use crate::{GenesisFile, chain::Chain, mempool::MempoolError, store::StoreError};
use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Path, Query, State, rejection::JsonRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use ehrchain_ledger::contracts::token::escrow_account;
use ehrchain_ledger::{Account, TxError};
use ehrchain_types::{AccountId, Block, Hash, Receipt, SignedTransaction};
use serde::{Deserialize, Serialize};
use serde_json::json;
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
}

/// An API failure: status, stable code, message for the user.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
    }
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
        ApiError::new(status, code, e.to_string())
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

pub(crate) fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
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
        .merge(crate::predict_api::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint (see /api/v1/openapi.json)") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Chain status.
#[derive(Serialize, Deserialize, Debug)]
pub struct StatusView {
    pub chain_id: String,
    pub genesis_id: Hash,
    pub height: u64,
    pub tip_id: Hash,
    pub tip_timestamp_ms: u64,
    pub state_root: Hash,
    pub mempool_size: usize,
    pub validators: usize,
    pub accounts: usize,
    pub total_supply: u128,
    /// The account holding appointment fees between booking and completion (no key signs
    /// for it), and what it holds.
    pub escrow_account: AccountId,
    pub escrow_balance: u64,
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

/// An account as the API shows it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AccountView {
    pub id: AccountId,
    /// False for an id the ledger has never seen (all fields are then defaults).
    pub exists: bool,
    /// The nonce the account's next new transaction should carry (counts its transactions
    /// still waiting in the mempool).
    pub next_nonce: u64,
    /// Fingerprint of the encrypted profile record (what the account's QR code carries).
    #[serde(default)]
    pub profile_fingerprint: Option<String>,
    #[serde(flatten)]
    pub account: Account,
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
            .and_then(|p| snap.state.records.get(&p))
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
    let range = match after {
        Some(a) => snap
            .state
            .accounts
            .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
        None => snap.state.accounts.range(..),
    };
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

/// A transaction submission: the hex of the canonical encoding of a signed transaction.
#[derive(Serialize, Deserialize, Debug)]
pub struct SubmitRequest {
    pub tx: String,
}

/// The answer to an accepted submission.
#[derive(Serialize, Deserialize, Debug)]
pub struct SubmitResponse {
    pub id: Hash,
}

fn body_error(e: JsonRejection) -> ApiError {
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "bad_request"
    };
    ApiError::new(status, code, format!("request body: {}", e.body_text()))
}

fn decode_tx(hex_tx: &str) -> Result<SignedTransaction, ApiError> {
    let bytes = hex::decode(hex_tx.trim()).map_err(|_| ApiError::bad_request("tx is not hex"))?;
    ehrchain_types::decode(&bytes, ehrchain_types::MAX_TX_BYTES)
        .map_err(|e| ApiError::bad_request(format!("tx does not decode: {e}")))
}

async fn submit(
    State(s): State<ApiState>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let Json(req) = body.map_err(body_error)?;
    let id = s.chain.submit(decode_tx(&req.tx)?, now_ms())?;
    Ok((StatusCode::ACCEPTED, Json(SubmitResponse { id })))
}

/// Most transactions in one batch submission.
pub const MAX_BATCH: usize = 1_000;

/// A batch submission: up to [`MAX_BATCH`] hex-encoded signed transactions.
#[derive(Serialize, Deserialize, Debug)]
pub struct BatchRequest {
    pub txs: Vec<String>,
}

/// One result per submitted transaction, in order: `id` when admitted, else `error`.
#[derive(Serialize, Deserialize, Debug)]
pub struct BatchResult {
    pub id: Option<Hash>,
    pub error: Option<serde_json::Value>,
}

async fn submit_batch(
    State(s): State<ApiState>,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Json<Vec<BatchResult>>, ApiError> {
    let Json(req) = body.map_err(body_error)?;
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
                    error: Some(json!({"code": e.code, "message": e.message})),
                },
            }
        })
        .collect();
    Ok(Json(results))
}

/// A transaction's status.
#[derive(Serialize, Deserialize, Debug)]
pub struct TxView {
    pub id: Hash,
    /// `pending` (in the mempool), `finalized`, or `unknown`.
    pub status: String,
    pub height: Option<u64>,
    pub index: Option<u32>,
    pub sender: Option<AccountId>,
    pub receipt: Option<Receipt>,
    pub tx: Option<SignedTransaction>,
    /// The audit events the transaction produced.
    #[serde(default)]
    pub events: Vec<crate::records_api::EventView>,
}

async fn transaction(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<TxView> {
    let id: Hash = parse("transaction id", &id)?;
    if let Some((loc, tx, receipt)) = s.chain.finalized_tx(&id)? {
        let events = s
            .chain
            .store()
            .audit_events(loc.height)?
            .into_iter()
            .enumerate()
            .filter(|(_, e)| e.tx == id)
            .map(|(i, e)| crate::records_api::EventView::new(loc.height, i as u32, e))
            .collect();
        return Ok(Json(TxView {
            events,
            id,
            status: "finalized".into(),
            height: Some(loc.height),
            index: Some(loc.index),
            sender: Some(tx.tx.sender()),
            receipt: Some(receipt),
            tx: Some(tx),
        }));
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
    }))
}

/// A block as the API shows it.
#[derive(Serialize, Deserialize, Debug)]
pub struct BlockView {
    pub id: Hash,
    #[serde(flatten)]
    pub block: Block,
    pub receipts: Vec<Receipt>,
    /// The engine's finality certificate (hex), absent for genesis.
    pub finalization: Option<String>,
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

async fn block(State(s): State<ApiState>, Path(height): Path<String>) -> ApiResult<BlockView> {
    let (height, block) = stored_block(&s, &height)?;
    let store = s.chain.store();
    Ok(Json(BlockView {
        id: block.id(),
        receipts: store.receipts(height)?,
        finalization: store.finalization(height)?.map(hex::encode),
        block,
    }))
}

/// A block's outcomes without its body: what a client following the chain needs to see
/// which transactions were finalized and how, at a fraction of the full view's size.
#[derive(Serialize, Deserialize, Debug)]
pub struct ReceiptsView {
    pub height: u64,
    pub id: Hash,
    pub timestamp_ms: u64,
    pub receipts: Vec<Receipt>,
}

async fn block_receipts(
    State(s): State<ApiState>,
    Path(height): Path<String>,
) -> ApiResult<ReceiptsView> {
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
    Path(height): Path<String>,
) -> Result<Response, ApiError> {
    let height: u64 = parse("height", &height)?;
    let bytes = s
        .chain
        .store()
        .block_bytes(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    Ok(Json(json!({"height": height, "bytes": hex::encode(bytes)})).into_response())
}

/// A block header summary for listings.
#[derive(Serialize, Deserialize, Debug)]
pub struct BlockSummary {
    pub id: Hash,
    pub height: u64,
    pub timestamp_ms: u64,
    pub tx_count: u32,
    pub proposer: ehrchain_types::PublicKey,
    pub state_root: Hash,
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

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
