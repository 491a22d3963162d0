//! What each caller may see of the ledger (DESIGN.md, "ledger visibility"): the ledger is
//! visible to the consortium, not to the public.
//!
//! | caller | blocks | a transaction | audit proofs |
//! |---|---|---|---|
//! | anyone (unsigned, or a non-party) | header, transaction ids, count, certificate | id, status, height, index | none |
//! | a party of a transaction (signed) | as anyone | body, receipt, the events that concern it | events of which it is the patient, or an allowed actor or counterparty |
//! | a consortium member (signed) | everything, raw bytes, receipts | everything | every event |
//!
//! Members are the genesis validators (signing requests with their consensus key), the
//! consortium admin and approved auditors. A transaction's parties are its sender, the
//! accounts its payload names, and the patient, actor and counterparty of its audit events.
//! A denied read shows its reader only that it was denied: not whose record it was, its
//! category or why, so a read of a record that exists and one of a record that does not
//! look the same to the reader.

use crate::api::{ApiError, ApiState};
use axum::{extract::FromRequestParts, http::request::Parts};
use ehrchain_ledger::{AccountStatus, State};
use ehrchain_types::{
    AccountId, AuditAction, AuditEvent, AuditReason, Decision, Grantee, Role, SignedTransaction,
    TxPayload,
};

/// Who is asking: nobody in particular, or a signed account, which may be a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub account: Option<AccountId>,
    pub member: bool,
}

impl Viewer {
    pub const ANONYMOUS: Viewer = Viewer {
        account: None,
        member: false,
    };

    /// Whether `account` is the viewer.
    pub fn is(&self, account: &AccountId) -> bool {
        self.account.as_ref() == Some(account)
    }
}

/// Whether the signer of a request is a consortium member: a genesis validator's key, the
/// admin, or an approved auditor.
pub fn is_member(s: &ApiState, state: &State, key: &ehrchain_types::PublicKey) -> bool {
    if s.genesis.validators.iter().any(|v| v.public_key == *key)
        || s.followers.contains(&AccountId::from_public_key(key))
    {
        return true;
    }
    state
        .account(&AccountId::from_public_key(key))
        .is_some_and(|a| {
            a.status == AccountStatus::Active && matches!(a.role, Some(Role::Admin | Role::Auditor))
        })
}

/// An optionally signed request: without the header the viewer is anonymous; with a header
/// that does not verify, the request is refused (a client that meant to sign should know).
impl FromRequestParts<ApiState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        if !parts.headers.contains_key(ehrchain_types::request::HEADER) {
            return Ok(Viewer::ANONYMOUS);
        }
        let auth = crate::records_api::authenticate_empty(parts, s)?;
        let account = AccountId::from_public_key(&auth.key);
        let snap = s.chain.snapshot();
        Ok(Viewer {
            account: Some(account),
            member: is_member(s, &snap.state, &auth.key),
        })
    }
}

/// The accounts a payload names (besides its sender).
pub fn named_accounts(p: &TxPayload) -> Vec<AccountId> {
    let grantee = |g: &Grantee| match g {
        Grantee::Account(a) => Some(*a),
        Grantee::Organisation(_) => None,
    };
    match p {
        TxPayload::Approve { account } => vec![*account],
        TxPayload::Transfer { to, .. } => vec![*to],
        TxPayload::AddRecord(r) => vec![r.patient],
        TxPayload::Grant { to, .. } => grantee(to).into_iter().collect(),
        TxPayload::Revoke { from, .. } => grantee(from).into_iter().collect(),
        TxPayload::RequestAccess { patient, .. } => vec![*patient],
        TxPayload::ReportSymptoms { doctor, .. } => vec![*doctor],
        TxPayload::Prescribe {
            record, pharmacy, ..
        } => std::iter::once(record.patient)
            .chain(pharmacy.iter().copied())
            .collect(),
        TxPayload::DirectPrescription { pharmacy, .. } => vec![*pharmacy],
        TxPayload::SetPolicy {
            patient, approvers, ..
        } => std::iter::once(*patient)
            .chain(approvers.iter().copied())
            .collect(),
        TxPayload::SetGuardians { guardians, .. } => guardians.iter().map(|g| g.account).collect(),
        TxPayload::RequestEmergency { patient, .. } => vec![*patient],
        TxPayload::ReportBadShare { guardian, .. } => vec![*guardian],
        _ => Vec::new(),
    }
}

