//! Record encryption on the client: the key hierarchy of `DESIGN.md`, "Cryptography".
//!
//! - Each account has an X25519 key pair for HPKE (RFC 9180, base mode,
//!   X25519-HKDF-SHA256 / HKDF-SHA256 / ChaCha20-Poly1305), derived from its ed25519 seed
//!   with HKDF-SHA256 and the KEM's own `DeriveKeyPair`, so one keystore holds both.
//! - A patient has a random 32-byte key per category and epoch ([`CategoryKey`]).
//! - Each record has a random data key ([`DataKey`]); it is wrapped under a category key with
//!   XChaCha20-Poly1305 (record id as associated data), or sealed with HPKE to the patient and
//!   the author while a doctor-written record waits for approval.
//! - Content is encrypted with XChaCha20-Poly1305 in the STREAM construction (`aead-stream`,
//!   big-endian 32-bit counter, 64 KiB chunks), so files of any size stream in constant memory;
//!   a truncated, reordered or altered stream fails to decrypt.
//! - The ledger carries an HMAC-SHA256 commitment to the plaintext under a key derived from the
//!   data key: only a key holder can check it, and it cannot be guessed from low-entropy data.

use aead_stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use ehrchain_types::{
    AccountId, Category, EncryptionKey, Hash, HexBytes, RecordId, SealedKey, domain,
};
use hmac::Mac;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use zeroize::{Zeroize, Zeroizing};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;

/// Plaintext bytes per STREAM chunk.
pub const CHUNK: usize = 64 * 1024;
/// AEAD tag bytes per chunk.
const TAG: usize = 16;
/// Magic at the start of every content stream, with the format version.
pub const MAGIC: &[u8; 8] = b"EHRCSTR1";
/// Nonce prefix of the STREAM (XChaCha20's 24 bytes minus the 5-byte counter and flag).
const STREAM_NONCE: usize = 19;
/// Bytes before the first chunk.
pub const HEADER: usize = MAGIC.len() + STREAM_NONCE;

/// Why something did not decrypt or seal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the key does not open this data (wrong key, or the data was altered)")]
    Open,
    #[error("the recipient's encryption key is not a valid X25519 key")]
    BadRecipient,
    #[error("not an ehrchain encrypted stream (bad header)")]
    BadHeader,
    #[error("the encrypted stream is truncated or altered at chunk {0}")]
    Chunk(u64),
    #[error("i/o: {0}")]
    Io(String),
}

impl From<std::io::Error> for EnvelopeError {
    fn from(e: std::io::Error) -> Self {
        EnvelopeError::Io(e.to_string())
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the OS random source is available");
    out
}

macro_rules! secret_key {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Zeroizing<[u8; 32]>);

        impl $name {
            pub fn generate() -> Self {
                Self(Zeroizing::new(random()))
            }
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(Zeroizing::new(bytes))
            }
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

secret_key!(
    /// A patient's key for one category and epoch.
    CategoryKey
);
secret_key!(
    /// A record's content key.
    DataKey
);

/// An account's HPKE key pair.
pub struct EncryptionKeypair {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: EncryptionKey,
}

impl std::fmt::Debug for EncryptionKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptionKeypair({})", self.public)
    }
}

impl EncryptionKeypair {
    /// Derives the key pair from an ed25519 seed (HKDF-SHA256, then RFC 9180 DeriveKeyPair).
    pub fn derive(seed: &[u8; 32]) -> EncryptionKeypair {
        let mut ikm = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(None, seed)
            .expand(domain::ENCRYPTION_KEY, ikm.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let (secret, public) = Kem::derive_keypair(ikm.as_ref());
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&public.to_bytes());
        EncryptionKeypair {
            secret,
            public: EncryptionKey(pk),
        }
    }

    pub fn public(&self) -> EncryptionKey {
        self.public
    }

