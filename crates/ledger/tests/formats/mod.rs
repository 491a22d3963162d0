//! Format fixtures: the SHA-256 of the canonical (borsh) encoding of one deterministic example
//! of every encoded public type — every transaction payload, transactions, receipts, refusal
//! codes, audit events and reasons, state keys and entries, workflow items, block headers,
//! blocks and signed API requests — so that a change of format is a deliberate act, never
//! "regenerate until green" (commonware `conformance/`).
//!
//! Each group's pins are a table of one `name sha256` line per example. When a pin fails, the
//! message prints the table as it now reads, ready to paste: update it and say in the commit
//! why the format changed. Every enum on the ledger is covered variant by variant: a new
//! variant fails here until it has an example and a pin.

use borsh::BorshDeserialize;
use ehrchain_crypto::Keypair;
use ehrchain_ledger::{
    AccessRequest, Account, AccountStatus, GenesisAccount, GenesisState, Grant, Record,
    RecordStatus, RequestStatus, StateKey,
    clinical::{
        Claim, ClaimDecision, ClaimStatus, EmergencyReason, EmergencyRequest, EmergencyReview,
        EmergencyStatus, Guardian, GuardianAnswer, Guardianship, GuardianshipStatus, Invoice,
        InvoiceStatus, Item, Policy, Prescription, Report, RxStatus, Slot, SlotStatus,
    },
    genesis,
};
use ehrchain_types::{
    AccountId, AuditAction, AuditEvent, AuditReason, Block, BlockHeader, Category, Decision,
    EncryptionKey, Field, Grantee, Hash, HexBytes, ItemId, ItemKind, KeyWrap, Receipt, RecordDraft,
    RecordId, RecordKey, Refusal, RequestId, Role, Rotation, SealedKey, SignedTransaction, Subject,
    Transaction, TxOutcome, TxPayload, block::tx_root, domain, encode, records::SEALED_META_BYTES,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// SHA-256 of `bytes`, in hex.
fn sha256(bytes: &[u8]) -> String {
    Hash(Sha256::digest(bytes).into()).to_string()
}

/// Checks the SHA-256 of each `(name, encoding)` against `pins`, a table of one `name sha256`
/// line per example in the same order (a name may contain spaces). On any difference it
/// prints the whole table as it now reads, ready to paste over the old one.
fn check_pins(what: &str, pins: &str, actual: &[(String, Vec<u8>)]) {
    let pinned: Vec<(&str, &str)> = pins
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, hash) = l.rsplit_once(' ').expect("a pin is a name and a hash");
            (name.trim_end(), hash)
        })
        .collect();
    let now: Vec<(&str, String)> = actual
        .iter()
        .map(|(name, bytes)| (name.as_str(), sha256(bytes)))
        .collect();
    let names: BTreeSet<&str> = now.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names.len(),
        now.len(),
        "two examples of {what} share a name"
    );
    let same = pinned.len() == now.len()
        && pinned
            .iter()
            .zip(&now)
            .all(|((pn, ph), (n, h))| pn == n && ph == h);
    if !same {
        let changed: Vec<&str> = now
            .iter()
            .filter(|(n, h)| !pinned.contains(&(*n, h.as_str())))
            .map(|(n, _)| *n)
            .collect();
        let width = now.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let table: String = now
            .iter()
            .map(|(n, h)| format!("{n:<width$} {h}\n"))
            .collect();
        panic!(
            "the encoding of {what} changed (new or changed: {}). If that is deliberate, \
             replace the pins with these and say why in the commit:\n{table}",
            changed.join(", ")
        );
    }
}

/// How many variants enum `T` has, read from its encoding: the first tag that does not decode.
/// (Every variant's fields decode from zero bytes: empty strings and lists, `None`, the first
/// variant of an enum.)
fn variant_count<T: BorshDeserialize>() -> u8 {
    (0..=u8::MAX)
        .find(|&tag| {
            let mut bytes = vec![tag];
            bytes.resize(4096, 0);
            borsh::from_slice::<T>(&bytes)
                .is_err_and(|e| e.to_string().starts_with("Unexpected variant tag"))
        })
        .expect("fewer than 256 variants")
}

/// Checks that `examples` holds exactly one example of each variant of `T`, in tag order.
fn one_example_per_variant<T: BorshDeserialize + borsh::BorshSerialize>(
    what: &str,
    examples: &[T],
) {
    let tags: Vec<u8> = examples.iter().map(|e| encode(e)[0]).collect();
    let all: Vec<u8> = (0..variant_count::<T>()).collect();
    assert_eq!(
        tags, all,
        "{what}: one example per variant, in order (a new variant needs an example and a pin)"
    );
}

// Fixed values. Keys come from fixed seeds; everything else is literal bytes, so a change of
// key derivation elsewhere cannot move a pin.

fn key(n: u8) -> Keypair {
    Keypair::from_seed(&[n; 32])
}

fn acct(n: u8) -> AccountId {
    AccountId([n; 20])
}

fn item(kind: ItemKind, n: u8) -> ItemId {
    ItemId {
        kind,
        bytes: [n; 16],
    }
}

const RECORD: RecordId = RecordId([0x10; 16]);
const REQUEST: RequestId = RequestId([0x11; 32]);
const T0: u64 = 1_700_000_000_000;

fn sealed(n: u8) -> SealedKey {
    SealedKey {
        enc: EncryptionKey([n; 32]),
        ct: HexBytes(vec![n ^ 0xff; 48]),
    }
}

fn wrap(category: Category, epoch: u32, recipient: u8) -> KeyWrap {
    KeyWrap {
        category,
        epoch,
        recipient: acct(recipient),
        sealed: sealed(recipient),
    }
}

fn rotation() -> Rotation {
    Rotation {
        category: Category::Lab,
        own: sealed(0x20),
        wraps: vec![wrap(Category::Lab, 1, 3)],
    }
}

fn draft(category: Category, key: RecordKey) -> RecordDraft {
    RecordDraft {
        id: RECORD,
        patient: acct(2),
        category,
        content: Hash([0x15; 32]),
        size: 1234,
        commitment: Hash([0x16; 32]),
        meta: HexBytes(vec![0x17; SEALED_META_BYTES]),
        key,
        profile: false,
        coding: None,
    }
}

fn category_key() -> RecordKey {
    RecordKey::Category {
        epoch: 0,
        wrapped: HexBytes(vec![0x18; 72]),
    }
}

fn direct_key() -> RecordKey {
    RecordKey::Direct {
        wraps: vec![(acct(2), sealed(2)), (acct(4), sealed(4))],
    }
}

/// Literal bytes standing for Feldman commitments (the encoding does not check the points).
fn commitments() -> Vec<Hash> {
    vec![Hash([0x60; 32]), Hash([0x61; 32])]
}

fn guardians() -> Vec<Guardian> {
    vec![
        Guardian {
            account: acct(6),
            share: sealed(6),
        },
        Guardian {
            account: acct(7),
            share: sealed(7),
        },
        Guardian {
            account: acct(8),
            share: sealed(8),
        },
    ]
}

