//! The ledger state: accounts with role, approval, balance and nonce.
//!
//! The values stored under each key (accounts, records, grants, requests) are public types of
//! `ehrchain_types::entries`, re-exported here.

use crate::{
    clinical::Item,
    cold::Cold,
    pmap::{PMap, PSet},
    tree::{self, Tree},
};
use borsh::{BorshDeserialize, BorshSerialize};
use ehrchain_types::{
    AccountId, Category, Grantee, Hash, ItemId, ItemKind, RecordId, RequestId, SealedKey,
};
use std::{collections::BTreeSet, ops::Bound, sync::Arc};

pub use ehrchain_types::entries::{
    AccessRequest, Account, AccountStatus, GenesisAccount, GenesisState, Grant, Record,
    RecordStatus, RequestStatus,
};

/// The address of one entry of the state, as stored by the node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum StateKey {
    Account(AccountId),
    Record(RecordId),
    Keys(AccountId, Category),
    Grant(AccountId, Grantee),
    Request(RequestId),
    Item(ItemId),
}

/// `account:ID`, `record:ID`, `keys:PATIENT:CATEGORY`, `grant:PATIENT:GRANTEE` (an account id
/// or `org:NAME`), `request:ID`, `item:ID`: how the API and the CLI name an entry.
impl std::fmt::Display for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateKey::Account(a) => write!(f, "account:{a}"),
            StateKey::Record(r) => write!(f, "record:{r}"),
            StateKey::Keys(p, c) => write!(f, "keys:{p}:{c}"),
            StateKey::Grant(p, g) => write!(f, "grant:{p}:{g}"),
            StateKey::Request(r) => write!(f, "request:{r}"),
            StateKey::Item(i) => write!(f, "item:{i}"),
        }
    }
}

impl std::str::FromStr for StateKey {
    type Err = String;
    fn from_str(s: &str) -> Result<StateKey, String> {
        const FORMS: &str = "account:ID, record:ID, keys:PATIENT:CATEGORY, grant:PATIENT:GRANTEE, request:ID or item:ID";
        let mut parts = s.trim().splitn(3, ':');
        let kind = parts.next().unwrap_or_default();
        let (a, b) = (parts.next(), parts.next());
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            format!("invalid {what} in state key {s:?}: {e}")
        };
        let one = || match (a, b) {
            (Some(v), None) => Ok(v),
            _ => Err(format!(
                "state key {s:?} has the wrong number of parts: expected {FORMS}"
            )),
        };
        let two = || match (a, b) {
            (Some(x), Some(y)) => Ok((x, y)),
            _ => Err(format!(
                "state key {s:?} has the wrong number of parts: expected {FORMS}"
            )),
        };
        let account = |v: &str| v.parse::<AccountId>().map_err(|e| bad("account id", &e));
        Ok(match kind {
            "account" => StateKey::Account(account(one()?)?),
            "record" => StateKey::Record(one()?.parse().map_err(|e| bad("record id", &e))?),
            "request" => StateKey::Request(one()?.parse().map_err(|e| bad("request id", &e))?),
            "item" => StateKey::Item(one()?.parse().map_err(|e| bad("item id", &e))?),
            "keys" => {
                let (p, c) = two()?;
                StateKey::Keys(account(p)?, c.parse().map_err(|e| bad("category", &e))?)
            }
            "grant" => {
                let (p, g) = two()?;
                StateKey::Grant(account(p)?, g.parse().map_err(|e| bad("grantee", &e))?)
            }
            _ => return Err(format!("unknown state key {s:?}: expected {FORMS}")),
        })
    }
}

