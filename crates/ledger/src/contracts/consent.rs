//! Consent: category keys and their epochs, grants, revocation and access requests.
//!
//! Invariant kept by every operation: each current grantee of a category holds that
//! category's key of every epoch, sealed to it (O(categories × epochs) wraps per grantee, never
//! O(records)). A revocation starts a new epoch in the same transaction, sealed only to the
//! patient and the remaining grantees.

use super::TxScope;
use crate::{
    access,
    state::{AccessRequest, Grant, RequestStatus},
};
use ehrchain_types::{
    AccountId, AuditAction, AuditReason, Category, Decision, Field, Grantee, KeyWrap, Refusal,
    RequestId, Rotation, SealedKey, Subject,
    records::{MAX_REASON_BYTES, MAX_WRAPS},
    tx::MAX_ORGANISATION_LEN,
};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn normalise(categories: &[Category]) -> Result<Vec<Category>, Refusal> {
    let mut c = categories.to_vec();
    c.sort();
    c.dedup();
    if c.is_empty() {
        return Err(Refusal::NoCategories);
    }
    Ok(c)
}

fn too_many_wraps(count: usize) -> Result<(), Refusal> {
    if count > MAX_WRAPS {
        return Err(Refusal::TooManyWraps {
            count: count as u64,
            max: MAX_WRAPS as u64,
        });
    }
    Ok(())
}

type WrapKey = (Category, u32, AccountId);

/// The wraps a grantee must hold for `categories` of the sender's keys.
fn required_wraps(
    scope: &TxScope<'_>,
    grantee: &Grantee,
    categories: &[Category],
) -> BTreeSet<WrapKey> {
    let mut out = BTreeSet::new();
    for &c in categories {
        let epochs = scope.keys(&scope.sender, c).len() as u32;
        for r in access::recipients(scope.state(), grantee, c) {
            for e in 0..epochs {
                out.insert((c, e, r));
            }
        }
    }
    out
}

/// Keeps the existing wraps still required, adds the provided ones, and checks that exactly
/// the required set results.
pub(crate) fn merge_wraps(
    existing: &[KeyWrap],
    provided: &[KeyWrap],
    required: &BTreeSet<WrapKey>,
) -> Result<Vec<KeyWrap>, Refusal> {
    too_many_wraps(provided.len())?;
    let mut out: BTreeMap<WrapKey, KeyWrap> = existing
        .iter()
        .map(|w| ((w.category, w.epoch, w.recipient), w.clone()))
        .filter(|(k, _)| required.contains(k))
        .collect();
    for w in provided {
        let k = (w.category, w.epoch, w.recipient);
        if !required.contains(&k) {
            return Err(Refusal::UnexpectedWrap {
                category: w.category,
                epoch: w.epoch,
                recipient: w.recipient,
            });
        }
        out.insert(k, w.clone());
    }
    if let Some(&(category, epoch, recipient)) = required.iter().find(|k| !out.contains_key(k)) {
        return Err(Refusal::MissingWrap {
            category,
            epoch,
            recipient,
        });
    }
    Ok(out.into_values().collect())
}

/// Checks that `grantee` can receive a grant of `categories` (`write` too) from the sender:
/// a registered account with an encryption key whose role allows it, or an organisation with
/// at least one approved member.
fn check_grantee(
    scope: &TxScope<'_>,
    grantee: &Grantee,
    categories: &[Category],
    write: bool,
) -> Result<(), Refusal> {
    match grantee {
        Grantee::Account(a) => {
            if *a == scope.sender {
                return Err(Refusal::SelfGrant);
            }
            let acct = scope.account(a);
            let Some(role) = acct.role else {
                return Err(Refusal::NotRegistered { account: *a });
            };
            if acct.encryption_key.is_none() {
                return Err(Refusal::NoEncryptionKey { account: *a });
            }
            for &c in categories {
                access::role_allows(role, c, write)?;
            }
            Ok(())
        }
        Grantee::Organisation(o) => {
            if o.trim().is_empty() {
                return Err(Refusal::FieldEmpty {
                    field: Field::Organisation,
                });
            }
            if o.len() > MAX_ORGANISATION_LEN {
                return Err(Refusal::FieldTooLong {
                    field: Field::Organisation,
                    len: o.len() as u64,
                    max: MAX_ORGANISATION_LEN as u64,
                });
            }
            if access::members(scope.state(), o).next().is_none() {
                return Err(Refusal::NoOrganisationMembers {
                    organisation: o.clone(),
                });
            }
            Ok(())
        }
    }
}