    /// Opens bytes sealed to this key pair with [`seal`].
    pub fn open(
        &self,
        sealed: &SealedKey,
        info: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc.0)
            .map_err(|_| EnvelopeError::Open)?;
        hpke::single_shot_open::<HpkeAead, Kdf, Kem>(
            &OpModeR::Base,
            &self.secret,
            &enc,
            info,
            &sealed.ct.0,
            aad,
        )
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Open)
    }

    fn open_key(
        &self,
        sealed: &SealedKey,
        info: &[u8],
        aad: &[u8],
    ) -> Result<[u8; 32], EnvelopeError> {
        let pt = self.open(sealed, info, aad)?;
        <[u8; 32]>::try_from(pt.as_slice()).map_err(|_| EnvelopeError::Open)
    }

    /// Opens a category key sealed to this account.
    pub fn open_category_key(
        &self,
        sealed: &SealedKey,
        patient: &AccountId,
        category: Category,
        epoch: u32,
    ) -> Result<CategoryKey, EnvelopeError> {
        let aad = category_key_aad(patient, category, epoch);
        self.open_key(sealed, domain::HPKE_CATEGORY_KEY, &aad)
            .map(CategoryKey::from_bytes)
    }

    /// Opens a record's data key sealed to this account.
    pub fn open_data_key(
        &self,
        sealed: &SealedKey,
        record: &RecordId,
    ) -> Result<DataKey, EnvelopeError> {
        self.open_key(sealed, domain::HPKE_DATA_KEY, &record.0)
            .map(DataKey::from_bytes)
    }
}

/// Seals `plaintext` to `recipient` with HPKE base mode.
pub fn seal(
    recipient: &EncryptionKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<SealedKey, EnvelopeError> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&recipient.0)
        .map_err(|_| EnvelopeError::BadRecipient)?;
    let (enc, ct) =
        hpke::single_shot_seal::<HpkeAead, Kdf, Kem>(&OpModeS::Base, &pk, info, plaintext, aad)
            .map_err(|_| EnvelopeError::BadRecipient)?;
    let mut e = [0u8; 32];
    e.copy_from_slice(&enc.to_bytes());
    Ok(SealedKey {
        enc: EncryptionKey(e),
        ct: HexBytes(ct),
    })
}

fn category_key_aad(patient: &AccountId, category: Category, epoch: u32) -> Vec<u8> {
    let mut aad = patient.0.to_vec();
    aad.push(category as u8);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}

/// Seals a category key to `recipient`, bound to the patient, category and epoch.
pub fn seal_category_key(
    recipient: &EncryptionKey,
    key: &CategoryKey,
    patient: &AccountId,
    category: Category,
    epoch: u32,
) -> Result<SealedKey, EnvelopeError> {
    let aad = category_key_aad(patient, category, epoch);
    seal(recipient, domain::HPKE_CATEGORY_KEY, &aad, key.as_bytes())
}

/// Seals a record's data key to `recipient`, bound to the record id.
pub fn seal_data_key(
    recipient: &EncryptionKey,
    key: &DataKey,
    record: &RecordId,
) -> Result<SealedKey, EnvelopeError> {
    seal(recipient, domain::HPKE_DATA_KEY, &record.0, key.as_bytes())
}

fn xchacha_seal(key: &[u8; 32], aad_tag: &[u8], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key));
    let nonce: [u8; 24] = random();
    let mut full_aad = aad_tag.to_vec();
    full_aad.extend_from_slice(aad);
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg,
                aad: &full_aad,
            },
        )
        .expect("XChaCha20-Poly1305 encryption of a bounded message cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

fn xchacha_open(
    key: &[u8; 32],
    aad_tag: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    if sealed.len() < 24 + TAG {
        return Err(EnvelopeError::Open);
    }
    let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*key));
    let (nonce, ct) = sealed.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().expect("split at 24");
    let mut full_aad = aad_tag.to_vec();
    full_aad.extend_from_slice(aad);
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ct,
                aad: &full_aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| EnvelopeError::Open)
}

/// Wraps a data key under a category key (72 bytes: nonce, key, tag).
pub fn wrap_data_key(ck: &CategoryKey, dk: &DataKey, record: &RecordId) -> Vec<u8> {
    xchacha_seal(
        ck.as_bytes(),
        domain::DATA_KEY_WRAP,
        &record.0,
        dk.as_bytes(),
    )
}

