//! `ehrchain bench client`: what records cost the people using them, measured against a fresh
//! single-validator node (a separate process) with the real CLI code paths.
//!
//! - Encryption throughput for 1 MB and 100 MB files (memory → memory), and encrypt + upload +
//!   anchor (file → node → finalized), each as a fraction of this machine's single-core
//!   ChaCha20-Poly1305 speed measured first with the same crate.
//! - Audited read latency (read transaction finalized → ciphertext downloaded → decrypted →
//!   commitment checked) for an authorised reader, and the denial latency for an unauthorised
//!   one.
//! - Grant cost for a patient with 10 records and for one with 10,000: client time to build the
//!   wraps, transaction bytes, and submit → finalized latency. The key hierarchy makes a grant
//!   O(categories × epochs), so the two should match.

use crate::{
    bench::{percentile, start_network},
    client::Client,
    records,
};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, aead::AeadInOut};
use ehrchain_crypto::{DataKey, Keypair, envelope};
use ehrchain_ledger::GenesisAccount;
use ehrchain_node::api::{BatchRequest, BatchResult};
use ehrchain_types::{
    Category, Grantee, HexBytes, RecordId, RecordKey, Role, Transaction, TxPayload,
};
use serde_json::json;
use std::time::{Duration, Instant};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(v, 0.5)
}

fn p99(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(v, 0.99)
}

fn mb_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs.max(1e-9)
}

/// Single-core ChaCha20-Poly1305 (IETF, 12-byte nonce) over 64 KiB chunks: the yardstick.
fn chacha_baseline() -> f64 {
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buf = vec![1u8; 64 * 1024];
    let total = 128 * 1024 * 1024;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..total / buf.len() {
            let mut nonce = [0u8; 12];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let _tag = cipher
                .encrypt_inout_detached(&nonce.into(), b"", buf.as_mut_slice().into())
                .expect("encrypt");
        }
        runs.push(mb_s(total, t.elapsed().as_secs_f64()));
    }
    median(&mut runs)
}

fn encrypt_only(size: usize) -> f64 {
    let data = vec![0x5au8; size];
    let mut runs = Vec::new();
    for _ in 0..3 {
        let dk = DataKey::generate();
        let t = Instant::now();
        envelope::encrypt_stream(&dk, &RecordId([1; 16]), data.as_slice(), std::io::sink())
            .expect("encrypt");
        runs.push(mb_s(size, t.elapsed().as_secs_f64()));
    }
    median(&mut runs)
}

