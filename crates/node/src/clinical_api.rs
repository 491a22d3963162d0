//! The clinical workflow part of the API: appointment slots, symptom reports, prescriptions,
//! invoices, policies and claims. Every endpoint is signed (`x-ehrchain-auth`) and shows an
//! item only to the accounts taking part in it; open appointment slots are the exception,
//! since patients need to find them.

use crate::{
    api::{ApiError, ApiResult, ApiState, now_ms, parse},
    authz,
    records_api::{Signed, cursor, page_limit},
};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::get,
};
use ehrchain_ledger::clinical::Item;
use ehrchain_types::{AccountId, ItemId, ItemKind};
use serde::Deserialize;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/items", get(list_items))
        .route("/api/v1/items/{id}", get(get_item))
        .route("/api/v1/guardians", get(guardians))
}

#[derive(Deserialize)]
struct GuardiansQuery {
    patient: String,
}

/// A patient's break-glass card: to the patient, its guardians and approved doctors.
async fn guardians(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<GuardiansQuery>,
) -> ApiResult<ehrchain_api::GuardiansView> {
    let patient: AccountId = parse("patient", &q.patient)?;
    let snap = s.chain.snapshot();
    let state = &snap.state;
    let g = ehrchain_ledger::contracts::emergency::active_guardianship(state, &patient);
    let is_doctor = state.account(&who).is_some_and(|a| {
        a.role == Some(ehrchain_types::Role::Doctor)
            && a.status == ehrchain_ledger::AccountStatus::Active
    });
    let allowed = who == patient || is_doctor || g.is_some_and(|g| g.position(&who).is_some());
    match g.filter(|_| allowed) {
        Some(g) => Ok(Json(ehrchain_api::GuardiansView {
            patient,
            guardianship: g.id,
            guardians: g.guardians.iter().map(|x| x.account).collect(),
            threshold: g.threshold,
            categories: g.categories.clone(),
            max_duration_ms: g.max_duration_ms,
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "patient {patient} has named no guardians (or you are not their patient, guardian or an approved doctor)"
            ),
        )),
    }
}

#[derive(Deserialize)]
struct ItemQuery {
    kind: String,
    /// With `kind=slot`: every open slot that has not started (not only the signer's).
    #[serde(default)]
    open: bool,
    /// With `open=true`: only this doctor's slots.
    doctor: Option<String>,
    /// With `kind=emergency`, for a regulator: every disputed emergency access (ignored with
    /// another kind).
    #[serde(default)]
    disputed: bool,
    /// Page size (`records_api::page_limit`).
    limit: Option<usize>,
    /// Page cursor: the last item id of the previous page.
    after: Option<String>,
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

async fn list_items(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Query(q): Query<ItemQuery>,
) -> ApiResult<Vec<Item>> {
    let kind = ItemKind::from_word(&q.kind).ok_or_else(|| {
        let words: Vec<&str> = ItemKind::ALL.iter().map(|k| k.word()).collect();
        bad_request(format!(
            "unknown item kind {:?} (expected one of: {})",
            q.kind,
            words.join(", ")
        ))
    })?;
    // A malformed `doctor` is refused even where it is not used (the API document's rule).
    let doctor: Option<AccountId> = q
        .doctor
        .as_deref()
        .map(|d| parse("doctor", d))
        .transpose()?;
    let after: Option<ItemId> = cursor(q.after.as_deref())?;
    let limit = page_limit(q.limit);
    let snap = s.chain.snapshot();
    let now = now_ms();
    // `disputed` qualifies `kind=emergency` only; with another kind it has nothing to select.
    if q.disputed && kind == ItemKind::Emergency {
        if !authz::is_regulator(&snap.state, &who) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only an approved regulator lists disputed emergency accesses",
            ));
        }
        return Ok(Json(
            snap.state
                .items_of_kind_after(kind, after)
                .filter(|i| authz::disputed(i))
                .take(limit)
                .cloned()
                .collect(),
        ));
    }
    if q.open {
        if kind != ItemKind::Slot {
            return Err(bad_request("open=true lists appointment slots only".into()));
        }
        return Ok(Json(
            snap.state
                .items_of_kind_after(kind, after)
                .filter(|i| authz::bookable(i, now))
                .filter(|i| match (i, doctor) {
                    (Item::Slot(s), Some(d)) => s.doctor == d,
                    _ => true,
                })
                .take(limit)
                .cloned()
                .collect(),
        ));
    }
    Ok(Json(
        snap.state
            .items_of_after(&who, kind, after)
            .take(limit)
            .cloned()
            .collect(),
    ))
}

async fn get_item(
    State(s): State<ApiState>,
    Signed(who): Signed,
    Path(id): Path<String>,
) -> ApiResult<Item> {
    let id: ItemId = parse("item id", &id)?;
    let snap = s.chain.snapshot();
    Ok(Json(authz::item(&snap.state, who, &id, now_ms())?.clone()))
}
