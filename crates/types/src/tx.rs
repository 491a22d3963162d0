//! Transactions: what an account asks the ledger to do, signed with its key.

use crate::{
    AccountId, Hash, ItemId, PublicKey, RecordDraft, Role, Signature,
    domain::{self, tagged_hash},
    records::{
        Category, EncryptionKey, Grantee, HexBytes, KeyWrap, RecordId, RecordKey, RequestId,
        Rotation, SealedKey,
    },
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Longest organisation name accepted.
pub const MAX_ORGANISATION_LEN: usize = 128;
/// Longest licence number accepted.
pub const MAX_LICENCE_LEN: usize = 64;

/// The body of a transaction: one operation of one contract. New variants are only ever
/// appended, so the encoding of existing ones never changes.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxPayload {
    /// Register the signer's account in a role. Professional roles start pending.
    ///
    /// `licence` is a professional register number (public in the registers that issue it),
    /// so the approver can check it; no other personal detail goes on the ledger.
    Register {
        role: Role,
        organisation: Option<String>,
        licence: Option<String>,
    },
    /// The consortium admin approves a pending professional account.
    Approve { account: AccountId },
    /// Move tokens from the signer to another account.
    Transfer { to: AccountId, amount: u64 },
    /// Register in a role and publish the X25519 key others seal record keys to.
    Enrol {
        role: Role,
        organisation: Option<String>,
        licence: Option<String>,
        encryption_key: EncryptionKey,
    },
    /// Start a new epoch of one of the signer's category keys (the first epoch is 0).
    RotateKey { rotation: Rotation },
    /// Anchor an encrypted record: the hash of its ciphertext, a keyed commitment to its
    /// plaintext, encrypted metadata and its data key (wrapped). Written by the patient, or by
    /// a professional with write access (then it waits for the patient's approval).
    ///
    /// (A newtype variant: its borsh and JSON encodings are those of the inline fields.)
    AddRecord(RecordDraft),
    /// The patient approves (with the data key re-wrapped under a category key) or rejects a
    /// record someone else wrote for them.
    ReviewRecord {
        record: RecordId,
        approve: bool,
        key: Option<RecordKey>,
    },
    /// Grant (or replace the grant of) read, or read and write, access to categories.
    Grant {
        to: Grantee,
        categories: Vec<Category>,
        /// Block time after which the grant no longer allows anything.
        expires_ms: Option<u64>,
        write: bool,
        /// Every epoch of every granted category key, sealed to each recipient.
        wraps: Vec<KeyWrap>,
    },
    /// Revoke a grant (all of it when `categories` is empty); each revoked category starts a
    /// new key epoch in the same transaction, so later records are out of the revoked party's
    /// reach cryptographically as well.
    Revoke {
        from: Grantee,
        categories: Vec<Category>,
        rotations: Vec<Rotation>,
    },
    /// A professional asks a patient for access; the reason is sealed to the patient.
    RequestAccess {
        patient: AccountId,
        categories: Vec<Category>,
        write: bool,
        reason: SealedKey,
    },
    /// The patient answers a request; approving grants what was asked.
    AnswerRequest {
        request: RequestId,
        approve: bool,
        expires_ms: Option<u64>,
        wraps: Vec<KeyWrap>,
    },
    /// Ask to read a record. Always recorded in the audit trail with the decision; the node
    /// serves the ciphertext only after an allowed read is finalized.
    ReadRecord { record: RecordId },
    /// A doctor publishes an appointment slot with a fee in tokens.
    AddSlot {
        start_ms: u64,
        minutes: u32,
        fee: u64,
    },
    /// A patient books an open slot; the fee moves into escrow.
    Book { slot: ItemId },
    /// The doctor confirms a booking, or declines it (the fee goes back to the patient).
    AnswerBooking { slot: ItemId, confirm: bool },
    /// Cancel before the slot starts: by the patient (refund, the slot opens again) or the
    /// doctor (refund, the slot is withdrawn).
    CancelBooking { slot: ItemId },
    /// The doctor completes a confirmed appointment: the escrowed fee is paid to them.
    CompleteAppointment { slot: ItemId },
    /// A patient sends a symptom report (one of their own encrypted `notes` records, which
    /// the doctor must be able to read under consent) to a doctor's inbox.
    ReportSymptoms { doctor: AccountId, record: RecordId },
    /// A doctor with write consent for the patient's medication records prescribes: the
    /// prescription is an encrypted medication record, optionally directed to a pharmacy
    /// (with the data key sealed to it).
    Prescribe {
        record: RecordDraft,
        pharmacy: Option<AccountId>,
        pharmacy_key: Option<SealedKey>,
    },
    /// The patient directs a prescription (not yet dispensed) to a pharmacy.
    DirectPrescription {
        rx: ItemId,
        pharmacy: AccountId,
        pharmacy_key: SealedKey,
    },
    /// The designated pharmacist dispenses a prescription, once; this issues an invoice.
    Dispense { rx: ItemId, price: u64 },
    /// The patient pays what they owe on an invoice, all of it, once.
    PayInvoice { invoice: ItemId },
    /// An insurer records a policy for a patient: the share of each claim it pays and who
    /// approves claims, level by level.
    SetPolicy {
        patient: AccountId,
        coverage_bp: u16,
        approvers: Vec<AccountId>,
        expires_ms: Option<u64>,
    },
    /// A patient claims an unpaid invoice under one of their policies.
    SubmitClaim { invoice: ItemId, policy: ItemId },
    /// The approver of a claim's current level approves or rejects it. The reason is public
    /// on the ledger: no patient data in it.
    DecideClaim {
        claim: ItemId,
        approve: bool,
        reason: String,
    },
    /// The patient withdraws an open claim (say, one an approver never decides), so the
    /// invoice can be paid in full.
    WithdrawClaim { claim: ItemId },
    /// A patient names guardians for emergency access: each receives a share of the emergency
    /// key (sealed to it), `threshold` of them together release it, and the `categories`'
    /// keys of every epoch are sealed to the emergency key. Replaces any earlier guardians
    /// (their open requests are withdrawn); an empty list of guardians removes them.
    SetGuardians {
        guardians: Vec<crate::items::Guardian>,
        threshold: u8,
        categories: Vec<Category>,
        max_duration_ms: u64,
        /// Feldman commitments (compressed Ristretto points), `threshold` of them.
        commitments: Vec<Hash>,
        emergency_key: EncryptionKey,
        /// The categories' keys, every epoch, sealed to `emergency_key`, recipient the patient.
        wraps: Vec<KeyWrap>,
    },
    /// An approved doctor asks a patient's guardians for emergency access for `duration_ms`.
    /// The notes (free text) are sealed to the patient and to guardians.
    RequestEmergency {
        patient: AccountId,
        reason: crate::items::EmergencyReason,
        notes: Vec<(AccountId, SealedKey)>,
        duration_ms: u64,
    },
    /// A guardian answers an emergency request, once. An approval carries the guardian's
    /// share and a salt sealed to the doctor, and the digest binding the guardian to them.
    AnswerEmergency {
        request: ItemId,
        approve: bool,
        share: Option<SealedKey>,
        digest: Option<Hash>,
    },
    /// The requesting doctor proves a guardian's share wrong: the revealed bytes match the
    /// digest the guardian published, and the share fails the Feldman check.
    ReportBadShare {
        request: ItemId,
        guardian: AccountId,
        revealed: HexBytes,
    },
    /// The patient reviews a released emergency access: reviewed, or disputed (which every
    /// regulator sees).
    ReviewEmergency {
        request: ItemId,
        review: crate::items::EmergencyReview,
    },
}

