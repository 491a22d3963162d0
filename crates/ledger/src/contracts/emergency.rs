//! Emergency access (seed 004, "break-glass"): a patient's guardians release the patient's
//! emergency categories to a doctor, `threshold` of `n`, for a bounded window.
//!
//! The ledger never sees a secret. The patient's client splits an emergency key among the
//! guardians (Feldman VSS over Ristretto) and seals the categories' keys to it; this contract
//! keeps the commitments and sealed material, counts the guardians' answers, and once
//! `threshold` approved treats the request like a read grant of those categories to that
//! doctor until its window ends ([`crate::access::read_decision`]). Reads still go through the
//! audited read. A doctor who receives a wrong share proves it here by revealing the bytes the
//! guardian sealed to them (the guardian published their digest when approving), and the
//! contract checks them against the commitments before naming the guardian.

use super::{TxScope, consent};
use crate::State;
use ehrchain_crypto::emergency::{self as vss, Share};
use ehrchain_types::{
    AccountId, AuditAction, AuditReason, Category, EncryptionKey, Field, Hash, ItemId, ItemKind,
    KeyWrap, Refusal, Role,
    items::{
        EmergencyReason, EmergencyRequest, EmergencyReview, EmergencyStatus, Guardian,
        GuardianAnswer, Guardianship, GuardianshipStatus, Item, MAX_EMERGENCY_MS, MAX_GUARDIANS,
        MIN_EMERGENCY_MS, REVEALED_SHARE_BYTES,
    },
    records::MAX_REASON_BYTES,
};
use std::collections::BTreeSet;

/// The patient's current guardianship, if any (as of the state before the transaction; a
/// transaction never both creates one and uses it).
pub fn active_guardianship<'a>(
    state: &'a State,
    patient: &'a AccountId,
) -> Option<&'a Guardianship> {
    state
        .items_of(patient, ItemKind::Guardianship)
        .find_map(|i| match i {
            Item::Guardianship(g)
                if g.patient == *patient && g.status == GuardianshipStatus::Active =>
            {
                Some(g)
            }
            _ => None,
        })
}

/// The released, unexpired emergency access of `doctor` to `patient`'s `category` records at
/// `now_ms`, if any.
pub fn release_for<'a>(
    state: &'a State,
    patient: &AccountId,
    doctor: &'a AccountId,
    category: Category,
    now_ms: u64,
) -> Option<&'a EmergencyRequest> {
    state
        .items_of(doctor, ItemKind::Emergency)
        .find_map(|i| match i {
            Item::Emergency(r)
                if r.doctor == *doctor && r.patient == *patient && r.covers(category, now_ms) =>
            {
                Some(r)
            }
            _ => None,
        })
}

fn sealed_len_ok(len: usize) -> Result<(), Refusal> {
    if len > MAX_REASON_BYTES {
        return Err(Refusal::FieldTooLong {
            field: Field::Reason,
            len: len as u64,
            max: MAX_REASON_BYTES as u64,
        });
    }
    Ok(())
}

