//! The records, consent and audit part of the API. Every endpoint here except the audit proof
//! is signed by the requesting account (`x-ehrchain-auth`), and every listing shows only what
//! the consent state lets that account see: no counts, no titles, no hint of the rest.

use crate::{
    api::{ApiError, ApiResult, ApiState, now_ms, parse},
    blobs::{BlobError, cid_string, parse_cid},
    proof::AuditProof,
};
use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use ehrchain_ledger::{AccessRequest, Grant, Record, access::read_decision};
use ehrchain_types::{
    AccountId, AuditEvent, Category, EventId, Grantee, KeyWrap, RecordId, SealedKey,
    request::{AuthError, HEADER, RequestAuth},
};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/api/v1/blobs/{cid}",
            put(put_blob).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/blobs/check", get(check_blob))
        .route("/api/v1/records", get(list_records))
        .route("/api/v1/records/{id}", get(get_record))
        .route("/api/v1/records/{id}/content", get(record_content))
        .route("/api/v1/keys", get(keys))
        .route("/api/v1/grants", get(grants))
        .route("/api/v1/requests", get(requests))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/{id}/proof", get(audit_proof))
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        let (status, code) = match &e {
            BlobError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            BlobError::Mismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "cid_mismatch"),
            BlobError::DiskFull => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            BlobError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            BlobError::Body(_) => (StatusCode::BAD_REQUEST, "upload_interrupted"),
            BlobError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
            BlobError::Limit(l) => return l.clone().into(),
        };
        if let BlobError::NotFound(detail) = &e {
            // The detail can name the node's filesystem paths: the log gets it, the client
            // does not.
            tracing::warn!(detail = %detail, "blob store");
        }
        let message = match &e {
            BlobError::Io(_) => "the node's blob storage failed; try again or another node".into(),
            other => other.to_string(),
        };
        let err = ApiError::new(status, code, message);
        match e {
            // Logged once, with the failed request (`ApiError::into_response`).
            BlobError::Io(detail) => err.with_detail(detail),
            _ => err,
        }
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "access_denied", message)
}

/// The account that signed the request (`x-ehrchain-auth`): an extractor, so a handler that
/// takes it cannot run unauthenticated.
pub struct Signed(pub AccountId);

impl FromRequestParts<ApiState> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let auth = authenticate(parts, s)?;
        Ok(Signed(ehrchain_types::AccountId::from_public_key(
            &auth.key,
        )))
    }
}

/// Checks a request's `x-ehrchain-auth` signature over its method, path and query, and
/// timestamp; returns the verified signature (its key is the signer).
pub(crate) fn authenticate(parts: &Parts, s: &ApiState) -> Result<RequestAuth, ApiError> {
    let unauthorized = |m: String| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = parts
        .headers
        .get(HEADER)
        .ok_or_else(|| unauthorized(AuthError::Missing.to_string()))?
        .to_str()
        .map_err(|_| unauthorized(AuthError::Malformed.to_string()))?;
    let auth = RequestAuth::parse(value).map_err(|e| unauthorized(e.to_string()))?;
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    auth.verify(
        &s.genesis.ledger.chain_id,
        parts.method.as_str(),
        path,
        now_ms(),
    )
    .map_err(|e| unauthorized(e.to_string()))?;
    Ok(auth)
}

#[derive(Deserialize)]
struct SizeQuery {
    size: u64,
}

/// Whether an upload of `size` bytes by the signer would be accepted now (size limit,
/// registration, quota, storage), without reserving anything: the same checks and answers as
/// the upload itself, which a client cannot read reliably once it streams a body.
async fn check_blob(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<SizeQuery>,
) -> ApiResult<serde_json::Value> {
    drop(begin_upload(&s, who, q.size)?);
    Ok(Json(serde_json::json!({"size": q.size, "accepted": true})))
}

/// The checks an upload of `size` bytes passes before any byte is read (registration, size
/// limit, storage, quota); the permit holds its share of the uploader's quota.
fn begin_upload(
    s: &ApiState,
    who: AccountId,
    size: u64,
) -> Result<crate::limits::UploadPermit<'_>, ApiError> {
    require_registered(s, &who)?;
    if size > s.blobs.max_bytes() {
        return Err(BlobError::TooLarge {
            max: s.blobs.max_bytes(),
        }
        .into());
    }
    s.limits.disk.check_upload(size)?;
    Ok(s.limits.pending.begin(who, size)?)
}

fn require_registered(s: &ApiState, who: &AccountId) -> Result<(), ApiError> {
    if s.chain
        .snapshot()
        .state
        .accounts
        .get(who)
        .is_none_or(|a| a.role.is_none())
    {
        return Err(forbidden("only registered accounts may upload"));
    }
    Ok(())
}

