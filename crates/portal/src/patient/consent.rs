//! Consent: current grants, granting and revoking; the inbox of access requests.

use super::{EXPIRIES, Names, parse_expiry, patient, when};
use crate::{
    Portal,
    web::{Ctx, PageError, User, render},
};
use askama::Template;
use axum::{
    Form,
    extract::{Path, State},
    response::Response,
};
use ehrchain_client::consent;
use ehrchain_types::{Category, Grantee, RequestId, entries::RequestStatus};
use std::sync::Arc;

struct GrantRow {
    grantee: String,
    grantee_label: String,
    categories: Vec<&'static str>,
    access: &'static str,
    expiry: String,
    expired: bool,
    granted: String,
}

#[derive(Template)]
#[template(path = "patient/consent.html")]
struct ConsentTpl {
    ctx: Ctx,
    grants: Vec<GrantRow>,
    categories: &'static [&'static str],
    expiries: &'static [(&'static str, &'static str)],
    local_names: Vec<String>,
}

pub(super) async fn consent_page(
    State(p): State<Arc<Portal>>,
    user: User,
) -> Result<Response, PageError> {
    patient(&user)?;
    let names = Names::local(&p);
    let (grants, names) = user
        .call(move |s| {
            let g = consent::grants(s)?;
            let mut names = names;
            names.resolve(
                s,
                g.iter().filter_map(|g| match &g.grantee {
                    Grantee::Account(a) => Some(*a),
                    Grantee::Organisation(_) => None,
                }),
            );
            Ok((g, names))
        })
        .await?;
    let mut rows: Vec<GrantRow> = grants
        .iter()
        .map(|g| GrantRow {
            grantee: g.grantee.to_string(),
            grantee_label: match &g.grantee {
                Grantee::Account(a) => names.of(a),
                Grantee::Organisation(o) => format!("every approved member of {o}"),
            },
            categories: g.grant.categories.iter().map(|c| c.name()).collect(),
            access: if g.grant.write {
                "read and write"
            } else {
                "read"
            },
            expiry: match g.grant.expires_ms {
                Some(e) => when(e),
                None => "no expiry".into(),
            },
            expired: g.expired,
            granted: when(g.grant.granted_ms),
        })
        .collect();
    rows.sort_by_key(|r| r.expired);
    let local_names = super::professional_names(&user, &names).await;
    Ok(render(ConsentTpl {
        ctx: user.ctx(),
        grants: rows,
        categories: &Category::NAMES,
        expiries: &EXPIRIES,
        local_names,
    }))
}