/// `set_guardians`: names (or removes) the sender's guardians.
#[allow(clippy::too_many_arguments)]
pub fn set_guardians(
    scope: &mut TxScope<'_>,
    guardians: &[Guardian],
    threshold: u8,
    categories: &[Category],
    max_duration_ms: u64,
    commitments: &[Hash],
    emergency_key: EncryptionKey,
    wraps: &[KeyWrap],
) -> Result<(), Refusal> {
    let acct = scope.require_active_role(Role::Patient)?;
    let patient = scope.sender;
    if acct.encryption_key.is_none() {
        return Err(Refusal::NoEncryptionKey { account: patient });
    }
    let old = active_guardianship(scope.state(), &patient).map(|g| g.id);
    if guardians.is_empty() && old.is_none() {
        return Err(Refusal::NoGuardians { patient });
    }
    let now = scope.ctx.timestamp_ms;
    let mut ev = scope.event(patient, AuditAction::GuardiansSet);
    if !guardians.is_empty() {
        let n = guardians.len();
        if n > MAX_GUARDIANS {
            return Err(Refusal::GuardianCount {
                count: n as u64,
                max: MAX_GUARDIANS as u64,
            });
        }
        if threshold < 2 || usize::from(threshold) > n {
            return Err(Refusal::BadThreshold {
                threshold,
                guardians: n as u64,
            });
        }
        let mut seen = BTreeSet::new();
        for g in guardians {
            if !seen.insert(g.account) {
                return Err(Refusal::DuplicateGuardian {
                    guardian: g.account,
                });
            }
            let a = scope.account(&g.account);
            let eligible = g.account != patient
                && a.role.is_some()
                && a.status == crate::AccountStatus::Active
                && a.encryption_key.is_some();
            if !eligible {
                return Err(Refusal::GuardianNotEligible {
                    guardian: g.account,
                });
            }
            sealed_len_ok(g.share.ct.0.len())?;
        }
        let categories = consent::normalise(categories)?;
        if !(MIN_EMERGENCY_MS..=MAX_EMERGENCY_MS).contains(&max_duration_ms) {
            return Err(Refusal::BadEmergencyWindow {
                duration_ms: max_duration_ms,
                min_ms: MIN_EMERGENCY_MS,
                max_ms: MAX_EMERGENCY_MS,
            });
        }
        if commitments.len() != usize::from(threshold) || !vss::valid_commitments(commitments) {
            return Err(Refusal::BadCommitments);
        }
        // Every epoch of every category, sealed to the emergency key (recipient: the patient).
        let mut required = BTreeSet::new();
        for &c in &categories {
            for e in 0..scope.keys(&patient, c).len() as u32 {
                required.insert((c, e, patient));
            }
        }
        let wraps = consent::merge_wraps(&[], wraps, &required)?;
        let id = scope.new_item_id(ItemKind::Guardianship);
        ev.categories = categories.clone();
        ev.item = Some(id);
        ev.reason = AuditReason::Guardians {
            threshold,
            guardians: n as u8,
            max_duration_ms,
        };
        scope.put_item(Guardianship {
            id,
            patient,
            guardians: guardians.to_vec(),
            threshold,
            categories,
            max_duration_ms,
            commitments: commitments.to_vec(),
            emergency_key,
            wraps,
            status: GuardianshipStatus::Active,
            created_ms: now,
            replaced_ms: None,
        });
    } else {
        ev.reason = AuditReason::Guardians {
            threshold: 0,
            guardians: 0,
            max_duration_ms: 0,
        };
    }
    if let Some(old) = old {
        let mut g: Guardianship = scope.item(&old)?;
        g.status = GuardianshipStatus::Replaced;
        g.replaced_ms = Some(now);
        scope.put_item(g);
        // Requests still waiting are decided under shares that no longer count.
        let open: Vec<EmergencyRequest> = scope
            .state()
            .items_of(&patient, ItemKind::Emergency)
            .filter_map(|i| match i {
                Item::Emergency(r)
                    if r.patient == patient
                        && r.guardianship == old
                        && r.status == EmergencyStatus::Open =>
                {
                    Some(r.clone())
                }
                _ => None,
            })
            .collect();
        for mut r in open {
            r.status = EmergencyStatus::Withdrawn;
            let closed =
                scope.item_event(patient, AuditAction::EmergencyClosed, r.id, Some(r.doctor));
            scope.audit(closed);
            scope.put_item(r);
        }
    }
    scope.audit(ev);
    Ok(())
}

