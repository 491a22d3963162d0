//! The insurer officer's and the regulator's pages (one implementation, two desks): the
//! policies they record or approve claims under, the claims waiting at their level with
//! "Approve" / "Reject" and a reason, and the history of decided claims level by level.
//! Insurer officers also record policies for patients; regulators also see every disputed
//! emergency access.

use crate::{
    Portal,
    doctor::{accounts, field, parse_account, parse_item, parse_number, short, when},
    patient::Names,
    web::{PageError, User, render},
};
use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, State},
    response::Response,
    routing::{get, post},
};
use ehrchain_api::now_ms;
use ehrchain_client::clinical;
use ehrchain_types::{
    AccountId, ItemKind, Role, TxPayload,
    clinical::MAX_APPROVAL_LEVELS,
    items::{Claim, ClaimStatus, Policy},
};
use std::sync::Arc;

pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/insurer", get(insurer_page))
        .route("/insurer/policies", post(set_policy))
        .route("/insurer/claims/{id}/decide", post(insurer_decide))
        .route("/regulator", get(regulator_page))
        .route("/regulator/claims/{id}/decide", post(regulator_decide))
}

/// The longest policy the form records (100 years).
const MAX_POLICY_DAYS: u64 = 36_500;

/// Which desk a page is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Desk {
    Insurer,
    Regulator,
}

impl Desk {
    fn role(self) -> Role {
        match self {
            Desk::Insurer => Role::Insurer,
            Desk::Regulator => Role::Regulator,
        }
    }
    fn path(self) -> &'static str {
        match self {
            Desk::Insurer => "/insurer",
            Desk::Regulator => "/regulator",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Desk::Insurer => "Insurer officer",
            Desk::Regulator => "Regulator",
        }
    }
}

/// Parses a coverage share (`80`, `80%`, `72.5 %`) into basis points.
pub(crate) fn parse_coverage(s: &str) -> Result<u16, PageError> {
    let t = s.trim().trim_end_matches('%').trim();
    let pct: f64 = t.parse().map_err(|_| {
        PageError::BadRequest(format!(
            "Coverage %: {:?} is not a percentage (examples: 80, 72.5).",
            s.trim()
        ))
    })?;
    if !(0.0..=100.0).contains(&pct) || !pct.is_finite() {
        return Err(PageError::BadRequest(format!(
            "Coverage %: between 0 and 100, not {}.",
            s.trim()
        )));
    }
    Ok((pct * 100.0).round() as u16)
}

/// The approvers of each level, in order, from the form's `level1`, `level2`, … fields
/// (empty ones skipped).
pub(crate) fn form_approvers(pairs: &[(String, String)]) -> Result<Vec<AccountId>, PageError> {
    let mut out = Vec::new();
    for n in 1..=MAX_APPROVAL_LEVELS {
        let v = field(pairs, &format!("level{n}")).trim();
        if v.is_empty() {
            continue;
        }
        let a = parse_account(v, &format!("Level {n} approver"))?;
        if out.contains(&a) {
            return Err(PageError::BadRequest(format!(
                "Level {n} approver: {a} already approves at an earlier level."
            )));
        }
        out.push(a);
    }
    if out.is_empty() {
        return Err(PageError::BadRequest(
            "Choose at least the level 1 approver.".into(),
        ));
    }
    Ok(out)
}

/// Coverage in basis points as `80 %` / `72.5 %`.
pub(crate) fn coverage_text(bp: u16) -> String {
    let s = format!("{:.2}", f64::from(bp) / 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} %")
}

struct Level {
    n: usize,
    approver: String,
    mine: bool,
    state: String,
    class: &'static str,
}

