//! Vitals: a reading is one small encrypted record of category `vitals` whose content is the
//! JSON of [`Reading`]. The patient enters readings; the patient and anyone the ledger lets
//! read the patient's vitals see them as a table and as SVG charts.
//!
//! Readings are read with the audited read, in one batch of `ReadRecord` transactions for all
//! that this session has not read yet; decrypted readings are kept in the session
//! ([`SignedIn::plaintext`]) so drawing a chart again does not audit the same read twice.

use super::{Names, PageQuery, page_bounds, patient, when};
use crate::{
    Portal,
    charts::{self, Series},
    web::{Ctx, PageError, SignedIn, User, render},
};
use askama::Template;
use axum::{
    Form,
    extract::{Path, Query, State},
    response::Response,
};
use ehrchain_client::{
    Error as SdkError, Session,
    api::{BatchRequest, BatchResult, RecordView, now_ms},
    crypto::envelope,
    records,
};
use ehrchain_types::{AccountId, Category, Decision, RecordId, TxPayload, entries::RecordStatus};
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, sync::Arc};
use zeroize::Zeroizing;

/// The title every reading record carries (nothing medical in it).
pub const VITALS_TITLE: &str = "Vitals reading";
/// The file name every reading record carries.
pub const VITALS_FILE: &str = "vitals.json";
/// Rows a page of the readings table shows.
pub const PER_PAGE: usize = 100;

/// One vitals reading: the content of a `vitals` record. Any subset of the measurements.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub at_ms: u64,
    /// Blood pressure, mmHg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systolic: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diastolic: Option<u32>,
    /// Beats per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heart_rate: Option<u32>,
    /// Blood glucose, mmol/L.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glucose: Option<f64>,
    /// Oxygen saturation, %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spo2: Option<u32>,
    /// Body weight, kg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

impl Reading {
    /// The record content.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a reading serializes")
    }

    pub fn is_empty(&self) -> bool {
        self.systolic.is_none()
            && self.diastolic.is_none()
            && self.heart_rate.is_none()
            && self.glucose.is_none()
            && self.spo2.is_none()
            && self.weight.is_none()
    }
}

/// The form's fields.
#[derive(Deserialize, Debug, Default)]
pub(super) struct VitalsForm {
    #[serde(default)]
    systolic: String,
    #[serde(default)]
    diastolic: String,
    #[serde(default)]
    heart_rate: String,
    #[serde(default)]
    glucose: String,
    #[serde(default)]
    spo2: String,
    #[serde(default)]
    weight: String,
}

fn num<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    text: &str,
    label: &str,
    unit: &str,
    lo: T,
    hi: T,
) -> Result<Option<T>, String> {
    let t = text.trim().replace(',', ".");
    if t.is_empty() {
        return Ok(None);
    }
    let v: T = t
        .parse()
        .map_err(|_| format!("{label}: {text:?} is not a number."))?;
    if v < lo || v > hi {
        return Err(format!("{label} must be between {lo} and {hi} {unit}."));
    }
    Ok(Some(v))
}

/// Checks the form: each value in a plausible range, at least one given, systolic above
/// diastolic when both are.
pub(super) fn parse_reading(f: &VitalsForm, at_ms: u64) -> Result<Reading, String> {
    let r = Reading {
        at_ms,
        systolic: num(&f.systolic, "Systolic", "mmHg", 50u32, 260)?,
        diastolic: num(&f.diastolic, "Diastolic", "mmHg", 30u32, 160)?,
        heart_rate: num(&f.heart_rate, "Heart rate", "bpm", 20u32, 250)?,
        glucose: num(&f.glucose, "Glucose", "mmol/L", 1.0f64, 35.0)?,
        spo2: num(&f.spo2, "SpO2", "%", 50u32, 100)?,
        weight: num(&f.weight, "Weight", "kg", 1.0f64, 400.0)?,
    };
    if let (Some(s), Some(d)) = (r.systolic, r.diastolic)
        && s <= d
    {
        return Err("Systolic pressure must be higher than diastolic.".into());
    }
    if r.is_empty() {
        return Err("Enter at least one measurement.".into());
    }
    Ok(r)
}

