//! The chain explorer: status and validators, blocks, transactions, accounts, search.
//!
//! A signed-in user's requests to the node are signed with their key, so every page shows
//! exactly what the API shows that account under the ledger-visibility rule (README, "Who
//! sees what of the ledger"): anyone sees headers, transaction ids and accounts; a
//! transaction's parties see its body, receipt and their events; consortium members (the
//! admin, approved auditors, validators) see block bodies and receipts. Anonymous visitors are
//! served unsigned. The pages say when content was withheld.

use crate::{
    Portal,
    templates::{short, when},
    web::{Ctx, PageError, Web, render, url_escape},
};
use askama::Template;
use axum::{
    Router,
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use ehrchain_client::api::{AccountView, BlockSummary, BlockView, GenesisFile, StatusView, TxView};
use ehrchain_types::{AccountId, Hash, RecordId, Role, TxOutcome, entries::AccountStatus};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/explorer", get(index))
        .route("/explorer/blocks/{height}", get(block))
        .route("/explorer/tx/{id}", get(transaction))
        .route("/explorer/accounts", get(accounts))
        .route("/explorer/accounts/{id}", get(account))
        .route("/explorer/search", get(search))
}

/// Blocks per page of the block list.
pub const BLOCKS_PER_PAGE: u64 = 20;
/// Accounts per page of the account list.
pub const ACCOUNTS_PER_PAGE: usize = 50;

/// A GET to the node as the visitor: signed with the signed-in user's key (so the node shows
/// what it shows that account), unsigned for anonymous visitors.
async fn api<T: DeserializeOwned + Send + 'static>(
    p: &Arc<Portal>,
    web: &Web,
    path: String,
) -> Result<T, PageError> {
    let user = web.user();
    let node = p.node.clone();
    tokio::task::spawn_blocking(move || match user {
        Some(u) => u.sdk.get(&path),
        None => node.get(&path),
    })
    .await
    .map_err(|_| PageError::Internal)?
    .map_err(PageError::Sdk)
}

/// Who the node is answering, in words, for the top of each page.
fn viewer(web: &Web) -> String {
    match web.user() {
        Some(u) => format!(
            "You see what the node shows {} ({}) with a signed request.",
            u.name,
            u.role_word()
        ),
        None => "You are not signed in: you see what the node shows anyone (headers, ids, accounts). Sign in to see the transactions you are a party to.".into(),
    }
}

// ---------------------------------------------------------------------------------------
// Pure helpers (unit-tested below).

/// What a search query names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Height(u64),
    Account(AccountId),
    Tx(Hash),
    Record(RecordId),
    Nothing,
}

/// Classifies a search query by its shape.
pub fn classify(q: &str) -> Target {
    let q = q.trim();
    if q.is_empty() {
        return Target::Nothing;
    }
    // A height has at most 20 digits (u64); longer digit strings may be hex ids.
    if q.len() <= 20 && q.bytes().all(|b| b.is_ascii_digit()) {
        return q.parse().map_or(Target::Nothing, Target::Height);
    }
    let lower = q.to_ascii_lowercase();
    if lower.starts_with("ehr")
        && let Ok(a) = lower.parse::<AccountId>()
    {
        return Target::Account(a);
    }
    if lower.starts_with("rec")
        && let Ok(r) = lower.parse::<RecordId>()
    {
        return Target::Record(r);
    }
    if lower.len() == 64
        && let Ok(h) = lower.parse::<Hash>()
    {
        return Target::Tx(h);
    }
    if lower.len() == 40
        && let Ok(a) = lower.parse::<AccountId>()
    {
        return Target::Account(a);
    }
    Target::Nothing
}

/// Shortens long strings (ciphertext, sealed keys, signatures) in a JSON value so a
/// transaction body fits on a page; the full value is in the API.
pub fn abbreviate(v: &Value) -> Value {
    const MAX: usize = 72;
    match v {
        Value::String(s) if s.chars().count() > MAX => {
            let head: String = s.chars().take(32).collect();
            Value::String(format!("{head}… ({} characters)", s.chars().count()))
        }
        Value::Array(a) => Value::Array(a.iter().map(abbreviate).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), abbreviate(v))).collect())
        }
        other => other.clone(),
    }
}

