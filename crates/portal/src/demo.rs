//! The demo world of `ehrchain dev --demo`: a patient, a doctor, a pharmacist, an insurer
//! officer, a regulator and a doctor awaiting approval, with something waiting on each
//! dashboard. Everything is made through the client SDK, as a user would: content is
//! encrypted here and the node sees only ciphertext and signed transactions.
//!
//! The world (keystores in the dev chain's key directory, passphrase `dev`):
//! - `alice`, patient: a profile, an X-ray image, a lab report, notes, vitals readings, an
//!   appointment booked with drbob, a symptom report sent to drbob, a grant to drbob, two
//!   prescriptions from drbob waiting for her approval (one dispensed: an invoice under an
//!   insurance claim, the other waiting at the pharmacy), tokens to pay with, guardians for
//!   emergency access (regulator, insurer and pharma, 2 of 3);
//! - `drbob`, doctor at St Mary's: alice's grant (vitals, medication with write, lab,
//!   imaging, notes), an open slot and alice's booking to confirm, her symptom report, and an
//!   emergency access request to alice's guardians (for the emergency category he lacks),
//!   waiting in the guardian inboxes of `pharma`, `insurer` and `regulator`;
//! - `pharma`, pharmacist at City Pharmacy: a prescription to dispense, one dispensed;
//! - `insurer`, insurer officer: alice's policy, her claim waiting at the first level;
//! - `regulator`: the claim's second level;
//! - `admin` (from genesis): `drcarol`, a doctor awaiting approval.

use crate::patient::vitals::{Reading, VITALS_FILE, VITALS_TITLE};
use anyhow::{Context, anyhow, bail};
use ehrchain_client::{
    Keypair, Keystore, Node, Session,
    api::now_ms,
    clinical, consent,
    crypto::keystore::{DEFAULT_KDF, KeystoreError},
    emergency, records, schemas,
};
use ehrchain_types::{
    AccountId, Category, Grantee, ItemId, ItemKind, RecordDraft, Role, TxPayload,
    entries::AccountStatus,
    items::{DEFAULT_EMERGENCY_CATEGORIES, DEFAULT_EMERGENCY_MS, EmergencyReason},
};
use serde::{Deserialize, Serialize};
use std::{path::Path, time::Duration};

/// A demo account to sign in as.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DemoUser {
    /// The keystore name (the portal's "Account").
    pub name: String,
    pub role: String,
    /// What this account has waiting in the portal.
    pub does: String,
}

/// The passphrase of every demo keystore (the dev chain's).
pub const PASSPHRASE: &str = "dev";

/// The accounts the demo creates, with their role, organisation and licence.
const PEOPLE: [(&str, Role, Option<&str>, Option<&str>); 6] = [
    ("alice", Role::Patient, None, None),
    ("drbob", Role::Doctor, Some("St Mary's"), Some("GMC-7001")),
    (
        "pharma",
        Role::Pharmacist,
        Some("City Pharmacy"),
        Some("GPhC-2042"),
    ),
    ("insurer", Role::Insurer, Some("Acme Health"), None),
    ("regulator", Role::Regulator, Some("Health Authority"), None),
    ("drcarol", Role::Doctor, Some("St Mary's"), Some("GMC-7002")),
];

/// Tokens each new account receives from the genesis-funded `demo1`…`demo10` (each holds
/// 100): (from, to, amount).
const FUNDING: [(&str, &str, u64); 8] = [
    ("demo1", "alice", 100),
    ("demo2", "alice", 100),
    ("demo3", "insurer", 100),
    ("demo4", "insurer", 100),
    ("demo5", "drbob", 50),
    ("demo5", "pharma", 50),
    ("demo6", "regulator", 20),
    ("demo6", "drcarol", 20),
];

