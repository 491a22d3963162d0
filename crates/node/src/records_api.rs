//! The records, consent and audit part of the API. Every endpoint here except the audit proof
//! is signed by the requesting account (`x-ehrchain-auth`), and every listing shows only what
//! the consent state lets that account see: no counts, no titles, no hint of the rest.

use crate::{
    api::{ApiError, ApiResult, ApiState, now_ms, parse},
    authz::{self, Authorized, ContentRead, RecordRead},
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
use ehrchain_ledger::AccessRequest;
use ehrchain_types::{
    AccountId, EventId, Grantee, RecordId, RequestId,
    request::{AuthError, HEADER, RequestAuth},
};
use serde::Deserialize;

pub use ehrchain_api::{EventView, GrantView, KeysView, OwnKeys, RecordView};

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
        .route("/api/v1/state/proof", get(state_proof))
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

/// Streams a file from its start in 1 MiB chunks (the file is unlinked: it goes when done).
fn file_stream(
    mut file: std::fs::File,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, object_store::Error>> {
    use std::io::{Read as _, Seek as _};
    let start = file.seek(std::io::SeekFrom::Start(0));
    let err = |e: std::io::Error| object_store::Error::Generic {
        store: "rebuilt",
        source: Box::new(e),
    };
    let stream = futures::stream::unfold(Some((file, start)), move |st| async move {
        let (mut file, start) = st?;
        if let Err(e) = start {
            return Some((Err(err(e)), None));
        }
        let (file, res) = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            let r = file.read(&mut buf).map(|n| {
                buf.truncate(n);
                buf
            });
            (file, r)
        })
        .await
        .ok()?;
        match res {
            Ok(b) if b.is_empty() => None,
            Ok(b) => Some((Ok(bytes::Bytes::from(b)), Some((file, Ok(0))))),
            Err(e) => Some((Err(err(e)), None)),
        }
    });
    futures::StreamExt::boxed(stream)
}

/// The API's answer to a placement failure: `503 blob_unavailable` with how many shards were
/// found, `503 blob_unplaceable`, or an internal error (its detail logged, never shown).
fn placement_error(e: crate::placement::PlacementError) -> ApiError {
    use crate::placement::PlacementError as P;
    match &e {
        P::Unavailable { .. } | P::NoManifest | P::Corrupt => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ehrchain_api::error::codes::BLOB_UNAVAILABLE,
            e.to_string(),
        ),
        P::Unplaceable { .. } | P::NotRunning => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ehrchain_api::error::codes::BLOB_UNPLACEABLE,
            e.to_string(),
        ),
        P::Store(detail) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            "the node's shard storage failed; try again or another node",
        )
        .with_detail(detail.clone()),
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "access_denied", message)
}

/// The account that signed a request without a body (`x-ehrchain-auth`): an extractor, so a
/// handler that takes it cannot run unauthenticated.
pub struct Signed(pub AccountId);

impl FromRequestParts<ApiState> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let auth = authenticate_empty(parts, s)?;
        Ok(Signed(AccountId::from_public_key(&auth.key)))
    }
}

/// The account that signed a request with a body, and the SHA-256 of the body it signed: the
/// handler must check the body it reads against it.
pub struct SignedBody(pub AccountId, pub ehrchain_types::Hash);

impl FromRequestParts<ApiState> for SignedBody {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let auth = authenticate(parts, s)?;
        Ok(SignedBody(AccountId::from_public_key(&auth.key), auth.body))
    }
}