/// One field of a transaction body, as shown.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub text: String,
    /// A link when the value is an account or a transaction the explorer can show.
    pub link: Option<String>,
}

/// The top-level fields of a payload's JSON (its `type` left out), abbreviated.
pub fn fields(payload: &Value) -> Vec<Field> {
    let Value::Object(o) = abbreviate(payload) else {
        return vec![Field {
            name: "value".into(),
            text: abbreviate(payload).to_string(),
            link: None,
        }];
    };
    o.into_iter()
        .filter(|(k, _)| k != "type")
        .map(|(name, v)| {
            let text = match &v {
                Value::String(s) => s.clone(),
                Value::Null => "—".into(),
                other => other.to_string(),
            };
            let link = match &v {
                Value::String(s) if s.starts_with("ehr") && s.parse::<AccountId>().is_ok() => {
                    Some(format!("/explorer/accounts/{s}"))
                }
                Value::String(s) if s.starts_with("rec") && s.parse::<RecordId>().is_ok() => {
                    Some(format!("/records/{s}"))
                }
                _ => None,
            };
            Field { name, text, link }
        })
        .collect()
}

/// A snake_case code as words (`record_added` → `record added`).
pub fn words(code: &str) -> String {
    code.replace('_', " ")
}

/// The JSON name of a serde enum value (`AuditAction::RecordAdded` → `record_added`).
fn code_of<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// Where the "older" link of the block list starts, if there are older blocks.
pub fn older_page(lowest_shown: Option<u64>) -> Option<u64> {
    lowest_shown.and_then(|h| h.checked_sub(1))
}

// ---------------------------------------------------------------------------------------
// Pages.

/// Template helpers shared by the explorer's pages.
macro_rules! helpers {
    ($t:ty) => {
        #[allow(dead_code)]
        impl $t {
            fn when(&self, ms: &u64) -> String {
                when(ms)
            }
            fn short(&self, s: &dyn std::fmt::Display) -> String {
                short(&s.to_string())
            }
        }
    };
}

#[derive(Template)]
#[template(path = "explorer/index.html")]
struct IndexTpl {
    ctx: Ctx,
    viewer: String,
    status: StatusView,
    validators: Vec<(String, String, String)>,
    blocks: Vec<BlockSummary>,
    older: Option<u64>,
    newer: Option<u64>,
    /// Empty blocks listed too.
    all: bool,
    /// The highest height the list starts from.
    top: u64,
}
helpers!(IndexTpl);

#[derive(Deserialize)]
struct BlockPage {
    before: Option<u64>,
    /// Show empty blocks too (by default only blocks with transactions are listed).
    all: Option<String>,
}

/// Blocks asked of the node per request (its maximum).
const BLOCKS_PER_REQUEST: u64 = 200;
/// How many blocks one page of "blocks with transactions" looks through at most.
pub const SCAN_LIMIT: u64 = 2_000;

