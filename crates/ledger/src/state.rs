//! The ledger state: accounts with role, approval, balance and nonce.
//!
//! The values stored under each key (accounts, records, grants, requests) are public types of
//! `ehrchain_types::entries`, re-exported here.

use crate::clinical::Item;
use borsh::{BorshDeserialize, BorshSerialize};
use ehrchain_types::{
    AccountId, Category, Grantee, Hash, ItemId, ItemKind, RecordId, RequestId, SealedKey, domain,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Bound,
};

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

/// The whole ledger state. Ordered maps only, so the encoding (and root) is canonical.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct State {
    pub chain_id: String,
    pub accounts: BTreeMap<AccountId, Account>,
    pub records: BTreeMap<RecordId, Record>,
    /// Each patient's category keys, sealed to the patient; the index is the epoch.
    pub keys: BTreeMap<(AccountId, Category), Vec<SealedKey>>,
    pub grants: BTreeMap<(AccountId, Grantee), Grant>,
    pub requests: BTreeMap<RequestId, AccessRequest>,
    /// The clinical workflow: slots, reports, prescriptions, invoices, policies, claims.
    pub items: BTreeMap<ItemId, Item>,
    /// Index of records by patient (derived from `records`; not part of the root).
    #[borsh(skip)]
    pub by_patient: BTreeSet<(AccountId, RecordId)>,
    /// Index of records by ciphertext hash (derived; not part of the root).
    #[borsh(skip)]
    pub by_content: BTreeMap<Hash, RecordId>,
    /// Index of requests by patient (derived; not part of the root).
    #[borsh(skip)]
    pub requests_by_patient: BTreeSet<(AccountId, RequestId)>,
    /// Index of requests by requester (derived; not part of the root).
    #[borsh(skip)]
    pub requests_by_requester: BTreeSet<(AccountId, RequestId)>,
    /// Index of items by every account that ever took part (derived; filtered on read).
    #[borsh(skip)]
    pub items_by_party: BTreeSet<(AccountId, ItemId)>,
    /// Index of prescriptions by their record (derived).
    #[borsh(skip)]
    pub rx_by_record: BTreeMap<RecordId, ItemId>,
    /// The sum of all balances (derived). Only genesis mints, so it is the genesis total
    /// and bounds every amount and price a transaction may name.
    #[borsh(skip)]
    pub supply: u128,
}

impl State {
    /// Builds the genesis state. Genesis accounts with a role are active at once.
    pub fn genesis(g: &GenesisState) -> State {
        let mut accounts = BTreeMap::new();
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
        State {
            supply: accounts.values().map(|a| u128::from(a.balance)).sum(),
            accounts,
            ..State::empty(&g.chain_id)
        }
    }

    /// A state with no entries.
    pub fn empty(chain_id: &str) -> State {
        State {
            chain_id: chain_id.to_string(),
            accounts: BTreeMap::new(),
            records: BTreeMap::new(),
            keys: BTreeMap::new(),
            grants: BTreeMap::new(),
            requests: BTreeMap::new(),
            items: BTreeMap::new(),
            by_patient: BTreeSet::new(),
            by_content: BTreeMap::new(),
            requests_by_patient: BTreeSet::new(),
            requests_by_requester: BTreeSet::new(),
            items_by_party: BTreeSet::new(),
            rx_by_record: BTreeMap::new(),
            supply: 0,
        }
    }

    /// Every entry's key (the genesis write set).
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
            StateKey::Record(r) => self.records.get(r).map(encode),
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
        self.records.insert(record.id, record);
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

    /// A patient's records, in id order.
    pub fn records_of(&self, patient: &AccountId) -> impl Iterator<Item = &Record> {
        self.records_of_after(patient, None)
    }

    /// [`Self::records_of`] from after `after` (a page cursor).
    pub fn records_of_after(
        &self,
        patient: &AccountId,
        after: Option<RecordId>,
    ) -> impl Iterator<Item = &Record> {
        index_after(
            &self.by_patient,
            patient,
            after,
            RecordId([0; 16]),
            RecordId([0xff; 16]),
        )
        .filter_map(|id| self.records.get(&id))
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

    /// The state root: a tagged SHA-256 over the canonical encoding of the whole state.
    ///
    /// This is O(state) per block, which is fine at consortium scale (it hashes ~1 MB for
    /// 10,000 accounts); a Merkleised state with proofs can replace it behind this function.
    pub fn root(&self) -> Hash {
        domain::tagged_hash(domain::STATE_ROOT, &[&ehrchain_types::encode(self)])
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
    index: &'a BTreeSet<(AccountId, I)>,
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
