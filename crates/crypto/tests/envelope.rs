//! Record encryption: round trips at chunk and padding-bucket boundaries, lengths that hide
//! the plaintext's, the previous format still read, and every kind of tampering refused.

use aead_stream::EncryptorBE32;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce, aead::Aead, aead::Payload};
use ehrchain_crypto::{
    CategoryKey, DataKey, Keypair,
    envelope::{
        self, CHUNK, EnvelopeError, HEADER, MAGIC, MAX_META_LEN, META_PADDED_LEN, PAD_FLOOR,
        SEALED_META_LEN,
    },
};
use ehrchain_types::{AccountId, Category, Hash, RecordId, domain};
use hmac::Mac;
use sha2::Sha256;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// The commitment computed independently of the envelope: HMAC-SHA256 over the given bytes
/// under HKDF-SHA256(data key, "commitment key" tag).
fn commitment_of(dk: &DataKey, plaintext: &[u8]) -> Hash {
    let mut k = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, dk.as_bytes())
        .expand(domain::COMMITMENT_KEY, &mut k)
        .unwrap();
    let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&k).unwrap();
    mac.update(plaintext);
    Hash(mac.finalize().into_bytes().into())
}

/// Encrypts and decrypts `pt`, checking the length against the bucket, the exact bytes back,
/// and that the commitment is to the unpadded plaintext.
fn check_round_trip(dk: &DataKey, id: &RecordId, pt: &[u8]) {
    let n = pt.len();
    let (ct, e) = envelope::encrypt_bytes(dk, id, pt);
    assert_eq!(e.size as usize, ct.len());
    assert_eq!(e.plaintext_size as usize, n);
    assert_eq!(e.content, envelope::content_hash(&ct));
    let padded = envelope::padded_len(n as u64) as usize;
    assert!(
        padded > n && padded >= PAD_FLOOR as usize,
        "padded {padded} for {n}"
    );
    let chunks = padded.div_ceil(CHUNK);
    assert_eq!(ct.len(), HEADER + padded + 16 * chunks, "size for {n}");
    assert_eq!(ct.len() as u64, envelope::ciphertext_len(n as u64));
    assert_eq!(e.commitment, commitment_of(dk, pt), "commitment for {n}");
    let (back, commitment) = envelope::decrypt_bytes(dk, id, &ct).unwrap();
    assert_eq!(back.len(), n, "length back for {n}");
    assert!(*back == pt, "bytes back for {n}");
    assert_eq!(commitment, e.commitment);
}

#[test]
fn round_trips_at_every_chunk_and_bucket_boundary() {
    let dk = DataKey::generate();
    let id = RecordId([1; 16]);
    let sizes = [
        0,
        1,
        255,
        256,
        257,
        271, // padded to 272 exactly: the marker and no zeros
        272,
        CHUNK - 2,
        CHUNK - 1, // padded to exactly one full chunk
        CHUNK,
        CHUNK + 1,
        2 * CHUNK,
        3 * CHUNK + 7,
        3 << 20,
        (5 << 20) + 3,
    ];
    for n in sizes {
        check_round_trip(&dk, &id, &data(n));
    }
    // The same plaintext under a fresh data key gives an unrelated commitment.
    let (_, a) = envelope::encrypt_bytes(&dk, &id, b"positive");
    let (_, b) = envelope::encrypt_bytes(&DataKey::generate(), &id, b"positive");
    assert_ne!(a.commitment, b.commitment);
}

#[test]
fn plaintexts_that_look_like_padding_survive() {
    let dk = DataKey::generate();
    let id = RecordId([6; 16]);
    let mut ends_like_padding = data(1000);
    ends_like_padding.extend_from_slice(&[0x80, 0, 0, 0]);
    let mut marker_at_chunk_end = data(CHUNK - 1);
    marker_at_chunk_end.push(0x80);
    let cases = [
        vec![0u8; 300],
        vec![0u8; 3 * CHUNK + 5], // zeros held back across chunks, then released
        vec![0x80],
        vec![0x80; 256],
        ends_like_padding,
        marker_at_chunk_end,
        [data(CHUNK), vec![0; 2 * CHUNK], vec![9]].concat(),
    ];
    for pt in cases {
        check_round_trip(&dk, &id, &pt);
    }
}

