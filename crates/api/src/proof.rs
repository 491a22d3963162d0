//! Audit inclusion proofs: an audit event, the RFC 6962 path from its leaf to the audit root
//! of its block's header, and the block's finality certificate, checkable offline with nothing
//! but the proof and the chain's genesis file.
//!
//! The inclusion and every field are checked here; the finality certificate is the consensus
//! engine's format, so its check is given by the caller ([`FinalityCheck`]): the `ehrchain`
//! binary passes the engine's verifier, and a client without the engine can still check
//! everything else.

use crate::GenesisFile;
use ehrchain_types::{
    AuditEvent, BlockHeader, EventId, Hash, PublicKey, records::verify_audit_inclusion,
};
use serde::{Deserialize, Serialize};

/// The format tag of a proof file.
pub const FORMAT: &str = "ehrchain-audit-proof/v1";

/// A self-contained proof that an audit event is in a finalized block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditProof {
    pub format: String,
    pub chain_id: String,
    pub event_id: EventId,
    /// The event, for reading; the proof checks it equals the leaf. Without rendered
    /// messages, so the file reads back byte for byte under any later wording.
    #[serde(with = "ehrchain_types::records::without_message")]
    pub event: AuditEvent,
    /// The leaf bytes (canonical encoding of the event), hex.
    pub leaf: String,
    pub height: u64,
    pub index: u64,
    /// Number of audit events (leaves) in the block.
    pub tree_size: u64,
    /// Sibling hashes from leaf to root, concatenated, hex.
    pub path: String,
    pub header: BlockHeader,
    /// The consensus engine's finality certificate of the block, hex.
    pub finalization: String,
    /// The validators' consensus public keys (from genesis) that the certificate must satisfy.
    pub validators: Vec<PublicKey>,
}

/// What a proof proved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub event_id: EventId,
    pub height: u64,
    pub block_id: Hash,
    /// The consensus view in which the block was finalized.
    pub view: u64,
}

/// Checks a finality certificate: that `certificate` finalizes block `block_id` with a quorum
/// of `validators`. Returns the consensus view.
pub trait FinalityCheck {
    fn check(
        &self,
        validators: &[PublicKey],
        certificate: &[u8],
        block_id: &Hash,
    ) -> Result<u64, String>;
}

/// Checks that `header` was finalized on the chain of `genesis` (the trust anchor, never the
/// proof's own word): the proof's chain id and validator set must be the genesis file's, and
/// `finalization` (hex) a quorum's certificate over the header's id. Returns the block id and
/// the consensus view.
fn check_finalized(
    genesis: &GenesisFile,
    finality: &dyn FinalityCheck,
    chain_id: &str,
    validators: &[PublicKey],
    header: &BlockHeader,
    finalization: &str,
) -> Result<(Hash, u64), String> {
    if genesis.ledger.chain_id != chain_id {
        return Err(format!(
            "proof is for chain {chain_id:?}, the genesis file is chain {:?}",
            genesis.ledger.chain_id
        ));
    }
    if genesis.validator_keys() != validators {
        return Err("the proof's validator set is not the genesis file's".into());
    }
    let block_id = header.id();
    let cert = hex::decode(finalization).map_err(|_| "finalization is not hex".to_string())?;
    let view = finality.check(validators, &cert, &block_id)?;
    Ok((block_id, view))
}

/// A proof's file form: pretty JSON and a newline.
fn file_bytes<T: Serialize>(proof: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(proof).expect("a proof serializes");
    out.push(b'\n');
    out
}

/// Parses a proof file, which must be exactly in the form [`file_bytes`] writes: then any
/// changed byte is detected, even one JSON would ignore (a renamed optional key). `fetch` is
/// the command that fetches it again.
fn from_file_bytes<T: Serialize + serde::de::DeserializeOwned>(
    bytes: &[u8],
    fetch: &str,
) -> Result<T, String> {
    let proof: T = serde_json::from_slice(bytes).map_err(|e| format!("not a proof file ({e})"))?;
    if file_bytes(&proof) != bytes {
        return Err(format!(
            "the file differs from the proof it contains (edited or reformatted?); fetch it again with `{fetch}`"
        ));
    }
    Ok(proof)
}

impl AuditProof {
    /// The file form: pretty JSON, as `ehrchain audit proof` writes it.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        file_bytes(self)
    }

    /// Parses a proof file, which must be exactly in the form [`Self::to_file_bytes`] writes.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<AuditProof, String> {
        from_file_bytes(bytes, "ehrchain audit proof")
    }

    /// Checks the proof offline: the leaf is the event, the event has the id, the path leads
    /// to the header's audit root, and a quorum of the validators finalized the header. The
    /// chain and validator set must be `genesis`'s: the trust anchor comes from the verifier,
    /// never from the proof (anyone can make a validator set and sign a fake header).
    pub fn verify(
        &self,
        genesis: &GenesisFile,
        finality: &dyn FinalityCheck,
    ) -> Result<Verified, String> {
        if self.format != FORMAT {
            return Err(format!(
                "not an audit proof (format {:?}, expected {FORMAT:?})",
                self.format
            ));
        }
        let leaf = hex::decode(&self.leaf).map_err(|_| "leaf is not hex".to_string())?;
        let decoded: AuditEvent = ehrchain_types::decode(&leaf, 64 * 1024)
            .map_err(|e| format!("leaf does not decode as an audit event: {e}"))?;
        if decoded != self.event {
            return Err("the event shown differs from the proven leaf".into());
        }
        if decoded.id() != self.event_id {
            return Err(format!(
                "the leaf is event {}, not {}",
                decoded.id(),
                self.event_id
            ));
        }
        let path = hex::decode(&self.path).map_err(|_| "path is not hex".to_string())?;
        if self.header.height != self.height {
            return Err("header height differs from the proof's height".into());
        }
        if !verify_audit_inclusion(
            &self.header.audit_root,
            self.tree_size,
            &leaf,
            self.index,
            &path,
        ) {
            return Err(format!(
                "inclusion proof fails: the path does not lead to block {}'s audit root",
                self.height
            ));
        }
        let (block_id, view) = check_finalized(
            genesis,
            finality,
            &self.chain_id,
            &self.validators,
            &self.header,
            &self.finalization,
        )?;
        Ok(Verified {
            event_id: self.event_id,
            height: self.height,
            block_id,
            view,
        })
    }
}