pub fn unwrap_data_key(
    ck: &CategoryKey,
    wrapped: &[u8],
    record: &RecordId,
) -> Result<DataKey, EnvelopeError> {
    let pt = xchacha_open(ck.as_bytes(), domain::DATA_KEY_WRAP, &record.0, wrapped)?;
    <[u8; 32]>::try_from(pt.as_slice())
        .map(DataKey::from_bytes)
        .map_err(|_| EnvelopeError::Open)
}

/// Encrypts a record's metadata (JSON) under its data key.
pub fn seal_meta(dk: &DataKey, record: &RecordId, meta: &[u8]) -> Vec<u8> {
    xchacha_seal(dk.as_bytes(), domain::RECORD_META, &record.0, meta)
}

pub fn open_meta(
    dk: &DataKey,
    record: &RecordId,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    xchacha_open(dk.as_bytes(), domain::RECORD_META, &record.0, sealed)
}

fn reason_aad(requester: &AccountId, patient: &AccountId) -> Vec<u8> {
    [requester.0.as_slice(), patient.0.as_slice()].concat()
}

/// Seals an access request's reason to the patient, bound to the requester and the patient
/// (so it cannot be copied into someone else's request).
pub fn seal_reason(
    patient_key: &EncryptionKey,
    requester: &AccountId,
    patient: &AccountId,
    reason: &str,
) -> Result<SealedKey, EnvelopeError> {
    seal(
        patient_key,
        domain::HPKE_REASON,
        &reason_aad(requester, patient),
        reason.as_bytes(),
    )
}

impl EncryptionKeypair {
    /// Opens an access request's reason sealed with [`seal_reason`].
    pub fn open_reason(
        &self,
        sealed: &SealedKey,
        requester: &AccountId,
        patient: &AccountId,
    ) -> Result<String, EnvelopeError> {
        let pt = self.open(sealed, domain::HPKE_REASON, &reason_aad(requester, patient))?;
        Ok(String::from_utf8_lossy(&pt).to_string())
    }
}

fn commitment_mac(dk: &DataKey) -> hmac::Hmac<Sha256> {
    let mut k = Zeroizing::new([0u8; 32]);
    hkdf::Hkdf::<Sha256>::new(None, dk.as_bytes())
        .expand(domain::COMMITMENT_KEY, k.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(k.as_ref())
        .expect("HMAC takes keys of any length")
}

/// What encrypting a stream produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encrypted {
    /// SHA-256 of the ciphertext: the digest of its CID.
    pub content: Hash,
    /// Ciphertext bytes written.
    pub size: u64,
    /// Plaintext bytes read.
    pub plaintext_size: u64,
    /// Keyed commitment to the plaintext.
    pub commitment: Hash,
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn chunk_aad(record: &RecordId) -> Vec<u8> {
    let mut aad = domain::RECORD_CONTENT.to_vec();
    aad.extend_from_slice(&record.0);
    aad
}

/// Encrypts `input` to `output` in constant memory (two chunks of buffer).
pub fn encrypt_stream(
    dk: &DataKey,
    record: &RecordId,
    mut input: impl Read,
    mut output: impl Write,
) -> Result<Encrypted, EnvelopeError> {
    let nonce: [u8; STREAM_NONCE] = random();
    let mut enc = EncryptorBE32::<XChaCha20Poly1305>::new(
        &chacha20poly1305::Key::from(*dk.as_bytes()),
        &nonce.into(),
    );
    let aad = chunk_aad(record);
    let mut hasher = Sha256::new();
    let mut mac = commitment_mac(dk);
    let mut write = |bytes: &[u8], out: &mut dyn Write| -> std::io::Result<()> {
        hasher.update(bytes);
        out.write_all(bytes)
    };
    let mut size = 0u64;
    let mut plaintext_size = 0u64;
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&nonce);
    write(&header, &mut output)?;
    size += header.len() as u64;
    let mut cur = Vec::with_capacity(CHUNK + TAG);
    cur.resize(CHUNK, 0);
    let mut n = fill(&mut input, &mut cur)?;
    let mut next = vec![0u8; CHUNK];
    loop {
        cur.truncate(n);
        mac.update(&cur);
        plaintext_size += n as u64;
        // Look one chunk ahead: the last chunk is flagged as last.
        let m = if n == CHUNK {
            fill(&mut input, &mut next)?
        } else {
            0
        };
        if m == 0 {
            enc.encrypt_last_in_place(&aad, &mut cur)
                .map_err(|_| EnvelopeError::Chunk(0))?;
            write(&cur, &mut output)?;
            size += cur.len() as u64;
            break;
        }
        enc.encrypt_next_in_place(&aad, &mut cur)
            .map_err(|_| EnvelopeError::Chunk(0))?;
        write(&cur, &mut output)?;
        size += cur.len() as u64;
        cur.zeroize();
        cur.clear();
        cur.extend_from_slice(&next[..m]);
        cur.resize(CHUNK, 0);
        n = m;
    }
    cur.zeroize();
    next.zeroize();
    output.flush()?;
    Ok(Encrypted {
        content: Hash(hasher.finalize().into()),
        size,
        plaintext_size,
        commitment: Hash(mac.finalize().into_bytes().into()),
    })
}

