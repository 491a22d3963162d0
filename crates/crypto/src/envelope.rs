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
//! - Content is padded before encryption so that its length says little about it: to
//!   [`PAD_FLOOR`] bytes at least, and above that to the Padmé buckets of Nikitin et al.,
//!   "Reducing Metadata Leakage from Encrypted Files and Communication with PURBs" (PETS 2019),
//!   which leak O(log log L) bits of a length L for at most 12 % overhead. The padding is
//!   ISO/IEC 7816-4 (one `0x80` byte, then zeros) inside the encryption, so it is authenticated
//!   and the decryptor removes it while streaming by holding back only the last non-zero byte
//!   and a count of the zeros after it.
//! - Record metadata (title, file name) is padded to a fixed [`META_PADDED_LEN`] bytes before
//!   encryption, so every sealed metadata has the same length, [`SEALED_META_LEN`].
//! - The ledger carries an HMAC-SHA256 commitment to the plaintext under a key derived from the
//!   data key: only a key holder can check it, and it cannot be guessed from low-entropy data.
//!   It commits to the real plaintext, never to the padding.
//!
//! Content stream format, version 2 (the one written):
//!
//! ```text
//! "EHRCSTR2" ‖ nonce (19 bytes) ‖ STREAM chunks of P ‖ 0x80 ‖ 0x00…
//! ```
//!
//! where the padded plaintext is [`padded_len`]`(|P|)` bytes and every chunk's associated data
//! is `domain::RECORD_CONTENT ‖ "EHRCSTR2" ‖ record id`. Version 1 (`"EHRCSTR1"`, no padding,
//! associated data without the magic) is still read. Binding the magic into the associated
//! data means a version-2 stream relabelled as version 1, or the reverse, fails to
//! authenticate instead of decrypting into the wrong bytes.

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
/// Magic at the start of every content stream written now, with the format version (2: padded).
pub const MAGIC: &[u8; 8] = b"EHRCSTR2";
/// Magic of the first, unpadded format, which is still read.
const MAGIC_V1: &[u8; 8] = b"EHRCSTR1";
/// The magic without its version digit.
const MAGIC_PREFIX: &[u8; 7] = b"EHRCSTR";
/// ISO/IEC 7816-4 padding marker: the first padding byte; all padding bytes after it are zero.
const PAD_MARKER: u8 = 0x80;
/// Smallest padded plaintext, so that every small record (a "positive" or "negative" result,
/// a short note) encrypts to the same length.
pub const PAD_FLOOR: u64 = 256;
/// Record metadata is padded to exactly this many bytes before encryption.
pub const META_PADDED_LEN: usize = 512;
/// Longest record metadata accepted: the padding needs at least its marker byte.
pub const MAX_META_LEN: usize = META_PADDED_LEN - 1;
/// Length of every sealed metadata written now: nonce, padded metadata, tag.
pub const SEALED_META_LEN: usize = 24 + META_PADDED_LEN + TAG;
// The ledger refuses any other length.
const _: () = assert!(SEALED_META_LEN == ehrchain_types::records::SEALED_META_BYTES);
/// Appended to the metadata's associated data to mark the padded format (version 2). Version
/// 1 metadata has no prefix that could carry a version, so the version lives in the associated
/// data: neither format's ciphertext authenticates as the other.
const META_V2: &[u8] = b"|padded-512";
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
    #[error(
        "encrypted stream format version {0:?} is not supported by this client (it reads versions 1 and 2)"
    )]
    UnsupportedVersion(char),
    #[error("the decrypted data's padding is malformed (it was not written by an ehrchain client)")]
    Padding,
    #[error(
        "the record metadata (title, file name) is {len} bytes encoded, over the limit of {max} bytes: use a shorter title or file name"
    )]
    MetaTooLong { len: usize, max: usize },
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