pub(super) async fn save(user: User, Form(f): Form<VitalsForm>) -> Response {
    let r = async {
        patient(&user)?;
        let reading = parse_reading(&f, now_ms()).map_err(PageError::BadRequest)?;
        let bytes = reading.to_bytes();
        let me = user.me.clone();
        user.call(move |s| {
            let added = records::add_record_from(
                s,
                &s.me,
                Category::Vitals,
                std::io::Cursor::new(bytes.clone()),
                Some(VITALS_TITLE.into()),
                Some(VITALS_FILE.into()),
                false,
            )?;
            // Written here: no read is needed to show it.
            if let Ok(mut cache) = me.plaintext.lock() {
                cache.insert(added.record, Arc::new(Zeroizing::new(bytes)));
            }
            Ok(added)
        })
        .await
    }
    .await;
    user.done(
        r,
        |a| format!("Reading saved (encrypted record {}).", a.record),
        "/patient/vitals",
    )
}

/// What loading a patient's readings gave.
pub struct Loaded {
    pub readings: Vec<(RecordId, Reading)>,
    /// Readings the ledger refused to let this account read, or that failed, with why.
    pub problems: Vec<String>,
    /// How many were read (and audited) on this request.
    pub read_now: usize,
}

/// The vitals records of `patient` this account may see.
fn vitals_records(s: &Session, patient: &AccountId) -> ehrchain_client::Result<Vec<RecordView>> {
    let views: Vec<RecordView> = s.get_all(
        &format!("/api/v1/records?patient={patient}"),
        "after",
        |v: &RecordView| v.record.id.to_string(),
    )?;
    Ok(views
        .into_iter()
        .filter(|v| {
            v.record.category == Category::Vitals && v.record.status != RecordStatus::Rejected
        })
        .collect())
}

/// One record's content, or why it could not be read.
pub type ReadResult = (RecordId, Result<Vec<u8>, String>);

/// Audited reads of many small records: every `ReadRecord` signed with consecutive nonces and
/// submitted in batches, then each allowed one downloaded, decrypted and checked against the
/// ledger's commitment. Returns each record's content or why it could not be read.
pub fn read_many(
    s: &Session,
    patient: &AccountId,
    views: &[RecordView],
) -> ehrchain_client::Result<Vec<ReadResult>> {
    let mut out = Vec::new();
    if views.is_empty() {
        return Ok(out);
    }
    let keys = records::keys_for(s, patient)?;
    for chunk in views.chunks(ehrchain_client::api::MAX_BATCH) {
        let next = s.next_nonce()?;
        let txs: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                hex::encode(ehrchain_types::encode(&s.sign(
                    TxPayload::ReadRecord {
                        record: v.record.id,
                    },
                    next + i as u64,
                )))
            })
            .collect();
        let results: Vec<BatchResult> = s
            .node
            .post("/api/v1/transactions/batch", &BatchRequest { txs })?;
        if results.len() != chunk.len() {
            return Err(SdkError::Protocol(
                "the node answered a batch with the wrong number of results".into(),
            ));
        }
        let mut admitted = Vec::new();
        for (v, r) in chunk.iter().zip(results) {
            match (r.id, r.error) {
                (Some(id), _) => admitted.push((v, id)),
                (None, Some(e)) => out.push((v.record.id, Err(e.message))),
                (None, None) => out.push((v.record.id, Err("not admitted".into()))),
            }
        }
        // Each read's outcome and content, fetched by a few threads at once (the node
        // answers them independently; one after another they cost a round trip each).
        let keys = &keys;
        let next_job = std::sync::atomic::AtomicUsize::new(0);
        let done = std::sync::Mutex::new(Vec::with_capacity(admitted.len()));
        std::thread::scope(|scope| {
            for _ in 0..READ_THREADS.min(admitted.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next_job.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((v, tx)) = admitted.get(i) else {
                            break;
                        };
                        let r = read_one(s, keys, v, tx);
                        if let Ok(mut d) = done.lock() {
                            d.push((v.record.id, r));
                        }
                    }
                });
            }
        });
        out.extend(done.into_inner().unwrap_or_default());
    }
    Ok(out)
}

/// Threads that fetch read outcomes and contents at once.
const READ_THREADS: usize = 8;

/// The outcome of one submitted read and, if allowed, the record's decrypted content,
/// checked against the ledger's commitment.
fn read_one(
    s: &Session,
    keys: &ehrchain_client::api::KeysView,
    v: &RecordView,
    tx: &ehrchain_types::Hash,
) -> Result<Vec<u8>, String> {
    let id = v.record.id;
    let t = s.wait_final(tx).map_err(|e| e.to_string())?;
    ehrchain_client::session::rejection(&t).map_err(|e| e.to_string())?;
    let Some(ev) = t.events.first() else {
        return Err("the read left no audit event".into());
    };
    if ev.event.decision == Decision::Denied {
        return Err(format!("access denied: {}", ev.event.reason));
    }
    let dk = records::open_data_key(&s.key, keys, &v.record).map_err(|e| e.to_string())?;
    let path = format!("/api/v1/records/{id}/content");
    let (c, buf) = s
        .node
        .download(&path, &s.auth("GET", &path), &mut |r| {
            let mut buf = Vec::new();
            let c = envelope::decrypt_stream(&dk, &id, std::io::BufReader::new(r), &mut buf)?;
            Ok((c, buf))
        })
        .map_err(|e| e.to_string())?;
    if c != v.record.commitment {
        return Err("the content does not match the ledger's commitment".into());
    }
    Ok(buf)
}

