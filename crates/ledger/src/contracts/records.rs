//! Records: anchoring encrypted records, the patient's review of records others wrote, and
//! audited reads.

use super::TxScope;
use crate::{
    TxError, access,
    state::{Record, RecordStatus},
};
use ehrchain_types::{
    AccountId, AuditAction, Category, Decision, Grantee, RecordDraft, RecordId, RecordKey,
    records::SEALED_META_BYTES,
};

fn refused(msg: impl Into<String>) -> TxError {
    TxError::Refused(msg.into())
}

/// Checks that a data key is wrapped under the patient's current category key.
fn check_category_key(
    scope: &TxScope<'_>,
    patient: &AccountId,
    category: Category,
    key: &RecordKey,
) -> Result<(), TxError> {
    let epochs = scope.keys(patient, category).len() as u32;
    match key {
        RecordKey::Category { epoch, wrapped } => {
            if epochs == 0 {
                return Err(refused(format!(
                    "no {category} key yet: rotate the category key first"
                )));
            }
            if *epoch != epochs - 1 {
                return Err(refused(format!(
                    "the data key must be wrapped under the current {category} key (epoch {}), not epoch {epoch}",
                    epochs - 1
                )));
            }
            if wrapped.0.len() != 24 + 32 + 16 {
                return Err(refused("a wrapped data key is 72 bytes"));
            }
            Ok(())
        }
        RecordKey::Direct { .. } => Err(refused(
            "the patient's own records are wrapped under a category key",
        )),
    }
}

/// Anchors a record. The patient's own records enter the chart at once; a record written by
/// someone with write access waits for the patient's approval.
pub fn add(scope: &mut TxScope<'_>, r: &RecordDraft) -> Result<(), TxError> {
    let author = scope.sender;
    if author == r.patient {
        // One's own records (the profile included) need a registration, not an approval.
        scope.require_registered()?;
    } else {
        scope.require_active()?;
    }
    if scope.record(&r.id).is_some() {
        return Err(refused(format!("record {} already exists", r.id)));
    }
    if scope.state().by_content.contains_key(&r.content) {
        // One blob, one record: otherwise anyone could anchor someone else's ciphertext as
        // their own record and download it through their own audited read.
        return Err(refused(
            "this ciphertext is already anchored by another record",
        ));
    }
    if r.meta.0.len() != SEALED_META_BYTES {
        // Padded metadata has one length; any other would show the title's length.
        return Err(refused(format!(
            "encrypted metadata must be exactly {SEALED_META_BYTES} bytes (padded before encryption), not {}",
            r.meta.0.len()
        )));
    }
    let patient_acct = scope.account(&r.patient);
    if patient_acct.role.is_none() {
        return Err(TxError::NotRegistered(r.patient));
    }
    let now = scope.ctx.timestamp_ms;
    let status = if author == r.patient {
        check_category_key(scope, &r.patient, r.category, &r.key)?;
        RecordStatus::Active
    } else {
        if r.profile {
            return Err(refused("only the account itself sets its profile"));
        }
        access::write_decision(scope.state(), &author, &r.patient, r.category, now)
            .map_err(TxError::Refused)?;
        let RecordKey::Direct { wraps } = &r.key else {
            return Err(refused(
                "a record written for a patient seals its data key to the patient and the author",
            ));
        };
        let to: Vec<AccountId> = wraps.iter().map(|(a, _)| *a).collect();
        if to.len() != 2 || !to.contains(&r.patient) || !to.contains(&author) {
            return Err(refused(
                "a record written for a patient seals its data key to exactly the patient and the author",
            ));
        }
        RecordStatus::Pending
    };
    if r.profile {
        if r.category != Category::Demographics {
            return Err(refused("a profile is a demographics record"));
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
    });
    let mut ev = scope.event(r.patient, AuditAction::RecordAdded);
    ev.record = Some(r.id);
    ev.categories = vec![r.category];
    if status == RecordStatus::Pending {
        ev.reason = "waiting for the patient's approval".into();
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
) -> Result<(), TxError> {
    let mut rec = scope.record(id).ok_or(TxError::NoSuchRecord(*id))?;
    if rec.patient != scope.sender {
        return Err(refused("only the patient reviews records written for them"));
    }
    if rec.status != RecordStatus::Pending {
        return Err(refused(format!("record {id} is not waiting for approval")));
    }
    if approve {
        let key = key.ok_or_else(|| {
            refused("approving re-wraps the data key under the patient's category key")
        })?;
        check_category_key(scope, &rec.patient, rec.category, key)?;
        rec.key = key.clone();
        rec.status = RecordStatus::Active;
    } else {
        if key.is_some() {
            return Err(refused("a rejection carries no key"));
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
pub fn read(scope: &mut TxScope<'_>, id: &RecordId) -> Result<(), TxError> {
    scope.require_registered()?;
    let Some(rec) = scope.record(id) else {
        let mut ev = scope.event(AccountId([0; 20]), AuditAction::Read);
        ev.record = Some(*id);
        ev.decision = Decision::Denied;
        ev.reason = "no such record".into();
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
            ev.reason = why;
        }
    }
    scope.audit(ev);
    Ok(())
}
