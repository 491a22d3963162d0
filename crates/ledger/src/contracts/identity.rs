//! Identity: registration in a role and approval of professional roles by the admin.

use super::TxScope;
use crate::AccountStatus;
use ehrchain_types::{
    AccountId, EncryptionKey, Field, Refusal, Role,
    tx::{MAX_LICENCE_LEN, MAX_ORGANISATION_LEN},
};

fn bounded(field: Field, value: Option<&str>, max: usize) -> Result<Option<String>, Refusal> {
    match value.map(str::trim) {
        None => Ok(None),
        Some("") => Err(Refusal::FieldEmpty { field }),
        Some(v) if v.len() > max => Err(Refusal::FieldTooLong {
            field,
            len: v.len() as u64,
            max: max as u64,
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
) -> Result<(), Refusal> {
    if role == Role::Admin {
        return Err(Refusal::RoleNotRegistrable { role });
    }
    let mut acct = scope.account(&scope.sender);
    if let Some(existing) = acct.role {
        return Err(Refusal::AlreadyRegistered { role: existing });
    }
    let organisation = bounded(Field::Organisation, organisation, MAX_ORGANISATION_LEN)?;
    let licence = bounded(Field::Licence, licence, MAX_LICENCE_LEN)?;
    if role.needs_organisation() && organisation.is_none() {
        return Err(Refusal::OrganisationRequired { role });
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
pub fn approve(scope: &mut TxScope<'_>, account: &AccountId) -> Result<(), Refusal> {
    scope.require_active_role(Role::Admin)?;
    let mut acct = scope.account(account);
    if acct.role.is_none() {
        return Err(Refusal::NotRegistered { account: *account });
    }
    // A registered account is pending or active.
    if acct.status != AccountStatus::Pending {
        return Err(Refusal::NotPending { account: *account });
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
) -> Result<(), Refusal> {
    register(scope, role, organisation, licence)?;
    let mut acct = scope.account(&scope.sender);
    acct.encryption_key = Some(key);
    scope.put(scope.sender, acct);
    Ok(())
}
