//! The patient's pages (dashboard, records, consent, requests, vitals, appointments,
//! prescriptions, invoices, wallet, insurance, QR code, access log) and the record page every
//! role shares (`/records/{id}`), with the vitals page a doctor with a grant sees too
//! (`/vitals/{patient}`).
//!
//! Every SDK call runs through [`User::call`]: encryption and decryption happen here, in the
//! portal's process; the node sees signed transactions and ciphertext only.

mod access_log;
mod consent;
mod dashboard;
mod money;
pub(crate) mod records;
pub mod vitals;

pub use vitals::{Reading, VITALS_FILE, VITALS_TITLE};

use crate::{
    Portal,
    web::{PageError, User},
};
use axum::{
    Router,
    routing::{get, post},
};
use ehrchain_client::Session;
use ehrchain_types::{AccountId, Role};
use std::{collections::HashMap, sync::Arc};

pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/patient", get(dashboard::page))
        .route("/patient/records", get(records::list_page))
        .route("/patient/records/upload", post(records::upload))
        .route("/patient/records/{id}/review", post(records::review))
        .route("/records/{id}", get(records::record_page))
        .route("/records/{id}/open", post(records::open))
        .route("/patient/consent", get(consent::consent_page))
        .route("/patient/consent/grant", post(consent::grant))
        .route("/patient/consent/revoke", post(consent::revoke))
        .route("/patient/requests", get(consent::requests_page))
        .route("/patient/requests/{id}/answer", post(consent::answer))
        .route("/patient/vitals", get(vitals::own_page).post(vitals::save))
        .route("/vitals/{patient}", get(vitals::page))
        .route("/patient/appointments", get(money::appointments_page))
        .route("/patient/appointments/book", post(money::book))
        .route("/patient/appointments/cancel", post(money::cancel))
        .route("/patient/prescriptions", get(money::prescriptions_page))
        .route("/patient/prescriptions/send", post(money::send_rx))
        .route("/patient/invoices", get(money::invoices_page))
        .route("/patient/invoices/pay", post(money::pay))
        .route("/patient/wallet", get(money::wallet_page))
        .route("/patient/wallet/transfer", post(money::transfer))
        .route("/patient/insurance", get(money::insurance_page))
        .route("/patient/insurance/claim", post(money::claim))
        .route("/patient/insurance/withdraw", post(money::withdraw))
        .route("/patient/qr", get(dashboard::qr_page))
        .route("/patient/access-log", get(access_log::page))
        .route("/patient/access-log/{event}/proof", get(access_log::proof))
        .route("/patient/access-log/{event}/check", get(access_log::check))
}

/// Refuses the page unless the user is an approved patient.
fn patient(user: &User) -> Result<(), PageError> {
    user.require(&[Role::Patient])
}

/// A time for tables.
pub(crate) fn when(ms: u64) -> String {
    crate::templates::when(&ms)
}

/// How an account is shown: its role and organisation from the ledger with a short id, or
/// the portal's key name for a professional (whose role and organisation the ledger shows
/// anyway) and for yourself. A patient's key name is never shown to, or resolvable by,
/// anyone else: the ledger keeps patients pseudonymous, and a shared portal must not undo it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    local: HashMap<AccountId, String>,
    labels: HashMap<AccountId, String>,
}

impl Names {
    /// The key names of this portal's keystore (no key is unlocked).
    pub(crate) fn local(p: &Portal) -> Names {
        let local = p
            .keystore()
            .list()
            .map(|l| l.into_iter().map(|(n, f)| (f.account, n)).collect())
            .unwrap_or_default();
        Names {
            local,
            labels: HashMap::new(),
        }
    }

    /// Looks up role and organisation of `ids` on the ledger (once each).
    pub(crate) fn resolve(&mut self, s: &Session, ids: impl IntoIterator<Item = AccountId>) {
        for id in ids {
            if self.labels.contains_key(&id) {
                continue;
            }
            let label = match s.account(&id) {
                Ok(a) => self.label(&s.me, &id, &a.account),
                Err(_) => crate::templates::short(&id.to_string()),
            };
            self.labels.insert(id, label);
        }
    }

