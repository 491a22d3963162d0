//! Emergency keys split among guardians (issue 17, seed 004's multi-party authorisation).
//!
//! A patient's client draws a random Ristretto scalar, the *emergency secret*, and derives an
//! X25519 key pair from it with HKDF-SHA256 ([`EmergencySecret::keypair`]); the keys of the
//! categories an emergency opens are sealed to that key pair's public half. The secret is
//! split with Feldman verifiable secret sharing (`vsss-rs`, over Ristretto): any `threshold`
//! shares rebuild it, fewer reveal nothing, and the public commitments let anyone check a
//! share. Shares travel sealed with HPKE: by the patient to each guardian, and by a guardian
//! who approves a request to the requesting doctor, with a salt and a published digest so the
//! doctor can prove on the ledger that a share was wrong.

use crate::{EncryptionKeypair, EnvelopeError, envelope};
use ehrchain_types::{
    AccountId, EncryptionKey, Hash, ItemId, SealedKey, domain,
    items::{REVEALED_SHARE_BYTES, SHARE_BYTES},
};
use sha2::Sha256;
use vsss_rs::{
    FeldmanVerifierSet, IdentifierPrimeField, ReadableShareSet, ValueGroup, VecFeldmanVerifierSet,
    curve25519::{WrappedRistretto, WrappedScalar},
    curve25519_dalek::{
        constants::RISTRETTO_BASEPOINT_POINT, ristretto::CompressedRistretto, scalar::Scalar,
    },
    elliptic_curve::rand_core::OsRng,
};
use zeroize::Zeroizing;

type VShare = (
    IdentifierPrimeField<WrappedScalar>,
    IdentifierPrimeField<WrappedScalar>,
);
type Verifier = ValueGroup<WrappedRistretto>;

/// Why an emergency operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    #[error(
        "a threshold of {threshold} of {guardians} guardians is not possible (2 ≤ threshold ≤ guardians ≤ 255)"
    )]
    Params { threshold: usize, guardians: usize },
    #[error("the share is malformed")]
    Malformed,
    #[error("fewer shares than the threshold, or two with the same index")]
    NotEnough,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// The secret an emergency key derives from (a Ristretto scalar). Zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct EmergencySecret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for EmergencySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmergencySecret(..)")
    }
}

impl EmergencySecret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> EmergencySecret {
        let wide = Zeroizing::new(envelope::random::<64>());
        let s = Scalar::from_bytes_mod_order_wide(&wide);
        EmergencySecret(Zeroizing::new(s.to_bytes()))
    }

    fn scalar(&self) -> Scalar {
        Scalar::from_bytes_mod_order(*self.0)
    }

    /// The X25519 key pair of `patient`'s emergency key: HKDF-SHA256 of the secret (info the
    /// domain tag and the patient), then the KEM's own key derivation.
    pub fn keypair(&self, patient: &AccountId) -> EncryptionKeypair {
        let mut seed = Zeroizing::new([0u8; 32]);
        let mut info = domain::EMERGENCY_KEY.to_vec();
        info.extend_from_slice(&patient.0);
        hkdf::Hkdf::<Sha256>::new(None, self.0.as_ref())
            .expand(&info, seed.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        EncryptionKeypair::derive(&seed)
    }
}

/// One guardian's share: its index (1-based) and its scalar. Zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Share {
    pub index: u8,
    value: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share({}, ..)", self.index)
    }
}

impl Share {
    /// The [`SHARE_BYTES`] encoding: index, then the scalar.
    pub fn to_bytes(&self) -> Zeroizing<[u8; SHARE_BYTES]> {
        let mut out = Zeroizing::new([0u8; SHARE_BYTES]);
        out[0] = self.index;
        out[1..].copy_from_slice(self.value.as_ref());
        out
    }

    /// Reads [`Self::to_bytes`]; the scalar must be canonical and the index not 0.
    pub fn from_bytes(bytes: &[u8]) -> Result<Share, ShareError> {
        if bytes.len() != SHARE_BYTES || bytes[0] == 0 {
            return Err(ShareError::Malformed);
        }
        let mut value = Zeroizing::new([0u8; 32]);
        value.copy_from_slice(&bytes[1..]);
        if Option::<Scalar>::from(Scalar::from_canonical_bytes(*value)).is_none() {
            return Err(ShareError::Malformed);
        }
        Ok(Share {
            index: bytes[0],
            value,
        })
    }

    fn vsss(&self) -> VShare {
        (
            IdentifierPrimeField(WrappedScalar(Scalar::from(u64::from(self.index)))),
            IdentifierPrimeField(WrappedScalar(Scalar::from_bytes_mod_order(*self.value))),
        )
    }

    /// A copy with the scalar changed (for tests of share detection).
    pub fn corrupted(&self) -> Share {
        let v = Scalar::from_bytes_mod_order(*self.value) + Scalar::ONE;
        Share {
            index: self.index,
            value: Zeroizing::new(v.to_bytes()),
        }
    }
}

