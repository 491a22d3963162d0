//! Page render time of the patient's pages for a patient with many records and vitals
//! readings (the issue's benchmark): `/patient/records` and `/vitals/{me}` (first visit,
//! uncached: every reading read with the audited read in one batch; then warm, from the
//! session's cache), p50 and p99.
//!
//! Needs a running node (`ehrchain dev`). It creates a fresh patient (no funds needed) with
//! `--records` records (anchored from memory, no upload: the list only reads the ledger) and
//! `--vitals` readings (encrypted and uploaded, since the vitals page decrypts them), then
//! drives the portal's router in-process (no HTTP listener, no browser):
//!
//! ```text
//! cargo run --release -p ehrchain-portal --example bench_pages -- \
//!     --node http://127.0.0.1:18080 [--records 1000] [--vitals 1000] [--runs 30] [--cold 3]
//! ```

use axum::{
    body::{Body, to_bytes},
    http::{Request, StatusCode, header},
};
use ehrchain_client::{
    Keypair, Keystore, Node, Session,
    api::now_ms,
    consent,
    crypto::{DataKey, envelope},
    records,
    schemas::Meta,
};
use ehrchain_portal::{PortalConfig, patient::Reading};
use ehrchain_types::{Category, HexBytes, RecordDraft, RecordKey, Role, TxPayload};
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};
use tower::ServiceExt;

const PASSWORD: &str = "bench-password";

struct Args {
    node: String,
    records: usize,
    vitals: usize,
    runs: usize,
    cold: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        node: std::env::var("EHRCHAIN_NODE").unwrap_or_else(|_| "http://127.0.0.1:8080".into()),
        records: 1000,
        vitals: 1000,
        runs: 30,
        cold: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{k} needs a value"))?;
        match k.as_str() {
            "--node" => a.node = v,
            "--records" => a.records = v.parse()?,
            "--vitals" => a.vitals = v.parse()?,
            "--runs" => a.runs = v.parse()?,
            "--cold" => a.cold = v.parse()?,
            _ => anyhow::bail!("unknown option {k}"),
        }
    }
    Ok(a)
}

/// A small record under the patient's category key, anchored from memory with a title.
fn draft(
    patient: ehrchain_types::AccountId,
    category: Category,
    epoch: u32,
    ck: &ehrchain_client::crypto::CategoryKey,
    content: &[u8],
    title: &str,
) -> anyhow::Result<RecordDraft> {
    let id = envelope::new_record_id();
    let dk = DataKey::generate();
    let (_, e) = envelope::encrypt_bytes(&dk, &id, content);
    let meta = Meta {
        title: Some(title.into()),
        file_name: Some("note.txt".into()),
        plaintext_size: content.len() as u64,
    };
    Ok(RecordDraft {
        id,
        patient,
        category,
        content: e.content,
        size: e.size,
        commitment: e.commitment,
        meta: HexBytes(envelope::seal_meta(&dk, &id, &meta.to_bytes())?),
        key: RecordKey::Category {
            epoch,
            wrapped: HexBytes(envelope::wrap_data_key(ck, &dk, &id)),
        },
        profile: false,
        coding: None,
    })
}

fn submit_all(s: &Session, payloads: Vec<TxPayload>) -> anyhow::Result<()> {
    let mut payloads = payloads;
    while !payloads.is_empty() {
        let rest = payloads.split_off(payloads.len().min(250));
        s.submit(std::mem::replace(&mut payloads, rest))?;
    }
    Ok(())
}