/// The whole ledger state, in persistent ordered maps (a clone is O(1) and shares every entry),
/// with the authenticated tree of its entries ([`crate::tree`]) that gives the state root.
///
/// Records, their indexes and the tree's nodes are an overlay of what changed since a
/// snapshot of the node's store ([`crate::cold`]); read them through [`Self::record`],
/// [`Self::record_with_content`] and [`Self::records_of_after`].
#[derive(Clone, Debug)]
pub struct State {
    pub chain_id: String,
    pub accounts: PMap<AccountId, Account>,
    /// Records written since the snapshot `cold` (all of them when there is none), each with
    /// the height of the block that wrote it.
    records: PMap<RecordId, (u64, Record)>,
    /// Each patient's category keys, sealed to the patient; the index is the epoch.
    pub keys: PMap<(AccountId, Category), Vec<SealedKey>>,
    pub grants: PMap<(AccountId, Grantee), Grant>,
    pub requests: PMap<RequestId, AccessRequest>,
    /// The clinical workflow: slots, reports, prescriptions, invoices, policies, claims.
    pub items: PMap<ItemId, Item>,
    /// Index of records by patient (derived from `records`; not part of the root).
    by_patient: PSet<(AccountId, RecordId)>,
    /// Index of records by ciphertext hash (derived; not part of the root).
    by_content: PMap<Hash, RecordId>,
    /// Index of requests by patient (derived; not part of the root).
    pub requests_by_patient: PSet<(AccountId, RequestId)>,
    /// Index of requests by requester (derived; not part of the root).
    pub requests_by_requester: PSet<(AccountId, RequestId)>,
    /// Index of items by every account that ever took part (derived; filtered on read).
    pub items_by_party: PSet<(AccountId, ItemId)>,
    /// Index of prescriptions by their record (derived).
    pub rx_by_record: PMap<RecordId, ItemId>,
    /// The sum of all balances (derived). Only genesis mints, so it is the genesis total
    /// and bounds every amount and price a transaction may name.
    pub supply: u128,
    /// The authenticated tree over every entry's digest (derived; its root is the state root).
    pub tree: Tree,
    /// The store snapshot under the overlay, if the state has one.
    cold: Option<Arc<dyn Cold>>,
    /// The height of the block being executed, which tags what it writes to the overlay.
    writing: u64,
    /// The height up to which the overlay no longer holds what blocks wrote
    /// ([`Self::rebase`]).
    rebased_to: u64,
}

/// Two states are equal when their entries are: the state root commits to every entry (and
/// the chain id); indexes are derived, and where an entry lives (memory or store) is not
/// part of it.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.root() == other.root() && self.supply == other.supply
    }
}
impl Eq for State {}

impl State {
    /// Builds the genesis state. Genesis accounts with a role are active at once.
    pub fn genesis(g: &GenesisState) -> State {
        State::genesis_with(g, &mut |_: &mut State, _: BTreeSet<StateKey>| {})
    }

    /// [`Self::genesis`], handing synthetic records to `flush` a chunk at a time (with the
    /// keys written since the last chunk, the tree brought up to date) so that a node can
    /// store them and drop them from memory ([`Self::rebase`] to 0) instead of holding
    /// millions. What is
    /// left after the last chunk stays in the state.
    pub fn genesis_with(
        g: &GenesisState,
        flush: &mut dyn FnMut(&mut State, BTreeSet<StateKey>),
    ) -> State {
        /// Synthetic records per chunk.
        const CHUNK: u64 = 20_000;
        let mut accounts = PMap::new();
        for a in &g.accounts {
            let id = AccountId::from_public_key(&a.public_key);
            let acct = Account {
                public_key: Some(a.public_key),
                role: a.role,
                status: if a.role.is_some() {
                    AccountStatus::Active
                } else {
                    AccountStatus::Unregistered
                },
                balance: a.balance,
                encryption_key: a.encryption_key,
                ..Account::default()
            };
            let prev = accounts.insert(id, acct);
            assert!(prev.is_none(), "genesis lists account {id} twice");
        }
        let mut state = State {
            supply: accounts.values().map(|a| u128::from(a.balance)).sum(),
            accounts,
            ..State::empty(&g.chain_id)
        };
        let mut touched = state.all_keys();
        for i in 0..g.synthetic_records {
            let r = synthetic_record(i, g.synthetic_records);
            touched.insert(StateKey::Record(r.id));
            state.insert_record(r);
            if touched.len() as u64 >= CHUNK {
                state.update_tree(&touched);
                flush(&mut state, std::mem::take(&mut touched));
            }
        }
        state.update_tree(&touched);
        state
    }

