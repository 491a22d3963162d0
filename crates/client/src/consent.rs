//! Consent: grants, revocations, key rotation, access requests.
//!
//! Every decision is planned by pure functions ([`Planner`]) over a [`ConsentState`] fetched
//! once (the patient's own sealed keys, grants, and the recipients of every grantee), so a
//! revocation of five categories costs the same few requests as one. The session functions
//! below fetch, plan, submit.

use crate::{Result, Session, invalid};
use ehrchain_api::{AccountView, GrantView, KeysView, TxView, now_ms};
use ehrchain_crypto::{CategoryKey, Keypair, envelope};
use ehrchain_types::{
    AccountId, Category, EncryptionKey, Grantee, KeyWrap, RequestId, Role, Rotation, SealedKey,
    TxPayload, entries::AccessRequest,
};
use serde::Serialize;
use std::{collections::BTreeMap, time::Duration};

/// An account that receives sealed keys: id, encryption key, and (for organisation members)
/// role, which limits the categories it may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub account: AccountId,
    pub key: EncryptionKey,
    pub role: Option<Role>,
}

impl Recipient {
    /// Whether the ledger lets this recipient hold keys of `category`.
    fn may_hold(&self, category: Category) -> bool {
        self.role
            .is_none_or(|r| ehrchain_ledger::access::role_allows(r, category, false).is_ok())
    }
}

/// Most accounts one listing page holds (the node's bound).
const ACCOUNT_PAGE: usize = 1000;

/// What a patient's consent decisions are planned from, fetched once.
#[derive(Clone, Debug, Default)]
pub struct ConsentState {
    /// The patient's own category keys (sealed to the patient), by category; index = epoch.
    pub own: BTreeMap<Category, Vec<SealedKey>>,
    /// The patient's grants, expired ones included.
    pub grants: Vec<GrantView>,
    /// The recipients of every grantee of a grant in force, and of any grantee asked for.
    pub recipients: BTreeMap<Grantee, Vec<Recipient>>,
    /// The patient's emergency key and the categories it opens, if guardians are named: every
    /// new epoch of those categories is sealed to it too.
    pub emergency: Option<(EncryptionKey, Vec<Category>)>,
}

impl ConsentState {
    /// Fetches the session account's consent state, with the recipients of `also` resolved
    /// too (a grantee about to be granted).
    pub fn fetch(s: &Session, also: &[Grantee]) -> Result<ConsentState> {
        let keys: KeysView = s.get(&format!("/api/v1/keys?patient={}", s.me))?;
        let grants = grants(s)?;
        let mut wanted: Vec<Grantee> = grants
            .iter()
            .filter(|g| !g.expired)
            .map(|g| g.grantee.clone())
            .chain(also.iter().cloned())
            .collect();
        wanted.sort();
        wanted.dedup();
        Ok(ConsentState {
            own: keys
                .own
                .into_iter()
                .map(|o| (o.category, o.epochs))
                .collect(),
            recipients: resolve_recipients(s, &wanted)?,
            grants,
            emergency: crate::emergency::my_guardians(s)?.map(|g| (g.emergency_key, g.categories)),
        })
    }

    /// The grant to `grantee`, if there is one.
    pub fn grant_to(&self, grantee: &Grantee) -> Option<&GrantView> {
        self.grants.iter().find(|g| g.grantee == *grantee)
    }

    /// How many epochs of `category` the patient has.
    pub fn epochs(&self, category: Category) -> u32 {
        self.own.get(&category).map_or(0, Vec::len) as u32
    }
}

