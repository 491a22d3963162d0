//! What every page shares: browser sessions, the signed-in user, CSRF, Host and Origin checks,
//! security headers, flash messages, error pages and calling the (blocking) SDK.
//!
//! A browser gets a random session id in an HttpOnly, SameSite=Strict cookie on its first
//! visit, with a CSRF token bound to it. Signing in unlocks the keystore into that session's
//! memory only (under a fresh session id); signing out, the idle timeout or the portal's exit
//! drops it, and the key zeroizes on drop.

use crate::{Portal, templates};
use askama::Template;
use axum::{
    body::{Body, to_bytes},
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};
use ehrchain_client::{Error as SdkError, Session};
use ehrchain_types::{AccountId, Role};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use zeroize::Zeroizing;

/// The session cookie's name.
pub const COOKIE: &str = "ehr_session";
/// The largest URL-encoded form body the portal reads (uploads are multipart and bounded
/// separately).
pub const FORM_LIMIT: usize = 256 * 1024;
/// Failed sign-ins allowed per account name from one client address within
/// [`LOGIN_WINDOW`]: guessing from elsewhere cannot lock the owner out.
pub const LOGIN_FAILURES: usize = 5;
/// Failed sign-ins allowed per client address, over all names, within [`LOGIN_WINDOW`]
/// (high: colleagues behind one address, or everyone on a local portal, share it).
pub const LOGIN_FAILURES_PER_ADDRESS: usize = 100;
/// Registrations allowed per client address within [`LOGIN_WINDOW`] (each costs a key
/// derivation and two ledger transactions).
pub const REGISTRATIONS_PER_ADDRESS: usize = 10;
/// Key derivations (Argon2id, ~19 MiB each) run at once; more wait their turn.
pub const KDF_AT_ONCE: usize = 2;
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Browser sessions kept at most (the oldest idle one is dropped beyond this).
pub const MAX_VISITS: usize = 10_000;

/// One browser's session with the portal.
pub struct Visit {
    pub id: String,
    pub csrf: String,
    last_seen: Mutex<Instant>,
    user: Mutex<Option<Arc<SignedIn>>>,
    flash: Mutex<Option<Flash>>,
}

impl Visit {
    pub fn fresh() -> Visit {
        Visit {
            id: random_token(),
            csrf: random_token(),
            last_seen: Mutex::new(Instant::now()),
            user: Mutex::new(None),
            flash: Mutex::new(None),
        }
    }

    /// The signed-in user of this session, if any.
    pub fn user(&self) -> Option<Arc<SignedIn>> {
        self.user.lock().expect("visit").clone()
    }

    /// Shows `text` on the next page this session renders.
    pub fn flash(&self, kind: FlashKind, text: impl Into<String>) {
        *self.flash.lock().expect("visit") = Some(Flash {
            kind,
            text: text.into(),
        });
    }

    fn take_flash(&self) -> Option<Flash> {
        self.flash.lock().expect("visit").take()
    }

    fn sign_out(&self) {
        self.user.lock().expect("visit").take();
    }
}

/// A signed-in account: its unlocked key lives here (and in in-flight SDK calls) only.
pub struct SignedIn {
    /// The keystore name it signed in with.
    pub name: String,
    pub sdk: Arc<Session>,
    pub role: Option<Role>,
    /// Whether the account is approved (professionals wait for the admin; re-read from the
    /// ledger on each request until it is, so an approval shows without signing in again).
    pub active: std::sync::atomic::AtomicBool,
    /// Decrypted small records (vitals readings) already read in this session, so a chart
    /// does not audit the same read again; zeroized when the session ends.
    pub plaintext: Mutex<HashMap<ehrchain_types::RecordId, Arc<Zeroizing<Vec<u8>>>>>,
}

impl SignedIn {
    pub fn account(&self) -> AccountId {
        self.sdk.me
    }

    pub fn is_active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The role's word (`patient`, `doctor`, …), or `unregistered`.
    pub fn role_word(&self) -> String {
        match self.role {
            Some(r) => r.to_string(),
            None => "unregistered".into(),
        }
    }
}