fn unauthorized(message: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// [`authenticate`] for a request that carries no body: the signature must be over an empty
/// one.
pub(crate) fn authenticate_empty(parts: &Parts, s: &ApiState) -> Result<RequestAuth, ApiError> {
    let auth = authenticate(parts, s)?;
    if auth.body != ehrchain_types::request::empty_body() {
        return Err(unauthorized(
            "the request signature is over a body, but this request takes none".into(),
        ));
    }
    Ok(auth)
}

/// Checks a request's `x-ehrchain-auth` signature over its method, path and query, timestamp
/// and body hash; returns the verified signature (its key is the signer, its `body` the hash
/// the caller must check the body against).
pub(crate) fn authenticate(parts: &Parts, s: &ApiState) -> Result<RequestAuth, ApiError> {
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
    SignedBody(who, signed_body): SignedBody,
    headers: HeaderMap,
    Path(cid): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    require_registered(&s, &who)?;
    let content =
        parse_cid(&cid).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e))?;
    // The body must hash to the CID (checked as it streams); the signer must have signed that
    // same hash, so a signature can never carry another body.
    if signed_body != content {
        return Err(unauthorized(
            "the request signature is over another body than the one this CID names".into(),
        ));
    }
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
    let mut coding = None;
    if let Some(p) = &s.placement {
        // Shards on every validator; this node keeps its own shard, not the whole blob.
        let open = || async {
            s.blobs
                .get(&content)
                .await
                .map(|(_, stream)| stream)
                .map_err(|e| crate::placement::PlacementError::Store(e.to_string()))
        };
        match p.spread(&content, size, open).await {
            Ok(manifest) => coding = Some(manifest.root()),
            Err(e) => {
                let _ = s.blobs.delete(&content).await;
                let _ = p.store.delete(&content).await;
                return Err(placement_error(e));
            }
        }
        s.blobs.delete(&content).await?;
    }
    permit.stored(content, size);
    s.chain.metrics.blob_bytes.inc_by(size);
    Ok((
        StatusCode::CREATED,
        Json(ehrchain_api::UploadView {
            cid: cid_string(&content),
            size,
            coding,
        }),
    )
        .into_response())
}

/// How many bytes of an upload arrive between two readings of the free space.
const DISK_CHECK_BYTES: u64 = 4 << 20;

#[derive(Deserialize)]
struct PatientQuery {
    patient: Option<String>,
    record: Option<String>,
    /// Page size ([`page_limit`]).
    limit: Option<usize>,
    /// Page cursor: the last id of the previous page.
    after: Option<String>,
    /// Page cursor of the audit trail (newest first): the last event of the previous page.
    before: Option<String>,
}

/// Default entries in one page of a list.
pub const PAGE_DEFAULT: usize = 100;
/// Most entries in one page of a list.
pub const PAGE_MAX: usize = 1000;

/// The page size asked for, bounded: [`PAGE_DEFAULT`] when not given, at most [`PAGE_MAX`].
pub(crate) fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX)
}

/// The `after` cursor of a query, parsed.
pub(crate) fn cursor<T: std::str::FromStr>(after: Option<&str>) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    after.map(|a| parse("after", a)).transpose()
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
    let list = authz::record_list(who, q.patient_or(who)?);
    let after: Option<RecordId> = cursor(q.after.as_deref())?;
    let snap = s.chain.snapshot();
    Ok(Json(
        authz::visible_records(&snap.state, &list, after, now_ms(), page_limit(q.limit))
            .into_iter()
            .map(record_view)
            .collect(),
    ))
}

/// The view of a record its reader may see.
fn record_view(read: Authorized<RecordRead>) -> RecordView {
    let RecordRead { record, access } = read.into_grant();
    RecordView {
        cid: cid_string(&record.content),
        record,
        access,
    }
}

async fn get_record(read: Authorized<RecordRead>) -> ApiResult<RecordView> {
    Ok(Json(record_view(read)))
}

/// Most recent audit events of a patient searched for a reader's recent allowed read.
const READ_SEARCH: usize = 10_000;

