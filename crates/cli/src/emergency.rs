//! Emergency access commands (issue 17): a patient's guardians, a doctor's break-glass
//! request, the guardians' answers, opening with checked shares, the patient's alerts and
//! review. Every secret step runs here, in the client (`ehrchain_client::emergency`).

use crate::{
    Ctx, KeyArg,
    clinical::{created, parse_item, print_list, short},
    parse_categories, parse_duration, session, tx_line, when,
};
use anyhow::bail;
use clap::Subcommand;
use ehrchain_client::emergency::{self as em, GuardianPlan, RequestView};
use ehrchain_types::{
    ItemKind,
    items::{
        DEFAULT_EMERGENCY_CATEGORIES, EmergencyReason, EmergencyReview, EmergencyStatus, Hours,
    },
};
use serde_json::json;

#[derive(Subcommand)]
pub enum GuardiansCmd {
    /// Name the guardians who, `threshold` of them together, can release your emergency
    /// categories to a doctor (replaces earlier guardians; their open requests are withdrawn).
    Set {
        #[command(flatten)]
        key: KeyArg,
        /// Accounts (ehr… ids or local key names), comma-separated.
        #[arg(long, value_delimiter = ',')]
        guardians: Vec<String>,
        /// How many guardians must approve (at least 2).
        #[arg(long)]
        threshold: u8,
        /// What an emergency opens: CAT[,CAT…] or all (default: vitals,lab,medication,emergency).
        #[arg(long)]
        categories: Option<String>,
        /// The longest window a doctor may ask for (e.g. 6h, 24h, 3d).
        #[arg(long, default_value = "24h")]
        max_duration: String,
    },
    /// Your guardians (or, as a guardian, the patients you guard).
    Show {
        #[command(flatten)]
        key: KeyArg,
        /// Another patient's break-glass card (as a doctor or one of its guardians).
        #[arg(long)]
        patient: Option<String>,
    },
    /// Remove your guardians.
    Clear {
        #[command(flatten)]
        key: KeyArg,
    },
}