/// One example of every payload, in variant order.
fn every_payload() -> Vec<TxPayload> {
    vec![
        TxPayload::Register {
            role: Role::Doctor,
            organisation: Some("StMarys".into()),
            licence: Some("GMC-1234567".into()),
        },
        TxPayload::Approve { account: acct(4) },
        TxPayload::Transfer {
            to: acct(3),
            amount: 42,
        },
        TxPayload::Enrol {
            role: Role::Patient,
            organisation: None,
            licence: None,
            encryption_key: EncryptionKey([0x19; 32]),
        },
        TxPayload::RotateKey {
            rotation: rotation(),
        },
        TxPayload::AddRecord(draft(Category::Notes, category_key())),
        TxPayload::ReviewRecord {
            record: RECORD,
            approve: true,
            key: Some(category_key()),
        },
        TxPayload::Grant {
            to: Grantee::Account(acct(4)),
            categories: vec![Category::Lab, Category::Imaging],
            expires_ms: Some(T0 + 1),
            write: true,
            wraps: vec![wrap(Category::Lab, 0, 4), wrap(Category::Imaging, 0, 4)],
        },
        TxPayload::Revoke {
            from: Grantee::Organisation("StMarys".into()),
            categories: vec![Category::Lab],
            rotations: vec![rotation()],
        },
        TxPayload::RequestAccess {
            patient: acct(2),
            categories: vec![Category::Vitals],
            write: false,
            reason: sealed(0x21),
        },
        TxPayload::AnswerRequest {
            request: REQUEST,
            approve: true,
            expires_ms: None,
            wraps: vec![wrap(Category::Vitals, 0, 4)],
        },
        TxPayload::ReadRecord { record: RECORD },
        TxPayload::AddSlot {
            start_ms: T0 + 3_600_000,
            minutes: 30,
            fee: 20,
        },
        TxPayload::Book {
            slot: item(ItemKind::Slot, 1),
        },
        TxPayload::AnswerBooking {
            slot: item(ItemKind::Slot, 1),
            confirm: true,
        },
        TxPayload::CancelBooking {
            slot: item(ItemKind::Slot, 1),
        },
        TxPayload::CompleteAppointment {
            slot: item(ItemKind::Slot, 1),
        },
        TxPayload::ReportSymptoms {
            doctor: acct(4),
            record: RECORD,
        },
        TxPayload::Prescribe {
            record: draft(Category::Medication, direct_key()),
            pharmacy: Some(acct(5)),
            pharmacy_key: Some(sealed(5)),
        },
        TxPayload::DirectPrescription {
            rx: item(ItemKind::Prescription, 3),
            pharmacy: acct(5),
            pharmacy_key: sealed(5),
        },
        TxPayload::Dispense {
            rx: item(ItemKind::Prescription, 3),
            price: 50,
        },
        TxPayload::PayInvoice {
            invoice: item(ItemKind::Invoice, 4),
        },
        TxPayload::SetPolicy {
            patient: acct(2),
            coverage_bp: 8_000,
            approvers: vec![acct(6), acct(7)],
            expires_ms: Some(T0 + 365 * 86_400_000),
        },
        TxPayload::SubmitClaim {
            invoice: item(ItemKind::Invoice, 4),
            policy: item(ItemKind::Policy, 5),
        },
        TxPayload::DecideClaim {
            claim: item(ItemKind::Claim, 6),
            approve: false,
            reason: "not covered by the policy".into(),
        },
        TxPayload::WithdrawClaim {
            claim: item(ItemKind::Claim, 6),
        },
        TxPayload::SetGuardians {
            guardians: guardians(),
            threshold: 2,
            categories: vec![Category::Medication, Category::Emergency],
            max_duration_ms: 24 * 3_600_000,
            commitments: commitments(),
            emergency_key: EncryptionKey([0x62; 32]),
            wraps: vec![
                wrap(Category::Medication, 0, 2),
                wrap(Category::Emergency, 0, 2),
            ],
        },
        TxPayload::RequestEmergency {
            patient: acct(2),
            reason: EmergencyReason::Other,
            notes: vec![(acct(2), sealed(0x63)), (acct(6), sealed(0x64))],
            duration_ms: 2 * 3_600_000,
        },
        TxPayload::AnswerEmergency {
            request: item(ItemKind::Emergency, 8),
            approve: true,
            share: Some(sealed(0x65)),
            digest: Some(Hash([0x66; 32])),
        },
        TxPayload::ReportBadShare {
            request: item(ItemKind::Emergency, 8),
            guardian: acct(7),
            revealed: HexBytes(vec![0x67; 65]),
        },
        TxPayload::ReviewEmergency {
            request: item(ItemKind::Emergency, 8),
            review: EmergencyReview::Disputed,
        },
    ]
}

const PAYLOAD_PINS: &str = "
register             b447e3eb01b27712d0df190041f8c078fa86c55a7478cc66aef954ad1b77fd5d
approve              3a6bd99a1bff88948867d084b8fe6131da58937331578b1e12db35e25e8de3f5
transfer             3eeb424dbaf10b0431354dc982bb060131f8d31cf10165bd18b5e4602c5f2da5
enrol                65fe127aee008d24c587ac66269167becd14657869c113e57576de5ec10c84b9
rotate_key           f5efa2c3eb14808913daddae146c63bcc42e88c008a8c9a2ed2cbe960c35133e
add_record           7cb946b72663df6f254a6512d548cb1c29be8108727f7e66794ede81c3649e07
review_record        195c37467f9ffc644735f538dc760ebc5f09a10a9045c93c33197bdeab39032f
grant                cef89327d60ebd6cc017374f4a26e8d415d1e4756a12de50fd9af6d3224ac2e5
revoke               0a0c050bfed3ce01498db9e2a2c4f5f05b85c999a47108801659a08d707b9baa
request_access       29cd693fdc28e4bdfaedb804c9833eca712cf443e895a030d43a9f484760b81a
answer_request       915297a18f495161f9e9612b2fd47cd107aa03ba5ac62a8b5d4b01d92579b2b6
read_record          695b99427d19ea7918635b1eb6012a468a6ca850314e979a47a2fbee2ca0d377
add_slot             2ddea9df65467ea54a95bc07d1a18a0eed483d8695ca66a4533ec7e18cc782ef
book                 fd19270e643bd602ca8d86fbdbbdb6f2f518592429e1c15184cac8e6833966ab
answer_booking       978b25c6e3519f7bc493f4a369fa0bd256d6a20d9c7035a1ca4b29f70fd019b1
cancel_booking       fd066c6b74aaa76b39d3d808d78e6f96ee675f6cdbace5866fd91f2a9f111f2a
complete_appointment be39c137408fcc5dc5fdcc5d8c1b2b1a526fb75994ab094056945986127e88be
report_symptoms      f71b39035a887fb0307805f66e889d23fbbf181d5ea2bb9c5e1451a78c0de062
prescribe            c97be241320b7b7d71bb35f2d3c983dee24810de34df289e421ec4c766fca273
direct_prescription  c3b9842bd636bd296bdbca30b7654728159913030a10e3cb271eeb2ce4af50b4
dispense             98427ff15401191dc35473fa2fa94813c7127063b25c00e04196970b10f6725c
pay_invoice          be9796155f0fbfa7d8eb689269bdb67f31f6d574f46b09b179fcf0b49fd36a08
set_policy           814577f9203ef0429e9e470ea1739778e42065ad963182ad7329ce1270015f52
submit_claim         ead6a05ecf52add7ce16d03a3e20c4b43f61406f3a13481e36b9e13bdb11a973
decide_claim         826a0a5bebfac72167b8771d810dc4420d55b6632e399e460a98917d5b4bac39
withdraw_claim       f76019d0776e3a7ddd67a221179c82197f0d6e089c7441e5eb1ea3a57b3a5d98
set_guardians        46a3086449c61d2ab0fea4525f42f067b7a98eb0a8e54090755de4676f9e6c6b
request_emergency    fd5b168b837f45c7f04d10789fe74c4dda1229aa1fab3e65dec5d59e44e28b07
answer_emergency     44e3094cdd29e76cc93f99a0790459e3d539192380e6918e2290e79aa12810ca
report_bad_share     4695af2f69d5854f3275c38732035da7f1adc646cf8583e331d1441e0af6f06f
review_emergency     ee4a17809b99bee2acdbfd2341def2623b70a932ffb0d1869c8008878bd4c5b4
";