/// Where level `i` of a claim stands, in words, with its badge class (shared by the
/// insurer's, the regulator's and the patient's pages).
pub(crate) fn level_state(c: &Claim, i: usize) -> (String, &'static str) {
    let reason = |r: &str| {
        if r.is_empty() {
            String::new()
        } else {
            format!(": {r}")
        }
    };
    match c.decisions.get(i) {
        Some(d) if d.approve => (
            format!("approved {}{}", when(d.time_ms), reason(&d.reason)),
            "badge ok",
        ),
        Some(d) => (
            format!("rejected {}{}", when(d.time_ms), reason(&d.reason)),
            "badge bad",
        ),
        None if c.status == ClaimStatus::Open && i == c.decisions.len() => {
            ("waiting for this level".into(), "badge warn")
        }
        None if c.status == ClaimStatus::Withdrawn => ("withdrawn".into(), "badge"),
        None => ("not reached".into(), "badge"),
    }
}

/// Each level of a claim with its state.
fn levels(c: &Claim, me: &AccountId) -> Vec<Level> {
    c.approvers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (state, class) = level_state(c, i);
            Level {
                n: i + 1,
                approver: a.to_string(),
                mine: a == me,
                state,
                class,
            }
        })
        .collect()
}

struct ClaimRow {
    id: String,
    invoice: String,
    patient: String,
    payee: String,
    amount: u64,
    share: u64,
    status: &'static str,
    time: String,
    levels: Vec<Level>,
}

struct PolicyRow {
    id: String,
    patient: String,
    insurer: String,
    coverage: String,
    approvers: String,
    expires: String,
    in_force: bool,
}

struct Approver {
    id: String,
    label: String,
}

#[derive(Template)]
#[template(path = "insurance/desk.html")]
struct DeskTpl {
    ctx: crate::web::Ctx,
    title: &'static str,
    path: &'static str,
    insurer: bool,
    me: String,
    waiting: Vec<ClaimRow>,
    history: Vec<ClaimRow>,
    policies: Vec<PolicyRow>,
    approvers: Vec<Approver>,
    levels: Vec<usize>,
    /// Registered patients, offered in the Patient field.
    patients: Vec<String>,
    emergency: crate::emergency::Counts,
    /// For a regulator: every disputed emergency access.
    disputes: Vec<crate::emergency::DisputeRow>,
}

impl DeskTpl {
    fn short(&self, s: &str) -> String {
        short(&s)
    }
}

fn claim_row(c: &Claim, me: &AccountId) -> ClaimRow {
    ClaimRow {
        id: c.id.to_string(),
        invoice: c.invoice.to_string(),
        patient: c.patient.to_string(),
        payee: c.payee.to_string(),
        amount: c.amount,
        share: c.share,
        status: c.status.name(),
        time: when(c.created_ms),
        levels: levels(c, me),
    }
}

async fn desk(user: User, desk: Desk, names: Names) -> Result<Response, PageError> {
    user.require(&[desk.role()])?;
    let insurer = desk == Desk::Insurer;
    let (mut claims, policies, approvers, patients, emergency, disputes) = user
        .call(move |s| {
            let claims: Vec<Claim> = clinical::items(s)?;
            let policies: Vec<Policy> = clinical::items(s)?;
            let (approvers, patients) = if insurer {
                let mut a = accounts(s, Some(Role::Insurer), Some("active"))?;
                a.extend(accounts(s, Some(Role::Regulator), Some("active"))?);
                let p = accounts(s, Some(Role::Patient), None)?;
                (a, p.iter().map(|p| p.id.to_string()).collect())
            } else {
                (Vec::new(), Vec::new())
            };
            let emergency = crate::emergency::counts(s)?;
            let disputes = if insurer {
                Vec::new()
            } else {
                let mut names = names;
                crate::emergency::disputes(s, &mut names)?
            };
            Ok((claims, policies, approvers, patients, emergency, disputes))
        })
        .await?;
    let me = user.me.account();
    claims.sort_by_key(|c| std::cmp::Reverse(c.created_ms));
    let (waiting, history): (Vec<&Claim>, Vec<&Claim>) =
        claims.iter().partition(|c| c.next_approver() == Some(me));
    let now = now_ms();
    let mut policies = policies;
    policies.sort_by_key(|p| std::cmp::Reverse(p.created_ms));
    Ok(render(DeskTpl {
        ctx: user.ctx(),
        title: desk.title(),
        path: desk.path(),
        insurer,
        me: me.to_string(),
        waiting: waiting.iter().map(|c| claim_row(c, &me)).collect(),
        history: history.iter().map(|c| claim_row(c, &me)).collect(),
        policies: policies
            .iter()
            .map(|p| PolicyRow {
                id: p.id.to_string(),
                patient: p.patient.to_string(),
                insurer: p.insurer.to_string(),
                coverage: coverage_text(p.coverage_bp),
                approvers: p
                    .approvers
                    .iter()
                    .map(|a| if *a == me { "you".into() } else { short(a) })
                    .collect::<Vec<_>>()
                    .join(" → "),
                expires: match p.expires_ms {
                    Some(e) => format!("until {}", when(e)),
                    None => "no expiry".into(),
                },
                in_force: p.in_force(now),
            })
            .collect(),
        approvers: approvers
            .iter()
            .map(|a| Approver {
                id: a.id.to_string(),
                label: format!(
                    "{} {}{} — {}",
                    a.account.role.map_or(String::new(), |r| r.to_string()),
                    a.account.organisation.as_deref().unwrap_or(""),
                    if a.id == me { " (you)" } else { "" },
                    short(&a.id)
                ),
            })
            .collect(),
        levels: (1..=3).collect(),
        patients,
        emergency,
        disputes,
    }))
}