impl TxPayload {
    /// A short name of the operation, for receipts, metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TxPayload::Register { .. } => "register",
            TxPayload::Approve { .. } => "approve",
            TxPayload::Transfer { .. } => "transfer",
            TxPayload::Enrol { .. } => "enrol",
            TxPayload::RotateKey { .. } => "rotate_key",
            TxPayload::AddRecord(_) => "add_record",
            TxPayload::ReviewRecord { .. } => "review_record",
            TxPayload::Grant { .. } => "grant",
            TxPayload::Revoke { .. } => "revoke",
            TxPayload::RequestAccess { .. } => "request_access",
            TxPayload::AnswerRequest { .. } => "answer_request",
            TxPayload::ReadRecord { .. } => "read_record",
            TxPayload::AddSlot { .. } => "add_slot",
            TxPayload::Book { .. } => "book",
            TxPayload::AnswerBooking { .. } => "answer_booking",
            TxPayload::CancelBooking { .. } => "cancel_booking",
            TxPayload::CompleteAppointment { .. } => "complete_appointment",
            TxPayload::ReportSymptoms { .. } => "report_symptoms",
            TxPayload::Prescribe { .. } => "prescribe",
            TxPayload::DirectPrescription { .. } => "direct_prescription",
            TxPayload::Dispense { .. } => "dispense",
            TxPayload::PayInvoice { .. } => "pay_invoice",
            TxPayload::SetPolicy { .. } => "set_policy",
            TxPayload::SubmitClaim { .. } => "submit_claim",
            TxPayload::DecideClaim { .. } => "decide_claim",
            TxPayload::WithdrawClaim { .. } => "withdraw_claim",
            TxPayload::SetGuardians { .. } => "set_guardians",
            TxPayload::RequestEmergency { .. } => "request_emergency",
            TxPayload::AnswerEmergency { .. } => "answer_emergency",
            TxPayload::ReportBadShare { .. } => "report_bad_share",
            TxPayload::ReviewEmergency { .. } => "review_emergency",
        }
    }
}