/// Every transaction payload, one example per variant.
#[test]
fn every_transaction_payload() {
    let payloads = every_payload();
    one_example_per_variant("TxPayload", &payloads);
    let actual: Vec<_> = payloads
        .iter()
        .map(|p| (p.kind().to_string(), encode(p)))
        .collect();
    check_pins("transaction payloads", PAYLOAD_PINS, &actual);
}

fn sample_tx() -> Transaction {
    Transaction {
        chain_id: "ehrchain-fixture".into(),
        signer: key(1).public_key(),
        nonce: 7,
        payload: TxPayload::Transfer {
            to: acct(3),
            amount: 42,
        },
    }
}

fn sample_header(txs: &[SignedTransaction]) -> BlockHeader {
    BlockHeader {
        height: 5,
        parent: Hash([0x30; 32]),
        timestamp_ms: T0,
        view: 9,
        proposer: key(9).public_key(),
        tx_count: txs.len() as u32,
        tx_root: tx_root(txs),
        receipts_root: Hash([0x31; 32]),
        state_root: Hash([0x32; 32]),
        audit_root: Hash([0x33; 32]),
    }
}

/// Transactions, their ids and signatures, blocks and their ids, the genesis block, and a
/// signed API request (the bytes signed after the `ehrchain/request/v1` tag, and the header).
#[test]
fn transactions_blocks_and_requests() {
    let tx = sample_tx();
    let stx = key(1).sign_tx(tx.clone());
    let header = sample_header(std::slice::from_ref(&stx));
    let block = Block {
        header: header.clone(),
        txs: vec![stx.clone()],
    };
    let (genesis_block, _) = genesis(&GenesisState {
        chain_id: "ehrchain-fixture".into(),
        timestamp_ms: T0,
        synthetic_records: 0,
        accounts: vec![
            GenesisAccount {
                public_key: key(1).public_key(),
                role: Some(Role::Admin),
                balance: 0,
                encryption_key: None,
            },
            GenesisAccount {
                public_key: key(2).public_key(),
                role: Some(Role::Patient),
                balance: 1_000,
                encryption_key: Some(EncryptionKey([0x34; 32])),
            },
        ],
    });
    let path = format!("/api/v1/records?patient={}", acct(2));
    let mut request = domain::REQUEST.to_vec();
    request.extend(ehrchain_types::request::message(
        "ehrchain-fixture",
        "GET",
        &path,
        T0,
        &ehrchain_types::request::empty_body(),
    ));
    let auth = key(2).sign_request(
        "ehrchain-fixture",
        "GET",
        &path,
        &ehrchain_types::request::empty_body(),
        T0,
    );
    let actual = [
        ("transaction", encode(&tx)),
        ("transaction id", tx.id().0.to_vec()),
        ("signed transaction", encode(&stx)),
        ("block header", encode(&header)),
        ("block id", block.id().0.to_vec()),
        ("block", encode(&block)),
        ("genesis block", encode(&genesis_block)),
        ("request signing bytes", request),
        ("request header", auth.header_value().into_bytes()),
    ]
    .map(|(n, b)| (n.to_string(), b));
    check_pins("transactions, blocks and requests", TX_PINS, &actual);
}

const TX_PINS: &str = "
transaction           1e09bfa40bb01d77f03856a2d11f9fe446b6f92da7e6948ebd3ffbb080126dfe
transaction id        405e9168cefbe6e81535559d826340d2aed36da946495442058c50757c27d348
signed transaction    ba9b7e4bbee520a9788fbf89a66ebe7484b8478bbc2193b2d27248e1deb6ad2a
block header          33723400ad650ebd52e110a09cb280d902a788fb4b2eab9ca10f229ed831e599
block id              fabe47ad15938c5b21b640c109f4944e76681f878b87cd661bf80681208bc566
block                 90521cb5ff8076d7fbbdab605748d955f7914c05c575f80666a6bdef667d3532
genesis block         2076c91e486a3a5dd6e807929f843b439d6ac2d030476d8e0192c4000bc78cbf
request signing bytes ead32587b143e2ed606538fced7b1d7f1859054ca0fc5a5150c5fb1fd3d090be
request header        c9e7da454777fd4449b300ade73692acefae49536ddc3cb9cfc99f4fbae0002f
";