fn event_parties(e: &AuditEvent) -> impl Iterator<Item = AccountId> {
    let counterparty = match &e.counterparty {
        Some(Grantee::Account(a)) => Some(*a),
        _ => None,
    };
    [Some(e.actor), Some(e.patient), counterparty]
        .into_iter()
        .flatten()
}

/// Whether the viewer may see the body of a transaction whose audit events are `events`.
pub fn may_see_tx<'a>(
    viewer: &Viewer,
    stx: &SignedTransaction,
    mut events: impl Iterator<Item = &'a AuditEvent>,
) -> bool {
    if viewer.member {
        return true;
    }
    let Some(me) = viewer.account else {
        return false;
    };
    stx.tx.sender() == me
        || named_accounts(&stx.tx.payload).contains(&me)
        || events.any(|e| event_parties(e).any(|p| p == me))
}

/// A denied read as its reader may see it: no patient, no category, no reason.
fn is_denied_read(e: &AuditEvent) -> bool {
    e.action == AuditAction::Read && e.decision == Decision::Denied
}

/// The reason every reader sees on a denied read ("no record you may read").
pub const DENIED_READ: AuditReason = AuditReason::Withheld;

/// The audit event as the viewer may see it, or `None` when it does not concern the viewer.
pub fn event_for(viewer: &Viewer, e: &AuditEvent) -> Option<AuditEvent> {
    if viewer.member || viewer.is(&e.patient) {
        return Some(e.clone());
    }
    let me = viewer.account?;
    if !event_parties(e).any(|p| p == me) {
        return None;
    }
    if is_denied_read(e) {
        return Some(AuditEvent {
            patient: AccountId([0; 20]),
            categories: Vec::new(),
            reason: DENIED_READ,
            ..e.clone()
        });
    }
    Some(e.clone())
}

/// Whether the viewer may have the inclusion proof of an event (which carries the whole
/// leaf): its patient, a member, or another party unless the event is a denied read.
pub fn may_prove(viewer: &Viewer, e: &AuditEvent) -> bool {
    viewer.member
        || viewer.is(&e.patient)
        || (!is_denied_read(e)
            && viewer
                .account
                .is_some_and(|me| event_parties(e).any(|p| p == me)))
}

/// Whether `viewer` may have a proof of the state entry `key` (its value or its absence).
///
/// A proof carries the hashes of neighbouring leaves (a key hash and a value digest each).
/// Key hashes of guessable keys (a grant from P to G, P's keys of a category) can be tested
/// against them, and a caller free to ask for proofs of keys it makes up could grind one
/// that lands beside a target and learn whether that target exists. So non-members get
/// proofs only of keys tied to something on the ledger, which costs a transaction to make:
/// an existing account; their own category keys (seven per patient); a grant they gave or
/// hold, proven absent only toward an existing account; records, requests and items they
/// are a party to. Members (validators, admin, auditors, listed followers) may prove
/// anything. An entry a caller may not prove and one that does not exist look the same.
pub fn may_prove_entry(viewer: &Viewer, state: &State, key: &ehrchain_ledger::StateKey) -> bool {
    use ehrchain_ledger::StateKey;
    let Some(who) = viewer.account else {
        return false;
    };
    if viewer.member {
        return true;
    }
    match key {
        StateKey::Account(a) => state.accounts.contains_key(a),
        StateKey::Keys(patient, _) => *patient == who,
        StateKey::Grant(patient, grantee) => {
            let party = *patient == who || *grantee == Grantee::Account(who);
            let anchored = state.grants.contains_key(&(*patient, grantee.clone()))
                || matches!(grantee, Grantee::Account(a) if state.accounts.contains_key(a));
            party && anchored
        }
        StateKey::Record(id) => state
            .record(id)
            .is_some_and(|r| r.patient == who || r.author == who),
        StateKey::Request(id) => state
            .requests
            .get(id)
            .is_some_and(|r| r.patient == who || r.requester == who),
        StateKey::Item(id) => state
            .items
            .get(id)
            .is_some_and(|i| i.parties().contains(&who)),
    }
}
