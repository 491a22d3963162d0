//! Audit inclusion proofs: an audit event, the RFC 6962 path from its leaf to the audit root
//! of its block's header, and the block's finality certificate, checkable offline with nothing
//! but the proof (and, to pin the validator set, the chain's genesis file).

use crate::{
    GenesisFile,
    store::{ChainStore, StoreError},
};
use ehrchain_types::{EventId, records::audit_inclusion_proof};

pub use ehrchain_api::proof::{AuditProof, FORMAT, FinalityCheck, Verified};

/// The consensus engine's check of finality certificates, for [`AuditProof::verify`].
pub use ehrchain_consensus::certificate::EngineFinality;

/// Builds the proof of event `id` from the store, or `None` if there is no such event.
pub fn build(
    store: &ChainStore,
    genesis: &GenesisFile,
    id: &EventId,
) -> Result<Option<AuditProof>, StoreError> {
    let Some((height, index)) = store.audit_location(id)? else {
        return Ok(None);
    };
    let events = store.audit_events(height)?;
    let block = store
        .block(height)?
        .ok_or_else(|| StoreError::Corrupt(format!("audit event in missing block {height}")))?;
    let event = events
        .get(index as usize)
        .cloned()
        .filter(|e| e.id() == *id)
        .ok_or_else(|| StoreError::Corrupt(format!("audit index {height}/{index}")))?;
    let finalization = store
        .finalization(height)?
        .ok_or_else(|| StoreError::Corrupt(format!("no finality certificate for {height}")))?;
    Ok(Some(AuditProof {
        format: FORMAT.into(),
        chain_id: genesis.ledger.chain_id.clone(),
        event_id: *id,
        leaf: hex::encode(event.leaf()),
        path: hex::encode(audit_inclusion_proof(&events, index as usize)),
        event,
        height,
        index: index as u64,
        tree_size: events.len() as u64,
        header: block.header,
        finalization: hex::encode(finalization),
        validators: genesis.validators.iter().map(|v| v.public_key).collect(),
    }))
}

pub use ehrchain_api::proof::{STATE_FORMAT, StateProofFile, StateVerified};

/// Builds the proof of `key` (its entry or its absence) in the state after the finalized block
/// `snap.tip`, or `None` before the first block after genesis (which has no certificate).
pub fn build_state(
    store: &ChainStore,
    genesis: &GenesisFile,
    snap: &crate::chain::Snapshot,
    key: &ehrchain_ledger::StateKey,
) -> Result<Option<StateProofFile>, StoreError> {
    let height = snap.tip.height;
    if height == 0 {
        return Ok(None);
    }
    let finalization = store
        .finalization(height)?
        .ok_or_else(|| StoreError::Corrupt(format!("no finality certificate for {height}")))?;
    let (value, proof) = snap.state.prove(key);
    Ok(Some(StateProofFile {
        format: STATE_FORMAT.into(),
        chain_id: genesis.ledger.chain_id.clone(),
        key: key.to_string(),
        value: value.map(hex::encode),
        tree_root: hex::encode(snap.state.tree.root()),
        proof: hex::encode(borsh::to_vec(&proof).expect("a proof encodes")),
        height,
        header: snap.tip.clone(),
        finalization: hex::encode(finalization),
        validators: genesis.validators.iter().map(|v| v.public_key).collect(),
    }))
}