/// The recipients of each grantee: an account's own key, or every approved member of an
/// organisation with a key (one listing for all the organisations asked).
fn resolve_recipients(
    s: &Session,
    grantees: &[Grantee],
) -> Result<BTreeMap<Grantee, Vec<Recipient>>> {
    let mut out = BTreeMap::new();
    let mut orgs: BTreeMap<String, Vec<Recipient>> = BTreeMap::new();
    for g in grantees {
        match g {
            Grantee::Account(a) => {
                let key = s.encryption_key(a)?;
                out.insert(
                    g.clone(),
                    vec![Recipient {
                        account: *a,
                        key,
                        role: None,
                    }],
                );
            }
            Grantee::Organisation(o) => {
                orgs.insert(o.clone(), Vec::new());
            }
        }
    }
    if !orgs.is_empty() {
        for a in active_accounts(s)? {
            let Some(o) = a.account.organisation.as_deref() else {
                continue;
            };
            if let (Some(members), true, Some(key)) = (
                orgs.get_mut(o),
                ehrchain_ledger::access::is_member(&a.account),
                a.account.encryption_key,
            ) {
                members.push(Recipient {
                    account: a.id,
                    key,
                    role: a.account.role,
                });
            }
        }
        out.extend(orgs.into_iter().map(|(o, m)| (Grantee::Organisation(o), m)));
    }
    Ok(out)
}

/// Every active account, page by page.
fn active_accounts(s: &Session) -> Result<Vec<AccountView>> {
    let mut out = Vec::new();
    let mut after: Option<AccountId> = None;
    loop {
        let mut path = format!("/api/v1/accounts?limit={ACCOUNT_PAGE}&status=active");
        if let Some(a) = after {
            path += &format!("&after={a}");
        }
        let page: Vec<AccountView> = s.node.get(&path)?;
        after = page.last().map(|a| a.id);
        let n = page.len();
        out.extend(page);
        if n < ACCOUNT_PAGE {
            return Ok(out);
        }
    }
}

/// Plans consent transactions for `key`'s account over a fetched [`ConsentState`]: no IO.
#[derive(Debug)]
pub struct Planner<'a> {
    pub key: &'a Keypair,
    pub state: &'a ConsentState,
}