#[test]
fn lengths_in_one_bucket_encrypt_to_one_length() {
    let dk = DataKey::generate();
    let id = RecordId([7; 16]);
    let len = |pt: &[u8]| envelope::encrypt_bytes(&dk, &id, pt).0.len();
    // Short results cannot be told apart, nor from an empty record.
    let small = HEADER + PAD_FLOOR as usize + 16;
    assert_eq!(len(b"positive"), small);
    assert_eq!(len(b"negative"), small);
    assert_eq!(len(b"inconclusive, repeat in 2 weeks"), small);
    assert_eq!(len(b""), small);
    assert_eq!(len(&data(255)), small);
    assert_eq!(len(&data(1000)), len(&data(1010)));
    assert_eq!(len(&data(1_000_000)), len(&data(1_010_000)));
    // The next bucket is longer: the test can fail if buckets collapse.
    assert!(len(&data(256)) > small);
    assert!(len(&data(1_020_000)) > len(&data(1_000_000)));
}

#[test]
fn padded_lengths_follow_padme_with_a_floor() {
    fn check(plaintext_len: u64, padded: u64) {
        assert_eq!(
            envelope::padded_len(plaintext_len),
            padded,
            "for {plaintext_len}"
        );
    }
    // Padmé (PETS 2019): E = ⌊log₂ L⌋, S = ⌊log₂ E⌋ + 1, the last E − S bits rounded up, of the
    // plaintext length plus its one marker byte.
    check(0, 256);
    check(57, 256);
    check(255, 256);
    check(256, 272); // 257: E = 8, S = 4, multiples of 16
    check(1000, 1024); // 1001: E = 9, S = 4, multiples of 32
    check(65535, 65536);
    check(65536, 67584); // 65537: E = 16, S = 5, multiples of 2048
    check(1_000_000, 1_015_808); // E = 19, S = 5, multiples of 16384
    check(100_000_000, 100_663_296); // E = 26, S = 5, multiples of 2 MiB
    assert_eq!(envelope::padme(0), 0);
    assert_eq!(envelope::padme(1), 1);
    assert_eq!(envelope::padme(9), 10);
    // Above the floor the overhead stays within Padmé's bound, and every length fits.
    let mut l = 1u64;
    while l < 1 << 40 {
        for x in [l - 1, l, l + 1, l + l / 3] {
            let p = envelope::padded_len(x);
            assert!(p > x, "{x}");
            if x >= PAD_FLOOR {
                assert!((p - x) as f64 / x as f64 <= 0.12, "{x} -> {p}");
            }
        }
        l *= 2;
    }
}

/// Writes a version-2 stream around `padded` as it is: lets a test build a stream whose
/// padding is wrong yet authenticates, which the envelope itself never writes.
fn craft_v2(dk: &DataKey, id: &RecordId, padded: &[u8]) -> Vec<u8> {
    craft(dk, id, padded, MAGIC, true)
}

fn craft(dk: &DataKey, id: &RecordId, pt: &[u8], magic: &[u8; 8], bind_magic: bool) -> Vec<u8> {
    let nonce = [3u8; 19];
    let mut enc = EncryptorBE32::<XChaCha20Poly1305>::new(
        &chacha20poly1305::Key::from(*dk.as_bytes()),
        &nonce.into(),
    );
    let mut aad = domain::RECORD_CONTENT.to_vec();
    if bind_magic {
        aad.extend_from_slice(magic);
    }
    aad.extend_from_slice(&id.0);
    let mut out = magic.to_vec();
    out.extend_from_slice(&nonce);
    let chunks: Vec<&[u8]> = if pt.is_empty() {
        vec![&[]]
    } else {
        pt.chunks(CHUNK).collect()
    };
    let (last, rest) = chunks.split_last().unwrap();
    for c in rest {
        out.extend_from_slice(&enc.encrypt_next(Payload { msg: c, aad: &aad }).unwrap());
    }
    out.extend_from_slice(
        &enc.encrypt_last(Payload {
            msg: last,
            aad: &aad,
        })
        .unwrap(),
    );
    out
}

