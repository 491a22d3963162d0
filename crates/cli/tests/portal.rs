//! Black-box tests of the web portal's security as `ehrchain dev` serves it: Host and Origin
//! checks, CSRF, session cookies, sign-in rate limiting, sign-out, and registration through
//! the portal putting only ciphertext on the node. (The browser walk-through of every role
//! is `scripts/test-browser`.)

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_ehrchain");

struct Dev {
    dir: PathBuf,
    node: String,
    portal: String,
    child: Child,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tests that start nodes run one at a time (they probe for free ports).
static NODES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// Starts `ehrchain dev` with its portal on a port the OS picks, read from the banner.
fn start(dir: &Path) -> Dev {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--portal", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Portal: ") {
                let _ = tx.send(url.trim().trim_end_matches('/').to_string());
            }
        }
    });
    let portal = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the dev banner names the portal");
    Dev {
        dir: dir.to_path_buf(),
        node: format!("http://127.0.0.1:{port}"),
        portal,
        child,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into()
}

/// A browser: one cookie, the last page's CSRF token.
struct Browser {
    base: String,
    agent: ureq::Agent,
    cookie: Option<String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            agent: agent(),
            cookie: None,
        }
    }

    fn keep(&mut self, r: &mut ureq::http::Response<ureq::Body>) -> Page {
        let set_cookie = r
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string());
        if let Some(c) = &set_cookie {
            self.cookie = Some(c.split(';').next().unwrap().to_string());
        }
        Page {
            status: r.status().as_u16(),
            location: r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            set_cookie,
            body: r.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    fn get(&mut self, path: &str) -> Page {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        let mut r = req.call().unwrap();
        self.keep(&mut r)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c);
        }
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        let mut r = req.send_form(form.iter().copied()).unwrap();
        self.keep(&mut r)
    }

    /// The CSRF token of the form on `path`.
    fn csrf(&mut self, path: &str) -> String {
        let page = self.get(path);
        csrf_of(&page.body)
    }
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a form with a CSRF token");
    html[at + 19..at + 19 + 64].to_string()
}

