//! The contracts: one module per concern, each a set of pure functions over a [`TxScope`].

pub mod appointments;
pub mod billing;
pub mod consent;
pub mod emergency;
pub mod identity;
pub mod prescriptions;
pub mod records;
pub mod token;

use crate::{
    Account, BlockContext, State,
    clinical::{Item, ItemVariant},
    state::{AccessRequest, Grant, Record, StateKey},
};
use ehrchain_types::{
    AccountId, AuditAction, AuditEvent, AuditReason, Category, Decision, Field, Grantee, Hash,
    ItemId, ItemKind, RecordId, Refusal, RequestId, Role, SealedKey, TxPayload,
};
use std::collections::BTreeMap;

/// Buffered writes to one map of the state: `None` removes the entry.
pub struct Overlay<K, V> {
    writes: BTreeMap<K, Option<V>>,
}

impl<K: Ord + Clone, V: Clone> Overlay<K, V> {
    fn new() -> Self {
        Overlay {
            writes: BTreeMap::new(),
        }
    }

    fn get(&self, base: &crate::pmap::PMap<K, V>, k: &K) -> Option<V> {
        match self.writes.get(k) {
            Some(v) => v.clone(),
            None => base.get(k).cloned(),
        }
    }

    fn put(&mut self, k: K, v: V) {
        self.writes.insert(k, Some(v));
    }

    fn remove(&mut self, k: K) {
        self.writes.insert(k, None);
    }
}

/// The view one transaction has of the state: reads fall through to the state, writes are
/// buffered and only reach the state if the whole transaction succeeds.
pub struct TxScope<'a> {
    state: &'a State,
    accounts: Overlay<AccountId, Account>,
    records: Overlay<RecordId, Record>,
    keys: Overlay<(AccountId, Category), Vec<SealedKey>>,
    grants: Overlay<(AccountId, Grantee), Grant>,
    requests: Overlay<RequestId, AccessRequest>,
    items: Overlay<ItemId, Item>,
    events: Vec<AuditEvent>,
    /// The transaction's author.
    pub sender: AccountId,
    /// The transaction's id.
    pub tx: Hash,
    pub ctx: &'a BlockContext,
}

/// What a successful transaction changes.
pub struct Writes {
    accounts: BTreeMap<AccountId, Option<Account>>,
    records: BTreeMap<RecordId, Option<Record>>,
    keys: BTreeMap<(AccountId, Category), Option<Vec<SealedKey>>>,
    grants: BTreeMap<(AccountId, Grantee), Option<Grant>>,
    requests: BTreeMap<RequestId, Option<AccessRequest>>,
    items: BTreeMap<ItemId, Option<Item>>,
    pub events: Vec<AuditEvent>,
}

impl Writes {
    /// Applies the writes to `state`; `touched` receives every changed key. The sender's
    /// account is written by the caller (its nonce moved on while the scope ran).
    pub fn apply(
        self,
        state: &mut State,
        sender: &AccountId,
        touched: &mut std::collections::BTreeSet<StateKey>,
    ) {
        for (id, acct) in self.accounts {
            let mut acct = acct.expect("accounts are never removed");
            if id == *sender {
                let live = &state.accounts[sender];
                acct.nonce = live.nonce;
                acct.public_key = live.public_key;
            }
            touched.insert(StateKey::Account(id));
            state.accounts.insert(id, acct);
        }
        for (id, r) in self.records {
            touched.insert(StateKey::Record(id));
            if let Some(r) = r {
                state.insert_record(r);
            }
        }
        for (k, v) in self.keys {
            touched.insert(StateKey::Keys(k.0, k.1));
            if let Some(v) = v {
                state.keys.insert(k, v);
            }
        }
        for (k, v) in self.grants {
            touched.insert(StateKey::Grant(k.0, k.1.clone()));
            match v {
                Some(v) => {
                    state.grants.insert(k, v);
                }
                None => {
                    state.grants.remove(&k);
                }
            }
        }
        for (id, r) in self.requests {
            touched.insert(StateKey::Request(id));
            if let Some(r) = r {
                state.insert_request(r);
            }
        }
        for (id, i) in self.items {
            touched.insert(StateKey::Item(id));
            if let Some(i) = i {
                state.insert_item(i);
            }
        }
    }
}

