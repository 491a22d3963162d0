//! Identity: registration in a role and approval of professional roles by the admin.

use super::TxScope;
use crate::{AccountStatus, TxError};
use ehrchain_types::{
    AccountId, EncryptionKey, Role,
    tx::{MAX_LICENCE_LEN, MAX_ORGANISATION_LEN},
};

fn bounded(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, TxError> {
    match value.map(str::trim) {
        None => Ok(None),
        Some("") => Err(TxError::FieldEmpty { field }),
        Some(v) if v.len() > max => Err(TxError::FieldTooLong {
            field,
            len: v.len(),
            max,
        }),
        Some(v) => Ok(Some(v.to_string())),
    }
}

/// Registers the sender in `role`. Professional roles start pending; patients and guardians
/// are active at once.
pub fn register(
    scope: &mut TxScope<'_>,
    role: Role,
    organisation: Option<&str>,
    licence: Option<&str>,
) -> Result<(), TxError> {
    if role == Role::Admin {
        return Err(TxError::RoleNotRegistrable(role));
    }
    let mut acct = scope.account(&scope.sender);
    if let Some(existing) = acct.role {
        return Err(TxError::AlreadyRegistered(existing));
    }
    let organisation = bounded("organisation", organisation, MAX_ORGANISATION_LEN)?;
    let licence = bounded("licence", licence, MAX_LICENCE_LEN)?;
    if role.needs_organisation() && organisation.is_none() {
        return Err(TxError::OrganisationRequired(role));
    }
    acct.role = Some(role);
    acct.organisation = organisation;
    acct.licence = licence;
    acct.status = if role.needs_approval() {
        AccountStatus::Pending
    } else {
        AccountStatus::Active
    };
    scope.put(scope.sender, acct);
    Ok(())
}

/// The consortium admin approves a pending account.
pub fn approve(scope: &mut TxScope<'_>, account: &AccountId) -> Result<(), TxError> {
    scope.require_active_role(Role::Admin)?;
    let mut acct = scope.account(account);
    if acct.role.is_none() {
        return Err(TxError::NotRegistered(*account));
    }
    if acct.status != AccountStatus::Pending {
        return Err(TxError::NotPending {
            account: *account,
            status: acct.status.name(),
        });
    }
    acct.status = AccountStatus::Active;
    acct.approved_by = Some(scope.sender);
    acct.approved_at = Some(scope.ctx.height);
    scope.put(*account, acct);
    Ok(())
}

/// Registers the sender in `role` and publishes its encryption key.
pub fn enrol(
    scope: &mut TxScope<'_>,
    role: Role,
    organisation: Option<&str>,
    licence: Option<&str>,
    key: EncryptionKey,
) -> Result<(), TxError> {
    register(scope, role, organisation, licence)?;
    let mut acct = scope.account(&scope.sender);
    acct.encryption_key = Some(key);
    scope.put(scope.sender, acct);
    Ok(())
}