#[test]
fn malformed_or_tampered_padding_is_refused() {
    let dk = DataKey::generate();
    let id = RecordId([8; 16]);
    let pt = b"negative".to_vec();
    let pad = |pt: &[u8], marker: u8, total: usize| {
        let mut v = pt.to_vec();
        v.push(marker);
        v.resize(total, 0);
        v
    };
    // The control: a crafted stream with the right padding opens, so the cases below fail
    // because of their padding and nothing else.
    let good = craft_v2(&dk, &id, &pad(&pt, 0x80, 256));
    let (back, c) = envelope::decrypt_bytes(&dk, &id, &good).unwrap();
    assert_eq!(*back, pt);
    assert_eq!(c, commitment_of(&dk, &pt));
    let refused = |padded: Vec<u8>, why: &str| {
        assert_eq!(
            envelope::decrypt_bytes(&dk, &id, &craft_v2(&dk, &id, &padded)).unwrap_err(),
            EnvelopeError::Padding,
            "{why}"
        );
    };
    refused(pad(&pt, 0x81, 256), "wrong marker");
    refused(pad(&pt, 0x00, 256), "no marker");
    refused(pt.clone(), "no padding at all");
    refused(vec![0; 256], "nothing but zeros");
    refused(pad(&pt, 0x80, 255), "a padded length off the bucket");
    refused(pad(&pt, 0x80, 272), "the next bucket");
    refused(
        pad(&data(70_000), 0x80, 2 * CHUNK),
        "a short bucket over two chunks",
    );

    // Flipping a bit of the padding in a real stream breaks the last chunk's tag.
    let (ct, _) = envelope::encrypt_bytes(&dk, &id, &data(CHUNK + 10));
    let mut flipped = ct.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 1;
    assert_eq!(
        envelope::decrypt_bytes(&dk, &id, &flipped).unwrap_err(),
        EnvelopeError::Chunk(1)
    );
    // A stream cut at the end of its plaintext (padding dropped) does not open either.
    assert!(envelope::decrypt_bytes(&dk, &id, &ct[..HEADER + CHUNK + 16 + 10]).is_err());
}

/// A version-1 (unpadded) stream written by the previous release of this crate (plaintext
/// `old lab result: negative`, data key 32 × 0x07, record id 16 × 0x08).
const V1_STREAM: &str = "454852435354523181c7e66ca4f212b300df68dcc8bd8dfe00fad8af0a9a44d79bc88655538cfa51f32da13c263608687549d11d256bf54d0fb6e9f97c940116353aec";
const V1_COMMITMENT: &str = "07146ea69cb238a7e3db3c08f95669c4fec2b393ad7f436688c31c0baf2885f9";
/// Its metadata, sealed by that release.
const V1_META: &str = "ac6c2c01d9b13d7eb6e7c90bf83f11e9a9a15a3d9f6353aa40213d257034bb80474d95065a11e49c8e905cec99f082a167d62158d9da68f809bf30f8d5ea16b15077977a9ccd4d09ed73cdd88c143d1cd4dc3dc1549044eae15987eacf631018594fe34a5a93cb";