/// The format tag of a state proof file.
/// Version 2: a record's leaf key starts with its id's clock (ADR 0008, fourth part), so the
/// tree proofs of version 1 files no longer check.
pub const STATE_FORMAT: &str = "ehrchain-state-proof/v2";

/// A self-contained proof of one state entry, or of its absence, in the state after a
/// finalized block: the entry's bytes, the tree proof from its leaf to the tree root, the
/// header whose state root binds that tree root, and the header's finality certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateProofFile {
    pub format: String,
    pub chain_id: String,
    /// The entry's key as the API names it (`grant:PATIENT:GRANTEE`, ...).
    pub key: String,
    /// The entry's canonical encoding, hex; absent in a proof of absence.
    pub value: Option<String>,
    /// The root of the state tree, hex; with the chain id it gives the header's state root.
    pub tree_root: String,
    /// The tree proof (jmt's sparse Merkle proof, borsh), hex.
    pub proof: String,
    pub height: u64,
    pub header: BlockHeader,
    /// The consensus engine's finality certificate of the block, hex.
    pub finalization: String,
    /// The validators' consensus public keys (from genesis) that the certificate must satisfy.
    pub validators: Vec<PublicKey>,
}

/// What a state proof proved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateVerified {
    pub key: String,
    /// Whether the entry exists; its value (the canonical encoding, hex) if it does.
    pub exists: bool,
    pub value: Option<String>,
    pub height: u64,
    pub block_id: Hash,
    pub view: u64,
}

impl StateProofFile {
    /// The file form: pretty JSON, as `ehrchain state proof` writes it.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        file_bytes(self)
    }

    /// Parses a proof file, which must be exactly in the form [`Self::to_file_bytes`] writes.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<StateProofFile, String> {
        from_file_bytes(bytes, "ehrchain state proof")
    }

    /// Checks the proof offline against `genesis` (the trust anchor, never the proof's own
    /// validator list): the tree proof leads from the entry (or from its absence) to the tree
    /// root, the tree root and chain id give the header's state root, and a quorum of the
    /// genesis validators finalized the header.
    pub fn verify(
        &self,
        genesis: &GenesisFile,
        finality: &dyn FinalityCheck,
    ) -> Result<StateVerified, String> {
        use ehrchain_ledger::{StateKey, tree};
        if self.format == "ehrchain-state-proof/v1" {
            return Err(
                "a state proof of format v1, made by an older ehrchain version whose state \
                 tree laid out record keys otherwise (ADR 0008, fourth part): ask the node \
                 for a new proof"
                    .into(),
            );
        }
        if self.format != STATE_FORMAT {
            return Err(format!(
                "not a state proof (format {:?}, expected {STATE_FORMAT:?})",
                self.format
            ));
        }
        let key: StateKey = self.key.parse()?;
        if key.to_string() != self.key {
            return Err(format!(
                "the key {:?} is not in its canonical form {:?}",
                self.key,
                key.to_string()
            ));
        }
        let value = self
            .value
            .as_deref()
            .map(hex::decode)
            .transpose()
            .map_err(|_| "value is not hex".to_string())?;
        let tree_root: [u8; 32] = hex::decode(&self.tree_root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("tree_root is not 32 bytes of hex")?;
        let proof_bytes = hex::decode(&self.proof).map_err(|_| "proof is not hex".to_string())?;
        // A tree proof has at most 256 siblings of 33 bytes or so; bound the decode.
        if proof_bytes.len() > 64 * 1024 {
            return Err("proof is too large".into());
        }
        let proof: tree::StateProof =
            borsh::from_slice(&proof_bytes).map_err(|e| format!("proof does not decode: {e}"))?;
        let digest = value.as_deref().map(tree::entry_digest);
        tree::verify_proof(&proof, &tree_root, &key, digest).map_err(|e| {
            format!("the tree proof fails: it does not lead from this entry to the tree root ({e})")
        })?;
        if self.header.height != self.height {
            return Err("header height differs from the proof's height".into());
        }
        if tree::state_root(&self.chain_id, &tree_root) != self.header.state_root {
            return Err(format!(
                "the tree root and chain id do not give block {}'s state root",
                self.height
            ));
        }
        let (block_id, view) = check_finalized(
            genesis,
            finality,
            &self.chain_id,
            &self.validators,
            &self.header,
            &self.finalization,
        )?;
        Ok(StateVerified {
            key: self.key.clone(),
            exists: value.is_some(),
            value: self.value.clone(),
            height: self.height,
            block_id,
            view,
        })
    }
}
