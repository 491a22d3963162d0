//! The doctor's pages: patients who granted access and their charts, access requests,
//! notes written for a patient, the symptom inbox with local decision support, prescribing
//! and appointment slots.
//!
//! Everything medical is decrypted here, in the portal, through the client SDK; an audited
//! read (a symptom report) happens only on a POST ("Open"), and what it decrypted stays in
//! the session's memory so reloading the page does not read (and audit) it again.

use crate::{
    Portal,
    web::{PageError, User, render, url_escape},
};
use askama::Template;
use axum::{
    Form, Router,
    extract::{Multipart, Path, Query},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use ehrchain_api::{AccountView, GrantView, now_ms};
use ehrchain_client::{
    Session, clinical, consent,
    predict::{self, Suggestion},
    records,
    schemas::{RxContent, SymptomReport},
};
use ehrchain_types::{
    AccountId, Category, Grantee, ItemId, ItemKind, RecordId, Role, TxPayload,
    entries::{RecordStatus, RequestStatus},
    items::{Prescription, Report, Slot, SlotStatus},
};
use serde::Deserialize;
use std::{collections::BTreeMap, io::Write, sync::Arc};

pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/doctor", get(dashboard))
        .route("/doctor/patients", get(patients))
        .route("/doctor/patients/{id}", get(chart))
        .route("/doctor/patients/{id}/note", post(write_note))
        .route("/doctor/request", get(request_page).post(request_access))
        .route("/doctor/symptoms", get(inbox))
        .route("/doctor/symptoms/{id}", get(report_page))
        .route("/doctor/symptoms/{id}/open", post(open_report))
        .route("/doctor/prescribe", get(prescribe_page).post(prescribe))
        .route("/doctor/slots", get(slots_page).post(add_slot))
        .route("/doctor/slots/{id}/{action}", post(slot_action))
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the professionals' modules (pharmacy, insurance, admin use them too).

/// Parses an account id typed into a form.
pub(crate) fn parse_account(s: &str, what: &str) -> Result<AccountId, PageError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(PageError::BadRequest(format!(
            "{what}: give an account id (ehr…)."
        )));
    }
    t.parse()
        .map_err(|e| PageError::BadRequest(format!("{what}: {t:?} is not an account id ({e}).")))
}

/// Parses an item id of one kind (from a path or a form).
pub(crate) fn parse_item(s: &str, kind: ItemKind) -> Result<ItemId, PageError> {
    ItemId::parse_kind(s.trim(), kind)
        .map_err(|e| PageError::NotFound(format!("{s:?} is not {} id ({e}).", kind.with_article())))
}

/// A whole number typed into a form.
pub(crate) fn parse_number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, PageError> {
    s.trim().parse().map_err(|_| {
        PageError::BadRequest(format!("{what}: {:?} is not a whole number.", s.trim()))
    })
}

/// A short form of an id for tables.
pub(crate) fn short(s: &impl ToString) -> String {
    crate::templates::short(&s.to_string())
}

/// A time for tables.
pub(crate) fn when(ms: u64) -> String {
    crate::templates::when(&ms)
}

/// Every account of `role` (and `status`, if given), as the node lists them.
pub(crate) fn accounts(
    s: &Session,
    role: Option<Role>,
    status: Option<&str>,
) -> ehrchain_client::Result<Vec<AccountView>> {
    let mut q = Vec::new();
    if let Some(r) = role {
        q.push(format!("role={r}"));
    }
    if let Some(st) = status {
        q.push(format!("status={st}"));
    }
    s.get_all(
        &format!("/api/v1/accounts?{}", q.join("&")),
        "after",
        |a: &AccountView| a.id.to_string(),
    )
}

/// The plaintext a previous audited read of `record` decrypted in this session.
pub(crate) fn cached(user: &User, record: &RecordId) -> Option<Vec<u8>> {
    user.me
        .plaintext
        .lock()
        .ok()?
        .get(record)
        .map(|b| b.as_slice().to_vec())
}

/// Keeps a decrypted small record in the session (zeroized when the session ends).
pub(crate) fn keep(user: &User, record: RecordId, bytes: Vec<u8>) {
    if let Ok(mut m) = user.me.plaintext.lock() {
        m.insert(record, Arc::new(zeroize::Zeroizing::new(bytes)));
    }
}

/// Categories from a form: repeated `categories` fields (a multiple select) and/or
/// comma-separated names.
pub(crate) fn form_categories(pairs: &[(String, String)]) -> Result<Vec<Category>, PageError> {
    let joined = pairs
        .iter()
        .filter(|(k, _)| k == "categories")
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(",");
    if joined.trim().is_empty() {
        return Err(PageError::BadRequest(
            "Choose at least one category.".into(),
        ));
    }
    Category::parse_list(&joined).map_err(|e| PageError::BadRequest(format!("{e}.")))
}