impl Planner<'_> {
    fn me(&self) -> AccountId {
        self.key.account()
    }

    /// The recipients of `grantee` (resolved in the state).
    pub fn recipients(&self, grantee: &Grantee) -> Result<&[Recipient]> {
        match self.state.recipients.get(grantee) {
            Some(r) => Ok(r),
            None => invalid!("{grantee} was not resolved when the consent state was fetched"),
        }
    }

    /// Opens the patient's own key of `category` at `epoch`.
    pub fn own_key(&self, category: Category, epoch: u32) -> Result<CategoryKey> {
        let Some(sealed) = self
            .state
            .own
            .get(&category)
            .and_then(|e| e.get(epoch as usize))
        else {
            invalid!("your {category} key of epoch {epoch} is missing");
        };
        Ok(self
            .key
            .encryption()
            .open_category_key(sealed, &self.me(), category, epoch)?)
    }

    /// The key new records of `category` go under: the current epoch's, or a new epoch when
    /// there is none yet or someone whose grant expired holds the current one (they never
    /// receive the new one). Returns (epoch, key, the rotation to submit first if new).
    pub fn current_key(&self, category: Category) -> Result<(u32, CategoryKey, Option<TxPayload>)> {
        let epochs = self.state.epochs(category);
        if epochs > 0 && !self.expired_holder(category, epochs - 1) {
            let epoch = epochs - 1;
            return Ok((epoch, self.own_key(category, epoch)?, None));
        }
        let ck = CategoryKey::generate();
        let rotation = self.rotation(category, epochs, &ck, None)?;
        Ok((epochs, ck, Some(TxPayload::RotateKey { rotation })))
    }

    /// Whether an expired grant holds the `epoch` key of `category`.
    fn expired_holder(&self, category: Category, epoch: u32) -> bool {
        self.state.grants.iter().any(|g| {
            g.expired
                && g.grant
                    .wraps
                    .iter()
                    .any(|w| w.category == category && w.epoch == epoch)
        })
    }

    /// A rotation of `category` to `epoch` with key `ck`: sealed to the patient and to every
    /// recipient of a grant in force covering the category (except the categories
    /// `excluding` revokes from its grantee).
    pub fn rotation(
        &self,
        category: Category,
        epoch: u32,
        ck: &CategoryKey,
        excluding: Option<(&Grantee, &[Category])>,
    ) -> Result<Rotation> {
        let me = self.me();
        let own =
            envelope::seal_category_key(&self.key.encryption().public(), ck, &me, category, epoch)?;
        let mut wraps = Vec::new();
        for g in self.state.grants.iter().filter(|g| !g.expired) {
            let revoked = matches!(excluding, Some((from, cats)) if *from == g.grantee && cats.contains(&category));
            if revoked || !g.grant.categories.contains(&category) {
                continue;
            }
            for r in self
                .recipients(&g.grantee)?
                .iter()
                .filter(|r| r.may_hold(category))
            {
                wraps.push(KeyWrap {
                    category,
                    epoch,
                    recipient: r.account,
                    sealed: envelope::seal_category_key(&r.key, ck, &me, category, epoch)?,
                });
            }
        }
        if let Some((ek, cats)) = &self.state.emergency
            && cats.contains(&category)
        {
            // The emergency key's copy (recipient: the patient; the ledger requires it).
            wraps.push(KeyWrap {
                category,
                epoch,
                recipient: me,
                sealed: envelope::seal_category_key(ek, ck, &me, category, epoch)?,
            });
        }
        Ok(Rotation {
            category,
            own,
            wraps,
        })
    }

    /// Every epoch of the patient's keys of `categories`, sealed to each recipient that may
    /// hold it.
    pub fn grant_wraps(
        &self,
        categories: &[Category],
        recipients: &[Recipient],
    ) -> Result<Vec<KeyWrap>> {
        let me = self.me();
        let mut wraps = Vec::new();
        for &c in categories {
            for epoch in 0..self.state.epochs(c) {
                let ck = self.own_key(c, epoch)?;
                for r in recipients.iter().filter(|r| r.may_hold(c)) {
                    wraps.push(KeyWrap {
                        category: c,
                        epoch,
                        recipient: r.account,
                        sealed: envelope::seal_category_key(&r.key, &ck, &me, c, epoch)?,
                    });
                }
            }
        }
        Ok(wraps)
    }

    /// A grant of `categories` to `to`, added to what it already holds (narrowing a grant is
    /// a revocation), with every epoch of each key sealed to its recipients.
    pub fn grant(
        &self,
        to: &Grantee,
        categories: &[Category],
        expires_ms: Option<u64>,
        write: bool,
    ) -> Result<TxPayload> {
        let recipients = self.recipients(to)?;
        if recipients.is_empty() {
            invalid!("{to} has no active members with an encryption key");
        }
        let mut categories = categories.to_vec();
        let mut write = write;
        if let Some(g) = self.state.grant_to(to).filter(|g| !g.expired) {
            categories.extend(g.grant.categories.iter().copied());
            write |= g.grant.write;
        }
        categories.sort();
        categories.dedup();
        let wraps = self.grant_wraps(&categories, recipients)?;
        Ok(TxPayload::Grant {
            to: to.clone(),
            categories,
            expires_ms,
            write,
            wraps,
        })
    }

    /// A revocation of `categories` (all of the grant's when empty) from `from`: each revoked
    /// category with keys gets a new epoch sealed to everyone else who holds it.
    pub fn revoke(&self, from: &Grantee, categories: &[Category]) -> Result<TxPayload> {
        let Some(g) = self.state.grant_to(from) else {
            invalid!("there is no grant to {from}");
        };
        let revoked: Vec<Category> = if categories.is_empty() {
            g.grant.categories.clone()
        } else {
            categories.to_vec()
        };
        let mut rotations = Vec::new();
        for &c in &revoked {
            let epochs = self.state.epochs(c);
            if epochs > 0 {
                let ck = CategoryKey::generate();
                rotations.push(self.rotation(c, epochs, &ck, Some((from, &revoked)))?);
            }
        }
        Ok(TxPayload::Revoke {
            from: from.clone(),
            categories: categories.to_vec(),
            rotations,
        })
    }

    /// The answer to access request `r`: an approval grants what was asked (added to any
    /// grant the requester holds).
    pub fn answer(
        &self,
        r: &AccessRequest,
        approve: bool,
        expires_ms: Option<u64>,
    ) -> Result<TxPayload> {
        let wraps = if approve {
            let to = Grantee::Account(r.requester);
            let mut cats = r.categories.clone();
            if let Some(g) = self.state.grant_to(&to) {
                cats.extend(g.grant.categories.iter().copied());
            }
            cats.sort();
            cats.dedup();
            self.grant_wraps(&cats, self.recipients(&to)?)?
        } else {
            Vec::new()
        };
        Ok(TxPayload::AnswerRequest {
            request: r.id,
            approve,
            expires_ms,
            wraps,
        })
    }
}

