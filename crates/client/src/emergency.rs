//! Emergency access (issue 17): guardians release a patient's emergency categories to a
//! doctor, `threshold` of `n`, for a bounded window.
//!
//! Everything secret happens here, in the client: the patient's client makes the emergency
//! key, seals the categories' keys to it and splits it among the guardians (Feldman VSS over
//! Ristretto, [`ehrchain_crypto::emergency`]); a guardian's client checks its share against
//! the commitments and re-seals it to the doctor; the doctor's client checks every share it
//! receives, names (and proves on the ledger) any wrong one, combines the good ones, and only
//! then opens the categories' keys. The node sees commitments and sealed bytes.

use crate::{Error, Result, Session, consent::ConsentState, invalid};
use ehrchain_api::{EventView, TxView};
use ehrchain_crypto::{
    CategoryKey, EncryptionKeypair,
    emergency::{self as vss, EmergencySecret, Share, ShareError},
    envelope,
};
use ehrchain_types::{
    AccountId, AuditAction, AuditReason, Category, EncryptionKey, HexBytes, ItemId, ItemKind,
    KeyWrap, TxPayload,
    items::{
        EmergencyReason, EmergencyRequest, EmergencyReview, EmergencyStatus, Guardian,
        Guardianship, GuardianshipStatus, Item,
    },
};
use serde::Serialize;
use std::time::Duration;

impl From<ShareError> for Error {
    fn from(e: ShareError) -> Self {
        match e {
            ShareError::Envelope(e) => e.into(),
            other => Error::Invalid(other.to_string()),
        }
    }
}

fn items_of(s: &Session, kind: ItemKind) -> Result<Vec<Item>> {
    s.get_all(
        &format!("/api/v1/items?kind={}", kind.word()),
        "after",
        |i: &Item| i.id().to_string(),
    )
}

fn item(s: &Session, id: &ItemId) -> Result<Item> {
    s.get(&format!("/api/v1/items/{id}"))
}

/// An emergency request by id (as the session account may see it).
pub fn emergency_request(s: &Session, id: &ItemId) -> Result<EmergencyRequest> {
    match item(s, id)? {
        Item::Emergency(r) => Ok(r),
        _ => invalid!("{id} is not an emergency access request"),
    }
}

/// A guardianship by id.
pub fn guardianship(s: &Session, id: &ItemId) -> Result<Guardianship> {
    match item(s, id)? {
        Item::Guardianship(g) => Ok(g),
        _ => invalid!("{id} is not a guardianship"),
    }
}

/// The session account's current guardians, if it named any.
pub fn my_guardians(s: &Session) -> Result<Option<Guardianship>> {
    Ok(items_of(s, ItemKind::Guardianship)?
        .into_iter()
        .find_map(|i| match i {
            Item::Guardianship(g)
                if g.patient == s.me && g.status == GuardianshipStatus::Active =>
            {
                Some(g)
            }
            _ => None,
        }))
}

/// The guardianships in which the session account is a guardian (current ones only).
pub fn guarding(s: &Session) -> Result<Vec<Guardianship>> {
    Ok(items_of(s, ItemKind::Guardianship)?
        .into_iter()
        .filter_map(|i| match i {
            Item::Guardianship(g)
                if g.patient != s.me && g.status == GuardianshipStatus::Active =>
            {
                Some(g)
            }
            _ => None,
        })
        .collect())
}

/// What the patient asks for when naming guardians.
#[derive(Clone, Debug)]
pub struct GuardianPlan {
    pub guardians: Vec<AccountId>,
    pub threshold: u8,
    pub categories: Vec<Category>,
    pub max_duration: Duration,
}