pub fn run(json_out: bool) -> anyhow::Result<()> {
    let log = |m: &str| {
        if !json_out {
            eprintln!("{m}");
        }
    };
    log("measuring single-core ChaCha20-Poly1305 ...");
    let baseline = chacha_baseline();
    let enc_1 = encrypt_only(1_000_000);
    let enc_100 = encrypt_only(100_000_000);

    let dir = tempfile::tempdir()?;
    let patient = Keypair::generate();
    let doctor = Keypair::generate();
    let stranger = Keypair::generate();
    let small = Keypair::generate();
    let big = Keypair::generate();
    let acct = |k: &Keypair, role| GenesisAccount {
        public_key: k.public_key(),
        role: Some(role),
        balance: 0,
        encryption_key: Some(k.encryption().public()),
    };
    let accounts = vec![
        acct(&patient, Role::Patient),
        acct(&doctor, Role::Doctor),
        acct(&stranger, Role::Doctor),
        acct(&small, Role::Patient),
        acct(&big, Role::Patient),
    ];
    log("starting a single-validator node ...");
    let (net, urls) = start_network(dir.path(), 1, accounts)?;
    let session = |k: &Keypair| records::Session::new(Client::new(&urls[0]), k.clone());
    let p = session(&patient)?;

    // Encrypt + upload + anchor, file to finalized.
    let mut store = Vec::new();
    for size in [1_000_000usize, 100_000_000] {
        let f = dir.path().join(format!("scan-{size}"));
        std::fs::write(&f, vec![0x42u8; size])?;
        let mut runs = Vec::new();
        for _ in 0..if size > 10_000_000 { 2 } else { 5 } {
            let t = Instant::now();
            records::add_record(&p, &p.me, Category::Imaging, &f, None, false)?;
            runs.push(mb_s(size, t.elapsed().as_secs_f64()));
        }
        store.push(median(&mut runs));
        std::fs::remove_file(&f)?;
    }
    log("measuring audited reads ...");
    let f = dir.path().join("read-1mb");
    std::fs::write(&f, vec![0x17u8; 1_000_000])?;
    let rec = records::add_record(&p, &p.me, Category::Lab, &f, None, false)?.record;
    records::grant(
        &p,
        &Grantee::Account(doctor.account()),
        &[Category::Lab],
        None,
        false,
    )?;
    let d = session(&doctor)?;
    let x = session(&stranger)?;
    let out = dir.path().join("out");
    let (mut allowed, mut denied) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        let r = records::get_record(&d, &rec, &out)?;
        anyhow::ensure!(
            r.decision == ehrchain_types::Decision::Allowed,
            "read denied"
        );
        allowed.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let r = records::get_record(&x, &rec, &out)?;
        anyhow::ensure!(
            r.decision == ehrchain_types::Decision::Denied,
            "read allowed"
        );
        denied.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    log("anchoring 10,000 records for one patient ...");
    let s_small = session(&small)?;
    let s_big = session(&big)?;
    anchor_many(&s_small, 10)?;
    anchor_many(&s_big, 10_000)?;
    let mut grant_rows = Vec::new();
    for (name, s) in [("10 records", &s_small), ("10000 records", &s_big)] {
        let (mut build, mut latency, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        for _ in 0..10 {
            let to = Grantee::Account(doctor.account());
            let t = Instant::now();
            let tv = records::grant(s, &to, &[Category::Lab, Category::Notes], None, false)?;
            latency.push(t.elapsed().as_secs_f64() * 1000.0);
            if let Some(tx) = &tv.tx {
                bytes = ehrchain_types::encode(tx).len();
                if let TxPayload::Grant { wraps, .. } = &tx.tx.payload {
                    // Client-side cost: sealing the same wraps again.
                    let t = Instant::now();
                    for w in wraps {
                        let ck = ehrchain_crypto::CategoryKey::generate();
                        envelope::seal_category_key(
                            &doctor.encryption().public(),
                            &ck,
                            &s.me,
                            w.category,
                            w.epoch,
                        )?;
                    }
                    build.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            records::revoke(s, &to, &[])?;
        }
        grant_rows.push(json!({
            "patient": name,
            "grant_latency_ms_p50": median(&mut latency),
            "wrap_sealing_ms_p50": median(&mut build),
            "tx_bytes": bytes,
        }));
    }
    drop(net);
    let report = json!({
        "machine_chacha20poly1305_mb_s": baseline,
        "encrypt_only": [
            {"size_mb": 1, "mb_s": enc_1, "fraction_of_chacha": enc_1 / baseline},
            {"size_mb": 100, "mb_s": enc_100, "fraction_of_chacha": enc_100 / baseline},
        ],
        "encrypt_upload_anchor": [
            {"size_mb": 1, "mb_s": store[0], "fraction_of_chacha": store[0] / baseline},
            {"size_mb": 100, "mb_s": store[1], "fraction_of_chacha": store[1] / baseline},
        ],
        "read_1mb_authorised_ms": {"p50": median(&mut allowed.clone()), "p99": p99(&mut allowed)},
        "read_unauthorised_ms": {"p50": median(&mut denied.clone()), "p99": p99(&mut denied)},
        "grant": grant_rows,
        "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let r = &report;
    println!(
        "client-side costs (1 validator, {} build)",
        r["profile"].as_str().unwrap_or("")
    );
    println!(
        "  ChaCha20-Poly1305, one core          {:>8.0} MB/s (the yardstick)",
        baseline
    );
    for (i, size) in [1, 100].iter().enumerate() {
        println!(
            "  encrypt {size:>3} MB (memory)             {:>8.0} MB/s = {:.2} of ChaCha20-Poly1305",
            r["encrypt_only"][i]["mb_s"].as_f64().unwrap_or(0.0),
            r["encrypt_only"][i]["fraction_of_chacha"]
                .as_f64()
                .unwrap_or(0.0)
        );
        println!(
            "  encrypt+upload+anchor {size:>3} MB       {:>8.0} MB/s = {:.2} of ChaCha20-Poly1305",
            r["encrypt_upload_anchor"][i]["mb_s"]
                .as_f64()
                .unwrap_or(0.0),
            r["encrypt_upload_anchor"][i]["fraction_of_chacha"]
                .as_f64()
                .unwrap_or(0.0)
        );
    }
    println!(
        "  audited read 1 MB, authorised        p50 {:.0} ms  p99 {:.0} ms",
        r["read_1mb_authorised_ms"]["p50"].as_f64().unwrap_or(0.0),
        r["read_1mb_authorised_ms"]["p99"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  audited read, denied                 p50 {:.0} ms  p99 {:.0} ms",
        r["read_unauthorised_ms"]["p50"].as_f64().unwrap_or(0.0),
        r["read_unauthorised_ms"]["p99"].as_f64().unwrap_or(0.0)
    );
    for g in r["grant"].as_array().into_iter().flatten() {
        println!(
            "  grant lab+notes, patient with {:<14} p50 {:.0} ms submit->final, {:.2} ms sealing, {} tx bytes",
            g["patient"].as_str().unwrap_or(""),
            g["grant_latency_ms_p50"].as_f64().unwrap_or(0.0),
            g["wrap_sealing_ms_p50"].as_f64().unwrap_or(0.0),
            g["tx_bytes"]
        );
    }
    Ok(())
}

/// Anchors `n` small records for the session's patient (the ciphertext is not uploaded: only
/// the ledger side matters for the grant cost), in batches of pre-signed transactions.
fn anchor_many(s: &records::Session, n: usize) -> anyhow::Result<()> {
    let (epoch, ck) = s.current_category_key(Category::Lab)?;
    let me: ehrchain_node::api::AccountView = s.account(&s.me)?;
    let mut txs = Vec::with_capacity(n);
    for i in 0..n {
        let id = envelope::new_record_id();
        let dk = DataKey::generate();
        let (_, e) = envelope::encrypt_bytes(&dk, &id, format!("result {i}").as_bytes());
        let t = s.key.sign_tx(Transaction {
            chain_id: s.chain_id.clone(),
            signer: s.key.public_key(),
            nonce: me.next_nonce + i as u64,
            payload: TxPayload::AddRecord(ehrchain_types::RecordDraft {
                id,
                patient: s.me,
                category: Category::Lab,
                content: e.content,
                size: e.size,
                commitment: e.commitment,
                meta: HexBytes(envelope::seal_meta(&dk, &id, b"{}")),
                key: RecordKey::Category {
                    epoch,
                    wrapped: HexBytes(envelope::wrap_data_key(&ck, &dk, &id)),
                },
                profile: false,
            }),
        });
        txs.push(hex::encode(ehrchain_types::encode(&t)));
    }
    // A sender may queue at most 1000 transactions: submit in waves, each once the previous
    // one has left the mempool.
    for wave in txs.chunks(900) {
        let _: Vec<BatchResult> = s.client.post(
            "/api/v1/transactions/batch",
            &BatchRequest { txs: wave.to_vec() },
        )?;
        let start = Instant::now();
        loop {
            let a: ehrchain_node::api::AccountView = s.account(&s.me)?;
            if a.next_nonce == a.account.nonce {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                anyhow::bail!("anchoring records did not finish");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let a: ehrchain_node::api::AccountView = s.account(&s.me)?;
    anyhow::ensure!(
        a.account.nonce >= me.next_nonce + n as u64,
        "only {} of {n} records were anchored",
        a.account.nonce - me.next_nonce
    );
    Ok(())
}