/// Splits `secret` into `guardians` shares, `threshold` of which rebuild it, with the Feldman
/// commitments (`threshold` compressed Ristretto points) that check each share.
pub fn split(
    secret: &EmergencySecret,
    threshold: usize,
    guardians: usize,
) -> Result<(Vec<Share>, Vec<Hash>), ShareError> {
    if threshold < 2 || threshold > guardians || guardians > 255 {
        return Err(ShareError::Params {
            threshold,
            guardians,
        });
    }
    let s = IdentifierPrimeField(WrappedScalar(secret.scalar()));
    let (shares, verifiers) =
        vsss_rs::feldman::split_secret::<VShare, Verifier>(threshold, guardians, &s, None, OsRng)
            .map_err(|_| ShareError::Params {
            threshold,
            guardians,
        })?;
    let shares = shares
        .iter()
        .map(|(id, v)| {
            let index = id.0.0.to_bytes()[0];
            Share {
                index,
                value: Zeroizing::new(v.0.0.to_bytes()),
            }
        })
        .collect();
    // The first verifier is the generator; the rest commit to the coefficients.
    let commitments = verifiers[1..]
        .iter()
        .map(|v| Hash(v.0.0.compress().to_bytes()))
        .collect();
    Ok((shares, commitments))
}

fn points(commitments: &[Hash]) -> Option<Vec<Verifier>> {
    let mut out = vec![ValueGroup(WrappedRistretto(RISTRETTO_BASEPOINT_POINT))];
    for c in commitments {
        let p = CompressedRistretto(c.0).decompress()?;
        if p == vsss_rs::curve25519_dalek::ristretto::RistrettoPoint::default() {
            return None;
        }
        out.push(ValueGroup(WrappedRistretto(p)));
    }
    Some(out)
}

/// Whether `commitments` are valid (decompressible, not the identity) Ristretto points.
pub fn valid_commitments(commitments: &[Hash]) -> bool {
    !commitments.is_empty() && points(commitments).is_some()
}

/// Whether `share` is consistent with the Feldman `commitments`.
pub fn verify_share(commitments: &[Hash], share: &Share) -> bool {
    let Some(points) = points(commitments) else {
        return false;
    };
    let set: VecFeldmanVerifierSet<VShare, Verifier> = points.into();
    set.verify_share(&share.vsss()).is_ok()
}

/// Rebuilds the secret from at least `threshold` shares with distinct indexes (check each
/// with [`verify_share`] first: combining a wrong share gives a wrong secret).
pub fn combine(shares: &[Share]) -> Result<EmergencySecret, ShareError> {
    if shares.len() < 2 {
        return Err(ShareError::NotEnough);
    }
    let set: Vec<VShare> = shares.iter().map(Share::vsss).collect();
    let s = set.combine().map_err(|_| ShareError::NotEnough)?;
    Ok(EmergencySecret(Zeroizing::new(s.0.0.to_bytes())))
}

fn pair_aad(a: &AccountId, b: &AccountId) -> Vec<u8> {
    let mut aad = a.0.to_vec();
    aad.extend_from_slice(&b.0);
    aad
}

/// Seals `share` to `guardian` (by the patient), bound to both.
pub fn seal_guardian_share(
    guardian_key: &EncryptionKey,
    patient: &AccountId,
    guardian: &AccountId,
    share: &Share,
) -> Result<SealedKey, ShareError> {
    Ok(envelope::seal(
        guardian_key,
        domain::HPKE_GUARDIAN_SHARE,
        &pair_aad(patient, guardian),
        share.to_bytes().as_ref(),
    )?)
}

fn request_aad(request: &ItemId, guardian: &AccountId) -> Vec<u8> {
    let mut aad = ehrchain_types::encode(request);
    aad.extend_from_slice(&guardian.0);
    aad
}

/// The digest a guardian publishes of the bytes it hands the doctor of `request`.
pub fn share_digest(request: &ItemId, guardian: &AccountId, revealed: &[u8]) -> Hash {
    domain::tagged_hash(
        domain::SHARE_DIGEST,
        &[&ehrchain_types::encode(request), &guardian.0, revealed],
    )
}

/// A guardian's share re-sealed to the doctor of `request`, with a fresh salt: returns the
/// sealed bytes and their digest (both go on the ledger with the approval).
pub fn seal_doctor_share(
    doctor_key: &EncryptionKey,
    request: &ItemId,
    guardian: &AccountId,
    share: &Share,
) -> Result<(SealedKey, Hash), ShareError> {
    let mut revealed = Zeroizing::new([0u8; REVEALED_SHARE_BYTES]);
    revealed[..SHARE_BYTES].copy_from_slice(share.to_bytes().as_ref());
    revealed[SHARE_BYTES..].copy_from_slice(&envelope::random::<32>());
    let sealed = envelope::seal(
        doctor_key,
        domain::HPKE_EMERGENCY_SHARE,
        &request_aad(request, guardian),
        revealed.as_ref(),
    )?;
    Ok((sealed, share_digest(request, guardian, revealed.as_ref())))
}

