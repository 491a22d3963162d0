//! Appointments, prescriptions, invoices, the wallet and insurance: the patient's side of the
//! clinical workflow (as the CLI's `appointment`, `rx`, `invoice`, `transfer`, `claim`).

use super::{Names, patient, when};
use crate::{
    Portal,
    web::{Ctx, PageError, User, render},
};
use askama::Template;
use axum::{Form, extract::State, response::Response};
use ehrchain_client::{
    Session,
    api::{AccountView, now_ms},
    clinical::{self, items},
    records,
    schemas::RxContent,
};
use ehrchain_types::{
    AccountId, ItemId, ItemKind, Role, TxPayload,
    entries::AccountStatus,
    items::{Claim, ClaimStatus, Invoice, InvoiceStatus, Policy, Prescription, Slot, SlotStatus},
};
use serde::Deserialize;
use std::sync::Arc;
use zeroize::Zeroizing;

fn parse_item(s: &str, kind: ItemKind) -> Result<ItemId, PageError> {
    let id: ItemId = s
        .trim()
        .parse()
        .map_err(|_| PageError::BadRequest(format!("That is not {} id.", kind.with_article())))?;
    if id.kind != kind {
        return Err(PageError::BadRequest(format!(
            "{id} is not {}.",
            kind.with_article()
        )));
    }
    Ok(id)
}

/// Submits one payload and flashes the outcome.
async fn act(
    user: &User,
    payload: Result<TxPayload, PageError>,
    ok: String,
    back: &str,
) -> Response {
    let r = async {
        patient(user)?;
        let p = payload?;
        user.call(move |s| s.submit_one(p)).await
    }
    .await;
    user.done(r, |_| ok, back)
}

// ---------- Appointments ----------

struct SlotRow {
    id: String,
    start: String,
    minutes: u32,
    fee: u64,
    doctor: String,
    status: &'static str,
    cancellable: bool,
}

#[derive(Template)]
#[template(path = "patient/appointments.html")]
struct AppointmentsTpl {
    ctx: Ctx,
    open: Vec<SlotRow>,
    mine: Vec<SlotRow>,
    balance: u64,
}

pub(super) async fn appointments_page(
    State(p): State<Arc<Portal>>,
    user: User,
) -> Result<Response, PageError> {
    patient(&user)?;
    let names = Names::local(&p);
    let (open, mine, balance, names) = user
        .call(move |s| {
            let open = clinical::open_slots(s, None)?;
            let mut mine: Vec<Slot> = items::<Slot>(s)?
                .into_iter()
                .filter(|x| x.patient == Some(s.me))
                .collect();
            mine.sort_by_key(|x| std::cmp::Reverse(x.start_ms));
            let balance = s.account(&s.me)?.account.balance;
            let mut names = names;
            names.resolve(s, open.iter().chain(mine.iter()).map(|x| x.doctor));
            Ok((open, mine, balance, names))
        })
        .await?;
    let row = |x: &Slot| SlotRow {
        id: x.id.to_string(),
        start: when(x.start_ms),
        minutes: x.minutes,
        fee: x.fee,
        doctor: names.of(&x.doctor),
        status: x.status.name(),
        cancellable: matches!(x.status, SlotStatus::Requested | SlotStatus::Confirmed),
    };
    Ok(render(AppointmentsTpl {
        ctx: user.ctx(),
        open: open.iter().map(row).collect(),
        mine: mine.iter().map(row).collect(),
        balance,
    }))
}

#[derive(Deserialize)]
pub(super) struct SlotForm {
    slot: String,
}

pub(super) async fn book(user: User, Form(f): Form<SlotForm>) -> Response {
    let id = parse_item(&f.slot, ItemKind::Slot);
    let ok = format!(
        "Booked {}: the fee is held in escrow until the appointment; the doctor confirms it.",
        f.slot.trim()
    );
    act(
        &user,
        id.map(|slot| TxPayload::Book { slot }),
        ok,
        "/patient/appointments",
    )
    .await
}