/// Starts a new epoch of one of the sender's category keys.
pub fn rotate(scope: &mut TxScope<'_>, rotation: &Rotation) -> Result<(), Refusal> {
    let acct = scope.require_registered()?;
    if acct.encryption_key.is_none() {
        return Err(Refusal::NoEncryptionKey {
            account: scope.sender,
        });
    }
    let patient = scope.sender;
    let c = rotation.category;
    let mut keys = scope.keys(&patient, c);
    let epoch = keys.len() as u32;
    keys.push(rotation.own.clone());
    scope.put_keys(patient, c, keys);
    too_many_wraps(rotation.wraps.len())?;
    let mut provided: BTreeMap<AccountId, &KeyWrap> = BTreeMap::new();
    for w in &rotation.wraps {
        if w.category != c || w.epoch != epoch {
            return Err(Refusal::UnexpectedWrap {
                category: w.category,
                epoch: w.epoch,
                recipient: w.recipient,
            });
        }
        provided.insert(w.recipient, w);
    }
    let now = scope.ctx.timestamp_ms;
    let mut used = BTreeSet::new();
    for (grantee, mut grant) in scope.grants_of(&patient) {
        if !grant.covers(c, now) {
            continue;
        }
        for r in access::recipients(scope.state(), &grantee, c) {
            let w = provided.get(&r).ok_or(Refusal::MissingWrap {
                category: c,
                epoch,
                recipient: r,
            })?;
            grant.wraps.push((*w).clone());
            used.insert(r);
        }
        scope.put_grant(patient, grantee, grant);
    }
    // The emergency key holds every epoch of the categories it opens (recipient: the patient).
    if let Some(g) = super::emergency::active_guardianship(scope.state(), &patient)
        && g.categories.contains(&c)
    {
        let mut g: ehrchain_types::items::Guardianship = scope.item(&g.id)?;
        let w = provided.get(&patient).ok_or(Refusal::MissingWrap {
            category: c,
            epoch,
            recipient: patient,
        })?;
        g.wraps.push((*w).clone());
        used.insert(patient);
        scope.put_item(g);
    }
    if let Some(extra) = provided.keys().find(|r| !used.contains(r)) {
        return Err(Refusal::UnexpectedWrap {
            category: c,
            epoch,
            recipient: *extra,
        });
    }
    let mut ev = scope.event(patient, AuditAction::KeyRotated);
    ev.categories = vec![c];
    ev.reason = AuditReason::KeyEpoch { epoch };
    scope.audit(ev);
    Ok(())
}

/// Grants (or replaces the grant of) access to the sender's records.
pub fn grant(
    scope: &mut TxScope<'_>,
    to: &Grantee,
    categories: &[Category],
    expires_ms: Option<u64>,
    write: bool,
    wraps: &[KeyWrap],
) -> Result<(), Refusal> {
    scope.require_active()?;
    let categories = normalise(categories)?;
    check_grantee(scope, to, &categories, write)?;
    let now = scope.ctx.timestamp_ms;
    if let Some(e) = expires_ms
        && e <= now
    {
        return Err(Refusal::AlreadyExpired {
            expires_ms: e,
            now_ms: now,
        });
    }
    let existing = scope.grant(&scope.sender, to);
    if let Some(g) = &existing
        && !g.expired(now)
        && let Some(&dropped) = g.categories.iter().find(|c| !categories.contains(c))
    {
        return Err(Refusal::GrantNarrowing {
            grantee: to.clone(),
            category: dropped,
        });
    }
    let existing = existing.map(|g| g.wraps).unwrap_or_default();
    let required = required_wraps(scope, to, &categories);
    let wraps = merge_wraps(&existing, wraps, &required)?;
    let patient = scope.sender;
    scope.put_grant(
        patient,
        to.clone(),
        Grant {
            categories: categories.clone(),
            expires_ms,
            write,
            granted_ms: now,
            wraps,
        },
    );
    let mut ev = scope.event(patient, AuditAction::Granted);
    ev.categories = categories;
    ev.counterparty = Some(to.clone());
    ev.reason = AuditReason::GrantTerms { write, expires_ms };
    scope.audit(ev);
    Ok(())
}