    /// A state with no entries.
    pub fn empty(chain_id: &str) -> State {
        State {
            chain_id: chain_id.to_string(),
            accounts: PMap::new(),
            records: PMap::new(),
            keys: PMap::new(),
            grants: PMap::new(),
            requests: PMap::new(),
            items: PMap::new(),
            by_patient: PSet::new(),
            by_content: PMap::new(),
            requests_by_patient: PSet::new(),
            requests_by_requester: PSet::new(),
            items_by_party: PSet::new(),
            rx_by_record: PMap::new(),
            supply: 0,
            tree: Tree::default(),
            cold: None,
            writing: 0,
            rebased_to: 0,
        }
    }

    /// Starts executing the block at `height`: what it writes is tagged with it.
    pub fn begin_block(&mut self, height: u64) {
        self.writing = height;
    }

    /// The store snapshot the state reads through, if it has one.
    pub fn cold(&self) -> Option<Arc<dyn Cold>> {
        self.cold.clone()
    }

    /// The height up to which the overlay no longer holds what blocks wrote.
    pub fn rebased_to(&self) -> u64 {
        self.rebased_to
    }

    /// Drops from memory what blocks up to `committed` wrote, now that the store holds it and
    /// `cold` is a snapshot taken after: a state of a block not yet finalized keeps only what
    /// later blocks wrote. O(what the state holds in memory), which is a few blocks' changes.
    pub fn rebase(&mut self, cold: Arc<dyn Cold>, committed: u64) {
        let keep: Vec<(u64, Record)> = self
            .records
            .values()
            .filter(|(h, _)| *h > committed)
            .cloned()
            .collect();
        self.records = PMap::new();
        self.by_patient = PSet::new();
        self.by_content = PMap::new();
        for (h, r) in keep {
            let writing = std::mem::replace(&mut self.writing, h);
            self.insert_record(r);
            self.writing = writing;
        }
        self.tree.rebase(cold.clone(), committed);
        self.cold = Some(cold);
        self.rebased_to = committed;
    }

    /// A state stored by a node: the in-memory entries are loaded with [`Self::load_entry`],
    /// the rest is read through `cold`.
    pub fn stored(chain_id: &str, tree: Tree, cold: Arc<dyn Cold>) -> State {
        State {
            tree,
            cold: Some(cold),
            ..State::empty(chain_id)
        }
    }

    /// A record.
    pub fn record(&self, id: &RecordId) -> Option<Record> {
        match self.records.get(id) {
            Some((_, r)) => Some(r.clone()),
            None => self.cold.as_ref()?.record(id),
        }
    }

    /// The record whose ciphertext has hash `content`.
    pub fn record_with_content(&self, content: &Hash) -> Option<RecordId> {
        match self.by_content.get(content) {
            Some(id) => Some(*id),
            None => self.cold.as_ref()?.record_with_content(content),
        }
    }

    /// Whether a record with this ciphertext hash exists.
    pub fn has_content(&self, content: &Hash) -> bool {
        self.record_with_content(content).is_some()
    }

    /// Records held in memory (written since the store snapshot; all of them without one).
    pub fn records_in_memory(&self) -> usize {
        self.records.len()
    }

    /// The key of every entry held in memory: every entry of a state with no store snapshot
    /// (the genesis write set).
    pub fn all_keys(&self) -> BTreeSet<StateKey> {
        let mut out: BTreeSet<StateKey> = self
            .accounts
            .keys()
            .map(|a| StateKey::Account(*a))
            .collect();
        out.extend(self.records.keys().map(|r| StateKey::Record(*r)));
        out.extend(self.keys.keys().map(|(a, c)| StateKey::Keys(*a, *c)));
        out.extend(
            self.grants
                .keys()
                .map(|(a, g)| StateKey::Grant(*a, g.clone())),
        );
        out.extend(self.requests.keys().map(|r| StateKey::Request(*r)));
        out.extend(self.items.keys().map(|i| StateKey::Item(*i)));
        out
    }