/// An unsigned transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Transaction {
    /// The chain this transaction is meant for; another chain refuses it.
    pub chain_id: String,
    /// The author's public key; the account is derived from it.
    pub signer: PublicKey,
    /// The author's next nonce: each account's transactions apply in nonce order, once.
    pub nonce: u64,
    pub payload: TxPayload,
}

impl Transaction {
    /// The bytes the author signs: the domain tag, then the canonical encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = domain::TX_SIGNATURE.to_vec();
        borsh::to_writer(&mut out, self).expect("encoding into a Vec cannot fail");
        out
    }

    /// The transaction id: a tagged hash of the unsigned transaction, so the same operation
    /// has the same id whatever the signature bytes.
    pub fn id(&self) -> Hash {
        tagged_hash(domain::TX_ID, &[&crate::encode(self)])
    }

    /// The author's account.
    pub fn sender(&self) -> AccountId {
        AccountId::from_public_key(&self.signer)
    }
}

/// A transaction with its author's signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

/// Why a signature does not check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the signer field is not a valid ed25519 public key")]
    BadPublicKey,
    #[error("the signer key has small order")]
    WeakKey,
    #[error("the signature does not match the transaction and signer")]
    Mismatch,
}

/// Checks many transactions' signatures, one result per transaction, in order.
///
/// The rule is ed25519's cofactored equation (what batch verification checks), with
/// canonical `s` and no small-order signer key. It is the same rule for one transaction and
/// for many, so whether a transaction is valid never depends on which batch a validator
/// checked it in. All the well-formed signatures are checked in one batch (about a third of
/// the cost of checking them one by one); only when the batch fails is each checked alone, to
/// say which.
pub fn verify_signatures<'a>(
    txs: impl IntoIterator<Item = &'a SignedTransaction>,
) -> Vec<Result<(), SignatureError>> {
    let mut results = Vec::new();
    let (mut keys, mut sigs, mut msgs, mut at) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for stx in txs {
        match ed25519_dalek::VerifyingKey::from_bytes(&stx.tx.signer.0) {
            Err(_) => results.push(Err(SignatureError::BadPublicKey)),
            Ok(key) if key.is_weak() => results.push(Err(SignatureError::WeakKey)),
            Ok(key) => {
                at.push(results.len());
                results.push(Ok(()));
                keys.push(key);
                sigs.push(ed25519_dalek::Signature::from_bytes(&stx.signature.0));
                msgs.push(stx.tx.signing_bytes());
            }
        }
    }
    let check = |range: std::ops::Range<usize>| {
        let m: Vec<&[u8]> = msgs[range.clone()].iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(&m, &sigs[range.clone()], &keys[range]).is_ok()
    };
    if !keys.is_empty() && !check(0..keys.len()) {
        for (j, &i) in at.iter().enumerate() {
            if !check(j..j + 1) {
                results[i] = Err(SignatureError::Mismatch);
            }
        }
    }
    results
}

impl SignedTransaction {
    /// Checks the signature, by the rule of [`verify_signatures`].
    pub fn verify_signature(&self) -> Result<(), SignatureError> {
        verify_signatures([self])
            .pop()
            .expect("one result per transaction")
    }

    /// The transaction id (see [`Transaction::id`]).
    pub fn id(&self) -> Hash {
        self.tx.id()
    }
}
