//! The clinical workflow on the ledger: appointment slots, symptom reports, prescriptions,
//! invoices, insurance policies and claims. Each is an *item* with an id derived from the
//! transaction that created it, so a client knows the id before the transaction is final and
//! nobody can choose (or squat) someone else's id.

use crate::{AccountId, Category, Hash, HexBytes, IdError, RecordId, RecordKey, domain};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// The kinds of workflow item. The order is the storage order; new kinds are only appended.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub enum ItemKind {
    /// An appointment slot a doctor published (and the booking on it).
    Slot,
    /// A patient's symptom report to a doctor.
    Report,
    Prescription,
    Invoice,
    /// An insurance policy an insurer recorded for a patient.
    Policy,
    /// An insurance claim for an invoice.
    Claim,
    /// A patient's guardians for emergency access: who, how many must agree, what it opens.
    Guardianship,
    /// A doctor's request for emergency access to a patient, decided by the guardians.
    Emergency,
}

impl ItemKind {
    pub const ALL: [ItemKind; 8] = [
        ItemKind::Slot,
        ItemKind::Report,
        ItemKind::Prescription,
        ItemKind::Invoice,
        ItemKind::Policy,
        ItemKind::Claim,
        ItemKind::Guardianship,
        ItemKind::Emergency,
    ];

    /// The prefix of the kind's ids (`slot…`, `sym…`, `rx…`, `inv…`, `pol…`, `clm…`, `grd…`, `emg…`).
    pub fn prefix(self) -> &'static str {
        match self {
            ItemKind::Slot => "slot",
            ItemKind::Report => "sym",
            ItemKind::Prescription => "rx",
            ItemKind::Invoice => "inv",
            ItemKind::Policy => "pol",
            ItemKind::Claim => "clm",
            ItemKind::Guardianship => "grd",
            ItemKind::Emergency => "emg",
        }
    }

    /// The kind as written in the API and the CLI (`slot`, `report`, `prescription`…).
    pub fn word(self) -> &'static str {
        match self {
            ItemKind::Slot => "slot",
            ItemKind::Report => "report",
            ItemKind::Prescription => "prescription",
            ItemKind::Invoice => "invoice",
            ItemKind::Policy => "policy",
            ItemKind::Claim => "claim",
            ItemKind::Guardianship => "guardianship",
            ItemKind::Emergency => "emergency",
        }
    }

    /// Parses [`Self::word`].
    pub fn from_word(s: &str) -> Option<ItemKind> {
        Self::ALL.into_iter().find(|k| k.word() == s)
    }

    /// "an invoice", "a prescription".
    pub fn with_article(self) -> String {
        let n = self.name();
        let an = n.starts_with(['a', 'e', 'i', 'o', 'u']);
        format!("{} {n}", if an { "an" } else { "a" })
    }

    /// A human name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Slot => "appointment slot",
            ItemKind::Report => "symptom report",
            ItemKind::Prescription => "prescription",
            ItemKind::Invoice => "invoice",
            ItemKind::Policy => "insurance policy",
            ItemKind::Claim => "claim",
            ItemKind::Guardianship => "guardianship",
            ItemKind::Emergency => "emergency access request",
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ItemKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.word())
    }
}

impl<'de> Deserialize<'de> for ItemKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        ItemKind::from_word(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown item kind {s:?}")))
    }
}

/// A workflow item: its kind and 16 bytes derived from the creating transaction. Written as
/// the kind's prefix followed by 32 hex characters, e.g. `rx3f…`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct ItemId {
    pub kind: ItemKind,
    pub bytes: [u8; 16],
}

impl ItemId {
    /// Every id of `kind`, in storage order (ids sort by kind first).
    pub fn range_of(kind: ItemKind) -> std::ops::RangeInclusive<ItemId> {
        ItemId {
            kind,
            bytes: [0; 16],
        }..=ItemId {
            kind,
            bytes: [0xff; 16],
        }
    }

    /// The ids of `kind` after the page cursor `after`, as range bounds, or `None` when no id
    /// of `kind` is left. A cursor of another kind lies outside the range: one before it
    /// starts at the first id, one after it leaves nothing (so a `range` over the bounds never
    /// sees its start after its end, which panics).
    pub fn page_bounds(
        kind: ItemKind,
        after: Option<ItemId>,
    ) -> Option<(std::ops::Bound<ItemId>, std::ops::Bound<ItemId>)> {
        use std::ops::Bound;
        let ids = Self::range_of(kind);
        match after.filter(|a| a >= ids.start()) {
            Some(a) if a >= *ids.end() => None,
            Some(a) => Some((Bound::Excluded(a), Bound::Included(*ids.end()))),
            None => Some((Bound::Included(*ids.start()), Bound::Included(*ids.end()))),
        }
    }

    /// The id of the item of `kind` that transaction `tx` creates.
    pub fn derive(kind: ItemKind, tx: &Hash) -> ItemId {
        let h = domain::tagged_hash(domain::ITEM_ID, &[&[kind as u8], &tx.0]);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&h.0[..16]);
        ItemId { kind, bytes }
    }

    /// Parses an id that must be of `kind`.
    pub fn parse_kind(s: &str, kind: ItemKind) -> Result<ItemId, IdError> {
        let id: ItemId = s.parse()?;
        if id.kind != kind {
            return Err(IdError::WrongKind {
                id: s.trim().to_string(),
                got: id.kind.with_article(),
                expected: kind.with_article(),
            });
        }
        Ok(id)
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), hex::encode(self.bytes))
    }
}

impl fmt::Debug for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ItemId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        // Longest prefix first would only matter if one prefix started another; none does.
        let kind = ItemKind::ALL
            .into_iter()
            .find(|k| s.starts_with(k.prefix()) && s.len() == k.prefix().len() + 32)
            .ok_or_else(|| IdError::BadHex {
                expected: 32,
                prefix_hint: " after a slot/sym/rx/inv/pol/clm/grd/emg prefix",
                got: s.chars().take(80).collect(),
            })?;
        let bytes = crate::id::parse_hex::<16>(s, kind.prefix(), " after the prefix")?;
        Ok(ItemId { kind, bytes })
    }
}

impl Serialize for ItemId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ItemId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The fields of a new record (the body of `add_record`, and the record a prescription
/// anchors).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RecordDraft {
    pub id: RecordId,
    pub patient: AccountId,
    pub category: Category,
    /// SHA-256 of the ciphertext (the digest of its CIDv1).
    pub content: Hash,
    /// Ciphertext length in bytes.
    pub size: u64,
    /// HMAC-SHA256 of the plaintext under a key derived from the data key.
    pub commitment: Hash,
    /// Title, file name and media type, encrypted under the data key.
    pub meta: HexBytes,
    pub key: RecordKey,
    /// Make this `demographics` record the signer's profile.
    pub profile: bool,
    /// With several validators: the root of the content's erasure-coding manifest (every
    /// stripe's shard commitment), as the node that placed it answered the upload. Reads and
    /// repairs check a manifest against it.
    #[serde(default)]
    pub coding: Option<Hash>,
}

/// Coverage shares are in basis points: 10,000 = 100 %.
pub const FULL_COVERAGE_BP: u16 = 10_000;
/// Most approval levels a policy may have.
pub const MAX_APPROVAL_LEVELS: usize = 5;
/// Longest free-text reason of a claim decision.
pub const MAX_DECISION_REASON: usize = 280;
