//! Records: anchoring encrypted records, the patient's review of records others wrote, and
//! audited reads.

use super::TxScope;
use crate::{
    access,
    state::{Record, RecordStatus},
};
use ehrchain_types::{
    AccountId, AuditAction, AuditReason, Category, Decision, Grantee, RecordDraft, RecordId,
    RecordKey, Refusal, Subject, records::SEALED_META_BYTES,
};

/// Checks that a data key is wrapped under the patient's current category key.
fn check_category_key(
    scope: &TxScope<'_>,
    patient: &AccountId,
    category: Category,
    key: &RecordKey,
) -> Result<(), Refusal> {
    let epochs = scope.keys(patient, category).len() as u32;
    match key {
        RecordKey::Category { epoch, wrapped } => {
            if epochs == 0 {
                return Err(Refusal::NoCategoryKey { category });
            }
            if *epoch != epochs - 1 {
                return Err(Refusal::StaleKeyEpoch {
                    category,
                    current: epochs - 1,
                    got: *epoch,
                });
            }
            if wrapped.0.len() != 24 + 32 + 16 {
                return Err(Refusal::WrappedKeyLength {
                    len: wrapped.0.len() as u64,
                });
            }
            Ok(())
        }
        RecordKey::Direct { .. } => Err(Refusal::CategoryKeyRequired),
    }
}

/// Anchors a record. The patient's own records enter the chart at once; a record written by
/// someone with write access waits for the patient's approval.
pub fn add(scope: &mut TxScope<'_>, r: &RecordDraft) -> Result<(), Refusal> {
    let author = scope.sender;
    if author == r.patient {
        // One's own records (the profile included) need a registration, not an approval.
        scope.require_registered()?;
    } else {
        scope.require_active()?;
    }
    if scope.record(&r.id).is_some() {
        return Err(Refusal::RecordExists { record: r.id });
    }
    if scope.state().has_content(&r.content) {
        // One blob, one record: otherwise anyone could anchor someone else's ciphertext as
        // their own record and download it through their own audited read.
        return Err(Refusal::ContentAnchored);
    }
    if r.meta.0.len() != SEALED_META_BYTES {
        // Padded metadata has one length; any other would show the title's length.
        return Err(Refusal::MetaLength {
            len: r.meta.0.len() as u64,
        });
    }
    let patient_acct = scope.account(&r.patient);
    if patient_acct.role.is_none() {
        return Err(Refusal::NotRegistered { account: r.patient });
    }
    let now = scope.ctx.timestamp_ms;
    let status = if author == r.patient {
        check_category_key(scope, &r.patient, r.category, &r.key)?;
        RecordStatus::Active
    } else {
        if r.profile {
            return Err(Refusal::NotOwnProfile);
        }
        access::write_decision(scope.state(), &author, &r.patient, r.category, now)?;
        let RecordKey::Direct { wraps } = &r.key else {
            return Err(Refusal::DirectKeyRecipients);
        };
        let to: Vec<AccountId> = wraps.iter().map(|(a, _)| *a).collect();
        if to.len() != 2 || !to.contains(&r.patient) || !to.contains(&author) {
            return Err(Refusal::DirectKeyRecipients);
        }
        RecordStatus::Pending
    };
    if r.profile {
        if r.category != Category::Demographics {
            return Err(Refusal::ProfileNotDemographics);
        }
        let mut acct = scope.account(&author);
        acct.profile = Some(r.id);
        scope.put(author, acct);
    }
    scope.put_record(Record {
        id: r.id,
        patient: r.patient,
        author,
        category: r.category,
        content: r.content,
        size: r.size,
        commitment: r.commitment,
        meta: r.meta.clone(),
        key: r.key.clone(),
        status,
        created_ms: now,
        height: scope.ctx.height,
        reviewed_ms: None,
        coding: r.coding,
    });
    let mut ev = scope.event(r.patient, AuditAction::RecordAdded);
    ev.record = Some(r.id);
    ev.categories = vec![r.category];
    if status == RecordStatus::Pending {
        ev.reason = AuditReason::WaitingForApproval;
    }
    scope.audit(ev);
    Ok(())
}

/// The patient approves or rejects a pending record written for them.
pub fn review(
    scope: &mut TxScope<'_>,
    id: &RecordId,
    approve: bool,
    key: Option<&RecordKey>,
) -> Result<(), Refusal> {
    let mut rec = scope
        .record(id)
        .ok_or(Refusal::NoSuchRecord { record: *id })?;
    if rec.patient != scope.sender {
        return Err(Refusal::NotThePatient {
            subject: Subject::Record(*id),
        });
    }
    if rec.status != RecordStatus::Pending {
        return Err(Refusal::RecordNotPending { record: *id });
    }
    if approve {
        let key = key.ok_or(Refusal::ApprovalNeedsKey)?;
        check_category_key(scope, &rec.patient, rec.category, key)?;
        rec.key = key.clone();
        rec.status = RecordStatus::Active;
    } else {
        if key.is_some() {
            return Err(Refusal::UnexpectedKeys);
        }
        rec.status = RecordStatus::Rejected;
    }
    rec.reviewed_ms = Some(scope.ctx.timestamp_ms);
    let mut ev = scope.event(
        rec.patient,
        if approve {
            AuditAction::RecordApproved
        } else {
            AuditAction::RecordRejected
        },
    );
    ev.record = Some(rec.id);
    ev.categories = vec![rec.category];
    ev.counterparty = Some(Grantee::Account(rec.author));
    scope.put_record(rec);
    scope.audit(ev);
    Ok(())
}

/// An audited read: the decision under the consent state at this block is recorded either way.
/// A read of a record that does not exist is a denied read too, so a reader cannot tell it
/// from a record they may not read (the event names no patient: there is none).
pub fn read(scope: &mut TxScope<'_>, id: &RecordId) -> Result<(), Refusal> {
    scope.require_registered()?;
    let Some(rec) = scope.record(id) else {
        let mut ev = scope.event(AccountId([0; 20]), AuditAction::Read);
        ev.record = Some(*id);
        ev.decision = Decision::Denied;
        ev.reason = Refusal::NoSuchRecord { record: *id }.into();
        scope.audit(ev);
        return Ok(());
    };
    let decision =
        access::read_decision(scope.state(), &scope.sender, &rec, scope.ctx.timestamp_ms);
    let mut ev = scope.event(rec.patient, AuditAction::Read);
    ev.record = Some(rec.id);
    ev.categories = vec![rec.category];
    match decision {
        Ok(why) => ev.reason = why,
        Err(why) => {
            ev.decision = Decision::Denied;
            ev.reason = why.into();
        }
    }
    scope.audit(ev);
    Ok(())
}