pub(super) async fn cancel(user: User, Form(f): Form<SlotForm>) -> Response {
    let id = parse_item(&f.slot, ItemKind::Slot);
    let ok = format!(
        "Cancelled {}: any fee held was refunded to you.",
        f.slot.trim()
    );
    act(
        &user,
        id.map(|slot| TxPayload::CancelBooking { slot }),
        ok,
        "/patient/appointments",
    )
    .await
}

// ---------- Prescriptions ----------

struct RxRow {
    id: String,
    created: String,
    status: &'static str,
    doctor: String,
    pharmacy: Option<String>,
    content: Option<RxContent>,
    problem: Option<String>,
    record: String,
    sendable: bool,
}

#[derive(Template)]
#[template(path = "patient/prescriptions.html")]
struct PrescriptionsTpl {
    ctx: Ctx,
    rows: Vec<RxRow>,
    pharmacists: Vec<(String, String)>,
}

/// Active, approved pharmacists (id, label).
fn pharmacists(s: &Session, names: &Names) -> ehrchain_client::Result<Vec<(AccountId, String)>> {
    let all: Vec<AccountView> = s.node.get("/api/v1/accounts?limit=1000&status=active")?;
    Ok(all
        .into_iter()
        .filter(|a| {
            a.account.role == Some(Role::Pharmacist) && a.account.status == AccountStatus::Active
        })
        .map(|a| {
            let name = names.of(&a.id);
            let org = a.account.organisation.unwrap_or_default();
            (
                a.id,
                if org.is_empty() {
                    name
                } else {
                    format!("{name} ({org})")
                },
            )
        })
        .collect())
}

pub(super) async fn prescriptions_page(
    State(p): State<Arc<Portal>>,
    user: User,
) -> Result<Response, PageError> {
    patient(&user)?;
    let names = Names::local(&p);
    let me = user.me.clone();
    let (rows, pharm) = user
        .call(move |s| {
            let mut list: Vec<Prescription> = items::<Prescription>(s)?
                .into_iter()
                .filter(|r| r.patient == s.me)
                .collect();
            list.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
            let mut names = names;
            names.resolve(
                s,
                list.iter()
                    .flat_map(|r| [Some(r.doctor), r.pharmacy])
                    .flatten(),
            );
            let mut rows = Vec::new();
            for r in &list {
                // The content is read with the audited read once per session, then kept.
                let cached = me
                    .plaintext
                    .lock()
                    .ok()
                    .and_then(|c| c.get(&r.record).cloned());
                let bytes = match cached {
                    Some(b) => Ok(b),
                    None => records::read_bytes(s, &r.record, None).map(|b| {
                        let b = Arc::new(Zeroizing::new(b));
                        if let Ok(mut c) = me.plaintext.lock() {
                            c.insert(r.record, b.clone());
                        }
                        b
                    }),
                };
                let (content, problem) = match bytes {
                    Ok(b) => match serde_json::from_slice::<RxContent>(&b) {
                        Ok(c) => (Some(c), None),
                        Err(_) => (None, Some("not in the prescription format".to_string())),
                    },
                    Err(e) => (None, Some(PageError::Sdk(e).message())),
                };
                rows.push(RxRow {
                    id: r.id.to_string(),
                    created: when(r.created_ms),
                    status: r.status.name(),
                    doctor: names.of(&r.doctor),
                    pharmacy: r.pharmacy.map(|p| names.of(&p)),
                    content,
                    problem,
                    record: r.record.to_string(),
                    sendable: r.status == ehrchain_types::items::RxStatus::Issued,
                });
            }
            let pharm = pharmacists(s, &names)?;
            Ok((rows, pharm))
        })
        .await?;
    Ok(render(PrescriptionsTpl {
        ctx: user.ctx(),
        rows,
        pharmacists: pharm.into_iter().map(|(a, l)| (a.to_string(), l)).collect(),
    }))
}

#[derive(Deserialize)]
pub(super) struct SendForm {
    rx: String,
    pharmacy: String,
}

