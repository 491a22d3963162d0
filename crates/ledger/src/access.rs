//! Who may read and write a patient's records: the one policy the contracts and the node's
//! read endpoints share, so what is served and what is audited can never disagree.
//!
//! | grantee role | categories it may be granted | write |
//! |---|---|---|
//! | doctor, organisation | any | yes |
//! | pharmacist | medication only | no |
//! | insurer | insurance only | no |
//! | regulator, researcher, guardian, patient | any | no |
//! | auditor | none (it reads ledger bodies through the API, never records) | no |

use crate::{
    Account, AccountStatus, State,
    state::{Grant, Record, RecordStatus},
};
use ehrchain_types::{AccountId, AuditReason, Category, Grantee, Refusal, Role};

/// Whether a role may be granted `category`, and write access.
pub fn role_allows(role: Role, category: Category, write: bool) -> Result<(), Refusal> {
    let may_hold = match role {
        Role::Pharmacist => category == Category::Medication,
        Role::Insurer => category == Category::Insurance,
        // Auditors read the ledger's bodies through the API, never health records.
        Role::Auditor => false,
        _ => true,
    };
    if !may_hold {
        return Err(Refusal::RoleMayNotHold { role, category });
    }
    if write && !matches!(role, Role::Doctor | Role::Organisation) {
        return Err(Refusal::RoleMayNotWrite { role });
    }
    Ok(())
}

/// The grant through which `requester` may use `category` of `patient`'s records at `now_ms`:
/// one to the account itself, else one to its organisation.
pub fn effective_grant<'a>(
    state: &'a State,
    patient: &AccountId,
    requester: &AccountId,
    requester_account: &Account,
    category: Category,
    now_ms: u64,
) -> Option<(Grantee, &'a Grant)> {
    let direct = Grantee::Account(*requester);
    if let Some(g) = state.grants.get(&(*patient, direct.clone()))
        && g.covers(category, now_ms)
    {
        return Some((direct, g));
    }
    if !is_member(requester_account) {
        return None;
    }
    let org = Grantee::Organisation(requester_account.organisation.clone()?);
    match state.grants.get(&(*patient, org.clone())) {
        Some(g) if g.covers(category, now_ms) => Some((org, g)),
        _ => None,
    }
}

fn active(state: &State, id: &AccountId) -> Result<Account, Refusal> {
    match state.accounts.get(id) {
        Some(a) if a.role.is_some() && a.status == AccountStatus::Active => Ok(a.clone()),
        Some(Account {
            role: Some(role),
            status: AccountStatus::Pending,
            ..
        }) => Err(Refusal::NotApproved { role: *role }),
        _ => Err(Refusal::NotRegistered { account: *id }),
    }
}

/// Whether `requester` may read `record` at `now_ms`: `Ok(why)` (one of the read codes of
/// [`AuditReason`]) or `Err(the rule that denies it)`.
pub fn read_decision(
    state: &State,
    requester: &AccountId,
    record: &Record,
    now_ms: u64,
) -> Result<AuditReason, Refusal> {
    if *requester == record.patient {
        return Ok(AuditReason::OwnRecord);
    }
    if *requester == record.author {
        return Ok(AuditReason::Author);
    }
    if let Some(crate::clinical::Item::Prescription(rx)) = state
        .rx_by_record
        .get(&record.id)
        .and_then(|id| state.items.get(id))
        && rx.pharmacy == Some(*requester)
        && record.status != RecordStatus::Rejected
    {
        return Ok(AuditReason::DirectedPharmacy { rx: rx.id });
    }
    match record.status {
        RecordStatus::Pending => return Err(Refusal::RecordPending { record: record.id }),
        RecordStatus::Rejected => return Err(Refusal::RecordRejected { record: record.id }),
        RecordStatus::Active => {}
    }
    let acct = active(state, requester)?;
    if let Some((grantee, g)) = effective_grant(
        state,
        &record.patient,
        requester,
        &acct,
        record.category,
        now_ms,
    ) {
        let role = acct.role.expect("active accounts have a role");
        role_allows(role, record.category, false)?;
        return Ok(match grantee {
            Grantee::Account(_) => AuditReason::Grant {
                expires_ms: g.expires_ms,
            },
            Grantee::Organisation(organisation) => AuditReason::OrganisationGrant { organisation },
        });
    }
    if let Some(r) = crate::contracts::emergency::release_for(
        state,
        &record.patient,
        requester,
        record.category,
        now_ms,
    ) {
        return Ok(AuditReason::Emergency {
            request: r.id,
            expires_ms: r.expires_ms,
        });
    }
    let expired = [
        Some(Grantee::Account(*requester)),
        acct.organisation.clone().map(Grantee::Organisation),
    ]
    .into_iter()
    .flatten()
    .filter_map(|g| state.grants.get(&(record.patient, g)))
    .filter(|g| g.categories.contains(&record.category) && g.expired(now_ms))
    .filter_map(|g| g.expires_ms)
    .max();
    Err(match expired {
        Some(expired_ms) => Refusal::GrantExpired {
            category: record.category,
            expired_ms,
        },
        None => Refusal::NoConsent {
            category: record.category,
        },
    })
}

/// Whether `author` may write a `category` record for `patient` at `now_ms`.
pub fn write_decision(
    state: &State,
    author: &AccountId,
    patient: &AccountId,
    category: Category,
    now_ms: u64,
) -> Result<(), Refusal> {
    let acct = active(state, author)?;
    let role = acct.role.expect("active accounts have a role");
    role_allows(role, category, true)?;
    match effective_grant(state, patient, author, &acct, category, now_ms) {
        Some((_, g)) if g.write => Ok(()),
        Some(_) => Err(Refusal::ReadOnlyGrant { category }),
        None => Err(Refusal::NoWriteConsent { category }),
    }
}

/// Whether an account counts as a member of the organisation it names: only professionals
/// the consortium admin approved do (anyone may *name* an organisation when registering as a
/// patient, so that alone proves nothing).
pub fn is_member(a: &Account) -> bool {
    a.status == AccountStatus::Active
        && a.role.is_some_and(|r| r.needs_approval())
        && a.organisation.is_some()
}

/// The accounts that receive key wraps of `category` for a grantee: the account, or every
/// approved member of the organisation with an encryption key whose role may hold the
/// category.
pub fn recipients(state: &State, grantee: &Grantee, category: Category) -> Vec<AccountId> {
    match grantee {
        Grantee::Account(a) => vec![*a],
        Grantee::Organisation(o) => members(state, o)
            .filter(|(_, a)| {
                a.role
                    .is_some_and(|r| role_allows(r, category, false).is_ok())
            })
            .map(|(id, _)| *id)
            .collect(),
    }
}

/// The approved members of organisation `org` that have an encryption key.
pub fn members<'a>(
    state: &'a State,
    org: &'a str,
) -> impl Iterator<Item = (&'a AccountId, &'a Account)> + 'a {
    state.accounts.iter().filter(move |(_, a)| {
        is_member(a) && a.organisation.as_deref() == Some(org) && a.encryption_key.is_some()
    })
}
