//! Emergency access ("break-glass", issue 17) in the portal: the patient's Guardians page
//! (name guardians, `threshold` of them together release the emergency categories; the
//! requests about them; the alert for each released access with who read what, to mark
//! reviewed or disputed; rotating keys after a release), the guardian's inbox (any role may
//! guard), the doctor's "Emergency access" request on a patient's chart and page of requests
//! ("Open" checks every guardian's share and names a wrong one), and the regulator's list of
//! disputed accesses (on `/regulator`, through [`disputes`]).
//!
//! Every secret step is the SDK's (`ehrchain_client::emergency`), run in this process: the
//! emergency key is split here, a guardian's share is checked and re-sealed here, the doctor's
//! shares are checked and combined here. Records released to a doctor are read through the
//! ordinary audited record page (`/records/{id}`), which falls back to the emergency keyring.

use crate::{
    Portal,
    doctor::{accounts, field, form_categories, parse_account, parse_item},
    patient::{Names, named_professional},
    templates::{category_list, plain, short},
    web::{Ctx, PageError, User, render, url_escape},
};
use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use ehrchain_api::now_ms;
use ehrchain_client::{
    Session,
    emergency::{self as em, GuardianPlan, RequestView},
    records,
};
use ehrchain_types::{
    AccountId, Category, ItemKind, Role,
    items::{
        DEFAULT_EMERGENCY_CATEGORIES, DEFAULT_EMERGENCY_MS, EmergencyReason, EmergencyRequest,
        EmergencyReview, EmergencyStatus, Hours, MAX_EMERGENCY_MS, MAX_GUARDIANS, MAX_PENDING_MS,
        MIN_EMERGENCY_MS,
    },
};
use std::{collections::HashMap, sync::Arc, time::Duration};

pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/patient/guardians", get(guardians_page))
        .route("/patient/guardians/set", post(set_guardians))
        .route("/patient/guardians/clear", post(clear_guardians))
        .route("/patient/guardians/rotate", post(rotate))
        .route("/patient/emergency/{id}/review", post(review))
        .route("/guardian", get(inbox_page))
        .route("/guardian/{id}/answer", post(answer))
        .route("/doctor/emergency", get(doctor_page))
        .route("/doctor/emergency/{id}/open", post(open))
        .route("/doctor/patients/{id}/emergency", post(request))
}

// ---------------------------------------------------------------------------------------
// Words and form values shared by the pages.

/// The reasons of the doctor's form: (value, label).
pub(crate) const REASONS: [(&str, &str); 4] = [
    ("unconscious", "The patient is unconscious"),
    ("life_threatening", "A life-threatening condition"),
    ("incapable", "The patient cannot decide (incapable)"),
    ("other", "Other (say why in the note)"),
];

/// A reason as words.
pub(crate) fn reason_words(r: EmergencyReason) -> &'static str {
    match r {
        EmergencyReason::Unconscious => "unconscious",
        EmergencyReason::LifeThreatening => "life-threatening condition",
        EmergencyReason::Incapable => "incapable of deciding",
        EmergencyReason::Other => "other (see the note)",
    }
}

/// The windows the forms offer: (value, ms).
const WINDOWS: [(&str, u64); 9] = [
    ("30m", 30 * 60_000),
    ("1h", 3_600_000),
    ("6h", 6 * 3_600_000),
    ("12h", 12 * 3_600_000),
    ("24h", 24 * 3_600_000),
    ("48h", 48 * 3_600_000),
    ("72h", 72 * 3_600_000),
    ("7d", 7 * 86_400_000),
    ("30d", 30 * 86_400_000),
];

/// A window length for people: `6 h`, `30 min`, `7 days`.
pub(crate) fn window_words(ms: u64) -> String {
    let day = 86_400_000;
    if ms >= 2 * day && ms.is_multiple_of(day) {
        format!("{} days", ms / day)
    } else {
        Hours(ms).to_string()
    }
}