pub(super) async fn send_rx(user: User, Form(f): Form<SendForm>) -> Response {
    let r = async {
        patient(&user)?;
        let id = parse_item(&f.rx, ItemKind::Prescription)?;
        let pharmacy: AccountId = f
            .pharmacy
            .trim()
            .parse()
            .map_err(|_| PageError::BadRequest("Choose a pharmacy.".into()))?;
        user.call(move |s| clinical::direct_prescription(s, &id, &pharmacy))
            .await?;
        Ok(format!(
            "Sent {id} to the pharmacy: its key is sealed to the pharmacist, who can now open and dispense it."
        ))
    }
    .await;
    user.done(r, |m| m, "/patient/prescriptions")
}

// ---------- Invoices ----------

struct InvoiceRow {
    id: String,
    created: String,
    status: &'static str,
    amount: u64,
    insurer_paid: u64,
    due: u64,
    payee: String,
    open_claim: Option<String>,
    payable: bool,
}

fn invoice_row(i: &Invoice, names: &Names) -> InvoiceRow {
    InvoiceRow {
        id: i.id.to_string(),
        created: when(i.created_ms),
        status: i.status.name(),
        amount: i.amount,
        insurer_paid: i.insurer_paid,
        due: i.due(),
        payee: names.of(&i.payee),
        open_claim: i.open_claim.map(|c| c.to_string()),
        payable: i.status == InvoiceStatus::Unpaid && i.open_claim.is_none() && i.due() > 0,
    }
}

#[derive(Template)]
#[template(path = "patient/invoices.html")]
struct InvoicesTpl {
    ctx: Ctx,
    rows: Vec<InvoiceRow>,
    balance: u64,
}

fn my_invoices(s: &Session) -> ehrchain_client::Result<Vec<Invoice>> {
    let mut list: Vec<Invoice> = items::<Invoice>(s)?
        .into_iter()
        .filter(|i| i.patient == s.me)
        .collect();
    list.sort_by_key(|i| std::cmp::Reverse(i.created_ms));
    Ok(list)
}

pub(super) async fn invoices_page(
    State(p): State<Arc<Portal>>,
    user: User,
) -> Result<Response, PageError> {
    patient(&user)?;
    let names = Names::local(&p);
    let (list, balance, names) = user
        .call(move |s| {
            let list = my_invoices(s)?;
            let mut names = names;
            names.resolve(s, list.iter().map(|i| i.payee));
            Ok((list, s.account(&s.me)?.account.balance, names))
        })
        .await?;
    Ok(render(InvoicesTpl {
        ctx: user.ctx(),
        rows: list.iter().map(|i| invoice_row(i, &names)).collect(),
        balance,
    }))
}

#[derive(Deserialize)]
pub(super) struct InvoiceForm {
    invoice: String,
}

pub(super) async fn pay(user: User, Form(f): Form<InvoiceForm>) -> Response {
    let r = async {
        patient(&user)?;
        let id = parse_item(&f.invoice, ItemKind::Invoice)?;
        let due = user
            .call(move |s| {
                let inv: Invoice = clinical::item(s, &id)?;
                s.submit_one(TxPayload::PayInvoice { invoice: id })?;
                Ok(inv.due())
            })
            .await?;
        Ok(format!("Paid {due} tokens on {id}."))
    }
    .await;
    user.done(r, |m| m, "/patient/invoices")
}

// ---------- Wallet ----------

#[derive(Template)]
#[template(path = "patient/wallet.html")]
struct WalletTpl {
    ctx: Ctx,
    account: String,
    balance: u64,
    local_names: Vec<String>,
}

pub(super) async fn wallet_page(
    State(p): State<Arc<Portal>>,
    user: User,
) -> Result<Response, PageError> {
    patient(&user)?;
    let names = Names::local(&p);
    let balance = user.call(|s| Ok(s.account(&s.me)?.account.balance)).await?;
    Ok(render(WalletTpl {
        ctx: user.ctx(),
        account: user.me.account().to_string(),
        balance,
        local_names: super::professional_names(&user, &names).await,
    }))
}

#[derive(Deserialize)]
pub(super) struct TransferForm {
    to: String,
    amount: String,
}

/// A positive whole number of tokens.
pub(super) fn parse_amount(s: &str) -> Result<u64, PageError> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err(PageError::BadRequest("The amount must be positive.".into())),
        Ok(n) => Ok(n),
        Err(_) => Err(PageError::BadRequest(format!(
            "{:?} is not a whole number of tokens.",
            s.trim()
        ))),
    }
}