/// One example of every refusal, in variant order.
fn every_refusal() -> Vec<Refusal> {
    use Refusal::*;
    let slot = item(ItemKind::Slot, 1);
    let rx = item(ItemKind::Prescription, 3);
    let invoice = item(ItemKind::Invoice, 4);
    let policy = item(ItemKind::Policy, 5);
    let claim = item(ItemKind::Claim, 6);
    let request = item(ItemKind::Emergency, 8);
    let org = Grantee::Organisation("StMarys".into());
    vec![
        NotRegistered { account: acct(2) },
        AlreadyRegistered {
            role: Role::Patient,
        },
        RoleNotRegistrable { role: Role::Admin },
        OrganisationRequired {
            role: Role::Pharmacist,
        },
        NotAdmin,
        NotApproved { role: Role::Doctor },
        RoleRequired {
            role: Role::Insurer,
        },
        NotPending { account: acct(4) },
        NotInRole {
            account: acct(5),
            role: Role::Pharmacist,
        },
        FieldEmpty {
            field: Field::Organisation,
        },
        FieldTooLong {
            field: Field::Licence,
            len: 65,
            max: 64,
        },
        AboveSupply {
            field: Field::Price,
            amount: u64::MAX,
            supply: 1_000,
        },
        InsufficientBalance {
            balance: 70,
            needed: 1_000,
        },
        PayerInsufficientBalance {
            payer: acct(6),
            balance: 60,
            needed: 72,
        },
        ZeroAmount {
            field: Field::Amount,
        },
        SelfTransfer,
        TransferToEscrow,
        BalanceOverflow { account: acct(3) },
        NoEncryptionKey { account: acct(4) },
        NoCategoryKey {
            category: Category::Imaging,
        },
        StaleKeyEpoch {
            category: Category::Imaging,
            current: 1,
            got: 0,
        },
        WrappedKeyLength { len: 71 },
        CategoryKeyRequired,
        TooManyWraps { count: 97, max: 96 },
        UnexpectedWrap {
            category: Category::Lab,
            epoch: 2,
            recipient: acct(4),
        },
        MissingWrap {
            category: Category::Lab,
            epoch: 0,
            recipient: acct(4),
        },
        DuplicateRotation {
            category: Category::Lab,
        },
        RotationRequired {
            category: Category::Lab,
        },
        UnexpectedRotation {
            category: Category::Vitals,
        },
        NoSuchRecord { record: RECORD },
        RecordExists { record: RECORD },
        ContentAnchored,
        MetaLength { len: 100 },
        NotOwnProfile,
        ProfileNotDemographics,
        DirectKeyRecipients,
        RecordNotPending { record: RECORD },
        ApprovalNeedsKey,
        UnexpectedKeys,
        NotThePatient {
            subject: Subject::Item(invoice),
        },
        RecordPending { record: RECORD },
        RecordRejected { record: RECORD },
        NoConsent {
            category: Category::Imaging,
        },
        GrantExpired {
            category: Category::Imaging,
            expired_ms: T0,
        },
        RoleMayNotHold {
            role: Role::Pharmacist,
            category: Category::Lab,
        },
        RoleMayNotWrite {
            role: Role::Pharmacist,
        },
        ReadOnlyGrant {
            category: Category::Notes,
        },
        NoWriteConsent {
            category: Category::Notes,
        },
        NoCategories,
        SelfGrant,
        SelfRequest,
        NoOrganisationMembers {
            organisation: "Nowhere".into(),
        },
        AlreadyExpired {
            expires_ms: T0 - 1,
            now_ms: T0,
        },
        GrantNarrowing {
            grantee: org.clone(),
            category: Category::Lab,
        },
        NoSuchGrant {
            grantee: Grantee::Account(acct(4)),
        },
        GrantLacksCategory {
            grantee: org,
            category: Category::Vitals,
        },
        NoSuchRequest { request: REQUEST },
        RequestAnswered { request: REQUEST },
        NoSuchItem { item: slot },
        WrongItemKind {
            item: slot,
            expected: ItemKind::Invoice,
        },
        StartInPast {
            start_ms: T0 - 1,
            now_ms: T0,
        },
        SlotLength {
            minutes: 0,
            max: 1_440,
        },
        SlotNotOpen { slot },
        SlotStarted { slot },
        NotSlotDoctor { slot },
        NotSlotParty { slot },
        NotRequested { slot },
        StartedUnconfirmed { slot },
        SlotClosed { slot },
        DoctorCancelAfterStart { slot },
        RefundNotYet {
            slot,
            refund_from_ms: T0 + 7 * 86_400_000,
        },
        NotConfirmed { slot },
        NotStarted { slot },
        ReportNotOwnRecord { record: RECORD },
        ReportNotActiveNotes { record: RECORD },
        DoctorCannotRead { doctor: acct(4) },
        PrescriptionNotMedication,
        SelfPrescription,
        PharmacyKeyMismatch,
        AlreadyDispensed { rx },
        PrescriptionRejected { rx },
        NotYourPharmacy { rx },
        InvoicePaid { invoice },
        ClaimOpen { invoice, claim },
        CoverageTooHigh {
            coverage_bp: 10_001,
        },
        ApprovalLevels { count: 6, max: 5 },
        DuplicateApprover { approver: acct(6) },
        ApproverNotEligible {
            approver: acct(7),
            level: 2,
        },
        PolicyNotForPatient { policy },
        PolicyExpired {
            policy,
            expired_ms: T0,
        },
        InsurerAlreadyPaid { invoice },
        ClaimNotOpen { claim },
        ClaimLevelNotReached {
            claim,
            level: 1,
            levels: 2,
            yours: 2,
        },
        ClaimLevelDecided { claim, level: 1 },
        NotAnApprover { claim },
        GuardianCount { count: 17, max: 16 },
        BadThreshold {
            threshold: 1,
            guardians: 5,
        },
        GuardianNotEligible { guardian: acct(6) },
        DuplicateGuardian { guardian: acct(7) },
        BadCommitments,
        BadEmergencyWindow {
            duration_ms: 59_999,
            min_ms: 60_000,
            max_ms: 24 * 3_600_000,
        },
        NoGuardians { patient: acct(2) },
        EmergencyPending { request },
        BadEmergencyNote,
        NotAGuardian { request },
        AlreadyAnswered { request },
        EmergencyClosed { request },
        ShareRequired,
        NotYourEmergency { request },
        ShareNotRevealed { guardian: acct(7) },
        ShareValid { guardian: acct(6) },
        NotReviewable { request },
        SelfApproval { request },
    ]
}