/// `request_emergency`: an approved doctor asks the patient's guardians.
pub fn request(
    scope: &mut TxScope<'_>,
    patient: &AccountId,
    reason: EmergencyReason,
    notes: &[(AccountId, ehrchain_types::SealedKey)],
    duration_ms: u64,
) -> Result<(), Refusal> {
    let doctor = scope.require_active_role(Role::Doctor)?;
    if doctor.encryption_key.is_none() {
        return Err(Refusal::NoEncryptionKey {
            account: scope.sender,
        });
    }
    let Some(g) = active_guardianship(scope.state(), patient).cloned() else {
        return Err(Refusal::NoGuardians { patient: *patient });
    };
    if !(MIN_EMERGENCY_MS..=g.max_duration_ms).contains(&duration_ms) {
        return Err(Refusal::BadEmergencyWindow {
            duration_ms,
            min_ms: MIN_EMERGENCY_MS,
            max_ms: g.max_duration_ms,
        });
    }
    let mut seen = BTreeSet::new();
    for (to, sealed) in notes {
        let allowed = *to == *patient || g.position(to).is_some();
        if !allowed || !seen.insert(*to) {
            return Err(Refusal::BadEmergencyNote);
        }
        sealed_len_ok(sealed.ct.0.len())?;
    }
    if reason == EmergencyReason::Other && notes.is_empty() {
        return Err(Refusal::BadEmergencyNote);
    }
    let now = scope.ctx.timestamp_ms;
    let sender = scope.sender;
    let pending = scope
        .state()
        .items_of(&sender, ItemKind::Emergency)
        .find_map(|i| match i {
            Item::Emergency(r)
                if r.doctor == sender
                    && r.patient == *patient
                    && ((r.status == EmergencyStatus::Open && !r.lapsed(now))
                        || (r.status == EmergencyStatus::Released
                            && r.expires_ms.is_some_and(|e| now < e))) =>
            {
                Some(r.id)
            }
            _ => None,
        });
    if let Some(request) = pending {
        return Err(Refusal::EmergencyPending { request });
    }
    let id = scope.new_item_id(ItemKind::Emergency);
    let mut ev = scope.item_event(*patient, AuditAction::EmergencyRequested, id, None);
    ev.categories = g.categories.clone();
    ev.reason = AuditReason::EmergencyAsked {
        request: id,
        reason,
        duration_ms,
    };
    scope.audit(ev);
    scope.put_item(EmergencyRequest {
        id,
        patient: *patient,
        doctor: sender,
        organisation: doctor.organisation.clone(),
        guardianship: g.id,
        guardians: g.guardians.iter().map(|x| x.account).collect(),
        threshold: g.threshold,
        categories: g.categories.clone(),
        reason,
        notes: notes.to_vec(),
        duration_ms,
        answers: Vec::new(),
        status: EmergencyStatus::Open,
        created_ms: now,
        released_ms: None,
        expires_ms: None,
        review: None,
        reviewed_ms: None,
    });
    Ok(())
}

/// `answer_emergency`: a guardian approves (handing over its share) or refuses, once.
pub fn answer(
    scope: &mut TxScope<'_>,
    request: &ItemId,
    approve: bool,
    share: Option<&ehrchain_types::SealedKey>,
    digest: Option<&Hash>,
) -> Result<(), Refusal> {
    scope.require_active()?;
    let mut r: EmergencyRequest = scope.item(request)?;
    let me = scope.sender;
    if !r.guardians.contains(&me) {
        return Err(Refusal::NotAGuardian { request: *request });
    }
    if r.doctor == me {
        return Err(Refusal::SelfApproval { request: *request });
    }
    if r.answers.iter().any(|a| a.guardian == me) {
        return Err(Refusal::AlreadyAnswered { request: *request });
    }
    let now = scope.ctx.timestamp_ms;
    // After the release, further approvals still help (spare shares in case one is wrong).
    let open = (r.status == EmergencyStatus::Open && !r.lapsed(now))
        || (approve
            && r.status == EmergencyStatus::Released
            && r.expires_ms.is_some_and(|e| now < e));
    if !open {
        return Err(Refusal::EmergencyClosed { request: *request });
    }
    match (approve, share, digest) {
        (true, Some(s), Some(_)) => sealed_len_ok(s.ct.0.len())?,
        (false, None, None) => {}
        _ => return Err(Refusal::ShareRequired),
    }
    r.answers.push(GuardianAnswer {
        guardian: me,
        approve,
        time_ms: now,
        share: share.cloned(),
        digest: digest.copied(),
        bad: false,
    });
    let action = if approve {
        AuditAction::EmergencyApproved
    } else {
        AuditAction::EmergencyRefused
    };
    let mut ev = scope.item_event(r.patient, action, r.id, Some(r.doctor));
    ev.categories = r.categories.clone();
    scope.audit(ev);
    let threshold = usize::from(r.threshold);
    if r.status == EmergencyStatus::Open && r.approvals() >= threshold {
        r.status = EmergencyStatus::Released;
        r.released_ms = Some(now);
        r.expires_ms = Some(now.saturating_add(r.duration_ms));
        let mut ev = scope.item_event(
            r.patient,
            AuditAction::EmergencyReleased,
            r.id,
            Some(r.doctor),
        );
        ev.categories = r.categories.clone();
        ev.reason = AuditReason::Emergency {
            request: r.id,
            expires_ms: r.expires_ms,
        };
        scope.audit(ev);
    } else if r.status == EmergencyStatus::Open && r.guardians.len() - r.refusals() < threshold {
        r.status = EmergencyStatus::Refused;
        let ev = scope.item_event(
            r.patient,
            AuditAction::EmergencyClosed,
            r.id,
            Some(r.doctor),
        );
        scope.audit(ev);
    }
    scope.put_item(r);
    Ok(())
}