pub(super) async fn transfer(
    State(p): State<Arc<Portal>>,
    user: User,
    Form(f): Form<TransferForm>,
) -> Response {
    let r = async {
        patient(&user)?;
        let names = Names::local(&p);
        let to = super::named_professional(&user, names.account_of(&f.to)?, &f.to).await?;
        let amount = parse_amount(&f.amount)?;
        if to == user.me.account() {
            return Err(PageError::BadRequest("That is your own account.".into()));
        }
        user.call(move |s| s.submit_one(TxPayload::Transfer { to, amount }))
            .await?;
        Ok(format!("Sent {amount} tokens to {to}."))
    }
    .await;
    user.done(r, |m| m, "/patient/wallet")
}

// ---------- Insurance ----------

struct PolicyRow {
    id: String,
    insurer: String,
    coverage: String,
    levels: Vec<String>,
    expiry: String,
    in_force: bool,
}

struct LevelRow {
    level: usize,
    approver: String,
    state: String,
    class: &'static str,
}

struct ClaimRow {
    id: String,
    created: String,
    status: &'static str,
    invoice: String,
    amount: u64,
    share: u64,
    levels: Vec<LevelRow>,
    open: bool,
}

#[derive(Template)]
#[template(path = "patient/insurance.html")]
struct InsuranceTpl {
    ctx: Ctx,
    policies: Vec<PolicyRow>,
    claims: Vec<ClaimRow>,
    claimable: Vec<(String, String)>,
    policy_choices: Vec<(String, String)>,
}

/// Each level of a claim: who decides it and where it stands.
fn claim_levels(c: &Claim, names: &Names) -> Vec<LevelRow> {
    c.approvers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (state, class) = crate::insurance::level_state(c, i);
            LevelRow {
                level: i + 1,
                approver: names.of(a),
                state,
                class,
            }
        })
        .collect()
}

pub(super) async fn insurance_page(
    State(p): State<Arc<Portal>>,
    user: User,
) -> Result<Response, PageError> {
    patient(&user)?;
    let names = Names::local(&p);
    let (policies, claims, invoices, names) = user
        .call(move |s| {
            let policies: Vec<Policy> = items::<Policy>(s)?
                .into_iter()
                .filter(|x| x.patient == s.me)
                .collect();
            let mut claims: Vec<Claim> = items::<Claim>(s)?
                .into_iter()
                .filter(|x| x.patient == s.me)
                .collect();
            claims.sort_by_key(|c| std::cmp::Reverse(c.created_ms));
            let invoices = my_invoices(s)?;
            let mut names = names;
            names.resolve(
                s,
                policies
                    .iter()
                    .flat_map(|p| std::iter::once(p.insurer).chain(p.approvers.iter().copied()))
                    .chain(claims.iter().flat_map(|c| c.approvers.iter().copied()))
                    .collect::<Vec<_>>(),
            );
            Ok((policies, claims, invoices, names))
        })
        .await?;
    let now = now_ms();
    let policy_rows = policies
        .iter()
        .map(|x| PolicyRow {
            id: x.id.to_string(),
            insurer: names.of(&x.insurer),
            coverage: format!("{:.2} %", f64::from(x.coverage_bp) / 100.0),
            levels: x.approvers.iter().map(|a| names.of(a)).collect(),
            expiry: match x.expires_ms {
                Some(e) => when(e),
                None => "no expiry".into(),
            },
            in_force: x.in_force(now),
        })
        .collect();
    let claim_rows = claims
        .iter()
        .map(|c| ClaimRow {
            id: c.id.to_string(),
            created: when(c.created_ms),
            status: c.status.name(),
            invoice: c.invoice.to_string(),
            amount: c.amount,
            share: c.share,
            levels: claim_levels(c, &names),
            open: c.status == ClaimStatus::Open,
        })
        .collect();
    let claimable = invoices
        .iter()
        .filter(|i| {
            i.status == InvoiceStatus::Unpaid && i.open_claim.is_none() && i.insurer_paid == 0
        })
        .map(|i| {
            (
                i.id.to_string(),
                format!("{} · {} tokens · {}", i.id, i.amount, when(i.created_ms)),
            )
        })
        .collect();
    let policy_choices = policies
        .iter()
        .filter(|x| x.in_force(now))
        .map(|x| {
            (
                x.id.to_string(),
                format!(
                    "{} · {} · covers {:.2} %",
                    x.id,
                    names.of(&x.insurer),
                    f64::from(x.coverage_bp) / 100.0
                ),
            )
        })
        .collect();
    Ok(render(InsuranceTpl {
        ctx: user.ctx(),
        policies: policy_rows,
        claims: claim_rows,
        claimable,
        policy_choices,
    }))
}