const REFUSAL_PINS: &str = "
not_registered              14ca1ae3e036cfaeee413a83b78b462a935b47f40fb1bb7a624c48c162616f6d
already_registered          47dc540c94ceb704a23875c11273e16bb0b8a87aed84de911f2133568115f254
role_not_registrable        5e85a80a2860b31e0ded88814142b091df90bce3c3b7bd4000b8dd611ae1f752
organisation_required       d4ea3fc5537ce615543ea44f074bff451fb6c9749e9e8692c111f7070b4780c7
not_admin                   e52d9c508c502347344d8c07ad91cbd6068afc75ff6292f062a09ca381c89e71
not_approved                8aabab9ba98811ca008e888337c0290d8486cb190834590effdd74e974b1f1db
role_required               5ea6d85d0fbe5fe428c0ac095c6c1b2bc3e58a8c4f6f58c445e5b1b5e9332d35
not_pending                 a644d7f440e966b46bb1530897b7a4f20c1372497e8d45c67a404db93078a3bd
not_in_role                 1aef569f447aa542ce8c852b6427efaea86a336610733dc49683e5239c0b8f5f
field_empty                 a2c4aed1cf757cd9a509734a267ffc7b1166b55f4c8f9c3e3550c56e743328fc
field_too_long              414fa38956dd87175ec544f4fa0f675a4cf9271b810b15577aa9f28e9ae898f3
above_supply                ec3613b3bf7779c454debea1d4df7817ea026c6647cddde2028527837ebafdde
insufficient_balance        b366954f92f281acb8ed495d9bc5d7266ac295d72697b04456297adc9e6abc12
payer_insufficient_balance  24d062d4ce56528f2ed0cb344edf97554e8d07e7e52242738c84923beeedc66a
zero_amount                 332078622e9d44ebffd2e1dfe027d1527c9b806e25dfae7e5150cc92020de15a
self_transfer               dc0e9c3658a1a3ed1ec94274d8b19925c93e1abb7ddba294923ad9bde30f8cb8
transfer_to_escrow          c555eab45d08845ae9f10d452a99bfcb06f74a50b988fe7e48dd323789b88ee3
balance_overflow            e536993a4cff6abb43224fc2ab64d0727e1c3f6f22b1b3fc4b55b27a5b8fd103
no_encryption_key           295035fe597752a4de7caa571289aadb794e07255afd8cfb9417e0a23816fd81
no_category_key             19d2caac5b173e21e7f0e6a77a11038770f0fdb7fa16acf952785d051dc664f1
stale_key_epoch             ec1abfcf5a786c5186ed07d4acd97244d767def7a13de85cf532b0164a1cec4e
wrapped_key_length          ad4b5030f60386ce2b7bac49b0be352b3020efb59fb6661a3fe7f1145e7e02e1
category_key_required       7cb7c4547cf2653590d7a9ace60cc623d25148adfbc88a89aeb0ef88da7839ba
too_many_wraps              490d9f190ff575529c2b21ecfcefa240e0c71d7edd24fc9926306c639e417f5a
unexpected_wrap             df9edf2895c381c7287cf9310634ce3339062b877fdfa98987ddeab0ae5dd936
missing_wrap                d217392becef13cf2e5e44bc75c17593b6f61a8d9ffc430636e04dff033d6495
duplicate_rotation          a352b1a99ea9f8e7a2db9014e7e22e2af21c9501b23f7e38920df108b9ca9c45
rotation_required           730cf5cef8fe9097fe1f450cfc18a33016ca8e1c3d8118fcaf8313860195ed81
unexpected_rotation         8411fbeb6f7a0d0cba9595af2c6d9d915879d86e5e1e2d5d3a0afaf062edb1a6
no_such_record              b8094835a584cfee5633b6ea0818c476561e6b897d8243b41adb582ff2925a77
record_exists               c14bfc96aaa5f067e931e2a428667ae05e78d135e89a0d7b774fda040f576170
content_anchored            ffe679bb831c95b67dc17819c63c5090d221aac6f4c7bf530f594ab43d21fa1e
meta_length                 ee0e53198288b51f9576ae13938642bcd616a93902fab6cb9e38ca8ab073a9ff
not_own_profile             bb7208bc9b5d7c04f1236a82a0093a5e33f40423d5ba8d4266f7092c3ba43b62
profile_not_demographics    8a331fdde7032f33a71e1b2e257d80166e348e00fcb17914f48bdb57a1c63007
direct_key_recipients       334359b90efed75da5f0ada1d5e6b256f4a6bd0aee7eb39c0f90182a021ffc8b
record_not_pending          c3ae6c42037e972d52fe9f3059a0276cd7c1f5b06b35d3e563deb6e0d39737b8
approval_needs_key          bbf3f11cb5b43e700273a78d12de55e4a7eab741ed2abf13787a4d2dc832b8ec
unexpected_keys             951dcee3a7a4f3aac67ec76a2ce4469cc76df650f134bf2572bf60a65c982338
not_the_patient             d17a2c0684287d702a07ebcd0d60ccbb70b48ff3051e79cf8af7ad490cf6cdd7
record_pending              a2fe7909e8ea4469329b4081dd309b8986b8ed19ba097c97d55d674d42cc47df
record_rejected             1289370ddc391f9327af83aabe94182083a7b4cfa49336bf4566e103c8d7d635
no_consent                  46149301a494aeeb8c9069f252e1a0e0e45e75565b3433902561f38b4a2d22d9
grant_expired               6869ebca13ee32d7ac44963176b619b9c14b42a252f7c8586c0162fd1a79c0e2
role_may_not_hold           d595327f96d6c7ba90345eaff55c7a0f7198c5d2d511e1f9989e599c978422fb
role_may_not_write          77f8b1b9ea039bc2640d8260d313d84cab2f3bffc66db3e5dd95e5cf37af88a6
read_only_grant             eba63af369f57ef742c6c53efd26e997e94cc288ccb3cea68a25a3fe97327176
no_write_consent            f574d5db4143f9e86848c14a1c63b1f91d001289cf3b0a29e64b7336afc642cc
no_categories               5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9
self_grant                  6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b
self_request                d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35
no_organisation_members     09bd32697b88b8107b0c9a5ebde0a58df7584dc9ee02eace0f505a293057c057
already_expired             363219b9d0d71cce2da4d13a6539c609a1eea48cf43fbcc60c06303591cafd0d
grant_narrowing             684eef67d300a7cb2970b1571fc3d9b9a9637d91c047597209112c27cfbe4ab4
no_such_grant               fca4b6264936ac290dc5507bb569ad0b3b6049d8d6d1984dac44c62babbd529b
grant_lacks_category        066ac490f6e48b1ed4fe0e22e996c9f09cccc90dcedb149b7edefbf34d9a7b44
no_such_request             04a1131e522c258ae68d2a95221a1baf50eac078be27676828dd68d8fa5e0347
request_answered            2ad498f93baae6b91e45bad375d2e672fdb41fd198c7c77291c104dca61991bc
no_such_item                b79da58908de762b4fb1c71ecdb9aa8f034bf96fbe7adc72be6ac5f832828083
wrong_item_kind             d80593d34da3c19489a082b44279bfe3ca54cc126c4beecb2e76b39fb2f80782
start_in_past               0705084a0f0a3002920a4411b862599036a22043ca29a838454ccacc0e4a3ed6
slot_length                 9c9471a721d73cf9621d5ed75110b9bf615324dbea40e444f9b5021bba4e9f30
slot_not_open               cad1c3587588db96a00f78e37f381ae86ab148dcb675e05d0396bcfe1b9fd741
slot_started                b0e916d74e43afa55bdad9e9aa424d999a2530de45735264a31ad0657d51f268
not_slot_doctor             9511b9b943a69473802205eb96f1f0fd05d9a43e71b24632dc018725432d9624
not_slot_party              6b092171d89e4f5f02048e5ef0a107ac9aad663266b1e37cc76551cb35eab335
not_requested               4f4db76bc441acc8a0834c5b4f62f43d4bd6922d78c85a06c33c650195d59548
started_unconfirmed         9d548a726e51b1c0dc68a9977c2bb6995cc72af2e5dd648e7bcbcc480084dd63
slot_closed                 a917cea023cd2f6a09c0b117f39c2051a456b3d0d2c954e9f3101522b42cc4f1
doctor_cancel_after_start   6f4d109c1b178785c4bdadd49918f704f1a8c5f8a4c0abc0f18c5dcedae883dd
refund_not_yet              ff946e7e932834b76b332500bde2af27edcad3e60e40729f689afbd83cec0c44
not_confirmed               e74034e58f45adabacab59d8b26808bd08e90424b97c93f94dffd45c05a38bf6
not_started                 8f532682eb8d91f26e15015ab27b591567d088d5321f70276ef1d37106862a6e
report_not_own_record       08efcaf8c4a69a1692fa7aa10010012528706d869e4051beecf51c2d58e64409
report_not_active_notes     a1c3392180e87822fafe8277f4f87982b3bf69f7fc9be98bcd30f6995219904b
doctor_cannot_read          59330767d82b52cb6ec0abe3f79c749709df754499292d1fdda98c5ac4ad9aa2
prescription_not_medication 72dfcfb0c470ac255cde83fb8fe38de8a128188e03ea5ba5b2a93adbea1062fa
self_prescription           08f271887ce94707da822d5263bae19d5519cb3614e0daedc4c7ce5dab7473f1
pharmacy_key_mismatch       8ce86a6ae65d3692e7305e2c58ac62eebd97d3d943e093f577da25c36988246b
already_dispensed           1473e2a146c04263d6da33fdcd991d1abcd38302439f5c01d2f2ccf7c2b17fb1
prescription_rejected       a97c3f9edb1de31344915d1e91fafb6d47181e9efdf4b39c2b3f86dd16c1a5fb
not_your_pharmacy           422b705e25264ae98ceaf1e7eadb3684b0790b53a8d0b49fbacaec8e47f8f011
invoice_paid                d66ea97dfe4b91cce6eab672c710cd5332973a155dd4169ad47c3dd101d9f21c
claim_open                  e3a48e665c98fc2868b254a88254a8027e5c7320a292c8edea11d8a77b8ac270
coverage_too_high           2efea1c84a6ff9c3702b5af3d645ac06b518077accaad982e3683bc66411dcc3
approval_levels             2a724b82cba5dcc164bf70de1652c5a5e1e0c20c816a0856a4205200d6b0839e
duplicate_approver          1c723dbe29b8cff14132a2809e9060c8fdb1ffeeae244ed7c199a302f3403dae
approver_not_eligible       b4bef017e3da4779f03b79366391f8c7630dece575ceb685aff7fb002ac8df91
policy_not_for_patient      0ad7f5c37c21c364c2c2540edd7423dce4669b6e599f8baf9659d3cb2d0df70e
policy_expired              abc4afac67f6e48fadb00e9d3339f7a98ac8467b62af03dd1f5e04c9592d0003
insurer_already_paid        ee5ce39130d782a1ebd4c04830acaea4de33bf8ec52305b4dc9b480165cda7db
claim_not_open              af9583ecc84372db53267a06f45fbb2705700ee2775989313a341e1cea109d0d
claim_level_not_reached     d9f73e27089186ab0be027d60c38b920e639b01dd44f285d5167e53b3a44035c
claim_level_decided         d6ccd86c8a763b71749316bdac026c162f5488ccaf6d3dcb80ca0645bcf40faa
not_an_approver             3c070c01ecc98e1de85e3a2b2fc34cf7cbef36749dad40d09a9190f0593a3c85
guardian_count              cf03b90cc24c2d2b84d4fbdf6ef43f336374d58827f687965d18e04943b6cb1d
bad_threshold               9d040727bdfeb7d30ff4989391399b824f4e805cb210e5149708cfd89397f7bd
guardian_not_eligible       b92d48a0f0075755bd3f05747e6957cbf5b3ef4ee697070a85ae361887a428da
duplicate_guardian          b32517e8e3a6b0f0b468db4946d3e9209653c64519486aa54aec35d2748e0cce
bad_commitments             2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6
bad_emergency_window        570dfe2f2ef384d943a8c5df6753f176f2cdbe0698fd27c827225ae7def6124b
no_guardians                56840eee56b0c6db1897f299954b3b72e5cd152fe4baad10e801e6d57bb42498
emergency_pending           4fdbb7dfce30514b96b9f5ab611a9dca237d5d1b0c62b684b133271188864b8d
bad_emergency_note          cd0aa9856147b6c5b4ff2b7dfee5da20aa38253099ef1b4a64aced233c9afe29
not_a_guardian              1704ee5b6305ebf2b37249783b157b06dcdc681c4e1f1e58737009f80eebb26e
already_answered            0ee6b0f8a4f9f3d2eb46c92b556f323af54ce57ecfdd1733d8d8a0626ddcef9f
emergency_closed            f97837ca4fceab67895c30145c3726c5a9661f3b75fdfe9309990c2bf22a6ea3
share_required              8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a
not_your_emergency          b24bfdfddc717087f06bd445f35ed48015616d84bf4bb07ef90dbcf406078757
share_not_revealed          f07deb5071f2ae7603cce9b691a9df10fbf46835a00aff4cd655f6e4c31959a5
share_valid                 4c961b157607c434c0dd1cd9b178165e40684d2a20d28aa75fb9adec8bac664d
not_reviewable              abbdbe9b32eb2eafb1000e75a6540a7c22f42f17ccac280a813c9b8feed3e38b
self_approval               61ad1ed294ce9a87f74e8144d80aa09454d747c1869672bed3b238e4f229c6f6
";