/// The `set_guardians` transaction for `plan`, planned over the patient's consent state:
/// a fresh emergency key, the categories' keys of every epoch sealed to it, the secret split
/// among the guardians and each share sealed to its guardian. Pure but for the randomness.
pub fn plan_guardians(
    key: &ehrchain_crypto::Keypair,
    state: &ConsentState,
    plan: &GuardianPlan,
    guardian_keys: &[EncryptionKey],
) -> Result<TxPayload> {
    let me = key.account();
    let n = plan.guardians.len();
    if n != guardian_keys.len() {
        invalid!("one encryption key per guardian");
    }
    let secret = EmergencySecret::generate();
    let (shares, commitments) = vss::split(&secret, usize::from(plan.threshold), n)?;
    let ek = secret.keypair(&me);
    let planner = crate::consent::Planner { key, state };
    let mut wraps = Vec::new();
    for &c in &plan.categories {
        for e in 0..state.epochs(c) {
            let ck: CategoryKey = planner.own_key(c, e)?;
            wraps.push(KeyWrap {
                category: c,
                epoch: e,
                recipient: me,
                sealed: envelope::seal_category_key(&ek.public(), &ck, &me, c, e)?,
            });
        }
    }
    let guardians = plan
        .guardians
        .iter()
        .zip(guardian_keys)
        .zip(&shares)
        .map(|((g, gk), share)| {
            Ok(Guardian {
                account: *g,
                share: vss::seal_guardian_share(gk, &me, g, share)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TxPayload::SetGuardians {
        guardians,
        threshold: plan.threshold,
        categories: plan.categories.clone(),
        max_duration_ms: plan.max_duration.as_millis().try_into().unwrap_or(u64::MAX),
        commitments,
        emergency_key: ek.public(),
        wraps,
    })
}

/// Names the session account's guardians (replacing any earlier ones, whose open requests
/// are withdrawn). Returns the transaction and the new guardianship's id.
pub fn set_guardians(s: &Session, plan: &GuardianPlan) -> Result<(ItemId, TxView)> {
    let mut plan = plan.clone();
    plan.categories.sort();
    plan.categories.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for g in &plan.guardians {
        if *g == s.me {
            invalid!("you cannot be your own guardian");
        }
        if !seen.insert(*g) {
            invalid!("guardian {g} is named twice");
        }
    }
    let keys = plan
        .guardians
        .iter()
        .map(|g| s.encryption_key(g))
        .collect::<Result<Vec<_>>>()?;
    let state = ConsentState::fetch(s, &[])?;
    let payload = plan_guardians(&s.key, &state, &plan, &keys)?;
    let t = s.submit_one(payload)?;
    Ok((ItemId::derive(ItemKind::Guardianship, &t.id), t))
}

/// Removes the session account's guardians.
pub fn clear_guardians(s: &Session) -> Result<TxView> {
    s.submit_one(TxPayload::SetGuardians {
        guardians: Vec::new(),
        threshold: 0,
        categories: Vec::new(),
        max_duration_ms: 0,
        commitments: Vec::new(),
        emergency_key: EncryptionKey([0; 32]),
        wraps: Vec::new(),
    })
}

/// A doctor asks `patient`'s guardians for emergency access. The note (required for the
/// reason `other`) is sealed to the patient and to each guardian.
pub fn request(
    s: &Session,
    patient: &AccountId,
    reason: EmergencyReason,
    note: Option<&str>,
    duration: Duration,
) -> Result<(ItemId, TxView)> {
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if reason == EmergencyReason::Other && note.is_none() {
        invalid!("the reason other needs a note saying why");
    }
    let mut notes = Vec::new();
    if let Some(text) = note {
        let mut to = vec![*patient];
        to.extend(card(s, patient)?.guardians);
        for a in to {
            let k = s.encryption_key(&a)?;
            notes.push((a, vss::seal_note(&k, &s.me, patient, text)?));
        }
    }
    let t = s.submit_one(TxPayload::RequestEmergency {
        patient: *patient,
        reason,
        notes,
        duration_ms: duration.as_millis().try_into().unwrap_or(u64::MAX),
    })?;
    Ok((ItemId::derive(ItemKind::Emergency, &t.id), t))
}

/// A patient's break-glass card: guardians, threshold, categories, longest window (to the
/// patient, its guardians and approved doctors).
pub fn card(s: &Session, patient: &AccountId) -> Result<ehrchain_api::GuardiansView> {
    s.get(&format!("/api/v1/guardians?patient={patient}"))
}

/// An emergency request with what the session account can decrypt of it.
#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    #[serde(flatten)]
    pub request: EmergencyRequest,
    /// The doctor's note, if sealed to this account.
    pub note: Option<String>,
    /// This account's part: `patient`, `doctor` or `guardian`.
    pub as_role: &'static str,
    /// For a guardian: whether it has answered.
    pub answered: bool,
    /// Whether a released request's window is still open.
    pub active: bool,
    /// Whether an open request waited a day without being released (it takes no answers).
    pub lapsed: bool,
}

fn view(s: &Session, r: EmergencyRequest) -> RequestView {
    let note = r
        .notes
        .iter()
        .find(|(a, _)| *a == s.me)
        .and_then(|(_, sealed)| {
            s.key
                .encryption()
                .open_note(sealed, &r.doctor, &r.patient)
                .ok()
        });
    let as_role = if r.patient == s.me {
        "patient"
    } else if r.doctor == s.me {
        "doctor"
    } else {
        "guardian"
    };
    let now = ehrchain_api::now_ms();
    RequestView {
        answered: r.answers.iter().any(|a| a.guardian == s.me),
        active: r.status == EmergencyStatus::Released && r.expires_ms.is_some_and(|e| now < e),
        lapsed: r.lapsed(now),
        note,
        as_role,
        request: r,
    }
}

/// Every emergency request the session account takes part in (as patient, doctor or
/// guardian), newest first.
pub fn list(s: &Session) -> Result<Vec<RequestView>> {
    let mut out: Vec<RequestView> = items_of(s, ItemKind::Emergency)?
        .into_iter()
        .filter_map(|i| match i {
            Item::Emergency(r) => Some(view(s, r)),
            _ => None,
        })
        .collect();
    out.sort_by_key(|v| std::cmp::Reverse(v.request.created_ms));
    Ok(out)
}

/// A guardian's inbox: requests waiting for its answer (and, after them, those it answered).
pub fn inbox(s: &Session) -> Result<Vec<RequestView>> {
    let mut out: Vec<RequestView> = list(s)?
        .into_iter()
        .filter(|v| v.as_role == "guardian")
        .collect();
    out.sort_by_key(|v| (v.answered, std::cmp::Reverse(v.request.created_ms)));
    Ok(out)
}

/// A guardian approves a request: opens its share (checking it against the commitments, so
/// it never hands over something the patient sealed wrong) and re-seals it to the doctor.
pub fn approve(s: &Session, id: &ItemId) -> Result<TxView> {
    let r = emergency_request(s, id)?;
    let g = guardianship(s, &r.guardianship)?;
    let Some(mine) = g.guardians.iter().find(|x| x.account == s.me) else {
        invalid!("you are not a guardian of {id}");
    };
    let enc = s.key.encryption();
    let share = enc.open_guardian_share(&mine.share, &r.patient, &s.me)?;
    if !vss::verify_share(&g.commitments, &share) {
        invalid!(
            "the share the patient sealed to you does not match their commitments; ask them to name their guardians again"
        );
    }
    let doctor_key = s.encryption_key(&r.doctor)?;
    answer_with(
        s,
        id,
        Some(vss::seal_doctor_share(&doctor_key, id, &s.me, &share)?),
    )
}

/// The same as [`approve`], but handing over `share` as given (tests of wrong-share
/// detection: a guardian's client never does this).
pub fn approve_with_share(s: &Session, id: &ItemId, share: &Share) -> Result<TxView> {
    let r = emergency_request(s, id)?;
    let doctor_key = s.encryption_key(&r.doctor)?;
    answer_with(
        s,
        id,
        Some(vss::seal_doctor_share(&doctor_key, id, &s.me, share)?),
    )
}

/// The share the patient sealed to the session account for request `id` (tests).
pub fn my_share(s: &Session, id: &ItemId) -> Result<Share> {
    let r = emergency_request(s, id)?;
    let g = guardianship(s, &r.guardianship)?;
    let Some(mine) = g.guardians.iter().find(|x| x.account == s.me) else {
        invalid!("you are not a guardian of {id}");
    };
    Ok(s.key
        .encryption()
        .open_guardian_share(&mine.share, &r.patient, &s.me)?)
}

/// A guardian refuses a request.
pub fn refuse(s: &Session, id: &ItemId) -> Result<TxView> {
    answer_with(s, id, None)
}

fn answer_with(
    s: &Session,
    id: &ItemId,
    share: Option<(ehrchain_types::SealedKey, ehrchain_types::Hash)>,
) -> Result<TxView> {
    let (share, digest) = match share {
        Some((s, d)) => (Some(s), Some(d)),
        None => (None, None),
    };
    s.submit_one(TxPayload::AnswerEmergency {
        request: *id,
        approve: share.is_some(),
        share,
        digest,
    })
}

/// What opening a released request found.
#[derive(Clone, Debug, Serialize)]
pub struct Opened {
    pub request: ItemId,
    pub patient: AccountId,
    /// The guardians whose shares checked out.
    pub good: Vec<AccountId>,
    /// The guardians whose shares did not, each with why; each was reported on the ledger.
    pub bad: Vec<(AccountId, String)>,
    pub threshold: u8,
    pub categories: Vec<Category>,
    pub expires_ms: Option<u64>,
}

/// A wrong share: its guardian, the revealed bytes (to prove it on the ledger; none when the
/// sealed share does not even open) and why.
type WrongShare = (AccountId, Option<Vec<u8>>, String);

/// The shares the doctor of request `r` holds: good ones, and wrong ones.
fn collect(
    enc: &EncryptionKeypair,
    r: &EmergencyRequest,
    g: &Guardianship,
) -> (Vec<(AccountId, Share)>, Vec<WrongShare>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for a in r.answers.iter().filter(|a| a.approve) {
        let Some(sealed) = &a.share else { continue };
        let revealed = match enc.open_doctor_share(sealed, &r.id, &a.guardian) {
            Ok(rv) => rv,
            Err(e) => {
                bad.push((
                    a.guardian,
                    None,
                    format!("the sealed share does not open ({e})"),
                ));
                continue;
            }
        };
        let expected = g.position(&a.guardian).map(|p| p + 1);
        match revealed.share() {
            Ok(share)
                if expected == Some(usize::from(share.index))
                    && vss::verify_share(&g.commitments, &share) =>
            {
                good.push((a.guardian, share));
            }
            Ok(_) => bad.push((
                a.guardian,
                Some(revealed.0.to_vec()),
                "the share does not match the patient's commitments".into(),
            )),
            Err(_) => bad.push((
                a.guardian,
                Some(revealed.0.to_vec()),
                "the share is malformed".into(),
            )),
        }
    }
    (good, bad)
}

/// The emergency key pair of a released request, from its guardians' good shares.
fn emergency_keypair(
    enc: &EncryptionKeypair,
    r: &EmergencyRequest,
    g: &Guardianship,
) -> Result<EncryptionKeypair> {
    let (good, _) = collect(enc, r, g);
    let k = usize::from(g.threshold);
    if good.len() < k {
        invalid!(
            "{} of the {k} good shares needed have arrived for {}; wait for more guardians",
            good.len(),
            r.id
        );
    }
    let shares: Vec<Share> = good.into_iter().take(k).map(|(_, s)| s).collect();
    let ek = vss::combine(&shares)?.keypair(&r.patient);
    if ek.public() != g.emergency_key {
        invalid!("the combined shares do not rebuild the patient's emergency key");
    }
    Ok(ek)
}

/// The doctor opens a released request: checks every share, reports each wrong one on the
/// ledger (naming its guardian), and checks that the good ones rebuild the emergency key.
/// After this, `record get` works for the released categories until the window ends.
pub fn open(s: &Session, id: &ItemId) -> Result<Opened> {
    let r = emergency_request(s, id)?;
    if r.doctor != s.me {
        invalid!("{id} is not your request");
    }
    match r.status {
        EmergencyStatus::Released => {}
        EmergencyStatus::Open => invalid!(
            "{id} is not released yet: {} of {} guardians approved",
            r.approvals(),
            r.threshold
        ),
        other => invalid!("{id} was {}", other.name()),
    }
    let g = guardianship(s, &r.guardianship)?;
    let enc = s.key.encryption();
    let (good, bad) = collect(&enc, &r, &g);
    for (guardian, revealed, _) in &bad {
        let already = r.answers.iter().any(|a| a.guardian == *guardian && a.bad);
        if let (Some(bytes), false) = (revealed, already) {
            s.submit_one(TxPayload::ReportBadShare {
                request: *id,
                guardian: *guardian,
                revealed: HexBytes(bytes.clone()),
            })?;
        }
    }
    emergency_keypair(&enc, &r, &g)?;
    Ok(Opened {
        request: *id,
        patient: r.patient,
        good: good.into_iter().map(|(a, _)| a).collect(),
        bad: bad.into_iter().map(|(a, _, why)| (a, why)).collect(),
        threshold: r.threshold,
        categories: r.categories.clone(),
        expires_ms: r.expires_ms,
    })
}

/// The keys a released emergency access opens: the emergency key pair rebuilt from the
/// guardians' good shares, and the categories' keys sealed to it.
pub struct Keyring {
    patient: AccountId,
    ek: EncryptionKeypair,
    wraps: Vec<KeyWrap>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({}, ..)", self.patient)
    }
}

impl Keyring {
    /// The patient's key of `category` at `epoch`, if the emergency key holds it.
    pub fn category_key(&self, category: Category, epoch: u32) -> Option<CategoryKey> {
        let w = self
            .wraps
            .iter()
            .find(|w| w.category == category && w.epoch == epoch)?;
        self.ek
            .open_category_key(&w.sealed, &self.patient, category, epoch)
            .ok()
    }
}

/// The keyring of the session account's (a doctor's) released emergency access to
/// `patient` covering `category` now, if there is one.
pub fn keyring(s: &Session, patient: &AccountId, category: Category) -> Result<Option<Keyring>> {
    let now = ehrchain_api::now_ms();
    let Some(r) = items_of(s, ItemKind::Emergency)?
        .into_iter()
        .find_map(|i| match i {
            Item::Emergency(r)
                if r.doctor == s.me && r.patient == *patient && r.covers(category, now) =>
            {
                Some(r)
            }
            _ => None,
        })
    else {
        return Ok(None);
    };
    let g = guardianship(s, &r.guardianship)?;
    let ek = emergency_keypair(&s.key.encryption(), &r, &g)?;
    Ok(Some(Keyring {
        patient: *patient,
        ek,
        wraps: g.wraps,
    }))
}

/// The category key of `patient`'s `category` at `epoch` through a released emergency
/// request of the session account (the doctor), if one covers it now.
pub fn category_key(
    s: &Session,
    patient: &AccountId,
    category: Category,
    epoch: u32,
) -> Result<Option<CategoryKey>> {
    let Some(k) = keyring(s, patient, category)? else {
        return Ok(None);
    };
    match k.category_key(category, epoch) {
        Some(ck) => Ok(Some(ck)),
        None => invalid!("the emergency key holds no {category} key of epoch {epoch}"),
    }
}

/// One emergency access the patient has not reviewed, with every read made under it.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub request: RequestView,
    pub reads: Vec<EventView>,
}