#[derive(Subcommand)]
pub enum EmergencyCmd {
    /// Ask a patient's guardians for emergency access (approved doctors).
    Request {
        #[command(flatten)]
        key: KeyArg,
        #[arg(long)]
        patient: String,
        /// unconscious, life_threatening, incapable or other (then --note is required).
        #[arg(long)]
        reason: String,
        /// Details, sealed to the patient and the guardians.
        #[arg(long)]
        note: Option<String>,
        /// How long the access is needed (at most the patient's maximum).
        #[arg(long = "for", default_value = "6h")]
        duration: String,
    },
    /// Requests waiting for your answer as a guardian (then those you answered).
    Inbox {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Approve a request: your share is checked, then sealed to the doctor.
    Approve {
        #[command(flatten)]
        key: KeyArg,
        request: String,
    },
    /// Refuse a request.
    Refuse {
        #[command(flatten)]
        key: KeyArg,
        request: String,
    },
    /// Open a released request (doctor): checks every share, names and reports wrong ones;
    /// then `record get` works for the released categories until the window ends.
    Open {
        #[command(flatten)]
        key: KeyArg,
        request: String,
    },
    /// Every emergency request you take part in; as a patient, with alerts for accesses you
    /// have not reviewed and who read what.
    List {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Mark a released emergency access reviewed, or disputed (every regulator sees it).
    #[command(group(clap::ArgGroup::new("verdict").required(true).args(["reviewed", "disputed"])))]
    Review {
        #[command(flatten)]
        key: KeyArg,
        request: String,
        /// It was justified.
        #[arg(long)]
        reviewed: bool,
        /// It was not: every regulator sees the dispute.
        #[arg(long)]
        disputed: bool,
    },
    /// Disputed emergency accesses (approved regulators).
    Disputes {
        #[command(flatten)]
        key: KeyArg,
    },
    /// After a release: rotate the released categories' keys and split a new emergency key
    /// among the same guardians (what the doctor read during the window stays readable to
    /// them; nothing written after this is).
    Rotate {
        #[command(flatten)]
        key: KeyArg,
    },
}

fn line(v: &RequestView) -> String {
    let r = &v.request;
    let mut s = format!(
        "{} {:<9} {} for {} → patient {} by doctor {}{} ({}, {} of {} approved, {} refused)",
        r.id,
        r.status.name(),
        r.reason.name(),
        Hours(r.duration_ms),
        short(&r.patient),
        short(&r.doctor),
        r.organisation
            .as_deref()
            .map(|o| format!(" of {o}"))
            .unwrap_or_default(),
        r.categories
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(","),
        r.approvals(),
        r.threshold,
        r.refusals(),
    );
    if let Some(e) = r.expires_ms {
        s += &format!(
            "; {} {}",
            if v.active { "readable until" } else { "ended" },
            when(e)
        );
    }
    if let Some(n) = &v.note {
        s += &format!("\n    note: {}", n.replace(char::is_control, " "));
    }
    for a in r.answers.iter().filter(|a| a.bad) {
        s += &format!("\n    wrong share from guardian {}", a.guardian);
    }
    if let Some(rv) = r.review {
        s += &format!("\n    patient: {}", rv.name());
    }
    if v.as_role == "guardian" && !v.answered && r.status == EmergencyStatus::Open {
        s += "\n    waiting for your answer: ehrchain emergency approve|refuse --key YOU ";
        s += &r.id.to_string();
    }
    s
}

pub fn run_guardians(ctx: &Ctx, cmd: GuardiansCmd) -> anyhow::Result<()> {
    match cmd {
        GuardiansCmd::Set {
            key,
            guardians,
            threshold,
            categories,
            max_duration,
        } => {
            let guardians = guardians
                .iter()
                .map(|g| g.trim())
                .filter(|g| !g.is_empty())
                .map(|g| ctx.resolve(g))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if guardians.is_empty() {
                bail!(
                    "name at least two guardians with --guardians A,B,C (or use `guardians clear`)"
                );
            }
            let categories = match categories {
                Some(c) => parse_categories(&c)?,
                None => DEFAULT_EMERGENCY_CATEGORIES.to_vec(),
            };
            let plan = GuardianPlan {
                guardians,
                threshold,
                categories,
                max_duration: parse_duration(&max_duration)?,
            };
            let s = session(ctx, &key)?;
            let (id, t) = em::set_guardians(&s, &plan)?;
            created(
                ctx,
                &t,
                id,
                format!(
                    "{threshold} of {} guardians can now release {} for up to {}:",
                    plan.guardians.len(),
                    plan.categories
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                    max_duration
                ),
            )
        }
        GuardiansCmd::Show { key, patient } => {
            let s = session(ctx, &key)?;
            if let Some(p) = patient {
                let p = ctx.resolve(&p)?;
                let c = em::card(&s, &p)?;
                ctx.print(&serde_json::to_value(&c)?, || {
                    format!(
                        "patient {}: {} of these guardians release {} for up to {}\n{}",
                        c.patient,
                        c.threshold,
                        c.categories
                            .iter()
                            .map(|c| c.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                        Hours(c.max_duration_ms),
                        c.guardians
                            .iter()
                            .map(|g| format!("  {g}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                });
                return Ok(());
            }
            let mine = em::my_guardians(&s)?;
            let guarding = em::guarding(&s)?;
            ctx.print(&json!({"guardianship": mine, "guarding": guarding.iter().map(|g| json!({"patient": g.patient, "guardianship": g.id, "threshold": g.threshold, "guardians": g.guardians.len()})).collect::<Vec<_>>()}), || {
                let mut out = match &mine {
                    None => "you have named no guardians (ehrchain guardians set --key YOU --guardians A,B,C --threshold 2)".to_string(),
                    Some(g) => format!(
                        "{}: {} of {} guardians release {} for up to {}\n{}",
                        g.id,
                        g.threshold,
                        g.guardians.len(),
                        g.categories.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
                        Hours(g.max_duration_ms),
                        g.guardians.iter().map(|x| format!("  {}", x.account)).collect::<Vec<_>>().join("\n")
                    ),
                };
                for g in &guarding {
                    out += &format!(
                        "\nyou guard patient {} ({} of {})",
                        g.patient,
                        g.threshold,
                        g.guardians.len()
                    );
                }
                out
            });
            Ok(())
        }
        GuardiansCmd::Clear { key } => {
            let s = session(ctx, &key)?;
            let t = em::clear_guardians(&s)?;
            ctx.print(&serde_json::to_value(&t)?, || {
                format!(
                    "your guardians are removed; their open requests are withdrawn\n{}",
                    tx_line(&t)
                )
            });
            Ok(())
        }
    }
}

pub fn run_emergency(ctx: &Ctx, cmd: EmergencyCmd) -> anyhow::Result<()> {
    let req = |r: &str| parse_item(r, ItemKind::Emergency);
    match cmd {
        EmergencyCmd::Request {
            key,
            patient,
            reason,
            note,
            duration,
        } => {
            let reason: EmergencyReason = reason.parse().map_err(anyhow::Error::msg)?;
            let patient = ctx.resolve(&patient)?;
            let duration = parse_duration(&duration)?;
            let s = session(ctx, &key)?;
            let (id, t) = em::request(&s, &patient, reason, note.as_deref(), duration)?;
            created(
                ctx,
                &t,
                id,
                format!("asked the guardians of {patient} for emergency access:"),
            )
        }
        EmergencyCmd::Inbox { key } => {
            let s = session(ctx, &key)?;
            let list = em::inbox(&s)?;
            print_list(ctx, &list, "no emergency requests for you to answer", line)
        }
        EmergencyCmd::Approve { key, request } => {
            let id = req(&request)?;
            let s = session(ctx, &key)?;
            let t = em::approve(&s, &id)?;
            let r = em::emergency_request(&s, &id)?;
            ctx.print(&json!({"tx": t, "status": r.status, "approvals": r.approvals(), "threshold": r.threshold}), || {
                format!(
                    "approved {id}: your share is sealed to the doctor; {} of {} approvals, {}\n{}",
                    r.approvals(),
                    r.threshold,
                    r.status.name(),
                    tx_line(&t)
                )
            });
            Ok(())
        }
        EmergencyCmd::Refuse { key, request } => {
            let id = req(&request)?;
            let s = session(ctx, &key)?;
            let t = em::refuse(&s, &id)?;
            ctx.print(&serde_json::to_value(&t)?, || {
                format!("refused {id}\n{}", tx_line(&t))
            });
            Ok(())
        }
        EmergencyCmd::Open { key, request } => {
            let id = req(&request)?;
            let s = session(ctx, &key)?;
            let o = em::open(&s, &id)?;
            ctx.print(&serde_json::to_value(&o)?, || {
                let mut out = format!(
                    "opened {id}: {} good shares (threshold {}); {} of patient {} readable until {}",
                    o.good.len(),
                    o.threshold,
                    o.categories.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
                    o.patient,
                    o.expires_ms.map_or("-".into(), when)
                );
                for (g, why) in &o.bad {
                    out += &format!("\nwrong share from guardian {g}: {why} (reported on the ledger)");
                }
                out += "\nread with: ehrchain record list --key YOU --patient PATIENT, then record get";
                out
            });
            Ok(())
        }
        EmergencyCmd::List { key } => {
            let s = session(ctx, &key)?;
            let list = em::list(&s)?;
            let alerts = em::alerts(&s)?;
            ctx.print(&json!({"requests": list, "alerts": alerts}), || {
                let mut out = String::new();
                for a in &alerts {
                    let r = &a.request.request;
                    out += &format!(
                        "ALERT: emergency access {} by doctor {}{} ({}), {} read(s):\n",
                        r.id,
                        r.doctor,
                        r.organisation.as_deref().map(|o| format!(" of {o}")).unwrap_or_default(),
                        r.reason.name(),
                        a.reads.len()
                    );
                    for e in &a.reads {
                        out += &format!(
                            "  {} read {} ({})\n",
                            when(e.event.time_ms),
                            e.event.record.map_or("-".into(), |x| x.to_string()),
                            e.event.categories.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")
                        );
                    }
                    out += &format!(
                        "  review it: ehrchain emergency review --key YOU {} --reviewed|--disputed\n",
                        r.id
                    );
                }
                if list.is_empty() {
                    out += "no emergency requests";
                } else {
                    out += &list.iter().map(line).collect::<Vec<_>>().join("\n");
                }
                out
            });
            Ok(())
        }
        EmergencyCmd::Review {
            key,
            request,
            disputed,
            reviewed: _,
        } => {
            let id = req(&request)?;
            let s = session(ctx, &key)?;
            let review = if disputed {
                EmergencyReview::Disputed
            } else {
                EmergencyReview::Reviewed
            };
            let t = em::review(&s, &id, review)?;
            // The next opportunity to take back what was released: a new emergency key and
            // new epochs of the released categories.
            let rotated = em::rotate_after_release(&s)?;
            ctx.print(&json!({"tx": t, "rotated": rotated}), || {
                let mut out = format!(
                    "{id} marked {}{}\n{}",
                    review.name(),
                    if disputed { ": every regulator sees the dispute" } else { "" },
                    tx_line(&t)
                );
                if !rotated.is_empty() {
                    out += "\nrotated: a new emergency key and new epochs of the released categories (records written from now on are out of the doctor's reach)";
                }
                out
            });
            Ok(())
        }
        EmergencyCmd::Disputes { key } => {
            let s = session(ctx, &key)?;
            let list = em::disputes(&s)?;
            print_list(ctx, &list, "no disputed emergency accesses", |r| {
                format!(
                    "{} disputed by patient {}: doctor {}{} ({}), released {}",
                    r.id,
                    r.patient,
                    r.doctor,
                    r.organisation
                        .as_deref()
                        .map(|o| format!(" of {o}"))
                        .unwrap_or_default(),
                    r.reason.name(),
                    r.released_ms.map_or("-".into(), when)
                )
            })
        }
        EmergencyCmd::Rotate { key } => {
            let s = session(ctx, &key)?;
            let done = em::rotate_after_release(&s)?;
            ctx.print(&serde_json::to_value(&done)?, || {
                if done.is_empty() {
                    "nothing to rotate: no emergency access was released under your current guardians".into()
                } else {
                    format!(
                        "rotated: new key epochs for the released categories and a new emergency key ({} transactions)",
                        done.len()
                    )
                }
            });
            Ok(())
        }
    }
}