/// Every refusal code: one example per variant, each pinned; codes are unique snake_case and
/// match the JSON's `code`; messages render without CLI flags and decode back to the value.
#[test]
fn every_refusal_code() {
    let refusals = every_refusal();
    one_example_per_variant("Refusal", &refusals);
    let mut codes = BTreeSet::new();
    for r in &refusals {
        let code = r.code();
        assert!(codes.insert(code), "code {code} is used twice");
        assert!(
            code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{code}"
        );
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["code"], code);
        assert_eq!(json["message"], r.to_string());
        assert_eq!(serde_json::from_value::<Refusal>(json).unwrap(), *r);
        let message = r.to_string();
        assert!(!message.is_empty() && !message.contains("--"), "{message}");
        assert_eq!(
            ehrchain_ledger::TxError::from(r.clone()).code(),
            code,
            "{code}"
        );
    }
    let actual: Vec<_> = refusals
        .iter()
        .map(|r| (r.code().to_string(), encode(r)))
        .collect();
    check_pins("refusals", REFUSAL_PINS, &actual);
}

/// Receipts, applied and rejected.
#[test]
fn receipts() {
    let applied = Receipt {
        tx_id: Hash([0x40; 32]),
        outcome: TxOutcome::Applied,
    };
    let rejected = Receipt {
        tx_id: Hash([0x41; 32]),
        outcome: TxOutcome::Rejected {
            reason: Refusal::InsufficientBalance {
                balance: 70,
                needed: 1_000,
            },
        },
    };
    one_example_per_variant(
        "TxOutcome",
        &[applied.outcome.clone(), rejected.outcome.clone()],
    );
    let actual = [
        ("applied", encode(&applied)),
        ("rejected", encode(&rejected)),
    ]
    .map(|(n, b)| (n.to_string(), b));
    check_pins("receipts", RECEIPT_PINS, &actual);
}

const RECEIPT_PINS: &str = "
applied  453dbbd4cd91d887081abb688c8a167baf0d28b58d8cc6c2aced90f4d90337c6
rejected a77488137eb9ffa4264afd7dfa0af23c1e71a6ac7f34a34ca9c85143f979136f
";

/// One example of every audit reason, in variant order.
fn every_audit_reason() -> Vec<AuditReason> {
    vec![
        AuditReason::None,
        AuditReason::OwnRecord,
        AuditReason::Author,
        AuditReason::DirectedPharmacy {
            rx: item(ItemKind::Prescription, 3),
        },
        AuditReason::Grant {
            expires_ms: Some(T0 + 1),
        },
        AuditReason::OrganisationGrant {
            organisation: "StMarys".into(),
        },
        AuditReason::WaitingForApproval,
        AuditReason::Denied(Refusal::NoConsent {
            category: Category::Lab,
        }),
        AuditReason::GrantTerms {
            write: true,
            expires_ms: None,
        },
        AuditReason::KeyEpoch { epoch: 3 },
        AuditReason::Request { request: REQUEST },
        AuditReason::ClaimLevel {
            level: 1,
            levels: 2,
            reason: "not covered by the policy".into(),
        },
        AuditReason::Withheld,
        AuditReason::Emergency {
            request: item(ItemKind::Emergency, 8),
            expires_ms: Some(T0 + 2 * 3_600_000),
        },
        AuditReason::Guardians {
            threshold: 2,
            guardians: 3,
            max_duration_ms: 24 * 3_600_000,
        },
        AuditReason::EmergencyAsked {
            request: item(ItemKind::Emergency, 8),
            reason: EmergencyReason::Unconscious,
            duration_ms: 2 * 3_600_000,
        },
    ]
}

/// Every audit action, in variant order (each is its tag alone; the events pin one).
fn every_audit_action() -> Vec<AuditAction> {
    use AuditAction::*;
    vec![
        RecordAdded,
        RecordApproved,
        RecordRejected,
        Read,
        Granted,
        Revoked,
        AccessRequested,
        RequestApproved,
        RequestDenied,
        KeyRotated,
        SlotPublished,
        AppointmentBooked,
        AppointmentConfirmed,
        AppointmentDeclined,
        AppointmentCancelled,
        AppointmentCompleted,
        SymptomsReported,
        Prescribed,
        PrescriptionDirected,
        Dispensed,
        InvoiceIssued,
        InvoicePaid,
        PolicyRecorded,
        ClaimSubmitted,
        ClaimApproved,
        ClaimRejected,
        ClaimPaid,
        ClaimWithdrawn,
        GuardiansSet,
        EmergencyRequested,
        EmergencyApproved,
        EmergencyRefused,
        EmergencyReleased,
        EmergencyClosed,
        BadShare,
        EmergencyReviewed,
        EmergencyDisputed,
    ]
}