/// A raw request with any Host header (HTTP clients insist on the URL's).
fn raw_get(base: &str, host: &str) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_portal_refuses_foreign_hosts_forged_forms_and_guessed_passwords() {
    let _one = NODES.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dev = start(&tmp.path().join("dev"));

    // Every page carries the security headers; the session cookie is HttpOnly, SameSite=Strict.
    let mut b = Browser::new(&dev.portal);
    let home = b.get("/");
    assert_eq!(home.status, 200);
    let cookie = home.set_cookie.expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let r = agent().get(format!("{}/", dev.portal)).call().unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));

    // DNS rebinding: a page asked for under another name is refused.
    assert_eq!(raw_get(&dev.portal, "attacker.example:80"), 421);
    assert_eq!(
        raw_get(&dev.portal, dev.portal.trim_start_matches("http://")),
        200
    );

    // A form without the session's CSRF token, or with another session's, is refused.
    let csrf = b.csrf("/login");
    let no_token = b.post("/login", &[("account", "demo1"), ("password", "dev")], None);
    assert_eq!(no_token.status, 403);
    assert!(no_token.body.contains("CSRF"));
    let mut other = Browser::new(&dev.portal);
    let their_token = other.csrf("/login");
    let forged = b.post(
        "/login",
        &[
            ("csrf", &their_token),
            ("account", "demo1"),
            ("password", "dev"),
        ],
        None,
    );
    assert_eq!(forged.status, 403);
    // … and so is a form posted from another site, even with the token.
    let cross = b.post(
        "/login",
        &[("csrf", &csrf), ("account", "demo1"), ("password", "dev")],
        Some("http://attacker.example"),
    );
    assert_eq!(cross.status, 403);

    // A wrong password says so, without saying whether the account exists; after five
    // failures the account name is locked for a while, even with the right password.
    for _ in 0..5 {
        let bad = b.post(
            "/login",
            &[("csrf", &csrf), ("account", "demo2"), ("password", "nope")],
            None,
        );
        assert_eq!(bad.status, 401);
        assert!(bad.body.contains("Wrong account name or password"));
    }
    let locked = b.post(
        "/login",
        &[("csrf", &csrf), ("account", "demo2"), ("password", "dev")],
        None,
    );
    assert_eq!(locked.status, 401);
    assert!(
        locked.body.contains("Too many failed sign-ins"),
        "{}",
        locked.body
    );

    // Signing in swaps the session id (no fixation); signing out forgets it.
    let before = b.cookie.clone();
    let ok = b.post(
        "/login",
        &[("csrf", &csrf), ("account", "demo1"), ("password", "dev")],
        None,
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_ne!(b.cookie, before);
    let signed_in_cookie = b.cookie.clone();
    // A request another site (or another port of this host) makes the browser send never
    // acts as the user, and leaves the user's session alone.
    let mut req = b.agent.get(format!("{}/dashboard", b.base));
    req = req
        .header("Cookie", b.cookie.as_deref().unwrap())
        .header("Sec-Fetch-Site", "same-site");
    let foreign = req.call().unwrap();
    assert_eq!(foreign.status().as_u16(), 303);
    assert!(
        foreign.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    assert!(foreign.headers().get("set-cookie").is_none());
    let own = b.get("/dashboard");
    assert_eq!(own.location.as_deref(), Some("/register/role"));
    assert_eq!(b.cookie, signed_in_cookie);
    let page = b.get("/register/role");
    assert!(page.body.contains("Registering your account"));
    let csrf = csrf_of(&page.body);
    let out = b.post("/logout", &[("csrf", &csrf)], None);
    assert_eq!(out.status, 303);
    b.cookie = signed_in_cookie;
    let after = b.get("/dashboard");
    assert_eq!(after.status, 303);
    assert!(after.location.unwrap().starts_with("/login"));
}

#[test]
fn registering_through_the_portal_puts_only_ciphertext_on_the_node() {
    let _one = NODES.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dev = start(&tmp.path().join("dev"));
    let mut b = Browser::new(&dev.portal);
    let csrf = b.csrf("/register");
    let marker = format!("Zyx{}Marker", std::process::id());
    let form = [
        ("csrf", csrf.as_str()),
        ("role", "patient"),
        ("account", "webpat"),
        ("name", marker.as_str()),
        ("date_of_birth", "1990-02-03"),
        ("address", "1 Portal Lane"),
        ("mobile", "+44 7000 000000"),
        ("insurance", "ACME-1"),
        ("password", "correct horse"),
        ("password2", "correct horse"),
    ];
    // A missing field is named, and nothing is created.
    let mut incomplete = form.to_vec();
    incomplete.retain(|(k, _)| *k != "address");
    let bad = b.post("/register", &incomplete, None);
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("missing: address"), "{}", bad.body);
    assert!(!dev.dir.join("keys/webpat.json").exists());

    // A name differing from an existing key's only in case is taken.
    let mut lookalike = form.to_vec();
    lookalike.retain(|(k, _)| *k != "account");
    lookalike.push(("account", "DEMO1"));
    let taken = b.post("/register", &lookalike, None);
    assert_eq!(taken.status, 400);
    assert!(taken.body.contains("is taken"), "{}", taken.body);

    let ok = b.post("/register", &form, None);
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location.as_deref(), Some("/patient"));
    // The ledger has the role; the node's files never hold the plaintext profile.
    let out = Command::new(BIN)
        .args(["--json", "account", "webpat"])
        .env("EHRCHAIN_NODE", &dev.node)
        .env("EHRCHAIN_HOME", dev.dir.join("keys"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"role\": \"patient\""), "{text}");
    assert!(text.contains("\"profile\": \""), "{text}");
    let mut found = Vec::new();
    scan(
        &dev.dir,
        &dev.dir.join("keys"),
        marker.as_bytes(),
        &mut found,
    );
    assert!(found.is_empty(), "plaintext in {found:?}");
}

/// Files under `dir` (except `skip`) containing `needle`.
fn scan(dir: &Path, skip: &Path, needle: &[u8], found: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        if p.is_dir() {
            scan(&p, skip, needle, found);
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(p);
        }
    }
}