/// A window typed or chosen in a form: a whole number with `s`, `m`, `h` or `d`.
pub(crate) fn parse_window(s: &str) -> Result<Duration, PageError> {
    let t = s.trim();
    let bad = || PageError::BadRequest(format!("Choose a duration from the list, not {t:?}."));
    let (n, unit) = t.split_at(t.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    let d = Duration::from_secs(secs);
    let ms = d.as_millis();
    if ms < u128::from(MIN_EMERGENCY_MS) || ms > u128::from(MAX_EMERGENCY_MS) {
        return Err(PageError::BadRequest(format!(
            "A window lasts from {} to {}, not {t:?}.",
            window_words(MIN_EMERGENCY_MS),
            window_words(MAX_EMERGENCY_MS)
        )));
    }
    Ok(d)
}

/// One choice of a window select.
pub(crate) struct WindowChoice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// The windows up to `max_ms` (the longest itself included), `selected_ms` (or the longest
/// below it) chosen.
pub(crate) fn window_choices(max_ms: u64, selected_ms: u64) -> Vec<WindowChoice> {
    let mut v: Vec<(String, u64)> = WINDOWS
        .iter()
        .filter(|(_, ms)| *ms <= max_ms)
        .map(|(v, ms)| (v.to_string(), *ms))
        .collect();
    if !v.iter().any(|(_, ms)| *ms == max_ms) && max_ms >= MIN_EMERGENCY_MS {
        v.push((format!("{}s", max_ms / 1000), max_ms));
    }
    let chosen = v
        .iter()
        .map(|(_, ms)| *ms)
        .filter(|ms| *ms <= selected_ms)
        .max()
        .or_else(|| v.first().map(|(_, ms)| *ms));
    v.into_iter()
        .map(|(value, ms)| WindowChoice {
            value,
            label: window_words(ms),
            selected: Some(ms) == chosen,
        })
        .collect()
}

/// A note someone else wrote, safe to show on one line: line breaks and tabs become spaces,
/// other hidden characters replacements ([`plain`]).
pub(crate) fn note_text(n: &str) -> String {
    let flat: String = n
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    plain(
        flat.split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .as_str(),
    )
}

/// Where a request stands, in words, with its badge class.
pub(crate) fn status_of(r: &EmergencyRequest, now: u64) -> (String, &'static str) {
    match r.status {
        EmergencyStatus::Open if r.lapsed(now) => (
            format!(
                "lapsed: not released within {} ({} of {} approvals)",
                window_words(MAX_PENDING_MS),
                r.approvals(),
                r.threshold
            ),
            "badge",
        ),
        EmergencyStatus::Open => (
            format!(
                "waiting for the guardians ({} of {} approvals)",
                r.approvals(),
                r.threshold
            ),
            "badge warn",
        ),
        EmergencyStatus::Released => match r.expires_ms {
            Some(e) if now < e => (format!("released until {}", when(e)), "badge ok"),
            Some(e) => (format!("released; ended {}", when(e)), "badge"),
            None => ("released".into(), "badge"),
        },
        EmergencyStatus::Refused => ("refused by the guardians".into(), "badge bad"),
        EmergencyStatus::Withdrawn => ("withdrawn".into(), "badge"),
    }
}

fn when(ms: u64) -> String {
    crate::templates::when(&ms)
}

/// One guardian's answer, for a table.
pub(crate) struct AnswerRow {
    pub guardian: String,
    pub approve: bool,
    pub time: String,
    pub bad: bool,
}

/// An emergency request as every page shows it.
pub(crate) struct EmergencyRow {
    pub id: String,
    pub patient: String,
    pub patient_label: String,
    pub doctor: String,
    pub organisation: String,
    pub reason: &'static str,
    /// The doctor's note, if it was sealed to this account (cleaned for display).
    pub note: Option<String>,
    /// A note exists that this account cannot read (the doctor's own, sealed to others).
    pub sealed_note: bool,
    pub categories: String,
    pub duration: String,
    pub approvals: usize,
    pub refusals: usize,
    pub threshold: u8,
    pub guardians: usize,
    pub status: String,
    pub status_class: &'static str,
    pub created: String,
    /// Released and its window still open.
    pub active: bool,
    pub review: Option<&'static str>,
    /// For a guardian: waiting for this account's answer.
    pub waiting_for_me: bool,
    /// For a guardian: this account's answer.
    pub my_answer: Option<&'static str>,
    pub answers: Vec<AnswerRow>,
    /// Guardians a doctor proved handed over a wrong share.
    pub bad: Vec<String>,
}

pub(crate) fn row(v: &RequestView, names: &Names, me: &AccountId, now: u64) -> EmergencyRow {
    let r = &v.request;
    let (status, status_class) = status_of(r, now);
    let mine = r.answers.iter().find(|a| a.guardian == *me);
    EmergencyRow {
        id: r.id.to_string(),
        patient: r.patient.to_string(),
        patient_label: names.of(&r.patient),
        doctor: names.of(&r.doctor),
        organisation: r.organisation.as_deref().map_or_else(|| "—".into(), plain),
        reason: reason_words(r.reason),
        note: v.note.as_deref().map(note_text),
        sealed_note: v.note.is_none() && !r.notes.is_empty(),
        categories: category_list(&r.categories),
        duration: window_words(r.duration_ms),
        approvals: r.approvals(),
        refusals: r.refusals(),
        threshold: r.threshold,
        guardians: r.guardians.len(),
        status,
        status_class,
        created: when(r.created_ms),
        active: r.status == EmergencyStatus::Released && r.expires_ms.is_some_and(|e| now < e),
        review: r.review.map(|x| x.name()),
        waiting_for_me: takes_answer_from(r, me, now),
        my_answer: mine.map(|a| if a.approve { "approved" } else { "refused" }),
        answers: r
            .answers
            .iter()
            .map(|a| AnswerRow {
                guardian: names.of(&a.guardian),
                approve: a.approve,
                time: when(a.time_ms),
                bad: a.bad,
            })
            .collect(),
        bad: r
            .answers
            .iter()
            .filter(|a| a.bad)
            .map(|a| names.of(&a.guardian))
            .collect(),
    }
}

/// Whether request `r` waits for `me`'s answer as a guardian at `now`: open, not lapsed, not
/// answered, and not `me`'s own request (a doctor never answers their own).
pub(crate) fn takes_answer_from(r: &EmergencyRequest, me: &AccountId, now: u64) -> bool {
    r.guardians.contains(me)
        && r.doctor != *me
        && r.status == EmergencyStatus::Open
        && !r.lapsed(now)
        && !r.answers.iter().any(|a| a.guardian == *me)
}

/// Every account a request names (for [`Names::resolve`]).
fn parties(r: &EmergencyRequest) -> impl Iterator<Item = AccountId> + '_ {
    [r.patient, r.doctor]
        .into_iter()
        .chain(r.guardians.iter().copied())
}