/// Seals a doctor's note on an emergency request to the patient or a guardian.
pub fn seal_note(
    to: &EncryptionKey,
    doctor: &AccountId,
    patient: &AccountId,
    note: &str,
) -> Result<SealedKey, ShareError> {
    Ok(envelope::seal(
        to,
        domain::HPKE_EMERGENCY_NOTE,
        &pair_aad(doctor, patient),
        note.as_bytes(),
    )?)
}

/// The bytes a guardian handed a doctor: its share and the salt.
pub struct Revealed(pub Zeroizing<[u8; REVEALED_SHARE_BYTES]>);

impl Revealed {
    /// The share inside (malformed bytes are a wrong share too).
    pub fn share(&self) -> Result<Share, ShareError> {
        Share::from_bytes(&self.0[..SHARE_BYTES])
    }
}

impl EncryptionKeypair {
    /// Opens the share a patient sealed to this guardian.
    pub fn open_guardian_share(
        &self,
        sealed: &SealedKey,
        patient: &AccountId,
        guardian: &AccountId,
    ) -> Result<Share, ShareError> {
        let pt = self.open(
            sealed,
            domain::HPKE_GUARDIAN_SHARE,
            &pair_aad(patient, guardian),
        )?;
        Share::from_bytes(&pt)
    }

    /// Opens what a guardian handed this doctor for `request`.
    pub fn open_doctor_share(
        &self,
        sealed: &SealedKey,
        request: &ItemId,
        guardian: &AccountId,
    ) -> Result<Revealed, ShareError> {
        let pt = self.open(
            sealed,
            domain::HPKE_EMERGENCY_SHARE,
            &request_aad(request, guardian),
        )?;
        let bytes: [u8; REVEALED_SHARE_BYTES] = pt
            .as_slice()
            .try_into()
            .map_err(|_| ShareError::Malformed)?;
        Ok(Revealed(Zeroizing::new(bytes)))
    }

    /// Opens a doctor's note on an emergency request.
    pub fn open_note(
        &self,
        sealed: &SealedKey,
        doctor: &AccountId,
        patient: &AccountId,
    ) -> Result<String, ShareError> {
        let pt = self.open(
            sealed,
            domain::HPKE_EMERGENCY_NOTE,
            &pair_aad(doctor, patient),
        )?;
        Ok(String::from_utf8_lossy(&pt).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_threshold_shares_rebuild_the_key_and_a_wrong_one_is_caught() {
        let patient = AccountId([7; 20]);
        let secret = EmergencySecret::generate();
        let (shares, commitments) = split(&secret, 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        assert_eq!(commitments.len(), 3);
        assert!(valid_commitments(&commitments));
        for s in &shares {
            assert!(verify_share(&commitments, s));
            let back = Share::from_bytes(s.to_bytes().as_ref()).unwrap();
            assert_eq!(&back, s);
        }
        let bad = shares[1].corrupted();
        assert!(!verify_share(&commitments, &bad));
        let rebuilt = combine(&[shares[4].clone(), shares[0].clone(), shares[2].clone()]).unwrap();
        assert_eq!(
            rebuilt.keypair(&patient).public(),
            secret.keypair(&patient).public()
        );
        // Two shares are not enough: they combine into another secret.
        let two = combine(&[shares[0].clone(), shares[1].clone()]).unwrap();
        assert_ne!(
            two.keypair(&patient).public(),
            secret.keypair(&patient).public()
        );
        // A wrong share among the threshold gives a wrong key.
        let wrong = combine(&[shares[0].clone(), bad, shares[2].clone()]).unwrap();
        assert_ne!(
            wrong.keypair(&patient).public(),
            secret.keypair(&patient).public()
        );
        assert!(split(&secret, 1, 5).is_err());
        assert!(split(&secret, 6, 5).is_err());
        assert!(!valid_commitments(&[Hash([0; 32])]));
        assert!(!valid_commitments(&[Hash([0xff; 32])]));
    }

    #[test]
    fn shares_travel_sealed_and_the_digest_binds_them() {
        let patient = AccountId([1; 20]);
        let guardian = crate::Keypair::generate();
        let doctor = crate::Keypair::generate();
        let g = guardian.account();
        let secret = EmergencySecret::generate();
        let (shares, commitments) = split(&secret, 2, 2).unwrap();
        let sealed =
            seal_guardian_share(&guardian.encryption().public(), &patient, &g, &shares[0]).unwrap();
        let opened = guardian
            .encryption()
            .open_guardian_share(&sealed, &patient, &g)
            .unwrap();
        assert_eq!(opened, shares[0]);
        // Bound to the pair: another patient's id does not open it.
        assert!(
            guardian
                .encryption()
                .open_guardian_share(&sealed, &AccountId([2; 20]), &g)
                .is_err()
        );
        let request = ItemId::derive(ehrchain_types::ItemKind::Emergency, &Hash([3; 32]));
        let (to_doctor, digest) =
            seal_doctor_share(&doctor.encryption().public(), &request, &g, &opened).unwrap();
        let revealed = doctor
            .encryption()
            .open_doctor_share(&to_doctor, &request, &g)
            .unwrap();
        assert_eq!(share_digest(&request, &g, revealed.0.as_ref()), digest);
        assert!(verify_share(&commitments, &revealed.share().unwrap()));
    }
}
