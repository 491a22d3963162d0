//! Records: the patient's list and upload, review of records others wrote, and the record page
//! any role may open (the audited read answered as a download).

use super::{Names, PageQuery, page_bounds, patient, when};
use crate::{
    Portal,
    templates::bytes,
    web::{Ctx, FlashKind, PageError, User, render},
};
use askama::Template;
use axum::{
    Form,
    extract::{Multipart, Path, Query, State},
    http::header,
    response::{IntoResponse, Redirect, Response},
};
use ehrchain_client::{
    api::RecordView,
    records::{self, Listed},
};
use ehrchain_types::{
    Category, Decision, RecordId, Role, entries::RecordStatus, items::Prescription,
};
use serde::Deserialize;
use std::{io::Write, sync::Arc};
use zeroize::Zeroizing;

/// Rows a page of the records table shows.
pub const PER_PAGE: usize = 50;
/// Longest title accepted (it travels in the fixed-length sealed metadata).
pub const MAX_TITLE: usize = 200;

pub(crate) fn status_word(s: RecordStatus) -> &'static str {
    match s {
        RecordStatus::Pending => "pending",
        RecordStatus::Active => "active",
        RecordStatus::Rejected => "rejected",
    }
}

fn status_class(s: RecordStatus) -> &'static str {
    match s {
        RecordStatus::Pending => "badge warn",
        RecordStatus::Active => "badge ok",
        RecordStatus::Rejected => "badge bad",
    }
}

/// One row of a records table.
pub struct Row {
    pub id: String,
    pub title: String,
    pub category: &'static str,
    pub status: &'static str,
    pub status_class: &'static str,
    pub date: String,
    pub size: String,
    pub author: String,
}

fn row(r: &Listed, names: &Names) -> Row {
    Row {
        id: r.id.to_string(),
        title: r
            .title
            .as_deref()
            .or(r.file_name.as_deref())
            .map_or_else(|| "(title not readable)".into(), crate::templates::plain),
        category: r.category.name(),
        status: status_word(r.status),
        status_class: status_class(r.status),
        date: when(r.created_ms),
        size: bytes(&r.plaintext_size.unwrap_or(r.size)),
        author: names.of(&r.author),
    }
}

#[derive(Template)]
#[template(path = "patient/records.html")]
struct RecordsTpl {
    ctx: Ctx,
    rows: Vec<Row>,
    pending: Vec<Row>,
    total: usize,
    page: usize,
    pages: usize,
    categories: &'static [&'static str],
    max_upload: String,
}

pub(super) async fn list_page(
    State(p): State<Arc<Portal>>,
    user: User,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    patient(&user)?;
    let names = Names::local(&p);
    let (mut list, names) = user
        .call(move |s| {
            let l = records::list_records(s, &s.me)?;
            let mut names = names;
            let mut authors: Vec<_> = l.iter().map(|r| r.author).collect();
            authors.sort();
            authors.dedup();
            names.resolve(s, authors);
            Ok((l, names))
        })
        .await?;
    list.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
    let me = user.me.account();
    let pending: Vec<Row> = list
        .iter()
        .filter(|r| r.status == RecordStatus::Pending && r.author != me)
        .map(|r| row(r, &names))
        .collect();
    let (start, end, pages) = page_bounds(list.len(), q.page.unwrap_or(1), PER_PAGE);
    let page = start / PER_PAGE + 1;
    Ok(render(RecordsTpl {
        ctx: user.ctx(),
        rows: list[start..end].iter().map(|r| row(r, &names)).collect(),
        pending,
        total: list.len(),
        page,
        pages,
        categories: &Category::NAMES,
        max_upload: bytes(&p.cfg.max_upload),
    }))
}

/// A file name safe for a `Content-Disposition` header and for any file system: the last
/// path component, printable ASCII letters, digits, `.`, `-`, `_` and spaces only, at most
/// 100 characters, never empty or a dot name.
pub fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    out = out.trim().trim_start_matches('.').to_string();
    if out.is_empty() {
        out = "record".into();
    }
    out
}

/// Title and file name as the user gave them, checked.
pub(crate) fn clean_title(t: &str) -> Result<Option<String>, PageError> {
    let t = t.trim();
    if t.chars().count() > MAX_TITLE {
        return Err(PageError::BadRequest(format!(
            "The title is too long (at most {MAX_TITLE} characters)."
        )));
    }
    if t.chars().any(crate::templates::is_hidden_char) {
        return Err(PageError::BadRequest(
            "The title may not contain control characters or invisible formatting characters (such as right-to-left overrides).".into(),
        ));
    }
    Ok((!t.is_empty()).then(|| t.to_string()))
}

