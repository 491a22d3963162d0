//! The clinical workflow items the ledger stores: appointment slots, symptom reports,
//! prescriptions, invoices, insurance policies and claims. No medical content: what was
//! prescribed and what the patient reported live in encrypted records; an item holds who,
//! which record, what state and how many tokens.

use crate::{
    AccountId, Category, EncryptionKey, Hash, ItemId, ItemKind, KeyWrap, RecordId, SealedKey,
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// `name()`: the snake_case word an enum serialises as, for messages and listings.
macro_rules! named {
    ($t:ident { $($v:ident => $n:literal),* $(,)? }) => {
        impl $t {
            pub fn name(self) -> &'static str {
                match self {
                    $($t::$v => $n),*
                }
            }
        }
    };
}

named!(SlotStatus { Open => "open", Requested => "requested", Confirmed => "confirmed", Completed => "completed", Withdrawn => "withdrawn" });
named!(RxStatus { Issued => "issued", Dispensed => "dispensed" });
named!(InvoiceStatus { Unpaid => "unpaid", Paid => "paid" });
named!(ClaimStatus { Open => "open", Approved => "approved", Rejected => "rejected", Withdrawn => "withdrawn" });
named!(GuardianshipStatus { Active => "active", Replaced => "replaced" });
named!(EmergencyStatus { Open => "open", Released => "released", Refused => "refused", Withdrawn => "withdrawn" });
named!(EmergencyReason { Unconscious => "unconscious", LifeThreatening => "life_threatening", Incapable => "incapable", Other => "other" });
named!(EmergencyReview { Reviewed => "reviewed", Disputed => "disputed" });

/// Where an appointment slot stands.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    /// Free to book.
    Open,
    /// Booked, fee in escrow, waiting for the doctor.
    Requested,
    /// The doctor confirmed; the fee stays in escrow until completion.
    Confirmed,
    /// Done; the doctor was paid.
    Completed,
    /// The doctor took the slot off the calendar.
    Withdrawn,
}

/// A slot a doctor published, and the booking on it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Slot {
    pub id: ItemId,
    pub doctor: AccountId,
    pub start_ms: u64,
    pub minutes: u32,
    pub fee: u64,
    pub status: SlotStatus,
    /// The patient holding the booking (while requested, confirmed or completed).
    pub patient: Option<AccountId>,
    pub booked_ms: Option<u64>,
}

impl Slot {
    pub fn end_ms(&self) -> u64 {
        self.start_ms
            .saturating_add(u64::from(self.minutes) * 60_000)
    }
}

/// A symptom report in a doctor's inbox; the symptoms are in the (encrypted) record.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Report {
    pub id: ItemId,
    pub patient: AccountId,
    pub doctor: AccountId,
    pub record: RecordId,
    pub created_ms: u64,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RxStatus {
    Issued,
    Dispensed,
}

/// A prescription: the encrypted medication record with its content, and where it may be
/// dispensed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Prescription {
    pub id: ItemId,
    pub patient: AccountId,
    pub doctor: AccountId,
    pub record: RecordId,
    /// The pharmacy it is directed to, and the record's data key sealed to it.
    pub pharmacy: Option<AccountId>,
    pub pharmacy_key: Option<SealedKey>,
    pub status: RxStatus,
    pub created_ms: u64,
    pub dispensed_ms: Option<u64>,
    pub invoice: Option<ItemId>,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Unpaid,
    Paid,
}

/// What a patient owes a provider.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Invoice {
    pub id: ItemId,
    pub patient: AccountId,
    pub payee: AccountId,
    pub amount: u64,
    /// What an approved claim paid; the patient owes `amount - insurer_paid`.
    pub insurer_paid: u64,
    pub status: InvoiceStatus,
    /// What the invoice is for (the dispensed prescription).
    pub source: ItemId,
    /// A claim being decided: the invoice cannot be paid meanwhile.
    pub open_claim: Option<ItemId>,
    pub created_ms: u64,
    pub paid_ms: Option<u64>,
}

impl Invoice {
    /// What the patient still owes.
    pub fn due(&self) -> u64 {
        match self.status {
            InvoiceStatus::Paid => 0,
            InvoiceStatus::Unpaid => self.amount.saturating_sub(self.insurer_paid),
        }
    }
}