async fn insurer_page(State(p): State<Arc<Portal>>, user: User) -> Result<Response, PageError> {
    desk(user, Desk::Insurer, Names::local(&p)).await
}

async fn regulator_page(State(p): State<Arc<Portal>>, user: User) -> Result<Response, PageError> {
    desk(user, Desk::Regulator, Names::local(&p)).await
}

async fn set_policy(user: User, Form(f): Form<Vec<(String, String)>>) -> Response {
    let r = async {
        user.require(&[Role::Insurer])?;
        let patient = parse_account(field(&f, "patient"), "Patient")?;
        let coverage_bp = parse_coverage(field(&f, "coverage"))?;
        let approvers = form_approvers(&f)?;
        let expires_ms = match field(&f, "expires_days").trim() {
            "" => None,
            d => {
                let days: u64 = parse_number(d, "Expires (days)")?;
                if !(1..=MAX_POLICY_DAYS).contains(&days) {
                    return Err(PageError::BadRequest(format!(
                        "Expires (days): from 1 to {MAX_POLICY_DAYS}, or leave it empty for no expiry."
                    )));
                }
                Some(now_ms().saturating_add(days * 86_400_000))
            }
        };
        let levels = approvers.len();
        let t = user
            .call(move |s| {
                s.submit_one(TxPayload::SetPolicy {
                    patient,
                    coverage_bp,
                    approvers,
                    expires_ms,
                })
            })
            .await?;
        Ok((
            clinical::created(ItemKind::Policy, &t),
            patient,
            coverage_bp,
            levels,
        ))
    }
    .await;
    user.done(
        r,
        |(id, p, bp, n)| {
            format!(
                "Recorded policy {id} for {p}: {} covered, {n} approval level(s).",
                coverage_text(bp)
            )
        },
        "/insurer",
    )
}