/// Reads the upload form: the file streamed to a temporary file (never past `max`), the
/// category and the title.
async fn read_upload(
    mut mp: Multipart,
    max: u64,
) -> Result<(std::fs::File, String, Category, Option<String>, u64), PageError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        PageError::BadRequest(format!("The upload did not arrive whole ({e})."))
    };
    let mut file: Option<(std::fs::File, String, u64)> = None;
    let mut category: Option<String> = None;
    let mut title = String::new();
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "file" => {
                let name = safe_file_name(field.file_name().unwrap_or("upload"));
                let mut tmp = tempfile::tempfile().map_err(|_| PageError::Internal)?;
                let mut n: u64 = 0;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    n += chunk.len() as u64;
                    if n > max {
                        return Err(PageError::BadRequest(format!(
                            "The file is larger than this portal accepts ({}).",
                            bytes(&max)
                        )));
                    }
                    tmp.write_all(&chunk).map_err(|_| PageError::Internal)?;
                }
                file = Some((tmp, name, n));
            }
            "category" => category = Some(field.text().await.map_err(bad)?),
            "title" => title = field.text().await.map_err(bad)?,
            _ => {}
        }
    }
    let Some((mut tmp, name, n)) = file else {
        return Err(PageError::BadRequest("Choose a file to upload.".into()));
    };
    if n == 0 {
        return Err(PageError::BadRequest("The file is empty.".into()));
    }
    let category: Category = category
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|_| PageError::BadRequest("Choose a category.".into()))?;
    let title = clean_title(&title)?;
    use std::io::Seek;
    tmp.rewind().map_err(|_| PageError::Internal)?;
    Ok((tmp, name, category, title, n))
}

pub(super) async fn upload(State(p): State<Arc<Portal>>, user: User, mp: Multipart) -> Response {
    if let Err(e) = patient(&user) {
        return e.into_response();
    }
    let r = match read_upload(mp, p.cfg.max_upload).await {
        Ok((tmp, name, category, title, _)) => {
            user.call(move |s| {
                records::add_record_from(s, &s.me, category, tmp, title, Some(name), false)
            })
            .await
        }
        Err(e) => Err(e),
    };
    user.done(
        r,
        |a| {
            format!(
                "Uploaded: record {} ({} encrypted in the portal, {} stored as ciphertext).",
                a.record,
                bytes(&a.plaintext_size),
                bytes(&a.size)
            )
        },
        "/patient/records",
    )
}

#[derive(Deserialize)]
pub(super) struct ReviewForm {
    decision: String,
}

pub(super) async fn review(
    user: User,
    Path(id): Path<String>,
    Form(f): Form<ReviewForm>,
) -> Response {
    let r = async {
        patient(&user)?;
        let id: RecordId = id
            .parse()
            .map_err(|_| PageError::BadRequest("That is not a record id.".into()))?;
        let approve = match f.decision.as_str() {
            "approve" => true,
            "reject" => false,
            _ => return Err(PageError::BadRequest("Approve or reject.".into())),
        };
        user.call(move |s| records::review(s, &id, approve))
            .await
            .map(|_| approve)
    }
    .await;
    user.done(
        r,
        |approve| {
            if approve {
                "Approved: the record is in your chart, under your key for its category.".into()
            } else {
                "Rejected: the record stays out of your chart.".into()
            }
        },
        "/patient/records",
    )
}

#[derive(Template)]
#[template(path = "records/show.html")]
struct RecordTpl {
    ctx: Ctx,
    id: String,
    /// What the ledger shows, when it shows this record to the user.
    view: Option<RecordInfo>,
    /// Why the ledger does not show it.
    hidden: Option<String>,
    back: &'static str,
}

struct RecordInfo {
    category: &'static str,
    status: &'static str,
    status_class: &'static str,
    patient: String,
    author: String,
    created: String,
    reviewed: Option<String>,
    height: u64,
    size: String,
    plaintext_size: Option<String>,
    cid: String,
    title: Option<String>,
    file_name: Option<String>,
    access: String,
    is_vitals: bool,
    patient_id: String,
}

fn parse_record(id: &str) -> Result<RecordId, PageError> {
    id.parse()
        .map_err(|_| PageError::NotFound("There is no record with that id.".into()))
}

/// The data key a pharmacist holds for a record through a prescription directed to them.
fn pharmacy_key(
    s: &ehrchain_client::Session,
    view: &RecordView,
) -> ehrchain_client::Result<Option<ehrchain_client::crypto::DataKey>> {
    let rxs: Vec<Prescription> = ehrchain_client::clinical::items(s)?;
    match rxs.iter().find(|rx| rx.record == view.record.id) {
        Some(rx) => ehrchain_client::clinical::pharmacy_key(s, rx, &view.record),
        None => Ok(None),
    }
}