impl<'a> TxScope<'a> {
    pub fn new(state: &'a State, sender: AccountId, tx: Hash, ctx: &'a BlockContext) -> Self {
        TxScope {
            state,
            accounts: Overlay::new(),
            records: Overlay::new(),
            keys: Overlay::new(),
            grants: Overlay::new(),
            requests: Overlay::new(),
            items: Overlay::new(),
            events: Vec::new(),
            sender,
            tx,
            ctx,
        }
    }

    /// The state before this transaction (for reads that need no buffered writes).
    pub fn state(&self) -> &State {
        self.state
    }

    /// The account as this transaction currently sees it (default if it does not exist).
    pub fn account(&self, id: &AccountId) -> Account {
        self.accounts
            .get(&self.state.accounts, id)
            .unwrap_or_default()
    }

    pub fn put(&mut self, id: AccountId, account: Account) {
        self.accounts.put(id, account);
    }

    pub fn record(&self, id: &RecordId) -> Option<Record> {
        match self.records.writes.get(id) {
            Some(r) => r.clone(),
            None => self.state.record(id),
        }
    }

    pub fn put_record(&mut self, r: Record) {
        self.records.put(r.id, r);
    }

    /// A patient's sealed category keys (index = epoch).
    pub fn keys(&self, patient: &AccountId, category: Category) -> Vec<SealedKey> {
        self.keys
            .get(&self.state.keys, &(*patient, category))
            .unwrap_or_default()
    }

    pub fn put_keys(&mut self, patient: AccountId, category: Category, keys: Vec<SealedKey>) {
        self.keys.put((patient, category), keys);
    }

    pub fn grant(&self, patient: &AccountId, grantee: &Grantee) -> Option<Grant> {
        self.grants
            .get(&self.state.grants, &(*patient, grantee.clone()))
    }

    pub fn put_grant(&mut self, patient: AccountId, grantee: Grantee, grant: Grant) {
        self.grants.put((patient, grantee), grant);
    }

    pub fn remove_grant(&mut self, patient: AccountId, grantee: Grantee) {
        self.grants.remove((patient, grantee));
    }

    /// A patient's grants as this transaction sees them.
    pub fn grants_of(&self, patient: &AccountId) -> Vec<(Grantee, Grant)> {
        let mut out: BTreeMap<Grantee, Grant> = self
            .state
            .grants_of(patient)
            .map(|(g, grant)| (g.clone(), grant.clone()))
            .collect();
        for ((p, g), v) in &self.grants.writes {
            if p == patient {
                match v {
                    Some(v) => out.insert(g.clone(), v.clone()),
                    None => out.remove(g),
                };
            }
        }
        out.into_iter().collect()
    }

    pub fn request(&self, id: &RequestId) -> Option<AccessRequest> {
        self.requests.get(&self.state.requests, id)
    }

    pub fn put_request(&mut self, r: AccessRequest) {
        self.requests.put(r.id, r);
    }

    /// The item `id` as this transaction sees it, as variant `T`: a clear error if there is
    /// no such item or it is of another kind.
    pub fn item<T: ItemVariant>(&self, id: &ItemId) -> Result<T, Refusal> {
        if id.kind != T::KIND {
            return Err(Refusal::WrongItemKind {
                item: *id,
                expected: T::KIND,
            });
        }
        self.items
            .get(&self.state.items, id)
            .and_then(T::from_item)
            .ok_or(Refusal::NoSuchItem { item: *id })
    }

    pub fn put_item<T: ItemVariant>(&mut self, item: T) {
        let item = item.into_item();
        self.items.put(item.id(), item);
    }

    /// The id of the item of `kind` this transaction creates. Ids derive from the
    /// transaction id, and each contract creates at most one item of each kind, so a new id
    /// never names an existing item.
    pub fn new_item_id(&self, kind: ItemKind) -> ItemId {
        ItemId::derive(kind, &self.tx)
    }

