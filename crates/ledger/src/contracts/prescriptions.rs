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
    TxError, access,
    clinical::{Invoice, InvoiceStatus, Prescription, Report, RxStatus},
    state::RecordStatus,
};
use ehrchain_types::{
    AccountId, AuditAction, Category, ItemId, ItemKind, RecordDraft, RecordId, Role, SealedKey,
};

fn refused(msg: impl Into<String>) -> TxError {
    TxError::Refused(msg.into())
}

/// Fails unless `id` is an active account in `role` with an encryption key.
fn require_party(scope: &TxScope<'_>, id: &AccountId, role: Role) -> Result<(), TxError> {
    let a = scope.account(id);
    if a.role != Some(role) || a.status != crate::AccountStatus::Active {
        return Err(refused(format!("{id} is not an approved {role}")));
    }
    if a.encryption_key.is_none() {
        return Err(refused(format!("{id} has no encryption key on the ledger")));
    }
    Ok(())
}

pub fn report_symptoms(
    scope: &mut TxScope<'_>,
    doctor: &AccountId,
    record: &RecordId,
) -> Result<(), TxError> {
    scope.require_active_role(Role::Patient)?;
    require_party(scope, doctor, Role::Doctor)?;
    let rec = scope.record(record).ok_or(TxError::NoSuchRecord(*record))?;
    if rec.patient != scope.sender || rec.author != scope.sender {
        return Err(refused("a symptom report is one of your own records"));
    }
    if rec.category != Category::Notes || rec.status != RecordStatus::Active {
        return Err(refused("a symptom report is an active notes record"));
    }
    access::read_decision(scope.state(), doctor, &rec, scope.ctx.timestamp_ms).map_err(|why| {
        refused(format!(
            "the doctor could not read the report ({why}): grant them notes access first"
        ))
    })?;
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
fn not_rejected(scope: &TxScope<'_>, rx: &Prescription) -> Result<(), TxError> {
    match scope.record(&rx.record) {
        Some(r) if r.status == RecordStatus::Rejected => Err(refused(format!(
            "the patient rejected {}: it can no longer be dispensed",
            rx.id
        ))),
        _ => Ok(()),
    }
}

/// Checks a pharmacy designation: an approved pharmacist, with the data key sealed to it.
fn check_pharmacy(
    scope: &TxScope<'_>,
    pharmacy: Option<&AccountId>,
    key: Option<&SealedKey>,
) -> Result<(), TxError> {
    match (pharmacy, key) {
        (None, None) => Ok(()),
        (Some(p), Some(_)) => require_party(scope, p, Role::Pharmacist),
        _ => Err(refused(
            "a pharmacy comes with the prescription's data key sealed to it",
        )),
    }
}

pub fn prescribe(
    scope: &mut TxScope<'_>,
    record: &RecordDraft,
    pharmacy: Option<&AccountId>,
    pharmacy_key: Option<&SealedKey>,
) -> Result<(), TxError> {
    scope.require_active_role(Role::Doctor)?;
    if record.category != Category::Medication {
        return Err(refused("a prescription is a medication record"));
    }
    if record.patient == scope.sender {
        return Err(refused("doctors do not prescribe for themselves here"));
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
) -> Result<(), TxError> {
    let mut rx: Prescription = scope.item(id)?;
    if scope.sender != rx.patient {
        return Err(refused(
            "only the patient directs a prescription to a pharmacy",
        ));
    }
    if rx.status != RxStatus::Issued {
        return Err(refused(format!("{id} has already been dispensed")));
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

pub fn dispense(scope: &mut TxScope<'_>, id: &ItemId, price: u64) -> Result<(), TxError> {
    scope.require_active_role(Role::Pharmacist)?;
    let mut rx: Prescription = scope.item(id)?;
    if rx.pharmacy != Some(scope.sender) {
        return Err(refused(format!("{id} is not directed to your pharmacy")));
    }
    if rx.status == RxStatus::Dispensed {
        return Err(refused(format!("{id} has already been dispensed")));
    }
    if price == 0 {
        return Err(refused("the price must be positive"));
    }
    scope.within_supply("price", price)?;
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