/// Upload of an encrypted blob, streamed; the CID in the path must match the bytes.
async fn put_blob(
    State(s): State<ApiState>,
    addr: crate::api::ClientAddr,
    Signed(who): Signed,
    headers: HeaderMap,
    Path(cid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    require_registered(&s, &who)?;
    let content =
        parse_cid(&cid).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e))?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let limits = &s.limits;
    let now = std::time::Instant::now();
    limits.uploads_by_account.check(&who, 1.0, now)?;
    if let Some(ip) = addr.0 {
        limits.uploads_by_address.check(&ip, 1.0, now)?;
    }
    let mut permit = begin_upload(&s, who, declared)?;
    // Bytes beyond the declared length count against the quota as they arrive, and the free
    // space is read again every few MiB, so a long upload stops at the watermark too.
    let (mut received, mut since_check) = (0u64, 0u64);
    let result = s
        .blobs
        .put(&content, body.into_data_stream(), |n| {
            received += n;
            if received > declared {
                permit.grow(n.min(received - declared))?;
            }
            since_check += n;
            if since_check >= DISK_CHECK_BYTES {
                since_check = 0;
                limits
                    .disk
                    .check_upload(declared.saturating_sub(received))?;
            }
            Ok(())
        })
        .await;
    if matches!(result, Err(BlobError::Limit(_)) | Err(BlobError::DiskFull)) {
        s.chain.metrics.storage_refusals.inc();
    }
    let size = result?;
    permit.stored(content, size);
    s.chain.metrics.blob_bytes.inc_by(size);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"cid": cid_string(&content), "size": size})),
    )
        .into_response())
}

/// How many bytes of an upload arrive between two readings of the free space.
const DISK_CHECK_BYTES: u64 = 4 << 20;

/// A record as a requester may see it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RecordView {
    #[serde(flatten)]
    pub record: Record,
    /// CIDv1 of the ciphertext.
    pub cid: String,
    /// Why the requester may see it.
    pub access: String,
}

#[derive(Deserialize)]
struct PatientQuery {
    patient: Option<String>,
    record: Option<String>,
    limit: Option<usize>,
}

impl PatientQuery {
    /// The `patient` asked about, by default the signer.
    fn patient_or(&self, signer: AccountId) -> Result<AccountId, ApiError> {
        self.patient
            .as_deref()
            .map_or(Ok(signer), |p| parse("patient", p))
    }
}

async fn list_records(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<PatientQuery>,
) -> ApiResult<Vec<RecordView>> {
    let patient = q.patient_or(who)?;
    let snap = s.chain.snapshot();
    let now = now_ms();
    Ok(Json(
        snap.state
            .records_of(&patient)
            .filter_map(|r| {
                read_decision(&snap.state, &who, r, now)
                    .ok()
                    .map(|access| RecordView {
                        record: r.clone(),
                        cid: cid_string(&r.content),
                        access: access.to_string(),
                    })
            })
            .collect(),
    ))
}

/// Looks up a record the requester may see; anything else is "not found".
fn visible_record(s: &ApiState, who: &AccountId, id: &str) -> Result<(Record, String), ApiError> {
    let id: RecordId = parse("record id", id)?;
    let snap = s.chain.snapshot();
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no record {id} that you may see"),
        )
    };
    let rec = snap.state.records.get(&id).ok_or_else(not_found)?;
    match read_decision(&snap.state, who, rec, now_ms()) {
        Ok(why) => Ok((rec.clone(), why.to_string())),
        Err(_) => Err(not_found()),
    }
}

async fn get_record(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Path(id): Path<String>,
) -> ApiResult<RecordView> {
    let (record, access) = visible_record(&s, &who, &id)?;
    Ok(Json(RecordView {
        cid: cid_string(&record.content),
        record,
        access,
    }))
}

/// Most recent audit events of a patient searched for a reader's recent allowed read.
const READ_SEARCH: usize = 10_000;

/// The ciphertext of a record, to a requester who may read it now and whose read of it was
/// allowed and audited on the ledger within the read window.
async fn record_content(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rid: RecordId = parse("record id", &id)?;
    let snap = s.chain.snapshot();
    let now = now_ms();
    // A record that does not exist and one the requester may not read look the same.
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no record {rid} that you may read"),
        )
    };
    let rec = snap.state.records.get(&rid).ok_or_else(not_found)?;
    read_decision(&snap.state, &who, rec, now).map_err(|_| not_found())?;
    let window = s.blob_cfg.read_window_secs * 1000;
    let audited = s
        .chain
        .store()
        .last_allowed_read(&who, &rid)?
        .is_some_and(|t| t + window >= now);
    if !audited {
        return Err(forbidden(format!(
            "access denied: no audited read of {rid} by you in the last {} s (submit a read_record transaction first; `ehrchain record get` does)",
            s.blob_cfg.read_window_secs
        )));
    }
    let (size, stream) = s.blobs.get(&rec.content).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One category's keys, sealed to the patient.