/// The time `d` from now, in ledger milliseconds.
fn from_now(d: Option<Duration>) -> Option<u64> {
    d.map(|d| now_ms().saturating_add(d.as_millis() as u64))
}

/// The session account's current key of `category`, creating a new epoch first (with a
/// rotation transaction) when needed. Returns (epoch, key).
pub fn current_category_key(s: &Session, category: Category) -> Result<(u32, CategoryKey)> {
    let state = ConsentState::fetch(s, &[])?;
    let (epoch, ck, rotation) = Planner {
        key: &s.key,
        state: &state,
    }
    .current_key(category)?;
    if let Some(r) = rotation {
        s.submit_one(r)?;
    }
    Ok((epoch, ck))
}

/// Grants categories to a grantee, sealing every epoch of each category key to it.
pub fn grant(
    s: &Session,
    to: &Grantee,
    categories: &[Category],
    expires: Option<Duration>,
    write: bool,
) -> Result<TxView> {
    let state = ConsentState::fetch(s, std::slice::from_ref(to))?;
    let payload = Planner {
        key: &s.key,
        state: &state,
    }
    .grant(to, categories, from_now(expires), write)?;
    s.submit_one(payload)
}

/// Revokes categories (all when empty) from a grantee, starting a new key epoch for each.
pub fn revoke(s: &Session, from: &Grantee, categories: &[Category]) -> Result<TxView> {
    let state = ConsentState::fetch(s, &[])?;
    let payload = Planner {
        key: &s.key,
        state: &state,
    }
    .revoke(from, categories)?;
    s.submit_one(payload)
}

/// A professional's request for access; the reason is sealed to the patient.
pub fn request(
    s: &Session,
    patient: &AccountId,
    categories: &[Category],
    write: bool,
    reason: &str,
) -> Result<(RequestId, TxView)> {
    let pk = s.encryption_key(patient)?;
    let sealed = envelope::seal_reason(&pk, &s.me, patient, reason)?;
    let t = s.submit_one(TxPayload::RequestAccess {
        patient: *patient,
        categories: categories.to_vec(),
        write,
        reason: sealed,
    })?;
    Ok((RequestId(t.id.0), t))
}

/// A request with its reason decrypted (when this account is the patient).
#[derive(Serialize, Debug, Clone)]
pub struct Inbox {
    #[serde(flatten)]
    pub request: AccessRequest,
    pub reason_text: Option<String>,
    pub requester_role: Option<Role>,
    pub requester_organisation: Option<String>,
}