async fn index(State(p): State<Arc<Portal>>, web: Web, Query(q): Query<BlockPage>) -> Response {
    let all = q.all.as_deref().is_some_and(|a| a == "1" || a == "true");
    let r: Result<Response, PageError> = async {
        let status: StatusView = api(&p, &web, "/api/v1/status".into()).await?;
        let genesis: GenesisFile = api(&p, &web, "/api/v1/genesis".into()).await?;
        let top = q.before.unwrap_or(status.height).min(status.height);
        let (blocks, older) = if all {
            let blocks: Vec<BlockSummary> = api(
                &p,
                &web,
                format!("/api/v1/blocks?before={top}&limit={BLOCKS_PER_PAGE}"),
            )
            .await?;
            let older = older_page(blocks.last().map(|b| b.height));
            (blocks, older)
        } else {
            // Walk down from `top` until a page's worth of blocks with transactions is
            // found or SCAN_LIMIT blocks were looked at.
            let mut found = Vec::new();
            let mut next = Some(top);
            let mut scanned = 0;
            while let Some(from) = next {
                if found.len() as u64 >= BLOCKS_PER_PAGE || scanned >= SCAN_LIMIT {
                    break;
                }
                let page: Vec<BlockSummary> = api(
                    &p,
                    &web,
                    format!("/api/v1/blocks?before={from}&limit={BLOCKS_PER_REQUEST}"),
                )
                .await?;
                scanned += page.len() as u64;
                next = older_page(page.last().map(|b| b.height));
                for b in page {
                    if found.len() as u64 >= BLOCKS_PER_PAGE {
                        next = Some(b.height);
                        break;
                    }
                    if b.tx_count > 0 {
                        found.push(b);
                    }
                }
            }
            (found, next)
        };
        let newer = (top < status.height).then(|| (top + BLOCKS_PER_PAGE).min(status.height));
        Ok(render(IndexTpl {
            ctx: web.ctx(),
            viewer: viewer(&web),
            validators: genesis
                .validators
                .iter()
                .map(|v| {
                    (
                        v.name.clone(),
                        v.public_key.to_string(),
                        v.p2p_address.to_string(),
                    )
                })
                .collect(),
            status,
            blocks,
            older,
            newer: if all { newer } else { None },
            all,
            top,
        }))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// A transaction row of a block page.
struct BlockTx {
    index: usize,
    id: String,
    kind: Option<String>,
    sender: Option<String>,
    outcome: Option<Outcome>,
}

/// A receipt's outcome, as shown.
struct Outcome {
    ok: bool,
    text: String,
}

fn outcome(o: &TxOutcome) -> Outcome {
    match o {
        TxOutcome::Applied => Outcome {
            ok: true,
            text: "applied".into(),
        },
        TxOutcome::Rejected { reason } => Outcome {
            ok: false,
            text: format!("refused: {reason}"),
        },
    }
}

#[derive(Template)]
#[template(path = "explorer/block.html")]
struct BlockTpl {
    ctx: Ctx,
    viewer: String,
    b: BlockView,
    txs: Vec<BlockTx>,
    tip: u64,
    /// The signed-in user's own transactions were looked up one by one.
    lookups: bool,
    /// Too many transactions to look each up.
    too_many: bool,
    /// How many of them the user is a party to.
    yours: usize,
}
helpers!(BlockTpl);

/// Most transactions of a block looked up one by one for a signed-in non-member.
pub const PARTY_LOOKUPS: usize = 50;

async fn block(State(p): State<Arc<Portal>>, web: Web, Path(height): Path<String>) -> Response {
    let r: Result<Response, PageError> = async {
        let Ok(h) = height.trim().parse::<u64>() else {
            return Err(PageError::BadRequest(format!(
                "{height:?} is not a block height (a whole number)."
            )));
        };
        let status: StatusView = api(&p, &web, "/api/v1/status".into()).await?;
        if h > status.height {
            return Err(PageError::NotFound(format!(
                "There is no block at height {h} yet: the chain is at height {}.",
                status.height
            )));
        }
        let b: BlockView = api(&p, &web, format!("/api/v1/blocks/{h}")).await?;
        // A signed-in user who is not a member sees the transactions they are a party to:
        // each one is asked for (up to PARTY_LOOKUPS per page).
        let mut own: Vec<Option<TxView>> = Vec::new();
        if b.redacted
            && let Some(u) = web.user()
            && b.tx_ids.len() <= PARTY_LOOKUPS
        {
            let ids = b.tx_ids.clone();
            own = tokio::task::spawn_blocking(move || {
                ids.iter()
                    .map(|id| u.sdk.transaction(id).ok().filter(|t| !t.redacted))
                    .collect()
            })
            .await
            .map_err(|_| PageError::Internal)?;
        }
        let lookups = b.redacted && web.user().is_some();
        let too_many = lookups && b.tx_ids.len() > PARTY_LOOKUPS;
        let yours = own.iter().flatten().count();
        let txs = b
            .tx_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let party = own.get(i).and_then(Option::as_ref);
                let body = b
                    .txs
                    .as_ref()
                    .and_then(|t| t.get(i))
                    .or_else(|| party.and_then(|t| t.tx.as_ref()));
                let receipt = b
                    .receipts
                    .as_ref()
                    .and_then(|r| r.get(i))
                    .or_else(|| party.and_then(|t| t.receipt.as_ref()));
                BlockTx {
                    index: i,
                    id: id.to_string(),
                    kind: body.map(|t| t.tx.payload.kind().to_string()),
                    sender: body.map(|t| t.tx.sender().to_string()),
                    outcome: receipt.map(|r| outcome(&r.outcome)),
                }
            })
            .collect();
        Ok(render(BlockTpl {
            ctx: web.ctx(),
            viewer: viewer(&web),
            b,
            txs,
            tip: status.height,
            lookups,
            too_many,
            yours,
        }))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// An audit event of a transaction, as shown.
struct EventRow {
    id: String,
    action: String,
    actor: String,
    patient: String,
    record: Option<String>,
    categories: String,
    decision: String,
    allowed: bool,
    reason: String,
    item: Option<String>,
    amount: Option<u64>,
}

#[derive(Template)]
#[template(path = "explorer/tx.html")]
struct TxTpl {
    ctx: Ctx,
    viewer: String,
    t: TxView,
    kind: Option<String>,
    nonce: Option<u64>,
    fields: Vec<Field>,
    outcome: Option<Outcome>,
    events: Vec<EventRow>,
}
helpers!(TxTpl);

async fn transaction(State(p): State<Arc<Portal>>, web: Web, Path(id): Path<String>) -> Response {
    let r: Result<Response, PageError> = async {
        let Ok(id) = id.trim().to_ascii_lowercase().parse::<Hash>() else {
            return Err(PageError::BadRequest(
                "That is not a transaction id (64 hexadecimal characters).".into(),
            ));
        };
        let t: TxView = api(&p, &web, format!("/api/v1/transactions/{id}")).await?;
        let body = t.tx.as_ref().map(|s| &s.tx);
        let fields = body
            .map(|b| serde_json::to_value(&b.payload).map(|v| self::fields(&v)))
            .transpose()
            .map_err(|_| PageError::Internal)?
            .unwrap_or_default();
        let events = t
            .events
            .iter()
            .map(|e| {
                let ev = &e.event;
                EventRow {
                    id: e.id.to_string(),
                    action: words(&code_of(&ev.action)),
                    actor: ev.actor.to_string(),
                    patient: ev.patient.to_string(),
                    record: ev.record.map(|r| r.to_string()),
                    categories: ev
                        .categories
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    decision: code_of(&ev.decision),
                    allowed: code_of(&ev.decision) == "allowed",
                    reason: ev.reason.to_string(),
                    item: ev.item.map(|i| i.to_string()),
                    amount: ev.amount,
                }
            })
            .collect();
        Ok(render(TxTpl {
            ctx: web.ctx(),
            viewer: viewer(&web),
            kind: body.map(|b| b.payload.kind().to_string()),
            nonce: body.map(|b| b.nonce),
            fields,
            outcome: t.receipt.as_ref().map(|r| outcome(&r.outcome)),
            events,
            t,
        }))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct AccountsQuery {
    after: Option<String>,
    role: Option<String>,
    status: Option<String>,
}

#[derive(Template)]
#[template(path = "explorer/accounts.html")]
struct AccountsTpl {
    ctx: Ctx,
    viewer: String,
    accounts: Vec<AccountView>,
    roles: Vec<&'static str>,
    role: String,
    status: String,
    /// The query of the next page, if there may be one.
    next: Option<String>,
    first_page: bool,
    /// The account that holds appointment fees (no key signs for it).
    escrow: AccountId,
}
helpers!(AccountsTpl);

impl AccountsTpl {
    fn role_of(&self, a: &AccountView) -> String {
        if a.id == self.escrow {
            return "escrow (appointment fees)".into();
        }
        a.account
            .role
            .map_or_else(|| "—".to_string(), |r| r.to_string())
    }
    fn status_class(&self, a: &AccountView) -> &'static str {
        status_class(a.account.status)
    }
}

fn status_class(s: AccountStatus) -> &'static str {
    match s {
        AccountStatus::Active => "badge ok",
        AccountStatus::Pending => "badge warn",
        AccountStatus::Unregistered => "badge",
    }
}

async fn accounts(
    State(p): State<Arc<Portal>>,
    web: Web,
    Query(q): Query<AccountsQuery>,
) -> Response {
    let r: Result<Response, PageError> = async {
        let role = q
            .role
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| {
                r.parse::<Role>()
                    .map_err(|_| PageError::BadRequest(format!("There is no role {r:?}.")))
            })
            .transpose()?;
        let status = q
            .status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                if ["unregistered", "pending", "active"].contains(&s) {
                    Ok(s.to_string())
                } else {
                    Err(PageError::BadRequest(format!(
                        "{s:?} is not a status (unregistered, pending or active)."
                    )))
                }
            })
            .transpose()?;
        let after = q
            .after
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse::<AccountId>().map_err(|_| {
                    PageError::BadRequest("That page cursor is not an account id.".into())
                })
            })
            .transpose()?;
        let mut path = format!("/api/v1/accounts?limit={ACCOUNTS_PER_PAGE}");
        let mut filter = String::new();
        if let Some(r) = role {
            filter += &format!("&role={r}");
        }
        if let Some(s) = &status {
            filter += &format!("&status={s}");
        }
        path += &filter;
        if let Some(a) = after {
            path += &format!("&after={a}");
        }
        let accounts: Vec<AccountView> = api(&p, &web, path).await?;
        let chain: StatusView = api(&p, &web, "/api/v1/status".into()).await?;
        let next = (accounts.len() == ACCOUNTS_PER_PAGE)
            .then(|| accounts.last().map(|a| format!("after={}{filter}", a.id)))
            .flatten();
        Ok(render(AccountsTpl {
            ctx: web.ctx(),
            viewer: viewer(&web),
            accounts,
            roles: Role::NAMES.to_vec(),
            role: role.map(|r| r.to_string()).unwrap_or_default(),
            status: status.unwrap_or_default(),
            next,
            first_page: after.is_none(),
            escrow: chain.escrow_account,
        }))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Template)]