#[test]
fn the_unpadded_format_is_still_read_and_never_confused_with_the_padded_one() {
    let dk = DataKey::from_bytes([7; 32]);
    let id = RecordId([8; 16]);
    let v1 = hex::decode(V1_STREAM).unwrap();
    let pt = b"old lab result: negative";
    let (back, c) = envelope::decrypt_bytes(&dk, &id, &v1).unwrap();
    assert_eq!(*back, pt);
    assert_eq!(c, V1_COMMITMENT.parse::<Hash>().unwrap());
    // The commitment does not depend on the format: the ledger's stays valid.
    let (v2, e) = envelope::encrypt_bytes(&dk, &id, pt);
    assert_eq!(e.commitment, c);
    assert_eq!(&v2[..8], b"EHRCSTR2");

    // Relabelled either way, a stream does not authenticate: never padded bytes passed off
    // as plaintext, never plaintext cut as if it were padded.
    let mut down = v2.clone();
    down[7] = b'1';
    assert_eq!(
        envelope::decrypt_bytes(&dk, &id, &down).unwrap_err(),
        EnvelopeError::Chunk(0)
    );
    let mut up = v1.clone();
    up[7] = b'2';
    assert_eq!(
        envelope::decrypt_bytes(&dk, &id, &up).unwrap_err(),
        EnvelopeError::Chunk(0)
    );
    // A padded plaintext written in the version-1 layout comes back with its padding: that is
    // why version 2 binds its magic into the associated data.
    let padded_as_v1 = craft(&dk, &id, &[&pt[..], &[0x80]].concat(), b"EHRCSTR1", false);
    assert_eq!(
        envelope::decrypt_bytes(&dk, &id, &padded_as_v1)
            .unwrap()
            .0
            .len(),
        pt.len() + 1
    );
    // A future version is named, not guessed at.
    let mut future = v2.clone();
    future[7] = b'9';
    let err = envelope::decrypt_bytes(&dk, &id, &future).unwrap_err();
    assert_eq!(err, EnvelopeError::UnsupportedVersion('9'));
    assert!(
        err.to_string().contains("version '9' is not supported"),
        "{err}"
    );

    let meta = envelope::open_meta(&dk, &id, &hex::decode(V1_META).unwrap()).unwrap();
    assert_eq!(
        *meta,
        br#"{"title":"Knee MRI","file_name":"knee.dcm","plaintext_size":24}"#
    );
}

#[test]
fn record_meta_has_one_length_and_a_limit() {
    let dk = DataKey::generate();
    let id = RecordId([9; 16]);
    let metas: [&[u8]; 5] = [
        b"",
        b"{}",
        br#"{"title":"HIV test","file_name":"r.txt","plaintext_size":8}"#,
        br#"{"title":"Routine blood count, annual check-up","file_name":"blood-count-2026-03-14.pdf","plaintext_size":123456789}"#,
        &[b'x'; MAX_META_LEN],
    ];
    for m in metas {
        let sealed = envelope::seal_meta(&dk, &id, m).unwrap();
        assert_eq!(sealed.len(), SEALED_META_LEN, "for {} bytes", m.len());
        assert_eq!(SEALED_META_LEN, 24 + META_PADDED_LEN + 16);
        let back = envelope::open_meta(&dk, &id, &sealed).unwrap();
        assert_eq!(*back, m);
        assert!(envelope::open_meta(&dk, &RecordId([1; 16]), &sealed).is_err());
        assert!(envelope::open_meta(&DataKey::generate(), &id, &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(envelope::open_meta(&dk, &id, &flipped).is_err());
    }
    // The sealed metadata fits the ledger's limit.
    const { assert!(SEALED_META_LEN == ehrchain_types::records::SEALED_META_BYTES) };

    let err = envelope::seal_meta(&dk, &id, &[b'x'; MAX_META_LEN + 1]).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::MetaTooLong {
            len: MAX_META_LEN + 1,
            max: MAX_META_LEN
        }
    );
    assert!(err.to_string().contains("limit of 511 bytes"), "{err}");

    // Metadata whose padding is wrong but authenticates is refused, not cut at a guess.
    let mut aad = domain::RECORD_META.to_vec();
    aad.extend_from_slice(b"|padded-512");
    aad.extend_from_slice(&id.0);
    let nonce = [5u8; 24];
    let unmarked = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*dk.as_bytes()))
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &[b'{'; META_PADDED_LEN],
                aad: &aad,
            },
        )
        .unwrap();
    let sealed = [&nonce[..], &unmarked].concat();
    assert_eq!(sealed.len(), SEALED_META_LEN);
    assert_eq!(
        envelope::open_meta(&dk, &id, &sealed).unwrap_err(),
        EnvelopeError::Padding
    );
}

