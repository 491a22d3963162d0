//! Record encryption: round trips at chunk boundaries, and every kind of tampering refused.

use ehrchain_crypto::{
    CategoryKey, DataKey, Keypair,
    envelope::{self, CHUNK, EnvelopeError, HEADER},
};
use ehrchain_types::{AccountId, Category, RecordId};

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn round_trips_at_every_chunk_boundary() {
    let dk = DataKey::generate();
    let id = RecordId([1; 16]);
    for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7] {
        let pt = data(n);
        let (ct, e) = envelope::encrypt_bytes(&dk, &id, &pt);
        assert_eq!(e.size as usize, ct.len());
        assert_eq!(e.plaintext_size as usize, n);
        assert_eq!(e.content, envelope::content_hash(&ct));
        let chunks = n.div_ceil(CHUNK).max(1);
        assert_eq!(ct.len(), HEADER + n + 16 * chunks, "size for {n}");
        let (back, commitment) = envelope::decrypt_bytes(&dk, &id, &ct).unwrap();
        assert_eq!(*back, pt);
        assert_eq!(commitment, e.commitment);
        // The same plaintext under a fresh data key gives an unrelated commitment.
        let (_, e2) = envelope::encrypt_bytes(&DataKey::generate(), &id, &pt);
        assert_ne!(e2.commitment, e.commitment);
    }
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