    /// The encoded value of one entry, or `None` if it does not exist.
    pub fn entry(&self, key: &StateKey) -> Option<Vec<u8>> {
        use ehrchain_types::encode;
        match key {
            StateKey::Account(a) => self.accounts.get(a).map(encode),
            StateKey::Record(r) => self.record(r).as_ref().map(encode),
            StateKey::Keys(a, c) => self.keys.get(&(*a, *c)).map(encode),
            StateKey::Grant(a, g) => self.grants.get(&(*a, g.clone())).map(encode),
            StateKey::Request(r) => self.requests.get(r).map(encode),
            StateKey::Item(i) => self.items.get(i).map(encode),
        }
    }

    /// Loads one stored entry (at node start).
    pub fn load_entry(
        &mut self,
        key: StateKey,
        value: &[u8],
    ) -> Result<(), ehrchain_types::CodecError> {
        use ehrchain_types::decode;
        const MAX: usize = ehrchain_types::MAX_BLOCK_BYTES;
        match key {
            StateKey::Account(a) => {
                let acct: Account = decode(value, MAX)?;
                self.supply += u128::from(acct.balance);
                if let Some(old) = self.accounts.insert(a, acct) {
                    self.supply -= u128::from(old.balance);
                }
            }
            StateKey::Record(_) => self.insert_record(decode(value, MAX)?),
            StateKey::Keys(a, c) => {
                self.keys.insert((a, c), decode(value, MAX)?);
            }
            StateKey::Grant(a, g) => {
                self.grants.insert((a, g), decode(value, MAX)?);
            }
            StateKey::Request(_) => self.insert_request(decode(value, MAX)?),
            StateKey::Item(_) => self.insert_item(decode(value, MAX)?),
        }
        Ok(())
    }

    /// Inserts or replaces a record, keeping the patient index.
    pub fn insert_record(&mut self, record: Record) {
        self.by_patient.insert((record.patient, record.id));
        self.by_content.insert(record.content, record.id);
        self.records.insert(record.id, (self.writing, record));
    }

    /// Inserts or replaces a request, keeping the patient index.
    pub fn insert_request(&mut self, request: AccessRequest) {
        self.requests_by_patient
            .insert((request.patient, request.id));
        self.requests_by_requester
            .insert((request.requester, request.id));
        self.requests.insert(request.id, request);
    }

    /// Inserts or replaces a workflow item, keeping the party and prescription indexes.
    pub fn insert_item(&mut self, item: Item) {
        let id = item.id();
        for p in item.parties() {
            self.items_by_party.insert((p, id));
        }
        if let Item::Prescription(rx) = &item {
            self.rx_by_record.insert(rx.record, id);
        }
        self.items.insert(id, item);
    }