    /// Moves `amount` tokens from `from` to `to` within this transaction. The refusal says
    /// whether the sender or another payer (an insurer) lacks the tokens.
    pub fn move_tokens(
        &mut self,
        from: &AccountId,
        to: &AccountId,
        amount: u64,
    ) -> Result<(), Refusal> {
        let mut src = self.account(from);
        if src.balance < amount {
            return Err(if *from == self.sender {
                Refusal::InsufficientBalance {
                    balance: src.balance,
                    needed: amount,
                }
            } else {
                Refusal::PayerInsufficientBalance {
                    payer: *from,
                    balance: src.balance,
                    needed: amount,
                }
            });
        }
        if from == to || amount == 0 {
            return Ok(());
        }
        let mut dest = self.account(to);
        dest.balance = dest
            .balance
            .checked_add(amount)
            .ok_or(Refusal::BalanceOverflow { account: *to })?;
        src.balance -= amount;
        self.put(*from, src);
        self.put(*to, dest);
        Ok(())
    }

    /// A new audit event by the sender about `patient`, allowed, with nothing else filled
    /// in: the contract sets what applies and hands it to [`Self::audit`].
    pub fn event(&self, patient: AccountId, action: AuditAction) -> AuditEvent {
        AuditEvent {
            tx: self.tx,
            time_ms: self.ctx.timestamp_ms,
            actor: self.sender,
            patient,
            action,
            record: None,
            categories: Vec::new(),
            counterparty: None,
            decision: Decision::Allowed,
            reason: AuditReason::None,
            item: None,
            amount: None,
        }
    }

    /// An audit event about workflow item `item`, naming the other party it concerns.
    pub fn item_event(
        &self,
        patient: AccountId,
        action: AuditAction,
        item: ItemId,
        counterparty: Option<AccountId>,
    ) -> AuditEvent {
        AuditEvent {
            item: Some(item),
            counterparty: counterparty.map(Grantee::Account),
            ..self.event(patient, action)
        }
    }

    /// Records an audit event (a leaf of the block's audit tree if the transaction applies).
    pub fn audit(&mut self, event: AuditEvent) {
        self.events.push(event);
    }

    /// Fails unless the sender is active in `role`.
    pub fn require_active_role(&self, role: Role) -> Result<Account, Refusal> {
        let acct = self.account(&self.sender);
        match (acct.role, acct.status) {
            (Some(r), crate::AccountStatus::Active) if r == role => Ok(acct),
            _ if role == Role::Admin => Err(Refusal::NotAdmin),
            (Some(r), crate::AccountStatus::Pending) if r == role => {
                Err(Refusal::NotApproved { role })
            }
            _ => Err(Refusal::RoleRequired { role }),
        }
    }

    /// Fails unless the sender is registered and active in any role.
    pub fn require_active(&self) -> Result<Account, Refusal> {
        let acct = self.account(&self.sender);
        match (acct.role, acct.status) {
            (Some(_), crate::AccountStatus::Active) => Ok(acct),
            (Some(role), crate::AccountStatus::Pending) => Err(Refusal::NotApproved { role }),
            _ => Err(Refusal::NotRegistered {
                account: self.sender,
            }),
        }
    }

    /// Fails when an amount or price exceeds every token there is (it could never be paid,
    /// and sums of such amounts are where overflows hide).
    pub fn within_supply(&self, field: Field, amount: u64) -> Result<(), Refusal> {
        let supply = self.state.supply;
        if u128::from(amount) > supply {
            return Err(Refusal::AboveSupply {
                field,
                amount,
                supply: u64::try_from(supply).expect("below a u64 amount"),
            });
        }
        Ok(())
    }

    /// Fails unless the sender has registered a role (approved or not): enough to manage
    /// one's own keys and profile.
    pub fn require_registered(&self) -> Result<Account, Refusal> {
        let acct = self.account(&self.sender);
        match acct.role {
            Some(_) => Ok(acct),
            None => Err(Refusal::NotRegistered {
                account: self.sender,
            }),
        }
    }

    /// The buffered writes, to be applied to the state.
    pub fn into_writes(self) -> Writes {
        Writes {
            accounts: self.accounts.writes,
            records: self.records.writes,
            keys: self.keys.writes,
            grants: self.grants.writes,
            requests: self.requests.writes,
            items: self.items.writes,
            events: self.events,
        }
    }
}