async fn decide(user: User, desk: Desk, id: String, f: Vec<(String, String)>) -> Response {
    let r = async {
        user.require(&[desk.role()])?;
        let claim = parse_item(&id, ItemKind::Claim)?;
        let approve = match field(&f, "decision") {
            "approve" => true,
            "reject" => false,
            _ => return Err(PageError::BadRequest("Choose Approve or Reject.".into())),
        };
        let reason = field(&f, "reason").trim().to_string();
        if !approve && reason.is_empty() {
            return Err(PageError::BadRequest(
                "Give a reason to reject the claim (it is public on the ledger: no patient data)."
                    .into(),
            ));
        }
        let c: Claim = user
            .call(move |s| {
                s.submit_one(TxPayload::DecideClaim {
                    claim,
                    approve,
                    reason,
                })?;
                clinical::item(s, &claim)
            })
            .await?;
        Ok((approve, c))
    }
    .await;
    user.done(
        r,
        |(approve, c)| match (approve, c.status) {
            (false, _) => format!("Rejected claim {}: the claim is over.", c.id),
            (true, ClaimStatus::Approved) => format!(
                "Approved claim {} at the final level: the insurer paid {} tokens to {}; the patient owes {}.",
                c.id,
                c.share,
                c.payee,
                c.amount.saturating_sub(c.share)
            ),
            (true, _) => format!(
                "Approved claim {} at level {} of {}; it waits for {}.",
                c.id,
                c.decisions.len(),
                c.approvers.len(),
                c.next_approver()
                    .map_or("nobody".into(), |a| a.to_string())
            ),
        },
        desk.path(),
    )
}

async fn insurer_decide(
    user: User,
    Path(id): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    decide(user, Desk::Insurer, id, f).await
}

async fn regulator_decide(
    user: User,
    Path(id): Path<String>,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    decide(user, Desk::Regulator, id, f).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehrchain_types::{Hash, ItemId, items::ClaimDecision};

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn coverage_is_read_as_a_percentage() {
        assert_eq!(parse_coverage("80").unwrap(), 8000);
        assert_eq!(parse_coverage("80%").unwrap(), 8000);
        assert_eq!(parse_coverage(" 72.5 % ").unwrap(), 7250);
        assert_eq!(parse_coverage("0").unwrap(), 0);
        assert_eq!(parse_coverage("100").unwrap(), 10_000);
        assert!(parse_coverage("101").is_err());
        assert!(parse_coverage("-1").is_err());
        assert!(parse_coverage("most").is_err());
        assert!(parse_coverage("NaN").is_err());
        assert_eq!(coverage_text(8000), "80 %");
        assert_eq!(coverage_text(7250), "72.5 %");
        assert_eq!(coverage_text(1), "0.01 %");
    }

    #[test]
    fn approvers_come_in_level_order_without_gaps_or_repeats() {
        let a = AccountId([1; 20]);
        let b = AccountId([2; 20]);
        let got = form_approvers(&pairs(&[
            ("level2", &b.to_string()),
            ("level1", &a.to_string()),
            ("level3", ""),
        ]))
        .unwrap();
        assert_eq!(got, vec![a, b]);
        assert!(form_approvers(&pairs(&[("level1", ""), ("level2", "")])).is_err());
        assert!(
            form_approvers(&pairs(&[
                ("level1", &a.to_string()),
                ("level2", &a.to_string())
            ]))
            .is_err()
        );
        assert!(form_approvers(&pairs(&[("level1", "nobody")])).is_err());
    }

    #[test]
    fn a_claims_levels_show_each_state() {
        let (a, b, c) = (AccountId([1; 20]), AccountId([2; 20]), AccountId([3; 20]));
        let id = |k| ItemId::derive(k, &Hash([9; 32]));
        let mut claim = Claim {
            id: id(ItemKind::Claim),
            invoice: id(ItemKind::Invoice),
            policy: id(ItemKind::Policy),
            patient: c,
            insurer: a,
            payee: c,
            amount: 100,
            share: 80,
            approvers: vec![a, b],
            decisions: vec![ClaimDecision {
                approver: a,
                approve: true,
                time_ms: 0,
                reason: "ok".into(),
            }],
            status: ClaimStatus::Open,
            created_ms: 0,
        };
        let l = levels(&claim, &b);
        assert!(l[0].state.starts_with("approved") && l[0].state.ends_with(": ok"));
        assert_eq!(
            (l[1].state.as_str(), l[1].mine),
            ("waiting for this level", true)
        );
        claim.status = ClaimStatus::Rejected;
        claim.decisions[0].approve = false;
        let l = levels(&claim, &b);
        assert!(l[0].state.starts_with("rejected"));
        assert_eq!(l[1].state, "not reached");
    }
}