/// The patient's alerts: each released emergency access not yet reviewed, with who read what.
pub fn alerts(s: &Session) -> Result<Vec<Alert>> {
    let pending: Vec<RequestView> = list(s)?
        .into_iter()
        .filter(|v| {
            v.as_role == "patient"
                && v.request.status == EmergencyStatus::Released
                && v.request.review.is_none()
        })
        .collect();
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let trail = crate::audit::trail(s, None)?;
    Ok(pending
        .into_iter()
        .map(|v| {
            let id = v.request.id;
            let reads = trail
                .iter()
                .filter(|e| {
                    e.event.action == AuditAction::Read
                        && matches!(e.event.reason, AuditReason::Emergency { request, .. } if request == id)
                })
                .cloned()
                .collect();
            Alert { request: v, reads }
        })
        .collect())
}

/// The patient reviews a released emergency access (which ends it if it is still running);
/// a dispute is visible to every regulator. Rotate afterwards ([`rotate_after_release`]).
pub fn review(s: &Session, id: &ItemId, review: EmergencyReview) -> Result<TxView> {
    s.submit_one(TxPayload::ReviewEmergency {
        request: *id,
        review,
    })
}

/// Every disputed emergency access (for an approved regulator).
pub fn disputes(s: &Session) -> Result<Vec<EmergencyRequest>> {
    Ok(s.get_all(
        "/api/v1/items?kind=emergency&disputed=true",
        "after",
        |i: &Item| i.id().to_string(),
    )?
    .into_iter()
    .filter_map(|i| match i {
        Item::Emergency(r) => Some(r),
        _ => None,
    })
    .collect())
}