#[derive(Serialize, Deserialize, Debug)]
pub struct OwnKeys {
    pub category: Category,
    /// Index = epoch; the last one is current.
    pub epochs: Vec<SealedKey>,
}

/// The key material a requester holds for a patient.
#[derive(Serialize, Deserialize, Debug)]
pub struct KeysView {
    pub patient: AccountId,
    /// The patient's own sealed category keys (only when the patient asks).
    pub own: Vec<OwnKeys>,
    /// Category keys sealed to the requester through grants in force.
    pub wraps: Vec<KeyWrap>,
}

async fn keys(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<PatientQuery>,
) -> ApiResult<KeysView> {
    let patient = q.patient_or(who)?;
    let snap = s.chain.snapshot();
    let now = now_ms();
    let own = if patient == who {
        Category::ALL
            .iter()
            .filter_map(|c| {
                snap.state.keys.get(&(patient, *c)).map(|e| OwnKeys {
                    category: *c,
                    epochs: e.clone(),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let wraps = snap
        .state
        .grants_of(&patient)
        .filter(|(_, g)| !g.expired(now))
        .flat_map(|(_, g)| g.wraps.iter().filter(|w| w.recipient == who).cloned())
        .collect();
    Ok(Json(KeysView {
        patient,
        own,
        wraps,
    }))
}

/// A grant as its patient or its grantee sees it.
#[derive(Serialize, Deserialize, Debug)]
pub struct GrantView {
    pub patient: AccountId,
    pub grantee: Grantee,
    pub expired: bool,
    #[serde(flatten)]
    pub grant: Grant,
}

async fn grants(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<PatientQuery>,
) -> ApiResult<Vec<GrantView>> {
    let patient = q.patient_or(who)?;
    let snap = s.chain.snapshot();
    let org = snap
        .state
        .accounts
        .get(&who)
        .and_then(|a| a.organisation.clone());
    let now = now_ms();
    Ok(Json(
        snap.state
            .grants_of(&patient)
            .filter(|(g, _)| {
                patient == who
                    || **g == Grantee::Account(who)
                    || matches!((g, &org), (Grantee::Organisation(o), Some(mine)) if o == mine)
            })
            .map(|(g, grant)| GrantView {
                patient,
                grantee: g.clone(),
                expired: grant.expired(now),
                grant: grant.clone(),
            })
            .collect(),
    ))
}

/// Access requests: a patient's inbox, or the requests the requester made to `patient`.
async fn requests(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<PatientQuery>,
) -> ApiResult<Vec<AccessRequest>> {
    let snap = s.chain.snapshot();
    let out = match &q.patient {
        Some(p) => {
            let patient: AccountId = parse("patient", p)?;
            snap.state
                .requests_of(&patient)
                .filter(|r| patient == who || r.requester == who)
                .cloned()
                .collect()
        }
        None => {
            let mut mine: Vec<AccessRequest> = snap.state.requests_of(&who).cloned().collect();
            mine.extend(
                snap.state
                    .requests
                    .values()
                    .filter(|r| r.requester == who)
                    .cloned(),
            );
            mine
        }
    };
    Ok(Json(out))
}

/// An audit event with where it is on the ledger.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct EventView {
    pub id: EventId,
    pub height: u64,
    pub index: u32,
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl EventView {
    pub fn new(height: u64, index: u32, event: AuditEvent) -> EventView {
        EventView {
            id: event.id(),
            height,
            index,
            event,
        }
    }
}

/// A patient's audit trail, newest first. Only the patient may list it.
async fn audit(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<PatientQuery>,
) -> ApiResult<Vec<EventView>> {
    let patient = q.patient_or(who)?;
    if patient != who {
        return Err(forbidden("only the patient may list their audit trail"));
    }
    let record: Option<RecordId> = q
        .record
        .as_deref()
        .map(|r| parse("record id", r))
        .transpose()?;
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let events = s
        .chain
        .store()
        .audit_of(&patient, if record.is_some() { READ_SEARCH } else { limit })?
        .into_iter()
        .filter(|(_, _, e)| record.is_none() || e.record == record)
        .take(limit)
        .map(|(h, i, e)| EventView::new(h, i, e))
        .collect();
    Ok(Json(events))
}

/// The inclusion proof of an audit event against its finalized block, for those who may see
/// the whole event (`visibility::may_prove`); to anyone else an event that exists and one
/// that does not look the same. The proof file then checks offline, by anyone it is given to.
async fn audit_proof(
    State(s): State<ApiState>,
    viewer: crate::visibility::Viewer,
    Path(id): Path<String>,
) -> ApiResult<AuditProof> {
    let id: EventId = parse("event id", &id)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no audit event {id} that you may see"),
        )
    };
    let proof = AuditProof::build(s.chain.store(), &s.genesis, &id)?.ok_or_else(not_found)?;
    if !crate::visibility::may_prove(&viewer, &proof.event) {
        return Err(not_found());
    }
    Ok(Json(proof))
}