/// The categories of a form (repeated `categories` fields, or one comma-separated value).
pub(crate) fn form_categories(form: &[(String, String)]) -> Result<Vec<Category>, PageError> {
    let mut out = Vec::new();
    for (k, v) in form {
        if k == "categories" {
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                out.push(
                    part.parse::<Category>()
                        .map_err(|e| PageError::BadRequest(capital(&e.to_string())))?,
                );
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A grantee as typed: `org:NAME`, an account id, or the name of a key on this portal (then
/// `true`: the caller checks it with `named_professional`).
pub(crate) fn parse_grantee(names: &Names, s: &str) -> Result<(Grantee, bool), PageError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(PageError::BadRequest("Name the grantee.".into()));
    }
    match s.strip_prefix("org:") {
        Some(o) if !o.trim().is_empty() => Ok((Grantee::Organisation(o.trim().into()), false)),
        Some(_) => Err(PageError::BadRequest(
            "org: needs an organisation name, e.g. org:StMarys".into(),
        )),
        None => {
            let (id, by_name) = names.account_of(s)?;
            Ok((Grantee::Account(id), by_name))
        }
    }
}

pub(super) async fn grant(
    State(p): State<Arc<Portal>>,
    user: User,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let r = async {
        patient(&user)?;
        let names = Names::local(&p);
        let typed = field(&form, "grantee").unwrap_or("");
        let to = match parse_grantee(&names, typed)? {
            (Grantee::Account(id), by_name) => {
                Grantee::Account(super::named_professional(&user, (id, by_name), typed).await?)
            }
            (g, _) => g,
        };
        let cats = form_categories(&form)?;
        if cats.is_empty() {
            return Err(PageError::BadRequest(
                "Choose at least one category.".into(),
            ));
        }
        let expires = parse_expiry(field(&form, "expires").unwrap_or("30d"))?;
        let write = field(&form, "write").is_some_and(|v| v == "on" || v == "true" || v == "1");
        if let Grantee::Account(a) = &to
            && *a == user.me.account()
        {
            return Err(PageError::BadRequest(
                "You hold your own keys already; grant access to someone else.".into(),
            ));
        }
        let (to2, cats2) = (to.clone(), cats.clone());
        user.call(move |s| consent::grant(s, &to2, &cats2, expires, write))
            .await?;
        Ok(format!(
            "Granted {} {} access to {}{}.",
            field(&form, "grantee").unwrap_or("").trim(),
            if write { "read and write" } else { "read" },
            crate::templates::category_list(&cats),
            match expires {
                Some(d) => match d.as_secs() / 86_400 {
                    1 => " for 1 day".to_string(),
                    n => format!(" for {n} days"),
                },
                None => String::new(),
            }
        ))
    }
    .await;
    user.done(r, |m| m, "/patient/consent")
}

pub(super) async fn revoke(user: User, Form(form): Form<Vec<(String, String)>>) -> Response {
    let r = async {
        patient(&user)?;
        let from: Grantee = field(&form, "grantee")
            .unwrap_or("")
            .parse()
            .map_err(|_| PageError::BadRequest("That grantee is not valid.".into()))?;
        let cats = form_categories(&form)?;
        let (f2, c2) = (from.clone(), cats.clone());
        user.call(move |s| consent::revoke(s, &f2, &c2)).await?;
        Ok(if cats.is_empty() {
            format!(
                "Revoked every category from {from}; the revoked categories have new keys it never receives."
            )
        } else {
            format!(
                "Revoked {} from {from}; those categories have new keys it never receives.",
                crate::templates::category_list(&cats)
            )
        })
    }
    .await;
    user.done(r, |m| m, "/patient/consent")
}

struct RequestRow {
    id: String,
    requester: String,
    categories: String,
    write: bool,
    reason: String,
    status: &'static str,
    created: String,
    answered: Option<String>,
}

#[derive(Template)]
#[template(path = "patient/requests.html")]
struct RequestsTpl {
    ctx: Ctx,
    open: Vec<RequestRow>,
    answered: Vec<RequestRow>,
    expiries: &'static [(&'static str, &'static str)],
}

pub(super) async fn requests_page(
    State(p): State<Arc<Portal>>,
    user: User,
) -> Result<Response, PageError> {
    patient(&user)?;
    let names = Names::local(&p);
    let (inbox, names) = user
        .call(move |s| {
            let inbox: Vec<consent::Inbox> = consent::requests(s)?
                .into_iter()
                .filter(|r| r.request.patient == s.me)
                .collect();
            let mut names = names;
            names.resolve(s, inbox.iter().map(|r| r.request.requester));
            Ok((inbox, names))
        })
        .await?;
    let mut open = Vec::new();
    let mut answered = Vec::new();
    let mut inbox = inbox;
    inbox.sort_by_key(|r| std::cmp::Reverse(r.request.created_ms));
    for r in inbox {
        let row = RequestRow {
            id: r.request.id.to_string(),
            requester: names.of(&r.request.requester),
            categories: crate::templates::category_list(&r.request.categories),
            write: r.request.write,
            reason: r
                .reason_text
                .clone()
                .unwrap_or_else(|| "(the reason could not be decrypted)".into()),
            status: match r.request.status {
                RequestStatus::Open => "open",
                RequestStatus::Approved => "approved",
                RequestStatus::Denied => "denied",
            },
            created: when(r.request.created_ms),
            answered: r.request.answered_ms.map(when),
        };
        if r.request.status == RequestStatus::Open {
            open.push(row);
        } else {
            answered.push(row);
        }
    }
    Ok(render(RequestsTpl {
        ctx: user.ctx(),
        open,
        answered,
        expiries: &EXPIRIES,
    }))
}

pub(super) async fn answer(
    user: User,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let r = async {
        patient(&user)?;
        let id: RequestId = id
            .parse()
            .map_err(|_| PageError::BadRequest("That is not a request id.".into()))?;
        let approve = match field(&form, "decision") {
            Some("approve") => true,
            Some("deny") => false,
            _ => return Err(PageError::BadRequest("Approve or deny.".into())),
        };
        let expires = if approve {
            parse_expiry(field(&form, "expires").unwrap_or("30d"))?
        } else {
            None
        };
        user.call(move |s| consent::answer(s, &id, approve, expires))
            .await?;
        Ok(if approve {
            "Approved: the requester now holds the keys of the categories asked for.".to_string()
        } else {
            "Denied: nothing was shared.".to_string()
        })
    }
    .await;
    user.done(r, |m| m, "/patient/requests")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn categories_come_from_repeated_fields_or_a_list() {
        let cats = form_categories(&f(&[
            ("csrf", "x"),
            ("categories", "lab"),
            ("categories", "vitals,lab"),
        ]))
        .unwrap();
        assert_eq!(cats, vec![Category::Vitals, Category::Lab]);
        assert!(form_categories(&f(&[("categories", "bogus")])).is_err());
        assert!(form_categories(&f(&[])).unwrap().is_empty());
    }

    #[test]
    fn grantees_parse_as_org_account_or_key_name() {
        let names = Names::default();
        assert_eq!(
            parse_grantee(&names, "org:StMarys").unwrap(),
            (Grantee::Organisation("StMarys".into()), false)
        );
        assert!(parse_grantee(&names, "org:").is_err());
        assert!(parse_grantee(&names, "").is_err());
        assert!(parse_grantee(&names, "nobody-here").is_err());
        let id = ehrchain_types::AccountId([7; 20]);
        assert_eq!(
            parse_grantee(&names, &id.to_string()).unwrap(),
            (Grantee::Account(id), false)
        );
    }
}