/// An insurance policy: the insurer pays `coverage_bp` / 10,000 of each approved claim.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Policy {
    pub id: ItemId,
    pub insurer: AccountId,
    pub patient: AccountId,
    pub coverage_bp: u16,
    /// Who approves a claim at each level, in order.
    pub approvers: Vec<AccountId>,
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
}

impl Policy {
    pub fn in_force(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|e| now_ms < e)
    }

    /// The insurer's share of `amount`, rounded down.
    pub fn share(&self, amount: u64) -> u64 {
        (u128::from(amount) * u128::from(self.coverage_bp) / 10_000) as u64
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Waiting for the approver of level `approvals.len()`.
    Open,
    /// Every level approved; the insurer paid its share.
    Approved,
    Rejected,
    /// The patient withdrew it before the last level decided.
    Withdrawn,
}

/// One level's decision on a claim.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ClaimDecision {
    pub approver: AccountId,
    pub approve: bool,
    pub time_ms: u64,
    pub reason: String,
}

/// A claim on an invoice under a policy.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Claim {
    pub id: ItemId,
    pub invoice: ItemId,
    pub policy: ItemId,
    pub patient: AccountId,
    pub insurer: AccountId,
    pub payee: AccountId,
    /// The invoice amount and the insurer's share of it, fixed when the claim is submitted.
    pub amount: u64,
    pub share: u64,
    /// The approvers of each level, copied from the policy when the claim was submitted.
    pub approvers: Vec<AccountId>,
    pub decisions: Vec<ClaimDecision>,
    pub status: ClaimStatus,
    pub created_ms: u64,
}

impl Claim {
    /// The approver the claim waits for, if it is open.
    pub fn next_approver(&self) -> Option<AccountId> {
        (self.status == ClaimStatus::Open)
            .then(|| self.approvers.get(self.decisions.len()).copied())
            .flatten()
    }
}

/// A duration in milliseconds written for people: "24 h", "90 min".
pub struct Hours(pub u64);

impl std::fmt::Display for Hours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let min = self.0 / 60_000;
        if min >= 60 && min.is_multiple_of(60) {
            write!(f, "{} h", min / 60)
        } else if min > 0 {
            write!(f, "{min} min")
        } else {
            write!(f, "{} s", self.0 / 1000)
        }
    }
}

/// Most guardians a patient may name.
pub const MAX_GUARDIANS: usize = 16;
/// The longest emergency window a patient may allow (30 days).
pub const MAX_EMERGENCY_MS: u64 = 30 * 24 * 3_600_000;
/// The shortest emergency window a request may ask for (ten seconds: a sanity floor).
pub const MIN_EMERGENCY_MS: u64 = 10_000;
/// An open request lapses this long after it was made if the guardians have not released it
/// (an emergency does not wait for weeks; the doctor may then ask again).
pub const MAX_PENDING_MS: u64 = 24 * 3_600_000;
/// The emergency window a patient allows unless they say otherwise (24 hours).
pub const DEFAULT_EMERGENCY_MS: u64 = 24 * 3_600_000;
/// The categories an emergency opens unless the patient says otherwise.
pub const DEFAULT_EMERGENCY_CATEGORIES: [Category; 4] = [
    Category::Vitals,
    Category::Lab,
    Category::Medication,
    Category::Emergency,
];
/// The bytes of a guardian's share as the patient seals it: the share's index (1-based, the
/// guardian's position + 1) and its 32-byte scalar.
pub const SHARE_BYTES: usize = 33;
/// The bytes of a share as a guardian re-seals it to a doctor: the share and a 32-byte salt.
/// Revealing them (`report_bad_share`) proves what the guardian handed over, against the
/// digest the guardian published with the approval.
pub const REVEALED_SHARE_BYTES: usize = SHARE_BYTES + 32;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum GuardianshipStatus {
    /// The patient's current guardians.
    Active,
    /// The patient named other guardians (or none) since; kept for the record.
    Replaced,
}

/// One guardian and the share of the patient's emergency key sealed to them.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Guardian {
    pub account: AccountId,
    /// [`SHARE_BYTES`] sealed to the guardian's encryption key (HPKE).
    pub share: SealedKey,
}

