//! Pins the canonical encoding and hashes of a sample transaction and block: a format change
//! must be a conscious act (update these fixtures and say why), never "regenerate until green".

use ehrchain_types::{
    AccountId, Block, BlockHeader, Hash, PublicKey, Role, Signature, SignedTransaction,
    Transaction, TxPayload,
    block::{receipts_root, tx_root},
    decode, encode,
};

fn sample_tx() -> SignedTransaction {
    SignedTransaction {
        tx: Transaction {
            chain_id: "ehrchain-dev".into(),
            signer: PublicKey([0x11; 32]),
            nonce: 7,
            payload: TxPayload::Transfer {
                to: AccountId([0x22; 20]),
                amount: 42,
            },
        },
        signature: Signature([0x33; 64]),
    }
}

fn sample_block() -> Block {
    let txs = vec![sample_tx()];
    Block {
        header: BlockHeader {
            height: 5,
            parent: Hash([0x44; 32]),
            timestamp_ms: 1_700_000_000_000,
            view: 9,
            proposer: PublicKey([0x55; 32]),
            tx_count: 1,
            tx_root: tx_root(&txs),
            receipts_root: receipts_root(&[]),
            state_root: Hash([0x66; 32]),
            audit_root: Hash([0x77; 32]),
        },
        txs,
    }
}

#[test]
fn transaction_fixture() {
    let t = sample_tx();
    let bytes = encode(&t);
    assert_eq!(
        hex::encode(&bytes[..60]),
        "0c000000656872636861696e2d6465761111111111111111111111111111111111111111111111111111111111111111070000000000000002222222"
    );
    assert_eq!(bytes.len(), 4 + 12 + 32 + 8 + 1 + 20 + 8 + 64);
    assert_eq!(t.id().to_string(), TX_ID);
    assert!(t.tx.signing_bytes().starts_with(b"ehrchain/tx/v1"));
    assert_eq!(decode::<SignedTransaction>(&bytes, 1 << 20).unwrap(), t);
}

#[test]
fn block_fixture() {
    let b = sample_block();
    assert_eq!(b.id().to_string(), BLOCK_ID);
    assert_eq!(decode::<Block>(&encode(&b), 1 << 20).unwrap(), b);
}

const TX_ID: &str = "33b96fac00ed4eef4bc2268676d5aea6c4d3a6460b4e8564b75a8098b90995ba";
const BLOCK_ID: &str = "55aea0e684e6502ced136c4fad0ccf2657e41f8f393d4de66bd97a45ee7fd68d";

#[test]
fn decoding_is_bounded_and_strict() {
    let bytes = encode(&sample_tx());
    assert!(
        decode::<SignedTransaction>(&bytes, 10).is_err(),
        "over the limit"
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(
        decode::<SignedTransaction>(&trailing, 1 << 20).is_err(),
        "trailing bytes"
    );
    assert!(
        decode::<SignedTransaction>(&bytes[..bytes.len() - 1], 1 << 20).is_err(),
        "truncated"
    );
}

#[test]
fn ids_and_roles_parse_with_clear_errors() {
    let id = AccountId([0xab; 20]);
    assert_eq!(id.to_string().parse::<AccountId>().unwrap(), id);
    let err = "ehr12".parse::<AccountId>().unwrap_err().to_string();
    assert!(err.contains("40 hex characters"), "{err}");
    assert_eq!("Doctor".parse::<Role>().unwrap(), Role::Doctor);
    assert_eq!("organization".parse::<Role>().unwrap(), Role::Organisation);
    let err = "surgeon".parse::<Role>().unwrap_err().to_string();
    assert!(err.contains("patient, doctor"), "{err}");
}

#[test]
fn merkle_root_matches_ct_merkle_at_every_size() {
    for n in 0..70u32 {
        let leaves: Vec<Vec<u8>> = (0..n)
            .map(|i| i.to_le_bytes().repeat(i as usize % 5 + 1))
            .collect();
        let mut tree = ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, Vec<u8>>::new();
        for leaf in &leaves {
            tree.push(leaf.clone());
        }
        let got = ehrchain_types::block::merkle_root(&leaves);
        assert_eq!(
            got.0.as_slice(),
            tree.root().as_bytes().as_slice(),
            "{n} leaves"
        );
    }
}

/// An audit proof claiming a huge tree made ct-merkle panic ("leaf index is too high", or an
/// overflow) instead of failing to verify (fuzz/fuzz_targets/audit_proof.rs).
#[test]
fn audit_inclusion_of_absurd_tree_sizes_fails_without_panicking() {
    use ehrchain_types::records::verify_audit_inclusion;
    let (root, leaf) = (Hash([7; 32]), b"leaf".as_slice());
    let path = [0u8; 32 * 63];
    for (tree_size, index) in [
        (u64::MAX, 1 << 63),
        (u64::MAX, u64::MAX - 1),
        (u64::MAX, 1),
        ((1 << 63) + 1, 0),
        (1 << 63, (1 << 63) - 1),
        (1 << 63, 0),
        ((1 << 63) - 1, (1 << 63) - 2),
        (u64::MAX, u64::MAX),
        (0, 0),
    ] {
        for len in [0, 32, path.len()] {
            assert!(!verify_audit_inclusion(
                &root,
                tree_size,
                leaf,
                index,
                &path[..len]
            ));
        }
    }
}

/// Transactions signed by distinct keys, each valid.
fn signed(n: u8) -> Vec<SignedTransaction> {
    use ed25519_dalek::Signer;
    (0..n)
        .map(|i| {
            let key = ed25519_dalek::SigningKey::from_bytes(&[i + 1; 32]);
            let tx = Transaction {
                chain_id: "ehrchain-dev".into(),
                signer: PublicKey(key.verifying_key().to_bytes()),
                nonce: i as u64,
                payload: TxPayload::Transfer {
                    to: AccountId([0x22; 20]),
                    amount: 1,
                },
            };
            let signature = Signature(key.sign(&tx.signing_bytes()).to_bytes());
            SignedTransaction { tx, signature }
        })
        .collect()
}

#[test]
fn signature_batches_name_exactly_the_bad_transactions() {
    use ehrchain_types::{SignatureError, verify_signatures};
    let mut txs = signed(6);
    assert!(verify_signatures(&txs).iter().all(Result::is_ok));
    // 1: signed over other bytes; 3: a key that is not a curve point... or is; either way
    // not the signer; 4: the identity (small order); 5: `s` made non-canonical (s + l).
    txs[1].tx.nonce += 100;
    txs[3].tx.signer = PublicKey([0xff; 32]);
    txs[4].tx.signer = PublicKey({
        let mut identity = [0; 32];
        identity[0] = 1;
        identity
    });
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let s = &mut txs[5].signature.0[32..];
    let mut carry = 0u16;
    for (b, l) in s.iter_mut().zip(l) {
        let sum = *b as u16 + l as u16 + carry;
        *b = sum as u8;
        carry = sum >> 8;
    }
    let results = verify_signatures(&txs);
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1], Err(SignatureError::Mismatch));
    assert_eq!(results[2], Ok(()));
    assert!(results[3].is_err());
    assert_eq!(results[4], Err(SignatureError::WeakKey));
    assert_eq!(results[5], Err(SignatureError::Mismatch));
    // One at a time gives the same answers as the batch.
    for (t, r) in txs.iter().zip(&results) {
        assert_eq!(&t.verify_signature(), r);
    }
}