/// Makes the patient: registered, `n_records` lab records, `n_vitals` readings.
fn seed(
    node: &str,
    home: &std::path::Path,
    n_records: usize,
    n_vitals: usize,
) -> anyhow::Result<String> {
    let key = Keypair::generate();
    let ks = Keystore::new(home);
    ks.create(
        "bench-patient",
        &key,
        PASSWORD,
        ehrchain_client::crypto::keystore::DEFAULT_KDF,
    )?;
    let s = Session::new(Node::new(node), key)?;
    s.submit_one(TxPayload::Enrol {
        role: Role::Patient,
        organisation: None,
        licence: None,
        encryption_key: s.key.encryption().public(),
    })?;
    let t = Instant::now();
    let (epoch, ck) = consent::current_category_key(&s, Category::Lab)?;
    let drafts = (0..n_records)
        .map(|i| {
            draft(
                s.me,
                Category::Lab,
                epoch,
                &ck,
                format!("lab result {i}").as_bytes(),
                &format!("Lab result {i}"),
            )
            .map(TxPayload::AddRecord)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    submit_all(&s, drafts)?;
    eprintln!(
        "{n_records} records anchored in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let (epoch, ck) = consent::current_category_key(&s, Category::Vitals)?;
    let now = now_ms();
    let mut payloads = Vec::new();
    for i in 0..n_vitals {
        let r = Reading {
            at_ms: now - (n_vitals - i) as u64 * 3_600_000,
            systolic: Some(110 + (i % 30) as u32),
            diastolic: Some(70 + (i % 15) as u32),
            heart_rate: Some(60 + (i % 40) as u32),
            glucose: Some(4.5 + (i % 20) as f64 / 10.0),
            spo2: Some(95 + (i % 5) as u32),
            weight: Some(70.0 + (i % 10) as f64 / 5.0),
        };
        // The node counts at most 16 unanchored uploads per account and stops counting
        // anchored ones on its next sweep (every second): wait for it when over.
        let mut tries = 0;
        let sealed = loop {
            match records::seal_upload(
                &s,
                std::io::Cursor::new(r.to_bytes()),
                Some(ehrchain_portal::patient::VITALS_TITLE.into()),
                Some(ehrchain_portal::patient::VITALS_FILE.into()),
            ) {
                Ok(x) => break x,
                Err(e) if e.code() == "quota_exceeded" && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
                // The default node allows 60 uploads a minute per account: seeding 1,000
                // readings then takes ~17 minutes (raise `limits.uploads_per_minute_*` in the
                // dev node.toml to seed fast).
                Err(e) if e.code() == "rate_limited" && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => anyhow::bail!("vitals upload {i}: {e}"),
            }
        };
        let key = sealed.category_key(epoch, &ck);
        payloads.push(TxPayload::AddRecord(sealed.draft(
            s.me,
            Category::Vitals,
            key,
        )));
        // The node holds at most 16 unanchored uploads per account: anchor as we go.
        if payloads.len() == 8 {
            s.submit(std::mem::take(&mut payloads))?;
        }
    }
    submit_all(&s, payloads)?;
    eprintln!(
        "{n_vitals} vitals readings encrypted, uploaded and anchored in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    Ok(s.me.to_string())
}

struct Client {
    app: axum::Router,
    host: String,
    cookie: String,
}

fn field(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    rest.split('"').next().map(str::to_string)
}

fn set_cookie(resp: &axum::response::Response) -> Option<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .next_back()
        .map(str::to_string)
}

impl Client {
    async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, String)> {
        let req = Request::get(path)
            .header(header::HOST, &self.host)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())?;
        let resp = self.app.clone().oneshot(req).await?;
        if let Some(c) = set_cookie(&resp) {
            self.cookie = c;
        }
        let status = resp.status();
        let body = to_bytes(resp.into_body(), usize::MAX).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// A fresh browser session signed in as the bench patient.
    async fn sign_in(app: axum::Router, host: String) -> anyhow::Result<Client> {
        let mut c = Client {
            app,
            host,
            cookie: String::new(),
        };
        let (_, html) = c.get("/login").await?;
        let csrf = field(&html, "csrf").ok_or_else(|| anyhow::anyhow!("no csrf on /login"))?;
        let req = Request::post("/login")
            .header(header::HOST, &c.host)
            .header(header::COOKIE, &c.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "csrf={csrf}&account=bench-patient&password={PASSWORD}&next=%2Fdashboard"
            )))?;
        let resp = c.app.clone().oneshot(req).await?;
        anyhow::ensure!(
            resp.status() == StatusCode::SEE_OTHER,
            "sign-in failed: {}",
            resp.status()
        );
        c.cookie = set_cookie(&resp).ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
        Ok(c)
    }

    async fn time(&mut self, path: &str, expect: &str) -> anyhow::Result<f64> {
        let t = Instant::now();
        let (status, body) = self.get(path).await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(status == StatusCode::OK, "{path}: {status}");
        anyhow::ensure!(body.contains(expect), "{path}: page lacks {expect:?}");
        Ok(ms)
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn report(name: &str, v: &mut [f64]) {
    let p50 = pct(v, 0.50);
    let p99 = pct(v, 0.99);
    println!(
        "{name:<40} n={:<4} p50 {p50:>9.1} ms   p99 {p99:>9.1} ms",
        v.len()
    );
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let home = tempfile::tempdir()?;
    let me = seed(&a.node, home.path(), a.records, a.vitals)?;
    let listen: SocketAddr = "127.0.0.1:18999".parse()?;
    let mut cfg = PortalConfig::new(&a.node, listen, home.path().to_path_buf());
    cfg.idle_timeout = Duration::from_secs(3600);
    let app = ehrchain_portal::router(ehrchain_portal::portal(cfg, listen));
    let host = listen.to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let total_vitals = format!("{} readings.", a.vitals);
        let total_records = format!("All records ({})", a.records + a.vitals);
        let mut c = Client::sign_in(app.clone(), host.clone()).await?;
        let mut list = Vec::new();
        for _ in 0..a.runs {
            list.push(c.time("/patient/records", &total_records).await?);
        }
        let mut cold = Vec::new();
        for _ in 0..a.cold {
            let mut fresh = Client::sign_in(app.clone(), host.clone()).await?;
            cold.push(fresh.time(&format!("/vitals/{me}"), &total_vitals).await?);
        }
        let mut warm = Vec::new();
        for _ in 0..a.runs {
            warm.push(c.time(&format!("/vitals/{me}"), &total_vitals).await?);
        }
        let mut warm = warm.split_off(1.min(warm.len())); // the first one here is cold
        let mut own = Vec::new();
        for _ in 0..a.runs {
            own.push(c.time("/patient/vitals", &total_vitals).await?);
        }
        println!(
            "patient with {} records and {} vitals readings; node {}",
            a.records, a.vitals, a.node
        );
        report("/patient/records", &mut list);
        report("/vitals/{me} first visit (uncached)", &mut cold);
        report("/vitals/{me} warm (session cache)", &mut warm);
        report("/patient/vitals warm", &mut own);
        anyhow::Ok(())
    })
}