/// A form's first value of `key` (empty if absent).
pub(crate) fn field<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// Start of a slot typed into a `datetime-local` input (`2026-12-01T09:30`, read as UTC).
pub(crate) fn parse_start(s: &str) -> Result<u64, PageError> {
    let t = s.trim().trim_end_matches('Z');
    let full = if t.len() == 16 {
        format!("{t}:00Z")
    } else {
        format!("{t}Z")
    };
    let at = humantime::parse_rfc3339_weak(&full).map_err(|_| {
        PageError::BadRequest(format!(
            "Starts at: {:?} is not a date and time (e.g. 2026-12-01T09:30).",
            s.trim()
        ))
    })?;
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| PageError::BadRequest("Starts at: before 1970.".into()))
}

/// What the doctor may do with one of their slots now (the ledger's rules: a doctor
/// withdraws an open slot any time and a booked one before it starts; confirms or declines a
/// request; completes a confirmed appointment once it started).
pub(crate) fn slot_actions(slot: &Slot, now: u64) -> Vec<&'static str> {
    let started = now >= slot.start_ms;
    let mut out = Vec::new();
    match slot.status {
        SlotStatus::Open => out.push("withdraw"),
        SlotStatus::Requested => {
            out.extend(["confirm", "decline"]);
            if !started {
                out.push("withdraw");
            }
        }
        SlotStatus::Confirmed => {
            if started {
                out.push("complete");
            } else {
                out.push("withdraw");
            }
        }
        SlotStatus::Completed | SlotStatus::Withdrawn => {}
    }
    out
}

/// A grant to me (or my organisation) from one patient.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    pub patient: AccountId,
    pub grants: Vec<GrantView>,
}

