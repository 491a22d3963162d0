//! A patient's audit trail, and audit proofs: fetched from a node, checked offline.

use crate::{Error, Result, Session};
use ehrchain_api::{
    AuditProof, EventView, FinalityCheck, GenesisFile, Verified,
    proof::{StateProofFile, StateVerified},
};
use ehrchain_types::{EventId, RecordId};

/// The session account's audit trail (newest first), optionally about one record.
pub fn trail(s: &Session, record: Option<&RecordId>) -> Result<Vec<EventView>> {
    let mut path = format!("/api/v1/audit?patient={}", s.me);
    if let Some(r) = record {
        // The node searches a bounded window of the trail for one record's events: one page.
        path += &format!("&record={r}&limit={}", crate::session::PAGE);
        return s.get(&path);
    }
    s.get_all(&path, "before", |e: &EventView| e.id.to_string())
}

/// The inclusion proof of an audit event, asked as the session account (the patient, a party
/// of the event, or a consortium member).
pub fn proof(s: &Session, event: &EventId) -> Result<AuditProof> {
    s.get(&format!("/api/v1/audit/{event}/proof"))
}

/// Checks a proof file offline against the chain's genesis file (the trust anchor); the
/// finality certificate is checked by `finality` (the consensus engine's verifier).
pub fn verify_file(
    bytes: &[u8],
    genesis: &GenesisFile,
    finality: &dyn FinalityCheck,
) -> Result<(AuditProof, Verified)> {
    let invalid = |e: String| Error::Invalid(format!("proof is invalid: {e}"));
    let proof = AuditProof::from_file_bytes(bytes).map_err(invalid)?;
    let v = proof.verify(genesis, finality).map_err(invalid)?;
    Ok((proof, v))
}

/// The proof of a state entry (`grant:PATIENT:GRANTEE`, `account:ID`, ...) or of its absence,
/// in the state after the last finalized block, asked as the session account.
pub fn state_proof(s: &Session, key: &ehrchain_ledger::StateKey) -> Result<StateProofFile> {
    // The key's text form is ASCII ids and `:`, plus an organisation's name: percent-encode.
    let q: String = key
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    s.get(&format!("/api/v1/state/proof?key={q}"))
}

/// Checks a state proof file offline against the chain's genesis file (the trust anchor).
pub fn verify_state_file(
    bytes: &[u8],
    genesis: &GenesisFile,
    finality: &dyn FinalityCheck,
) -> Result<(StateProofFile, StateVerified)> {
    let invalid = |e: String| Error::Invalid(format!("proof is invalid: {e}"));
    let proof = StateProofFile::from_file_bytes(bytes).map_err(invalid)?;
    let v = proof.verify(genesis, finality).map_err(invalid)?;
    Ok((proof, v))
}
