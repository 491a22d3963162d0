//! The one gate between the ledger's access policy and the HTTP layer.
//!
//! A handler that returns patient data takes an [`Authorized`] guard: for one record
//! ([`RecordRead`]), its ciphertext ([`ContentRead`]), a patient's record list
//! ([`RecordList`]) or a patient's audit trail ([`AuditTrail`]). Guards are made only here,
//! each by a function that asks `ehrchain_ledger::access` (and, for content, the audit trail
//! of the reader's audited read), so no handler decides access on its own and a handler that
//! forgot to ask does not compile. As extractors they authenticate the signed request too.
//!
//! What the caller may not see looks like what does not exist: `404` "no record … that you
//! may see".

use crate::{
    api::{ApiError, ApiState, now_ms, parse},
    records_api::Signed,
};
use axum::{
    extract::{FromRequestParts, Path},
    http::{StatusCode, request::Parts},
};
use ehrchain_ledger::{Record, State, access::read_decision};
use ehrchain_types::{AccountId, RecordId};

/// Proof that `who` may have `grant`, made only in this module.
#[derive(Debug)]
pub struct Authorized<P> {
    who: AccountId,
    grant: P,
}

impl<P> Authorized<P> {
    /// The signer the guard was made for.
    pub fn who(&self) -> AccountId {
        self.who
    }

    /// What was authorised.
    pub fn grant(&self) -> &P {
        &self.grant
    }

    pub fn into_grant(self) -> P {
        self.grant
    }
}

/// Reading one record's ledger entry: the record and why the reader may see it.
#[derive(Debug)]
pub struct RecordRead {
    pub record: Record,
    pub access: ehrchain_types::AuditReason,
}

/// Downloading a record's ciphertext: allowed now, and the reader's audited read of it was
/// allowed within the read window.
#[derive(Debug)]
pub struct ContentRead {
    pub record: Record,
}

/// Listing a patient's records: each page entry is authorised by [`visible_records`].
#[derive(Debug)]
pub struct RecordList {
    pub patient: AccountId,
}

/// Listing a patient's audit trail: the patient only.
#[derive(Debug)]
pub struct AuditTrail {
    pub patient: AccountId,
}

fn not_found(id: &RecordId, verb: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no record {id} that you may {verb}"),
    )
}

/// Whether `who` may read record `id` at `now` (the ledger's policy).
pub fn record(
    state: &State,
    who: AccountId,
    id: &RecordId,
    now: u64,
) -> Result<Authorized<RecordRead>, ApiError> {
    let rec = state.record(id).ok_or_else(|| not_found(id, "see"))?;
    record_read(state, who, rec, now)
}

/// [`record`] for a record already read from `state`.
fn record_read(
    state: &State,
    who: AccountId,
    rec: Record,
    now: u64,
) -> Result<Authorized<RecordRead>, ApiError> {
    let access = read_decision(state, &who, &rec, now).map_err(|_| not_found(&rec.id, "see"))?;
    Ok(Authorized {
        who,
        grant: RecordRead {
            record: rec,
            access,
        },
    })
}

/// The records of `list.patient` after `after` that the list's signer may read, each with its
/// guard, at most `limit`; the others are skipped without a trace.
pub fn visible_records(
    state: &State,
    list: &Authorized<RecordList>,
    mut after: Option<RecordId>,
    now: u64,
    limit: usize,
) -> Vec<Authorized<RecordRead>> {
    const CHUNK: usize = 256;
    let mut out = Vec::new();
    while out.len() < limit {
        let chunk = state.records_of_after(&list.grant.patient, after, CHUNK);
        let Some(last) = chunk.last() else { break };
        after = Some(last.id);
        let more = chunk.len() == CHUNK;
        let room = limit - out.len();
        out.extend(
            chunk
                .into_iter()
                .filter_map(|r| record_read(state, list.who, r, now).ok())
                .take(room),
        );
        if !more {
            break;
        }
    }
    out
}

