//! Emergency access (issue 17): guardians, requests, answers, bad shares, reviews and the
//! read gate, through signed transactions and the real crypto (a Feldman split of a real
//! secret, shares sealed to the guardians and re-sealed to the doctor).

use super::{World, can_read, check, enrol, item, item_tx, own_record, professional, rotation, tx};
use ehrchain_crypto::{
    CategoryKey, Keypair,
    emergency::{self as vss, EmergencySecret, Share},
    envelope::{self, seal_category_key},
};
use ehrchain_types::{
    AccountId, AuditAction, AuditEvent, AuditReason, Category, Decision, EncryptionKey, Grantee,
    Hash, HexBytes, ItemId, ItemKind, KeyWrap, RecordId, RecordKey, Refusal, Role, TxPayload,
    items::{
        DEFAULT_EMERGENCY_MS, EmergencyReason, EmergencyRequest, EmergencyReview, EmergencyStatus,
        Guardian, Guardianship, GuardianshipStatus, Item, MAX_EMERGENCY_MS, MAX_GUARDIANS,
        MIN_EMERGENCY_MS,
    },
};

const MED: Category = Category::Medication;
const EMG: Category = Category::Emergency;
const NOTES: Category = Category::Notes;
/// The medication record (epoch 0) and the notes record the tests read.
const MED_RECORD: u8 = 1;
const NOTES_RECORD: u8 = 2;
const HOUR: u64 = 3_600_000;

/// What a patient's client sends to name guardians, kept apart so tests can spoil one field.
#[derive(Clone)]
struct Plan {
    guardians: Vec<Guardian>,
    threshold: u8,
    categories: Vec<Category>,
    max_duration_ms: u64,
    commitments: Vec<Hash>,
    emergency_key: EncryptionKey,
    wraps: Vec<KeyWrap>,
}

impl Plan {
    fn payload(&self) -> TxPayload {
        TxPayload::SetGuardians {
            guardians: self.guardians.clone(),
            threshold: self.threshold,
            categories: self.categories.clone(),
            max_duration_ms: self.max_duration_ms,
            commitments: self.commitments.clone(),
            emergency_key: self.emergency_key,
            wraps: self.wraps.clone(),
        }
    }
}

/// Alice (a patient with medication and emergency keys and a medication and a notes record),
/// an approved doctor, five eligible guardians (two patients, a guardian, an approved doctor
/// and an approved pharmacist), and a 3-of-5 plan over medication + emergency.
struct Fx {
    w: World,
    alice: Keypair,
    doc: Keypair,
    guardians: Vec<Keypair>,
    med: CategoryKey,
    emg: CategoryKey,
    notes: CategoryKey,
    secret: EmergencySecret,
    shares: Vec<Share>,
    plan: Plan,
}

