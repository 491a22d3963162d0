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