/// Whether `who` may download record `id`'s ciphertext now: the policy allows the read, and
/// the ledger holds an allowed, audited read of it by `who` within the read window.
pub fn content(
    s: &ApiState,
    who: AccountId,
    id: &RecordId,
) -> Result<Authorized<ContentRead>, ApiError> {
    let now = now_ms();
    let snap = s.chain.snapshot();
    let read = record(&snap.state, who, id, now).map_err(|_| not_found(id, "read"))?;
    let window = s.blob_cfg.read_window_secs * 1000;
    let audited = s
        .chain
        .store()
        .last_allowed_read(&who, id)?
        .is_some_and(|t| t + window >= now);
    if !audited {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "access denied: no audited read of {id} by you in the last {} s (submit a read_record transaction first; `ehrchain record get` does)",
                s.blob_cfg.read_window_secs
            ),
        ));
    }
    Ok(Authorized {
        who,
        grant: ContentRead {
            record: read.grant.record,
        },
    })
}

/// Listing `patient`'s records: anyone signed may ask; the entries are filtered one by one.
pub fn record_list(who: AccountId, patient: AccountId) -> Authorized<RecordList> {
    Authorized {
        who,
        grant: RecordList { patient },
    }
}

/// Listing `patient`'s audit trail: only the patient.
pub fn audit_trail(who: AccountId, patient: AccountId) -> Result<Authorized<AuditTrail>, ApiError> {
    if who != patient {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "only the patient may list their audit trail",
        ));
    }
    Ok(Authorized {
        who,
        grant: AuditTrail { patient },
    })
}

/// The record id of the request path and its signer.
async fn signed_record(parts: &mut Parts, s: &ApiState) -> Result<(AccountId, RecordId), ApiError> {
    let Signed(who) = Signed::from_request_parts(parts, s).await?;
    let Path(id) = Path::<String>::from_request_parts(parts, s)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    Ok((who, parse("record id", &id)?))
}

impl FromRequestParts<ApiState> for Authorized<RecordRead> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let (who, id) = signed_record(parts, s).await?;
        record(&s.chain.snapshot().state, who, &id, now_ms())
    }
}

impl FromRequestParts<ApiState> for Authorized<ContentRead> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        let (who, id) = signed_record(parts, s).await?;
        content(s, who, &id)
    }
}

/// The grants of `patient` that `who` may see, after the cursor `after`: all of them to the
/// patient; to anyone else those to its own account, and those to its organisation if it is
/// an approved member of it (a pending registration naming an organisation sees nothing of
/// that organisation's grants).
pub fn visible_grants<'a>(
    state: &'a State,
    who: AccountId,
    patient: &'a AccountId,
    after: Option<ehrchain_types::Grantee>,
) -> impl Iterator<Item = (&'a ehrchain_types::Grantee, &'a ehrchain_ledger::Grant)> + 'a {
    use ehrchain_types::Grantee;
    let org = state
        .accounts
        .get(&who)
        .filter(|a| ehrchain_ledger::access::is_member(a))
        .and_then(|a| a.organisation.clone());
    state.grants_of_after(patient, after).filter(move |(g, _)| {
        *patient == who
            || **g == Grantee::Account(who)
            || matches!((g, &org), (Grantee::Organisation(o), Some(mine)) if o == mine)
    })
}

/// The key material `who` holds for `patient`'s records: the patient's own sealed category
/// keys when `who` is the patient, and the category keys sealed to `who` by grants in force.
pub fn visible_keys(
    state: &State,
    who: AccountId,
    patient: AccountId,
    now: u64,
) -> ehrchain_api::KeysView {
    use ehrchain_types::Category;
    let own = if patient == who {
        Category::ALL
            .iter()
            .filter_map(|c| {
                state
                    .keys
                    .get(&(patient, *c))
                    .map(|e| ehrchain_api::OwnKeys {
                        category: *c,
                        epochs: e.clone(),
                    })
            })
            .collect()
    } else {
        Vec::new()
    };
    let wraps = state
        .grants_of(&patient)
        .filter(|(_, g)| !g.expired(now))
        .flat_map(|(_, g)| g.wraps.iter().filter(|w| w.recipient == who).cloned())
        .collect();
    ehrchain_api::KeysView {
        patient,
        own,
        wraps,
    }
}

/// The access requests `who` may see, in id order after `after`, at most `limit`: with
/// `patient`, those between the two (all of the patient's, to the patient); without, the
/// signer's inbox and the requests it made.
pub fn visible_requests(
    state: &State,
    who: AccountId,
    patient: Option<AccountId>,
    after: Option<ehrchain_types::RequestId>,
    limit: usize,
) -> Vec<ehrchain_ledger::AccessRequest> {
    match patient {
        Some(patient) => state
            .requests_of_after(&patient, after)
            .filter(|r| patient == who || r.requester == who)
            .take(limit)
            .cloned()
            .collect(),
        None => {
            let mut mine: Vec<_> = state
                .requests_of_after(&who, after)
                .take(limit)
                .cloned()
                .collect();
            mine.extend(
                state
                    .requests_made_after(&who, after)
                    .filter(|r| r.patient != who)
                    .take(limit)
                    .cloned(),
            );
            mine.sort_by_key(|r| r.id);
            mine.truncate(limit);
            mine
        }
    }
}

