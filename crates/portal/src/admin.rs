//! The consortium admin's page: professionals waiting for approval (approve them), the
//! professionals already approved, the validators, and the way to the explorer.

use crate::{
    Portal,
    doctor::{accounts, parse_account, when},
    web::{PageError, User, render},
};
use askama::Template;
use axum::{
    Form, Router,
    response::Response,
    routing::{get, post},
};
use ehrchain_api::{AccountView, GenesisFile, StatusView};
use ehrchain_types::{Role, TxPayload, entries::AccountStatus};
use serde::Deserialize;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/admin", get(page))
        .route("/admin/approve", post(approve))
}

struct AccountRow {
    id: String,
    role: String,
    organisation: String,
    licence: String,
    approved: String,
}

fn row(a: &AccountView) -> AccountRow {
    AccountRow {
        id: a.id.to_string(),
        role: a.account.role.map_or("—".into(), |r| r.to_string()),
        organisation: a.account.organisation.clone().unwrap_or_else(|| "—".into()),
        licence: a.account.licence.clone().unwrap_or_else(|| "—".into()),
        approved: a
            .account
            .approved_at
            .map_or("at genesis".into(), |h| format!("at height {h}")),
    }
}

struct Validator {
    name: String,
    key: String,
    address: String,
}

#[derive(Template)]
#[template(path = "admin/admin.html")]
struct AdminTpl {
    ctx: crate::web::Ctx,
    pending: Vec<AccountRow>,
    professionals: Vec<AccountRow>,
    validators: Vec<Validator>,
    chain: String,
    height: u64,
    tip: String,
    accounts: usize,
}

/// Whether an account is a professional (approved by the admin, not a patient).
fn professional(a: &AccountView) -> bool {
    a.account.status == AccountStatus::Active
        && !matches!(
            a.account.role,
            None | Some(Role::Patient) | Some(Role::Admin)
        )
}

async fn page(user: User) -> Result<Response, PageError> {
    user.require(&[Role::Admin])?;
    let (pending, active, genesis, status) = user
        .call(|s| {
            let pending = accounts(s, None, Some("pending"))?;
            let active = accounts(s, None, Some("active"))?;
            let genesis: GenesisFile = s.node.get("/api/v1/genesis")?;
            let status: StatusView = s.node.get("/api/v1/status")?;
            Ok((pending, active, genesis, status))
        })
        .await?;
    Ok(render(AdminTpl {
        ctx: user.ctx(),
        pending: pending.iter().map(row).collect(),
        professionals: active.iter().filter(|a| professional(a)).map(row).collect(),
        validators: genesis
            .validators
            .iter()
            .map(|v| Validator {
                name: v.name.clone(),
                key: hex::encode(v.public_key.0),
                address: v.p2p_address.to_string(),
            })
            .collect(),
        chain: status.chain_id,
        height: status.height,
        tip: when(status.tip_timestamp_ms),
        accounts: status.accounts,
    }))
}

#[derive(Deserialize)]
struct ApproveForm {
    #[serde(default)]
    account: String,
}

async fn approve(user: User, Form(f): Form<ApproveForm>) -> Response {
    let r = async {
        user.require(&[Role::Admin])?;
        let account = parse_account(&f.account, "Account")?;
        let a = user
            .call(move |s| {
                s.submit_one(TxPayload::Approve { account })?;
                s.account(&account)
            })
            .await?;
        Ok(a)
    }
    .await;
    user.done(
        r,
        |a| {
            format!(
                "Approved {} as {}{}: the account may now act in its role.",
                a.id,
                a.account.role.map_or("?".into(), |r| r.to_string()),
                a.account
                    .organisation
                    .map_or(String::new(), |o| format!(" of {o}"))
            )
        },
        "/admin",
    )
}