/// A one-shot message shown on the next page.
#[derive(Clone, Debug)]
pub struct Flash {
    pub kind: FlashKind,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashKind {
    Ok,
    Error,
}

impl Flash {
    /// The CSS class and ARIA role of the message box.
    pub fn class(&self) -> &'static str {
        match self.kind {
            FlashKind::Ok => "flash ok",
            FlashKind::Error => "flash error",
        }
    }
    pub fn aria(&self) -> &'static str {
        match self.kind {
            FlashKind::Ok => "status",
            FlashKind::Error => "alert",
        }
    }
}

/// The browser sessions and the sign-in failure counts.
#[derive(Default)]
pub struct Visits {
    by_id: Mutex<HashMap<String, Arc<Visit>>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Visits {
    /// The session a cookie names, unless it is unknown or was idle longer than `idle`
    /// (then `expired` is true and it is gone).
    fn find(&self, id: &str, idle: Duration) -> (Option<Arc<Visit>>, bool) {
        let mut map = self.by_id.lock().expect("visits");
        let Some(v) = map.get(id).cloned() else {
            return (None, false);
        };
        let mut seen = v.last_seen.lock().expect("visit");
        if seen.elapsed() > idle {
            drop(seen);
            let had_user = v.user().is_some();
            v.sign_out();
            map.remove(id);
            return (None, had_user);
        }
        *seen = Instant::now();
        drop(seen);
        (Some(v), false)
    }

    pub fn adopt(&self, v: Arc<Visit>, idle: Duration) {
        let mut map = self.by_id.lock().expect("visits");
        if map.len() >= MAX_VISITS {
            map.retain(|_, v| v.last_seen.lock().expect("visit").elapsed() <= idle);
            if map.len() >= MAX_VISITS {
                // A flood of anonymous visits must not sign people out: the oldest anonymous
                // visit goes first, a signed-in one only when there is no anonymous one.
                let oldest = map
                    .iter()
                    .min_by_key(|(_, v)| (v.user().is_some(), *v.last_seen.lock().expect("visit")))
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        map.insert(v.id.clone(), v);
    }

    /// Signs `user` in on a fresh session id (the old id, known before sign-in, is dropped),
    /// carrying over nothing but the CSRF token's role: a new token is issued too.
    pub fn sign_in(&self, old: &Visit, user: SignedIn, idle: Duration) -> Arc<Visit> {
        let fresh = Arc::new(Visit::fresh());
        *fresh.user.lock().expect("visit") = Some(Arc::new(user));
        self.by_id.lock().expect("visits").remove(&old.id);
        old.sign_out();
        self.adopt(fresh.clone(), idle);
        fresh
    }

    /// Ends a session: the key is dropped (and zeroized once no call holds it).
    pub fn sign_out(&self, v: &Visit) {
        v.sign_out();
        self.by_id.lock().expect("visits").remove(&v.id);
    }

    /// Seconds to wait before `keys` may try again, if any of them was counted too often
    /// within [`LOGIN_WINDOW`] ([`LOGIN_FAILURES`] for a `name:` key (a name at an address),
    /// [`LOGIN_FAILURES_PER_ADDRESS`] for an `ip:` key, [`REGISTRATIONS_PER_ADDRESS`] for a
    /// `reg:` key).
    pub fn locked_for(&self, keys: &[String]) -> Option<u64> {
        let mut f = self.failures.lock().expect("failures");
        let mut wait = None;
        for k in keys {
            let limit = if k.starts_with("ip:") {
                LOGIN_FAILURES_PER_ADDRESS
            } else if k.starts_with("reg:") {
                REGISTRATIONS_PER_ADDRESS
            } else {
                LOGIN_FAILURES
            };
            if let Some(times) = f.get_mut(k) {
                times.retain(|t| t.elapsed() < LOGIN_WINDOW);
                if times.len() >= limit {
                    let left = LOGIN_WINDOW.saturating_sub(times[0].elapsed()).as_secs() + 1;
                    wait = Some(wait.map_or(left, |w: u64| w.max(left)));
                }
            }
        }
        wait
    }

    pub fn failed(&self, keys: &[String]) {
        let mut f = self.failures.lock().expect("failures");
        if f.len() > MAX_VISITS {
            f.retain(|_, t| t.last().is_some_and(|t| t.elapsed() < LOGIN_WINDOW));
        }
        for k in keys {
            f.entry(k.clone()).or_default().push(Instant::now());
        }
    }

    pub fn succeeded(&self, keys: &[String]) {
        let mut f = self.failures.lock().expect("failures");
        for k in keys {
            f.remove(k);
        }
    }
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random number generator");
    hex::encode(b)
}

/// The request's browser session and user, put there by [`guard`]. Handlers take it as an
/// extractor.
#[derive(Clone)]
pub struct Web {
    pub visit: Arc<Visit>,
    /// The session expired on this request (the page says so).
    pub expired: bool,
}

impl Web {
    pub fn user(&self) -> Option<Arc<SignedIn>> {
        self.visit.user()
    }

    /// What the layout needs: the CSRF token, the user's badge and navigation, the flash.
    pub fn ctx(&self) -> Ctx {
        let user = self.user();
        let mut flash = self.visit.take_flash();
        if self.expired && flash.is_none() {
            flash = Some(Flash {
                kind: FlashKind::Error,
                text: "Your session expired after a period of inactivity; sign in again.".into(),
            });
        }
        Ctx {
            csrf: self.visit.csrf.clone(),
            nav: nav(user.as_deref()),
            user: user.as_deref().map(|u| Badge {
                name: u.name.clone(),
                account: u.account().to_string(),
                role: u.role_word(),
                active: u.is_active(),
            }),
            flash,
        }
    }

    /// Flashes the outcome of an action and redirects (303) to `back`.
    pub fn done<T>(
        &self,
        r: Result<T, PageError>,
        ok: impl FnOnce(T) -> String,
        back: &str,
    ) -> Response {
        match r {
            Ok(v) => self.visit.flash(FlashKind::Ok, ok(v)),
            Err(e) => self.visit.flash(FlashKind::Error, e.message()),
        }
        Redirect::to(back).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Web {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Web>()
            .cloned()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

/// A signed-in user (an extractor): without one, the browser is sent to the sign-in page.
#[derive(Clone)]
pub struct User {
    pub web: Web,
    pub me: Arc<SignedIn>,
}

impl User {
    pub fn ctx(&self) -> Ctx {
        self.web.ctx()
    }

    /// Runs SDK work (blocking HTTP, encryption) off the async threads with this user's
    /// session.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Session) -> ehrchain_client::Result<T> + Send + 'static,
    ) -> Result<T, PageError> {
        let sdk = self.me.sdk.clone();
        tokio::task::spawn_blocking(move || f(&sdk))
            .await
            .map_err(|_| PageError::Internal)?
            .map_err(PageError::Sdk)
    }

    /// Refuses unless the account has `role` (and is approved, for professionals).
    pub fn require(&self, roles: &[Role]) -> Result<(), PageError> {
        match self.me.role {
            Some(r) if roles.contains(&r) => {
                if self.me.is_active() {
                    Ok(())
                } else {
                    Err(PageError::Forbidden(
                        "Your account is waiting for the consortium admin's approval.".into(),
                    ))
                }
            }
            _ => Err(PageError::Forbidden(format!(
                "This page is for {} accounts; you are signed in as {}.",
                roles
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
                self.me.role_word()
            ))),
        }
    }

    /// Flashes the outcome of an action and redirects (303) to `back`.
    pub fn done<T>(
        &self,
        r: Result<T, PageError>,
        ok: impl FnOnce(T) -> String,
        back: &str,
    ) -> Response {
        self.web.done(r, ok, back)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for User {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, Self::Rejection> {
        let web = Web::from_request_parts(parts, s).await?;
        match web.user() {
            Some(me) => {
                if me.role.is_some() && !me.is_active() {
                    // Waiting for approval: has the admin approved since?
                    let sdk = me.sdk.clone();
                    let now = tokio::task::spawn_blocking(move || sdk.account(&sdk.me)).await;
                    if let Ok(Ok(a)) = now
                        && a.account.status == ehrchain_types::entries::AccountStatus::Active
                    {
                        me.active.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Ok(User { web, me })
            }
            None => {
                if !web.expired {
                    web.visit
                        .flash(FlashKind::Error, "Sign in to see that page.");
                }
                let next = parts.uri.path();
                Err(Redirect::to(&format!("/login?next={}", url_escape(next))).into_response())
            }
        }
    }
}

/// Percent-encodes a path or value for a URL query.
pub fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What the layout template shows.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub csrf: String,
    pub user: Option<Badge>,
    pub nav: Vec<(&'static str, &'static str)>,
    pub flash: Option<Flash>,
}

#[derive(Clone, Debug)]
pub struct Badge {
    pub name: String,
    pub account: String,
    pub role: String,
    pub active: bool,
}

/// The navigation links of a role: (path, label).
pub fn nav(user: Option<&SignedIn>) -> Vec<(&'static str, &'static str)> {
    let mut links: Vec<(&'static str, &'static str)> = Vec::new();
    match user.and_then(|u| u.role) {
        None if user.is_some() => links.push(("/register/role", "Register")),
        None => {}
        Some(Role::Patient) => links.extend([
            ("/patient", "Dashboard"),
            ("/patient/records", "Records"),
            ("/patient/consent", "Consent"),
            ("/patient/requests", "Requests"),
            ("/patient/guardians", "Guardians"),
            ("/patient/vitals", "Vitals"),
            ("/patient/appointments", "Appointments"),
            ("/patient/prescriptions", "Prescriptions"),
            ("/patient/invoices", "Invoices"),
            ("/patient/insurance", "Insurance"),
            ("/patient/wallet", "Wallet"),
            ("/patient/qr", "QR code"),
            ("/patient/access-log", "Access log"),
        ]),
        Some(Role::Doctor) => links.extend([
            ("/doctor", "Dashboard"),
            ("/doctor/patients", "Patients"),
            ("/doctor/symptoms", "Symptom reports"),
            ("/doctor/slots", "Appointments"),
            ("/doctor/emergency", "Emergency access"),
        ]),
        Some(Role::Pharmacist) => links.push(("/pharmacy", "Prescriptions")),
        Some(Role::Insurer) => links.push(("/insurer", "Claims")),
        Some(Role::Regulator) => links.push(("/regulator", "Claims")),
        Some(Role::Admin) => links.push(("/admin", "Approvals")),
        Some(_) => links.push(("/dashboard", "Dashboard")),
    }
    // Any registered account may be a patient's guardian.
    if user.is_some_and(|u| u.role.is_some()) {
        links.push(("/guardian", "Guardian inbox"));
    }
    links.push(("/explorer", "Explorer"));
    links
}

/// Why a page or action failed; rendered as a page (or flashed, for actions).
#[derive(Debug)]
pub enum PageError {
    NotFound(String),
    BadRequest(String),
    Forbidden(String),
    Sdk(SdkError),
    Internal,
}

impl PageError {
    /// The message for the user: never a key, a password or a stack trace.
    pub fn message(&self) -> String {
        match self {
            PageError::NotFound(m) | PageError::BadRequest(m) | PageError::Forbidden(m) => {
                m.clone()
            }
            PageError::Sdk(SdkError::Unreachable { url, .. }) => {
                format!("The node at {url} cannot be reached. Try again in a moment.")
            }
            PageError::Sdk(SdkError::Rejected { refusal, .. }) => {
                format!("The ledger refused this: {refusal}.")
            }
            PageError::Sdk(e) => e.to_string(),
            PageError::Internal => "Something went wrong in the portal; nothing was sent.".into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::Sdk(e) => match e.status() {
                Some(404) => StatusCode::NOT_FOUND,
                Some(403) | Some(401) => StatusCode::FORBIDDEN,
                Some(s) if (400..500).contains(&s) => StatusCode::BAD_REQUEST,
                _ => match e {
                    SdkError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
                    SdkError::Denied { .. } | SdkError::NoGrant { .. } => StatusCode::FORBIDDEN,
                    SdkError::Rejected { .. } | SdkError::Invalid(_) => StatusCode::BAD_REQUEST,
                    _ => StatusCode::BAD_GATEWAY,
                },
            },
            PageError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<SdkError> for PageError {
    fn from(e: SdkError) -> Self {
        PageError::Sdk(e)
    }
}

/// An error page to be drawn by [`guard`], which knows the session.
#[derive(Clone)]
struct ErrorPage {
    title: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status();
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::BAD_REQUEST => "That did not work",
            StatusCode::BAD_GATEWAY => "The node did not answer",
            _ => "Something went wrong",
        };
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code = %match &self { PageError::Sdk(e) => e.code().to_string(), _ => "internal".into() }, "portal page failed");
        }
        let mut r = status.into_response();
        r.extensions_mut().insert(ErrorPage {
            title,
            message: self.message(),
        });
        r
    }
}

/// Renders a template to a response; a rendering failure is a 500 page, logged without data.
pub fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            PageError::Internal.into_response()
        }
    }
}

/// The Host names this portal answers to (a local web UI is a DNS-rebinding target).
pub fn allowed_hosts(listen: std::net::SocketAddr, extra: &[String]) -> Vec<String> {
    let port = listen.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        listen.to_string(),
    ];
    if port == 80 {
        hosts.extend(["127.0.0.1".into(), "localhost".into()]);
    }
    hosts.extend(extra.iter().cloned());
    hosts.sort();
    hosts.dedup();
    hosts
}

fn refuse(status: StatusCode, text: &str) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text.to_string(),
    )
        .into_response();
    security_headers(r.headers_mut());
    r
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        // Not `no-referrer`: under it browsers send `Origin: null` with same-origin form posts,
        // which the Origin check must refuse. `same-origin` still sends no referrer to other sites.
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The `csrf` field of a URL-encoded body or query.
fn csrf_field(form: &[u8]) -> Option<String> {
    form.split(|b| *b == b'&')
        .filter_map(|kv| {
            let s = std::str::from_utf8(kv).ok()?;
            let (k, v) = s.split_once('=')?;
            (k == "csrf").then(|| v.to_string())
        })
        .next()
}

/// The middleware every request passes: Host check, session, Origin and CSRF checks on
/// writes, security headers, the session cookie, and error pages drawn with the layout.
pub async fn guard(State(portal): State<Arc<Portal>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !portal.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "This portal does not answer to that Host name (DNS-rebinding protection). Use the address it printed, or start it with --public-host.",
        );
    }
    if req.uri().path().starts_with("/static/") {
        let mut r = next.run(req).await;
        security_headers(r.headers_mut());
        return r;
    }
    let idle = portal.cfg.idle_timeout;
    // A request another site (or another port of this host: the same "site", which gets
    // SameSite=Strict cookies) made the browser send, e.g. an <img> pointing at a page whose
    // GET does audited reads, never acts as the signed-in user: it gets a throwaway anonymous
    // session, and the user's cookie is left alone.
    let foreign = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let (found, expired) = match cookie_value(req.headers()) {
        Some(_) if foreign => (None, false),
        Some(id) => portal.visits.find(&id, idle),
        None => (None, false),
    };
    let (visit, new_cookie) = match found {
        Some(v) => (v, false),
        None if foreign => (Arc::new(Visit::fresh()), false),
        None => {
            let v = Arc::new(Visit::fresh());
            portal.visits.adopt(v.clone(), idle);
            (v, true)
        }
    };
    let (mut parts, body) = req.into_parts();
    let mut body = body;
    if parts.method != Method::GET && parts.method != Method::HEAD {
        if parts.method != Method::POST {
            return refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "Only GET and POST are used here.",
            );
        }
        if let Some(origin) = parts.headers.get(header::ORIGIN) {
            let ok = origin
                .to_str()
                .ok()
                .and_then(|o| {
                    o.strip_prefix("http://")
                        .or_else(|| o.strip_prefix("https://"))
                })
                .is_some_and(|o| portal.hosts.iter().any(|h| h.eq_ignore_ascii_case(o)));
            if !ok {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "Refused: the form was sent from another site.",
                );
            }
        }
        let from_query = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.query().and_then(|q| csrf_field(q.as_bytes())));
        let form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let token = if form {
            let bytes = match to_bytes(body, FORM_LIMIT).await {
                Ok(b) => b,
                Err(_) => {
                    return refuse(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
                }
            };
            let t = csrf_field(&bytes).or(from_query);
            body = Body::from(bytes);
            t
        } else {
            from_query
        };
        let expected = &visit.csrf;
        if !token.is_some_and(|t| same_token(&t, expected)) {
            let mut r = refuse(
                StatusCode::FORBIDDEN,
                "Refused: this form has no valid CSRF token (it may be from an old page or another site). Reload the page and try again.",
            );
            if expired {
                r = refuse(
                    StatusCode::FORBIDDEN,
                    "Your session expired after a period of inactivity; sign in again. Nothing was sent.",
                );
            }
            if new_cookie {
                set_cookie(r.headers_mut(), &visit.id, portal.cfg.secure_cookies);
            }
            return r;
        }
    }
    let web = Web {
        visit: visit.clone(),
        expired,
    };
    parts.extensions.insert(web.clone());
    let req = Request::from_parts(parts, body);
    let mut r = next.run(req).await;
    if let Some(page) = r.extensions_mut().remove::<ErrorPage>() {
        let status = r.status();
        let t = templates::ErrorTpl {
            ctx: web.ctx(),
            title: page.title,
            message: page.message,
        };
        let mut drawn = render(t);
        *drawn.status_mut() = status;
        r = drawn;
    }
    // Signing in or out swaps the session: the handler names the new cookie value.
    let cookie = r
        .extensions_mut()
        .remove::<NewSession>()
        .map(|s| s.0)
        .or(new_cookie.then(|| visit.id.clone()));
    if let Some(id) = cookie {
        set_cookie(r.headers_mut(), &id, portal.cfg.secure_cookies);
    }
    security_headers(r.headers_mut());
    r
}