/// Whether anyone registered may see (and book) a workflow item: an open slot not started.
pub fn bookable(item: &ehrchain_ledger::clinical::Item, now: u64) -> bool {
    use ehrchain_ledger::clinical::{Item, SlotStatus};
    matches!(item, Item::Slot(s) if s.status == SlotStatus::Open && s.start_ms > now)
}

/// Whether an emergency request is disputed, which every approved regulator may see.
pub fn disputed(item: &ehrchain_ledger::clinical::Item) -> bool {
    use ehrchain_types::items::{EmergencyReview, Item};
    matches!(item, Item::Emergency(r) if r.review == Some(EmergencyReview::Disputed))
}

/// Whether `who` is an approved regulator.
pub fn is_regulator(state: &State, who: &AccountId) -> bool {
    state.account(who).is_some_and(|a| {
        a.role == Some(ehrchain_types::Role::Regulator)
            && a.status == ehrchain_ledger::AccountStatus::Active
    })
}

/// Who may see an item beyond its parties: the doctor of an emergency request may see the
/// guardianship it is decided under (its commitments and the keys sealed to the emergency
/// key, which the doctor needs once released); a regulator sees disputed emergency accesses.
fn may_see_beyond_parties(
    state: &State,
    who: &AccountId,
    item: &ehrchain_ledger::clinical::Item,
) -> bool {
    use ehrchain_types::{ItemKind, items::Item};
    match item {
        Item::Guardianship(g) => state
            .items_of(who, ItemKind::Emergency)
            .any(|i| matches!(i, Item::Emergency(r) if r.doctor == *who && r.guardianship == g.id)),
        Item::Emergency(_) => disputed(item) && is_regulator(state, who),
        _ => false,
    }
}

/// The workflow item `id` if `who` takes part in it or may book it; an item that does not
/// exist and one the signer may not see look the same.
pub fn item<'a>(
    state: &'a State,
    who: AccountId,
    id: &ehrchain_types::ItemId,
    now: u64,
) -> Result<&'a ehrchain_ledger::clinical::Item, ApiError> {
    state
        .items
        .get(id)
        .filter(|i| {
            i.parties().contains(&who) || bookable(i, now) || may_see_beyond_parties(state, &who, i)
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no {} {id} that you may see", id.kind),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehrchain_ledger::{Account, AccountStatus, Grant};
    use ehrchain_types::{Category, Grantee, Role};

    fn account(role: Role, org: &str, status: AccountStatus) -> Account {
        Account {
            role: Some(role),
            status,
            organisation: Some(org.into()),
            ..Account::default()
        }
    }

    #[test]
    fn only_approved_members_see_their_organisations_grants() {
        let (patient, member, pending, outsider) = (
            AccountId([1; 20]),
            AccountId([2; 20]),
            AccountId([3; 20]),
            AccountId([4; 20]),
        );
        let mut state = State::empty("t");
        state.accounts.insert(patient, Account::default());
        state.accounts.insert(
            member,
            account(Role::Doctor, "StMarys", AccountStatus::Active),
        );
        state.accounts.insert(
            pending,
            account(Role::Doctor, "StMarys", AccountStatus::Pending),
        );
        state.accounts.insert(
            outsider,
            account(Role::Doctor, "Elsewhere", AccountStatus::Active),
        );
        let grant = Grant {
            categories: vec![Category::Lab],
            expires_ms: None,
            write: false,
            granted_ms: 1,
            wraps: Vec::new(),
        };
        for g in [
            Grantee::Organisation("StMarys".into()),
            Grantee::Account(outsider),
        ] {
            state.grants.insert((patient, g), grant.clone());
        }
        let seen = |who| visible_grants(&state, who, &patient, None).count();
        assert_eq!(seen(patient), 2);
        assert_eq!(seen(member), 1);
        assert_eq!(seen(outsider), 1);
        assert_eq!(
            seen(pending),
            0,
            "a pending registration claims the organisation"
        );
    }
}