#[test]
fn tampering_truncation_and_wrong_keys_fail() {
    let dk = DataKey::generate();
    let id = RecordId([2; 16]);
    let pt = data(2 * CHUNK + 100);
    let (ct, _) = envelope::encrypt_bytes(&dk, &id, &pt);
    let mut flipped = ct.clone();
    flipped[HEADER + CHUNK + 40] ^= 1;
    assert_eq!(
        envelope::decrypt_bytes(&dk, &id, &flipped).unwrap_err(),
        EnvelopeError::Chunk(1)
    );
    // Cut exactly after the first full chunk: that chunk was not flagged as the last one.
    let cut = &ct[..HEADER + CHUNK + 16];
    assert!(envelope::decrypt_bytes(&dk, &id, cut).is_err());
    assert!(envelope::decrypt_bytes(&dk, &id, &ct[..ct.len() - 1]).is_err());
    assert_eq!(
        envelope::decrypt_bytes(&dk, &id, &ct[..5]).unwrap_err(),
        EnvelopeError::BadHeader
    );
    assert!(envelope::decrypt_bytes(&DataKey::generate(), &id, &ct).is_err());
    // The record id is bound: the same ciphertext under another id does not open.
    assert!(envelope::decrypt_bytes(&dk, &RecordId([3; 16]), &ct).is_err());
}

#[test]
fn key_wrapping_is_bound_to_recipient_record_and_epoch() {
    let alice = Keypair::from_seed(&[1; 32]);
    let doc = Keypair::from_seed(&[2; 32]);
    let patient = AccountId([9; 20]);
    // The encryption key is derived deterministically from the signing seed.
    assert_eq!(
        alice.encryption().public(),
        Keypair::from_seed(&[1; 32]).encryption().public()
    );
    assert_ne!(alice.encryption().public(), doc.encryption().public());
    let ck = CategoryKey::generate();
    let sealed =
        envelope::seal_category_key(&doc.encryption().public(), &ck, &patient, Category::Lab, 3)
            .unwrap();
    let opened = doc
        .encryption()
        .open_category_key(&sealed, &patient, Category::Lab, 3)
        .unwrap();
    assert_eq!(opened.as_bytes(), ck.as_bytes());
    let other = alice
        .encryption()
        .open_category_key(&sealed, &patient, Category::Lab, 3);
    assert!(other.is_err());
    let wrong_epoch = doc
        .encryption()
        .open_category_key(&sealed, &patient, Category::Lab, 2);
    assert!(wrong_epoch.is_err());
    let wrong_cat = doc
        .encryption()
        .open_category_key(&sealed, &patient, Category::Imaging, 3);
    assert!(wrong_cat.is_err());

    let dk = DataKey::generate();
    let id = RecordId([4; 16]);
    let wrapped = envelope::wrap_data_key(&ck, &dk, &id);
    assert_eq!(wrapped.len(), 72);
    assert_eq!(
        envelope::unwrap_data_key(&ck, &wrapped, &id)
            .unwrap()
            .as_bytes(),
        dk.as_bytes()
    );
    assert!(envelope::unwrap_data_key(&ck, &wrapped, &RecordId([5; 16])).is_err());
    assert!(envelope::unwrap_data_key(&CategoryKey::generate(), &wrapped, &id).is_err());
    let direct = envelope::seal_data_key(&alice.encryption().public(), &dk, &id).unwrap();
    let back = alice.encryption().open_data_key(&direct, &id).unwrap();
    assert_eq!(back.as_bytes(), dk.as_bytes());
    assert!(
        alice
            .encryption()
            .open_data_key(&direct, &RecordId([5; 16]))
            .is_err()
    );
}

#[test]
fn new_record_ids_start_with_the_clock_and_sort_in_the_order_they_were_made() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let first = envelope::new_record_id();
    std::thread::sleep(std::time::Duration::from_millis(3));
    let second = envelope::new_record_id();
    assert!(first < second, "{first} then {second}");
    let mut clock = [0u8; 8];
    clock[2..].copy_from_slice(&first.0[..RecordId::TIME_BYTES]);
    let made = u64::from_be_bytes(clock);
    assert!(
        made >= before && made < before + 60_000,
        "{made} vs {before}"
    );
    // The rest is random: two ids of the same millisecond still differ.
    assert_ne!(
        envelope::new_record_id().0[6..],
        envelope::new_record_id().0[6..]
    );
}
