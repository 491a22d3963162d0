//! The clinical workflow on the client: symptom reports and prescriptions (their content is
//! encrypted here into records), and typed access to the workflow items the ledger keeps
//! (slots, reports, prescriptions, invoices, policies, claims).

use crate::{
    Error, Result, Session, consent, invalid,
    predict::{self, Suggestion},
    records,
    schemas::{RxContent, SymptomReport},
};
use ehrchain_api::{TxView, now_ms};
use ehrchain_crypto::DataKey;
use ehrchain_types::{
    AccountId, Category, Grantee, ItemId, ItemKind, RecordId, TxPayload,
    entries::Record,
    items::{Item, ItemVariant, Policy, Prescription, Report, Slot},
};
use serde::Serialize;
use std::time::Duration;

/// Items of one kind the session account takes part in.
pub fn items<T: ItemVariant>(s: &Session) -> Result<Vec<T>> {
    let all: Vec<Item> = s.get_all(
        &format!("/api/v1/items?kind={}", T::KIND.word()),
        "after",
        |i: &Item| i.id().to_string(),
    )?;
    Ok(all.into_iter().filter_map(T::from_item).collect())
}

/// One item the session account takes part in.
pub fn item<T: ItemVariant>(s: &Session, id: &ItemId) -> Result<T> {
    let i: Item = s.get(&format!("/api/v1/items/{id}"))?;
    match T::from_item(i) {
        Some(t) => Ok(t),
        None => invalid!("{id} is not {}", T::KIND.with_article()),
    }
}

/// Open appointment slots that have not started (of one doctor, or all), soonest first.
pub fn open_slots(s: &Session, doctor: Option<&AccountId>) -> Result<Vec<Slot>> {
    let mut path = "/api/v1/items?kind=slot&open=true".to_string();
    if let Some(d) = doctor {
        path += &format!("&doctor={d}");
    }
    let all: Vec<Item> = s.get_all(&path, "after", |i: &Item| i.id().to_string())?;
    let mut slots: Vec<Slot> = all.into_iter().filter_map(Slot::from_item).collect();
    slots.sort_by_key(|x| x.start_ms);
    Ok(slots)
}

/// The item a transaction of `kind` created (its id is derived from the transaction id).
pub fn created(kind: ItemKind, t: &TxView) -> ItemId {
    ItemId::derive(kind, &t.id)
}

/// What sending a symptom report did.
#[derive(Serialize, Debug, Clone)]
pub struct ReportSent {
    pub id: ItemId,
    pub record: RecordId,
    /// Whether the doctor was granted the patient's notes on the way.
    pub granted_notes: bool,
    pub tx: TxView,
}

/// A patient sends symptoms to a doctor: an encrypted notes record the doctor may read, and a
/// report in the doctor's inbox. The doctor must hold a grant of notes; with `grant_for` one
/// is made for that long, else this fails with [`Error::NoGrant`].
pub fn report_symptoms(
    s: &Session,
    doctor: &AccountId,
    symptoms: Vec<String>,
    note: Option<String>,
    grant_for: Option<Duration>,
) -> Result<ReportSent> {
    if symptoms.is_empty() {
        invalid!("name at least one symptom");
    }
    let mut granted_notes = false;
    if !consent::holds(s, doctor, Category::Notes)? {
        let Some(d) = grant_for else {
            return Err(Error::NoGrant {
                grantee: *doctor,
                category: Category::Notes,
            });
        };
        consent::grant(
            s,
            &Grantee::Account(*doctor),
            &[Category::Notes],
            Some(d),
            false,
        )?;
        granted_notes = true;
    }
    let content = SymptomReport {
        symptoms,
        note,
        reported_ms: now_ms(),
    };
    let added = records::add_record_from(
        s,
        &s.me,
        Category::Notes,
        std::io::Cursor::new(serde_json::to_vec(&content).expect("a report serializes")),
        // The title is readable without an audited read: nothing medical in it.
        Some("Symptom report".into()),
        Some("symptoms.json".into()),
        false,
    )?;
    let tx = s.submit_one(TxPayload::ReportSymptoms {
        doctor: *doctor,
        record: added.record,
    })?;
    Ok(ReportSent {
        id: created(ItemKind::Report, &tx),
        record: added.record,
        granted_notes,
        tx,
    })
}

/// A record's JSON content, through an audited read (small records only).
pub fn read_json<T: serde::de::DeserializeOwned>(
    s: &Session,
    record: &RecordId,
    key: Option<DataKey>,
) -> Result<T> {
    let bytes = records::read_bytes(s, record, key)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("the record is not in the expected format ({e})")))
}

/// A symptom report opened by one of its parties, with decision support for its doctor.
#[derive(Serialize, Debug, Clone)]
pub struct OpenedReport {
    pub report: Report,
    pub content: SymptomReport,
    /// For the report's doctor: diseases to consider, computed on this machine (a suggestion
    /// for a clinician to confirm, never an order).
    pub suggestion: Option<Suggestion>,
    pub symptoms_not_in_model: Vec<String>,
}