/// A patient's guardians for emergency access (seed 004's multi-party authorisation). The
/// patient's client made an emergency key, sealed the `categories`' keys of every epoch to
/// it, and split the secret it derives from among the guardians with Feldman verifiable
/// secret sharing over Ristretto: any `threshold` shares rebuild it, fewer reveal nothing.
/// Only public values are here: the commitments, the emergency key's public half, and
/// sealed shares and keys.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Guardianship {
    pub id: ItemId,
    pub patient: AccountId,
    pub guardians: Vec<Guardian>,
    /// How many guardians must approve a request.
    pub threshold: u8,
    /// What an emergency opens.
    pub categories: Vec<Category>,
    /// The longest window a request may ask for.
    pub max_duration_ms: u64,
    /// Feldman commitments to the sharing polynomial's coefficients (compressed Ristretto
    /// points, `threshold` of them): each share is checked against them.
    pub commitments: Vec<Hash>,
    /// The public half of the emergency key the categories' keys are sealed to.
    pub emergency_key: EncryptionKey,
    /// The categories' keys, every epoch, sealed to `emergency_key` (recipient: the patient).
    pub wraps: Vec<KeyWrap>,
    pub status: GuardianshipStatus,
    pub created_ms: u64,
    pub replaced_ms: Option<u64>,
}

impl Guardianship {
    /// The position of `account` among the guardians (its share index is this + 1).
    pub fn position(&self, account: &AccountId) -> Option<usize> {
        self.guardians.iter().position(|g| g.account == *account)
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EmergencyStatus {
    /// Waiting for the guardians.
    Open,
    /// Enough guardians approved: the doctor may read the categories until `expires_ms`.
    Released,
    /// Enough guardians refused that the threshold can no longer be reached.
    Refused,
    /// The patient named other guardians while it was open, or the doctor withdrew it.
    Withdrawn,
}

/// Why a doctor asks for emergency access (public; details go in the sealed note).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EmergencyReason {
    Unconscious,
    LifeThreatening,
    Incapable,
    /// Explained in the note, which is then required.
    Other,
}

impl std::str::FromStr for EmergencyReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let all = [
            EmergencyReason::Unconscious,
            EmergencyReason::LifeThreatening,
            EmergencyReason::Incapable,
            EmergencyReason::Other,
        ];
        let w = s.trim().to_ascii_lowercase().replace('-', "_");
        all.into_iter().find(|r| r.name() == w).ok_or_else(|| {
            format!(
                "unknown reason {s:?} (expected one of: unconscious, life_threatening, incapable, other)"
            )
        })
    }
}

/// The patient's verdict on an emergency access after the fact.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EmergencyReview {
    Reviewed,
    /// The patient disputes it: visible to every regulator.
    Disputed,
}

/// One guardian's answer to an emergency request.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct GuardianAnswer {
    pub guardian: AccountId,
    pub approve: bool,
    pub time_ms: u64,
    /// On approval: the guardian's share and a salt ([`REVEALED_SHARE_BYTES`]) sealed to the
    /// doctor, and a digest of those bytes that binds the guardian to them.
    pub share: Option<SealedKey>,
    pub digest: Option<Hash>,
    /// Set when the doctor proved the share wrong (`report_bad_share`).
    pub bad: bool,
}

/// A doctor's request for emergency access to a patient.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct EmergencyRequest {
    pub id: ItemId,
    pub patient: AccountId,
    pub doctor: AccountId,
    /// The doctor's organisation when the request was made.
    pub organisation: Option<String>,
    /// The guardianship the request is decided under.
    pub guardianship: ItemId,
    pub guardians: Vec<AccountId>,
    pub threshold: u8,
    pub categories: Vec<Category>,
    pub reason: EmergencyReason,
    /// Free text from the doctor, sealed to the patient and to each guardian.
    pub notes: Vec<(AccountId, SealedKey)>,
    pub duration_ms: u64,
    pub answers: Vec<GuardianAnswer>,
    pub status: EmergencyStatus,
    pub created_ms: u64,
    pub released_ms: Option<u64>,
    /// Until when a released request lets the doctor read (exclusive).
    pub expires_ms: Option<u64>,
    pub review: Option<EmergencyReview>,
    pub reviewed_ms: Option<u64>,
}

