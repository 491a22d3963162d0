//! Symptom reports and prescriptions.
//!
//! A symptom report is one of the patient's own encrypted `notes` records, put in a doctor's
//! inbox; the doctor must be able to read it under the patient's consent. A prescription is
//! an encrypted `medication` record a doctor with write consent writes for the patient (it
//! waits for the patient's approval to enter the chart like any record written by someone
//! else), plus its lifecycle: directed to a pharmacy (by the doctor or the patient, with the
//! record's data key sealed to it), dispensed once by that pharmacy, which issues an invoice.

use super::{TxScope, records};
use crate::{
    access,
    clinical::{Invoice, InvoiceStatus, Prescription, Report, RxStatus},
    state::RecordStatus,
};
use ehrchain_types::{
    AccountId, AuditAction, Category, Field, ItemId, ItemKind, RecordDraft, RecordId, Refusal,
    Role, SealedKey, Subject,
};

/// Fails unless `id` is an active account in `role` with an encryption key.
fn require_party(scope: &TxScope<'_>, id: &AccountId, role: Role) -> Result<(), Refusal> {
    let a = scope.account(id);
    if a.role != Some(role) || a.status != crate::AccountStatus::Active {
        return Err(Refusal::NotInRole { account: *id, role });
    }
    if a.encryption_key.is_none() {
        return Err(Refusal::NoEncryptionKey { account: *id });
    }
    Ok(())
}

pub fn report_symptoms(
    scope: &mut TxScope<'_>,
    doctor: &AccountId,
    record: &RecordId,
) -> Result<(), Refusal> {
    scope.require_active_role(Role::Patient)?;
    require_party(scope, doctor, Role::Doctor)?;
    let rec = scope
        .record(record)
        .ok_or(Refusal::NoSuchRecord { record: *record })?;
    if rec.patient != scope.sender || rec.author != scope.sender {
        return Err(Refusal::ReportNotOwnRecord { record: *record });
    }
    if rec.category != Category::Notes || rec.status != RecordStatus::Active {
        return Err(Refusal::ReportNotActiveNotes { record: *record });
    }
    access::read_decision(scope.state(), doctor, &rec, scope.ctx.timestamp_ms)
        .map_err(|_| Refusal::DoctorCannotRead { doctor: *doctor })?;
    let report = Report {
        id: scope.new_item_id(ItemKind::Report),
        patient: scope.sender,
        doctor: *doctor,
        record: *record,
        created_ms: scope.ctx.timestamp_ms,
    };
    let mut ev = scope.item_event(
        scope.sender,
        AuditAction::SymptomsReported,
        report.id,
        Some(*doctor),
    );
    ev.record = Some(*record);
    ev.categories = vec![Category::Notes];
    scope.audit(ev);
    scope.put_item(report);
    Ok(())
}

/// Fails if the patient rejected the prescription's record: rejecting it withdraws the
/// prescription (the pharmacy can no longer read or dispense it).
fn not_rejected(scope: &TxScope<'_>, rx: &Prescription) -> Result<(), Refusal> {
    match scope.record(&rx.record) {
        Some(r) if r.status == RecordStatus::Rejected => {
            Err(Refusal::PrescriptionRejected { rx: rx.id })
        }
        _ => Ok(()),
    }
}

/// Checks a pharmacy designation: an approved pharmacist, with the data key sealed to it.
fn check_pharmacy(
    scope: &TxScope<'_>,
    pharmacy: Option<&AccountId>,
    key: Option<&SealedKey>,
) -> Result<(), Refusal> {
    match (pharmacy, key) {
        (None, None) => Ok(()),
        (Some(p), Some(_)) => require_party(scope, p, Role::Pharmacist),
        _ => Err(Refusal::PharmacyKeyMismatch),
    }
}