/// After an emergency release, the patient's client rotates what was released: a new epoch
/// of each released category (so records written from now on are out of the doctor's
/// reach) and a new emergency key split afresh among the same guardians. Returns the
/// transactions submitted, none if nothing was released since the current guardians.
pub fn rotate_after_release(s: &Session) -> Result<Vec<TxView>> {
    let Some(g) = my_guardians(s)? else {
        return Ok(Vec::new());
    };
    let released: Vec<RequestView> = list(s)?
        .into_iter()
        .filter(|v| {
            v.as_role == "patient"
                && v.request.guardianship == g.id
                && v.request.status == EmergencyStatus::Released
        })
        .collect();
    if released.is_empty() {
        return Ok(Vec::new());
    }
    // A new emergency key first, split among the same guardians: the old guardianship (which
    // the doctor can see and whose key the doctor rebuilt) is replaced, so it never receives
    // the new epochs. Then new epochs of the released categories, sealed to the new key.
    let plan = GuardianPlan {
        guardians: g.guardians.iter().map(|x| x.account).collect(),
        threshold: g.threshold,
        categories: g.categories.clone(),
        max_duration: Duration::from_millis(g.max_duration_ms),
    };
    let mut done = vec![set_guardians(s, &plan)?.1];
    let state = ConsentState::fetch(s, &[])?;
    let planner = crate::consent::Planner {
        key: &s.key,
        state: &state,
    };
    let mut payloads = Vec::new();
    for &c in g.categories.iter().filter(|c| state.epochs(**c) > 0) {
        let rotation = planner.rotation(c, state.epochs(c), &CategoryKey::generate(), None)?;
        payloads.push(TxPayload::RotateKey { rotation });
    }
    if !payloads.is_empty() {
        done.extend(s.submit(payloads)?);
    }
    Ok(done)
}