impl EmergencyRequest {
    pub fn approvals(&self) -> usize {
        self.answers.iter().filter(|a| a.approve).count()
    }

    /// Whether an open request has waited [`MAX_PENDING_MS`] without being released: it no
    /// longer takes answers and no longer blocks a new request.
    pub fn lapsed(&self, now_ms: u64) -> bool {
        self.status == EmergencyStatus::Open
            && now_ms >= self.created_ms.saturating_add(MAX_PENDING_MS)
    }

    pub fn refusals(&self) -> usize {
        self.answers.iter().filter(|a| !a.approve).count()
    }

    /// Whether the request lets its doctor read `category` at `now_ms`.
    pub fn covers(&self, category: Category, now_ms: u64) -> bool {
        self.status == EmergencyStatus::Released
            && self.expires_ms.is_some_and(|e| now_ms < e)
            && self.categories.contains(&category)
    }
}

/// One workflow item.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Slot(Slot),
    Report(Report),
    Prescription(Prescription),
    Invoice(Invoice),
    Policy(Policy),
    Claim(Claim),
    Guardianship(Guardianship),
    Emergency(EmergencyRequest),
}

impl Item {
    pub fn id(&self) -> ItemId {
        match self {
            Item::Slot(x) => x.id,
            Item::Report(x) => x.id,
            Item::Prescription(x) => x.id,
            Item::Invoice(x) => x.id,
            Item::Policy(x) => x.id,
            Item::Claim(x) => x.id,
            Item::Guardianship(x) => x.id,
            Item::Emergency(x) => x.id,
        }
    }

    pub fn kind(&self) -> ItemKind {
        self.id().kind
    }

    /// The accounts that take part in the item: they may see it, and it is listed for them.
    pub fn parties(&self) -> Vec<AccountId> {
        match self {
            Item::Slot(x) => [Some(x.doctor), x.patient].into_iter().flatten().collect(),
            Item::Report(x) => vec![x.patient, x.doctor],
            Item::Prescription(x) => [Some(x.patient), Some(x.doctor), x.pharmacy]
                .into_iter()
                .flatten()
                .collect(),
            Item::Invoice(x) => vec![x.patient, x.payee],
            Item::Policy(x) => {
                let mut v = vec![x.insurer, x.patient];
                v.extend(&x.approvers);
                v
            }
            Item::Claim(x) => {
                let mut v = vec![x.patient, x.insurer, x.payee];
                v.extend(&x.approvers);
                v
            }
            Item::Guardianship(x) => {
                let mut v = vec![x.patient];
                v.extend(x.guardians.iter().map(|g| g.account));
                v
            }
            Item::Emergency(x) => {
                let mut v = vec![x.patient, x.doctor];
                v.extend(&x.guardians);
                v
            }
        }
    }

    /// The item's state, as one word (for listings).
    pub fn status(&self) -> &'static str {
        match self {
            Item::Slot(x) => x.status.name(),
            Item::Report(_) => "sent",
            Item::Prescription(x) => x.status.name(),
            Item::Invoice(x) => x.status.name(),
            Item::Policy(_) => "recorded",
            Item::Claim(x) => x.status.name(),
            Item::Guardianship(x) => x.status.name(),
            Item::Emergency(x) => x.status.name(),
        }
    }
}

/// Typed access to the variants of [`Item`].
pub trait ItemVariant: Sized + Clone {
    const KIND: ItemKind;
    fn from_item(item: Item) -> Option<Self>;
    fn into_item(self) -> Item;
}

macro_rules! variant {
    ($t:ident) => {
        variant!($t, $t);
    };
    ($t:ident, $v:ident) => {
        impl ItemVariant for $t {
            const KIND: ItemKind = ItemKind::$v;
            fn from_item(item: Item) -> Option<Self> {
                match item {
                    Item::$v(x) => Some(x),
                    _ => None,
                }
            }
            fn into_item(self) -> Item {
                Item::$v(self)
            }
        }
    };
}
variant!(Slot);
variant!(Report);
variant!(Prescription);
variant!(Invoice);
variant!(Policy);
variant!(Claim);
variant!(Guardianship);

variant!(EmergencyRequest, Emergency);
