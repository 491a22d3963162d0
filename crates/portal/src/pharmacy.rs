//! The pharmacist's pages: prescriptions directed to this pharmacy, opening one (an audited
//! read through the key the prescription seals to the pharmacy) and dispensing it at a price,
//! which issues the patient's invoice.

use crate::{
    Portal,
    doctor::{cached, keep, parse_item, parse_number, short, when},
    web::{PageError, User, render, url_escape},
};
use askama::Template;
use axum::{
    Form, Router,
    extract::Path,
    response::Response,
    routing::{get, post},
};
use ehrchain_client::{clinical, records, schemas::RxContent};
use ehrchain_types::{
    ItemKind, Role, TxPayload,
    items::{Invoice, Prescription, RxStatus},
};
use serde::Deserialize;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/pharmacy", get(list))
        .route("/pharmacy/rx/{id}", get(show))
        .route("/pharmacy/rx/{id}/open", post(open))
        .route("/pharmacy/rx/{id}/dispense", post(dispense))
}

struct Row {
    id: String,
    patient: String,
    doctor: String,
    time: String,
    title: String,
    invoice: Option<String>,
    opened: bool,
}

#[derive(Template)]
#[template(path = "pharmacy/list.html")]
struct ListTpl {
    ctx: crate::web::Ctx,
    waiting: Vec<Row>,
    dispensed: Vec<Row>,
    emergency: crate::emergency::Counts,
}

impl ListTpl {
    fn short(&self, s: &str) -> String {
        short(&s)
    }
}

async fn list(user: User) -> Result<Response, PageError> {
    user.require(&[Role::Pharmacist])?;
    let (rows, emergency): (Vec<(Prescription, Option<String>)>, _) = user
        .call(|s| {
            let mut rx: Vec<Prescription> = clinical::items(s)?;
            rx.retain(|r| r.pharmacy == Some(s.me));
            rx.sort_by_key(|r| std::cmp::Reverse(r.created_ms));
            let rows = rx
                .into_iter()
                .map(|r| {
                    let t = clinical::title(s, &r.record, Some(&r));
                    (r, t)
                })
                .collect();
            Ok((rows, crate::emergency::counts(s)?))
        })
        .await?;
    let (mut waiting, mut dispensed) = (Vec::new(), Vec::new());
    for (r, title) in rows {
        let row = Row {
            id: r.id.to_string(),
            patient: r.patient.to_string(),
            doctor: r.doctor.to_string(),
            time: when(r.created_ms),
            title: title.unwrap_or_else(|| "(not readable)".into()),
            invoice: r.invoice.map(|i| i.to_string()),
            opened: cached(&user, &r.record).is_some(),
        };
        match r.status {
            RxStatus::Issued => waiting.push(row),
            RxStatus::Dispensed => dispensed.push(row),
        }
    }
    Ok(render(ListTpl {
        ctx: user.ctx(),
        waiting,
        dispensed,
        emergency,
    }))
}

#[derive(Template)]
#[template(path = "pharmacy/rx.html")]
struct RxTpl {
    ctx: crate::web::Ctx,
    id: String,
    patient: String,
    doctor: String,
    time: String,
    status: RxStatus,
    dispensed: Option<String>,
    invoice: Option<Invoice>,
    content: Option<RxContent>,
}

impl RxTpl {
    fn when(&self, ms: &u64) -> String {
        when(*ms)
    }
}

async fn show(user: User, Path(id): Path<String>) -> Result<Response, PageError> {
    user.require(&[Role::Pharmacist])?;
    let rid = parse_item(&id, ItemKind::Prescription)?;
    let (rx, invoice) = user
        .call(move |s| {
            let rx: Prescription = clinical::item(s, &rid)?;
            let invoice = match rx.invoice {
                Some(i) => clinical::item::<Invoice>(s, &i).ok(),
                None => None,
            };
            Ok((rx, invoice))
        })
        .await?;
    if rx.pharmacy != Some(user.me.account()) {
        return Err(PageError::Forbidden(
            "This prescription is not directed to your pharmacy.".into(),
        ));
    }
    let content = match cached(&user, &rx.record) {
        Some(b) => Some(serde_json::from_slice::<RxContent>(&b).map_err(|_| {
            PageError::BadRequest("The prescription's record is not a prescription.".into())
        })?),
        None => None,
    };
    Ok(render(RxTpl {
        ctx: user.ctx(),
        id: rx.id.to_string(),
        patient: rx.patient.to_string(),
        doctor: rx.doctor.to_string(),
        time: when(rx.created_ms),
        status: rx.status,
        dispensed: rx.dispensed_ms.map(when),
        invoice,
        content,
    }))
}

async fn open(user: User, Path(id): Path<String>) -> Response {
    let back = format!("/pharmacy/rx/{}", url_escape(id.trim()));
    let r = async {
        user.require(&[Role::Pharmacist])?;
        let rid = parse_item(&id, ItemKind::Prescription)?;
        let (record, bytes) = user
            .call(move |s| {
                let rx: Prescription = clinical::item(s, &rid)?;
                let view = records::record(s, &rx.record)?;
                let key = clinical::pharmacy_key(s, &rx, &view.record)?;
                let bytes = records::read_bytes(s, &rx.record, key)?;
                Ok((rx.record, bytes))
            })
            .await?;
        serde_json::from_slice::<RxContent>(&bytes).map_err(|_| {
            PageError::BadRequest("The prescription's record is not a prescription.".into())
        })?;
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

#[derive(Deserialize)]
struct DispenseForm {
    #[serde(default)]
    price: String,
}

async fn dispense(user: User, Path(id): Path<String>, Form(f): Form<DispenseForm>) -> Response {
    let back = format!("/pharmacy/rx/{}", url_escape(id.trim()));
    let r = async {
        user.require(&[Role::Pharmacist])?;
        let rx = parse_item(&id, ItemKind::Prescription)?;
        let price: u64 = parse_number(&f.price, "Price")?;
        let t = user
            .call(move |s| s.submit_one(TxPayload::Dispense { rx, price }))
            .await?;
        Ok((clinical::created(ItemKind::Invoice, &t), price))
    }
    .await;
    user.done(
        r,
        |(inv, price)| {
            format!("Dispensed. Invoice {inv} for {price} tokens is addressed to the patient.")
        },
        &back,
    )
}
