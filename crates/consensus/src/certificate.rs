//! Offline checking of the engine's finality certificates.

use crate::{digest_of, tcp::public_key};
use commonware_consensus::simplex::{scheme::ed25519::Scheme, types::Finalization};
use commonware_cryptography::{certificate::Verifier as _, sha256::Digest};
use commonware_parallel::Sequential;
use commonware_utils::ordered::Set;
use ehrchain_types::Hash;

/// Checks that `bytes` is a finality certificate for block `block_id`, signed by a quorum of
/// `validators` (ed25519 public keys from genesis). Returns the view it was finalized in.
pub fn verify_finalization(
    validators: &[[u8; 32]],
    bytes: &[u8],
    block_id: &Hash,
) -> Result<u64, String> {
    let keys = validators
        .iter()
        .map(public_key)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let set = Set::try_from(keys).map_err(|_| "duplicate validator keys".to_string())?;
    let scheme = Scheme::verifier(ehrchain_types::domain::CONSENSUS, set);
    let cfg = Scheme::certificate_codec_config_unbounded();
    let fin = <Finalization<Scheme, Digest> as commonware_codec::Read>::read_cfg(
        &mut bytes::Bytes::copy_from_slice(bytes),
        &cfg,
    )
    .map_err(|e| format!("finality certificate does not decode: {e}"))?;
    if fin.proposal.payload != digest_of(block_id) {
        return Err("finality certificate is for another block".into());
    }
    if !fin.verify(&mut rand::rng(), &scheme, &Sequential) {
        return Err(
            "finality certificate signatures do not verify against the genesis validators".into(),
        );
    }
    Ok(fin.round().view().get())
}

/// This engine's check of finality certificates, for `AuditProof::verify` and the SDK's
/// proof checks (the proof format lives in `ehrchain-api`, which knows no engine).
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineFinality;

impl ehrchain_api::proof::FinalityCheck for EngineFinality {
    fn check(
        &self,
        validators: &[ehrchain_types::PublicKey],
        certificate: &[u8],
        block_id: &Hash,
    ) -> Result<u64, String> {
        let keys: Vec<[u8; 32]> = validators.iter().map(|v| v.0).collect();
        verify_finalization(&keys, certificate, block_id)
    }
}