/// The readings of `patient` this account may read: cached ones from the session, the rest
/// read (audited) in one batch now.
pub fn load(s: &Session, me: &SignedIn, patient: &AccountId) -> ehrchain_client::Result<Loaded> {
    let views = vitals_records(s, patient)?;
    let mut readings = Vec::new();
    let mut problems = Vec::new();
    let mut todo = Vec::new();
    {
        let cache = me
            .plaintext
            .lock()
            .map_err(|_| SdkError::Protocol("session cache poisoned".into()))?;
        for v in views {
            match cache.get(&v.record.id) {
                Some(bytes) => match serde_json::from_slice::<Reading>(bytes) {
                    Ok(r) => readings.push((v.record.id, r)),
                    Err(_) => problems.push(format!("{}: not a vitals reading", v.record.id)),
                },
                None => todo.push(v),
            }
        }
    }
    let read_now = todo.len();
    let got = read_many(s, patient, &todo)?;
    let mut fresh: HashMap<RecordId, Arc<Zeroizing<Vec<u8>>>> = HashMap::new();
    for (id, r) in got {
        match r {
            Ok(bytes) => {
                match serde_json::from_slice::<Reading>(&bytes) {
                    Ok(r) => readings.push((id, r)),
                    Err(_) => problems.push(format!("{id}: not a vitals reading")),
                }
                fresh.insert(id, Arc::new(Zeroizing::new(bytes)));
            }
            Err(why) => problems.push(format!("{id}: {why}")),
        }
    }
    if let Ok(mut cache) = me.plaintext.lock() {
        cache.extend(fresh);
    }
    readings.sort_by_key(|(_, r)| std::cmp::Reverse(r.at_ms));
    Ok(Loaded {
        readings,
        problems,
        read_now,
    })
}