impl Access {
    pub fn categories(&self) -> String {
        let mut c: Vec<Category> = self
            .grants
            .iter()
            .filter(|g| !g.expired)
            .flat_map(|g| g.grant.categories.iter().copied())
            .collect();
        c.sort();
        c.dedup();
        if c.is_empty() {
            "none in force".into()
        } else {
            crate::templates::category_list(&c)
        }
    }
    pub fn write(&self) -> bool {
        self.grants.iter().any(|g| !g.expired && g.grant.write)
    }
    pub fn in_force(&self) -> bool {
        self.grants.iter().any(|g| !g.expired)
    }
    pub fn expires(&self) -> String {
        let e: Vec<Option<u64>> = self
            .grants
            .iter()
            .filter(|g| !g.expired)
            .map(|g| g.grant.expires_ms)
            .collect();
        if e.is_empty() {
            return "expired".into();
        }
        if e.iter().any(Option::is_none) {
            return "no expiry".into();
        }
        e.iter()
            .flatten()
            .max()
            .map_or("-".into(), |m| format!("until {}", when(*m)))
    }
    pub fn via(&self) -> String {
        self.grants
            .iter()
            .map(|g| match &g.grantee {
                Grantee::Account(_) => "you".to_string(),
                Grantee::Organisation(o) => format!("your organisation {o}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The patients who granted access to me or my organisation. The API lists grants per
/// patient (only those to the asker or its organisation), so every patient account is asked.
fn my_patients(s: &Session) -> ehrchain_client::Result<Vec<Access>> {
    let patients = accounts(s, Some(Role::Patient), None)?;
    let mut out = Vec::new();
    for p in patients {
        let grants: Vec<GrantView> = s.get_all(
            &format!("/api/v1/grants?patient={}", p.id),
            "after",
            |g: &GrantView| g.grantee.to_string(),
        )?;
        if !grants.is_empty() {
            out.push(Access {
                patient: p.id,
                grants,
            });
        }
    }
    out.sort_by_key(|a| !a.in_force());
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Dashboard.

struct SlotRow {
    id: String,
    start: String,
    minutes: u32,
    fee: u64,
    status: &'static str,
    patient: Option<String>,
    actions: Vec<&'static str>,
}

fn slot_row(x: &Slot, now: u64) -> SlotRow {
    SlotRow {
        id: x.id.to_string(),
        start: when(x.start_ms),
        minutes: x.minutes,
        fee: x.fee,
        status: x.status.name(),
        patient: x.patient.map(|p| p.to_string()),
        actions: slot_actions(x, now),
    }
}

struct ReportRow {
    id: String,
    patient: String,
    time: String,
    opened: bool,
}

#[derive(Template)]
#[template(path = "doctor/dashboard.html")]
struct DashboardTpl {
    ctx: crate::web::Ctx,
    patients: Vec<Access>,
    reports: Vec<ReportRow>,
    to_confirm: Vec<SlotRow>,
    today: Vec<SlotRow>,
    open_requests: usize,
    organisation: Option<String>,
    emergency: crate::emergency::Counts,
}

impl DashboardTpl {
    fn short(&self, s: &str) -> String {
        short(&s)
    }
    fn label(&self, action: &str) -> &'static str {
        action_label(action)
    }
}

async fn dashboard(user: User) -> Result<Response, PageError> {
    user.require(&[Role::Doctor])?;
    let (patients, reports, slots, open_requests, me, emergency) = user
        .call(|s| {
            let patients = my_patients(s)?;
            let mut reports: Vec<Report> = clinical::items(s)?;
            reports.retain(|r| r.doctor == s.me);
            reports.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
            let mut slots: Vec<Slot> = clinical::items(s)?;
            slots.retain(|x| x.doctor == s.me);
            slots.sort_by_key(|x| x.start_ms);
            let open = consent::requests(s)?
                .iter()
                .filter(|r| r.request.requester == s.me && r.request.status == RequestStatus::Open)
                .count();
            let me = s.account(&s.me)?;
            let emergency = crate::emergency::counts(s)?;
            Ok((patients, reports, slots, open, me, emergency))
        })
        .await?;
    let now = now_ms();
    let day = 86_400_000;
    let today_start = now - now % day;
    let reports = reports
        .iter()
        .map(|r| ReportRow {
            id: r.id.to_string(),
            patient: r.patient.to_string(),
            time: when(r.created_ms),
            opened: cached(&user, &r.record).is_some(),
        })
        .collect();
    Ok(render(DashboardTpl {
        ctx: user.ctx(),
        patients,
        reports,
        to_confirm: slots
            .iter()
            .filter(|x| x.status == SlotStatus::Requested)
            .map(|x| slot_row(x, now))
            .collect(),
        today: slots
            .iter()
            .filter(|x| x.start_ms >= today_start && x.start_ms < today_start + day)
            .map(|x| slot_row(x, now))
            .collect(),
        open_requests,
        organisation: me.account.organisation,
        emergency,
    }))
}

// ---------------------------------------------------------------------------------------
// Patients and access requests.

struct RequestRow {
    patient: String,
    categories: String,
    write: bool,
    status: &'static str,
    time: String,
}

#[derive(Template)]
#[template(path = "doctor/patients.html")]
struct PatientsTpl {
    ctx: crate::web::Ctx,
    patients: Vec<Access>,
    requests: Vec<RequestRow>,
    categories: Vec<&'static str>,
    patient: String,
}

fn request_rows(
    s: &Session,
    patient: Option<&AccountId>,
) -> ehrchain_client::Result<Vec<RequestRow>> {
    let mut reqs: Vec<_> = consent::requests(s)?
        .into_iter()
        .filter(|r| r.request.requester == s.me)
        .filter(|r| patient.is_none_or(|p| r.request.patient == *p))
        .collect();
    reqs.sort_by_key(|r| std::cmp::Reverse(r.request.created_ms));
    Ok(reqs
        .iter()
        .map(|r| RequestRow {
            patient: r.request.patient.to_string(),
            categories: crate::templates::category_list(&r.request.categories),
            write: r.request.write,
            status: match r.request.status {
                RequestStatus::Open => "waiting",
                RequestStatus::Approved => "approved",
                RequestStatus::Denied => "denied",
            },
            time: when(r.request.created_ms),
        })
        .collect())
}

#[derive(Deserialize)]
struct PatientQuery {
    patient: Option<String>,
}

async fn patients(user: User, Query(q): Query<PatientQuery>) -> Result<Response, PageError> {
    user.require(&[Role::Doctor])?;
    let (patients, requests) = user
        .call(|s| Ok((my_patients(s)?, request_rows(s, None)?)))
        .await?;
    Ok(render(PatientsTpl {
        ctx: user.ctx(),
        patients,
        requests,
        categories: Category::NAMES.to_vec(),
        patient: q.patient.unwrap_or_default(),
    }))
}

async fn request_page(user: User, Query(q): Query<PatientQuery>) -> Response {
    let to = match q.patient {
        Some(p) => format!("/doctor/patients?patient={}#request", url_escape(&p)),
        None => "/doctor/patients#request".into(),
    };
    let _ = user;
    Redirect::to(&to).into_response()
}

async fn request_access(user: User, Form(f): Form<Vec<(String, String)>>) -> Response {
    let back = match field(&f, "back") {
        b if b.starts_with("/doctor/") => b.to_string(),
        _ => "/doctor/patients".to_string(),
    };
    let r = async {
        user.require(&[Role::Doctor])?;
        let patient = parse_account(field(&f, "patient"), "Patient")?;
        let cats = form_categories(&f)?;
        let reason = field(&f, "reason").trim().to_string();
        if reason.is_empty() {
            return Err(PageError::BadRequest(
                "Give a reason: the patient reads it (it is sealed to them).".into(),
            ));
        }
        let write = matches!(field(&f, "write"), "on" | "true" | "1" | "yes");
        user.call(move |s| consent::request(s, &patient, &cats, write, &reason))
            .await
            .map(|(id, _)| (id, patient))
    }
    .await;
    user.done(
        r,
        |(id, p)| {
            format!("Access requested from {p} (request {id}); it waits in the patient's inbox.")
        },
        &back,
    )
}

// ---------------------------------------------------------------------------------------
// A patient's chart.

struct RecordRow {
    id: String,
    title: String,
    status: RecordStatus,
    author: String,
    by_me: bool,
    time: String,
    size: String,
}

struct CategoryGroup {
    category: &'static str,
    records: Vec<RecordRow>,
}

#[derive(Template)]
#[template(path = "doctor/chart.html")]
struct ChartTpl {
    ctx: crate::web::Ctx,
    patient: String,
    role: String,
    access: Option<Access>,
    groups: Vec<CategoryGroup>,
    requests: Vec<RequestRow>,
    categories: Vec<&'static str>,
    emergency: crate::emergency::ChartPart,
}

impl ChartTpl {
    fn status_class(&self, s: &RecordStatus) -> &'static str {
        match s {
            RecordStatus::Active => "badge ok",
            RecordStatus::Pending => "badge warn",
            RecordStatus::Rejected => "badge bad",
        }
    }
    fn status_word(&self, s: &RecordStatus) -> &'static str {
        match s {
            RecordStatus::Active => "in the chart",
            RecordStatus::Pending => "waiting for the patient",
            RecordStatus::Rejected => "rejected by the patient",
        }
    }
}

/// Records grouped by category, in the categories' order, newest first in each.
fn group(list: Vec<records::Listed>, me: &AccountId) -> Vec<CategoryGroup> {
    let mut by: BTreeMap<Category, Vec<records::Listed>> = BTreeMap::new();
    for r in list {
        by.entry(r.category).or_default().push(r);
    }
    by.into_iter()
        .map(|(c, mut rs)| {
            rs.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
            CategoryGroup {
                category: c.name(),
                records: rs
                    .into_iter()
                    .map(|r| RecordRow {
                        id: r.id.to_string(),
                        title: r
                            .title
                            .as_deref()
                            .or(r.file_name.as_deref())
                            .map_or_else(|| "(untitled)".into(), crate::templates::plain),
                        status: r.status,
                        author: r.author.to_string(),
                        by_me: r.author == *me,
                        time: when(r.created_ms),
                        size: r.plaintext_size.map_or_else(
                            || crate::templates::bytes(&r.size),
                            |n| crate::templates::bytes(&n),
                        ),
                    })
                    .collect(),
            }
        })
        .collect()
}

async fn chart(user: User, Path(id): Path<String>) -> Result<Response, PageError> {
    user.require(&[Role::Doctor])?;
    let patient = parse_account(&id, "Patient").map_err(|e| PageError::NotFound(e.message()))?;
    let (view, grants, list, requests, emergency, me) = user
        .call(move |s| {
            let view = s.account(&patient)?;
            let grants: Vec<GrantView> = s.get_all(
                &format!("/api/v1/grants?patient={patient}"),
                "after",
                |g: &GrantView| g.grantee.to_string(),
            )?;
            let list = records::list_records(s, &patient)?;
            let requests = request_rows(s, Some(&patient))?;
            let emergency = crate::emergency::chart_part(s, &patient)?;
            Ok((view, grants, list, requests, emergency, s.me))
        })
        .await?;
    if !view.exists || view.account.role != Some(Role::Patient) {
        return Err(PageError::NotFound(format!(
            "{patient} is not a registered patient."
        )));
    }
    Ok(render(ChartTpl {
        ctx: user.ctx(),
        patient: patient.to_string(),
        role: view
            .account
            .role
            .map_or("unregistered".into(), |r| r.to_string()),
        access: (!grants.is_empty()).then_some(Access { patient, grants }),
        groups: group(list, &me),
        requests,
        categories: Category::NAMES.to_vec(),
        emergency,
    }))
}

/// A note or file the doctor writes for a patient, as the multipart form sent it.
#[derive(Default)]
struct NoteForm {
    title: String,
    note: String,
    category: String,
    file: Option<(std::fs::File, Option<String>, u64)>,
}

async fn read_note_form(mut mp: Multipart) -> Result<NoteForm, PageError> {
    let mut f = NoteForm::default();
    let bad = |e: axum::extract::multipart::MultipartError| {
        PageError::BadRequest(format!("The form could not be read ({}).", e.body_text()))
    };
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" => {
                let file_name = field
                    .file_name()
                    .filter(|n| !n.trim().is_empty())
                    .map(crate::patient::records::safe_file_name);
                let mut tmp = tempfile::tempfile().map_err(|_| PageError::Internal)?;
                let mut n = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    n += chunk.len() as u64;
                    tmp.write_all(&chunk).map_err(|_| PageError::Internal)?;
                }
                if n > 0 {
                    f.file = Some((tmp, file_name, n));
                }
            }
            "title" | "note" | "category" => {
                let v = field.text().await.map_err(bad)?;
                match name.as_str() {
                    "title" => f.title = v,
                    "note" => f.note = v,
                    _ => f.category = v,
                }
            }
            _ => {
                let _ = field.bytes().await.map_err(bad)?;
            }
        }
    }
    Ok(f)
}

