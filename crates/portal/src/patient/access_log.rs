//! The access log: the patient's audit trail, a proof download for each event, and the
//! result of checking a proof offline against the chain's genesis file (the trust anchor the
//! portal was started with, never the node's word).

use super::{Names, PageQuery, page_bounds, patient, records::download, when};
use crate::{
    Portal,
    web::{Ctx, PageError, User, render},
};
use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::Response,
};
use ehrchain_client::{
    api::{AuditProof, EventView, GenesisFile},
    audit,
};
use ehrchain_types::{Decision, EventId};
use std::sync::Arc;

/// Events a page of the log shows.
pub const PER_PAGE: usize = 50;

use ehrchain_consensus::certificate::EngineFinality;

/// An action as words: `record_added` → `record added`.
pub(crate) fn action_words(e: &EventView) -> String {
    serde_json::to_value(e.event.action)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_else(|| format!("{:?}", e.event.action))
}

struct EventRow {
    id: String,
    when: String,
    who: String,
    action: String,
    record: Option<String>,
    item: Option<String>,
    denied: bool,
    reason: String,
    block: u64,
}

#[derive(Template)]
#[template(path = "patient/access_log.html")]
struct LogTpl {
    ctx: Ctx,
    rows: Vec<EventRow>,
    total: usize,
    page: usize,
    pages: usize,
    reads: usize,
    denied: usize,
    genesis: bool,
}

pub(super) async fn page(
    State(p): State<Arc<Portal>>,
    user: User,
    Query(q): Query<PageQuery>,
) -> Result<Response, PageError> {
    patient(&user)?;
    let names = Names::local(&p);
    let page = q.page.unwrap_or(1);
    let (events, names) = user
        .call(move |s| {
            let events = audit::trail(s, None)?;
            let (start, end, _) = page_bounds(events.len(), page, PER_PAGE);
            let mut actors: Vec<_> = events[start..end].iter().map(|e| e.event.actor).collect();
            actors.sort();
            actors.dedup();
            let mut names = names;
            names.resolve(s, actors);
            Ok((events, names))
        })
        .await?;
    let (start, end, pages) = page_bounds(events.len(), page, PER_PAGE);
    let reads = events
        .iter()
        .filter(|e| e.event.action == ehrchain_types::AuditAction::Read)
        .count();
    let denied = events
        .iter()
        .filter(|e| e.event.decision == Decision::Denied)
        .count();
    let rows = events[start..end]
        .iter()
        .map(|e| EventRow {
            id: e.id.to_string(),
            when: when(e.event.time_ms),
            who: names.of(&e.event.actor),
            action: action_words(e),
            record: e.event.record.map(|r| r.to_string()),
            item: e.event.item.map(|i| i.to_string()),
            denied: e.event.decision == Decision::Denied,
            reason: e.event.reason.to_string(),
            block: e.height,
        })
        .collect();
    Ok(render(LogTpl {
        ctx: user.ctx(),
        rows,
        total: events.len(),
        page: start / PER_PAGE + 1,
        pages,
        reads,
        denied,
        genesis: p.cfg.genesis.is_some(),
    }))
}

fn parse_event(s: &str) -> Result<EventId, PageError> {
    s.parse()
        .map_err(|_| PageError::NotFound("There is no audit event with that id.".into()))
}

pub(super) async fn proof(user: User, Path(event): Path<String>) -> Result<Response, PageError> {
    patient(&user)?;
    let id = parse_event(&event)?;
    let proof = user.call(move |s| audit::proof(s, &id)).await?;
    Ok(download(
        &format!("audit-proof-{id}.json"),
        proof.to_file_bytes(),
    ))
}

/// What checking a proof found.
pub enum Checked {
    Valid {
        height: u64,
        block: String,
        view: u64,
        index: u64,
    },
    Invalid(String),
    NoGenesis,
}

/// Checks proof file bytes against a genesis file's bytes, as `ehrchain audit verify` does.
pub fn check_bytes(proof: &[u8], genesis: Option<&[u8]>) -> Checked {
    let Some(g) = genesis else {
        return Checked::NoGenesis;
    };
    let genesis = match GenesisFile::from_json(g) {
        Ok(g) => g,
        Err(e) => return Checked::Invalid(format!("the genesis file is unusable: {e}")),
    };
    match audit::verify_file(proof, &genesis, &EngineFinality) {
        Ok((p, v)) => Checked::Valid {
            height: v.height,
            block: v.block_id.to_string(),
            view: v.view,
            index: p.index,
        },
        Err(e) => Checked::Invalid(e.to_string()),
    }
}

#[derive(Template)]
#[template(path = "patient/proof_check.html")]
struct CheckTpl {
    ctx: Ctx,
    event: String,
    action: String,
    when: String,
    decision: String,
    reason: String,
    result: Checked,
    genesis_path: String,
}

pub(super) async fn check(
    State(p): State<Arc<Portal>>,
    user: User,
    Path(event): Path<String>,
) -> Result<Response, PageError> {
    patient(&user)?;
    let id = parse_event(&event)?;
    let proof: AuditProof = user.call(move |s| audit::proof(s, &id)).await?;
    let genesis_path = p.cfg.genesis.clone();
    let bytes = proof.to_file_bytes();
    let result = tokio::task::spawn_blocking(move || {
        let g = genesis_path.as_ref().map(std::fs::read);
        match g {
            None => check_bytes(&bytes, None),
            Some(Err(e)) => Checked::Invalid(format!("the genesis file cannot be read: {e}")),
            Some(Ok(g)) => check_bytes(&bytes, Some(&g)),
        }
    })
    .await
    .map_err(|_| PageError::Internal)?;
    let e = &proof.event;
    Ok(render(CheckTpl {
        ctx: user.ctx(),
        event: id.to_string(),
        action: serde_json::to_value(e.action)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default(),
        when: when(e.time_ms),
        decision: match e.decision {
            Decision::Allowed => "allowed".into(),
            Decision::Denied => "denied".into(),
        },
        reason: e.reason.to_string(),
        result,
        genesis_path: p
            .cfg
            .genesis
            .as_ref()
            // Its name only: the server's directories are none of the page's business.
            .and_then(|g| g.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_genesis_file_nothing_is_claimed() {
        assert!(matches!(check_bytes(b"{}", None), Checked::NoGenesis));
    }

    #[test]
    fn garbage_is_invalid_not_a_crash() {
        assert!(matches!(
            check_bytes(b"{}", Some(b"not json")),
            Checked::Invalid(_)
        ));
    }
}