/// `report_bad_share`: the doctor proves that `guardian` handed over a wrong share.
pub fn report_bad_share(
    scope: &mut TxScope<'_>,
    request: &ItemId,
    guardian: &AccountId,
    revealed: &[u8],
) -> Result<(), Refusal> {
    scope.require_active()?;
    let mut r: EmergencyRequest = scope.item(request)?;
    if r.doctor != scope.sender {
        return Err(Refusal::NotYourEmergency { request: *request });
    }
    let not_revealed = Refusal::ShareNotRevealed {
        guardian: *guardian,
    };
    let Some(at) = r
        .answers
        .iter()
        .position(|a| a.guardian == *guardian && a.approve)
    else {
        return Err(not_revealed);
    };
    let digest = vss::share_digest(request, guardian, revealed);
    if revealed.len() != REVEALED_SHARE_BYTES || r.answers[at].digest != Some(digest) {
        return Err(not_revealed);
    }
    if r.answers[at].bad {
        return Ok(());
    }
    let g: Guardianship = scope.item(&r.guardianship)?;
    let index = g.position(guardian).map(|p| p + 1);
    let good = match Share::from_bytes(&revealed[..ehrchain_types::items::SHARE_BYTES]) {
        Ok(share) => {
            index == Some(usize::from(share.index)) && vss::verify_share(&g.commitments, &share)
        }
        Err(_) => false,
    };
    if good {
        return Err(Refusal::ShareValid {
            guardian: *guardian,
        });
    }
    r.answers[at].bad = true;
    let ev = scope.item_event(r.patient, AuditAction::BadShare, r.id, Some(*guardian));
    scope.audit(ev);
    scope.put_item(r);
    Ok(())
}

/// `review_emergency`: the patient marks a released emergency access reviewed or disputed,
/// which also ends it if its window is still running.
pub fn review(
    scope: &mut TxScope<'_>,
    request: &ItemId,
    review: EmergencyReview,
) -> Result<(), Refusal> {
    let mut r: EmergencyRequest = scope.item(request)?;
    if r.patient != scope.sender {
        return Err(Refusal::NotYourEmergency { request: *request });
    }
    if r.status != EmergencyStatus::Released || r.review.is_some() {
        return Err(Refusal::NotReviewable { request: *request });
    }
    let now = scope.ctx.timestamp_ms;
    r.review = Some(review);
    r.reviewed_ms = Some(now);
    // A patient who can review can consent: a review ends an access still running.
    r.expires_ms = r.expires_ms.map(|e| e.min(now));
    let action = match review {
        EmergencyReview::Reviewed => AuditAction::EmergencyReviewed,
        EmergencyReview::Disputed => AuditAction::EmergencyDisputed,
    };
    let ev = scope.item_event(r.patient, action, r.id, Some(r.doctor));
    scope.audit(ev);
    scope.put_item(r);
    Ok(())
}