    /// The items of `kind` that `account` takes part in now.
    pub fn items_of<'a>(
        &'a self,
        account: &'a AccountId,
        kind: ItemKind,
    ) -> impl Iterator<Item = &'a Item> + 'a {
        self.items_of_after(account, kind, None)
    }

    /// [`Self::items_of`] in id order, from after `after` (a page cursor).
    pub fn items_of_after<'a>(
        &'a self,
        account: &'a AccountId,
        kind: ItemKind,
        after: Option<ItemId>,
    ) -> impl Iterator<Item = &'a Item> + 'a {
        let with = |b: Bound<ItemId>| b.map(|id| (*account, id));
        ItemId::page_bounds(kind, after)
            .map(|(lo, hi)| self.items_by_party.range((with(lo), with(hi))))
            .into_iter()
            .flatten()
            .filter_map(|(_, id)| self.items.get(id))
            .filter(move |i| i.parties().contains(account))
    }

    /// Every item of `kind`.
    pub fn items_of_kind(&self, kind: ItemKind) -> impl Iterator<Item = &Item> {
        self.items_of_kind_after(kind, None)
    }

    /// [`Self::items_of_kind`] from after the page cursor `after`.
    pub fn items_of_kind_after(
        &self,
        kind: ItemKind,
        after: Option<ItemId>,
    ) -> impl Iterator<Item = &Item> {
        ItemId::page_bounds(kind, after)
            .map(|bounds| self.items.range(bounds))
            .into_iter()
            .flatten()
            .map(|(_, i)| i)
    }

    /// A patient's records, in id order, from after `after` (a page cursor), at most `limit`.
    pub fn records_of_after(
        &self,
        patient: &AccountId,
        after: Option<RecordId>,
        limit: usize,
    ) -> Vec<Record> {
        let mut ids: Vec<RecordId> = index_after(
            &self.by_patient,
            patient,
            after,
            RecordId([0; 16]),
            RecordId([0xff; 16]),
        )
        .take(limit)
        .collect();
        if let Some(cold) = &self.cold {
            ids.extend(cold.records_of(patient, after, limit));
            ids.sort_unstable();
            ids.dedup();
            ids.truncate(limit);
        }
        ids.iter().filter_map(|id| self.record(id)).collect()
    }

    /// A patient's access requests, in id order.
    pub fn requests_of(&self, patient: &AccountId) -> impl Iterator<Item = &AccessRequest> {
        self.requests_of_after(patient, None)
    }

    /// [`Self::requests_of`] from after `after` (a page cursor).
    pub fn requests_of_after(
        &self,
        patient: &AccountId,
        after: Option<RequestId>,
    ) -> impl Iterator<Item = &AccessRequest> {
        let (min, max) = (RequestId([0; 32]), RequestId([0xff; 32]));
        index_after(&self.requests_by_patient, patient, after, min, max)
            .filter_map(|id| self.requests.get(&id))
    }

    /// The access requests `requester` made, in id order, from after `after` (a page cursor).
    pub fn requests_made_after(
        &self,
        requester: &AccountId,
        after: Option<RequestId>,
    ) -> impl Iterator<Item = &AccessRequest> {
        let (min, max) = (RequestId([0; 32]), RequestId([0xff; 32]));
        index_after(&self.requests_by_requester, requester, after, min, max)
            .filter_map(|id| self.requests.get(&id))
    }

    /// A patient's grants, in grantee order.
    pub fn grants_of<'a>(
        &'a self,
        patient: &'a AccountId,
    ) -> impl Iterator<Item = (&'a Grantee, &'a Grant)> + 'a {
        self.grants_of_after(patient, None)
    }

    /// [`Self::grants_of`] from after `after` (a page cursor).
    pub fn grants_of_after<'a>(
        &'a self,
        patient: &'a AccountId,
        after: Option<Grantee>,
    ) -> impl Iterator<Item = (&'a Grantee, &'a Grant)> + 'a {
        let lo = match after {
            Some(g) => Bound::Excluded((*patient, g)),
            None => Bound::Included((*patient, Grantee::Account(AccountId([0; 20])))),
        };
        self.grants
            .range((lo, Bound::Unbounded))
            .take_while(move |((p, _), _)| p == patient)
            .map(|((_, g), grant)| (g, grant))
    }

    /// The state root: the root of the entries' authenticated tree, bound to the chain id.
    /// It is as current as the last [`Self::update_tree`] (block execution calls it).
    pub fn root(&self) -> Hash {
        tree::state_root(&self.chain_id, &self.tree.root())
    }

    /// Brings the tree up to date with the entries under `touched`: O(changes × log n).
    pub fn update_tree(&mut self, touched: &BTreeSet<StateKey>) {
        let changes = touched
            .iter()
            .map(|k| {
                let digest = self.entry(k).map(|v| tree::entry_digest(&v));
                (tree::key_hash(k), digest)
            })
            .collect();
        self.tree.update(changes, self.writing);
    }

    /// Builds the tree from every entry (genesis, and a node loading its stored state).
    pub fn rebuild_tree(&mut self) {
        assert!(
            self.cold.is_none(),
            "a state read from a store keeps its stored tree"
        );
        self.tree = Tree::default();
        self.update_tree(&self.all_keys());
    }

    /// A proof of `key`'s entry (or its absence) against [`Self::root`]: the entry's encoding
    /// and the tree proof.
    pub fn prove(&self, key: &StateKey) -> (Option<Vec<u8>>, tree::StateProof) {
        let value = self.entry(key);
        let proof = self
            .tree
            .prove(key, value.as_deref().map(tree::entry_digest));
        (value, proof)
    }

    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    /// Sum of all balances: constant, because only genesis mints.
    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| a.balance as u128).sum()
    }
}