async fn write_note(user: User, Path(id): Path<String>, mp: Multipart) -> Response {
    let back = format!("/doctor/patients/{}", url_escape(id.trim()));
    let r = async {
        user.require(&[Role::Doctor])?;
        let patient = parse_account(&id, "Patient")?;
        let f = read_note_form(mp).await?;
        let category: Category = if f.category.trim().is_empty() {
            Category::Notes
        } else {
            f.category
                .parse()
                .map_err(|e| PageError::BadRequest(format!("Category: {e}.")))?
        };
        let Some(title) = crate::patient::records::clean_title(&f.title)? else {
            return Err(PageError::BadRequest("Give the note a title.".into()));
        };
        let note = f.note.trim().to_string();
        if note.is_empty() && f.file.is_none() {
            return Err(PageError::BadRequest(
                "Write a note or choose a file.".into(),
            ));
        }
        user.call(move |s| {
            let mut written = Vec::new();
            if !note.is_empty() {
                let a = records::add_record_from(
                    s,
                    &patient,
                    category,
                    std::io::Cursor::new(zeroize::Zeroizing::new(note.into_bytes()).to_vec()),
                    Some(title.clone()),
                    Some("note.txt".into()),
                    false,
                )?;
                written.push(a.record);
            }
            if let Some((mut file, name, _)) = f.file {
                use std::io::Seek;
                file.seek(std::io::SeekFrom::Start(0))
                    .map_err(|e| ehrchain_client::Error::io("cannot read the upload", e))?;
                let a = records::add_record_from(
                    s,
                    &patient,
                    category,
                    file,
                    Some(title),
                    name,
                    false,
                )?;
                written.push(a.record);
            }
            Ok(written)
        })
        .await
    }
    .await;
    user.done(
        r,
        |w| {
            format!(
                "Written for the patient ({}): encrypted here and waiting for the patient's approval to enter the chart.",
                w.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
            )
        },
        &back,
    )
}