/// Applies one payload in a scope. On `Err` the caller drops the scope, so nothing applies;
/// the refusal goes into the transaction's receipt.
pub fn dispatch(scope: &mut TxScope<'_>, payload: &TxPayload) -> Result<(), Refusal> {
    match payload {
        TxPayload::Register {
            role,
            organisation,
            licence,
        } => identity::register(scope, *role, organisation.as_deref(), licence.as_deref()),
        TxPayload::Approve { account } => identity::approve(scope, account),
        TxPayload::Transfer { to, amount } => token::transfer(scope, to, *amount),
        TxPayload::Enrol {
            role,
            organisation,
            licence,
            encryption_key,
        } => identity::enrol(
            scope,
            *role,
            organisation.as_deref(),
            licence.as_deref(),
            *encryption_key,
        ),
        TxPayload::RotateKey { rotation } => consent::rotate(scope, rotation),
        TxPayload::AddRecord(draft) => records::add(scope, draft),
        TxPayload::ReviewRecord {
            record,
            approve,
            key,
        } => records::review(scope, record, *approve, key.as_ref()),
        TxPayload::Grant {
            to,
            categories,
            expires_ms,
            write,
            wraps,
        } => consent::grant(scope, to, categories, *expires_ms, *write, wraps),
        TxPayload::Revoke {
            from,
            categories,
            rotations,
        } => consent::revoke(scope, from, categories, rotations),
        TxPayload::RequestAccess {
            patient,
            categories,
            write,
            reason,
        } => consent::request(scope, patient, categories, *write, reason),
        TxPayload::AnswerRequest {
            request,
            approve,
            expires_ms,
            wraps,
        } => consent::answer(scope, request, *approve, *expires_ms, wraps),
        TxPayload::ReadRecord { record } => records::read(scope, record),
        TxPayload::AddSlot {
            start_ms,
            minutes,
            fee,
        } => appointments::add_slot(scope, *start_ms, *minutes, *fee),
        TxPayload::Book { slot } => appointments::book(scope, slot),
        TxPayload::AnswerBooking { slot, confirm } => appointments::answer(scope, slot, *confirm),
        TxPayload::CancelBooking { slot } => appointments::cancel(scope, slot),
        TxPayload::CompleteAppointment { slot } => appointments::complete(scope, slot),
        TxPayload::ReportSymptoms { doctor, record } => {
            prescriptions::report_symptoms(scope, doctor, record)
        }
        TxPayload::Prescribe {
            record,
            pharmacy,
            pharmacy_key,
        } => prescriptions::prescribe(scope, record, pharmacy.as_ref(), pharmacy_key.as_ref()),
        TxPayload::DirectPrescription {
            rx,
            pharmacy,
            pharmacy_key,
        } => prescriptions::direct(scope, rx, pharmacy, pharmacy_key),
        TxPayload::Dispense { rx, price } => prescriptions::dispense(scope, rx, *price),
        TxPayload::PayInvoice { invoice } => billing::pay(scope, invoice),
        TxPayload::SetPolicy {
            patient,
            coverage_bp,
            approvers,
            expires_ms,
        } => billing::set_policy(scope, patient, *coverage_bp, approvers, *expires_ms),
        TxPayload::SubmitClaim { invoice, policy } => billing::submit_claim(scope, invoice, policy),
        TxPayload::WithdrawClaim { claim } => billing::withdraw_claim(scope, claim),
        TxPayload::DecideClaim {
            claim,
            approve,
            reason,
        } => billing::decide_claim(scope, claim, *approve, reason),
        TxPayload::SetGuardians {
            guardians,
            threshold,
            categories,
            max_duration_ms,
            commitments,
            emergency_key,
            wraps,
        } => emergency::set_guardians(
            scope,
            guardians,
            *threshold,
            categories,
            *max_duration_ms,
            commitments,
            *emergency_key,
            wraps,
        ),
        TxPayload::RequestEmergency {
            patient,
            reason,
            notes,
            duration_ms,
        } => emergency::request(scope, patient, *reason, notes, *duration_ms),
        TxPayload::AnswerEmergency {
            request,
            approve,
            share,
            digest,
        } => emergency::answer(scope, request, *approve, share.as_ref(), digest.as_ref()),
        TxPayload::ReportBadShare {
            request,
            guardian,
            revealed,
        } => emergency::report_bad_share(scope, request, guardian, &revealed.0),
        TxPayload::ReviewEmergency { request, review } => {
            emergency::review(scope, request, *review)
        }
    }
}