pub fn prescribe(
    scope: &mut TxScope<'_>,
    record: &RecordDraft,
    pharmacy: Option<&AccountId>,
    pharmacy_key: Option<&SealedKey>,
) -> Result<(), Refusal> {
    scope.require_active_role(Role::Doctor)?;
    if record.category != Category::Medication {
        return Err(Refusal::PrescriptionNotMedication);
    }
    if record.patient == scope.sender {
        return Err(Refusal::SelfPrescription);
    }
    check_pharmacy(scope, pharmacy, pharmacy_key)?;
    // Anchors the record; this checks the doctor's write consent for medication records.
    records::add(scope, record)?;
    let rx = Prescription {
        id: scope.new_item_id(ItemKind::Prescription),
        patient: record.patient,
        doctor: scope.sender,
        record: record.id,
        pharmacy: pharmacy.copied(),
        pharmacy_key: pharmacy_key.cloned(),
        status: RxStatus::Issued,
        created_ms: scope.ctx.timestamp_ms,
        dispensed_ms: None,
        invoice: None,
    };
    audit_rx(scope, &rx, AuditAction::Prescribed, rx.pharmacy);
    scope.put_item(rx);
    Ok(())
}

pub fn direct(
    scope: &mut TxScope<'_>,
    id: &ItemId,
    pharmacy: &AccountId,
    key: &SealedKey,
) -> Result<(), Refusal> {
    let mut rx: Prescription = scope.item(id)?;
    if scope.sender != rx.patient {
        return Err(Refusal::NotThePatient {
            subject: Subject::Item(*id),
        });
    }
    if rx.status != RxStatus::Issued {
        return Err(Refusal::AlreadyDispensed { rx: *id });
    }
    not_rejected(scope, &rx)?;
    check_pharmacy(scope, Some(pharmacy), Some(key))?;
    rx.pharmacy = Some(*pharmacy);
    rx.pharmacy_key = Some(key.clone());
    audit_rx(
        scope,
        &rx,
        AuditAction::PrescriptionDirected,
        Some(*pharmacy),
    );
    scope.put_item(rx);
    Ok(())
}

pub fn dispense(scope: &mut TxScope<'_>, id: &ItemId, price: u64) -> Result<(), Refusal> {
    scope.require_active_role(Role::Pharmacist)?;
    let mut rx: Prescription = scope.item(id)?;
    if rx.pharmacy != Some(scope.sender) {
        return Err(Refusal::NotYourPharmacy { rx: *id });
    }
    if rx.status == RxStatus::Dispensed {
        return Err(Refusal::AlreadyDispensed { rx: *id });
    }
    if price == 0 {
        return Err(Refusal::ZeroAmount {
            field: Field::Price,
        });
    }
    scope.within_supply(Field::Price, price)?;
    not_rejected(scope, &rx)?;
    let now = scope.ctx.timestamp_ms;
    let invoice = Invoice {
        id: scope.new_item_id(ItemKind::Invoice),
        patient: rx.patient,
        payee: scope.sender,
        amount: price,
        insurer_paid: 0,
        status: InvoiceStatus::Unpaid,
        source: rx.id,
        open_claim: None,
        created_ms: now,
        paid_ms: None,
    };
    rx.status = RxStatus::Dispensed;
    rx.dispensed_ms = Some(now);
    rx.invoice = Some(invoice.id);
    audit_rx(scope, &rx, AuditAction::Dispensed, Some(rx.doctor));
    let mut ev = scope.item_event(
        rx.patient,
        AuditAction::InvoiceIssued,
        invoice.id,
        Some(invoice.payee),
    );
    ev.amount = Some(price);
    scope.audit(ev);
    scope.put_item(rx);
    scope.put_item(invoice);
    Ok(())
}

/// Records an event about prescription `rx`: its medication record, and the other party.
fn audit_rx(
    scope: &mut TxScope<'_>,
    rx: &Prescription,
    action: AuditAction,
    counterparty: Option<AccountId>,
) {
    let mut ev = scope.item_event(rx.patient, action, rx.id, counterparty);
    ev.record = Some(rx.record);
    ev.categories = vec![Category::Medication];
    scope.audit(ev);
}