/// Seeds the demo world through the node at `node` with keystores in `keys` (passphrase
/// `dev`, like the dev chain's).
pub fn seed(node: &str, keys: &Path) -> anyhow::Result<Vec<DemoUser>> {
    let node = Node::new(node);
    wait_for_node(&node)?;
    let ks = Keystore::new(keys);

    // Keys: a keystore for each person (reused if a previous attempt made it).
    let mut sessions = Vec::new();
    for (name, ..) in PEOPLE {
        let key = key_for(&ks, name)?;
        sessions.push(Session::new(node.clone(), key).with_context(|| "opening a session")?);
    }
    let s = |name: &str| -> &Session {
        let i = PEOPLE
            .iter()
            .position(|p| p.0 == name)
            .expect("a demo person");
        &sessions[i]
    };
    let admin = Session::new(node.clone(), unlock(&ks, "admin")?)?;

    // 1. Funding, from the genesis-funded demo accounts (one thread per sender).
    let mut by_sender: Vec<(&str, Vec<TxPayload>)> = Vec::new();
    for (from, to, amount) in FUNDING {
        let to = s(to).me;
        let acct = s_account(&admin, &to)?;
        if acct.account.balance > 0 {
            continue; // funded by an earlier attempt
        }
        let p = TxPayload::Transfer { to, amount };
        match by_sender.iter_mut().find(|(f, _)| *f == from) {
            Some((_, v)) => v.push(p),
            None => by_sender.push((from, vec![p])),
        }
    }
    let senders = by_sender
        .into_iter()
        .map(|(from, payloads)| Ok((Session::new(node.clone(), unlock(&ks, from)?)?, payloads)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    parallel(
        senders
            .iter()
            .map(|(sess, p)| {
                move || -> anyhow::Result<()> {
                    sess.submit(p.clone())
                        .with_context(|| format!("funding from {}", sess.me))?;
                    Ok(())
                }
            })
            .collect(),
    )?;

    // 2. Registration with an encrypted profile, every person at once.
    parallel(
        PEOPLE
            .iter()
            .zip(&sessions)
            .map(|((name, role, org, licence), sess)| {
                move || register(sess, name, *role, *org, *licence)
            })
            .collect(),
    )?;

    // 3. The admin approves the professionals, except drcarol (left for the admin's page).
    let mut approvals = Vec::new();
    for name in ["drbob", "pharma", "insurer", "regulator"] {
        let a = s_account(&admin, &s(name).me)?;
        if a.account.status == AccountStatus::Pending {
            approvals.push(TxPayload::Approve {
                account: s(name).me,
            });
        }
    }
    if !approvals.is_empty() {
        admin.submit(approvals).context("the admin approving")?;
    }

    let (alice, drbob, pharma, insurer, regulator) = (
        s("alice"),
        s("drbob"),
        s("pharma"),
        s("insurer"),
        s("regulator"),
    );

    // 4. In parallel: alice's records and grant; drbob's slots; the insurer's policy.
    let slots: std::sync::Mutex<Vec<ItemId>> = Default::default();
    parallel(vec![
        Box::new(|| alice_records(alice, &drbob.me)) as Job<'_>,
        Box::new(|| {
            // Tomorrow at 09:00 and 09:30 UTC.
            let day = 24 * 3600 * 1000;
            let tomorrow_9 = (now_ms() / day + 1) * day + 9 * 3600 * 1000;
            let t = drbob
                .submit(vec![
                    TxPayload::AddSlot {
                        start_ms: tomorrow_9,
                        minutes: 30,
                        fee: 20,
                    },
                    TxPayload::AddSlot {
                        start_ms: tomorrow_9 + 30 * 60 * 1000,
                        minutes: 30,
                        fee: 20,
                    },
                ])
                .context("drbob publishing slots")?;
            *slots.lock().map_err(|_| anyhow!("poisoned"))? = t
                .iter()
                .map(|t| clinical::created(ItemKind::Slot, t))
                .collect();
            Ok(())
        }),
        Box::new(|| {
            insurer
                .submit_one(TxPayload::SetPolicy {
                    patient: alice.me,
                    coverage_bp: 8000,
                    approvers: vec![insurer.me, regulator.me],
                    expires_ms: Some(now_ms() + 365 * 24 * 3600 * 1000),
                })
                .context("the insurer recording alice's policy")?;
            Ok(())
        }),
    ])?;
    let slots = slots.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let first_slot = *slots.first().ok_or_else(|| anyhow!("no slot was made"))?;

    // 5. alice books the first slot and reports symptoms; drbob prescribes twice.
    let rx: std::sync::Mutex<Vec<ItemId>> = Default::default();
    parallel(vec![
        Box::new(|| {
            alice
                .submit_one(TxPayload::Book { slot: first_slot })
                .context("alice booking drbob's slot")?;
            clinical::report_symptoms(
                alice,
                &drbob.me,
                vec!["fever".into(), "cough".into(), "fatigue".into()],
                Some("Three days of fever, worse at night.".into()),
                None,
            )
            .context("alice reporting symptoms to drbob")?;
            Ok(())
        }) as Job<'_>,
        Box::new(|| {
            let mut made = Vec::new();
            for (drug, dose, days, quantity) in [
                ("Amoxicillin", "500 mg three times a day", 7, 21),
                ("Ibuprofen", "400 mg as needed, at most three a day", 5, 15),
            ] {
                let content = schemas::RxContent {
                    drug: drug.into(),
                    dose: dose.into(),
                    days,
                    quantity,
                    note: Some("Take with food.".into()),
                    prescriber: drbob.me,
                    written_ms: now_ms(),
                };
                let p = clinical::prescribe(drbob, &alice.me, &content, Some(&pharma.me))
                    .with_context(|| format!("drbob prescribing {drug}"))?;
                made.push(p.id);
            }
            *rx.lock().map_err(|_| anyhow!("poisoned"))? = made;
            Ok(())
        }),
    ])?;
    let rx = rx.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let dispensed = *rx
        .get(1)
        .ok_or_else(|| anyhow!("no prescription was made"))?;

    // 6. pharma dispenses the second (an invoice) while alice names her guardians for
    //    emergency access (the regulator, the insurer officer and the pharmacist, 2 of 3).
    let invoice: std::sync::Mutex<Option<ItemId>> = Default::default();
    parallel(vec![
        Box::new(|| {
            let t = pharma
                .submit_one(TxPayload::Dispense {
                    rx: dispensed,
                    price: 40,
                })
                .context("pharma dispensing")?;
            *invoice.lock().map_err(|_| anyhow!("poisoned"))? =
                Some(clinical::created(ItemKind::Invoice, &t));
            Ok(())
        }) as Job<'_>,
        Box::new(|| {
            emergency::set_guardians(
                alice,
                &emergency::GuardianPlan {
                    guardians: vec![regulator.me, insurer.me, pharma.me],
                    threshold: 2,
                    categories: DEFAULT_EMERGENCY_CATEGORIES.to_vec(),
                    max_duration: Duration::from_millis(DEFAULT_EMERGENCY_MS),
                },
            )
            .context("alice naming her guardians")?;
            Ok(())
        }),
    ])?;
    let invoice = invoice
        .into_inner()
        .map_err(|_| anyhow!("poisoned"))?
        .ok_or_else(|| anyhow!("no invoice was made"))?;

    // 7. alice claims the invoice under her policy, while drbob asks her guardians for
    //    emergency access (left waiting in their guardian inboxes).
    parallel(vec![
        Box::new(|| {
            let policy = clinical::claim_policy(alice, None).context("alice's policy")?;
            alice
                .submit_one(TxPayload::SubmitClaim { invoice, policy })
                .context("alice claiming the invoice")?;
            Ok(())
        }) as Job<'_>,
        Box::new(|| {
            emergency::request(
                drbob,
                &alice.me,
                EmergencyReason::Unconscious,
                Some("Brought in unresponsive after a fall; we need her medication list and allergies."),
                Duration::from_secs(6 * 3600),
            )
            .context("drbob asking for emergency access")?;
            Ok(())
        }),
    ])?;

    Ok(vec![
        user(
            "alice",
            Role::Patient,
            "records, vitals, an appointment with drbob, prescriptions to approve, an invoice under a claim, guardians (2 of 3) and drbob's emergency request",
        ),
        user(
            "drbob",
            Role::Doctor,
            "alice's chart (granted), her booking to confirm, her symptom report, an emergency request waiting for her guardians",
        ),
        user(
            "pharma",
            Role::Pharmacist,
            "a prescription to dispense; drbob's emergency request in the guardian inbox",
        ),
        user(
            "insurer",
            Role::Insurer,
            "alice's policy; her claim waits at the insurer's level; drbob's emergency request in the guardian inbox",
        ),
        user(
            "regulator",
            Role::Regulator,
            "the claim's second level; drbob's emergency request in the guardian inbox",
        ),
        user(
            "admin",
            Role::Admin,
            "drcarol, a doctor, waits for approval",
        ),
    ])
}

type Job<'a> = Box<dyn FnOnce() -> anyhow::Result<()> + Send + 'a>;

/// Runs jobs on their own threads and returns the first error.
fn parallel<'a, F>(jobs: Vec<F>) -> anyhow::Result<()>
where
    F: FnOnce() -> anyhow::Result<()> + Send + 'a,
{
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs.into_iter().map(|j| scope.spawn(j)).collect();
        let mut first = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(anyhow!("a demo step panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

fn user(name: &str, role: Role, does: &str) -> DemoUser {
    DemoUser {
        name: name.into(),
        role: role.to_string(),
        does: does.into(),
    }
}

/// Waits (up to a minute) for the node's API to answer.
fn wait_for_node(node: &Node) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    loop {
        match node.get::<ehrchain_client::api::StatusView>("/api/v1/status") {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(60) => {
                bail!("the node at {} does not answer: {e}", node.url())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn unlock(ks: &Keystore, name: &str) -> anyhow::Result<Keypair> {
    ks.unlock(name, PASSPHRASE)
        .with_context(|| format!("unlocking the dev key {name:?} in {}", ks.dir().display()))
}

/// The key `name`: made now, or the one an earlier (interrupted) attempt made.
fn key_for(ks: &Keystore, name: &str) -> anyhow::Result<Keypair> {
    match ks.unlock(name, PASSPHRASE) {
        Ok(k) => Ok(k),
        Err(KeystoreError::NotFound { .. }) => {
            let k = Keypair::generate();
            ks.create(name, &k, PASSPHRASE, DEFAULT_KDF)
                .with_context(|| format!("creating the key {name:?}"))?;
            Ok(k)
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "the key {name:?} in {} exists but cannot be unlocked with the dev passphrase",
                ks.dir().display()
            )
        }),
    }
}

fn s_account(s: &Session, id: &AccountId) -> anyhow::Result<ehrchain_client::api::AccountView> {
    s.account(id)
        .with_context(|| format!("looking up account {id}"))
}

/// The profile a person registers with (fictional details).
fn profile(name: &str, role: Role, org: Option<&str>, licence: Option<&str>) -> serde_json::Value {
    let full = match name {
        "alice" => "Alice Example",
        "drbob" => "Dr Bob Smith",
        "pharma" => "Priya Shah",
        "insurer" => "Ian Surer",
        "regulator" => "Rita Gale",
        "drcarol" => "Dr Carol Jones",
        other => other,
    };
    let mut v = serde_json::json!({
        "name": full,
        "date_of_birth": "1980-02-03",
        "address": "1 High Street, Exampletown",
    });
    match role {
        Role::Patient => {
            v["mobile"] = "+44 7700 900000".into();
            v["insurance"] = "Acme Health, policy P-123".into();
        }
        _ => {
            v["email"] = format!("{name}@example.org").into();
            v["phone"] = "+44 20 7946 0000".into();
            if let Some(l) = licence {
                v["licence"] = l.into();
            }
            if let Some(o) = org {
                v["organisation"] = o.into();
            }
        }
    }
    v
}

/// Registers `s` in `role` (unless it already is) with an encrypted profile record.
fn register(
    s: &Session,
    name: &str,
    role: Role,
    org: Option<&str>,
    licence: Option<&str>,
) -> anyhow::Result<()> {
    let me = s_account(s, &s.me)?;
    if me.account.role.is_none() {
        s.submit_one(TxPayload::Enrol {
            role,
            organisation: org.map(str::to_string),
            licence: licence.map(str::to_string),
            encryption_key: s.key.encryption().public(),
        })
        .with_context(|| format!("registering {name} as {role}"))?;
    }
    if me.profile_fingerprint.is_none() {
        let bytes = schemas::check_profile(role, &profile(name, role, org, licence).to_string())?;
        records::add_record_from(
            s,
            &s.me,
            Category::Demographics,
            std::io::Cursor::new(bytes),
            Some("profile".into()),
            None,
            true,
        )
        .with_context(|| format!("adding {name}'s encrypted profile"))?;
    }
    Ok(())
}

/// `n` plausible readings, one a day ending `now`, oldest first (deterministic).
pub fn vitals_series(now: u64, n: usize) -> Vec<Reading> {
    let day = 24 * 3600 * 1000;
    (0..n)
        .map(|i| {
            let back = (n - 1 - i) as u64;
            let w = (i * 7 % 5) as u32; // a small, repeatable wobble
            Reading {
                at_ms: now.saturating_sub(back * day),
                systolic: Some(118 + w * 2 + (i as u32 % 3)),
                diastolic: Some(76 + w),
                heart_rate: Some(68 + w * 3),
                glucose: Some(5.0 + f64::from(w) * 0.2),
                spo2: Some(97 + (w % 3)),
                weight: Some(68.0 - i as f64 * 0.1),
            }
        })
        .collect()
}

/// alice's records (image, lab report, notes, vitals), then her grant to drbob.
fn alice_records(alice: &Session, drbob: &AccountId) -> anyhow::Result<()> {
    let mut files: Vec<(Category, String, String, Vec<u8>)> = vec![
        (
            Category::Imaging,
            "Chest X-ray".into(),
            "chest-xray.png".into(),
            XRAY_PNG.to_vec(),
        ),
        (
            Category::Lab,
            "Full blood count".into(),
            "blood-count.txt".into(),
            LAB_REPORT.as_bytes().to_vec(),
        ),
        (
            Category::Notes,
            "Allergies and history".into(),
            "history.txt".into(),
            b"Allergies: penicillin (rash, 2009).\nConditions: mild asthma since childhood.\nSurgery: appendectomy 2015.\n".to_vec(),
        ),
    ];
    for v in vitals_series(now_ms(), 8) {
        files.push((
            Category::Vitals,
            VITALS_TITLE.into(),
            VITALS_FILE.into(),
            v.to_bytes(),
        ));
    }
    // The category keys first (one batch of rotations), then every record in one batch.
    let state = consent::ConsentState::fetch(alice, &[])?;
    let planner = consent::Planner {
        key: &alice.key,
        state: &state,
    };
    let mut rotations = Vec::new();
    let mut keys = std::collections::BTreeMap::new();
    for (c, ..) in &files {
        if keys.contains_key(c) {
            continue;
        }
        let (epoch, ck, rotation) = planner.current_key(*c)?;
        rotations.extend(rotation);
        keys.insert(*c, (epoch, ck));
    }
    if !rotations.is_empty() {
        alice
            .submit(rotations)
            .context("alice making her category keys")?;
    }
    let mut drafts: Vec<TxPayload> = Vec::new();
    for (c, title, file, bytes) in files {
        let (epoch, ck) = &keys[&c];
        let sealed = records::seal_upload(
            alice,
            std::io::Cursor::new(bytes),
            Some(title.clone()),
            Some(file),
        )
        .with_context(|| format!("encrypting and uploading alice's {title:?}"))?;
        let draft: RecordDraft = sealed.draft(alice.me, c, sealed.category_key(*epoch, ck));
        drafts.push(TxPayload::AddRecord(draft));
    }
    alice
        .submit(drafts)
        .context("alice anchoring her records")?;
    consent::grant(
        alice,
        &Grantee::Account(*drbob),
        &[
            Category::Vitals,
            Category::Medication,
            Category::Lab,
            Category::Imaging,
            Category::Notes,
        ],
        Some(Duration::from_secs(90 * 24 * 3600)),
        true,
    )
    .context("alice granting drbob access")?;
    Ok(())
}

const LAB_REPORT: &str = "CITY HOSPITAL LABORATORY\n\
Full blood count\n\
Patient: Alice Example\n\
\n\
Test                Result    Range\n\
Haemoglobin         132 g/L   115-165\n\
White cells         6.1       4.0-11.0 x10^9/L\n\
Platelets           254       150-400 x10^9/L\n\
CRP                 14 mg/L   < 5 (raised)\n\
\n\
Comment: mildly raised CRP, consistent with a viral infection.\n";

/// A small grayscale PNG, a stand-in for a scan (`crates/portal/assets/chest-xray.png`).
const XRAY_PNG: &[u8] = include_bytes!("../assets/chest-xray.png");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_is_a_png() {
        assert_eq!(&XRAY_PNG[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&XRAY_PNG[XRAY_PNG.len() - 8..XRAY_PNG.len() - 4], b"IEND");
    }

    #[test]
    fn vitals_are_daily_oldest_first_and_plausible() {
        let now = 1_800_000_000_000;
        let v = vitals_series(now, 8);
        assert_eq!(v.len(), 8);
        assert_eq!(v.last().map(|r| r.at_ms), Some(now));
        assert!(
            v.windows(2)
                .all(|w| w[1].at_ms - w[0].at_ms == 24 * 3600 * 1000)
        );
        for r in &v {
            let (sys, dia) = (r.systolic.unwrap(), r.diastolic.unwrap());
            assert!((90..160).contains(&sys) && (50..100).contains(&dia));
            assert!(sys > dia);
            assert!((90..=100).contains(&r.spo2.unwrap()));
            assert!(r.glucose.is_some_and(|g| g > 3.0 && g < 9.0));
        }
        let json = serde_json::to_value(&v[0]).expect("json");
        for k in [
            "at_ms",
            "systolic",
            "diastolic",
            "heart_rate",
            "glucose",
            "spo2",
            "weight",
        ] {
            assert!(json.get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn every_profile_passes_its_role_check() {
        for (name, role, org, licence) in PEOPLE {
            let p = profile(name, role, org, licence).to_string();
            assert!(schemas::check_profile(role, &p).is_ok(), "{name}");
        }
    }
}