const AUDIT_PINS: &str = "
reason none                 6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d
reason own_record           4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a
reason author               dbc1b4c900ffe48d575b5da5c638040125f65db0fe3e24494b76ea986457d986
reason directed_pharmacy    57d56893bf736bdad09e65f1f083d505fb1e7138c5785993675424aeb7c72435
reason grant                8dcfbebca4d1b7a2ab89745e1faf7001c41ffa764b67c3e3911a1cb9e4ddca73
reason organisation_grant   f00610e68a1c0c451e8c26e69bac892035adf2306d32b6df0362152c8ac2bd02
reason waiting_for_approval 67586e98fad27da0b9968bc039a1ef34c939b9b8e523a8bef89d478608c5ecf6
reason no_consent           1aff0af902c78eeb4945ab4c22813325047e9e0eb8538ffb0c65a64f99c96094
reason grant_terms          9dc27716310d8e7b99af8e9e4fd17dde3e15969631022500d4de2c4f4106ad2e
reason key_epoch            effed14a7c88949ded28e02ff3382222af55f190629fed5fe27eeefb357fb1f3
reason request              205f4b96d84735d11beeb8f94eec12b27095cf525616977cfcfa2b5555a90d6b
reason claim_level          2fd7e66ea9dd42dd40cd5c2e9668bb6e67a1f3253dba34e465589f9d241c0258
reason withheld             ef6cbd2161eaea7943ce8693b9824d23d1793ffb1c0fca05b600d3899b44c977
reason emergency            060898cad43e58c823e3b7b86c269d36abe05b7d6c96f6e863b044ad124ca6a3
reason guardians            1004e4d87d925962267270b5e94ec0be24c1737aef9c866e2bc1314e1904d735
reason emergency_asked      9869593e2e2a88b1110164e037bbbb6df7b63993e75a24dfbe05a01d07e4ef55
event claim_paid            e95a5fb0a1f52b41d74fb8aafa78ff200bc431e91857c2ca9aa4556d3246d7ad
event id claim_paid         ff62f6d3afcd63140aed0d56bc6e3a931c232e2608e56c82e712ae2ad49e3306
event denied read           78082be7599a880f9d12327e1df2afe7beded7c227515018e43c115db77f15d5
event emergency_released    720ce152b88ae7712ff04927e9c5b083308d84d323116f19998c28eba1c610ef
";

/// Audit events (an allowed workflow event and a denied read) and every audit reason.
#[test]
fn audit_events_and_reasons() {
    let reasons = every_audit_reason();
    one_example_per_variant("AuditReason", &reasons);
    one_example_per_variant("AuditAction", &every_audit_action());
    let mut actual: Vec<_> = reasons
        .iter()
        .map(|r| (format!("reason {}", r.code()), encode(r)))
        .collect();
    for r in &reasons {
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["code"], r.code());
        assert_eq!(serde_json::from_value::<AuditReason>(json).unwrap(), *r);
    }
    let paid = AuditEvent {
        tx: Hash([0x50; 32]),
        time_ms: T0,
        actor: acct(6),
        patient: acct(2),
        action: AuditAction::ClaimPaid,
        record: None,
        categories: vec![],
        counterparty: Some(Grantee::Account(acct(5))),
        decision: Decision::Allowed,
        reason: AuditReason::None,
        item: Some(item(ItemKind::Claim, 6)),
        amount: Some(40),
    };
    let denied = AuditEvent {
        tx: Hash([0x51; 32]),
        time_ms: T0,
        actor: acct(4),
        patient: acct(2),
        action: AuditAction::Read,
        record: Some(RECORD),
        categories: vec![Category::Imaging],
        counterparty: None,
        decision: Decision::Denied,
        reason: AuditReason::Denied(Refusal::GrantExpired {
            category: Category::Imaging,
            expired_ms: T0 - 1,
        }),
        item: None,
        amount: None,
    };
    actual.push(("event claim_paid".into(), paid.leaf()));
    actual.push(("event id claim_paid".into(), paid.id().0.to_vec()));
    let released = AuditEvent {
        tx: Hash([0x52; 32]),
        time_ms: T0,
        actor: acct(8),
        patient: acct(2),
        action: AuditAction::EmergencyReleased,
        record: None,
        categories: vec![Category::Medication, Category::Emergency],
        counterparty: Some(Grantee::Account(acct(4))),
        decision: Decision::Allowed,
        reason: AuditReason::Emergency {
            request: item(ItemKind::Emergency, 8),
            expires_ms: Some(T0 + 2 * 3_600_000),
        },
        item: Some(item(ItemKind::Emergency, 8)),
        amount: None,
    };
    actual.push(("event denied read".into(), denied.leaf()));
    actual.push(("event emergency_released".into(), released.leaf()));
    check_pins("audit events and reasons", AUDIT_PINS, &actual);
}

/// Every state key, and the value stored under each kind of key.
#[test]
fn state_keys_and_entries() {
    let keys = vec![
        StateKey::Account(acct(2)),
        StateKey::Record(RECORD),
        StateKey::Keys(acct(2), Category::Lab),
        StateKey::Grant(acct(2), Grantee::Organisation("StMarys".into())),
        StateKey::Request(REQUEST),
        StateKey::Item(item(ItemKind::Invoice, 4)),
    ];
    one_example_per_variant("StateKey", &keys);
    let account = Account {
        public_key: Some(key(4).public_key()),
        role: Some(Role::Doctor),
        status: AccountStatus::Active,
        organisation: Some("StMarys".into()),
        licence: Some("GMC-1234567".into()),
        approved_by: Some(acct(1)),
        approved_at: Some(3),
        balance: 120,
        nonce: 9,
        encryption_key: Some(EncryptionKey([0x19; 32])),
        profile: Some(RECORD),
    };
    let record = Record {
        id: RECORD,
        patient: acct(2),
        author: acct(4),
        category: Category::Notes,
        content: Hash([0x15; 32]),
        size: 1234,
        commitment: Hash([0x16; 32]),
        meta: HexBytes(vec![0x17; SEALED_META_BYTES]),
        key: direct_key(),
        status: RecordStatus::Pending,
        created_ms: T0,
        height: 12,
        reviewed_ms: None,
        coding: None,
    };
    let grant = Grant {
        categories: vec![Category::Lab],
        expires_ms: Some(T0 + 1),
        write: false,
        granted_ms: T0,
        wraps: vec![wrap(Category::Lab, 0, 4)],
    };
    let request = AccessRequest {
        id: REQUEST,
        requester: acct(4),
        patient: acct(2),
        categories: vec![Category::Vitals],
        write: true,
        reason: sealed(0x21),
        status: RequestStatus::Approved,
        created_ms: T0,
        answered_ms: Some(T0 + 5),
    };
    let names = ["account", "record", "keys", "grant", "request", "item"];
    let mut actual: Vec<(String, Vec<u8>)> = keys
        .iter()
        .zip(names)
        .map(|(k, n)| (format!("key {n}"), encode(k)))
        .collect();
    actual.push(("account".into(), encode(&account)));
    actual.push(("record".into(), encode(&record)));
    actual.push((
        "category keys".into(),
        encode(&vec![sealed(0x20), sealed(0x22)]),
    ));
    actual.push(("grant".into(), encode(&grant)));
    actual.push(("access request".into(), encode(&request)));
    check_pins("state keys and entries", STATE_PINS, &actual);
}