/// The session account's inbox of access requests (and the requests it made).
pub fn requests(s: &Session) -> Result<Vec<Inbox>> {
    let reqs = list_requests(s, None)?;
    let enc = s.key.encryption();
    let mut who: BTreeMap<AccountId, AccountView> = BTreeMap::new();
    reqs.into_iter()
        .map(|r| {
            let reason_text = (r.patient == s.me)
                .then(|| enc.open_reason(&r.reason, &r.requester, &r.patient).ok())
                .flatten();
            let a = match who.entry(r.requester) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(s.account(&r.requester)?),
            };
            let a = &a.account;
            Ok(Inbox {
                requester_role: a.role,
                requester_organisation: a.organisation.clone(),
                request: r,
                reason_text,
            })
        })
        .collect()
}

/// Answers a request in the session account's inbox.
pub fn answer(
    s: &Session,
    id: &RequestId,
    approve: bool,
    expires: Option<Duration>,
) -> Result<TxView> {
    let reqs = list_requests(s, Some(&s.me))?;
    let Some(r) = reqs.into_iter().find(|r| r.id == *id) else {
        invalid!("no request {id} in your inbox");
    };
    let also = [Grantee::Account(r.requester)];
    let state = ConsentState::fetch(s, if approve { &also } else { &[] })?;
    let payload = Planner {
        key: &s.key,
        state: &state,
    }
    .answer(&r, approve, from_now(expires))?;
    s.submit_one(payload)
}

/// The session account's grants.
pub fn grants(s: &Session) -> Result<Vec<GrantView>> {
    s.get_all(
        &format!("/api/v1/grants?patient={}", s.me),
        "after",
        |g: &GrantView| g.grantee.to_string(),
    )
}

/// Access requests: the session account's inbox and the requests it made (`patient` None),
/// or those between it and `patient`.
fn list_requests(s: &Session, patient: Option<&AccountId>) -> Result<Vec<AccessRequest>> {
    let path = match patient {
        Some(p) => format!("/api/v1/requests?patient={p}"),
        None => "/api/v1/requests".to_string(),
    };
    s.get_all(&path, "after", |r: &AccessRequest| r.id.to_string())
}

/// Whether `who` holds a grant in force covering `category` of the session account's records.
pub fn holds(s: &Session, who: &AccountId, category: Category) -> Result<bool> {
    Ok(grants(s)?.iter().any(|g| {
        g.grantee == Grantee::Account(*who) && !g.expired && g.grant.categories.contains(&category)
    }))
}