// ---------------------------------------------------------------------------------------
// Symptom reports and decision support.

#[derive(Template)]
#[template(path = "doctor/symptoms.html")]
struct InboxTpl {
    ctx: crate::web::Ctx,
    reports: Vec<ReportRow>,
}

impl InboxTpl {
    fn short(&self, s: &str) -> String {
        short(&s)
    }
}

async fn inbox(user: User) -> Result<Response, PageError> {
    user.require(&[Role::Doctor])?;
    let mut reports: Vec<Report> = user
        .call(|s| {
            let mut r: Vec<Report> = clinical::items(s)?;
            r.retain(|r| r.doctor == s.me);
            Ok(r)
        })
        .await?;
    reports.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
    Ok(render(InboxTpl {
        ctx: user.ctx(),
        reports: reports
            .iter()
            .map(|r| ReportRow {
                id: r.id.to_string(),
                patient: r.patient.to_string(),
                time: when(r.created_ms),
                opened: cached(&user, &r.record).is_some(),
            })
            .collect(),
    }))
}

/// What the report page shows once the report was opened.
struct Opened {
    content: SymptomReport,
    suggestion: Option<Suggestion>,
    unknown: Vec<String>,
}

#[derive(Template)]
#[template(path = "doctor/report.html")]
struct ReportTpl {
    ctx: crate::web::Ctx,
    id: String,
    patient: String,
    time: String,
    opened: Option<Opened>,
    model: predict::Prediction,
}

impl ReportTpl {
    fn pct(&self, p: &f64) -> String {
        format!("{:.1} %", p * 100.0)
    }
    fn when(&self, ms: &u64) -> String {
        when(*ms)
    }
    fn prescribe_link(&self, drug: &str) -> String {
        format!(
            "/doctor/prescribe?patient={}&report={}&drug={}",
            url_escape(&self.patient),
            url_escape(&self.id),
            url_escape(drug)
        )
    }
}

/// The built-in model's figures, for the page even before a report is opened (a trivial
/// prediction: only its `model` part is shown).
fn model_card() -> Option<predict::Prediction> {
    let m = predict::Model::builtin();
    let first = m.symptoms.first()?.clone();
    m.predict(&[first], 1).ok()
}