/// The ciphertext of a record, to a requester who may read it now and whose read of it was
/// allowed and audited on the ledger within the read window.
async fn record_content(
    State(s): State<ApiState>,
    read: Authorized<ContentRead>,
) -> Result<Response, ApiError> {
    let rec = &read.grant().record;
    let (size, stream) = match (s.blobs.get(&rec.content).await, &s.placement) {
        (Ok(found), _) => found,
        (Err(BlobError::NotFound(_)), Some(p)) => {
            // Rebuilt from the validators' shards into a temporary file first: only content
            // that matched its CID as a whole is ever served.
            let tmp = tempfile::tempfile_in(&p.tmp_dir)
                .map_err(|e| ApiError::internal("storage", format!("temporary file: {e}")))?;
            let out = tmp
                .try_clone()
                .map_err(|e| ApiError::internal("storage", format!("temporary file: {e}")))?;
            let m = p
                .gather(&rec.content, rec.coding, out)
                .await
                .map_err(placement_error)?;
            (m.size, file_stream(tmp))
        }
        (Err(e), _) => return Err(e.into()),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn keys(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<PatientQuery>,
) -> ApiResult<KeysView> {
    let patient = q.patient_or(who)?;
    let snap = s.chain.snapshot();
    Ok(Json(authz::visible_keys(
        &snap.state,
        who,
        patient,
        now_ms(),
    )))
}

async fn grants(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<PatientQuery>,
) -> ApiResult<Vec<GrantView>> {
    let patient = q.patient_or(who)?;
    let snap = s.chain.snapshot();
    let now = now_ms();
    let after: Option<Grantee> = cursor(q.after.as_deref())?;
    Ok(Json(
        authz::visible_grants(&snap.state, who, &patient, after)
            .map(|(g, grant)| GrantView {
                patient,
                grantee: g.clone(),
                expired: grant.expired(now),
                grant: grant.clone(),
            })
            .take(page_limit(q.limit))
            .collect(),
    ))
}

/// Access requests: a patient's inbox, or the requests the requester made to `patient`.
async fn requests(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<PatientQuery>,
) -> ApiResult<Vec<AccessRequest>> {
    let patient: Option<AccountId> = q
        .patient
        .as_deref()
        .map(|p| parse("patient", p))
        .transpose()?;
    let after: Option<RequestId> = cursor(q.after.as_deref())?;
    let snap = s.chain.snapshot();
    Ok(Json(authz::visible_requests(
        &snap.state,
        who,
        patient,
        after,
        page_limit(q.limit),
    )))
}

/// A patient's audit trail, newest first. Only the patient may list it.
async fn audit(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<PatientQuery>,
) -> ApiResult<Vec<EventView>> {
    let trail = authz::audit_trail(who, q.patient_or(who)?)?;
    let patient = trail.grant().patient;
    let record: Option<RecordId> = q
        .record
        .as_deref()
        .map(|r| parse("record id", r))
        .transpose()?;
    let limit = page_limit(q.limit);
    let before = match cursor::<EventId>(q.before.as_deref())? {
        Some(e) => Some(s.chain.store().audit_location(&e)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("before: no audit event {e}"),
            )
        })?),
        None => None,
    };
    let events = s
        .chain
        .store()
        .audit_of(
            &patient,
            before,
            if record.is_some() { READ_SEARCH } else { limit },
        )?
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
    let proof = crate::proof::build(s.chain.store(), &s.genesis, &id)?.ok_or_else(not_found)?;
    if !crate::visibility::may_prove(&viewer, &proof.event) {
        return Err(not_found());
    }
    Ok(Json(proof))
}

#[derive(Deserialize)]
struct StateProofQuery {
    key: String,
}

/// The proof of one state entry, or of its absence, in the state after the last finalized
/// block (`visibility::may_prove_entry` says who may have which); the file then checks offline
/// with `ehrchain state verify`. An entry the signer may not prove and one that does not exist
/// look the same, except where the signer owns the key (a patient proving that no grant to X
/// exists).
async fn state_proof(
    State(s): State<ApiState>,
    viewer: crate::visibility::Viewer,
    Query(q): Query<StateProofQuery>,
) -> ApiResult<crate::proof::StateProofFile> {
    let key: ehrchain_ledger::StateKey = q
        .key
        .parse()
        .map_err(|e: String| ApiError::bad_request(e))?;
    let snap = s.chain.snapshot();
    if !crate::visibility::may_prove_entry(&viewer, &snap.state, &key) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no state entry {key} that you may prove (sign the request as a party)"),
        ));
    }
    let proof =
        crate::proof::build_state(s.chain.store(), &s.genesis, &snap, &key)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_finalized",
                "no block has been finalized after genesis yet; try again after the first block",
            )
        })?;
    Ok(Json(proof))
}