/// A new key of `category` at `epoch` for an account with no grants (a fresh account's first
/// key): the rotation that publishes it, sealed to the account only.
pub fn fresh_rotation(key: &Keypair, category: Category, epoch: u32) -> Result<Rotation> {
    Planner {
        key,
        state: &ConsentState::default(),
    }
    .rotation(category, epoch, &CategoryKey::generate(), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehrchain_types::entries::Grant;

    /// A patient with two epochs of `lab` keys, a grant in force to a doctor (lab) and one to
    /// an organisation (lab, notes) whose members are a doctor and a pharmacist.
    struct World {
        patient: Keypair,
        doctor: Keypair,
        member: Keypair,
        pharmacist: Keypair,
        keys: Vec<CategoryKey>,
        state: ConsentState,
    }

    fn recipient(k: &Keypair, role: Option<Role>) -> Recipient {
        Recipient {
            account: k.account(),
            key: k.encryption().public(),
            role,
        }
    }

    fn grant_view(patient: &Keypair, to: Grantee, cats: &[Category], expired: bool) -> GrantView {
        GrantView {
            patient: patient.account(),
            grantee: to,
            expired,
            grant: Grant {
                categories: cats.to_vec(),
                expires_ms: None,
                write: false,
                granted_ms: 1,
                wraps: Vec::new(),
            },
        }
    }

    fn world() -> World {
        let patient = Keypair::from_seed(&[1; 32]);
        let (doctor, member, pharmacist) = (
            Keypair::from_seed(&[2; 32]),
            Keypair::from_seed(&[3; 32]),
            Keypair::from_seed(&[4; 32]),
        );
        let keys = vec![CategoryKey::generate(), CategoryKey::generate()];
        let own = keys
            .iter()
            .enumerate()
            .map(|(e, ck)| {
                envelope::seal_category_key(
                    &patient.encryption().public(),
                    ck,
                    &patient.account(),
                    Category::Lab,
                    e as u32,
                )
                .unwrap()
            })
            .collect();
        let org = Grantee::Organisation("StMarys".into());
        let to_doctor = Grantee::Account(doctor.account());
        let state = ConsentState {
            own: BTreeMap::from([(Category::Lab, own)]),
            grants: vec![
                grant_view(&patient, to_doctor.clone(), &[Category::Lab], false),
                grant_view(
                    &patient,
                    org.clone(),
                    &[Category::Lab, Category::Notes],
                    false,
                ),
            ],
            recipients: BTreeMap::from([
                (to_doctor, vec![recipient(&doctor, None)]),
                (
                    org,
                    vec![
                        recipient(&member, Some(Role::Doctor)),
                        recipient(&pharmacist, Some(Role::Pharmacist)),
                    ],
                ),
            ]),
            emergency: None,
        };
        World {
            patient,
            doctor,
            member,
            pharmacist,
            keys,
            state,
        }
    }

    /// The category key a wrap carries, opened by its recipient.
    fn open(w: &KeyWrap, by: &Keypair, patient: &Keypair) -> CategoryKey {
        by.encryption()
            .open_category_key(&w.sealed, &patient.account(), w.category, w.epoch)
            .unwrap()
    }

    #[test]
    fn a_grant_seals_every_epoch_to_the_new_grantee() {
        let w = world();
        let newcomer = Keypair::from_seed(&[5; 32]);
        let to = Grantee::Account(newcomer.account());
        let mut state = w.state.clone();
        state
            .recipients
            .insert(to.clone(), vec![recipient(&newcomer, None)]);
        let p = Planner {
            key: &w.patient,
            state: &state,
        };
        let TxPayload::Grant {
            categories, wraps, ..
        } = p.grant(&to, &[Category::Lab], None, false).unwrap()
        else {
            panic!("not a grant")
        };
        assert_eq!(categories, vec![Category::Lab]);
        assert_eq!(wraps.len(), 2, "one wrap per epoch");
        for wrap in &wraps {
            assert_eq!(wrap.recipient, newcomer.account());
            let ck = open(wrap, &newcomer, &w.patient);
            assert_eq!(ck.as_bytes(), w.keys[wrap.epoch as usize].as_bytes());
        }
    }

    #[test]
    fn a_rotation_seals_the_new_epoch_to_the_emergency_key_of_its_categories() {
        let w = world();
        let secret = ehrchain_crypto::emergency::EmergencySecret::generate();
        let ek = secret.keypair(&w.patient.account());
        let mut state = w.state.clone();
        state.emergency = Some((ek.public(), vec![Category::Lab]));
        let p = Planner {
            key: &w.patient,
            state: &state,
        };
        let ck = CategoryKey::generate();
        let r = p.rotation(Category::Lab, 2, &ck, None).unwrap();
        let mine: Vec<&KeyWrap> = r
            .wraps
            .iter()
            .filter(|x| x.recipient == w.patient.account())
            .collect();
        assert_eq!(mine.len(), 1, "one wrap to the emergency key");
        let opened = ek
            .open_category_key(&mine[0].sealed, &w.patient.account(), Category::Lab, 2)
            .unwrap();
        assert_eq!(opened.as_bytes(), ck.as_bytes());
        // A category the emergency does not open gets no such wrap.
        let r = p.rotation(Category::Notes, 0, &ck, None).unwrap();
        assert!(r.wraps.iter().all(|x| x.recipient != w.patient.account()));
    }

    #[test]
    fn a_grant_adds_to_what_the_grantee_holds() {
        let w = world();
        let p = Planner {
            key: &w.patient,
            state: &w.state,
        };
        let to = Grantee::Account(w.doctor.account());
        let TxPayload::Grant {
            categories, write, ..
        } = p.grant(&to, &[Category::Notes], None, true).unwrap()
        else {
            panic!("not a grant")
        };
        assert_eq!(categories, vec![Category::Lab, Category::Notes]);
        assert!(write);
    }

    #[test]
    fn a_revocation_rotates_to_everyone_but_the_revoked_and_the_roles_that_may_not_hold() {
        let w = world();
        let p = Planner {
            key: &w.patient,
            state: &w.state,
        };
        let from = Grantee::Account(w.doctor.account());
        let TxPayload::Revoke { rotations, .. } = p.revoke(&from, &[]).unwrap() else {
            panic!("not a revocation")
        };
        assert_eq!(rotations.len(), 1);
        let r = &rotations[0];
        assert_eq!((r.category, r.wraps.len()), (Category::Lab, 1));
        // The organisation's doctor gets the new epoch; the revoked doctor does not, nor the
        // pharmacist (who may hold medication keys only).
        assert_eq!(r.wraps[0].recipient, w.member.account());
        assert_eq!(r.wraps[0].epoch, 2);
        let new_key = open(&r.wraps[0], &w.member, &w.patient);
        let own = w
            .patient
            .encryption()
            .open_category_key(&r.own, &w.patient.account(), Category::Lab, 2)
            .unwrap();
        assert_eq!(new_key.as_bytes(), own.as_bytes());
        assert!(
            r.wraps
                .iter()
                .all(|x| x.recipient != w.doctor.account() && x.recipient != w.pharmacist.account())
        );
    }

    #[test]
    fn nothing_to_revoke_and_unresolved_grantees_are_refused() {
        let w = world();
        let p = Planner {
            key: &w.patient,
            state: &w.state,
        };
        let stranger = Grantee::Account(Keypair::from_seed(&[9; 32]).account());
        assert!(matches!(
            p.revoke(&stranger, &[]),
            Err(crate::Error::Invalid(m)) if m.contains("no grant")
        ));
        assert!(matches!(
            p.grant(&stranger, &[Category::Lab], None, false),
            Err(crate::Error::Invalid(_))
        ));
    }

    #[test]
    fn an_expired_holder_of_the_current_key_forces_a_new_epoch() {
        let w = world();
        let p = Planner {
            key: &w.patient,
            state: &w.state,
        };
        let (epoch, ck, rotation) = p.current_key(Category::Lab).unwrap();
        assert_eq!((epoch, rotation.is_none()), (1, true));
        assert_eq!(ck.as_bytes(), w.keys[1].as_bytes());
        let mut state = w.state.clone();
        let mut expired = grant_view(
            &w.patient,
            Grantee::Account(Keypair::from_seed(&[7; 32]).account()),
            &[Category::Lab],
            true,
        );
        expired.grant.wraps = vec![KeyWrap {
            category: Category::Lab,
            epoch: 1,
            recipient: Keypair::from_seed(&[7; 32]).account(),
            sealed: state.own[&Category::Lab][1].clone(),
        }];
        state.grants.push(expired);
        let p = Planner {
            key: &w.patient,
            state: &state,
        };
        let (epoch, _, rotation) = p.current_key(Category::Lab).unwrap();
        assert_eq!(epoch, 2);
        let Some(TxPayload::RotateKey { rotation }) = rotation else {
            panic!("no rotation")
        };
        // The new epoch goes to the grants in force (doctor, organisation doctor), never to
        // the expired holder.
        let mut to: Vec<AccountId> = rotation.wraps.iter().map(|x| x.recipient).collect();
        to.sort();
        let mut want = vec![w.doctor.account(), w.member.account()];
        want.sort();
        assert_eq!(to, want);
    }
}