async fn report_page(user: User, Path(id): Path<String>) -> Result<Response, PageError> {
    user.require(&[Role::Doctor])?;
    let rid = parse_item(&id, ItemKind::Report)?;
    let report: Report = user.call(move |s| clinical::item(s, &rid)).await?;
    if report.doctor != user.me.account() {
        return Err(PageError::Forbidden(
            "This symptom report was sent to another doctor.".into(),
        ));
    }
    let plain = cached(&user, &report.record);
    let (opened, model) = tokio::task::spawn_blocking(move || {
        let opened = match plain {
            Some(bytes) => {
                let content: SymptomReport = serde_json::from_slice(&bytes).map_err(|_| {
                    PageError::BadRequest("The report's record is not a symptom report.".into())
                })?;
                let (suggestion, unknown) = predict::suggest(&content.symptoms, 3);
                Some(Opened {
                    content,
                    suggestion,
                    unknown,
                })
            }
            None => None,
        };
        Ok::<_, PageError>((opened, model_card()))
    })
    .await
    .map_err(|_| PageError::Internal)??;
    let Some(model) = model else {
        return Err(PageError::Internal);
    };
    Ok(render(ReportTpl {
        ctx: user.ctx(),
        id: report.id.to_string(),
        patient: report.patient.to_string(),
        time: when(report.created_ms),
        opened,
        model,
    }))
}

async fn open_report(user: User, Path(id): Path<String>) -> Response {
    let back = format!("/doctor/symptoms/{}", url_escape(id.trim()));
    let r = async {
        user.require(&[Role::Doctor])?;
        let rid = parse_item(&id, ItemKind::Report)?;
        let (record, bytes) = user
            .call(move |s| {
                let report: Report = clinical::item(s, &rid)?;
                let bytes = records::read_bytes(s, &report.record, None)?;
                Ok((report.record, bytes))
            })
            .await?;
        keep(&user, record, bytes);
        Ok(())
    }
    .await;
    user.done(
        r,
        |_| "Opened: the read is recorded in the patient's audit trail.".into(),
        &back,
    )
}

// ---------------------------------------------------------------------------------------
// Prescribing.

struct Pharmacy {
    id: String,
    label: String,
}

struct RxRow {
    id: String,
    patient: String,
    pharmacy: String,
    status: &'static str,
    time: String,
    invoice: Option<String>,
}

#[derive(Template)]
#[template(path = "doctor/prescribe.html")]
struct PrescribeTpl {
    ctx: crate::web::Ctx,
    form: PrescribeForm,
    /// Patients who granted me access, offered in the Patient field.
    patients: Vec<String>,
    pharmacies: Vec<Pharmacy>,
    written: Vec<RxRow>,
}

#[derive(Deserialize, Default, Clone)]
struct PrescribeForm {
    #[serde(default)]
    patient: String,
    #[serde(default)]
    report: String,
    #[serde(default)]
    drug: String,
    #[serde(default)]
    dose: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    pharmacy: String,
}

impl PrescribeForm {
    /// The prescription's content, checked.
    fn content(
        &self,
        prescriber: AccountId,
        now: u64,
    ) -> Result<(AccountId, RxContent, Option<AccountId>), PageError> {
        let patient = parse_account(&self.patient, "Patient")?;
        let drug = self.drug.trim();
        let dose = self.dose.trim();
        if drug.is_empty() || dose.is_empty() {
            return Err(PageError::BadRequest("Give the drug and its dose.".into()));
        }
        let days: u32 = parse_number(&self.days, "Days")?;
        let quantity: u32 = parse_number(&self.quantity, "Quantity")?;
        if days == 0 || quantity == 0 {
            return Err(PageError::BadRequest(
                "The days and the quantity must be positive.".into(),
            ));
        }
        let pharmacy = match self.pharmacy.trim() {
            "" => None,
            p => Some(parse_account(p, "Pharmacy")?),
        };
        let note = Some(self.note.trim().to_string()).filter(|n| !n.is_empty());
        Ok((
            patient,
            RxContent {
                drug: drug.into(),
                dose: dose.into(),
                days,
                quantity,
                note,
                prescriber,
                written_ms: now,
            },
            pharmacy,
        ))
    }