const STATE_PINS: &str = "
key account    14ca1ae3e036cfaeee413a83b78b462a935b47f40fb1bb7a624c48c162616f6d
key record     8372c3eb5f9d949897a5e69a6387aa7bd36134ac8b224221f94f95ec5a6dd3a3
key keys       9ce2bc613e322399f0f6d5c31a153194c8fa99edca89c13bbcf2a535e0610cb6
key grant      0b5136364e3d9f95d95d6f3c2871821296dd4df7c5642dda129a8fadc1e35ae9
key request    c93c65ca0953e080abb41edf8c457cbd2b50813102868b8612947fb162f4e764
key item       22d49a1a103242d7531dd094466decafca95345ae912ca1373b5bb4b26ffc5d5
account        b367ea99512963cba180fd3023291f9c234df9a7e15b65c53a2add29b6d4dd73
record         b9b98a9a5049028453a89331da9b4d268d89b994bc929d856dee08ce6289c363
category keys  922f55c4318529adc4daff96e5ebfdba034878caf3ac761aaadabbaa624fff5a
grant          b43f88a3ea051a9449a2ca55c95a597363d75da0b157a946d3b9c9a31bdb63c5
access request f1fc4eaa5aa0e4037d85c59b1b24cba9073a668af715526dd45c269c6c6bc169
";

/// Every clinical workflow item, as stored (`Item`).
#[test]
fn clinical_items() {
    let items = vec![
        Item::Slot(Slot {
            id: item(ItemKind::Slot, 1),
            doctor: acct(4),
            start_ms: T0 + 3_600_000,
            minutes: 30,
            fee: 20,
            status: SlotStatus::Confirmed,
            patient: Some(acct(2)),
            booked_ms: Some(T0),
        }),
        Item::Report(Report {
            id: item(ItemKind::Report, 2),
            patient: acct(2),
            doctor: acct(4),
            record: RECORD,
            created_ms: T0,
        }),
        Item::Prescription(Prescription {
            id: item(ItemKind::Prescription, 3),
            patient: acct(2),
            doctor: acct(4),
            record: RECORD,
            pharmacy: Some(acct(5)),
            pharmacy_key: Some(sealed(5)),
            status: RxStatus::Dispensed,
            created_ms: T0,
            dispensed_ms: Some(T0 + 1),
            invoice: Some(item(ItemKind::Invoice, 4)),
        }),
        Item::Invoice(Invoice {
            id: item(ItemKind::Invoice, 4),
            patient: acct(2),
            payee: acct(5),
            amount: 50,
            insurer_paid: 40,
            status: InvoiceStatus::Unpaid,
            source: item(ItemKind::Prescription, 3),
            open_claim: None,
            created_ms: T0 + 1,
            paid_ms: None,
        }),
        Item::Policy(Policy {
            id: item(ItemKind::Policy, 5),
            insurer: acct(6),
            patient: acct(2),
            coverage_bp: 8_000,
            approvers: vec![acct(6), acct(7)],
            created_ms: T0,
            expires_ms: Some(T0 + 365 * 86_400_000),
        }),
        Item::Claim(Claim {
            id: item(ItemKind::Claim, 6),
            invoice: item(ItemKind::Invoice, 4),
            policy: item(ItemKind::Policy, 5),
            patient: acct(2),
            insurer: acct(6),
            payee: acct(5),
            amount: 50,
            share: 40,
            approvers: vec![acct(6), acct(7)],
            decisions: vec![
                ClaimDecision {
                    approver: acct(6),
                    approve: true,
                    time_ms: T0 + 2,
                    reason: "covered medication".into(),
                },
                ClaimDecision {
                    approver: acct(7),
                    approve: true,
                    time_ms: T0 + 3,
                    reason: String::new(),
                },
            ],
            status: ClaimStatus::Approved,
            created_ms: T0 + 1,
        }),
        Item::Guardianship(Guardianship {
            id: item(ItemKind::Guardianship, 7),
            patient: acct(2),
            guardians: guardians(),
            threshold: 2,
            categories: vec![Category::Medication, Category::Emergency],
            max_duration_ms: 24 * 3_600_000,
            commitments: commitments(),
            emergency_key: EncryptionKey([0x62; 32]),
            wraps: vec![
                wrap(Category::Medication, 0, 2),
                wrap(Category::Emergency, 0, 2),
            ],
            status: GuardianshipStatus::Replaced,
            created_ms: T0,
            replaced_ms: Some(T0 + 9),
        }),
        Item::Emergency(EmergencyRequest {
            id: item(ItemKind::Emergency, 8),
            patient: acct(2),
            doctor: acct(4),
            organisation: Some("StMarys".into()),
            guardianship: item(ItemKind::Guardianship, 7),
            guardians: vec![acct(6), acct(7), acct(8)],
            threshold: 2,
            categories: vec![Category::Medication, Category::Emergency],
            reason: EmergencyReason::LifeThreatening,
            notes: vec![(acct(2), sealed(0x63))],
            duration_ms: 2 * 3_600_000,
            answers: vec![
                GuardianAnswer {
                    guardian: acct(7),
                    approve: true,
                    time_ms: T0 + 2,
                    share: Some(sealed(0x65)),
                    digest: Some(Hash([0x66; 32])),
                    bad: true,
                },
                GuardianAnswer {
                    guardian: acct(6),
                    approve: false,
                    time_ms: T0 + 3,
                    share: None,
                    digest: None,
                    bad: false,
                },
                GuardianAnswer {
                    guardian: acct(8),
                    approve: true,
                    time_ms: T0 + 4,
                    share: Some(sealed(0x68)),
                    digest: Some(Hash([0x69; 32])),
                    bad: false,
                },
            ],
            status: EmergencyStatus::Released,
            created_ms: T0 + 1,
            released_ms: Some(T0 + 4),
            expires_ms: Some(T0 + 4 + 2 * 3_600_000),
            review: Some(EmergencyReview::Reviewed),
            reviewed_ms: Some(T0 + 5 + 2 * 3_600_000),
        }),
    ];
    one_example_per_variant("Item", &items);
    one_example_per_variant("ItemKind", &ItemKind::ALL);
    let actual: Vec<_> = items
        .iter()
        .map(|i| (i.kind().word().to_string(), encode(i)))
        .collect();
    check_pins("clinical items", ITEM_PINS, &actual);
}

const ITEM_PINS: &str = "
slot         788f6c6c811c8660e5775f9aaafdac81ca0611da5e6b56f084a94f1abece836b
report       fc2cf4dad95980bb2e1f1d12e2bc41a1aee397156d15aa4c771782eebbb920f3
prescription f305bc59b97a11668ee9cdbd6d528ab6316d2b27bedd42b7f8b6645d285d454b
invoice      bd4480379a34b8f1820efae7b08ab9028dae9381ddf7722bc6d421c1d2f4fd50
policy       27bf96f1025842de25ac6048cd42cbc7deaa418946e094d24e3e59e84a60f01c
claim        e1f7470c6263a79fb68d8d321cf195b8f19b4d46db93f4e0caefd206051f9a34
guardianship 918132f39fba89d9e42e2a7923487949d484f43e0d64b402171e64a681f5077a
emergency    275dd965a8bd5432e90d962bbcc002d02135776915c0bc00255a5050ebac64a6
";