pub(super) async fn record_page(
    State(p): State<Arc<Portal>>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id = parse_record(&id)?;
    let names = Names::local(&p);
    let pharmacist = user.me.role == Some(Role::Pharmacist);
    let got = user
        .call(move |s| {
            let view = match records::record(s, &id) {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            let dk = if pharmacist {
                pharmacy_key(s, &view).ok().flatten()
            } else {
                None
            };
            let dk = match dk {
                Some(k) => Some(k),
                None => records::data_key(s, &view.record).ok(),
            };
            let meta = dk.and_then(|k| records::open_meta(&k, &view.record));
            let mut names = names;
            names.resolve(s, [view.record.patient, view.record.author]);
            Ok(Ok((view, meta, names)))
        })
        .await?;
    let back = match user.me.role {
        Some(Role::Patient) => "/patient/records",
        Some(Role::Doctor) => "/doctor/patients",
        Some(Role::Pharmacist) => "/pharmacy",
        _ => "/dashboard",
    };
    let (view, hidden) = match got {
        Ok((v, meta, names)) => {
            let r = &v.record;
            (
                Some(RecordInfo {
                    category: r.category.name(),
                    status: status_word(r.status),
                    status_class: status_class(r.status),
                    patient: names.of(&r.patient),
                    author: names.of(&r.author),
                    created: when(r.created_ms),
                    reviewed: r.reviewed_ms.map(when),
                    height: r.height,
                    size: bytes(&r.size),
                    plaintext_size: meta.as_ref().map(|m| bytes(&m.plaintext_size)),
                    cid: v.cid.clone(),
                    title: meta
                        .as_ref()
                        .and_then(|m| m.title.as_deref())
                        .map(crate::templates::plain),
                    file_name: meta
                        .as_ref()
                        .and_then(|m| m.file_name.as_deref())
                        .map(crate::templates::plain),
                    access: v.access.to_string(),
                    is_vitals: r.category == Category::Vitals,
                    patient_id: r.patient.to_string(),
                }),
                None,
            )
        }
        Err(e) => {
            let msg = PageError::Sdk(e).message();
            (None, Some(msg))
        }
    };
    Ok(render(RecordTpl {
        ctx: user.ctx(),
        id: id.to_string(),
        view,
        hidden,
        back,
    }))
}

/// What an audited open produced.
enum Opened {
    File {
        name: String,
        bytes: Zeroizing<Vec<u8>>,
    },
    Denied(String),
}

pub(super) async fn open(user: User, Path(id): Path<String>) -> Response {
    let id = match parse_record(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let back = format!("/records/{id}");
    let pharmacist = user.me.role == Some(Role::Pharmacist);
    let r = user
        .call(move |s| {
            // A pharmacist reads a prescription's record with the key the prescription
            // carries; everyone else with what the ledger gives them.
            let key = if pharmacist {
                records::record(s, &id)
                    .ok()
                    .and_then(|v| pharmacy_key(s, &v).ok().flatten())
            } else {
                None
            };
            let mut buf = Zeroizing::new(Vec::new());
            let out = records::read_into(s, &id, key, &mut *buf)?;
            if out.decision == Decision::Denied {
                return Ok(Opened::Denied(format!(
                    "Access denied: {}. The denial is recorded in the patient's audit trail.",
                    out.reason
                )));
            }
            let view = records::record(s, &id)?;
            let dk = if pharmacist {
                pharmacy_key(s, &view)?
            } else {
                None
            };
            let dk = match dk {
                Some(k) => Some(k),
                None => records::data_key(s, &view.record).ok(),
            };
            let meta = dk.and_then(|k| records::open_meta(&k, &view.record));
            let name = meta
                .and_then(|m| m.file_name.or(m.title))
                .unwrap_or_else(|| format!("{id}.bin"));
            Ok(Opened::File {
                name: safe_file_name(&name),
                bytes: buf,
            })
        })
        .await;
    match r {
        Ok(Opened::File { name, bytes }) => download(&name, bytes.to_vec()),
        Ok(Opened::Denied(msg)) => {
            user.web.visit.flash(FlashKind::Error, msg);
            Redirect::to(&back).into_response()
        }
        Err(e) => {
            user.web.visit.flash(FlashKind::Error, e.message());
            Redirect::to(&back).into_response()
        }
    }
}

/// A download answer: `Content-Disposition: attachment` with a safe file name.
pub(crate) fn download(name: &str, body: Vec<u8>) -> Response {
    let name = safe_file_name(name);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{name}\"; filename*=UTF-8''{}",
                    crate::web::url_escape(&name)
                ),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(safe_file_name("scan.png"), "scan.png");
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(safe_file_name("a\"b;c\r\n.txt"), "a_b_c__.txt");
        assert_eq!(safe_file_name(""), "record");
        assert_eq!(safe_file_name(".."), "record");
        assert_eq!(safe_file_name(".hidden"), "hidden");
        assert_eq!(safe_file_name("röntgen.jpg"), "r_ntgen.jpg");
        assert_eq!(safe_file_name(&"x".repeat(300)).len(), 100);
    }

    #[test]
    fn titles_are_checked() {
        assert_eq!(clean_title("  X-ray  ").unwrap(), Some("X-ray".into()));
        assert_eq!(clean_title("").unwrap(), None);
        assert!(clean_title(&"t".repeat(MAX_TITLE + 1)).is_err());
        assert!(clean_title("a\u{7}b").is_err());
    }
}