pub(crate) fn random<const N: usize>() -> [u8; N] {
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

/// Associated data of version-2 (padded) metadata.
fn meta_aad_v2(record: &RecordId) -> Vec<u8> {
    [META_V2, record.0.as_slice()].concat()
}

/// Removes ISO/IEC 7816-4 padding from bytes held in memory: everything after the last
/// non-zero byte is padding, and that byte must be the marker.
fn unpad(padded: &[u8]) -> Result<&[u8], EnvelopeError> {
    match padded.iter().rposition(|&b| b != 0) {
        Some(p) if padded[p] == PAD_MARKER => Ok(&padded[..p]),
        _ => Err(EnvelopeError::Padding),
    }
}

/// Encrypts a record's metadata (JSON) under its data key, padded to [`META_PADDED_LEN`]
/// bytes so that every sealed metadata is [`SEALED_META_LEN`] bytes long whatever the title
/// or file name. Refuses metadata longer than [`MAX_META_LEN`].
pub fn seal_meta(dk: &DataKey, record: &RecordId, meta: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    if meta.len() > MAX_META_LEN {
        return Err(EnvelopeError::MetaTooLong {
            len: meta.len(),
            max: MAX_META_LEN,
        });
    }
    let mut padded = Zeroizing::new(vec![0u8; META_PADDED_LEN]);
    padded[..meta.len()].copy_from_slice(meta);
    padded[meta.len()] = PAD_MARKER;
    let sealed = xchacha_seal(
        dk.as_bytes(),
        domain::RECORD_META,
        &meta_aad_v2(record),
        &padded,
    );
    assert_eq!(
        sealed.len(),
        SEALED_META_LEN,
        "sealed metadata has one length"
    );
    Ok(sealed)
}

/// Decrypts metadata sealed with [`seal_meta`], or in the unpadded version-1 format.
pub fn open_meta(
    dk: &DataKey,
    record: &RecordId,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    if sealed.len() == SEALED_META_LEN
        && let Ok(padded) = xchacha_open(
            dk.as_bytes(),
            domain::RECORD_META,
            &meta_aad_v2(record),
            sealed,
        )
    {
        return Ok(Zeroizing::new(unpad(&padded)?.to_vec()));
    }
    // Version 1 metadata, written before padding, has any length; a version-2 ciphertext
    // never authenticates here because its associated data differs.
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
    /// Plaintext bytes read (without the padding).
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

/// Padmé (Nikitin et al., PETS 2019, section 4): rounds `len` up by zeroing its last
/// E − S bits, where E = ⌊log₂ len⌋ and S = ⌊log₂ E⌋ + 1. Only the top S bits of the length
/// remain free, so a length leaks O(log log len) bits, and the overhead is at most
/// 2^(E−S) − 1 bytes, under 12 % and shrinking as files grow.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        // ⌊log₂ L⌋ is undefined for L = 0, and ⌊log₂ E⌋ for L = 1 (E = 0); neither length has
        // low bits to round.
        return len;
    }
    let e = u64::from(len.ilog2());
    let s = u64::from(e.ilog2()) + 1;
    let mask = (1u64 << (e - s)) - 1;
    len.checked_add(mask)
        .expect("lengths within 2^57 bytes of 2^64 cannot be streamed (STREAM ends at 2^32 chunks)")
        & !mask
}

/// Length of the padded plaintext of a `plaintext_len`-byte record: the Padmé bucket of the
/// plaintext plus its one-byte padding marker, and never below [`PAD_FLOOR`]. Padding to at
/// least one byte keeps the ISO/IEC 7816-4 marker unambiguous even when the plaintext already
/// sits on a bucket boundary.
pub fn padded_len(plaintext_len: u64) -> u64 {
    padme(plaintext_len + 1).max(PAD_FLOOR)
}

/// Length of the ciphertext that [`encrypt_stream`] writes for a `plaintext_len`-byte record:
/// the header, the padded plaintext and one tag per 64 KiB chunk. It depends on the plaintext
/// length only through its bucket.
pub fn ciphertext_len(plaintext_len: u64) -> u64 {
    let padded = padded_len(plaintext_len);
    HEADER as u64 + padded + TAG as u64 * padded.div_ceil(CHUNK as u64)
}