/// What waits in emergency access for the signed-in account, for its dashboard.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Requests waiting for this account's answer as a guardian.
    pub guardian_waiting: usize,
    /// Released accesses to this patient's records not yet reviewed.
    pub alerts: usize,
    /// Requests about this patient waiting for the guardians.
    pub asked: usize,
    /// This doctor's requests still waiting or released and open.
    pub mine_live: usize,
}

pub(crate) fn count(list: &[RequestView], me: &AccountId, now: u64) -> Counts {
    let mut c = Counts::default();
    for v in list {
        let r = &v.request;
        let waiting = r.status == EmergencyStatus::Open && !r.lapsed(now);
        if r.patient == *me {
            match r.status {
                EmergencyStatus::Released if r.review.is_none() => c.alerts += 1,
                EmergencyStatus::Open if waiting => c.asked += 1,
                _ => {}
            }
        } else if r.doctor == *me {
            let live = waiting
                || (r.status == EmergencyStatus::Released && r.expires_ms.is_some_and(|e| now < e));
            c.mine_live += usize::from(live);
        } else if takes_answer_from(r, me, now) {
            c.guardian_waiting += 1;
        }
    }
    c
}

/// The signed-in account's emergency counts (one request to the node).
pub(crate) fn counts(s: &Session) -> ehrchain_client::Result<Counts> {
    Ok(count(&em::list(s)?, &s.me, now_ms()))
}