/// Opens a symptom report (an audited read of its record).
pub fn open_report(s: &Session, id: &ItemId) -> Result<OpenedReport> {
    let report: Report = item(s, id)?;
    let content: SymptomReport = read_json(s, &report.record, None)?;
    let (suggestion, unknown) = if report.doctor == s.me {
        let (p, unknown) = predict::suggest(&content.symptoms, 3);
        (p, unknown)
    } else {
        (None, Vec::new())
    };
    Ok(OpenedReport {
        report,
        content,
        suggestion,
        symptoms_not_in_model: unknown,
    })
}

/// The title of a record, decrypted when the session account holds its key (a pharmacy
/// through the prescription `rx`).
pub fn title(s: &Session, record: &RecordId, rx: Option<&Prescription>) -> Option<String> {
    let view = records::record(s, record).ok()?;
    let dk = match rx.and_then(|r| pharmacy_key(s, r, &view.record).transpose()) {
        Some(k) => k.ok()?,
        None => records::data_key(s, &view.record).ok()?,
    };
    records::open_meta(&dk, &view.record)?.title
}

/// The data key of a prescription's record as its pharmacy holds it (None for others).
pub fn pharmacy_key(s: &Session, rx: &Prescription, record: &Record) -> Result<Option<DataKey>> {
    match (&rx.pharmacy, &rx.pharmacy_key) {
        (Some(p), Some(sealed)) if *p == s.me => {
            Ok(Some(s.key.encryption().open_data_key(sealed, &record.id)?))
        }
        _ => Ok(None),
    }
}

/// What writing a prescription did.
#[derive(Serialize, Debug, Clone)]
pub struct Prescribed {
    pub id: ItemId,
    pub record: RecordId,
    pub tx: TxView,
}

/// A doctor writes a prescription: an encrypted medication record for the patient (waiting
/// for the patient's approval to enter the chart), directed to `pharmacy` if given.
pub fn prescribe(
    s: &Session,
    patient: &AccountId,
    content: &RxContent,
    pharmacy: Option<&AccountId>,
) -> Result<Prescribed> {
    if content.days == 0 || content.quantity == 0 {
        invalid!("the days and the quantity must be positive");
    }
    let sealed = records::seal_upload(
        s,
        std::io::Cursor::new(serde_json::to_vec(content).expect("a prescription serializes")),
        // The title is readable without an audited read: nothing medical in it.
        Some("Prescription".into()),
        Some("prescription.json".into()),
    )?;
    let draft = sealed.draft(
        *patient,
        Category::Medication,
        sealed.direct_key(s, patient)?,
    );
    let pharmacy_key = pharmacy.map(|p| sealed.seal_to(s, p)).transpose()?;
    let tx = s.submit_one(TxPayload::Prescribe {
        record: draft,
        pharmacy: pharmacy.copied(),
        pharmacy_key,
    })?;
    Ok(Prescribed {
        id: created(ItemKind::Prescription, &tx),
        record: sealed.id,
        tx,
    })
}

/// A prescription's content as one of its parties (or its pharmacy) reads it.
pub fn open_prescription(s: &Session, id: &ItemId) -> Result<(Prescription, RxContent)> {
    let rx: Prescription = item(s, id)?;
    let view = records::record(s, &rx.record)?;
    let key = pharmacy_key(s, &rx, &view.record)?;
    let content = read_json(s, &rx.record, key)?;
    Ok((rx, content))
}

/// The patient directs a prescription to a pharmacy: the record's data key sealed to it.
pub fn direct_prescription(s: &Session, id: &ItemId, pharmacy: &AccountId) -> Result<TxView> {
    let rx: Prescription = item(s, id)?;
    let view = records::record(s, &rx.record)?;
    let dk = records::data_key(s, &view.record)?;
    let pharmacy_key = records::seal_data_key_to(s, pharmacy, &dk, &rx.record)?;
    s.submit_one(TxPayload::DirectPrescription {
        rx: *id,
        pharmacy: *pharmacy,
        pharmacy_key,
    })
}

/// The one policy in force the patient can claim under, if `policy` is not given.
pub fn claim_policy(s: &Session, policy: Option<ItemId>) -> Result<ItemId> {
    if let Some(p) = policy {
        return Ok(p);
    }
    let now = now_ms();
    let mine: Vec<Policy> = items::<Policy>(s)?
        .into_iter()
        .filter(|p| p.patient == s.me && p.in_force(now))
        .collect();
    match mine.as_slice() {
        [one] => Ok(one.id),
        [] => invalid!("you have no insurance policy in force"),
        many => invalid!(
            "you have {} policies in force; choose one ({})",
            many.len(),
            many.iter()
                .map(|p| p.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
