//! What the fuzz targets share: the fixed chain they check against, and valid inputs of each
//! target to start from.
//!
//! The seeds are built from the real types (signed with real keys, a real finality
//! certificate), so they never go stale when an encoding changes. A target writes its seeds
//! into the directory named by `EHRCHAIN_FUZZ_SEEDS` when it starts (`scripts/fuzz` points it
//! at the target's corpus), before libFuzzer reads the corpus.

use commonware_codec::Encode as _;
use commonware_consensus::{
    simplex::{
        scheme::ed25519::Scheme,
        types::{Finalization, Finalize, Proposal},
    },
    types::{Epoch, Round, View},
};
use commonware_cryptography::Signer as _;
use commonware_parallel::Sequential;
use commonware_utils::{non_empty, ordered::Set};
use ehrchain_consensus::{
    digest_of,
    tcp::{private_key, public_key_of_seed},
};
use ehrchain_crypto::Keypair;
use ehrchain_ledger::GenesisState;
use ehrchain_node::{
    GenesisFile,
    genesis::GenesisValidator,
    proof::{AuditProof, EngineFinality, FORMAT},
};
use ehrchain_types::{
    AccountId, AuditAction, AuditEvent, AuditReason, Block, BlockHeader, Category, Decision,
    EncryptionKey, EventId, Grantee, Hash, HexBytes, KeyWrap, PublicKey, RecordDraft, RecordId,
    RecordKey, Role, SealedKey, SignedTransaction, Transaction, TxPayload,
    block::tx_root,
    domain, encode,
    records::{audit_inclusion_proof, audit_root},
    verify_signatures,
};
use std::sync::OnceLock;

/// The chain every target checks against.
pub const CHAIN_ID: &str = "ehrchain-fuzz";
/// The signed request the `request_auth` target verifies headers for.
pub const METHOD: &str = "GET";
pub const PATH: &str = "/api/v1/audit?patient=ehr0000000000000000000000000000000000000000";

/// Seeds of the four validators of [`genesis`].
const VALIDATOR_SEEDS: [[u8; 32]; 4] = [[1; 32], [2; 32], [3; 32], [4; 32]];

/// The genesis the audit proofs are checked against: four validators with fixed keys.
pub fn genesis() -> &'static GenesisFile {
    static GENESIS: OnceLock<GenesisFile> = OnceLock::new();
    GENESIS.get_or_init(|| GenesisFile {
        ledger: GenesisState {
            chain_id: CHAIN_ID.into(),
            timestamp_ms: 0,
            synthetic_records: 0,
            accounts: vec![],
        },
        validators: VALIDATOR_SEEDS
            .iter()
            .enumerate()
            .map(|(i, seed)| GenesisValidator {
                name: format!("v{i}"),
                public_key: PublicKey(public_key_of_seed(seed).expect("valid seed")),
                p2p_address: ([127, 0, 0, 1], 4000 + i as u16).into(),
            })
            .collect(),
    })
}

/// Writes `target`'s seeds into `$EHRCHAIN_FUZZ_SEEDS`, if set (called from each target's
/// `init`).
pub fn write_seeds(target: &str) {
    let Some(dir) = std::env::var_os("EHRCHAIN_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("seed directory");
    for (i, seed) in seeds(target).iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i}")), seed).expect("write seed");
    }
}

/// Valid inputs of a target.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "tx_decode" => sample_txs().iter().map(encode).collect(),
        "block_decode" => vec![
            encode(&sample_block(vec![])),
            encode(&sample_block(sample_txs())),
        ],
        "gossip_decode" => vec![
            encode(&Vec::<SignedTransaction>::new()),
            encode(&sample_txs()),
        ],
        "audit_proof" => {
            let proof = sample_proof();
            proof.verify(genesis(), &EngineFinality).expect("the seed proof verifies");
            vec![proof.to_file_bytes()]
        }
        "request_auth" => {
            let auth = key(9).sign_request(
                CHAIN_ID,
                METHOD,
                PATH,
                &ehrchain_types::request::empty_body(),
                1_700_000_000_000,
            );
            auth.verify(CHAIN_ID, METHOD, PATH, auth.timestamp_ms)
                .expect("the seed header verifies");
            vec![auth.header_value().into_bytes()]
        }
        other => panic!("no seeds for target {other}"),
    }
}