fn kp(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn fixture() -> Fx {
    let mut w = super::world();
    let (alice, doc) = (w.alice.clone(), w.doc.clone());
    enrol(&mut w, &alice, Role::Patient, None);
    professional(&mut w, &doc, Role::Doctor);
    let guardians: Vec<Keypair> = (20..25).map(kp).collect();
    enrol(&mut w, &guardians[0], Role::Patient, None);
    enrol(&mut w, &guardians[1], Role::Patient, None);
    enrol(&mut w, &guardians[2], Role::Guardian, None);
    professional(&mut w, &guardians[3], Role::Doctor);
    professional(&mut w, &guardians[4], Role::Pharmacist);
    let mut keys = Vec::new();
    for c in [MED, EMG, NOTES] {
        let (r, ck) = rotation(&alice, c, 0, &[]);
        let t = tx(&w.state, &alice, TxPayload::RotateKey { rotation: r });
        check(&mut w, t, "applied");
        keys.push(ck);
    }
    let notes = keys.pop().unwrap();
    let emg = keys.pop().unwrap();
    let med = keys.pop().unwrap();
    let t = tx(
        &w.state,
        &alice,
        own_record(MED_RECORD, &alice, MED, 0, &med),
    );
    check(&mut w, t, "applied");
    let t = tx(
        &w.state,
        &alice,
        own_record(NOTES_RECORD, &alice, NOTES, 0, &notes),
    );
    check(&mut w, t, "applied");
    let secret = EmergencySecret::generate();
    let (shares, commitments) = vss::split(&secret, 3, 5).unwrap();
    let patient = alice.account();
    let plan = Plan {
        guardians: guardians
            .iter()
            .zip(&shares)
            .map(|(g, s)| Guardian {
                account: g.account(),
                share: vss::seal_guardian_share(
                    &g.encryption().public(),
                    &patient,
                    &g.account(),
                    s,
                )
                .unwrap(),
            })
            .collect(),
        threshold: 3,
        categories: vec![EMG, MED],
        max_duration_ms: DEFAULT_EMERGENCY_MS,
        commitments,
        emergency_key: secret.keypair(&patient).public(),
        wraps: vec![],
    };
    let mut fx = Fx {
        w,
        alice,
        doc,
        guardians,
        med,
        emg,
        notes,
        secret,
        shares,
        plan,
    };
    fx.plan.wraps = vec![
        fx.emergency_wrap(MED, 0, &fx.med),
        fx.emergency_wrap(EMG, 0, &fx.emg),
    ];
    fx
}

impl Fx {
    /// `ck` (of `c`, `epoch`) sealed to the emergency key, recipient the patient.
    fn emergency_wrap(&self, c: Category, epoch: u32, ck: &CategoryKey) -> KeyWrap {
        let patient = self.alice.account();
        KeyWrap {
            category: c,
            epoch,
            recipient: patient,
            sealed: seal_category_key(&self.plan.emergency_key, ck, &patient, c, epoch).unwrap(),
        }
    }

    /// Submits the plan; returns the guardianship's id.
    fn set_guardians(&mut self) -> ItemId {
        let p = self.plan.payload();
        let alice = self.alice.clone();
        let id = item_tx(&mut self.w, &alice, p, ItemKind::Guardianship, "applied");
        let Item::Guardianship(g) = item(&self.w, &id) else {
            panic!("not a guardianship")
        };
        assert_eq!(g.status, GuardianshipStatus::Active);
        id
    }

    fn guardianship(&self, id: &ItemId) -> Guardianship {
        match item(&self.w, id) {
            Item::Guardianship(g) => g,
            other => panic!("not a guardianship: {other:?}"),
        }
    }

    fn request(&self, id: &ItemId) -> EmergencyRequest {
        match item(&self.w, id) {
            Item::Emergency(r) => r,
            other => panic!("not an emergency request: {other:?}"),
        }
    }

    /// `doctor` asks for `duration_ms`; returns the request id (whatever the outcome).
    fn ask(&mut self, doctor: &Keypair, duration_ms: u64, expected: &str) -> ItemId {
        let p = TxPayload::RequestEmergency {
            patient: self.alice.account(),
            reason: EmergencyReason::Unconscious,
            notes: vec![],
            duration_ms,
        };
        item_tx(&mut self.w, doctor, p, ItemKind::Emergency, expected)
    }

    /// Guardian `i` opens its share from the guardianship the request is decided under
    /// (with its own key) and re-seals it, or `share` if given, to the request's doctor.
    fn approval(&self, i: usize, request: &ItemId, share: Option<&Share>) -> TxPayload {
        let r = self.request(request);
        let g = self.guardianship(&r.guardianship);
        let me = &self.guardians[i];
        let pos = g.position(&me.account()).expect("a guardian");
        let mine = me
            .encryption()
            .open_guardian_share(
                &g.guardians[pos].share,
                &self.alice.account(),
                &me.account(),
            )
            .unwrap();
        assert!(
            vss::verify_share(&g.commitments, &mine),
            "the patient dealt a good share"
        );
        let doctor_key = self
            .w
            .state
            .account(&r.doctor)
            .unwrap()
            .encryption_key
            .unwrap();
        let (sealed, digest) =
            vss::seal_doctor_share(&doctor_key, request, &me.account(), share.unwrap_or(&mine))
                .unwrap();
        TxPayload::AnswerEmergency {
            request: *request,
            approve: true,
            share: Some(sealed),
            digest: Some(digest),
        }
    }

    fn answer(&mut self, i: usize, payload: TxPayload, expected: &str) -> Vec<AuditEvent> {
        let k = self.guardians[i].clone();
        let t = tx(&self.w.state, &k, payload);
        check(&mut self.w, t, expected)
    }

    fn approve(&mut self, i: usize, request: &ItemId, expected: &str) -> Vec<AuditEvent> {
        let p = self.approval(i, request, None);
        self.answer(i, p, expected)
    }

    fn refuse(&mut self, i: usize, request: &ItemId, expected: &str) -> Vec<AuditEvent> {
        let p = refusal(request);
        self.answer(i, p, expected)
    }

    /// The bytes guardian `i` handed the doctor of `request`, opened with the doctor's key.
    fn revealed(&self, doctor: &Keypair, i: usize, request: &ItemId) -> Vec<u8> {
        let r = self.request(request);
        let g = self.guardians[i].account();
        let a = r.answers.iter().find(|a| a.guardian == g).unwrap();
        doctor
            .encryption()
            .open_doctor_share(a.share.as_ref().unwrap(), request, &g)
            .unwrap()
            .0
            .to_vec()
    }

    fn run(&mut self, k: &Keypair, payload: TxPayload, expected: &str) -> Vec<AuditEvent> {
        let t = tx(&self.w.state, k, payload);
        check(&mut self.w, t, expected)
    }
}

fn refusal(request: &ItemId) -> TxPayload {
    TxPayload::AnswerEmergency {
        request: *request,
        approve: false,
        share: None,
        digest: None,
    }
}

fn actions(events: &[AuditEvent]) -> Vec<AuditAction> {
    events.iter().map(|e| e.action).collect()
}

fn no_consent(c: Category) -> Result<AuditReason, Refusal> {
    Err(Refusal::NoConsent { category: c })
}

#[test]
fn three_of_five_guardians_release_the_emergency_categories_for_the_window() {
    let mut fx = fixture();
    let (alice, doc) = (fx.alice.clone(), fx.doc.clone());
    assert_eq!(can_read(&fx.w, &doc, MED_RECORD), no_consent(MED));
    // Nobody to ask yet.
    fx.ask(&doc, 2 * HOUR, "rejected: no_guardians");

    let p = fx.plan.payload();
    let t = tx(&fx.w.state, &alice, p);
    let gid = ItemId::derive(ItemKind::Guardianship, &t.id());
    let ev = check(&mut fx.w, t, "applied");
    assert_eq!(actions(&ev), [AuditAction::GuardiansSet]);
    assert_eq!(ev[0].actor, alice.account());
    assert_eq!(ev[0].patient, alice.account());
    assert_eq!(ev[0].item, Some(gid));
    assert_eq!(ev[0].categories, [MED, EMG], "normalised: sorted");
    assert_eq!(
        ev[0].reason,
        AuditReason::Guardians {
            threshold: 3,
            guardians: 5,
            max_duration_ms: DEFAULT_EMERGENCY_MS,
        }
    );
    let g = fx.guardianship(&gid);
    assert_eq!(g.patient, alice.account());
    assert_eq!((g.threshold, g.guardians.len(), g.wraps.len()), (3, 5, 2));
    assert_eq!(g.categories, [MED, EMG]);

    // The doctor asks, with a note for the patient and one guardian.
    let note = |to: &Keypair| {
        vss::seal_note(
            &to.encryption().public(),
            &doc.account(),
            &alice.account(),
            "found unconscious at the station",
        )
        .unwrap()
    };
    let ask = TxPayload::RequestEmergency {
        patient: alice.account(),
        reason: EmergencyReason::Unconscious,
        notes: vec![
            (alice.account(), note(&alice)),
            (fx.guardians[0].account(), note(&fx.guardians[0])),
        ],
        duration_ms: 2 * HOUR,
    };
    let t = tx(&fx.w.state, &doc, ask);
    let rid = ItemId::derive(ItemKind::Emergency, &t.id());
    let ev = check(&mut fx.w, t, "applied");
    assert_eq!(actions(&ev), [AuditAction::EmergencyRequested]);
    assert_eq!(
        (ev[0].actor, ev[0].patient),
        (doc.account(), alice.account())
    );
    assert_eq!(ev[0].item, Some(rid));
    assert_eq!(ev[0].categories, [MED, EMG]);
    assert_eq!(
        ev[0].reason,
        AuditReason::EmergencyAsked {
            request: rid,
            reason: EmergencyReason::Unconscious,
            duration_ms: 2 * HOUR,
        }
    );
    let r = fx.request(&rid);
    assert_eq!(r.status, EmergencyStatus::Open);
    assert_eq!((r.guardianship, r.threshold), (gid, 3));
    assert_eq!(r.organisation.as_deref(), Some("Consortium"));
    // The guardian can read the note sealed to it.
    let (to, sealed) = &r.notes[1];
    assert_eq!(*to, fx.guardians[0].account());
    assert_eq!(
        fx.guardians[0]
            .encryption()
            .open_note(sealed, &doc.account(), &alice.account())
            .unwrap(),
        "found unconscious at the station"
    );

    // Two approvals: still open, still denied.
    for i in [0, 3] {
        let ev = fx.approve(i, &rid, "applied");
        assert_eq!(actions(&ev), [AuditAction::EmergencyApproved]);
        assert_eq!(ev[0].actor, fx.guardians[i].account());
        assert_eq!(ev[0].counterparty, Some(Grantee::Account(doc.account())));
        assert_eq!(ev[0].item, Some(rid));
        assert_eq!(fx.request(&rid).status, EmergencyStatus::Open);
        assert_eq!(can_read(&fx.w, &doc, MED_RECORD), no_consent(MED));
    }
    // The third releases.
    let ev = fx.approve(4, &rid, "applied");
    let released_at = fx.w.height;
    let expires = released_at + 2 * HOUR;
    assert_eq!(
        actions(&ev),
        [
            AuditAction::EmergencyApproved,
            AuditAction::EmergencyReleased
        ]
    );
    assert_eq!(
        ev[1].reason,
        AuditReason::Emergency {
            request: rid,
            expires_ms: Some(expires),
        }
    );
    assert_eq!(ev[1].counterparty, Some(Grantee::Account(doc.account())));
    let r = fx.request(&rid);
    assert_eq!(r.status, EmergencyStatus::Released);
    assert_eq!(
        (r.released_ms, r.expires_ms),
        (Some(released_at), Some(expires))
    );
    let emergency = Ok(AuditReason::Emergency {
        request: rid,
        expires_ms: Some(expires),
    });
    assert_eq!(can_read(&fx.w, &doc, MED_RECORD), emergency);
    // Notes are not an emergency category; nobody else gains anything.
    assert_eq!(can_read(&fx.w, &doc, NOTES_RECORD), no_consent(NOTES));
    for k in [fx.guardians[0].clone(), fx.guardians[3].clone()] {
        assert_eq!(can_read(&fx.w, &k, MED_RECORD), no_consent(MED));
    }
    // The audited read says why.
    let ev = fx.run(
        &doc,
        TxPayload::ReadRecord {
            record: RecordId([MED_RECORD; 16]),
        },
        "applied",
    );
    assert_eq!(actions(&ev), [AuditAction::Read]);
    assert_eq!(ev[0].decision, Decision::Allowed);
    assert_eq!(ev[0].reason, emergency.clone().unwrap());

    // And the doctor can in fact decrypt: three verified shares rebuild the emergency key,
    // which opens the medication key sealed in the guardianship, which opens the record.
    let g = fx.guardianship(&gid);
    let shares: Vec<Share> = r
        .answers
        .iter()
        .map(|a| {
            let s = doc
                .encryption()
                .open_doctor_share(a.share.as_ref().unwrap(), &rid, &a.guardian)
                .unwrap();
            assert_eq!(
                vss::share_digest(&rid, &a.guardian, s.0.as_ref()),
                a.digest.unwrap()
            );
            let s = s.share().unwrap();
            assert!(vss::verify_share(&g.commitments, &s));
            s
        })
        .collect();
    let rebuilt = vss::combine(&shares).unwrap();
    assert_eq!(rebuilt, fx.secret);
    let ek = rebuilt.keypair(&alice.account());
    assert_eq!(ek.public(), g.emergency_key);
    let w = g.wraps.iter().find(|w| w.category == MED).unwrap();
    let ck = ek
        .open_category_key(&w.sealed, &alice.account(), MED, 0)
        .unwrap();
    assert_eq!(ck.as_bytes(), fx.med.as_bytes());
    let rec =
        fx.w.state
            .record(&RecordId([MED_RECORD; 16]))
            .expect("record exists");
    let RecordKey::Category { wrapped, .. } = &rec.key else {
        panic!("a category-keyed record")
    };
    let dk = envelope::unwrap_data_key(&ck, &wrapped.0, &rec.id).unwrap();
    assert_eq!(
        envelope::open_meta(&dk, &rec.id, &rec.meta.0)
            .unwrap()
            .as_slice(),
        b"{}"
    );
    // The notes key is not in the guardianship.
    assert!(g.wraps.iter().all(|w| w.category != NOTES));

    // Within the window a second request is refused; at its end the read is denied again,
    // and the doctor may ask anew.
    fx.ask(&doc, 2 * HOUR, "rejected: emergency_pending");
    fx.w.height = expires - 1;
    assert_eq!(can_read(&fx.w, &doc, MED_RECORD), emergency);
    fx.w.height = expires;
    assert_eq!(can_read(&fx.w, &doc, MED_RECORD), no_consent(MED));
    fx.w.height = expires + 25 * HOUR;
    assert_eq!(can_read(&fx.w, &doc, MED_RECORD), no_consent(MED));
    let ev = fx.run(
        &doc,
        TxPayload::ReadRecord {
            record: RecordId([MED_RECORD; 16]),
        },
        "applied",
    );
    assert_eq!(ev[0].decision, Decision::Denied);
    // A late approval is closed too.
    fx.approve(1, &rid, "rejected: emergency_closed");
    fx.ask(&doc, 2 * HOUR, "applied");
}

#[test]
fn guardian_plans_are_validated() {
    let mut fx = fixture();
    let alice = fx.alice.clone();
    let base = fx.plan.clone();
    let attempt = |fx: &mut Fx, plan: &Plan, expected: &str| {
        let p = plan.payload();
        fx.run(&alice, p, expected);
    };

    // Thresholds: at least 2, at most the guardians.
    let mut p = base.clone();
    p.threshold = 1;
    attempt(&mut fx, &p, "rejected: bad_threshold");
    p.threshold = 0;
    attempt(&mut fx, &p, "rejected: bad_threshold");
    p.threshold = 6;
    attempt(&mut fx, &p, "rejected: bad_threshold");
    let mut p = base.clone();
    p.guardians.truncate(2);
    attempt(
        &mut fx,
        &p,
        "rejected: bad_threshold: the threshold must be at least 2 and at most the 2 guardians, not 3",
    );

    // The same guardian twice.
    let mut p = base.clone();
    p.guardians[4] = p.guardians[0].clone();
    attempt(&mut fx, &p, "rejected: duplicate_guardian");

    // Ineligible guardians: the patient, an unregistered account, a registration without an
    // encryption key, a professional still pending approval.
    let stranger = |a: AccountId| Guardian {
        account: a,
        share: base.guardians[4].share.clone(),
    };
    let mut p = base.clone();
    p.guardians[4] = stranger(alice.account());
    attempt(&mut fx, &p, "rejected: guardian_not_eligible");
    let nobody = kp(40);
    p.guardians[4] = stranger(nobody.account());
    attempt(&mut fx, &p, "rejected: guardian_not_eligible");
    let keyless = kp(41);
    fx.run(
        &keyless,
        TxPayload::Register {
            role: Role::Patient,
            organisation: None,
            licence: None,
        },
        "applied",
    );
    p.guardians[4] = stranger(keyless.account());
    attempt(&mut fx, &p, "rejected: guardian_not_eligible");
    let pending = kp(42);
    enrol(&mut fx.w, &pending, Role::Doctor, Some("StMarys"));
    p.guardians[4] = stranger(pending.account());
    attempt(&mut fx, &p, "rejected: guardian_not_eligible");

    // Too many guardians.
    let mut p = base.clone();
    for n in 0..(MAX_GUARDIANS as u8 + 1 - 5) {
        let k = kp(50 + n);
        enrol(&mut fx.w, &k, Role::Guardian, None);
        p.guardians.push(stranger(k.account()));
    }
    assert_eq!(p.guardians.len(), MAX_GUARDIANS + 1);
    attempt(&mut fx, &p, "rejected: guardian_count");
    // Exactly MAX_GUARDIANS is allowed (applied at the end, with its own split).
    p.guardians.pop();
    p.commitments = vss::split(&fx.secret, 3, MAX_GUARDIANS).unwrap().1;
    let mut max = p.clone();

    // Commitments: one per threshold step, valid points, not the identity.
    let mut p = base.clone();
    p.commitments.pop();
    attempt(&mut fx, &p, "rejected: bad_commitments");
    let mut p = base.clone();
    p.commitments.push(base.commitments[0]);
    attempt(&mut fx, &p, "rejected: bad_commitments");
    let mut p = base.clone();
    p.commitments[1] = Hash([0xff; 32]);
    attempt(&mut fx, &p, "rejected: bad_commitments");
    p.commitments[1] = Hash([0; 32]); // the identity
    attempt(&mut fx, &p, "rejected: bad_commitments");

    // Wraps: every epoch of every category, sealed to the emergency key, nothing else.
    let mut p = base.clone();
    p.wraps.pop();
    attempt(&mut fx, &p, "rejected: missing_wrap");
    let mut p = base.clone();
    p.wraps.push(fx.emergency_wrap(NOTES, 0, &fx.notes));
    attempt(&mut fx, &p, "rejected: unexpected_wrap");
    let mut p = base.clone();
    p.wraps[0].recipient = fx.doc.account();
    attempt(&mut fx, &p, "rejected: unexpected_wrap");
    let mut p = base.clone();
    p.wraps.push(fx.emergency_wrap(MED, 1, &fx.med));
    attempt(&mut fx, &p, "rejected: unexpected_wrap");

    // The window.
    let mut p = base.clone();
    p.max_duration_ms = MIN_EMERGENCY_MS - 1;
    attempt(&mut fx, &p, "rejected: bad_emergency_window");
    p.max_duration_ms = MAX_EMERGENCY_MS + 1;
    attempt(&mut fx, &p, "rejected: bad_emergency_window");
    p.max_duration_ms = 0;
    attempt(&mut fx, &p, "rejected: bad_emergency_window");

    // No categories; only a patient names guardians; removing none is refused.
    let mut p = base.clone();
    p.categories.clear();
    attempt(&mut fx, &p, "rejected: no_categories");
    let doc = fx.doc.clone();
    fx.run(&doc, base.payload(), "rejected: role_required");
    let mut none = base.clone();
    none.guardians.clear();
    attempt(&mut fx, &none, "rejected: no_guardians");

    // Nothing above left a guardianship behind.
    assert_eq!(fx.w.state.items_of_kind(ItemKind::Guardianship).count(), 0);
    // The bounds themselves are fine: MAX_GUARDIANS guardians, the shortest and longest
    // windows.
    max.max_duration_ms = MAX_EMERGENCY_MS;
    attempt(&mut fx, &max, "applied");
    let mut p = base.clone();
    p.max_duration_ms = MIN_EMERGENCY_MS;
    attempt(&mut fx, &p, "applied");
    assert_eq!(fx.w.state.items_of_kind(ItemKind::Guardianship).count(), 2);
}

#[test]
fn who_may_ask_and_who_may_answer() {
    let mut fx = fixture();
    let (alice, doc) = (fx.alice.clone(), fx.doc.clone());
    let gid = fx.set_guardians();

    // Only an active, approved doctor asks.
    let pending = kp(30);
    enrol(&mut fx.w, &pending, Role::Doctor, Some("StMarys"));
    fx.ask(&pending, HOUR, "rejected: not_approved");
    let pharmacist = kp(31);
    professional(&mut fx.w, &pharmacist, Role::Pharmacist);
    fx.ask(&pharmacist, HOUR, "rejected: role_required");
    let bob = fx.w.bob.clone();
    enrol(&mut fx.w, &bob, Role::Patient, None);
    fx.ask(&bob, HOUR, "rejected: role_required");
    fx.ask(&alice, HOUR, "rejected: role_required");
    // A patient with no guardians.
    let t = tx(
        &fx.w.state,
        &doc,
        TxPayload::RequestEmergency {
            patient: bob.account(),
            reason: EmergencyReason::Incapable,
            notes: vec![],
            duration_ms: HOUR,
        },
    );
    check(&mut fx.w, t, "rejected: no_guardians");
    // The window is the patient's: at least a minute, at most their maximum.
    fx.ask(&doc, MIN_EMERGENCY_MS - 1, "rejected: bad_emergency_window");
    fx.ask(
        &doc,
        DEFAULT_EMERGENCY_MS + 1,
        "rejected: bad_emergency_window",
    );

    // Notes: `other` needs one; a note goes only to the patient or a guardian, once each.
    let note = |to: &Keypair| {
        vss::seal_note(
            &to.encryption().public(),
            &doc.account(),
            &alice.account(),
            "see note",
        )
        .unwrap()
    };
    let ask = |reason, notes: Vec<(AccountId, _)>| TxPayload::RequestEmergency {
        patient: alice.account(),
        reason,
        notes,
        duration_ms: HOUR,
    };
    fx.run(
        &doc,
        ask(EmergencyReason::Other, vec![]),
        "rejected: bad_emergency_note",
    );
    let stranger = kp(32);
    fx.run(
        &doc,
        ask(
            EmergencyReason::Other,
            vec![(stranger.account(), note(&stranger))],
        ),
        "rejected: bad_emergency_note",
    );
    fx.run(
        &doc,
        ask(
            EmergencyReason::LifeThreatening,
            vec![(doc.account(), note(&doc))],
        ),
        "rejected: bad_emergency_note",
    );
    fx.run(
        &doc,
        ask(
            EmergencyReason::Other,
            vec![
                (alice.account(), note(&alice)),
                (alice.account(), note(&alice)),
            ],
        ),
        "rejected: bad_emergency_note",
    );
    let g1 = fx.guardians[1].clone();
    let t = tx(
        &fx.w.state,
        &doc,
        ask(EmergencyReason::Other, vec![(g1.account(), note(&g1))]),
    );
    let rid = ItemId::derive(ItemKind::Emergency, &t.id());
    check(&mut fx.w, t, "applied");
    assert_eq!(fx.request(&rid).reason, EmergencyReason::Other);
    // One open request per doctor and patient.
    fx.ask(&doc, HOUR, "rejected: emergency_pending");
    // Another doctor may ask meanwhile.
    let doc2 = kp(33);
    professional(&mut fx.w, &doc2, Role::Doctor);
    let rid2 = fx.ask(&doc2, HOUR, "applied");
    assert_ne!(rid, rid2);

    // Only a named guardian answers, once; an approval carries share and digest, a refusal
    // neither.
    let outsider_answer = fx.approval(0, &rid, None);
    for k in [alice.clone(), doc.clone(), bob.clone(), pharmacist.clone()] {
        fx.run(&k, outsider_answer.clone(), "rejected: not_a_guardian");
    }
    fx.run(&stranger, outsider_answer, "rejected: not_registered");
    let TxPayload::AnswerEmergency { share, digest, .. } = fx.approval(0, &rid, None) else {
        unreachable!()
    };
    let spoiled = |approve, share, digest| TxPayload::AnswerEmergency {
        request: rid,
        approve,
        share,
        digest,
    };
    for p in [
        spoiled(true, None, None),
        spoiled(true, share.clone(), None),
        spoiled(true, None, digest),
        spoiled(false, share.clone(), digest),
        spoiled(false, share.clone(), None),
        spoiled(false, None, digest),
    ] {
        fx.answer(0, p, "rejected: share_required");
    }
    fx.approve(0, &rid, "applied");
    fx.approve(0, &rid, "rejected: already_answered");
    fx.refuse(0, &rid, "rejected: already_answered");
    fx.refuse(1, &rid, "applied");
    fx.approve(1, &rid, "rejected: already_answered");
    let r = fx.request(&rid);
    assert_eq!((r.approvals(), r.refusals()), (1, 1));
    assert_eq!(r.status, EmergencyStatus::Open);
    // An unknown request, and an id of another kind.
    let unknown = ItemId::derive(ItemKind::Emergency, &Hash([9; 32]));
    fx.refuse(2, &unknown, "rejected: no_such_item");
    fx.refuse(2, &gid, "rejected: wrong_item_kind");
}

#[test]
fn enough_refusals_close_the_request() {
    let mut fx = fixture();
    let doc = fx.doc.clone();
    fx.set_guardians();
    let rid = fx.ask(&doc, HOUR, "applied");
    fx.approve(0, &rid, "applied");
    for i in [1, 2] {
        let ev = fx.refuse(i, &rid, "applied");
        assert_eq!(actions(&ev), [AuditAction::EmergencyRefused]);
        assert_eq!(ev[0].counterparty, Some(Grantee::Account(doc.account())));
        assert_eq!(fx.request(&rid).status, EmergencyStatus::Open);
    }
    // 5 - 3 refusals = 2 < 3: the threshold can no longer be reached.
    let ev = fx.refuse(3, &rid, "applied");
    assert_eq!(
        actions(&ev),
        [AuditAction::EmergencyRefused, AuditAction::EmergencyClosed]
    );
    assert_eq!(ev[1].item, Some(rid));
    assert_eq!(fx.request(&rid).status, EmergencyStatus::Refused);
    fx.approve(4, &rid, "rejected: emergency_closed");
    fx.refuse(4, &rid, "rejected: emergency_closed");
    assert_eq!(can_read(&fx.w, &doc, MED_RECORD), no_consent(MED));
    // A refused request is not pending: the doctor may ask again; a refused one is not
    // reviewable.
    let alice = fx.alice.clone();
    fx.run(
        &alice,
        TxPayload::ReviewEmergency {
            request: rid,
            review: EmergencyReview::Disputed,
        },
        "rejected: not_reviewable",
    );
    let again = fx.ask(&doc, HOUR, "applied");
    assert_eq!(fx.request(&again).answers.len(), 0);
}

#[test]
fn spare_approvals_after_release_and_bad_shares() {
    let mut fx = fixture();
    let doc = fx.doc.clone();
    fx.set_guardians();
    let rid = fx.ask(&doc, 3 * HOUR, "applied");
    // Guardian 1 hands over a wrong share (its own, changed), with a digest that binds it.
    let bad = fx.shares[1].corrupted();
    let p = fx.approval(1, &rid, Some(&bad));
    fx.answer(1, p, "applied");
    fx.approve(0, &rid, "applied");
    let ev = fx.approve(2, &rid, "applied");
    assert_eq!(
        actions(&ev),
        [
            AuditAction::EmergencyApproved,
            AuditAction::EmergencyReleased
        ]
    );
    // Released, but the doctor cannot rebuild the key from these three.
    let r = fx.request(&rid);
    let g = fx.guardianship(&r.guardianship);
    let opened: Vec<Share> = (0..3)
        .map(|i| {
            let bytes = fx.revealed(&doc, i, &rid);
            Share::from_bytes(&bytes[..33]).unwrap()
        })
        .collect();
    assert!(!vss::verify_share(&g.commitments, &opened[1]));
    assert_ne!(vss::combine(&opened).unwrap(), fx.secret);

    // A refusal after the release is closed; a spare approval is welcome.
    fx.refuse(3, &rid, "rejected: emergency_closed");
    let ev = fx.approve(4, &rid, "applied");
    assert_eq!(
        actions(&ev),
        [AuditAction::EmergencyApproved],
        "released once"
    );
    let r = fx.request(&rid);
    assert_eq!((r.status, r.approvals()), (EmergencyStatus::Released, 4));
    fx.approve(4, &rid, "rejected: already_answered");

    // Proving the wrong share: only the doctor, only with the bytes behind the digest.
    let revealed = fx.revealed(&doc, 1, &rid);
    let report = |guardian: &Keypair, bytes: &[u8]| TxPayload::ReportBadShare {
        request: rid,
        guardian: guardian.account(),
        revealed: HexBytes(bytes.to_vec()),
    };
    let (g0, g1, g3, g4) = (
        fx.guardians[0].clone(),
        fx.guardians[1].clone(),
        fx.guardians[3].clone(),
        fx.guardians[4].clone(),
    );
    let alice = fx.alice.clone();
    for k in [&alice, &g0, &g1] {
        fx.run(k, report(&g1, &revealed), "rejected: not_your_emergency");
    }
    let mut flipped = revealed.clone();
    flipped[40] ^= 1; // in the salt: the share is the same, the digest is not
    fx.run(&doc, report(&g1, &flipped), "rejected: share_not_revealed");
    flipped = revealed.clone();
    flipped[5] ^= 1;
    fx.run(&doc, report(&g1, &flipped), "rejected: share_not_revealed");
    fx.run(
        &doc,
        report(&g1, &revealed[..64]),
        "rejected: share_not_revealed",
    );
    // Another guardian's bytes do not match this guardian's digest.
    let good0 = fx.revealed(&doc, 0, &rid);
    fx.run(&doc, report(&g1, &good0), "rejected: share_not_revealed");
    // A guardian who refused (or never answered) handed nothing over.
    fx.run(&doc, report(&g3, &revealed), "rejected: share_not_revealed");
    // A good share is not wrong.
    fx.run(&doc, report(&g0, &good0), "rejected: share_valid");
    let good4 = fx.revealed(&doc, 4, &rid);
    fx.run(&doc, report(&g4, &good4), "rejected: share_valid");
    let ev = fx.run(&doc, report(&g1, &revealed), "applied");
    assert_eq!(actions(&ev), [AuditAction::BadShare]);
    assert_eq!(ev[0].actor, doc.account());
    assert_eq!(ev[0].patient, alice.account());
    assert_eq!(ev[0].item, Some(rid));
    assert_eq!(ev[0].counterparty, Some(Grantee::Account(g1.account())));
    let r = fx.request(&rid);
    let marks: Vec<(AccountId, bool)> = r.answers.iter().map(|a| (a.guardian, a.bad)).collect();
    assert_eq!(
        marks,
        [
            (g1.account(), true),
            (g0.account(), false),
            (fx.guardians[2].account(), false),
            (g4.account(), false),
        ]
    );
    // With the spare share the key rebuilds after all.
    let good: Vec<Share> = [0, 2, 4]
        .iter()
        .map(|&i| Share::from_bytes(&fx.revealed(&doc, i, &rid)[..33]).unwrap())
        .collect();
    assert_eq!(vss::combine(&good).unwrap(), fx.secret);
    // Reporting again changes nothing and names nobody twice.
    let ev = fx.run(&doc, report(&g1, &revealed), "applied");
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn a_valid_share_of_another_guardian_is_a_wrong_share() {
    // Guardian 2 hands over guardian 0's (valid) share: it passes the Feldman check but is
    // not guardian 2's, so the doctor cannot rebuild from it and can prove that.
    let mut fx = fixture();
    let doc = fx.doc.clone();
    fx.set_guardians();
    let rid = fx.ask(&doc, HOUR, "applied");
    let copied = fx.shares[0].clone();
    let p = fx.approval(2, &rid, Some(&copied));
    fx.answer(2, p, "applied");
    let revealed = fx.revealed(&doc, 2, &rid);
    let g2 = fx.guardians[2].account();
    let ev = fx.run(
        &doc,
        TxPayload::ReportBadShare {
            request: rid,
            guardian: g2,
            revealed: HexBytes(revealed),
        },
        "applied",
    );
    assert_eq!(actions(&ev), [AuditAction::BadShare]);
    assert!(fx.request(&rid).answers[0].bad);
}

#[test]
fn the_patient_reviews_a_released_access_once() {
    let mut fx = fixture();
    let (alice, doc) = (fx.alice.clone(), fx.doc.clone());
    fx.set_guardians();
    let rid = fx.ask(&doc, HOUR, "applied");
    let review = |review| TxPayload::ReviewEmergency {
        request: rid,
        review,
    };
    // Not released yet.
    fx.run(
        &alice,
        review(EmergencyReview::Reviewed),
        "rejected: not_reviewable",
    );
    for i in 0..3 {
        fx.approve(i, &rid, "applied");
    }
    // Only the patient.
    let g0 = fx.guardians[0].clone();
    for k in [&doc, &g0] {
        fx.run(
            k,
            review(EmergencyReview::Disputed),
            "rejected: not_your_emergency",
        );
    }
    let ev = fx.run(&alice, review(EmergencyReview::Disputed), "applied");
    assert_eq!(actions(&ev), [AuditAction::EmergencyDisputed]);
    assert_eq!(ev[0].counterparty, Some(Grantee::Account(doc.account())));
    assert_eq!(ev[0].item, Some(rid));
    let r = fx.request(&rid);
    assert_eq!(r.review, Some(EmergencyReview::Disputed));
    assert_eq!(r.reviewed_ms, Some(fx.w.height));
    fx.run(
        &alice,
        review(EmergencyReview::Reviewed),
        "rejected: not_reviewable",
    );
    fx.run(
        &alice,
        review(EmergencyReview::Disputed),
        "rejected: not_reviewable",
    );

    // Reviewed (not disputed), after the window is over.
    let expires = r.expires_ms.unwrap();
    fx.w.height = expires + 1;
    let rid2 = fx.ask(&doc, HOUR, "applied");
    for i in 2..5 {
        fx.approve(i, &rid2, "applied");
    }
    fx.w.height += 2 * HOUR;
    let ev = fx.run(
        &alice,
        TxPayload::ReviewEmergency {
            request: rid2,
            review: EmergencyReview::Reviewed,
        },
        "applied",
    );
    assert_eq!(actions(&ev), [AuditAction::EmergencyReviewed]);
    assert_eq!(fx.request(&rid2).review, Some(EmergencyReview::Reviewed));
}

#[test]
fn new_guardians_replace_the_old_and_withdraw_their_open_requests() {
    let mut fx = fixture();
    let (alice, doc) = (fx.alice.clone(), fx.doc.clone());
    let old = fx.set_guardians();
    let open = fx.ask(&doc, HOUR, "applied");
    fx.approve(0, &open, "applied");
    let doc2 = kp(33);
    professional(&mut fx.w, &doc2, Role::Doctor);
    let released = fx.ask(&doc2, HOUR, "applied");
    for i in 1..4 {
        fx.approve(i, &released, "applied");
    }

    // Three new guardians, 2 of 3, medication only, with a fresh secret.
    let secret = EmergencySecret::generate();
    let (shares, commitments) = vss::split(&secret, 2, 3).unwrap();
    let picks = [
        fx.guardians[4].clone(),
        fx.guardians[0].clone(),
        doc2.clone(),
    ];
    let patient = alice.account();
    let emergency_key = secret.keypair(&patient).public();
    let plan = Plan {
        guardians: picks
            .iter()
            .zip(&shares)
            .map(|(g, s)| Guardian {
                account: g.account(),
                share: vss::seal_guardian_share(
                    &g.encryption().public(),
                    &patient,
                    &g.account(),
                    s,
                )
                .unwrap(),
            })
            .collect(),
        threshold: 2,
        categories: vec![MED],
        max_duration_ms: 6 * HOUR,
        commitments,
        emergency_key,
        wraps: vec![KeyWrap {
            category: MED,
            epoch: 0,
            recipient: patient,
            sealed: seal_category_key(&emergency_key, &fx.med, &patient, MED, 0).unwrap(),
        }],
    };
    let t = tx(&fx.w.state, &alice, plan.payload());
    let new = ItemId::derive(ItemKind::Guardianship, &t.id());
    let at = fx.w.height + 1;
    let ev = check(&mut fx.w, t, "applied");
    assert_eq!(
        actions(&ev),
        [AuditAction::EmergencyClosed, AuditAction::GuardiansSet]
    );
    assert_eq!(ev[0].item, Some(open));
    assert_eq!(ev[0].counterparty, Some(Grantee::Account(doc.account())));
    assert_eq!(ev[1].item, Some(new));
    let o = fx.guardianship(&old);
    assert_eq!(
        (o.status, o.replaced_ms),
        (GuardianshipStatus::Replaced, Some(at))
    );
    assert_eq!(fx.guardianship(&new).status, GuardianshipStatus::Active);
    assert_eq!(fx.request(&open).status, EmergencyStatus::Withdrawn);
    // A released request stays what it was.
    assert_eq!(fx.request(&released).status, EmergencyStatus::Released);
    // The withdrawn request takes no more answers; its doctor may ask the new guardians.
    fx.approve(1, &open, "rejected: emergency_closed");
    fx.ask(&doc, 7 * HOUR, "rejected: bad_emergency_window");
    let fresh = fx.ask(&doc, 6 * HOUR, "applied");
    let r = fx.request(&fresh);
    assert_eq!((r.guardianship, r.threshold), (new, 2));
    assert_eq!(r.categories, [MED]);
    // Guardian 1 is no longer one.
    fx.refuse(1, &fresh, "rejected: not_a_guardian");

    // An empty list removes them; after that a request finds none.
    let mut none = plan.clone();
    none.guardians.clear();
    let ev = fx.run(&alice, none.payload(), "applied");
    assert_eq!(
        actions(&ev),
        [AuditAction::EmergencyClosed, AuditAction::GuardiansSet]
    );
    assert_eq!(
        ev[1].reason,
        AuditReason::Guardians {
            threshold: 0,
            guardians: 0,
            max_duration_ms: 0,
        }
    );
    assert_eq!(fx.request(&fresh).status, EmergencyStatus::Withdrawn);
    assert_eq!(fx.guardianship(&new).status, GuardianshipStatus::Replaced);
    fx.w.height += 2 * HOUR;
    fx.ask(&doc, HOUR, "rejected: no_guardians");
    fx.run(&alice, none.payload(), "rejected: no_guardians");
    assert_eq!(
        fx.w.state
            .items_of_kind(ItemKind::Guardianship)
            .filter(
                |i| matches!(i, Item::Guardianship(g) if g.status == GuardianshipStatus::Active)
            )
            .count(),
        0
    );
}

#[test]
fn rotations_keep_the_emergency_key_current() {
    let mut fx = fixture();
    let (alice, doc) = (fx.alice.clone(), fx.doc.clone());
    // Without guardians a self-wrap is unexpected.
    let (mut r, ck) = rotation(&alice, MED, 1, &[]);
    r.wraps.push(fx.emergency_wrap(MED, 1, &ck));
    fx.run(
        &alice,
        TxPayload::RotateKey { rotation: r },
        "rejected: unexpected_wrap",
    );

    let gid = fx.set_guardians();
    // Medication is covered: the new epoch must be sealed to the emergency key.
    let (r, ck1) = rotation(&alice, MED, 1, &[]);
    fx.run(
        &alice,
        TxPayload::RotateKey {
            rotation: r.clone(),
        },
        "rejected: missing_wrap",
    );
    let mut wrong = r.clone();
    wrong.wraps.push(fx.emergency_wrap(MED, 0, &ck1));
    fx.run(
        &alice,
        TxPayload::RotateKey { rotation: wrong },
        "rejected: unexpected_wrap",
    );
    let mut r = r;
    r.wraps.push(fx.emergency_wrap(MED, 1, &ck1));
    let ev = fx.run(&alice, TxPayload::RotateKey { rotation: r }, "applied");
    assert_eq!(actions(&ev), [AuditAction::KeyRotated]);
    let g = fx.guardianship(&gid);
    assert_eq!(g.wraps.len(), 3);
    assert!(g.wraps.iter().any(|w| (w.category, w.epoch) == (MED, 1)));
    // Notes are not covered: a rotation needs (and takes) no self-wrap.
    let (r, ckn) = rotation(&alice, NOTES, 1, &[]);
    let mut extra = r.clone();
    extra.wraps.push(fx.emergency_wrap(NOTES, 1, &ckn));
    fx.run(
        &alice,
        TxPayload::RotateKey { rotation: extra },
        "rejected: unexpected_wrap",
    );
    fx.run(&alice, TxPayload::RotateKey { rotation: r }, "applied");
    assert_eq!(fx.guardianship(&gid).wraps.len(), 3);

    // A revocation of a covered category rotates too, and must keep the emergency key.
    let grant = TxPayload::Grant {
        to: Grantee::Account(doc.account()),
        categories: vec![MED],
        expires_ms: None,
        write: false,
        wraps: vec![
            super::wrap(&alice, &fx.med, MED, 0, &doc),
            super::wrap(&alice, &ck1, MED, 1, &doc),
        ],
    };
    fx.run(&alice, grant, "applied");
    let (r2, ck2) = rotation(&alice, MED, 2, &[]);
    let revoke = |rotations| TxPayload::Revoke {
        from: Grantee::Account(doc.account()),
        categories: vec![],
        rotations,
    };
    fx.run(&alice, revoke(vec![r2.clone()]), "rejected: missing_wrap");
    let mut r2 = r2;
    r2.wraps.push(fx.emergency_wrap(MED, 2, &ck2));
    fx.run(&alice, revoke(vec![r2]), "applied");
    let g = fx.guardianship(&gid);
    assert_eq!(g.wraps.len(), 4);
    // The emergency key opens every epoch it holds.
    let ek = fx.secret.keypair(&alice.account());
    for (epoch, want) in [(0, &fx.med), (1, &ck1), (2, &ck2)] {
        let w = g
            .wraps
            .iter()
            .find(|w| (w.category, w.epoch) == (MED, epoch))
            .unwrap();
        let ck = ek
            .open_category_key(&w.sealed, &alice.account(), MED, epoch)
            .unwrap();
        assert_eq!(ck.as_bytes(), want.as_bytes());
    }
    // A new guardianship then needs all three medication epochs.
    let mut p = fx.plan.clone();
    p.wraps.retain(|w| w.category != MED);
    p.wraps.push(fx.emergency_wrap(MED, 0, &fx.med));
    p.wraps.push(fx.emergency_wrap(MED, 2, &ck2));
    fx.run(&alice, p.payload(), "rejected: missing_wrap");
    p.wraps.push(fx.emergency_wrap(MED, 1, &ck1));
    fx.run(&alice, p.payload(), "applied");
}

#[test]
fn a_review_ends_a_running_access_and_a_doctor_guardian_cannot_approve_their_own_request() {
    let mut fx = fixture();
    let (alice, doc) = (fx.alice.clone(), fx.doc.clone());
    fx.set_guardians();
    // Guardian 3 is an approved doctor: it may ask, but not answer its own request.
    let g3 = fx.guardians[3].clone();
    let own = fx.ask(&g3, HOUR, "applied");
    let p = fx.approval(3, &own, None);
    fx.answer(3, p, "rejected: self_approval");
    fx.answer(3, refusal(&own), "rejected: self_approval");

    let rid = fx.ask(&doc, HOUR, "applied");
    for i in 0..3 {
        fx.approve(i, &rid, "applied");
    }
    let record =
        fx.w.state
            .record(&ehrchain_types::RecordId([MED_RECORD; 16]))
            .expect("record exists");
    let reads = |fx: &Fx| {
        ehrchain_ledger::access::read_decision(
            &fx.w.state,
            &doc.account(),
            &record,
            fx.w.height + 1,
        )
    };
    assert!(matches!(reads(&fx), Ok(AuditReason::Emergency { .. })));
    fx.run(
        &alice,
        TxPayload::ReviewEmergency {
            request: rid,
            review: EmergencyReview::Reviewed,
        },
        "applied",
    );
    assert_eq!(fx.request(&rid).expires_ms, Some(fx.w.height));
    assert_eq!(reads(&fx), no_consent(MED), "the patient's review ended it");
}

#[test]
fn an_open_request_lapses_after_a_day() {
    let mut fx = fixture();
    let doc = fx.doc.clone();
    fx.set_guardians();
    let rid = fx.ask(&doc, HOUR, "applied");
    fx.approve(0, &rid, "applied");
    fx.ask(&doc, HOUR, "rejected: emergency_pending");
    fx.w.height += ehrchain_types::items::MAX_PENDING_MS;
    fx.approve(1, &rid, "rejected: emergency_closed");
    fx.refuse(2, &rid, "rejected: emergency_closed");
    // The doctor may ask again.
    fx.ask(&doc, HOUR, "applied");
}