#[template(path = "explorer/account.html")]
struct AccountTpl {
    ctx: Ctx,
    viewer: String,
    a: AccountView,
    role: String,
    status: &'static str,
    status_class: &'static str,
    you: bool,
}
helpers!(AccountTpl);

async fn account(State(p): State<Arc<Portal>>, web: Web, Path(id): Path<String>) -> Response {
    let r: Result<Response, PageError> = async {
        let Ok(id) = id.trim().to_ascii_lowercase().parse::<AccountId>() else {
            return Err(PageError::BadRequest(
                "That is not an account id (ehr followed by 40 hexadecimal characters).".into(),
            ));
        };
        let a: AccountView = api(&p, &web, format!("/api/v1/accounts/{id}")).await?;
        let status: StatusView = api(&p, &web, "/api/v1/status".into()).await?;
        if !a.exists {
            return Err(PageError::NotFound(format!(
                "The ledger has never seen account {id}."
            )));
        }
        Ok(render(AccountTpl {
            ctx: web.ctx(),
            viewer: viewer(&web),
            role: if id == status.escrow_account {
                "escrow: it holds appointment fees from booking to completion; no key signs for it"
                    .into()
            } else {
                a.account
                    .role
                    .map_or_else(|| "none (unregistered)".into(), |r| r.to_string())
            },
            status: a.account.status.name(),
            status_class: status_class(a.account.status),
            you: web.user().is_some_and(|u| u.account() == id),
            a,
        }))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

#[derive(Template)]
#[template(path = "explorer/search.html")]
struct SearchTpl {
    ctx: Ctx,
    q: String,
    why: String,
}

async fn search(State(p): State<Arc<Portal>>, web: Web, Query(q): Query<SearchQuery>) -> Response {
    let query = q.q.unwrap_or_default().trim().to_string();
    let nothing = |web: &Web, why: String| {
        let mut r = render(SearchTpl {
            ctx: web.ctx(),
            q: query.clone(),
            why,
        });
        *r.status_mut() = axum::http::StatusCode::NOT_FOUND;
        r
    };
    let found: Result<Result<String, String>, PageError> = async {
        Ok(match classify(&query) {
            Target::Height(h) => {
                let s: StatusView = api(&p, &web, "/api/v1/status".into()).await?;
                if h <= s.height {
                    Ok(format!("/explorer/blocks/{h}"))
                } else {
                    Err(format!(
                        "There is no block at height {h}: the chain is at height {}.",
                        s.height
                    ))
                }
            }
            Target::Account(a) => {
                let v: AccountView = api(&p, &web, format!("/api/v1/accounts/{a}")).await?;
                if v.exists {
                    Ok(format!("/explorer/accounts/{a}"))
                } else {
                    Err(format!("The ledger has never seen account {a}."))
                }
            }
            Target::Tx(h) => {
                let t: TxView = api(&p, &web, format!("/api/v1/transactions/{h}")).await?;
                if t.status == ehrchain_client::api::tx_status::UNKNOWN {
                    Err(format!(
                        "No transaction {h} is known to the node (finalized or pending). Block ids cannot be searched; search a block by its height."
                    ))
                } else {
                    Ok(format!("/explorer/tx/{h}"))
                }
            }
            Target::Record(r) => Ok(format!("/records/{}", url_escape(&r.to_string()))),
            Target::Nothing if query.is_empty() => {
                Err("Type a block height, a transaction id or an account id.".into())
            }
            Target::Nothing => Err(
                "That is not a block height, a transaction id (64 hexadecimal characters), an account id (ehr…) or a record id (rec…).".into(),
            ),
        })
    }
    .await;
    match found {
        Ok(Ok(to)) => Redirect::to(&to).into_response(),
        Ok(Err(why)) => nothing(&web, why),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_classified_by_its_shape() {
        assert_eq!(classify(" 42 "), Target::Height(42));
        assert_eq!(classify("0"), Target::Height(0));
        assert_eq!(classify("99999999999999999999999"), Target::Nothing);
        let acct = "ehr97b0681855c3689ab993263a66c33be894010946";
        assert!(matches!(classify(acct), Target::Account(a) if a.to_string() == acct));
        assert!(matches!(classify(&acct.to_uppercase()), Target::Account(_)));
        assert!(matches!(classify(&acct[3..]), Target::Account(_)));
        let tx = "46e320ba74278fc496f9772cb14149b36db93e293d5dc95cbab5d463d1db6f07";
        assert!(matches!(classify(tx), Target::Tx(h) if h.to_string() == tx));
        assert!(matches!(
            classify("rec14f84e98468252059a7797afeff3f6d6"),
            Target::Record(_)
        ));
        assert_eq!(classify("alice"), Target::Nothing);
        assert_eq!(classify(""), Target::Nothing);
        assert_eq!(classify("ehr123"), Target::Nothing);
        assert_eq!(classify(&tx[1..]), Target::Nothing);
        assert!(matches!(classify(&"0".repeat(64)), Target::Tx(_)));
        assert!(matches!(classify(&"1".repeat(40)), Target::Account(_)));
    }

    #[test]
    fn long_values_are_abbreviated_and_accounts_linked() {
        let long = "ab".repeat(100);
        let v = serde_json::json!({
            "type": "transfer",
            "to": "ehr97b0681855c3689ab993263a66c33be894010946",
            "amount": 5,
            "blob": long,
            "nested": [{"x": "cd".repeat(50)}],
            "none": null,
        });
        let f = fields(&v);
        assert!(f.iter().all(|f| f.name != "type"));
        let get = |n: &str| f.iter().find(|f| f.name == n).expect(n);
        assert_eq!(
            get("to").link.as_deref(),
            Some("/explorer/accounts/ehr97b0681855c3689ab993263a66c33be894010946")
        );
        assert_eq!(get("amount").text, "5");
        let r = fields(&serde_json::json!({"id": "rec14f84e98468252059a7797afeff3f6d6"}));
        assert_eq!(
            r[0].link.as_deref(),
            Some("/records/rec14f84e98468252059a7797afeff3f6d6")
        );
        assert_eq!(get("amount").link, None);
        assert!(get("blob").text.ends_with("(200 characters)"));
        assert!(get("blob").text.len() < 60);
        assert!(get("nested").text.contains("(100 characters)"));
        assert_eq!(get("none").text, "—");
        let short = serde_json::json!("short");
        assert_eq!(abbreviate(&short), short);
    }

    #[test]
    fn block_pages_step_down_to_genesis() {
        assert_eq!(older_page(Some(21)), Some(20));
        assert_eq!(older_page(Some(0)), None);
        assert_eq!(older_page(None), None);
        assert_eq!(words("record_added"), "record added");
    }
}