    /// The form's values as a query, to draw it again after a refusal.
    fn query(&self) -> String {
        [
            ("patient", &self.patient),
            ("report", &self.report),
            ("drug", &self.drug),
            ("dose", &self.dose),
            ("days", &self.days),
            ("quantity", &self.quantity),
            ("note", &self.note),
            ("pharmacy", &self.pharmacy),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", url_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

impl PrescribeTpl {
    fn short(&self, s: &str) -> String {
        short(&s)
    }
}

async fn prescribe_page(
    user: User,
    Query(form): Query<PrescribeForm>,
) -> Result<Response, PageError> {
    user.require(&[Role::Doctor])?;
    let (pharmacies, mut written, patients) = user
        .call(|s| {
            let ph = accounts(s, Some(Role::Pharmacist), Some("active"))?;
            let mut rx: Vec<Prescription> = clinical::items(s)?;
            rx.retain(|r| r.doctor == s.me);
            let patients = my_patients(s)?
                .into_iter()
                .filter(|a| a.in_force())
                .map(|a| a.patient.to_string())
                .collect();
            Ok((ph, rx, patients))
        })
        .await?;
    written.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
    Ok(render(PrescribeTpl {
        ctx: user.ctx(),
        pharmacies: pharmacies
            .iter()
            .map(|a| Pharmacy {
                id: a.id.to_string(),
                label: format!(
                    "{} — {}",
                    a.account.organisation.as_deref().unwrap_or("pharmacy"),
                    short(&a.id)
                ),
            })
            .collect(),
        written: written
            .iter()
            .map(|r| RxRow {
                id: r.id.to_string(),
                patient: r.patient.to_string(),
                pharmacy: r
                    .pharmacy
                    .map_or("— (the patient directs it)".into(), |p| short(&p)),
                status: r.status.name(),
                time: when(r.created_ms),
                invoice: r.invoice.map(|i| i.to_string()),
            })
            .collect(),
        form,
        patients,
    }))
}

async fn prescribe(user: User, Form(form): Form<PrescribeForm>) -> Response {
    let r = async {
        user.require(&[Role::Doctor])?;
        let (patient, content, pharmacy) = form.content(user.me.account(), now_ms())?;
        let drug = content.drug.clone();
        user.call(move |s| clinical::prescribe(s, &patient, &content, pharmacy.as_ref()))
            .await
            .map(|p| (p, patient, drug, pharmacy))
    }
    .await;
    match r {
        Ok((p, patient, drug, pharmacy)) => user.done(
            Ok(()),
            |_| {
                format!(
                    "Prescribed {drug}: prescription {} (an encrypted medication record waiting for the patient's approval){}.",
                    p.id,
                    pharmacy.map_or(
                        ", not directed to a pharmacy: the patient directs it".into(),
                        |ph| format!(", directed to pharmacy {ph}")
                    )
                )
            },
            &format!("/doctor/patients/{patient}"),
        ),
        Err(e) => user.done(
            Err::<(), _>(e),
            |_| String::new(),
            &format!("/doctor/prescribe?{}", form.query()),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Appointment slots.

#[derive(Template)]
#[template(path = "doctor/slots.html")]
struct SlotsTpl {
    ctx: crate::web::Ctx,
    slots: Vec<SlotRow>,
}

impl SlotsTpl {
    fn short(&self, s: &str) -> String {
        short(&s)
    }
    fn label(&self, action: &str) -> &'static str {
        action_label(action)
    }
}

pub(crate) fn action_label(action: &str) -> &'static str {
    match action {
        "confirm" => "Confirm",
        "decline" => "Decline",
        "complete" => "Complete",
        "withdraw" => "Withdraw",
        _ => "?",
    }
}

async fn slots_page(user: User) -> Result<Response, PageError> {
    user.require(&[Role::Doctor])?;
    let mut slots: Vec<Slot> = user
        .call(|s| {
            let mut x: Vec<Slot> = clinical::items(s)?;
            x.retain(|x| x.doctor == s.me);
            Ok(x)
        })
        .await?;
    slots.sort_by_key(|x| std::cmp::Reverse(x.start_ms));
    let now = now_ms();
    Ok(render(SlotsTpl {
        ctx: user.ctx(),
        slots: slots.iter().map(|x| slot_row(x, now)).collect(),
    }))
}

#[derive(Deserialize)]
struct SlotForm {
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    minutes: String,
    #[serde(default)]
    fee: String,
}

async fn add_slot(user: User, Form(f): Form<SlotForm>) -> Response {
    let r = async {
        user.require(&[Role::Doctor])?;
        let start_ms = parse_start(&f.starts_at)?;
        let minutes: u32 = if f.minutes.trim().is_empty() {
            30
        } else {
            parse_number(&f.minutes, "Minutes")?
        };
        let fee: u64 = parse_number(&f.fee, "Fee")?;
        if start_ms <= now_ms() {
            return Err(PageError::BadRequest(
                "Starts at: choose a time in the future (times are UTC).".into(),
            ));
        }
        user.call(move |s| {
            s.submit_one(TxPayload::AddSlot {
                start_ms,
                minutes,
                fee,
            })
        })
        .await
        .map(|t| (clinical::created(ItemKind::Slot, &t), start_ms, fee))
    }
    .await;
    user.done(
        r,
        |(id, start, fee)| format!("Published slot {id} at {} for {fee} tokens.", when(start)),
        "/doctor/slots",
    )
}

async fn slot_action(user: User, Path((id, action)): Path<(String, String)>) -> Response {
    let r = async {
        user.require(&[Role::Doctor])?;
        let slot = parse_item(&id, ItemKind::Slot)?;
        let (payload, what) = match action.as_str() {
            "confirm" => (
                TxPayload::AnswerBooking {
                    slot,
                    confirm: true,
                },
                "Confirmed",
            ),
            "decline" => (
                TxPayload::AnswerBooking {
                    slot,
                    confirm: false,
                },
                "Declined (the fee went back to the patient)",
            ),
            "complete" => (
                TxPayload::CompleteAppointment { slot },
                "Completed (the fee was paid to you from escrow)",
            ),
            "withdraw" => (
                TxPayload::CancelBooking { slot },
                "Withdrawn (any fee went back to the patient)",
            ),
            _ => return Err(PageError::NotFound("No such action on a slot.".into())),
        };
        user.call(move |s| s.submit_one(payload)).await?;
        Ok(format!("{what}: {slot}."))
    }
    .await;
    let back = "/doctor/slots";
    user.done(r, |m| m, back)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datetime_local_value_is_read_as_utc() {
        assert_eq!(parse_start("1970-01-01T00:01").unwrap(), 60_000);
        assert_eq!(parse_start("2026-12-01T09:30").unwrap(), 1_796_117_400_000);
        assert_eq!(
            parse_start("2026-12-01T09:30:15").unwrap(),
            1_796_117_415_000
        );
        assert!(parse_start("tomorrow").is_err());
        assert!(parse_start("").is_err());
    }

    fn slot(status: SlotStatus, start_ms: u64) -> Slot {
        Slot {
            id: ItemId::derive(ItemKind::Slot, &ehrchain_types::Hash([1; 32])),
            doctor: AccountId([2; 20]),
            start_ms,
            minutes: 30,
            fee: 10,
            status,
            patient: None,
            booked_ms: None,
        }
    }

    #[test]
    fn slot_actions_follow_the_ledger_rules() {
        assert_eq!(slot_actions(&slot(SlotStatus::Open, 100), 50), ["withdraw"]);
        assert_eq!(
            slot_actions(&slot(SlotStatus::Requested, 100), 50),
            ["confirm", "decline", "withdraw"]
        );
        assert_eq!(
            slot_actions(&slot(SlotStatus::Requested, 100), 150),
            ["confirm", "decline"]
        );
        assert_eq!(
            slot_actions(&slot(SlotStatus::Confirmed, 100), 50),
            ["withdraw"]
        );
        assert_eq!(
            slot_actions(&slot(SlotStatus::Confirmed, 100), 100),
            ["complete"]
        );
        assert!(slot_actions(&slot(SlotStatus::Completed, 100), 150).is_empty());
        assert!(slot_actions(&slot(SlotStatus::Withdrawn, 100), 50).is_empty());
    }

    #[test]
    fn categories_come_from_a_multiple_select_or_a_list() {
        let f = |v: &[(&str, &str)]| {
            form_categories(
                &v.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            f(&[
                ("categories", "notes"),
                ("categories", "lab"),
                ("csrf", "x")
            ])
            .unwrap(),
            vec![Category::Lab, Category::Notes]
        );
        assert_eq!(
            f(&[("categories", "notes, vitals")]).unwrap(),
            vec![Category::Vitals, Category::Notes]
        );
        assert!(f(&[("categories", "")]).is_err());
        assert!(f(&[("categories", "gossip")]).is_err());
        assert!(f(&[]).is_err());
    }

    #[test]
    fn a_prescription_form_is_checked_before_anything_is_sent() {
        let me = AccountId([3; 20]);
        let patient = AccountId([4; 20]);
        let mut f = PrescribeForm {
            patient: patient.to_string(),
            drug: "Amoxicillin".into(),
            dose: "500 mg".into(),
            days: "7".into(),
            quantity: "21".into(),
            ..Default::default()
        };
        let (p, c, ph) = f.content(me, 5).unwrap();
        assert_eq!(p, patient);
        assert_eq!((c.days, c.quantity, c.note, ph), (7, 21, None, None));
        assert_eq!(c.prescriber, me);
        f.days = "0".into();
        assert!(f.content(me, 5).is_err());
        f.days = "seven".into();
        assert!(f.content(me, 5).is_err());
        f.days = "7".into();
        f.patient = "bob".into();
        assert!(f.content(me, 5).is_err());
        assert!(f.query().contains("drug=Amoxicillin"));
        assert!(!f.query().contains("pharmacy="));
    }
}
