//! Public pages: home, sign in and out, registration, the dashboard redirect, QR check,
//! static files.

use crate::{
    Portal,
    web::{FlashKind, NewSession, PageError, SignedIn, User, Web, render},
};
use askama::Template;
use axum::{
    Form, Router,
    extract::{ConnectInfo, FromRequestParts, Query, State},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use ehrchain_client::{Keypair, Session, schemas};
use ehrchain_types::{Category, Role, TxPayload, entries::AccountStatus};
use serde::Deserialize;
use std::{collections::HashMap, net::SocketAddr, sync::Arc};

pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/register", get(register_page).post(register))
        .route("/register/role", get(register_page).post(register))
        .route("/dashboard", get(dashboard))
        .route("/qr", get(qr_page).post(qr_check))
        .route("/static/htmx.min.js", get(htmx))
        .route("/static/style.css", get(css))
}

pub async fn not_found() -> PageError {
    PageError::NotFound("There is no page at this address.".into())
}

async fn htmx() -> Response {
    static_file(include_str!("../static/htmx.min.js"), "text/javascript")
}

async fn css() -> Response {
    static_file(include_str!("../static/style.css"), "text/css")
}

fn static_file(body: &'static str, ty: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomeTpl {
    ctx: crate::web::Ctx,
    chain: Option<(String, u64)>,
}

async fn home(State(p): State<Arc<Portal>>, web: Web) -> Response {
    let node = p.node.clone();
    let chain = tokio::task::spawn_blocking(move || {
        node.get::<ehrchain_api::StatusView>("/api/v1/status").ok()
    })
    .await
    .ok()
    .flatten()
    .map(|s| (s.chain_id, s.height));
    render(HomeTpl {
        ctx: web.ctx(),
        chain,
    })
}

/// Where a signed-in user lands: their role's dashboard.
pub fn dashboard_path(u: &SignedIn) -> &'static str {
    match u.role {
        None => "/register/role",
        Some(Role::Patient) => "/patient",
        Some(Role::Doctor) => "/doctor",
        Some(Role::Pharmacist) => "/pharmacy",
        Some(Role::Insurer) => "/insurer",
        Some(Role::Regulator) => "/regulator",
        Some(Role::Admin) => "/admin",
        Some(_) => "/explorer",
    }
}

async fn dashboard(user: User) -> Response {
    Redirect::to(dashboard_path(&user.me)).into_response()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTpl {
    ctx: crate::web::Ctx,
    next: String,
    account: String,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only a local path is a safe place to go after signing in: it starts with one `/`, and has
/// no backslash, whitespace or control character (browsers drop tabs and newlines, so
/// `/\t/evil.example` would become `//evil.example`, another site).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n[1..].starts_with(['/', '\\'])
                && n.chars().all(|c| c.is_ascii_graphic() && c != '\\') =>
        {
            n.into()
        }
        _ => "/dashboard".into(),
    }
}

async fn login_page(web: Web, Query(q): Query<NextQuery>) -> Response {
    render(LoginTpl {
        ctx: web.ctx(),
        next: safe_next(q.next.as_deref()),
        account: String::new(),
    })
}

#[derive(Deserialize)]
struct LoginForm {
    account: String,
    password: String,
    next: Option<String>,
}