/// A handler's signal to [`guard`] that the browser's session id changed.
#[derive(Clone)]
pub struct NewSession(pub String);

fn set_cookie(h: &mut HeaderMap, id: &str, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}"
    )) {
        h.append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_field_is_found_only_by_its_exact_name() {
        assert_eq!(csrf_field(b"a=1&csrf=abc&b=2").as_deref(), Some("abc"));
        assert_eq!(csrf_field(b"xcsrf=abc"), None);
        assert_eq!(csrf_field(b""), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }

    #[test]
    fn sign_in_failures_lock_an_account_name_for_a_while() {
        let v = Visits::default();
        let keys = vec!["name:alice".to_string()];
        for _ in 0..LOGIN_FAILURES - 1 {
            v.failed(&keys);
        }
        assert_eq!(v.locked_for(&keys), None);
        v.failed(&keys);
        assert!(v.locked_for(&keys).is_some_and(|s| s > 0));
        assert_eq!(v.locked_for(&["name:bob".to_string()]), None);
        v.succeeded(&keys);
        assert_eq!(v.locked_for(&keys), None);
    }

    #[test]
    fn a_flood_of_anonymous_visits_evicts_anonymous_ones_first() {
        let visits = Visits::default();
        let idle = Duration::from_secs(600);
        let key = ehrchain_client::Keypair::generate();
        let user = SignedIn {
            name: "alice".into(),
            sdk: Arc::new(Session {
                node: ehrchain_client::Node::new("http://127.0.0.1:9"),
                me: key.account(),
                key,
                chain_id: "test".into(),
            }),
            role: Some(Role::Patient),
            active: true.into(),
            plaintext: Default::default(),
        };
        let signed_in = visits.sign_in(&Visit::fresh(), user, idle);
        let anonymous = Arc::new(Visit::fresh());
        visits.adopt(anonymous.clone(), idle);
        for _ in 0..MAX_VISITS + 10 {
            visits.adopt(Arc::new(Visit::fresh()), idle);
        }
        assert_eq!(visits.by_id.lock().unwrap().len(), MAX_VISITS);
        assert!(
            visits.find(&signed_in.id, idle).0.is_some(),
            "the signed-in visit stays"
        );
        assert!(
            visits.find(&anonymous.id, idle).0.is_none(),
            "the oldest anonymous visit went"
        );
    }

    #[test]
    fn an_idle_session_expires_and_says_so() {
        let visits = Visits::default();
        let v = Arc::new(Visit::fresh());
        visits.adopt(v.clone(), Duration::from_secs(60));
        assert!(visits.find(&v.id, Duration::from_secs(60)).0.is_some());
        std::thread::sleep(Duration::from_millis(5));
        let (found, _) = visits.find(&v.id, Duration::from_millis(1));
        assert!(found.is_none());
        assert!(visits.find(&v.id, Duration::from_secs(60)).0.is_none());
    }
}
