//! The contracts: one module per concern, each a set of pure functions over a [`TxScope`].

pub mod identity;
pub mod token;

use crate::{Account, BlockContext, State, TxError};
use ehrchain_types::{AccountId, Role, TxPayload};
use std::collections::BTreeMap;

/// The view one transaction has of the state: reads fall through to the state, writes are
/// buffered and only reach the state if the whole transaction succeeds.
pub struct TxScope<'a> {
    state: &'a State,
    writes: BTreeMap<AccountId, Account>,
    /// The transaction's author.
    pub sender: AccountId,
    pub ctx: &'a BlockContext,
}

impl<'a> TxScope<'a> {
    pub fn new(state: &'a State, sender: AccountId, ctx: &'a BlockContext) -> Self {
        TxScope {
            state,
            writes: BTreeMap::new(),
            sender,
            ctx,
        }
    }

    /// The account as this transaction currently sees it (default if it does not exist).
    pub fn account(&self, id: &AccountId) -> Account {
        self.writes
            .get(id)
            .or_else(|| self.state.accounts.get(id))
            .cloned()
            .unwrap_or_default()
    }

    pub fn put(&mut self, id: AccountId, account: Account) {
        self.writes.insert(id, account);
    }

    /// Fails unless the sender is active in `role`.
    pub fn require_active_role(&self, role: Role) -> Result<Account, TxError> {
        let acct = self.account(&self.sender);
        match (acct.role, acct.status) {
            (Some(r), crate::AccountStatus::Active) if r == role => Ok(acct),
            _ if role == Role::Admin => Err(TxError::NotAdmin),
            (Some(r), crate::AccountStatus::Pending) if r == role => {
                Err(TxError::NotApproved(role))
            }
            _ => Err(TxError::RoleRequired(role)),
        }
    }

    /// The buffered writes, to be applied to the state.
    pub fn into_writes(self) -> BTreeMap<AccountId, Account> {
        self.writes
    }
}

/// Applies one payload in a scope. On `Err` the caller drops the scope, so nothing applies.
pub fn dispatch(scope: &mut TxScope<'_>, payload: &TxPayload) -> Result<(), TxError> {
    match payload {
        TxPayload::Register {
            role,
            organisation,
            licence,
        } => identity::register(scope, *role, organisation.as_deref(), licence.as_deref()),
        TxPayload::Approve { account } => identity::approve(scope, account),
        TxPayload::Transfer { to, amount } => token::transfer(scope, to, *amount),
    }
}