pub struct TableRow {
    pub id: String,
    pub at: String,
    pub bp: String,
    pub heart_rate: String,
    pub glucose: String,
    pub spo2: String,
    pub weight: String,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

fn table_row(id: &RecordId, r: &Reading) -> TableRow {
    TableRow {
        id: id.to_string(),
        at: when(r.at_ms),
        bp: match (r.systolic, r.diastolic) {
            (Some(s), Some(d)) => format!("{s}/{d}"),
            (Some(s), None) => format!("{s}/–"),
            (None, Some(d)) => format!("–/{d}"),
            (None, None) => "–".into(),
        },
        heart_rate: opt(r.heart_rate),
        glucose: opt(r.glucose.map(|g| format!("{g:.1}"))),
        spo2: opt(r.spo2),
        weight: opt(r.weight.map(|w| format!("{w:.1}"))),
    }
}

/// The charts of a patient's readings, as SVG.
pub fn charts(readings: &[(RecordId, Reading)]) -> Vec<String> {
    let series = |name: &str, f: &dyn Fn(&Reading) -> Option<f64>| Series {
        name: name.into(),
        points: readings
            .iter()
            .filter_map(|(_, r)| f(r).map(|v| (r.at_ms, v)))
            .collect(),
    };
    vec![
        charts::line_chart(
            "bp",
            "Blood pressure",
            "mmHg",
            &[
                series("Systolic", &|r| r.systolic.map(f64::from)),
                series("Diastolic", &|r| r.diastolic.map(f64::from)),
            ],
        ),
        charts::line_chart(
            "hr",
            "Heart rate",
            "bpm",
            &[series("Heart rate", &|r| r.heart_rate.map(f64::from))],
        ),
        charts::line_chart(
            "glucose",
            "Glucose",
            "mmol/L",
            &[series("Glucose", &|r| r.glucose)],
        ),
        charts::line_chart(
            "spo2",
            "Oxygen saturation",
            "SpO2 %",
            &[series("SpO2", &|r| r.spo2.map(f64::from))],
        ),
        charts::line_chart("weight", "Weight", "kg", &[series("Weight", &|r| r.weight)]),
    ]
}

#[derive(Template)]
#[template(path = "vitals/show.html")]
struct VitalsTpl {
    ctx: Ctx,
    own: bool,
    patient: String,
    patient_label: String,
    charts: Vec<String>,
    rows: Vec<TableRow>,
    total: usize,
    page: usize,
    pages: usize,
    base: String,
    problems: Vec<String>,
    read_now: usize,
}

async fn show(
    p: Arc<Portal>,
    user: User,
    patient: AccountId,
    own: bool,
    page: Option<usize>,
) -> Result<Response, PageError> {
    let me = user.me.clone();
    let names = Names::local(&p);
    let (loaded, names) = user
        .call(move |s| {
            let l = load(s, &me, &patient)?;
            let mut names = names;
            names.resolve(s, [patient]);
            Ok((l, names))
        })
        .await?;
    let (start, end, pages) = page_bounds(loaded.readings.len(), page.unwrap_or(1), PER_PAGE);
    let mut problems = loaded.problems;
    let more = problems.len().saturating_sub(20);
    problems.truncate(20);
    if more > 0 {
        problems.push(format!("… and {more} more"));
    }
    Ok(render(VitalsTpl {
        ctx: user.ctx(),
        own,
        patient: patient.to_string(),
        patient_label: names.of(&patient),
        charts: charts(&loaded.readings),
        rows: loaded.readings[start..end]
            .iter()
            .map(|(id, r)| table_row(id, r))
            .collect(),
        total: loaded.readings.len(),
        page: start / PER_PAGE + 1,
        pages,
        base: if own {
            "/patient/vitals".into()
        } else {
            format!("/vitals/{patient}")
        },
        problems,
        read_now: loaded.read_now,
    }))
}

pub(super) async fn own_page(
    State(p): State<Arc<Portal>>,
    user: User,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    patient(&user)?;
    let me = user.me.account();
    show(p, user, me, true, q.page).await
}

pub(super) async fn page(
    State(p): State<Arc<Portal>>,
    user: User,
    Path(who): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    let patient: AccountId = who
        .parse()
        .map_err(|_| PageError::NotFound("That is not an account id.".into()))?;
    if !user.me.is_active() {
        return Err(PageError::Forbidden(
            "Your account is waiting for the consortium admin's approval.".into(),
        ));
    }
    show(p, user, patient, false, q.page).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> VitalsForm {
        let mut f = VitalsForm::default();
        for (k, v) in pairs {
            let v = v.to_string();
            match *k {
                "systolic" => f.systolic = v,
                "diastolic" => f.diastolic = v,
                "heart_rate" => f.heart_rate = v,
                "glucose" => f.glucose = v,
                "spo2" => f.spo2 = v,
                "weight" => f.weight = v,
                _ => unreachable!(),
            }
        }
        f
    }

    #[test]
    fn readings_parse_any_subset_within_ranges() {
        let r = parse_reading(&form(&[("systolic", "120"), ("diastolic", "80")]), 5).unwrap();
        assert_eq!(r.systolic, Some(120));
        assert_eq!(r.diastolic, Some(80));
        assert_eq!(r.heart_rate, None);
        assert_eq!(r.at_ms, 5);
        let r = parse_reading(&form(&[("glucose", "5,4"), ("weight", " 72.5 ")]), 0).unwrap();
        assert_eq!(r.glucose, Some(5.4));
        assert_eq!(r.weight, Some(72.5));
        assert!(parse_reading(&form(&[]), 0).is_err());
        assert!(parse_reading(&form(&[("spo2", "101")]), 0).is_err());
        assert!(parse_reading(&form(&[("heart_rate", "fast")]), 0).is_err());
        assert!(parse_reading(&form(&[("systolic", "80"), ("diastolic", "90")]), 0).is_err());
        assert!(parse_reading(&form(&[("weight", "-3")]), 0).is_err());
    }

    #[test]
    fn a_reading_round_trips_as_json_without_absent_fields() {
        let r = Reading {
            at_ms: 1,
            spo2: Some(97),
            ..Reading::default()
        };
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert_eq!(text, r#"{"at_ms":1,"spo2":97}"#);
        assert_eq!(serde_json::from_str::<Reading>(&text).unwrap(), r);
    }

    #[test]
    fn table_rows_show_blood_pressure_as_a_pair() {
        let r = Reading {
            at_ms: 0,
            systolic: Some(130),
            diastolic: Some(85),
            glucose: Some(5.0),
            ..Reading::default()
        };
        let row = table_row(&RecordId([1; 16]), &r);
        assert_eq!(row.bp, "130/85");
        assert_eq!(row.glucose, "5.0");
        assert_eq!(row.heart_rate, "–");
    }
}
