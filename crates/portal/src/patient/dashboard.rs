//! The patient's dashboard and QR code.

use super::patient;
use crate::{
    Portal,
    web::{Ctx, PageError, User, render},
};
use askama::Template;
use axum::{extract::State, response::Response};
use ehrchain_client::{api::RecordView, clinical::items, consent, qr};
use ehrchain_types::{
    Category,
    entries::{RecordStatus, RequestStatus},
    items::{Invoice, InvoiceStatus, Slot, SlotStatus},
};
use std::sync::Arc;

/// One thing waiting for the patient, with where to deal with it.
struct Attention {
    text: String,
    href: &'static str,
    link: &'static str,
}

#[derive(Template)]
#[template(path = "patient/dashboard.html")]
struct DashboardTpl {
    ctx: Ctx,
    balance: u64,
    records: usize,
    vitals: usize,
    grants: usize,
    appointments: usize,
    attention: Vec<Attention>,
    /// Released emergency accesses not yet reviewed (the alert banner).
    emergency_alerts: usize,
}

struct Counts {
    balance: u64,
    records: usize,
    vitals: usize,
    pending: usize,
    grants: usize,
    requests: usize,
    unpaid: (usize, u64),
    upcoming: Vec<Slot>,
    emergency: crate::emergency::Counts,
}

pub(super) async fn page(user: User) -> Result<Response, PageError> {
    patient(&user)?;
    let c = user
        .call(|s| {
            let me = s.me;
            let views: Vec<RecordView> = s.get_all(
                &format!("/api/v1/records?patient={me}"),
                "after",
                |v: &RecordView| v.record.id.to_string(),
            )?;
            let grants = consent::grants(s)?.iter().filter(|g| !g.expired).count();
            let requests = consent::requests(s)?
                .iter()
                .filter(|r| r.request.patient == me && r.request.status == RequestStatus::Open)
                .count();
            let invoices: Vec<Invoice> = items(s)?;
            let unpaid: Vec<&Invoice> = invoices
                .iter()
                .filter(|i| i.patient == me && i.status == InvoiceStatus::Unpaid && i.due() > 0)
                .collect();
            let now = ehrchain_client::api::now_ms();
            let mut upcoming: Vec<Slot> = items::<Slot>(s)?
                .into_iter()
                .filter(|x| {
                    x.patient == Some(me)
                        && matches!(x.status, SlotStatus::Requested | SlotStatus::Confirmed)
                        && x.end_ms() >= now
                })
                .collect();
            upcoming.sort_by_key(|x| x.start_ms);
            Ok(Counts {
                balance: s.account(&me)?.account.balance,
                records: views
                    .iter()
                    .filter(|v| v.record.status == RecordStatus::Active)
                    .count(),
                vitals: views
                    .iter()
                    .filter(|v| v.record.category == Category::Vitals)
                    .count(),
                pending: views
                    .iter()
                    .filter(|v| v.record.status == RecordStatus::Pending && v.record.author != me)
                    .count(),
                grants,
                requests,
                unpaid: (unpaid.len(), unpaid.iter().map(|i| i.due()).sum()),
                upcoming,
                emergency: crate::emergency::counts(s)?,
            })
        })
        .await?;
    let mut attention = Vec::new();
    let e = c.emergency;
    if e.alerts > 0 {
        attention.push(Attention {
            text: format!(
                "{} emergency access{} to your records {} released: see who read what, then mark it reviewed or dispute it.",
                e.alerts,
                if e.alerts == 1 { "" } else { "es" },
                if e.alerts == 1 { "was" } else { "were" },
            ),
            href: "/patient/guardians#alerts",
            link: "Review emergency access",
        });
    }
    if e.asked > 0 {
        attention.push(Attention {
            text: format!(
                "A doctor asked your guardians for emergency access ({} request{} waiting for them).",
                e.asked,
                plural(e.asked)
            ),
            href: "/patient/guardians#requests-h",
            link: "See the requests",
        });
    }
    if e.guardian_waiting > 0 {
        attention.push(Attention {
            text: format!(
                "{} emergency access request{} wait{} for your answer as a guardian.",
                e.guardian_waiting,
                plural(e.guardian_waiting),
                if e.guardian_waiting == 1 { "s" } else { "" }
            ),
            href: "/guardian",
            link: "Guardian inbox",
        });
    }
    if c.pending > 0 {
        attention.push(Attention {
            text: format!(
                "{} record{} written for you by others wait{} for your approval.",
                c.pending,
                plural(c.pending),
                if c.pending == 1 { "s" } else { "" }
            ),
            href: "/patient/records",
            link: "Review records",
        });
    }
    if c.requests > 0 {
        attention.push(Attention {
            text: format!(
                "{} access request{} wait{} for your answer.",
                c.requests,
                plural(c.requests),
                if c.requests == 1 { "s" } else { "" }
            ),
            href: "/patient/requests",
            link: "Answer requests",
        });
    }
    if c.unpaid.0 > 0 {
        attention.push(Attention {
            text: format!(
                "{} unpaid invoice{} ({} tokens due).",
                c.unpaid.0,
                plural(c.unpaid.0),
                c.unpaid.1
            ),
            href: "/patient/invoices",
            link: "See invoices",
        });
    }
    for x in &c.upcoming {
        attention.push(Attention {
            text: format!(
                "Appointment {} ({} min), {}.",
                crate::templates::when(&x.start_ms),
                x.minutes,
                x.status.name()
            ),
            href: "/patient/appointments",
            link: "Appointments",
        });
    }
    Ok(render(DashboardTpl {
        ctx: user.ctx(),
        balance: c.balance,
        records: c.records,
        vitals: c.vitals,
        grants: c.grants,
        appointments: c.upcoming.len(),
        attention,
        emergency_alerts: e.alerts,
    }))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[derive(Template)]
#[template(path = "patient/qr.html")]
struct QrTpl {
    ctx: Ctx,
    payload: Option<String>,
    svg: Option<String>,
    problem: Option<String>,
}

/// The `<svg>` element of a rendered code, without any XML declaration before it.
pub(crate) fn svg_element(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |i| &svg[i..])
}

pub(super) async fn qr_page(
    State(p): State<Arc<Portal>>,
    user: User,
) -> Result<Response, PageError> {
    patient(&user)?;
    let node = p.node.clone();
    let me = user.me.account();
    let got = tokio::task::spawn_blocking(move || {
        let payload = qr::payload_of(&node, &me)?;
        let svg = qr::svg(&payload)?;
        Ok::<_, ehrchain_client::Error>((payload, svg))
    })
    .await
    .map_err(|_| PageError::Internal)?;
    let (payload, svg, problem) = match got {
        Ok((p, s)) => (Some(p), Some(svg_element(&s).to_string()), None),
        Err(e) => (None, None, Some(PageError::Sdk(e).message())),
    };
    Ok(render(QrTpl {
        ctx: user.ctx(),
        payload,
        svg,
        problem,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_svg_element_is_cut_from_a_document() {
        assert_eq!(
            super::svg_element("<?xml version=\"1.0\"?><svg a=\"1\"></svg>"),
            "<svg a=\"1\"></svg>"
        );
        assert_eq!(super::svg_element("<svg/>"), "<svg/>");
    }
}