    /// Labels accounts from views already fetched (an account list), with no request.
    pub(crate) fn resolve_views<'a>(
        &mut self,
        me: &AccountId,
        views: impl IntoIterator<Item = &'a ehrchain_client::api::AccountView>,
    ) {
        for v in views {
            let label = self.label(me, &v.id, &v.account);
            self.labels.insert(v.id, label);
        }
    }

    /// `you`, a professional's key name or a short id, with the role and organisation.
    fn label(
        &self,
        me: &AccountId,
        id: &AccountId,
        a: &ehrchain_types::entries::Account,
    ) -> String {
        let professional = a.role.is_some_and(is_professional);
        let mut parts = Vec::new();
        if let Some(r) = a.role {
            parts.push(r.to_string());
        }
        if let Some(o) = &a.organisation {
            parts.push(o.clone());
        }
        let head = if id == me {
            "you".to_string()
        } else {
            self.local
                .get(id)
                .filter(|_| professional)
                .cloned()
                .unwrap_or_else(|| crate::templates::short(&id.to_string()))
        };
        if parts.is_empty() {
            head
        } else {
            format!("{head} ({})", parts.join(", "))
        }
    }

    pub(crate) fn of(&self, id: &AccountId) -> String {
        self.labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| crate::templates::short(&id.to_string()))
    }

    /// An account id, or the name of a key in this portal's keystore; `true` when it was a
    /// name, which [`named_professional`] must then accept before it is used.
    pub(crate) fn account_of(&self, text: &str) -> Result<(AccountId, bool), PageError> {
        let t = text.trim();
        if let Ok(id) = t.parse::<AccountId>() {
            return Ok((id, false));
        }
        self.local
            .iter()
            .find(|(_, n)| n.as_str() == t)
            .map(|(a, _)| (*a, true))
            .ok_or_else(|| unknown_name(t))
    }

    /// The key names of this portal's professionals, sorted (for a datalist): the local keys
    /// whose accounts `pros` (from the ledger's public account list) shows in such a role.
    pub(crate) fn professional_names(
        &self,
        pros: &[ehrchain_client::api::AccountView],
    ) -> Vec<String> {
        let mut v: Vec<String> = pros
            .iter()
            .filter(|a| a.account.role.is_some_and(is_professional))
            .filter_map(|a| self.local.get(&a.id).cloned())
            .collect();
        v.sort();
        v
    }
}

fn unknown_name(t: &str) -> PageError {
    PageError::BadRequest(format!(
        "{t:?} is neither an account id (ehr…) nor the name of a professional's key on this portal."
    ))
}

/// Accepts an account typed by its key name only if the ledger shows it in a professional
/// role: a patient's key name resolves for nobody (it would tie a name to a pseudonymous id).
pub(crate) async fn named_professional(
    user: &User,
    (id, by_name): (AccountId, bool),
    typed: &str,
) -> Result<AccountId, PageError> {
    if !by_name || id == user.me.account() {
        return Ok(id);
    }
    let role = user.call(move |s| Ok(s.account(&id)?.account.role)).await?;
    if role.is_some_and(is_professional) {
        Ok(id)
    } else {
        Err(unknown_name(typed.trim()))
    }
}

/// The key names of this portal's professionals (doctors, pharmacists, insurer officers,
/// regulators), for the grantee and recipient suggestions.
pub(crate) async fn professional_names(user: &User, names: &Names) -> Vec<String> {
    let pros = user
        .call(|s| {
            let mut all = Vec::new();
            for r in [
                Role::Doctor,
                Role::Pharmacist,
                Role::Insurer,
                Role::Regulator,
            ] {
                all.extend(crate::doctor::accounts(s, Some(r), Some("active"))?);
            }
            Ok(all)
        })
        .await
        .unwrap_or_default();
    names.professional_names(&pros)
}

/// Roles whose holders act for an institution, in the open: their key names may be shown.
pub(crate) fn is_professional(r: Role) -> bool {
    !matches!(r, Role::Patient | Role::Guardian)
}

/// Rows of page `page` (1-based) of `n` items, `per` a page: (start, end, pages).
pub(crate) fn page_bounds(n: usize, page: usize, per: usize) -> (usize, usize, usize) {
    let pages = n.div_ceil(per).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * per;
    (start, (start + per).min(n), pages)
}

/// A `?page=` query.
#[derive(serde::Deserialize, Default)]
pub(crate) struct PageQuery {
    pub page: Option<usize>,
}

/// A duration choice of the forms (`1d`, `7d`, `30d`, `90d`, `365d`, `never`).
pub(crate) fn parse_expiry(s: &str) -> Result<Option<std::time::Duration>, PageError> {
    let s = s.trim();
    if s.is_empty() || s == "never" {
        return Ok(None);
    }
    let days: u64 = s
        .strip_suffix('d')
        .and_then(|d| d.parse().ok())
        .filter(|d| (1..=3650).contains(d))
        .ok_or_else(|| {
            PageError::BadRequest(format!("Choose an expiry from the list, not {s:?}."))
        })?;
    Ok(Some(std::time::Duration::from_secs(days * 86_400)))
}

/// The expiry choices of the forms: (value, label).
pub(crate) const EXPIRIES: [(&str, &str); 6] = [
    ("1d", "1 day"),
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("365d", "1 year"),
    ("never", "No expiry"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_clamped_and_cover_everything() {
        assert_eq!(page_bounds(0, 1, 50), (0, 0, 1));
        assert_eq!(page_bounds(120, 1, 50), (0, 50, 3));
        assert_eq!(page_bounds(120, 3, 50), (100, 120, 3));
        assert_eq!(page_bounds(120, 9, 50), (100, 120, 3));
        assert_eq!(page_bounds(120, 0, 50), (0, 50, 3));
    }

    #[test]
    fn expiry_choices_parse() {
        assert_eq!(parse_expiry("never").unwrap(), None);
        assert_eq!(
            parse_expiry("7d").unwrap(),
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        assert!(parse_expiry("7x").is_err());
        assert!(parse_expiry("0d").is_err());
        for (v, _) in EXPIRIES {
            assert!(parse_expiry(v).is_ok());
        }
    }
}
