//! The clinical workflow commands: appointments, symptom reports, prescriptions, invoices,
//! insurance policies and claims. Medical content (symptoms, the drug and its dose) is
//! encrypted here into records; the ledger sees who, which record, what state and how many
//! tokens.

use crate::{Ctx, KeyArg, parse_duration, session, tx_line, when};
use anyhow::{anyhow, bail};
use clap::Subcommand;
use ehrchain_client::{
    self as sdk, Session,
    api::{TxView, now_ms},
    clinical::{item, items},
    schemas::RxContent,
};
use ehrchain_types::{
    AccountId, ItemId, ItemKind, TxPayload,
    items::{Claim, ClaimStatus, Invoice, Policy, Prescription, Report, Slot},
};
use serde::Serialize;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Subcommand)]
pub enum AppointmentCmd {
    /// Publish and list appointment slots.
    #[command(subcommand)]
    Slots(SlotsCmd),
    /// Your appointments (as doctor or patient), with their state.
    List {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Book an open slot; its fee is held in escrow until the appointment is completed.
    Book {
        #[command(flatten)]
        key: KeyArg,
        slot: String,
    },
    /// Confirm a booking of one of your slots (doctor).
    Confirm {
        #[command(flatten)]
        key: KeyArg,
        slot: String,
    },
    /// Decline a booking of one of your slots: the fee goes back to the patient (doctor).
    Decline {
        #[command(flatten)]
        key: KeyArg,
        slot: String,
    },
    /// Cancel before the start: the patient is refunded (the patient frees the slot; the
    /// doctor withdraws it).
    Cancel {
        #[command(flatten)]
        key: KeyArg,
        slot: String,
    },
    /// Complete a confirmed appointment that has started: the fee is paid to you (doctor).
    Complete {
        #[command(flatten)]
        key: KeyArg,
        slot: String,
    },
}

#[derive(Subcommand)]
pub enum SlotsCmd {
    /// Publish a slot (doctor).
    Add {
        #[command(flatten)]
        key: KeyArg,
        /// Start time, RFC 3339 (e.g. 2026-12-01T09:30:00Z).
        #[arg(
            long,
            conflicts_with = "starts_in",
            required_unless_present = "starts_in"
        )]
        at: Option<String>,
        /// Start in this long from now (e.g. 90s, 30m, 2h, 1d).
        #[arg(long = "in")]
        starts_in: Option<String>,
        #[arg(long, default_value_t = 30)]
        minutes: u32,
        /// Fee in tokens, held in escrow from booking to completion.
        #[arg(long)]
        fee: u64,
    },
    /// Open slots that have not started, of every doctor or one.
    List {
        #[command(flatten)]
        key: KeyArg,
        #[arg(long)]
        doctor: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum SymptomsCmd {
    /// Send a doctor your symptoms: stored as an encrypted notes record the doctor may read.
    Report {
        #[command(flatten)]
        key: KeyArg,
        /// The doctor (ehr… id or key name).
        #[arg(long)]
        to: String,
        /// Symptoms, comma-separated (e.g. fever,cough,fatigue).
        #[arg(long)]
        symptoms: String,
        /// A free-text description.
        #[arg(long)]
        note: Option<String>,
        /// If the doctor cannot read your notes yet, grant them read access to your notes
        /// records for this long (e.g. 30d); without it the report is refused until you
        /// grant access yourself.
        #[arg(long)]
        grant_for: Option<String>,
    },
    /// Symptom reports you sent or received, with the symptoms when you may read them.
    Inbox {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Read one report in full (an audited read of its record).
    Show {
        #[command(flatten)]
        key: KeyArg,
        report: String,
    },
}

#[derive(Subcommand)]
pub enum RxCmd {
    /// Prescribe (doctor with write consent to the patient's medication records).
    Create {
        #[command(flatten)]
        key: KeyArg,
        #[arg(long)]
        patient: String,
        #[arg(long)]
        drug: String,
        /// e.g. "500 mg three times a day".
        #[arg(long)]
        dose: String,
        #[arg(long)]
        days: u32,
        #[arg(long)]
        quantity: u32,
        /// Direct it to this pharmacy now (else the patient does, with `rx send`).
        #[arg(long)]
        pharmacy: Option<String>,
        /// A note to the patient and pharmacist.
        #[arg(long)]
        note: Option<String>,
    },
    /// Direct one of your prescriptions to a pharmacy (patient).
    Send {
        #[command(flatten)]
        key: KeyArg,
        rx: String,
        #[arg(long)]
        pharmacy: String,
    },
    /// Dispense a prescription directed to you, once; this issues an invoice (pharmacist).
    Dispense {
        #[command(flatten)]
        key: KeyArg,
        rx: String,
        /// Price in tokens.
        #[arg(long)]
        price: u64,
    },
    /// Prescriptions you wrote, received or were sent to dispense.
    List {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Read one prescription in full (an audited read of its record).
    Show {
        #[command(flatten)]
        key: KeyArg,
        rx: String,
    },
}

#[derive(Subcommand)]
pub enum InvoiceCmd {
    /// Invoices addressed to you or issued by you.
    List {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Pay what you owe on an invoice (after any insurer's share), in full, once.
    Pay {
        #[command(flatten)]
        key: KeyArg,
        invoice: String,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Record a policy for a patient (insurer).
    Set {
        #[command(flatten)]
        key: KeyArg,
        #[arg(long)]
        patient: String,
        /// The share of each claim the insurer pays, e.g. 80 or 80% or 72.5%.
        #[arg(long)]
        coverage: String,
        /// Who approves a claim at each level, in order (ehr… ids or key names), e.g.
        /// insurer-officer,regulator.
        #[arg(long)]
        approvers: String,
        /// e.g. 365d.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Policies covering you, recorded by you, or that you approve claims for.
    List {
        #[command(flatten)]
        key: KeyArg,
    },
}

#[derive(Subcommand)]
pub enum ClaimCmd {
    /// Claim an unpaid invoice under your policy (patient).
    Submit {
        #[command(flatten)]
        key: KeyArg,
        invoice: String,
        /// The policy (default: your only policy in force).
        #[arg(long)]
        policy: Option<String>,
    },
    /// Approve a claim at your level.
    Approve {
        #[command(flatten)]
        key: KeyArg,
        claim: String,
        /// Public on the ledger: no patient data.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reject a claim at your level: this ends it.
    Reject {
        #[command(flatten)]
        key: KeyArg,
        claim: String,
        /// Public on the ledger: no patient data.
        #[arg(long)]
        reason: String,
    },
    /// Withdraw your open claim (e.g. one nobody decides), so you can pay the invoice.
    Withdraw {
        #[command(flatten)]
        key: KeyArg,
        claim: String,
    },
    /// Claims you submitted, decide, or are paid by.
    List {
        #[command(flatten)]
        key: KeyArg,
    },
}

pub(crate) fn parse_item(s: &str, kind: ItemKind) -> anyhow::Result<ItemId> {
    ItemId::parse_kind(s, kind).map_err(|e| anyhow!("invalid {} id: {e}", kind.word()))
}

/// Submits one payload, waits for finality, and prints `what` with the transaction.
fn act(ctx: &Ctx, s: &Session, payload: TxPayload, what: &str) -> anyhow::Result<TxView> {
    let t = s.submit_one(payload)?;
    ctx.print(&serde_json::to_value(&t)?, || {
        format!("{what}\n{}", tx_line(&t))
    });
    Ok(t)
}

/// Prints the id of the item a transaction created, with the transaction.
pub(crate) fn created(ctx: &Ctx, t: &TxView, id: ItemId, what: String) -> anyhow::Result<()> {
    ctx.print(&json!({"id": id, "tx": t}), || {
        format!("{what} {id}\n{}", tx_line(t))
    });
    Ok(())
}

pub(crate) fn short(a: &AccountId) -> String {
    let s = a.to_string();
    format!("{}…", &s[..11])
}

/// Prints a list as JSON, or one line per entry (or `empty`).
pub(crate) fn print_list<T: Serialize>(
    ctx: &Ctx,
    list: &[T],
    empty: &str,
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    ctx.print(&serde_json::to_value(list)?, || {
        if list.is_empty() {
            empty.to_string()
        } else {
            list.iter().map(line).collect::<Vec<_>>().join("\n")
        }
    });
    Ok(())
}

pub fn run_appointment(ctx: &Ctx, cmd: AppointmentCmd) -> anyhow::Result<()> {
    let slot_tx = |key: &KeyArg, slot: &str, make: fn(ItemId) -> TxPayload, what: &str| {
        let id = parse_item(slot, ItemKind::Slot)?;
        let s = session(ctx, key)?;
        act(ctx, &s, make(id), &format!("{what} {id}")).map(|_| ())
    };
    match cmd {
        AppointmentCmd::Slots(SlotsCmd::Add {
            key,
            at,
            starts_in,
            minutes,
            fee,
        }) => {
            let start_ms = match (at, starts_in) {
                (Some(at), _) => {
                    let t = humantime::parse_rfc3339_weak(&at).map_err(|e| {
                        anyhow!("invalid --at {at:?}: {e} (example: 2026-12-01T09:30:00Z)")
                    })?;
                    t.duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64
                }
                (None, Some(d)) => now_ms() + parse_duration(&d)?.as_millis() as u64,
                (None, None) => bail!("give the start with --at TIME or --in DURATION"),
            };
            let s = session(ctx, &key)?;
            let t = s
                .submit(vec![TxPayload::AddSlot {
                    start_ms,
                    minutes,
                    fee,
                }])?
                .remove(0);
            let id = ItemId::derive(ItemKind::Slot, &t.id);
            created(
                ctx,
                &t,
                id,
                format!(
                    "published a {minutes}-minute slot at {} for {fee} tokens:",
                    when(start_ms)
                ),
            )
        }
        AppointmentCmd::Slots(SlotsCmd::List { key, doctor }) => {
            let doctor = doctor.map(|d| ctx.resolve(&d)).transpose()?;
            let s = session(ctx, &key)?;
            let slots = sdk::clinical::open_slots(&s, doctor.as_ref())?;
            print_list(ctx, &slots, "no open slots", |x| {
                format!(
                    "{}  {}  {:>4} min  {:>6} tokens  doctor {}",
                    x.id,
                    when(x.start_ms),
                    x.minutes,
                    x.fee,
                    x.doctor
                )
            })
        }
        AppointmentCmd::List { key } => {
            let s = session(ctx, &key)?;
            let mut slots: Vec<Slot> = items(&s)?;
            slots.sort_by_key(|s| s.start_ms);
            print_list(ctx, &slots, "no appointments or slots", |x| {
                let with = match (x.doctor == s.me, x.patient) {
                    (true, Some(p)) => format!("patient {p}"),
                    (true, None) => "no booking".into(),
                    (false, _) => format!("doctor {}", x.doctor),
                };
                format!(
                    "{}  {}  {:>4} min  {:>6} tokens  {:<10} {with}",
                    x.id,
                    when(x.start_ms),
                    x.minutes,
                    x.fee,
                    x.status.name()
                )
            })
        }
        AppointmentCmd::Book { key, slot } => slot_tx(
            &key,
            &slot,
            |slot| TxPayload::Book { slot },
            "booked (fee held in escrow; waits for the doctor to confirm):",
        ),
        AppointmentCmd::Confirm { key, slot } => slot_tx(
            &key,
            &slot,
            |slot| TxPayload::AnswerBooking {
                slot,
                confirm: true,
            },
            "confirmed",
        ),
        AppointmentCmd::Decline { key, slot } => slot_tx(
            &key,
            &slot,
            |slot| TxPayload::AnswerBooking {
                slot,
                confirm: false,
            },
            "declined (fee refunded to the patient):",
        ),
        AppointmentCmd::Cancel { key, slot } => slot_tx(
            &key,
            &slot,
            |slot| TxPayload::CancelBooking { slot },
            "cancelled (any fee refunded to the patient):",
        ),
        AppointmentCmd::Complete { key, slot } => slot_tx(
            &key,
            &slot,
            |slot| TxPayload::CompleteAppointment { slot },
            "completed (fee paid to the doctor):",
        ),
    }
}

pub fn run_symptoms(ctx: &Ctx, cmd: SymptomsCmd) -> anyhow::Result<()> {
    match cmd {
        SymptomsCmd::Report {
            key,
            to,
            symptoms,
            note,
            grant_for,
        } => {
            let doctor = ctx.resolve(&to)?;
            let list = sdk::schemas::parse_symptoms(&symptoms);
            if list.is_empty() {
                bail!("--symptoms needs at least one symptom, e.g. --symptoms fever,cough");
            }
            let grant_secs = grant_for.as_deref().map(parse_duration).transpose()?;
            let s = session(ctx, &key)?;
            let sent = match sdk::clinical::report_symptoms(&s, &doctor, list, note, grant_secs) {
                Err(sdk::Error::NoGrant { .. }) => bail!(
                    "{doctor} cannot read your notes records: add --grant-for 30d to grant read access to your notes for 30 days, or grant it yourself (ehrchain access grant --to {doctor} --categories notes --expires 30d)"
                ),
                other => other?,
            };
            let (id, t, granted) = (sent.id, &sent.tx, sent.granted_notes);
            ctx.print(
                &json!({"id": id, "record": sent.record, "granted_notes": granted, "tx": t}),
                || {
                    let mut out = format!(
                        "sent symptom report {id} to {doctor}\nrecord: {} (encrypted notes)",
                        sent.record
                    );
                    if granted {
                        out += &format!(
                            "\ngranted {doctor} read access to your notes for {}",
                            grant_for.as_deref().unwrap_or_default()
                        );
                    }
                    format!("{out}\n{}", tx_line(t))
                },
            );
            Ok(())
        }
        SymptomsCmd::Inbox { key } => {
            let s = session(ctx, &key)?;
            let mut reports: Vec<Report> = items(&s)?;
            reports.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
            let shown: Vec<Value> = reports
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    v["title"] = json!(sdk::clinical::title(&s, &r.record, None));
                    v
                })
                .collect();
            print_list(ctx, &shown, "no symptom reports", |v| {
                let r: Report = serde_json::from_value(v.clone()).expect("a report");
                let who = if r.doctor == s.me {
                    format!("from {}", r.patient)
                } else {
                    format!("to {}", r.doctor)
                };
                format!(
                    "{}  {}  {who}  {}",
                    r.id,
                    when(r.created_ms),
                    v["title"].as_str().unwrap_or("(no longer readable)")
                )
            })
        }
        SymptomsCmd::Show { key, report } => {
            let id = parse_item(&report, ItemKind::Report)?;
            let s = session(ctx, &key)?;
            let opened = sdk::clinical::open_report(&s, &id)?;
            let (r, content, suggestion, unknown) = (
                &opened.report,
                &opened.content,
                &opened.suggestion,
                &opened.symptoms_not_in_model,
            );
            ctx.print(
                &json!({"report": r, "content": content, "suggestion": suggestion, "symptoms_not_in_model": unknown}),
                || {
                    let mut out = format!(
                        "symptom report {id}\nfrom:     {}\nto:       {}\nsent:     {}\nsymptoms: {}\nnote:     {}",
                        r.patient,
                        r.doctor,
                        when(r.created_ms),
                        content.symptoms.join(", "),
                        content.note.as_deref().unwrap_or("-")
                    );
                    if let Some(p) = &suggestion {
                        out += &format!("\n\n{}", crate::ml::render(p));
                        if !unknown.is_empty() {
                            out += &format!("\n(not in the model: {})", unknown.join(", "));
                        }
                    }
                    out
                },
            );
            Ok(())
        }
    }
}

pub fn run_rx(ctx: &Ctx, cmd: RxCmd) -> anyhow::Result<()> {
    match cmd {
        RxCmd::Create {
            key,
            patient,
            drug,
            dose,
            days,
            quantity,
            pharmacy,
            note,
        } => {
            if days == 0 || quantity == 0 {
                bail!("--days and --quantity must be positive");
            }
            let patient = ctx.resolve(&patient)?;
            let pharmacy = pharmacy.map(|p| ctx.resolve(&p)).transpose()?;
            let s = session(ctx, &key)?;
            let content = RxContent {
                drug: drug.clone(),
                dose: dose.clone(),
                days,
                quantity,
                note,
                prescriber: s.me,
                written_ms: now_ms(),
            };
            let p = sdk::clinical::prescribe(&s, &patient, &content, pharmacy.as_ref())?;
            let (id, t) = (p.id, &p.tx);
            ctx.print(&json!({"id": id, "record": p.record, "tx": t}), || {
                format!(
                    "prescription {id}: {drug}, {dose}, {days} days, quantity {quantity}\nrecord: {} (encrypted medication record; it waits for the patient's approval to enter the chart)\npharmacy: {}\n{}",
                    p.record,
                    pharmacy.map_or("none yet (the patient directs it: ehrchain rx send)".into(), |p| p.to_string()),
                    tx_line(t)
                )
            });
            Ok(())
        }
        RxCmd::Send { key, rx, pharmacy } => {
            let id = parse_item(&rx, ItemKind::Prescription)?;
            let pharmacy = ctx.resolve(&pharmacy)?;
            let s = session(ctx, &key)?;
            let t = sdk::clinical::direct_prescription(&s, &id, &pharmacy)?;
            ctx.print(&serde_json::to_value(&t)?, || {
                format!("prescription {id} directed to {pharmacy}\n{}", tx_line(&t))
            });
            Ok(())
        }
        RxCmd::Dispense { key, rx, price } => {
            let id = parse_item(&rx, ItemKind::Prescription)?;
            let s = session(ctx, &key)?;
            let t = s.submit_one(TxPayload::Dispense { rx: id, price })?;
            let inv = ItemId::derive(ItemKind::Invoice, &t.id);
            ctx.print(&json!({"rx": id, "invoice": inv, "tx": t}), || {
                format!(
                    "dispensed {id}\ninvoice {inv}: {price} tokens, addressed to the patient\n{}",
                    tx_line(&t)
                )
            });
            Ok(())
        }
        RxCmd::List { key } => {
            let s = session(ctx, &key)?;
            let mut list: Vec<Prescription> = items(&s)?;
            list.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
            let shown: Vec<Value> = list
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    v["title"] = json!(sdk::clinical::title(&s, &r.record, Some(r)));
                    v
                })
                .collect();
            print_list(ctx, &shown, "no prescriptions", |v| {
                let r: Prescription = serde_json::from_value(v.clone()).expect("a prescription");
                format!(
                    "{}  {}  {:<9}  patient {}  doctor {}  pharmacy {}  {}",
                    r.id,
                    when(r.created_ms),
                    r.status.name(),
                    short(&r.patient),
                    short(&r.doctor),
                    r.pharmacy.as_ref().map_or("-".into(), short),
                    v["title"].as_str().unwrap_or("(not readable)")
                )
            })
        }
        RxCmd::Show { key, rx } => {
            let id = parse_item(&rx, ItemKind::Prescription)?;
            let s = session(ctx, &key)?;
            let (r, content) = sdk::clinical::open_prescription(&s, &id)?;
            ctx.print(&json!({"rx": r, "content": content}), || {
                format!(
                    "prescription {id} ({})\ndrug:     {}\ndose:     {}\ndays:     {}\nquantity: {}\nnote:     {}\npatient:  {}\ndoctor:   {}\npharmacy: {}",
                    r.status.name(),
                    content.drug,
                    content.dose,
                    content.days,
                    content.quantity,
                    content.note.as_deref().unwrap_or("-"),
                    r.patient,
                    r.doctor,
                    r.pharmacy.map_or("-".into(), |p| p.to_string())
                )
            });
            Ok(())
        }
    }
}

pub fn run_invoice(ctx: &Ctx, cmd: InvoiceCmd) -> anyhow::Result<()> {
    match cmd {
        InvoiceCmd::List { key } => {
            let s = session(ctx, &key)?;
            let mut list: Vec<Invoice> = items(&s)?;
            list.sort_by_key(|i| std::cmp::Reverse(i.created_ms));
            print_list(ctx, &list, "no invoices", |i| {
                format!(
                    "{}  {}  {:<6}  amount {:>6}  insurer paid {:>6}  due {:>6}  patient {}  payee {}{}",
                    i.id,
                    when(i.created_ms),
                    i.status.name(),
                    i.amount,
                    i.insurer_paid,
                    i.due(),
                    short(&i.patient),
                    short(&i.payee),
                    i.open_claim
                        .map_or(String::new(), |c| format!("  claim {c} open"))
                )
            })
        }
        InvoiceCmd::Pay { key, invoice } => {
            let id = parse_item(&invoice, ItemKind::Invoice)?;
            let s = session(ctx, &key)?;
            let inv: Invoice = item(&s, &id)?;
            act(
                ctx,
                &s,
                TxPayload::PayInvoice { invoice: id },
                &format!("paid {} tokens on {id} to {}", inv.due(), inv.payee),
            )?;
            Ok(())
        }
    }
}

/// Parses a coverage share (`80`, `80%`, `72.5%`) into basis points.
pub fn parse_coverage(s: &str) -> anyhow::Result<u16> {
    let t = s.trim().trim_end_matches('%').trim();
    let pct: f64 = t
        .parse()
        .map_err(|_| anyhow!("invalid coverage {s:?} (examples: 80, 80%, 72.5%)"))?;
    if !(0.0..=100.0).contains(&pct) {
        bail!("coverage is between 0 % and 100 %, not {s}");
    }
    Ok((pct * 100.0).round() as u16)
}

pub fn run_policy(ctx: &Ctx, cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Set {
            key,
            patient,
            coverage,
            approvers,
            expires,
        } => {
            let patient = ctx.resolve(&patient)?;
            let coverage_bp = parse_coverage(&coverage)?;
            let approvers = approvers
                .split(',')
                .filter(|a| !a.trim().is_empty())
                .map(|a| ctx.resolve(a.trim()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let expires_ms = expires
                .as_deref()
                .map(parse_duration)
                .transpose()?
                .map(|d: Duration| now_ms() + d.as_millis() as u64);
            let s = session(ctx, &key)?;
            let t = s
                .submit(vec![TxPayload::SetPolicy {
                    patient,
                    coverage_bp,
                    approvers: approvers.clone(),
                    expires_ms,
                }])?
                .remove(0);
            let id = ItemId::derive(ItemKind::Policy, &t.id);
            created(
                ctx,
                &t,
                id,
                format!(
                    "recorded a policy for {patient}: {:.2} % covered, {} approval level(s):",
                    f64::from(coverage_bp) / 100.0,
                    approvers.len()
                ),
            )
        }
        PolicyCmd::List { key } => {
            let s = session(ctx, &key)?;
            let list: Vec<Policy> = items(&s)?;
            let now = now_ms();
            print_list(ctx, &list, "no policies", |p| {
                format!(
                    "{}  patient {}  insurer {}  covers {:.2} %  approvers {}  {}",
                    p.id,
                    short(&p.patient),
                    short(&p.insurer),
                    f64::from(p.coverage_bp) / 100.0,
                    p.approvers
                        .iter()
                        .map(short)
                        .collect::<Vec<_>>()
                        .join(" → "),
                    match p.expires_ms {
                        _ if !p.in_force(now) => "expired".to_string(),
                        Some(e) => format!("until {}", when(e)),
                        None => "no expiry".into(),
                    }
                )
            })
        }
    }
}

pub fn run_claim(ctx: &Ctx, cmd: ClaimCmd) -> anyhow::Result<()> {
    let decide = |key: &KeyArg, claim: &str, approve: bool, reason: String| {
        let id = parse_item(claim, ItemKind::Claim)?;
        let s = session(ctx, key)?;
        let c: Claim = item(&s, &id)?;
        let level = c.decisions.len() + 1;
        let last = level == c.approvers.len();
        let what = match (approve, last) {
            (true, true) if c.status == ClaimStatus::Open => format!(
                "approved {id} at the final level {level}: the insurer pays {} tokens to {}; the patient owes {}",
                c.share,
                c.payee,
                c.amount - c.share
            ),
            (true, false) => format!(
                "approved {id} at level {level} of {}; it waits for {}",
                c.approvers.len(),
                c.approvers
                    .get(level)
                    .map_or("nobody".into(), |a| a.to_string())
            ),
            (true, true) => format!("decided {id}"),
            (false, _) => format!("rejected {id} at level {level}: the claim is over"),
        };
        act(
            ctx,
            &s,
            TxPayload::DecideClaim {
                claim: id,
                approve,
                reason,
            },
            &what,
        )
        .map(|_| ())
    };
    match cmd {
        ClaimCmd::Submit {
            key,
            invoice,
            policy,
        } => {
            let invoice = parse_item(&invoice, ItemKind::Invoice)?;
            let s = session(ctx, &key)?;
            let policy = policy
                .map(|p| parse_item(&p, ItemKind::Policy))
                .transpose()?;
            let policy = sdk::clinical::claim_policy(&s, policy)?;
            let t = s.submit_one(TxPayload::SubmitClaim { invoice, policy })?;
            let id = ItemId::derive(ItemKind::Claim, &t.id);
            created(ctx, &t, id, format!("claimed {invoice} under {policy}:"))
        }
        ClaimCmd::Approve { key, claim, reason } => decide(&key, &claim, true, reason),
        ClaimCmd::Withdraw { key, claim } => {
            let id = parse_item(&claim, ItemKind::Claim)?;
            let s = session(ctx, &key)?;
            act(
                ctx,
                &s,
                TxPayload::WithdrawClaim { claim: id },
                &format!("withdrew {id}: the invoice can be paid in full"),
            )?;
            Ok(())
        }
        ClaimCmd::Reject { key, claim, reason } => decide(&key, &claim, false, reason),
        ClaimCmd::List { key } => {
            let s = session(ctx, &key)?;
            let mut list: Vec<Claim> = items(&s)?;
            list.sort_by_key(|c| std::cmp::Reverse(c.created_ms));
            print_list(ctx, &list, "no claims", |c| {
                let next = c.next_approver().map_or(String::new(), |a| {
                    format!(
                        "  waits for {}{}",
                        short(&a),
                        if a == s.me { " (you)" } else { "" }
                    )
                });
                format!(
                    "{}  {}  {:<8}  invoice {}  amount {:>6}  insurer share {:>6}  level {}/{}{next}",
                    c.id,
                    when(c.created_ms),
                    c.status.name(),
                    c.invoice,
                    c.amount,
                    c.share,
                    c.decisions.iter().filter(|d| d.approve).count(),
                    c.approvers.len()
                )
            })
        }
    }
}