/// The client's address, when the server knows it.
pub struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// Unlocks `name` with `password` and opens a session with the node; the role and approval
/// are read from the ledger.
async fn unlock(p: &Arc<Portal>, name: String, password: String) -> Result<SignedIn, PageError> {
    let _turn = p.kdf.acquire().await.map_err(|_| PageError::Internal)?;
    let ks = p.keystore();
    let node = p.node.clone();
    tokio::task::spawn_blocking(move || {
        let password = zeroize::Zeroizing::new(password);
        let key = match ks.unlock(&name, &password) {
            Ok(k) => k,
            Err(ehrchain_client::crypto::keystore::KeystoreError::NotFound { .. })
            | Err(ehrchain_client::crypto::keystore::KeystoreError::WrongPassphrase(_))
            | Err(ehrchain_client::crypto::keystore::KeystoreError::BadName(_)) => {
                return Err(PageError::BadRequest(
                    "Wrong account name or password.".into(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "keystore unreadable");
                return Err(PageError::BadRequest(
                    "That account's key file cannot be read on this portal.".into(),
                ));
            }
        };
        signed_in(node, key, name)
    })
    .await
    .map_err(|_| PageError::Internal)?
}

fn signed_in(
    node: ehrchain_client::Node,
    key: Keypair,
    name: String,
) -> Result<SignedIn, PageError> {
    let sdk = Session::new(node, key)?;
    let me = sdk.account(&sdk.me)?;
    Ok(SignedIn {
        name,
        role: me.account.role,
        active: (me.account.status == AccountStatus::Active).into(),
        sdk: Arc::new(sdk),
        plaintext: Default::default(),
    })
}

async fn login(
    State(p): State<Arc<Portal>>,
    web: Web,
    ClientAddr(addr): ClientAddr,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let account = f.account.trim().to_string();
    let ip = addr.map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
    let keys = vec![
        format!("name:{}@{ip}", account.to_ascii_lowercase()),
        format!("ip:{ip}"),
    ];
    let again = |web: &Web, msg: String| {
        web.visit.flash(FlashKind::Error, msg);
        let mut r = render(LoginTpl {
            ctx: web.ctx(),
            next: next.clone(),
            account: account.clone(),
        });
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r
    };
    if let Some(wait) = p.visits.locked_for(&keys) {
        return again(
            &web,
            format!(
                "Too many failed sign-ins. Wait {} before trying again.",
                humantime::format_duration(std::time::Duration::from_secs(wait))
            ),
        );
    }
    match unlock(&p, account.clone(), f.password).await {
        Ok(user) => {
            p.visits.succeeded(&keys);
            let dest = if next == "/dashboard" {
                dashboard_path(&user).to_string()
            } else {
                next.clone()
            };
            let fresh = p.visits.sign_in(&web.visit, user, p.cfg.idle_timeout);
            let mut r = Redirect::to(&dest).into_response();
            r.extensions_mut().insert(NewSession(fresh.id.clone()));
            r
        }
        Err(e @ PageError::BadRequest(_)) => {
            p.visits.failed(&keys);
            tracing::info!("portal sign-in failed");
            again(&web, e.message())
        }
        Err(e) => again(&web, e.message()),
    }
}

async fn logout(State(p): State<Arc<Portal>>, web: Web) -> Response {
    p.visits.sign_out(&web.visit);
    let fresh = Arc::new(crate::web::Visit::fresh());
    fresh.flash(
        FlashKind::Ok,
        "You are signed out; your key was removed from the portal's memory.",
    );
    p.visits.adopt(fresh.clone(), p.cfg.idle_timeout);
    let mut r = Redirect::to("/").into_response();
    r.extensions_mut().insert(NewSession(fresh.id.clone()));
    r
}

/// The roles one can register in, with what the form asks of each.
pub const REGISTER_ROLES: [Role; 6] = [
    Role::Patient,
    Role::Doctor,
    Role::Pharmacist,
    Role::Insurer,
    Role::Regulator,
    Role::Auditor,
];

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterTpl {
    ctx: crate::web::Ctx,
    /// Registering the signed-in (unregistered) account instead of a new key.
    existing: Option<String>,
    roles: Vec<&'static str>,
    form: HashMap<String, String>,
}

impl RegisterTpl {
    fn val(&self, k: &str) -> String {
        self.form.get(k).cloned().unwrap_or_default()
    }
    fn selected(&self, role: &str) -> bool {
        self.form.get("role").map(String::as_str) == Some(role)
    }
}

async fn register_page(web: Web) -> Response {
    let existing = web
        .user()
        .filter(|u| u.role.is_none())
        .map(|u| u.name.clone());
    if let Some(u) = web.user().filter(|u| u.role.is_some()) {
        web.visit
            .flash(FlashKind::Ok, "You are already registered.");
        return Redirect::to(dashboard_path(&u)).into_response();
    }
    render(RegisterTpl {
        ctx: web.ctx(),
        existing,
        roles: REGISTER_ROLES.iter().map(|r| r.name()).collect(),
        form: HashMap::new(),
    })
}

/// The profile JSON a role's form fields make (only the fields that role has, plus any
/// optional ones filled in).
pub fn profile_json(role: Role, form: &HashMap<String, String>) -> String {
    let mut obj = serde_json::Map::new();
    let fields = [
        "name",
        "date_of_birth",
        "address",
        "mobile",
        "email",
        "phone",
        "licence",
        "organisation",
        "insurance",
    ];
    for f in fields {
        let required = schemas::profile_fields(role).contains(&f);
        let v = form.get(f).map(|v| v.trim()).unwrap_or("");
        if required || !v.is_empty() {
            obj.insert(f.into(), serde_json::Value::String(v.into()));
        }
    }
    serde_json::Value::Object(obj).to_string()
}

async fn register(
    State(p): State<Arc<Portal>>,
    web: Web,
    ClientAddr(addr): ClientAddr,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let existing = web.user().filter(|u| u.role.is_none());
    let redraw = |web: &Web, msg: String, form: HashMap<String, String>| {
        web.visit.flash(FlashKind::Error, msg);
        let mut form = form;
        form.remove("password");
        form.remove("password2");
        form.remove("csrf");
        let mut r = render(RegisterTpl {
            ctx: web.ctx(),
            existing: web
                .user()
                .filter(|u| u.role.is_none())
                .map(|u| u.name.clone()),
            roles: REGISTER_ROLES.iter().map(|r| r.name()).collect(),
            form,
        });
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    };
    let role: Role = match form.get("role").map(|r| r.parse()) {
        Some(Ok(r)) if REGISTER_ROLES.contains(&r) => r,
        _ => return redraw(&web, "Choose a role.".into(), form),
    };
    let profile = profile_json(role, &form);
    let profile_bytes = match schemas::check_profile(role, &profile) {
        Ok(b) => b,
        Err(e) => return redraw(&web, capitalise(&e.to_string()), form),
    };
    let org = form
        .get("organisation")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let licence = form
        .get("licence")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if matches!(role, Role::Doctor | Role::Pharmacist) && org.is_none() {
        return redraw(
            &web,
            "Doctors and pharmacists name their organisation.".into(),
            form,
        );
    }
    // The key: the signed-in unregistered account's, or a new one in the keystore.
    let (name, key) = match &existing {
        Some(u) => (u.name.clone(), None),
        None => {
            let name = form
                .get("account")
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let pass = form.get("password").cloned().unwrap_or_default();
            if pass.chars().count() < 8 {
                return redraw(
                    &web,
                    "Choose a password of at least 8 characters.".into(),
                    form,
                );
            }
            if form.get("password2") != Some(&pass) {
                return redraw(&web, "The two passwords differ.".into(), form);
            }
            let reg = vec![format!(
                "reg:{}",
                addr.map_or_else(|| "unknown".to_string(), |a| a.ip().to_string())
            )];
            if let Some(wait) = p.visits.locked_for(&reg) {
                return redraw(
                    &web,
                    format!(
                        "Too many registrations from this address. Wait {} before registering again.",
                        humantime::format_duration(std::time::Duration::from_secs(wait))
                    ),
                    form,
                );
            }
            let ks = p.keystore();
            // Names differing only in case would let one account pass for another.
            let taken = ks
                .list()
                .ok()
                .into_iter()
                .flatten()
                .any(|(n, _)| n.eq_ignore_ascii_case(&name));
            if taken {
                return redraw(
                    &web,
                    format!(
                        "The account name {name:?} is taken (names are compared ignoring case); choose another."
                    ),
                    form,
                );
            }
            p.visits.failed(&reg);
            let _turn = p.kdf.acquire().await;
            let n2 = name.clone();
            let made = tokio::task::spawn_blocking(move || {
                let pass = zeroize::Zeroizing::new(pass);
                let key = Keypair::generate();
                ks.create(
                    &n2,
                    &key,
                    &pass,
                    ehrchain_client::crypto::keystore::DEFAULT_KDF,
                )
                .map(|_| key)
            })
            .await;
            match made {
                Ok(Ok(k)) => (name, Some(k)),
                Ok(Err(e)) => return redraw(&web, capitalise(&e.to_string()), form),
                Err(_) => return redraw(&web, PageError::Internal.message(), form),
            }
        }
    };
    let node = p.node.clone();
    let sdk = existing.as_ref().map(|u| u.sdk.clone());
    let n2 = name.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<SignedIn, PageError> {
        let sdk = match (sdk, key) {
            (Some(s), _) => s,
            (None, Some(k)) => Arc::new(Session::new(node.clone(), k)?),
            (None, None) => return Err(PageError::Internal),
        };
        sdk.submit_one(TxPayload::Enrol {
            role,
            organisation: org,
            licence,
            encryption_key: sdk.key.encryption().public(),
        })?;
        ehrchain_client::records::add_record_from(
            &sdk,
            &sdk.me,
            Category::Demographics,
            std::io::Cursor::new(zeroize::Zeroizing::new(profile_bytes).to_vec()),
            Some("profile".into()),
            None,
            true,
        )?;
        let me = sdk.account(&sdk.me)?;
        Ok(SignedIn {
            name: n2,
            role: me.account.role,
            active: (me.account.status == AccountStatus::Active).into(),
            sdk,
            plaintext: Default::default(),
        })
    })
    .await
    .map_err(|_| PageError::Internal)
    .and_then(|r| r);
    match done {
        Ok(user) => {
            let msg = if user.is_active() {
                format!(
                    "Registered as {role}. Welcome, your profile is encrypted; only its fingerprint is on the ledger."
                )
            } else {
                format!(
                    "Registered as {role}. The consortium admin must approve your account before you can act; your profile is encrypted and only its fingerprint is on the ledger."
                )
            };
            let dest = dashboard_path(&user);
            let fresh = p.visits.sign_in(&web.visit, user, p.cfg.idle_timeout);
            fresh.flash(FlashKind::Ok, msg);
            let mut r = Redirect::to(dest).into_response();
            r.extensions_mut().insert(NewSession(fresh.id.clone()));
            r
        }
        Err(e) => redraw(
            &web,
            format!(
                "Registration failed: {} (the key {name:?} was kept in the portal's keystore; sign in with it to try again)",
                e.message()
            ),
            form,
        ),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[derive(Template)]
#[template(path = "qr_check.html")]
struct QrTpl {
    ctx: crate::web::Ctx,
    payload: String,
    result: Option<ehrchain_client::qr::QrCheck>,
    error: Option<String>,
}

async fn qr_page(web: Web) -> Response {
    render(QrTpl {
        ctx: web.ctx(),
        payload: String::new(),
        result: None,
        error: None,
    })
}

#[derive(Deserialize)]
struct QrForm {
    payload: String,
}

async fn qr_check(State(p): State<Arc<Portal>>, web: Web, Form(f): Form<QrForm>) -> Response {
    let node = p.node.clone();
    let payload = f.payload.trim().to_string();
    let pl = payload.clone();
    let r = tokio::task::spawn_blocking(move || ehrchain_client::qr::check(&node, &pl)).await;
    let (result, error) = match r {
        Ok(Ok(c)) => (Some(c), None),
        Ok(Err(e)) => (None, Some(PageError::Sdk(e).message())),
        Err(_) => (None, Some(PageError::Internal.message())),
    };
    render(QrTpl {
        ctx: web.ctx(),
        payload,
        result,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/patient/records?page=2")),
            "/patient/records?page=2"
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /x",
            "https://evil.example",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/dashboard", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/dashboard");
    }
}