#[derive(Deserialize)]
pub(super) struct ClaimForm {
    invoice: String,
    #[serde(default)]
    policy: String,
}

pub(super) async fn claim(user: User, Form(f): Form<ClaimForm>) -> Response {
    let r = async {
        patient(&user)?;
        let invoice = parse_item(&f.invoice, ItemKind::Invoice)?;
        let policy = if f.policy.trim().is_empty() {
            None
        } else {
            Some(parse_item(&f.policy, ItemKind::Policy)?)
        };
        let (id, policy) = user
            .call(move |s| {
                let policy = clinical::claim_policy(s, policy)?;
                let t = s.submit_one(TxPayload::SubmitClaim { invoice, policy })?;
                Ok((ItemId::derive(ItemKind::Claim, &t.id), policy))
            })
            .await?;
        Ok(format!(
            "Claimed {invoice} under {policy}: claim {id} waits for its first approval level."
        ))
    }
    .await;
    user.done(r, |m| m, "/patient/insurance")
}

#[derive(Deserialize)]
pub(super) struct WithdrawForm {
    claim: String,
}

pub(super) async fn withdraw(user: User, Form(f): Form<WithdrawForm>) -> Response {
    let id = parse_item(&f.claim, ItemKind::Claim);
    let ok = format!(
        "Withdrew {}: the invoice can be paid in full.",
        f.claim.trim()
    );
    act(
        &user,
        id.map(|claim| TxPayload::WithdrawClaim { claim }),
        ok,
        "/patient/insurance",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_positive_whole_numbers() {
        assert_eq!(parse_amount(" 25 ").unwrap(), 25);
        assert!(parse_amount("0").is_err());
        assert!(parse_amount("-4").is_err());
        assert!(parse_amount("2.5").is_err());
        assert!(parse_amount("lots").is_err());
    }

    #[test]
    fn item_ids_must_be_of_the_kind_asked() {
        let tx = ehrchain_types::Hash([3; 32]);
        let slot = ItemId::derive(ItemKind::Slot, &tx);
        assert_eq!(parse_item(&slot.to_string(), ItemKind::Slot).unwrap(), slot);
        assert!(parse_item(&slot.to_string(), ItemKind::Invoice).is_err());
        assert!(parse_item("nonsense", ItemKind::Slot).is_err());
    }

    #[test]
    fn claim_levels_show_each_decision_and_the_one_waiting() {
        let a = AccountId([1; 20]);
        let b = AccountId([2; 20]);
        let c = AccountId([3; 20]);
        let claim = Claim {
            id: ItemId::derive(ItemKind::Claim, &ehrchain_types::Hash([1; 32])),
            invoice: ItemId::derive(ItemKind::Invoice, &ehrchain_types::Hash([2; 32])),
            policy: ItemId::derive(ItemKind::Policy, &ehrchain_types::Hash([3; 32])),
            patient: a,
            insurer: b,
            payee: c,
            amount: 100,
            share: 80,
            approvers: vec![b, c, a],
            decisions: vec![ehrchain_types::items::ClaimDecision {
                approver: b,
                approve: true,
                time_ms: 0,
                reason: "ok".into(),
            }],
            status: ClaimStatus::Open,
            created_ms: 0,
        };
        let levels = claim_levels(&claim, &Names::default());
        assert_eq!(levels.len(), 3);
        assert!(levels[0].state.starts_with("approved") && levels[0].state.ends_with(": ok"));
        assert_eq!(levels[1].state, "waiting for this level");
        assert_eq!(levels[2].state, "not reached");
    }
}
