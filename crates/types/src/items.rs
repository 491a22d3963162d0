//! The clinical workflow items the ledger stores: appointment slots, symptom reports,
//! prescriptions, invoices, insurance policies and claims. No medical content: what was
//! prescribed and what the patient reported live in encrypted records; an item holds who,
//! which record, what state and how many tokens.

use crate::{AccountId, ItemId, ItemKind, RecordId, SealedKey};
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
        impl ItemVariant for $t {
            const KIND: ItemKind = ItemKind::$t;
            fn from_item(item: Item) -> Option<Self> {
                match item {
                    Item::$t(x) => Some(x),
                    _ => None,
                }
            }
            fn into_item(self) -> Item {
                Item::$t(self)
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