/// Revokes all or some categories of a grant and rotates the revoked categories' keys.
pub fn revoke(
    scope: &mut TxScope<'_>,
    from: &Grantee,
    categories: &[Category],
    rotations: &[Rotation],
) -> Result<(), Refusal> {
    scope.require_active()?;
    let patient = scope.sender;
    let Some(mut grant) = scope.grant(&patient, from) else {
        return Err(Refusal::NoSuchGrant {
            grantee: from.clone(),
        });
    };
    let revoked = if categories.is_empty() {
        grant.categories.clone()
    } else {
        let c = normalise(categories)?;
        if let Some(&missing) = c.iter().find(|c| !grant.categories.contains(c)) {
            return Err(Refusal::GrantLacksCategory {
                grantee: from.clone(),
                category: missing,
            });
        }
        c
    };
    grant.categories.retain(|c| !revoked.contains(c));
    grant.wraps.retain(|w| !revoked.contains(&w.category));
    if grant.categories.is_empty() {
        scope.remove_grant(patient, from.clone());
    } else {
        scope.put_grant(patient, from.clone(), grant);
    }
    let need: BTreeSet<Category> = revoked
        .iter()
        .copied()
        .filter(|c| !scope.keys(&patient, *c).is_empty())
        .collect();
    let given: BTreeSet<Category> = rotations.iter().map(|r| r.category).collect();
    if given.len() != rotations.len() {
        let mut seen = BTreeSet::new();
        let category = rotations
            .iter()
            .map(|r| r.category)
            .find(|c| !seen.insert(*c))
            .expect("fewer distinct categories than rotations");
        return Err(Refusal::DuplicateRotation { category });
    }
    if let Some(&category) = need.difference(&given).next() {
        return Err(Refusal::RotationRequired { category });
    }
    if let Some(&category) = given.difference(&need).next() {
        return Err(Refusal::UnexpectedRotation { category });
    }
    for r in rotations {
        rotate(scope, r)?;
    }
    let mut ev = scope.event(patient, AuditAction::Revoked);
    ev.categories = revoked;
    ev.counterparty = Some(from.clone());
    scope.audit(ev);
    Ok(())
}

/// A professional asks a patient for access.
pub fn request(
    scope: &mut TxScope<'_>,
    patient: &AccountId,
    categories: &[Category],
    write: bool,
    reason: &SealedKey,
) -> Result<(), Refusal> {
    let acct = scope.require_active()?;
    let role = acct.role.expect("active accounts have a role");
    let categories = normalise(categories)?;
    for &c in &categories {
        access::role_allows(role, c, write)?;
    }
    if *patient == scope.sender {
        return Err(Refusal::SelfRequest);
    }
    if scope.account(patient).role.is_none() {
        return Err(Refusal::NotRegistered { account: *patient });
    }
    if reason.ct.0.len() > MAX_REASON_BYTES {
        return Err(Refusal::FieldTooLong {
            field: Field::Reason,
            len: reason.ct.0.len() as u64,
            max: MAX_REASON_BYTES as u64,
        });
    }
    let id = RequestId(scope.tx.0);
    scope.put_request(AccessRequest {
        id,
        requester: scope.sender,
        patient: *patient,
        categories: categories.clone(),
        write,
        reason: reason.clone(),
        status: RequestStatus::Open,
        created_ms: scope.ctx.timestamp_ms,
        answered_ms: None,
    });
    let mut ev = scope.event(*patient, AuditAction::AccessRequested);
    ev.categories = categories;
    ev.counterparty = Some(Grantee::Account(scope.sender));
    ev.reason = AuditReason::Request { request: id };
    scope.audit(ev);
    Ok(())
}

/// The patient approves (granting what was asked, added to any existing grant) or denies.
pub fn answer(
    scope: &mut TxScope<'_>,
    id: &RequestId,
    approve: bool,
    expires_ms: Option<u64>,
    wraps: &[KeyWrap],
) -> Result<(), Refusal> {
    let Some(mut req) = scope.request(id) else {
        return Err(Refusal::NoSuchRequest { request: *id });
    };
    if req.patient != scope.sender {
        return Err(Refusal::NotThePatient {
            subject: Subject::Request(*id),
        });
    }
    if req.status != RequestStatus::Open {
        return Err(Refusal::RequestAnswered { request: *id });
    }
    let to = Grantee::Account(req.requester);
    if approve {
        let (mut cats, mut write) = (req.categories.clone(), req.write);
        if let Some(g) = scope.grant(&req.patient, &to) {
            cats.extend(g.categories);
            write |= g.write;
        }
        grant(scope, &to, &cats, expires_ms, write, wraps)?;
    } else if !wraps.is_empty() {
        return Err(Refusal::UnexpectedKeys);
    }
    req.status = if approve {
        RequestStatus::Approved
    } else {
        RequestStatus::Denied
    };
    req.answered_ms = Some(scope.ctx.timestamp_ms);
    let mut ev = scope.event(
        req.patient,
        if approve {
            AuditAction::RequestApproved
        } else {
            AuditAction::RequestDenied
        },
    );
    ev.categories = req.categories.clone();
    ev.counterparty = Some(to);
    ev.decision = if approve {
        Decision::Allowed
    } else {
        Decision::Denied
    };
    ev.reason = AuditReason::Request { request: *id };
    scope.put_request(req);
    scope.audit(ev);
    Ok(())
}