/// Associated data of every chunk. Version 2 binds the magic, so that a stream cannot be
/// relabelled from one version to the other and decrypt into the wrong bytes.
fn chunk_aad(record: &RecordId, version: Version) -> Vec<u8> {
    let mut aad = domain::RECORD_CONTENT.to_vec();
    if version == Version::Padded {
        aad.extend_from_slice(MAGIC);
    }
    aad.extend_from_slice(&record.0);
    aad
}

/// The content stream formats this client reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    /// `EHRCSTR1`: the plaintext unpadded, the magic not in the associated data.
    Unpadded,
    /// `EHRCSTR2`: the plaintext padded to [`padded_len`], the magic in the associated data.
    Padded,
}

/// The plaintext followed by its padding, read as one stream: the input's bytes feed the
/// commitment and are counted as they pass; at the input's end come the marker and the zeros
/// up to [`padded_len`]. Nothing is buffered, so memory stays constant.
struct PaddedReader<R> {
    input: R,
    mac: hmac::Hmac<Sha256>,
    plaintext: u64,
    /// Padding bytes still to emit, once the input has ended; `None` before.
    padding: Option<u64>,
    /// Whether the marker has been emitted.
    marked: bool,
}

impl<R: Read> Read for PaddedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.padding.is_none() {
            let n = self.input.read(buf)?;
            if n > 0 {
                self.mac.update(&buf[..n]);
                self.plaintext += n as u64;
                return Ok(n);
            }
            self.padding = Some(padded_len(self.plaintext) - self.plaintext);
        }
        let left = self.padding.as_mut().expect("set above");
        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
        buf[..n].fill(0);
        if n > 0 && !self.marked {
            buf[0] = PAD_MARKER;
            self.marked = true;
        }
        *left -= n as u64;
        Ok(n)
    }
}

/// Encrypts `input` to `output` in constant memory (two chunks of buffer), padded to its
/// bucket (see the module docs for the format).
pub fn encrypt_stream(
    dk: &DataKey,
    record: &RecordId,
    input: impl Read,
    mut output: impl Write,
) -> Result<Encrypted, EnvelopeError> {
    let nonce: [u8; STREAM_NONCE] = random();
    let mut enc = EncryptorBE32::<XChaCha20Poly1305>::new(
        &chacha20poly1305::Key::from(*dk.as_bytes()),
        &nonce.into(),
    );
    let aad = chunk_aad(record, Version::Padded);
    let mut hasher = Sha256::new();
    let mut input = PaddedReader {
        input,
        mac: commitment_mac(dk),
        plaintext: 0,
        padding: None,
        marked: false,
    };
    let mut write = |bytes: &[u8], out: &mut dyn Write| -> std::io::Result<()> {
        hasher.update(bytes);
        out.write_all(bytes)
    };
    let mut size = 0u64;
    let mut padded = 0u64;
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
        padded += n as u64;
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
    let plaintext_size = input.plaintext;
    assert_eq!(padded, padded_len(plaintext_size), "padded to the bucket");
    assert_eq!(size, ciphertext_len(plaintext_size), "ciphertext length");
    Ok(Encrypted {
        content: Hash(hasher.finalize().into()),
        size,
        plaintext_size,
        commitment: Hash(input.mac.finalize().into_bytes().into()),
    })
}

/// Where decrypted chunks go: to the output and the commitment, with the padding of a
/// version-2 stream held back and removed. Only the last non-zero byte seen and the count of
/// zeros after it are held back — the zeros are all alike, so they need no buffer — and they
/// are released when a later non-zero byte shows they were plaintext after all.
struct Unpadder<W> {
    output: W,
    mac: hmac::Hmac<Sha256>,
    version: Version,
    /// Plaintext bytes released to the output.
    written: u64,
    /// The last non-zero byte, held back: at the end it must be the padding marker.
    held: Option<u8>,
    /// Zero bytes after `held` (or from the start), held back.
    zeros: u64,
}

impl<W: Write> Unpadder<W> {
    fn release(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.mac.update(bytes);
        self.written += bytes.len() as u64;
        self.output.write_all(bytes)
    }

    fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        if self.version == Version::Unpadded {
            return self.release(chunk);
        }
        let Some(p) = chunk.iter().rposition(|&b| b != 0) else {
            self.zeros += chunk.len() as u64;
            return Ok(());
        };
        if let Some(b) = self.held.take() {
            self.release(&[b])?;
        }
        const ZEROS: [u8; 4096] = [0; 4096];
        while self.zeros > 0 {
            let k = usize::try_from(self.zeros)
                .unwrap_or(usize::MAX)
                .min(ZEROS.len());
            self.release(&ZEROS[..k])?;
            self.zeros -= k as u64;
        }
        self.release(&chunk[..p])?;
        self.held = Some(chunk[p]);
        self.zeros = (chunk.len() - p - 1) as u64;
        Ok(())
    }

    /// Checks that what is held back is exactly the padding [`encrypt_stream`] writes (the
    /// marker, then zeros up to the bucket) and returns the commitment to the plaintext.
    fn finish(mut self) -> Result<Hash, EnvelopeError> {
        if self.version == Version::Padded {
            let padded = self.written + 1 + self.zeros;
            if self.held != Some(PAD_MARKER) || padded != padded_len(self.written) {
                return Err(EnvelopeError::Padding);
            }
        }
        self.output.flush()?;
        Ok(Hash(self.mac.finalize().into_bytes().into()))
    }
}

/// Decrypts a stream made by [`encrypt_stream`] (or by a version-1 client) to `output`,
/// without its padding; returns the plaintext commitment so the caller can compare it with
/// the ledger's. Output written before an error must be discarded by the caller (write to a
/// temporary file and rename on success).
pub fn decrypt_stream(
    dk: &DataKey,
    record: &RecordId,
    mut input: impl Read,
    output: impl Write,
) -> Result<Hash, EnvelopeError> {
    let mut header = [0u8; HEADER];
    if fill(&mut input, &mut header)? != HEADER || &header[..MAGIC_PREFIX.len()] != MAGIC_PREFIX {
        return Err(EnvelopeError::BadHeader);
    }
    let version = match &header[..MAGIC.len()] {
        m if m == MAGIC => Version::Padded,
        m if m == MAGIC_V1 => Version::Unpadded,
        m => {
            return Err(EnvelopeError::UnsupportedVersion(char::from(
                m[MAGIC.len() - 1],
            )));
        }
    };
    let nonce: [u8; STREAM_NONCE] = header[MAGIC.len()..].try_into().expect("sized");
    let mut dec = DecryptorBE32::<XChaCha20Poly1305>::new(
        &chacha20poly1305::Key::from(*dk.as_bytes()),
        &nonce.into(),
    );
    let aad = chunk_aad(record, version);
    let mut sink = Unpadder {
        output,
        mac: commitment_mac(dk),
        version,
        written: 0,
        held: None,
        zeros: 0,
    };
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
            sink.push(&cur)?;
            break;
        }
        dec.decrypt_next_in_place(&aad, &mut cur)
            .map_err(|_| EnvelopeError::Chunk(index))?;
        sink.push(&cur)?;
        cur.zeroize();
        cur.clear();
        cur.extend_from_slice(&next[..m]);
        n = m;
        index += 1;
    }
    cur.zeroize();
    next.zeroize();
    sink.finish()
}

/// Encrypts bytes in memory (small records, profiles).
pub fn encrypt_bytes(dk: &DataKey, record: &RecordId, plaintext: &[u8]) -> (Vec<u8>, Encrypted) {
    let capacity = usize::try_from(ciphertext_len(plaintext.len() as u64)).unwrap_or(0);
    let mut out = Vec::with_capacity(capacity);
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

/// A fresh record id: this machine's clock, then 10 random bytes
/// ([`RecordId::time_ordered`]), so the records a client writes sort in the order it wrote
/// them (to the millisecond, while its clock does not step back).
pub fn new_record_id() -> RecordId {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    RecordId::time_ordered(now_ms, random())
}

/// A record id with no clock in it, all 16 bytes random: for a record whose id the public
/// sees (an account's profile record, named in the public account view), where a clock would
/// tell anyone when the account made it. It lands at a random place in the state tree.
pub fn random_record_id() -> RecordId {
    RecordId(random())
}
