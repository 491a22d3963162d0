//! What the API answers: the ledger's values wrapped with what the node adds.

use ehrchain_types::{
    AccountId, AuditEvent, BlockHeader, Category, EventId, Grantee, Hash, KeyWrap, PublicKey,
    Receipt, SealedKey, SignedTransaction,
    entries::{Account, Grant, Record},
};
use serde::{Deserialize, Serialize};

/// Chain status (`GET /api/v1/status`).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StatusView {
    pub chain_id: String,
    pub genesis_id: Hash,
    pub height: u64,
    pub tip_id: Hash,
    pub tip_timestamp_ms: u64,
    pub state_root: Hash,
    pub mempool_size: usize,
    pub validators: usize,
    pub accounts: usize,
    pub total_supply: u128,
    /// The account holding appointment fees between booking and completion (no key signs
    /// for it), and what it holds.
    pub escrow_account: AccountId,
    pub escrow_balance: u64,
}

/// An account (`GET /api/v1/accounts/{id}`, and in listings).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct AccountView {
    pub id: AccountId,
    /// False for an id the ledger has never seen (all fields are then defaults).
    pub exists: bool,
    /// The nonce the account's next new transaction should carry (counts its transactions
    /// still waiting in the mempool).
    pub next_nonce: u64,
    /// Fingerprint of the encrypted profile record (what the account's QR code carries).
    #[serde(default)]
    pub profile_fingerprint: Option<String>,
    #[serde(flatten)]
    pub account: Account,
}

/// A transaction submission: the hex of the canonical encoding of a signed transaction.
#[derive(Serialize, Deserialize, Debug)]
pub struct SubmitRequest {
    pub tx: String,
}

/// The answer to an accepted submission.
#[derive(Serialize, Deserialize, Debug)]
pub struct SubmitResponse {
    pub id: Hash,
}

/// Most transactions in one batch submission.
pub const MAX_BATCH: usize = 1_000;

/// A batch submission: up to [`MAX_BATCH`] hex-encoded signed transactions.
#[derive(Serialize, Deserialize, Debug)]
pub struct BatchRequest {
    pub txs: Vec<String>,
}

/// One result per submitted transaction, in order: `id` when admitted, else `error`.
#[derive(Serialize, Deserialize, Debug)]
pub struct BatchResult {
    pub id: Option<Hash>,
    pub error: Option<crate::ErrorInfo>,
}

/// Where a transaction stands.
pub mod tx_status {
    /// In the mempool.
    pub const PENDING: &str = "pending";
    /// In a finalized block.
    pub const FINALIZED: &str = "finalized";
    /// Neither (never seen, or dropped from the mempool).
    pub const UNKNOWN: &str = "unknown";
}

/// A transaction's status. Its body, receipt and events only for its parties and members;
/// everyone else sees `redacted: true` and the place on the ledger.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct TxView {
    pub id: Hash,
    /// `pending` (in the mempool), `finalized`, or `unknown` ([`tx_status`]).
    pub status: String,
    pub height: Option<u64>,
    pub index: Option<u32>,
    pub sender: Option<AccountId>,
    pub receipt: Option<Receipt>,
    pub tx: Option<SignedTransaction>,
    /// The audit events the transaction produced that concern the viewer.
    #[serde(default)]
    pub events: Vec<EventView>,
    /// True when the body was withheld from this viewer.
    #[serde(default)]
    pub redacted: bool,
}

/// A block: to members the whole block with its receipts; to everyone else the header, the
/// transaction ids and the finality certificate.
#[derive(Serialize, Deserialize, Debug)]
pub struct BlockView {
    pub id: Hash,
    pub header: BlockHeader,
    /// The ids of the block's transactions, in order.
    pub tx_ids: Vec<Hash>,
    /// The signed transactions (members only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txs: Option<Vec<SignedTransaction>>,
    /// The receipts (members only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipts: Option<Vec<Receipt>>,
    /// The engine's finality certificate (hex), absent for genesis.
    pub finalization: Option<String>,
    /// True when the bodies were withheld from this viewer.
    pub redacted: bool,
}

/// A block's outcomes without its body (members only).
#[derive(Serialize, Deserialize, Debug)]
pub struct ReceiptsView {
    pub height: u64,
    pub id: Hash,
    pub timestamp_ms: u64,
    pub receipts: Vec<Receipt>,
}

/// A block's canonical bytes and its finality certificate (members only).
#[derive(Serialize, Deserialize, Debug)]
pub struct RawBlockView {
    pub height: u64,
    /// The canonical encoding of the block, hex.
    pub bytes: String,
    /// The engine's finality certificate (hex), absent for genesis.
    pub finalization: Option<String>,
}

/// A block header summary for listings.
#[derive(Serialize, Deserialize, Debug)]
pub struct BlockSummary {
    pub id: Hash,
    pub height: u64,
    pub timestamp_ms: u64,
    pub tx_count: u32,
    pub proposer: PublicKey,
    pub state_root: Hash,
}

/// A record as a requester may see it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RecordView {
    #[serde(flatten)]
    pub record: Record,
    /// CIDv1 of the ciphertext.
    pub cid: String,
    /// Why the requester may see it.
    pub access: ehrchain_types::AuditReason,
}

/// One category's keys, sealed to the patient.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct OwnKeys {
    pub category: Category,
    /// Index = epoch; the last one is current.
    pub epochs: Vec<SealedKey>,
}

/// The key material a requester holds for a patient.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct KeysView {
    pub patient: AccountId,
    /// The patient's own sealed category keys (only when the patient asks).
    pub own: Vec<OwnKeys>,
    /// Category keys sealed to the requester through grants in force.
    pub wraps: Vec<KeyWrap>,
}

impl KeysView {
    /// No key material for `patient`.
    pub fn empty(patient: AccountId) -> KeysView {
        KeysView {
            patient,
            own: Vec::new(),
            wraps: Vec::new(),
        }
    }
}

/// A grant as its patient or its grantee sees it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct GrantView {
    pub patient: AccountId,
    pub grantee: Grantee,
    pub expired: bool,
    #[serde(flatten)]
    pub grant: Grant,
}

/// An audit event with where it is on the ledger.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct EventView {
    pub id: EventId,
    pub height: u64,
    pub index: u32,
    #[serde(flatten)]
    pub event: AuditEvent,
}

impl EventView {
    pub fn new(height: u64, index: u32, event: AuditEvent) -> EventView {
        EventView {
            id: event.id(),
            height,
            index,
            event,
        }
    }
}

/// The answer to an upload (`PUT /api/v1/blobs/{cid}`).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct UploadView {
    pub cid: String,
    pub size: u64,
    /// With several validators: the root of the erasure-coding manifest the content was
    /// placed under; the `add_record` that anchors it carries it (`RecordDraft::coding`).
    #[serde(default)]
    pub coding: Option<ehrchain_types::Hash>,
}

/// The answer to an upload pre-check (`GET /api/v1/blobs/check?size=N`).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct BlobCheckView {
    pub size: u64,
    pub accepted: bool,
}

/// A patient's break-glass card (`GET /api/v1/guardians?patient=…`): who the guardians are,
/// how many must agree, what an emergency opens and for how long at most. Shown to the
/// patient, the guardians and any approved doctor (who must know whom to ask, and seals the
/// request's note to them); the shares and keys stay on the guardianship item, which only the
/// patient and guardians see.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct GuardiansView {
    pub patient: AccountId,
    pub guardianship: ehrchain_types::ItemId,
    pub guardians: Vec<AccountId>,
    pub threshold: u8,
    pub categories: Vec<Category>,
    pub max_duration_ms: u64,
}