/// Runs the CLI against `dev` (passphrase `dev`) and returns its stdout; panics on failure.
fn cli_ok(dev: &Dev, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("EHRCHAIN_NODE", &dev.node)
        .env("EHRCHAIN_HOME", dev.dir.join("keys"))
        .env("EHRCHAIN_PASSPHRASE", "dev")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The account id of a key in the dev chain's key directory.
fn account_of(dev: &Dev, name: &str) -> String {
    let f = std::fs::read_to_string(dev.dir.join(format!("keys/{name}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&f).unwrap();
    v["account"].as_str().unwrap().to_string()
}

/// A browser signed in as `name` (password `dev`).
fn signed_in(dev: &Dev, name: &str) -> Browser {
    let mut b = Browser::new(&dev.portal);
    let csrf = b.csrf("/login");
    let r = b.post(
        "/login",
        &[("csrf", &csrf), ("account", name), ("password", "dev")],
        None,
    );
    assert_eq!(r.status, 303, "{name} could not sign in: {}", r.body);
    b
}

/// The flash message of a page: (ok?, text).
fn flash_of(html: &str) -> Option<(bool, String)> {
    let at = html.find("<div class=\"flash ")?;
    let rest = &html[at..];
    let ok = rest.starts_with("<div class=\"flash ok\"");
    let start = rest.find('>')? + 1;
    let end = rest.find("</div>")?;
    Some((ok, rest[start..end].to_string()))
}

impl Browser {
    /// Posts `form` to `action` with the CSRF token of `page`, as the page's form would; then
    /// follows the redirect and returns where it went and the flash message there.
    fn act(&mut self, page: &str, action: &str, form: &[(&str, &str)]) -> (String, bool, String) {
        let csrf = self.csrf(page);
        let mut f = vec![("csrf", csrf.as_str())];
        f.extend_from_slice(form);
        let r = self.post(action, &f, None);
        assert_eq!(
            r.status, 303,
            "POST {action} answered {}: {}",
            r.status, r.body
        );
        let to = r.location.unwrap();
        let next = self.get(&to);
        let (ok, text) = flash_of(&next.body)
            .unwrap_or_else(|| panic!("no message after POST {action} on {to}"));
        (to, ok, text)
    }
}

#[test]
fn emergency_access_through_the_portal() {
    let _one = NODES.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let dev = start(&tmp.path().join("dev"));
    let register = |k: &str, role: &str| {
        let mut a = vec!["register", "--key", k, "--role", role];
        if role != "patient" {
            a.extend(["--org", "StMarys"]);
        }
        cli_ok(&dev, &a);
        if role != "patient" {
            cli_ok(&dev, &["approve", "--key", "admin", k]);
        }
    };
    register("demo1", "patient");
    register("demo2", "doctor");
    register("demo3", "patient");
    register("demo4", "patient");
    register("demo5", "regulator");
    register("demo6", "patient");
    let (patient, g3, g4) = (
        account_of(&dev, "demo1"),
        account_of(&dev, "demo3"),
        account_of(&dev, "demo4"),
    );
    let med = tmp.path().join("meds.txt");
    std::fs::write(&med, b"warfarin 5 mg daily; allergic to penicillin").unwrap();
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, b"private").unwrap();
    for (file, cat, title) in [
        (&med, "medication", "Medication list"),
        (&notes, "notes", "Private notes"),
    ] {
        cli_ok(
            &dev,
            &[
                "record",
                "add",
                "--key",
                "demo1",
                "--patient",
                "demo1",
                "--category",
                cat,
                "--file",
                file.to_str().unwrap(),
                "--title",
                title,
            ],
        );
    }

    // The patient names two guardians, 2 of 2; a threshold outside 2..=n is refused first.
    let mut pat = signed_in(&dev, "demo1");
    let page = pat.get("/patient/guardians");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("You have named no guardians"));
    let form = |t: &'static str| {
        vec![
            ("guardian", g3.clone()),
            ("others", format!(" {g4}\n")),
            ("threshold", t.to_string()),
            ("categories", "vitals".into()),
            ("categories", "lab".into()),
            ("categories", "medication".into()),
            ("categories", "emergency".into()),
            ("max_duration", "24h".into()),
        ]
    };
    for bad in ["1", "3"] {
        let f = form(bad);
        let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (_, ok, text) = pat.act("/patient/guardians", "/patient/guardians/set", &f);
        assert!(!ok && text.contains("from 2 to 2"), "{text}");
    }
    let f = form("2");
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, ok, text) = pat.act("/patient/guardians", "/patient/guardians/set", &f);
    assert!(ok && text.contains("2 of the 2"), "{text}");
    let page = pat.get("/patient/guardians");
    assert!(page.body.contains(&g3) && page.body.contains(&g4));
    assert!(page.body.contains("Remove guardians"));

    // The doctor asks from the chart; "other" without a note is refused and said so there.
    let mut doc = signed_in(&dev, "demo2");
    let chart = format!("/doctor/patients/{patient}");
    let page = doc.get(&chart);
    assert!(
        page.body.contains("Ask for emergency access"),
        "{}",
        page.body
    );
    let action = format!("{chart}/emergency");
    let (to, ok, text) = doc.act(
        &chart,
        &action,
        &[("reason", "other"), ("note", " "), ("duration", "1h")],
    );
    assert!(!ok && text.contains("note"), "{text}");
    assert!(to.starts_with(&chart), "{to}");
    let note = "Found <b>unconscious</b>\u{202E}fdp";
    let (to, ok, text) = doc.act(
        &chart,
        &action,
        &[
            ("reason", "unconscious"),
            ("note", note),
            ("duration", "1h"),
        ],
    );
    assert!(ok, "{text}");
    assert_eq!(to, "/doctor/emergency");
    let id = text
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                .strip_prefix("emg")
                .map(|h| format!("emg{h}"))
        })
        .unwrap_or_else(|| panic!("no request id in {text:?}"));
    let mine = doc.get("/doctor/emergency");
    assert!(mine.body.contains(&id) && mine.body.contains("waiting for the guardians"));
    let open = format!("/doctor/emergency/{id}/open");
    let (_, ok, text) = doc.act("/doctor/emergency", &open, &[]);
    assert!(!ok && text.contains("not released"), "{text}");

    // A guardian sees who, which hospital, why and the note (cleaned, escaped); a stranger
    // sees nothing and cannot answer.
    let mut stranger = signed_in(&dev, "demo6");
    assert!(!stranger.get("/guardian").body.contains(&id));
    let answer = format!("/guardian/{id}/answer");
    let (_, ok, _) = stranger.act("/guardian", &answer, &[("decision", "approve")]);
    assert!(!ok);
    let mut gd3 = signed_in(&dev, "demo3");
    let inbox = gd3.get("/guardian");
    assert_eq!(inbox.status, 200);
    assert!(inbox.body.contains(&id) && inbox.body.contains("StMarys"));
    assert!(inbox.body.contains("unconscious") && inbox.body.contains("Approve"));
    assert!(
        !inbox.body.contains("<b>unconscious"),
        "the note is escaped"
    );
    assert!(
        inbox.body.contains("\u{FFFD}fdp"),
        "hidden characters are shown"
    );
    let (_, ok, text) = gd3.act("/guardian", &answer, &[("decision", "approve")]);
    assert!(ok && text.contains("1 of 2 approvals"), "{text}");
    let (_, ok, text) = gd3.act("/guardian", &answer, &[("decision", "approve")]);
    assert!(!ok && text.contains("already answered"), "{text}");
    let mut gd4 = signed_in(&dev, "demo4");
    let (_, ok, text) = gd4.act("/guardian", &answer, &[("decision", "approve")]);
    assert!(ok && text.contains("released"), "{text}");

    // The doctor opens it (the shares check out) and reads the medication record from the
    // chart; the notes were not released.
    let (_, ok, text) = doc.act("/doctor/emergency", &open, &[]);
    assert!(ok && text.contains("2 good shares"), "{text}");
    let page = doc.get(&chart);
    assert!(page.body.contains("Emergency access released to you until"));
    assert!(page.body.contains("Medication list"), "{}", page.body);
    assert!(!page.body.contains("Private notes"));
    let at = page.body.find("Medication list").unwrap();
    let href = page.body[..at].rfind("/records/rec").unwrap();
    let record: String = page.body[href + 9..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let csrf = doc.csrf(&format!("/records/{record}"));
    let got = doc.post(&format!("/records/{record}/open"), &[("csrf", &csrf)], None);
    assert_eq!(got.status, 200, "{:?} {}", got.location, got.body);
    assert_eq!(got.body.as_bytes(), std::fs::read(&med).unwrap());

    // The patient's dashboard raises the alert; the Guardians page shows who read what.
    let dash = pat.get("/patient");
    assert!(
        dash.body
            .contains("Emergency access to your records was released")
    );
    let page = pat.get("/patient/guardians");
    assert!(page.body.contains("Records read under this access"));
    assert!(page.body.contains("Medication list") && page.body.contains("Mark reviewed"));
    let review = format!("/patient/emergency/{id}/review");
    let (_, ok, text) = pat.act("/patient/guardians", &review, &[("verdict", "disputed")]);
    assert!(ok && text.contains("disputed"), "{text}");
    assert!(text.contains("rotated"), "{text}");
    assert!(!pat.get("/patient/guardians").body.contains("Mark reviewed"));

    // The dispute ended the access; every regulator sees it, nobody else has the page.
    let csrf = doc.csrf(&format!("/records/{record}"));
    let denied = doc.post(&format!("/records/{record}/open"), &[("csrf", &csrf)], None);
    assert_ne!(denied.status, 200, "the access ended with the dispute");
    let mut reg = signed_in(&dev, "demo5");
    let desk = reg.get("/regulator");
    assert_eq!(desk.status, 200);
    assert!(desk.body.contains("Disputed emergency accesses") && desk.body.contains(&id));
    assert_eq!(doc.get("/regulator").status, 403);
}