/// The ids an index holds for `owner`, in order, from after `after` (a page cursor); `min` and
/// `max` are the smallest and largest ids.
fn index_after<'a, I: Ord + Copy>(
    index: &'a PSet<(AccountId, I)>,
    owner: &AccountId,
    after: Option<I>,
    min: I,
    max: I,
) -> impl Iterator<Item = I> + 'a {
    let lo = match after {
        Some(a) => Bound::Excluded((*owner, a)),
        None => Bound::Included((*owner, min)),
    };
    index
        .range((lo, Bound::Included((*owner, max))))
        .map(|(_, id)| *id)
}

/// Synthetic records per synthetic patient.
const SYNTHETIC_PER_PATIENT: u64 = 4;
/// Synthetic records were made over the five years from 2020-01-01 (UTC), in turn, so their
/// ids ([`RecordId::time_ordered`]) sort in the order of `i`, and before any made since.
const SYNTHETIC_FROM_MS: u64 = 1_577_836_800_000;
const SYNTHETIC_SPAN_MS: u64 = 5 * 365 * 86_400_000;

/// Synthetic record `i` of `total`, the same on every node: the bulk prefill of a genesis
/// state (`GenesisState::synthetic_records`) and of the state benchmarks. Shaped like a real
/// one (160 bytes of sealed metadata, a 72-byte wrapped key), four to a synthetic patient
/// (accounts that do not exist, so no key opens them), made in turn over five years.
pub fn synthetic_record(i: u64, total: u64) -> Record {
    let patients = total / SYNTHETIC_PER_PATIENT + 1;
    // Past the end of the span (`i` ≥ `total`: tests adding records), one per millisecond.
    let made_ms = match i.checked_sub(total) {
        None => {
            SYNTHETIC_FROM_MS
                + (u128::from(i) * u128::from(SYNTHETIC_SPAN_MS) / u128::from(total)) as u64
        }
        Some(after) => SYNTHETIC_FROM_MS + SYNTHETIC_SPAN_MS + after,
    };
    use ehrchain_types::{HexBytes, RecordKey, domain::tagged_hash};
    let bytes = |tag: &[u8], n: usize| -> Vec<u8> {
        (0..n.div_ceil(32) as u32)
            .flat_map(|j| {
                tagged_hash(
                    b"ehrchain/synthetic/v1",
                    &[tag, &i.to_be_bytes(), &j.to_be_bytes()],
                )
                .0
            })
            .take(n)
            .collect()
    };
    let patient = tagged_hash(
        b"ehrchain/synthetic-patient/v1",
        &[&(i % patients).to_be_bytes()],
    );
    let patient = AccountId(patient.0[..20].try_into().expect("20 of 32 bytes"));
    Record {
        id: RecordId::time_ordered(made_ms, bytes(b"id", 10).try_into().expect("10 bytes")),
        patient,
        author: patient,
        category: Category::Lab,
        content: Hash(bytes(b"content", 32).try_into().expect("32 bytes")),
        size: 4096 + i % 65_536,
        commitment: Hash(bytes(b"commitment", 32).try_into().expect("32 bytes")),
        meta: HexBytes(bytes(b"meta", 160)),
        key: RecordKey::Category {
            epoch: 0,
            wrapped: HexBytes(bytes(b"key", 72)),
        },
        status: RecordStatus::Active,
        created_ms: made_ms,
        height: 0,
        reviewed_ms: None,
        coding: None,
    }
}
