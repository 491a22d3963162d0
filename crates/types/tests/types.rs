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

/// The JSON of a rejected receipt and of an audit reason: the stable code, the typed fields
/// and the rendered message; reading it back ignores the message.
#[test]
fn refusals_and_audit_reasons_in_json() {
    use ehrchain_types::{
        AuditReason, Category, ItemId, ItemKind, Receipt, Refusal, RequestId, TxOutcome,
    };
    let receipt = Receipt {
        tx_id: Hash([1; 32]),
        outcome: TxOutcome::Rejected {
            reason: Refusal::InsufficientBalance {
                balance: 70,
                needed: 1000,
            },
        },
    };
    let v = serde_json::to_value(&receipt).unwrap();
    assert_eq!(
        v["outcome"],
        serde_json::json!({
            "status": "rejected",
            "code": "insufficient_balance",
            "balance": 70,
            "needed": 1000,
            "message": "insufficient balance: have 70, need 1000",
        })
    );
    assert_eq!(serde_json::from_value::<Receipt>(v).unwrap(), receipt);
    let applied = serde_json::to_value(TxOutcome::Applied).unwrap();
    assert_eq!(applied, serde_json::json!({"status": "applied"}));
    assert_eq!(
        serde_json::from_value::<TxOutcome>(applied).unwrap(),
        TxOutcome::Applied
    );

    let slot = ItemId {
        kind: ItemKind::Slot,
        bytes: [2; 16],
    };
    for (reason, json) in [
        (
            AuditReason::None,
            serde_json::json!({"code": "none", "message": ""}),
        ),
        (
            AuditReason::Grant {
                expires_ms: Some(1_700_000_000_000),
            },
            serde_json::json!({
                "code": "grant",
                "expires_ms": 1_700_000_000_000u64,
                "message": "consent granted to the account until 2023-11-14T22:13:20Z",
            }),
        ),
        (
            AuditReason::Denied(Refusal::NoConsent {
                category: Category::Lab,
            }),
            serde_json::json!({
                "code": "no_consent",
                "category": "lab",
                "message": "no consent for lab records",
            }),
        ),
        (
            AuditReason::Denied(Refusal::NotSlotDoctor { slot }),
            serde_json::json!({
                "code": "not_slot_doctor",
                "slot": slot.to_string(),
                "message": format!("only the slot's doctor answers and completes the booking of appointment slot {slot}"),
            }),
        ),
        (
            AuditReason::Request {
                request: RequestId([3; 32]),
            },
            serde_json::json!({
                "code": "request",
                "request": RequestId([3; 32]).to_string(),
                "message": format!("request {}", RequestId([3; 32])),
            }),
        ),
        (
            AuditReason::Withheld,
            serde_json::json!({"code": "withheld", "message": "no record you may read"}),
        ),
    ] {
        let got = serde_json::to_value(&reason).unwrap();
        assert_eq!(got, json, "{reason:?}");
        assert_eq!(got["code"], reason.code());
        assert_eq!(serde_json::from_value::<AuditReason>(got).unwrap(), reason);
    }
}

/// The rendered message is never part of consensus data: a rejected receipt and an audit
/// event encode the code's tag and its typed fields only, so rewording a message changes no
/// receipts or audit root; and the JSON's `message` is ignored when read back, so a client
/// cannot change a refusal by editing its text.
#[test]
fn messages_are_not_part_of_any_hash() {
    use ehrchain_types::{
        AuditAction, AuditEvent, AuditReason, Category, Decision, Receipt, Refusal, TxOutcome,
        block::receipts_root,
    };
    let refusal = Refusal::InsufficientBalance {
        balance: 70,
        needed: 1000,
    };
    let receipt = Receipt {
        tx_id: Hash([1; 32]),
        outcome: TxOutcome::Rejected {
            reason: refusal.clone(),
        },
    };
    // tx id, outcome tag 1 (rejected), the refusal's tag, then its two u64 fields.
    let mut expected = vec![1u8; 32];
    expected.push(1);
    expected.push(encode(&refusal)[0]);
    expected.extend(70u64.to_le_bytes());
    expected.extend(1000u64.to_le_bytes());
    let bytes = encode(&receipt);
    assert_eq!(bytes, expected);
    let message = refusal.to_string();
    assert!(message.contains("insufficient balance"), "{message}");
    assert!(!contains(&bytes, b"insufficient"));

    let event = AuditEvent {
        tx: Hash([2; 32]),
        time_ms: 1_700_000_000_000,
        actor: AccountId([3; 20]),
        patient: AccountId([4; 20]),
        action: AuditAction::Read,
        record: None,
        categories: vec![Category::Imaging],
        counterparty: None,
        decision: Decision::Denied,
        reason: AuditReason::Denied(Refusal::GrantExpired {
            category: Category::Imaging,
            expired_ms: 1_600_000_000_000,
        }),
        item: None,
        amount: None,
    };
    let leaf = event.leaf();
    let rendered = event.reason.to_string();
    assert!(rendered.contains("consent for imaging records has expired"));
    for word in ["consent", "expired", "imaging", "2020"] {
        assert!(!contains(&leaf, word.as_bytes()), "{word} in the leaf");
    }

    // Whatever message a JSON carries, it reads back as the same value with the same bytes.
    let mut json = serde_json::to_value(&receipt).unwrap();
    assert_eq!(json["outcome"]["message"], message.as_str());
    json["outcome"]["message"] = "reworded".into();
    let back: Receipt = serde_json::from_value(json).unwrap();
    assert_eq!(encode(&back), bytes);
    assert_eq!(receipts_root(&[back]), receipts_root(&[receipt]));
    let mut json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["reason"]["message"], rendered.as_str());
    json["reason"]["message"] = "reworded".into();
    let back: AuditEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back.leaf(), leaf);
    assert_eq!(back.id(), event.id());
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An audit event's JSON without messages (the form of audit proof files) reads back as the
/// same event: a file written under one wording verifies under any other.
#[test]
fn audit_events_in_json_without_messages() {
    use ehrchain_types::{
        AuditAction, AuditEvent, AuditReason, Category, Decision, Grantee, ItemId, ItemKind,
        Refusal, records::without_message,
    };
    for reason in [
        AuditReason::None,
        AuditReason::GrantTerms {
            write: true,
            expires_ms: Some(5),
        },
        AuditReason::Denied(Refusal::NoConsent {
            category: Category::Lab,
        }),
    ] {
        let event = AuditEvent {
            tx: Hash([2; 32]),
            time_ms: 1_700_000_000_000,
            actor: AccountId([3; 20]),
            patient: AccountId([4; 20]),
            action: AuditAction::Granted,
            record: None,
            categories: vec![Category::Lab],
            counterparty: Some(Grantee::Organisation("StMarys".into())),
            decision: Decision::Allowed,
            reason,
            item: Some(ItemId {
                kind: ItemKind::Claim,
                bytes: [5; 16],
            }),
            amount: Some(7),
        };
        let mut bare = Vec::new();
        without_message::serialize(&event, &mut serde_json::Serializer::new(&mut bare)).unwrap();
        let text = String::from_utf8(bare).unwrap();
        assert!(!text.contains("message"), "{text}");
        let mut full = serde_json::to_value(&event).unwrap();
        full["reason"].as_object_mut().unwrap().remove("message");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            full
        );
        let back =
            without_message::deserialize(&mut serde_json::Deserializer::from_str(&text)).unwrap();
        assert_eq!(back, event);
    }
}