/// Refuses unless the account has a role and is approved (any role may be a guardian).
fn registered(user: &User) -> Result<(), PageError> {
    match user.me.role {
        None => Err(PageError::Forbidden(
            "Register your account first: guardians are registered accounts.".into(),
        )),
        Some(_) if !user.me.is_active() => Err(PageError::Forbidden(
            "Your account is waiting for the consortium admin's approval.".into(),
        )),
        Some(_) => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// The patient's Guardians page.

struct GuardianRow {
    id: String,
    label: String,
}

struct Current {
    id: String,
    guardians: Vec<GuardianRow>,
    threshold: u8,
    categories: String,
    max: String,
    since: String,
}

struct Choice {
    id: String,
    label: String,
    checked: bool,
}

struct CategoryChoice {
    name: &'static str,
    checked: bool,
}

struct ReadRow {
    time: String,
    who: String,
    record: Option<String>,
    title: String,
    categories: String,
}

struct AlertRow {
    request: EmergencyRow,
    reads: Vec<ReadRow>,
}

#[derive(Template)]
#[template(path = "emergency/guardians.html")]
struct GuardiansTpl {
    ctx: Ctx,
    current: Option<Current>,
    choices: Vec<Choice>,
    categories: Vec<CategoryChoice>,
    windows: Vec<WindowChoice>,
    threshold: u8,
    alerts: Vec<AlertRow>,
    requests: Vec<EmergencyRow>,
    can_rotate: bool,
    guarding: usize,
    max_guardians: usize,
}

async fn guardians_page(State(p): State<Arc<Portal>>, user: User) -> Result<Response, PageError> {
    user.require(&[Role::Patient])?;
    let names = Names::local(&p);
    let (mine, list, alerts, eligible, titles, guarding, names) = user
        .call(move |s| {
            let mine = em::my_guardians(s)?;
            let list: Vec<RequestView> = em::list(s)?
                .into_iter()
                .filter(|v| v.request.patient == s.me)
                .collect();
            let alerts = em::alerts(s)?;
            let mut eligible: Vec<_> = accounts(s, None, Some("active"))?
                .into_iter()
                .filter(|a| {
                    a.id != s.me && a.account.role.is_some() && a.account.encryption_key.is_some()
                })
                .collect();
            let titles: HashMap<_, _> = if alerts.is_empty() {
                HashMap::new()
            } else {
                records::list_records(s, &s.me)?
                    .into_iter()
                    .map(|r| {
                        let t = r.title.or(r.file_name).map_or_else(
                            || "(untitled)".to_string(),
                            |t| crate::templates::plain(&t),
                        );
                        (r.id, t)
                    })
                    .collect()
            };
            let guarding = em::guarding(s)?.len();
            let mut names = names;
            names.resolve_views(&s.me, &eligible);
            // Professionals first (by name), then the others by id.
            eligible.sort_by_key(|a| {
                (
                    !a.account.role.is_some_and(crate::patient::is_professional),
                    names.of(&a.id),
                )
            });
            let mut ids: Vec<AccountId> = list.iter().flat_map(|v| parties(&v.request)).collect();
            ids.extend(
                mine.iter()
                    .flat_map(|g| g.guardians.iter().map(|x| x.account)),
            );
            for a in &alerts {
                ids.extend(a.reads.iter().map(|e| e.event.actor));
            }
            names.resolve(s, ids);
            Ok((mine, list, alerts, eligible, titles, guarding, names))
        })
        .await?;
    let me = user.me.account();
    let now = now_ms();
    let chosen: Vec<AccountId> = mine
        .as_ref()
        .map(|g| g.guardians.iter().map(|x| x.account).collect())
        .unwrap_or_default();
    let cats: Vec<Category> = mine.as_ref().map_or_else(
        || DEFAULT_EMERGENCY_CATEGORIES.to_vec(),
        |g| g.categories.clone(),
    );
    let can_rotate = mine.as_ref().is_some_and(|g| {
        list.iter().any(|v| {
            v.request.guardianship == g.id && v.request.status == EmergencyStatus::Released
        })
    });
    let alerts = alerts
        .iter()
        .map(|a| AlertRow {
            request: row(&a.request, &names, &me, now),
            reads: a
                .reads
                .iter()
                .map(|e| ReadRow {
                    time: when(e.event.time_ms),
                    who: names.of(&e.event.actor),
                    record: e.event.record.map(|r| r.to_string()),
                    title: e
                        .event
                        .record
                        .and_then(|r| titles.get(&r).cloned())
                        .unwrap_or_else(|| "(a record)".into()),
                    categories: category_list(&e.event.categories),
                })
                .collect(),
        })
        .collect();
    Ok(render(GuardiansTpl {
        ctx: user.ctx(),
        threshold: mine.as_ref().map_or(2, |g| g.threshold),
        windows: window_choices(
            MAX_EMERGENCY_MS,
            mine.as_ref()
                .map_or(DEFAULT_EMERGENCY_MS, |g| g.max_duration_ms),
        ),
        current: mine.map(|g| Current {
            id: g.id.to_string(),
            guardians: g
                .guardians
                .iter()
                .map(|x| GuardianRow {
                    id: x.account.to_string(),
                    label: names.of(&x.account),
                })
                .collect(),
            threshold: g.threshold,
            categories: category_list(&g.categories),
            max: window_words(g.max_duration_ms),
            since: when(g.created_ms),
        }),
        choices: eligible
            .iter()
            .map(|a| Choice {
                id: a.id.to_string(),
                label: names.of(&a.id),
                checked: chosen.contains(&a.id),
            })
            .collect(),
        categories: Category::ALL
            .iter()
            .map(|c| CategoryChoice {
                name: c.name(),
                checked: cats.contains(c),
            })
            .collect(),
        alerts,
        requests: list.iter().map(|v| row(v, &names, &me, now)).collect(),
        can_rotate,
        guarding,
        max_guardians: MAX_GUARDIANS,
    }))
}

/// The guardians of the form: the checked accounts (`guardian`) and those typed in
/// `others` (account ids or professionals' key names, separated by commas, spaces or lines),
/// each with whether it was typed as a key name and how; in order, without repeats.
pub(crate) fn form_guardians(
    form: &[(String, String)],
    names: &Names,
) -> Result<Vec<(AccountId, bool, String)>, PageError> {
    let mut out: Vec<(AccountId, bool, String)> = Vec::new();
    for (k, v) in form {
        let typed: Vec<&str> = match k.as_str() {
            "guardian" => vec![v.as_str()],
            "others" => v
                .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .collect(),
            _ => continue,
        };
        for t in typed {
            let (id, by_name) = names.account_of(t)?;
            if !out.iter().any(|(a, ..)| *a == id) {
                out.push((id, by_name, t.trim().to_string()));
            }
        }
    }
    if out.len() < 2 {
        return Err(PageError::BadRequest(
            "Name at least two guardians: no one person may open your records alone.".into(),
        ));
    }
    if out.len() > MAX_GUARDIANS {
        return Err(PageError::BadRequest(format!(
            "Name at most {MAX_GUARDIANS} guardians, not {}.",
            out.len()
        )));
    }
    Ok(out)
}

/// The threshold of the form, between 2 and the number of guardians `n`.
pub(crate) fn form_threshold(s: &str, n: usize) -> Result<u8, PageError> {
    let k: u8 = s.trim().parse().map_err(|_| {
        PageError::BadRequest(format!(
            "How many must agree: {:?} is not a whole number.",
            s.trim()
        ))
    })?;
    if k < 2 || usize::from(k) > n {
        return Err(PageError::BadRequest(format!(
            "How many must agree: from 2 to {n} (the guardians you named), not {k}."
        )));
    }
    Ok(k)
}

async fn set_guardians(
    State(p): State<Arc<Portal>>,
    user: User,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let r = async {
        user.require(&[Role::Patient])?;
        let names = Names::local(&p);
        let typed = form_guardians(&form, &names)?;
        let threshold = form_threshold(field(&form, "threshold"), typed.len())?;
        let categories = form_categories(&form)?;
        let window = parse_window(field(&form, "max_duration"))?;
        let mut guardians = Vec::new();
        for (id, by_name, text) in typed {
            guardians.push(named_professional(&user, (id, by_name), &text).await?);
        }
        let plan = GuardianPlan {
            guardians,
            threshold,
            categories,
            max_duration: window,
        };
        let (had, plan) = user
            .call(move |s| {
                let had = em::my_guardians(s)?.is_some();
                em::set_guardians(s, &plan)?;
                Ok((had, plan))
            })
            .await?;
        Ok(format!(
            "Your guardians are set: {} of the {} together can release {} to a doctor for up to {}. Each holds a share of your emergency key, sealed to them; fewer than {} learn nothing.{}",
            plan.threshold,
            plan.guardians.len(),
            category_list(&plan.categories),
            window_words(plan.max_duration.as_millis().try_into().unwrap_or(u64::MAX)),
            plan.threshold,
            if had {
                " Requests still waiting under your earlier guardians were withdrawn."
            } else {
                ""
            }
        ))
    }
    .await;
    user.done(r, |m| m, "/patient/guardians")
}

async fn clear_guardians(user: User) -> Response {
    let r = async {
        user.require(&[Role::Patient])?;
        user.call(em::clear_guardians).await?;
        Ok(())
    }
    .await;
    user.done(
        r,
        |_| {
            "Your guardians are removed: no emergency access can be released now, and requests still waiting were withdrawn.".into()
        },
        "/patient/guardians",
    )
}

async fn rotate(user: User) -> Response {
    let r = async {
        user.require(&[Role::Patient])?;
        user.call(|s| em::rotate_after_release(s).map(|t| t.len()))
            .await
    }
    .await;
    user.done(
        r,
        |n| {
            if n == 0 {
                "Nothing to rotate: no emergency access was released under your current guardians.".into()
            } else {
                format!(
                    "Rotated ({n} transactions): the released categories have new keys and a new emergency key is split among the same guardians. What a doctor read during the window stays readable to them; nothing you add from now on is."
                )
            }
        },
        "/patient/guardians",
    )
}

async fn review(
    user: User,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let r = async {
        user.require(&[Role::Patient])?;
        let id = parse_item(&id, ItemKind::Emergency)?;
        let verdict = match field(&form, "verdict") {
            "reviewed" => EmergencyReview::Reviewed,
            "disputed" => EmergencyReview::Disputed,
            _ => {
                return Err(PageError::BadRequest(
                    "Mark it reviewed or dispute it.".into(),
                ));
            }
        };
        // The review ends the access if it still runs; then, at once, what was released is
        // rotated (a new emergency key first, then new epochs of the released categories).
        let rotated = user
            .call(move |s| {
                em::review(s, &id, verdict)?;
                em::rotate_after_release(s).map(|t| !t.is_empty())
            })
            .await?;
        Ok((id, verdict, rotated))
    }
    .await;
    user.done(
        r,
        |(id, v, rotated)| {
            let mut m = match v {
                EmergencyReview::Reviewed => {
                    format!("Emergency access {id} marked reviewed; it has ended.")
                }
                EmergencyReview::Disputed => format!(
                    "Emergency access {id} disputed and ended: every regulator now sees the dispute, with the request and its guardians' answers."
                ),
            };
            if rotated {
                m += " Your keys were rotated: a new emergency key for your guardians and new keys for the released categories, so nothing you add from now on is readable to the doctor.";
            }
            m
        },
        "/patient/guardians",
    )
}

// ---------------------------------------------------------------------------------------
// The guardian's inbox.

struct GuardedRow {
    patient: String,
    threshold: u8,
    guardians: usize,
    categories: String,
    max: String,
}

#[derive(Template)]
#[template(path = "emergency/inbox.html")]
struct InboxTpl {
    ctx: Ctx,
    waiting: Vec<EmergencyRow>,
    answered: Vec<EmergencyRow>,
    guarding: Vec<GuardedRow>,
}

async fn inbox_page(State(p): State<Arc<Portal>>, user: User) -> Result<Response, PageError> {
    registered(&user)?;
    let names = Names::local(&p);
    let (inbox, guarding, names) = user
        .call(move |s| {
            let inbox: Vec<RequestView> = em::inbox(s)?
                .into_iter()
                .filter(|v| v.request.guardians.contains(&s.me))
                .collect();
            let guarding = em::guarding(s)?;
            let mut names = names;
            let mut ids: Vec<AccountId> = inbox.iter().flat_map(|v| parties(&v.request)).collect();
            ids.extend(guarding.iter().map(|g| g.patient));
            names.resolve(s, ids);
            Ok((inbox, guarding, names))
        })
        .await?;
    let me = user.me.account();
    let now = now_ms();
    let (waiting, answered): (Vec<EmergencyRow>, Vec<EmergencyRow>) = inbox
        .iter()
        .map(|v| row(v, &names, &me, now))
        .partition(|r| r.waiting_for_me);
    Ok(render(InboxTpl {
        ctx: user.ctx(),
        waiting,
        answered,
        guarding: guarding
            .iter()
            .map(|g| GuardedRow {
                patient: names.of(&g.patient),
                threshold: g.threshold,
                guardians: g.guardians.len(),
                categories: category_list(&g.categories),
                max: window_words(g.max_duration_ms),
            })
            .collect(),
    }))
}

async fn answer(
    user: User,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let r = async {
        registered(&user)?;
        let id = parse_item(&id, ItemKind::Emergency)?;
        let approve = match field(&form, "decision") {
            "approve" => true,
            "refuse" => false,
            _ => return Err(PageError::BadRequest("Approve or refuse.".into())),
        };
        let r = user
            .call(move |s| {
                if approve {
                    em::approve(s, &id)?;
                } else {
                    em::refuse(s, &id)?;
                }
                em::emergency_request(s, &id)
            })
            .await?;
        Ok((approve, r))
    }
    .await;
    user.done(
        r,
        |(approve, r)| {
            let state = match r.status {
                EmergencyStatus::Released => format!(
                    "released: the doctor may read {} until {}",
                    category_list(&r.categories),
                    r.expires_ms.map_or_else(|| "-".into(), when)
                ),
                EmergencyStatus::Refused => {
                    "refused: too few guardians are left to release it".into()
                }
                EmergencyStatus::Open => "still waiting for other guardians".into(),
                EmergencyStatus::Withdrawn => "withdrawn".into(),
            };
            if approve {
                format!(
                    "Approved {}: your share checked out against the patient's commitments and is sealed to the doctor; {} of {} approvals, {state}.",
                    r.id,
                    r.approvals(),
                    r.threshold
                )
            } else {
                format!("Refused {}: nothing was handed over; {state}.", r.id)
            }
        },
        "/guardian",
    )
}

// ---------------------------------------------------------------------------------------
// The doctor's side: the request form on a patient's chart, the page of requests, "Open".

/// A patient's break-glass card as the chart shows it.
pub(crate) struct Card {
    pub guardians: usize,
    pub threshold: u8,
    pub categories: String,
    pub windows: Vec<WindowChoice>,
}

/// The emergency part of a doctor's view of a patient's chart.
pub(crate) struct ChartPart {
    /// `None` when the patient named no guardians.
    pub card: Option<Card>,
    pub requests: Vec<EmergencyRow>,
    /// Until when a released access lets this doctor read, if one does now.
    pub active_until: Option<String>,
    pub reasons: &'static [(&'static str, &'static str)],
}

/// What the chart shows of emergency access to `patient` (SDK calls; run in `User::call`).
pub(crate) fn chart_part(s: &Session, patient: &AccountId) -> ehrchain_client::Result<ChartPart> {
    let card = match em::card(s, patient) {
        Ok(c) => Some(c),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(e),
    };
    let now = now_ms();
    let mine: Vec<RequestView> = em::list(s)?
        .into_iter()
        .filter(|v| v.request.doctor == s.me && v.request.patient == *patient)
        .collect();
    let mut names = Names::default();
    names.resolve(s, [s.me]);
    let requests: Vec<EmergencyRow> = mine.iter().map(|v| row(v, &names, &s.me, now)).collect();
    let active_until = mine
        .iter()
        .filter(|v| v.active)
        .filter_map(|v| v.request.expires_ms)
        .max()
        .map(when);
    Ok(ChartPart {
        card: card.map(|c| Card {
            guardians: c.guardians.len(),
            threshold: c.threshold,
            categories: category_list(&c.categories),
            windows: window_choices(c.max_duration_ms, 6 * 3_600_000),
        }),
        requests,
        active_until,
        reasons: &REASONS,
    })
}

async fn request(
    user: User,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let chart = format!("/doctor/patients/{}#emergency", url_escape(id.trim()));
    let r = async {
        user.require(&[Role::Doctor])?;
        let patient = parse_account(&id, "Patient")?;
        let reason: EmergencyReason = field(&form, "reason")
            .parse()
            .map_err(|e: String| PageError::BadRequest(format!("Reason: {e}.")))?;
        let note = field(&form, "note").trim().to_string();
        if reason == EmergencyReason::Other && note.is_empty() {
            return Err(PageError::BadRequest(
                "The reason \"other\" needs a note saying why.".into(),
            ));
        }
        if note.len() > 1000 {
            return Err(PageError::BadRequest(format!(
                "The note is {} bytes; keep it under 1,000.",
                note.len()
            )));
        }
        let window = parse_window(field(&form, "duration"))?;
        let (rid, _) = user
            .call(move |s| {
                em::request(
                    s,
                    &patient,
                    reason,
                    Some(note.as_str()).filter(|n| !n.is_empty()),
                    window,
                )
            })
            .await?;
        Ok((rid, window))
    }
    .await;
    match r {
        Ok((rid, window)) => user.done(
            Ok(()),
            |_| {
                format!(
                    "Asked the patient's guardians for emergency access for {} (request {rid}). Each sees it in their guardian inbox; once enough approve, open it here.",
                    window_words(window.as_millis().try_into().unwrap_or(u64::MAX))
                )
            },
            "/doctor/emergency",
        ),
        Err(e) => user.done(Err::<(), _>(e), |_| String::new(), &chart),
    }
}

#[derive(Template)]
#[template(path = "emergency/doctor.html")]
struct DoctorTpl {
    ctx: Ctx,
    requests: Vec<EmergencyRow>,
}

async fn doctor_page(State(p): State<Arc<Portal>>, user: User) -> Result<Response, PageError> {
    user.require(&[Role::Doctor])?;
    let names = Names::local(&p);
    let (list, names) = user
        .call(move |s| {
            let list: Vec<RequestView> = em::list(s)?
                .into_iter()
                .filter(|v| v.request.doctor == s.me)
                .collect();
            let mut names = names;
            names.resolve(s, list.iter().flat_map(|v| parties(&v.request)));
            Ok((list, names))
        })
        .await?;
    let me = user.me.account();
    let now = now_ms();
    Ok(render(DoctorTpl {
        ctx: user.ctx(),
        requests: list.iter().map(|v| row(v, &names, &me, now)).collect(),
    }))
}

async fn open(State(p): State<Arc<Portal>>, user: User, Path(id): Path<String>) -> Response {
    let r = async {
        user.require(&[Role::Doctor])?;
        let id = parse_item(&id, ItemKind::Emergency)?;
        let names = Names::local(&p);
        user.call(move |s| {
            let o = em::open(s, &id)?;
            let mut names = names;
            names.resolve(
                s,
                o.good.iter().copied().chain(o.bad.iter().map(|(a, _)| *a)),
            );
            Ok((o, names))
        })
        .await
    }
    .await;
    user.done(
        r,
        |(o, names)| {
            let mut m = format!(
                "Opened {}: {} good share{} ({} needed) from {}; the keys rebuild the patient's emergency key. You may read {} of patient {} until {} from the patient's chart; every read is audited and shown to the patient.",
                o.request,
                o.good.len(),
                if o.good.len() == 1 { "" } else { "s" },
                o.threshold,
                o.good
                    .iter()
                    .map(|a| names.of(a))
                    .collect::<Vec<_>>()
                    .join(", "),
                category_list(&o.categories),
                short(&o.patient.to_string()),
                o.expires_ms.map_or_else(|| "-".into(), when)
            );
            for (g, why) in &o.bad {
                m += &format!(
                    " Wrong share from guardian {}: {why} (proved on the ledger).",
                    names.of(g)
                );
            }
            m
        },
        "/doctor/emergency",
    )
}

// ---------------------------------------------------------------------------------------
// The regulator's list of disputed accesses.

/// A disputed emergency access as the regulator's desk shows it.
pub(crate) struct DisputeRow {
    pub id: String,
    pub patient: String,
    pub doctor: String,
    pub organisation: String,
    pub reason: &'static str,
    pub categories: String,
    pub released: String,
    pub expires: String,
    pub disputed: String,
    pub approvals: String,
    pub bad: Vec<String>,
}

/// Every disputed emergency access (for an approved regulator; SDK calls).
pub(crate) fn disputes(s: &Session, names: &mut Names) -> ehrchain_client::Result<Vec<DisputeRow>> {
    let mut list = em::disputes(s)?;
    list.sort_by_key(|r| std::cmp::Reverse(r.reviewed_ms));
    names.resolve(s, list.iter().flat_map(parties));
    Ok(list
        .iter()
        .map(|r| DisputeRow {
            id: r.id.to_string(),
            patient: r.patient.to_string(),
            doctor: names.of(&r.doctor),
            organisation: r.organisation.as_deref().map_or_else(|| "—".into(), plain),
            reason: reason_words(r.reason),
            categories: category_list(&r.categories),
            released: r.released_ms.map_or_else(|| "-".into(), when),
            expires: r.expires_ms.map_or_else(|| "-".into(), when),
            disputed: r.reviewed_ms.map_or_else(|| "-".into(), when),
            approvals: r
                .answers
                .iter()
                .filter(|a| a.approve)
                .map(|a| names.of(&a.guardian))
                .collect::<Vec<_>>()
                .join(", "),
            bad: r
                .answers
                .iter()
                .filter(|a| a.bad)
                .map(|a| names.of(&a.guardian))
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehrchain_types::{
        Hash, ItemId,
        items::{EmergencyRequest, GuardianAnswer},
    };

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn request(status: EmergencyStatus) -> EmergencyRequest {
        EmergencyRequest {
            id: ItemId::derive(ItemKind::Emergency, &Hash([1; 32])),
            patient: AccountId([1; 20]),
            doctor: AccountId([2; 20]),
            organisation: Some("St\u{202E}Mary's".into()),
            guardianship: ItemId::derive(ItemKind::Guardianship, &Hash([2; 32])),
            guardians: vec![AccountId([3; 20]), AccountId([4; 20]), AccountId([5; 20])],
            threshold: 2,
            categories: DEFAULT_EMERGENCY_CATEGORIES.to_vec(),
            reason: EmergencyReason::Unconscious,
            notes: Vec::new(),
            duration_ms: 6 * 3_600_000,
            answers: Vec::new(),
            status,
            created_ms: 1_000,
            released_ms: None,
            expires_ms: None,
            review: None,
            reviewed_ms: None,
        }
    }

    fn answer(g: u8, approve: bool) -> GuardianAnswer {
        GuardianAnswer {
            guardian: AccountId([g; 20]),
            approve,
            time_ms: 2_000,
            share: None,
            digest: None,
            bad: false,
        }
    }

    fn view(r: EmergencyRequest, note: Option<&str>) -> RequestView {
        RequestView {
            note: note.map(str::to_string),
            as_role: "guardian",
            answered: false,
            active: false,
            lapsed: false,
            request: r,
        }
    }

    #[test]
    fn windows_parse_and_stay_within_the_ledger_bounds() {
        assert_eq!(parse_window("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_window(" 30m ").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_window("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_window("90s").unwrap(), Duration::from_secs(90));
        for bad in [
            "",
            "h",
            "5",
            "5x",
            "-1h",
            "1s",
            "31d",
            "99999999999999999999d",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
        for (v, ms) in WINDOWS {
            assert_eq!(parse_window(v).unwrap().as_millis(), u128::from(ms));
        }
        assert_eq!(window_words(24 * 3_600_000), "24 h");
        assert_eq!(window_words(7 * 86_400_000), "7 days");
        assert_eq!(window_words(30 * 60_000), "30 min");
    }

    #[test]
    fn window_choices_stop_at_the_patients_maximum() {
        let c = window_choices(24 * 3_600_000, 6 * 3_600_000);
        let values: Vec<&str> = c.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(values, ["30m", "1h", "6h", "12h", "24h"]);
        assert_eq!(c.iter().filter(|c| c.selected).count(), 1);
        assert!(c[2].selected);
        // A maximum that is not on the list is offered as itself, and chosen when smaller.
        let c = window_choices(5 * 3_600_000, 6 * 3_600_000);
        assert_eq!(c.last().map(|c| c.value.as_str()), Some("18000s"));
        assert!(c.last().unwrap().selected);
        assert_eq!(parse_window("18000s").unwrap().as_secs(), 18_000);
        // Shorter than anything on the list.
        let c = window_choices(60_000, 6 * 3_600_000);
        assert_eq!(c.len(), 1);
        assert!(c[0].selected);
    }

    #[test]
    fn a_doctors_note_is_shown_on_one_line_without_hidden_characters() {
        assert_eq!(
            note_text("fell\non stairs\r\n\tGCS 8 \u{202E}x"),
            "fell on stairs GCS 8 \u{FFFD}x"
        );
        assert_eq!(
            note_text("<script>"),
            "<script>",
            "escaping is the template's job"
        );
    }

    #[test]
    fn guardians_come_from_checkboxes_and_typed_ids_without_repeats() {
        let names = Names::default();
        let (a, b, c) = (AccountId([7; 20]), AccountId([8; 20]), AccountId([9; 20]));
        let got = form_guardians(
            &f(&[
                ("guardian", &a.to_string()),
                ("guardian", &b.to_string()),
                ("others", &format!("{c}, {a}\n")),
                ("threshold", "2"),
            ]),
            &names,
        )
        .unwrap();
        assert_eq!(
            got.iter().map(|(id, ..)| *id).collect::<Vec<_>>(),
            vec![a, b, c]
        );
        assert!(got.iter().all(|(_, by_name, _)| !by_name));
        assert!(form_guardians(&f(&[("guardian", &a.to_string())]), &names).is_err());
        assert!(form_guardians(&f(&[("others", "nobody, somebody")]), &names).is_err());
        assert_eq!(form_threshold("2", 3).unwrap(), 2);
        assert_eq!(form_threshold(" 3 ", 3).unwrap(), 3);
        for bad in ["1", "4", "0", "two", ""] {
            assert!(form_threshold(bad, 3).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_request_row_says_where_it_stands_for_each_party() {
        let me = AccountId([3; 20]);
        let names = Names::default();
        let mut r = request(EmergencyStatus::Open);
        r.answers.push(answer(4, true));
        r.notes.push((
            me,
            ehrchain_types::SealedKey {
                enc: ehrchain_types::EncryptionKey([0; 32]),
                ct: ehrchain_types::HexBytes(Vec::new()),
            },
        ));
        let row1 = row(
            &view(r.clone(), Some("line one\nline two")),
            &names,
            &me,
            5_000,
        );
        assert!(row1.waiting_for_me);
        assert_eq!(row1.my_answer, None);
        assert_eq!(row1.status, "waiting for the guardians (1 of 2 approvals)");
        assert_eq!(row1.status_class, "badge warn");
        assert_eq!(row1.note.as_deref(), Some("line one line two"));
        assert!(!row1.sealed_note);
        assert_eq!(row1.organisation, "St\u{FFFD}Mary's");
        assert_eq!(row1.categories, "vitals, lab, medication, emergency");
        assert_eq!(row1.duration, "6 h");

        // Answered, then released: no longer waiting; active until the window ends.
        r.answers.push(answer(3, true));
        r.status = EmergencyStatus::Released;
        r.released_ms = Some(3_000);
        r.expires_ms = Some(10_000);
        let row2 = row(&view(r.clone(), None), &names, &me, 5_000);
        assert!(!row2.waiting_for_me && row2.active);
        assert_eq!(row2.my_answer, Some("approved"));
        assert!(
            row2.sealed_note,
            "a note exists that this account cannot read"
        );
        assert_eq!(row2.status_class, "badge ok");
        let ended = row(&view(r.clone(), None), &names, &me, 10_000);
        assert!(!ended.active);
        assert!(ended.status.starts_with("released; ended"));

        // An open request nobody released within a day lapses: it waits for nobody.
        let mut stale = request(EmergencyStatus::Open);
        let later = stale.created_ms + MAX_PENDING_MS;
        assert!(takes_answer_from(&stale, &me, later - 1));
        let lapsed = row(&view(stale.clone(), None), &names, &me, later);
        assert!(!lapsed.waiting_for_me);
        assert!(lapsed.status.starts_with("lapsed"), "{}", lapsed.status);
        // A doctor who is also a guardian never answers their own request.
        stale.doctor = me;
        assert!(!takes_answer_from(&stale, &me, later - 1));

        // A wrong share is named.
        r.answers[0].bad = true;
        let row3 = row(&view(r, None), &names, &me, 5_000);
        assert_eq!(row3.bad.len(), 1);
        assert!(row3.answers[0].bad);
    }

    #[test]
    fn counts_split_by_part() {
        let patient = AccountId([1; 20]);
        let doctor = AccountId([2; 20]);
        let guardian = AccountId([3; 20]);
        let mut released = request(EmergencyStatus::Released);
        released.expires_ms = Some(10_000);
        let open = request(EmergencyStatus::Open);
        let mut answered = request(EmergencyStatus::Open);
        answered.answers.push(answer(3, false));
        let mut reviewed = released.clone();
        reviewed.review = Some(EmergencyReview::Reviewed);
        let list: Vec<RequestView> = [released, open, answered, reviewed]
            .into_iter()
            .map(|r| view(r, None))
            .collect();
        assert_eq!(
            count(&list, &patient, 5_000),
            Counts {
                alerts: 1,
                asked: 2,
                ..Counts::default()
            }
        );
        assert_eq!(
            count(&list, &guardian, 5_000),
            Counts {
                guardian_waiting: 1,
                ..Counts::default()
            }
        );
        assert_eq!(count(&list, &doctor, 5_000).mine_live, 4);
        assert_eq!(count(&list, &doctor, 20_000).mine_live, 2);
        // A day later the open ones have lapsed.
        let day = 1_000 + MAX_PENDING_MS;
        assert_eq!(count(&list, &doctor, day).mine_live, 0);
        assert_eq!(count(&list, &guardian, day).guardian_waiting, 0);
        assert_eq!(count(&list, &patient, day).asked, 0);
    }

    #[test]
    fn reasons_of_the_form_parse() {
        for (v, _) in REASONS {
            let r: EmergencyReason = v.parse().unwrap();
            assert_eq!(r.name(), v);
            assert!(!reason_words(r).is_empty());
        }
    }
}