/// Decrypts a stream made by [`encrypt_stream`] to `output`; returns the plaintext commitment
/// so the caller can compare it with the ledger's. Output written before an error must be
/// discarded by the caller (write to a temporary file and rename on success).
pub fn decrypt_stream(
    dk: &DataKey,
    record: &RecordId,
    mut input: impl Read,
    mut output: impl Write,
) -> Result<Hash, EnvelopeError> {
    let mut header = [0u8; HEADER];
    if fill(&mut input, &mut header)? != HEADER || &header[..MAGIC.len()] != MAGIC {
        return Err(EnvelopeError::BadHeader);
    }
    let nonce: [u8; STREAM_NONCE] = header[MAGIC.len()..].try_into().expect("sized");
    let mut dec = DecryptorBE32::<XChaCha20Poly1305>::new(
        &chacha20poly1305::Key::from(*dk.as_bytes()),
        &nonce.into(),
    );
    let aad = chunk_aad(record);
    let mut mac = commitment_mac(dk);
    let mut cur = vec![0u8; CHUNK + TAG];
    let mut n = fill(&mut input, &mut cur)?;
    let mut next = vec![0u8; CHUNK + TAG];
    let mut index = 0u64;
    loop {
        cur.truncate(n);
        let m = if n == CHUNK + TAG {
            fill(&mut input, &mut next)?
        } else {
            0
        };
        if m == 0 {
            dec.decrypt_last_in_place(&aad, &mut cur)
                .map_err(|_| EnvelopeError::Chunk(index))?;
            mac.update(&cur);
            output.write_all(&cur)?;
            break;
        }
        dec.decrypt_next_in_place(&aad, &mut cur)
            .map_err(|_| EnvelopeError::Chunk(index))?;
        mac.update(&cur);
        output.write_all(&cur)?;
        cur.zeroize();
        cur.clear();
        cur.extend_from_slice(&next[..m]);
        n = m;
        index += 1;
    }
    cur.zeroize();
    output.flush()?;
    Ok(Hash(mac.finalize().into_bytes().into()))
}

/// Encrypts bytes in memory (small records, profiles).
pub fn encrypt_bytes(dk: &DataKey, record: &RecordId, plaintext: &[u8]) -> (Vec<u8>, Encrypted) {
    let mut out =
        Vec::with_capacity(plaintext.len() + HEADER + TAG * (plaintext.len() / CHUNK + 1));
    let e = encrypt_stream(dk, record, plaintext, &mut out).expect("in-memory IO cannot fail");
    (out, e)
}

/// Decrypts bytes in memory.
pub fn decrypt_bytes(
    dk: &DataKey,
    record: &RecordId,
    ciphertext: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, Hash), EnvelopeError> {
    let mut out = Zeroizing::new(Vec::new());
    let c = decrypt_stream(dk, record, ciphertext, &mut *out)?;
    Ok((out, c))
}

/// SHA-256 of `bytes` (the digest of a raw-codec CIDv1).
pub fn content_hash(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

/// A fresh random record id.
pub fn new_record_id() -> RecordId {
    RecordId(random())
}