fn key(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn sealed(n: u8) -> SealedKey {
    SealedKey {
        enc: EncryptionKey([n; 32]),
        ct: HexBytes(vec![n; 48]),
    }
}

/// Signed transactions covering the main shapes of payload (enums, options, lists, strings).
fn sample_txs() -> Vec<SignedTransaction> {
    let (a, b) = (key(7), key(8));
    let payloads = [
        TxPayload::Transfer {
            to: b.account(),
            amount: 42,
        },
        TxPayload::Register {
            role: Role::Doctor,
            organisation: Some("St Elsewhere".into()),
            licence: Some("GMC-1234567".into()),
        },
        TxPayload::Grant {
            to: Grantee::Organisation("St Elsewhere".into()),
            categories: vec![Category::Lab, Category::Medication],
            expires_ms: Some(1_800_000_000_000),
            write: false,
            wraps: vec![KeyWrap {
                category: Category::Lab,
                epoch: 0,
                recipient: b.account(),
                sealed: sealed(1),
            }],
        },
        TxPayload::AddRecord(RecordDraft {
            id: RecordId([5; 16]),
            patient: a.account(),
            category: Category::Notes,
            content: Hash([6; 32]),
            size: 1234,
            commitment: Hash([7; 32]),
            meta: HexBytes(vec![8; 40]),
            key: RecordKey::Direct {
                wraps: vec![(a.account(), sealed(2)), (b.account(), sealed(3))],
            },
            profile: false,
            coding: Some(Hash([9; 32])),
        }),
    ];
    let txs: Vec<_> = payloads
        .into_iter()
        .enumerate()
        .map(|(nonce, payload)| {
            a.sign_tx(Transaction {
                chain_id: CHAIN_ID.into(),
                signer: a.public_key(),
                nonce: nonce as u64,
                payload,
            })
        })
        .collect();
    assert!(verify_signatures(&txs).iter().all(Result::is_ok));
    txs
}

fn sample_block(txs: Vec<SignedTransaction>) -> Block {
    Block {
        header: BlockHeader {
            height: 3,
            parent: Hash([1; 32]),
            timestamp_ms: 1_700_000_000_000,
            view: 5,
            proposer: PublicKey(public_key_of_seed(&VALIDATOR_SEEDS[0]).expect("valid seed")),
            tx_count: txs.len() as u32,
            tx_root: tx_root(&txs),
            receipts_root: Hash([2; 32]),
            state_root: Hash([3; 32]),
            audit_root: Hash([4; 32]),
        },
        txs,
    }
}

fn event(action: AuditAction, n: u8) -> AuditEvent {
    AuditEvent {
        tx: Hash([n; 32]),
        time_ms: 1_700_000_000_000 + n as u64,
        actor: AccountId([n; 20]),
        patient: key(7).account(),
        action,
        record: Some(RecordId([n; 16])),
        categories: vec![Category::Lab],
        counterparty: Some(Grantee::Account(AccountId([9; 20]))),
        decision: Decision::Allowed,
        reason: AuditReason::GrantTerms {
            write: false,
            expires_ms: None,
        },
        item: None,
        amount: Some(n as u64),
    }
}

/// A valid proof of the middle event of three, finalized by three of the four validators.
pub fn sample_proof() -> &'static AuditProof {
    static PROOF: OnceLock<AuditProof> = OnceLock::new();
    PROOF.get_or_init(make_proof)
}

fn make_proof() -> AuditProof {
    let events = [
        event(AuditAction::Granted, 1),
        event(AuditAction::Read, 2),
        event(AuditAction::Revoked, 3),
    ];
    let index = 1;
    let mut header = sample_block(vec![]).header;
    header.audit_root = audit_root(&events);
    let view = header.view;
    let finalization = finalize(&header.id(), view);
    let g = genesis();
    AuditProof {
        format: FORMAT.into(),
        chain_id: CHAIN_ID.into(),
        event_id: EventId(events[index].id().0),
        leaf: hex::encode(events[index].leaf()),
        event: events[index].clone(),
        height: header.height,
        index: index as u64,
        tree_size: events.len() as u64,
        path: hex::encode(audit_inclusion_proof(&events, index)),
        header,
        finalization: hex::encode(finalization),
        validators: g.validators.iter().map(|v| v.public_key).collect(),
    }
}

/// The engine's finality certificate of `block_id` in `view`, from a quorum of validators.
fn finalize(block_id: &Hash, view: u64) -> Vec<u8> {
    let keys = VALIDATOR_SEEDS.map(|s| private_key(&s).expect("valid seed"));
    let set = Set::try_from(keys.iter().map(|k| k.public_key()).collect::<Vec<_>>())
        .expect("distinct keys");
    let proposal = Proposal::new(
        Round::new(Epoch::zero(), View::new(view)),
        View::new(view - 1),
        digest_of(block_id),
    );
    let votes: Vec<_> = keys[..3]
        .iter()
        .map(|k| {
            let scheme =
                Scheme::signer(domain::CONSENSUS, set.clone(), k.clone()).expect("a validator");
            Finalize::sign(&scheme, proposal.clone()).expect("a signer signs")
        })
        .collect();
    let verifier = Scheme::verifier(domain::CONSENSUS, set);
    Finalization::from_finalizes(&verifier, non_empty![@&votes], &Sequential)
        .expect("a quorum")
        .encode()
        .to_vec()
}
