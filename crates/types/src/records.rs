//! Health records, consent and audit: the identifiers and key material that go on the ledger.
//!
//! Nothing here is plaintext medical or personal data: records are referenced by the hash of
//! their ciphertext, titles travel encrypted, keys travel wrapped (HPKE to a recipient, or
//! XChaCha20-Poly1305 under a category key). See `DESIGN.md`, "Cryptography".

use crate::{
    AccountId, Hash, IdError, domain,
    id::bytes_newtype,
    refusal::{Coded, Date, Refusal, serialize_with_message},
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

bytes_newtype!(
    /// A record, chosen by the client that writes it: by convention its clock then random
    /// bytes ([`RecordId::time_ordered`]). Written `rec` + 32 hex.
    RecordId, 16, "rec", " after the \"rec\" prefix"
);

impl RecordId {
    /// How many leading bytes of a record id are its writer's clock (milliseconds since the
    /// Unix epoch, big-endian, 48 bits: good until the year 10889).
    pub const TIME_BYTES: usize = 6;

    /// A record id made at `time_ms`: the clock's low 48 bits, big-endian, then 10 random
    /// bytes (the layout of a UUIDv7, without its version bits). Ids made one after another
    /// sort in the order they were made (to the millisecond, by the writer's clock), so the
    /// store and the state tree put a block's new records next to each other instead of at
    /// random places (ADR 0008, fourth part). The ledger requires nothing of the layout: an id
    /// is any 16 bytes not yet used, and one with an odd clock only lands somewhere else.
    /// Whoever sees the id learns when it was made, about what the record's anchoring block
    /// tells the consortium; an id the public sees (an account's profile record) is made all
    /// random instead.
    pub fn time_ordered(time_ms: u64, random: [u8; 10]) -> RecordId {
        let mut id = [0u8; 16];
        id[..Self::TIME_BYTES].copy_from_slice(&time_ms.to_be_bytes()[8 - Self::TIME_BYTES..]);
        id[Self::TIME_BYTES..].copy_from_slice(&random);
        RecordId(id)
    }
}
bytes_newtype!(
    /// An access request: the id of the transaction that made it. Written `req` + 64 hex.
    RequestId, 32, "req", " after the \"req\" prefix"
);
bytes_newtype!(
    /// An audit event: a tagged hash of its leaf bytes. Written `evt` + 64 hex.
    EventId, 32, "evt", " after the \"evt\" prefix"
);
bytes_newtype!(
    /// An X25519 public key that others wrap keys to (HPKE, RFC 9180).
    EncryptionKey, 32, "", ""
);

/// The length every new record's encrypted metadata has: clients pad it to a fixed length
/// before encryption (24-byte nonce, 512 padded bytes, 16-byte tag), and the ledger refuses
/// any other length, so no record's title or file name shows through its length.
pub const SEALED_META_BYTES: usize = 24 + 512 + 16;
/// Longest sealed reason of an access request.
pub const MAX_REASON_BYTES: usize = 2048;
/// Most key wraps one transaction may carry.
pub const MAX_WRAPS: usize = 96;

/// The fixed record categories. Consent is given per category.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub enum Category {
    /// Name, date of birth, address, contact details (the encrypted profile lives here).
    Demographics,
    /// Blood pressure, pulse, weight and other measurements.
    Vitals,
    /// Laboratory results.
    Lab,
    /// Scans and other images.
    Imaging,
    /// Prescriptions and medication lists.
    Medication,
    /// Clinical notes, symptom reports, letters.
    Notes,
    /// Insurance policies and claims documents.
    Insurance,
    /// What a first responder needs: allergies, conditions, emergency contacts.
    Emergency,
}

impl Category {
    /// Every category, in order.
    pub const ALL: [Category; 8] = [
        Category::Demographics,
        Category::Vitals,
        Category::Lab,
        Category::Imaging,
        Category::Medication,
        Category::Notes,
        Category::Insurance,
        Category::Emergency,
    ];
    /// Every category's name, as written in the CLI and the API.
    pub const NAMES: [&'static str; 8] = [
        "demographics",
        "vitals",
        "lab",
        "imaging",
        "medication",
        "notes",
        "insurance",
        "emergency",
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Parses `a,b,c` or `all` into a sorted list without duplicates.
    pub fn parse_list(s: &str) -> Result<Vec<Category>, CategoryError> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(Self::ALL.to_vec());
        }
        let mut out = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Category>, _>>()?;
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(CategoryError(s.to_string()));
        }
        Ok(out)
    }
}

/// An unknown category name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown category {0:?} (expected one of: {cats}, or all)", cats = Category::NAMES.join(", "))]
pub struct CategoryError(pub String);

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Category {
    type Err = CategoryError;
    fn from_str(s: &str) -> Result<Self, CategoryError> {
        let lower = s.trim().to_ascii_lowercase();
        Self::NAMES
            .iter()
            .position(|n| *n == lower)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| CategoryError(s.to_string()))
    }
}

impl Serialize for Category {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Category {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Bytes shown as hex in JSON.
#[derive(
    Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct HexBytes(pub Vec<u8>);

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(&self.0))
    }
}
impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}
impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        hex::decode(s)
            .map(HexBytes)
            .map_err(serde::de::Error::custom)
    }
}

/// A 32-byte key sealed to one recipient with HPKE (base mode, X25519-HKDF-SHA256,
/// ChaCha20-Poly1305): the encapsulated key and the ciphertext with its tag.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SealedKey {
    pub enc: EncryptionKey,
    pub ct: HexBytes,
}

/// Who a grant is for: one account, or every active member of an organisation.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    Account(AccountId),
    Organisation(String),
}

impl fmt::Display for Grantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grantee::Account(a) => write!(f, "{a}"),
            Grantee::Organisation(o) => write!(f, "org:{o}"),
        }
    }
}

impl FromStr for Grantee {
    type Err = IdError;
    /// `ehr…` for an account, `org:NAME` for an organisation.
    fn from_str(s: &str) -> Result<Self, IdError> {
        match s.trim().strip_prefix("org:") {
            Some(org) => Ok(Grantee::Organisation(org.trim().to_string())),
            None => s.parse().map(Grantee::Account),
        }
    }
}

/// A patient's category key of one epoch, sealed to one recipient.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct KeyWrap {
    pub category: Category,
    pub epoch: u32,
    pub recipient: AccountId,
    pub sealed: SealedKey,
}

/// A new epoch of a category key: sealed to the patient, and to every current grantee of
/// the category so they keep reading records written after the rotation.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Rotation {
    pub category: Category,
    pub own: SealedKey,
    pub wraps: Vec<KeyWrap>,
}

/// How a record's data key is kept on the ledger.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordKey {
    /// Encrypted (XChaCha20-Poly1305, record id as associated data) under the patient's
    /// category key of `epoch`.
    Category { epoch: u32, wrapped: HexBytes },
    /// Sealed to each listed account (a doctor-written record before the patient approves it:
    /// the patient and the author).
    Direct { wraps: Vec<(AccountId, SealedKey)> },
}

/// What an audit event records.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
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
    /// Enough guardians approved: the doctor may read until the window ends.
    EmergencyReleased,
    /// The guardians can no longer reach the threshold, or the request was withdrawn.
    EmergencyClosed,
    /// The doctor proved a guardian's share wrong (the guardian is the counterparty).
    BadShare,
    EmergencyReviewed,
    EmergencyDisputed,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allowed,
    Denied,
}

/// One entry of the audit trail: a leaf of its block's audit Merkle tree (RFC 6962), with its
/// time inside, so an inclusion proof proves who did what to whose data, and when.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The transaction that produced the event.
    pub tx: Hash,
    /// Block time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub actor: AccountId,
    pub patient: AccountId,
    pub action: AuditAction,
    pub record: Option<RecordId>,
    pub categories: Vec<Category>,
    /// The other party: a grantee, a requester.
    pub counterparty: Option<Grantee>,
    pub decision: Decision,
    /// Why the decision was made (a read's consent basis or the rule that denied it), or
    /// what else the event records; a code with typed fields, never prose.
    pub reason: AuditReason,
    /// The workflow item concerned (appointment, prescription, invoice, claim…).
    pub item: Option<crate::ItemId>,
    /// Tokens moved by the event, if any.
    pub amount: Option<u64>,
}

/// Why an audit event's decision was made, or the detail it records beyond its action and
/// parties: a stable snake_case code ([`AuditReason::code`]) with typed fields. A denied read
/// carries the [`Refusal`] that denied it, whose code it shares. Like a [`Refusal`], it is
/// encoded without any sentence (it is part of the audit leaf); `Display` renders one, and the
/// JSON form adds it as `message`. The borsh tag is the variant's position: only append.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "code", rename_all = "snake_case")]
pub enum AuditReason {
    /// The action and its parties say everything.
    None,
    /// A read of the patient's own record.
    OwnRecord,
    /// A read by the record's author.
    Author,
    /// A read by the pharmacy the prescription `rx` is directed to.
    DirectedPharmacy { rx: crate::ItemId },
    /// A read under the patient's grant to the reader's account.
    Grant { expires_ms: Option<u64> },
    /// A read under the patient's grant to the reader's organisation.
    OrganisationGrant { organisation: String },
    /// A record written for the patient waits for their approval.
    WaitingForApproval,
    /// A denied read: the rule that denied it (its JSON form is the refusal's).
    #[serde(skip)]
    Denied(Refusal),
    /// The terms a grant gave.
    GrantTerms {
        write: bool,
        expires_ms: Option<u64>,
    },
    /// The epoch a key rotation started.
    KeyEpoch { epoch: u32 },
    /// The access request the event concerns.
    Request { request: RequestId },
    /// A claim decision: its level of all levels, and the approver's public reason.
    ClaimLevel {
        level: u32,
        levels: u32,
        reason: String,
    },
    /// What a reader who is not the patient sees of a denied read: not why, so that a denial
    /// looks the same whatever the record (or whether it exists). Never on the ledger.
    Withheld,
    /// A read under emergency access the guardians released, or an event of that request.
    Emergency {
        request: crate::ItemId,
        expires_ms: Option<u64>,
    },
    /// The guardians, threshold and window a patient set.
    Guardians {
        threshold: u8,
        guardians: u8,
        max_duration_ms: u64,
    },
    /// Why a doctor asked for emergency access, and for how long.
    EmergencyAsked {
        request: crate::ItemId,
        reason: crate::items::EmergencyReason,
        duration_ms: u64,
    },
}

impl AuditReason {
    /// The stable snake_case code (the `code` of the JSON form).
    pub fn code(&self) -> &'static str {
        match self {
            AuditReason::None => "none",
            AuditReason::OwnRecord => "own_record",
            AuditReason::Author => "author",
            AuditReason::DirectedPharmacy { .. } => "directed_pharmacy",
            AuditReason::Grant { .. } => "grant",
            AuditReason::OrganisationGrant { .. } => "organisation_grant",
            AuditReason::WaitingForApproval => "waiting_for_approval",
            AuditReason::Denied(r) => r.code(),
            AuditReason::GrantTerms { .. } => "grant_terms",
            AuditReason::KeyEpoch { .. } => "key_epoch",
            AuditReason::Request { .. } => "request",
            AuditReason::ClaimLevel { .. } => "claim_level",
            AuditReason::Withheld => "withheld",
            AuditReason::Emergency { .. } => "emergency",
            AuditReason::Guardians { .. } => "guardians",
            AuditReason::EmergencyAsked { .. } => "emergency_asked",
        }
    }
}

impl From<Refusal> for AuditReason {
    fn from(r: Refusal) -> Self {
        AuditReason::Denied(r)
    }
}

/// The sentence a user reads (empty for [`AuditReason::None`]). Not part of any hash.
impl fmt::Display for AuditReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let until = |f: &mut fmt::Formatter<'_>, e: &Option<u64>| match e {
            Some(e) => write!(f, " until {}", Date(*e)),
            None => Ok(()),
        };
        match self {
            AuditReason::None => Ok(()),
            AuditReason::OwnRecord => f.write_str("the patient's own record"),
            AuditReason::Author => f.write_str("the author of the record"),
            AuditReason::DirectedPharmacy { rx } => {
                write!(f, "the pharmacy {rx} is directed to")
            }
            AuditReason::Grant { expires_ms } => {
                f.write_str("consent granted to the account")?;
                until(f, expires_ms)
            }
            AuditReason::OrganisationGrant { organisation } => {
                write!(f, "consent granted to organisation {organisation}")
            }
            AuditReason::WaitingForApproval => f.write_str("waiting for the patient's approval"),
            AuditReason::Denied(r) => r.fmt(f),
            AuditReason::GrantTerms { write, expires_ms } => {
                f.write_str(if *write { "read and write" } else { "read" })?;
                until(f, expires_ms)
            }
            AuditReason::KeyEpoch { epoch } => write!(f, "epoch {epoch}"),
            AuditReason::Request { request } => write!(f, "request {request}"),
            AuditReason::ClaimLevel {
                level,
                levels,
                reason,
            } if reason.is_empty() => write!(f, "level {level} of {levels}"),
            AuditReason::ClaimLevel {
                level,
                levels,
                reason,
            } => write!(f, "level {level} of {levels}: {reason}"),
            AuditReason::Withheld => f.write_str("no record you may read"),
            AuditReason::Emergency {
                request,
                expires_ms,
            } => {
                write!(f, "emergency access {request}")?;
                until(f, expires_ms)
            }
            AuditReason::Guardians { guardians: 0, .. } => f.write_str("guardians removed"),
            AuditReason::Guardians {
                threshold,
                guardians,
                max_duration_ms,
            } => write!(
                f,
                "{threshold} of {guardians} guardians, for at most {}",
                crate::items::Hours(*max_duration_ms)
            ),
            AuditReason::EmergencyAsked {
                request,
                reason,
                duration_ms,
            } => write!(
                f,
                "{request}: {} for {}",
                reason.name().replace('_', " "),
                crate::items::Hours(*duration_ms)
            ),
        }
    }
}

impl Coded for AuditReason {
    fn serialize_fields<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AuditReason::Denied(r) => r.serialize_fields(s),
            other => AuditReason::serialize(other, s),
        }
    }
}

/// The JSON form: `code`, the fields and the rendered `message`; a denied read's is its
/// refusal's.
impl Serialize for AuditReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AuditReason::Denied(r) => Serialize::serialize(r, s),
            other => serialize_with_message(other, s),
        }
    }
}

impl<'de> Deserialize<'de> for AuditReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Own(#[serde(deserialize_with = "AuditReason::deserialize")] AuditReason),
            Denied(Refusal),
        }
        Ok(match Either::deserialize(d)? {
            Either::Own(r) => r,
            Either::Denied(r) => AuditReason::Denied(r),
        })
    }
}

/// Serde `with` module: an [`AuditEvent`] in JSON without the rendered `message` of its
/// reason, for files that must read back byte for byte whatever the wording of the version
/// reading them (audit proof files). Reading accepts the event with or without messages.
pub mod without_message {
    use super::{AuditEvent, AuditReason, Coded};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(e: &AuditEvent, s: S) -> Result<S::Ok, S::Error> {
        struct Reason<'a>(&'a AuditReason);
        impl Serialize for Reason<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_fields(s)
            }
        }
        #[derive(Serialize)]
        struct Bare<'a> {
            tx: &'a crate::Hash,
            time_ms: u64,
            actor: &'a crate::AccountId,
            patient: &'a crate::AccountId,
            action: super::AuditAction,
            record: &'a Option<super::RecordId>,
            categories: &'a [super::Category],
            counterparty: &'a Option<super::Grantee>,
            decision: super::Decision,
            reason: Reason<'a>,
            item: &'a Option<crate::ItemId>,
            amount: Option<u64>,
        }
        // Destructured, so a new field of the event cannot be left out here.
        let AuditEvent {
            tx,
            time_ms,
            actor,
            patient,
            action,
            record,
            categories,
            counterparty,
            decision,
            reason,
            item,
            amount,
        } = e;
        Bare {
            tx,
            time_ms: *time_ms,
            actor,
            patient,
            action: *action,
            record,
            categories,
            counterparty,
            decision: *decision,
            reason: Reason(reason),
            item,
            amount: *amount,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AuditEvent, D::Error> {
        AuditEvent::deserialize(d)
    }
}

impl AuditEvent {
    /// The leaf bytes: the canonical encoding.
    pub fn leaf(&self) -> Vec<u8> {
        crate::encode(self)
    }

    pub fn id(&self) -> EventId {
        EventId(domain::tagged_hash(domain::AUDIT_EVENT_ID, &[&self.leaf()]).0)
    }
}

/// The RFC 6962 Merkle root over a block's audit events.
pub fn audit_root(events: &[AuditEvent]) -> Hash {
    crate::block::merkle_root(events.iter().map(AuditEvent::leaf))
}

/// An RFC 6962 inclusion proof (the sibling hashes, concatenated) for the event at `index`
/// of a block's audit events.
pub fn audit_inclusion_proof(events: &[AuditEvent], index: usize) -> Vec<u8> {
    let mut tree = ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2::Sha256, Vec<u8>>::new();
    for e in events {
        tree.push(e.leaf());
    }
    tree.prove_inclusion(index).as_bytes().to_vec()
}

/// Checks an inclusion proof of `leaf` at `index` in a tree of `tree_size` leaves with `root`.
pub fn verify_audit_inclusion(
    root: &Hash,
    tree_size: u64,
    leaf: &[u8],
    index: u64,
    proof: &[u8],
) -> bool {
    // ct-merkle's index arithmetic holds up to 2^63 leaves and panics or overflows above it
    // (an audit proof claiming 2^64 - 1 leaves crashed `audit verify`); no block comes near.
    if tree_size > 1 << 63 || !proof.len().is_multiple_of(32) {
        return false;
    }
    let mut digest = sha2::digest::Output::<sha2::Sha256>::default();
    digest.copy_from_slice(&root.0);
    let root = ct_merkle::RootHash::<sha2::Sha256>::new(digest, tree_size);
    let proof = ct_merkle::InclusionProof::<sha2::Sha256>::from_bytes(proof.to_vec());
    root.verify_inclusion(&leaf.to_vec(), index, &proof).is_ok()
}

/// The fingerprint of an account's profile record shown in its QR code: a tagged hash of the
/// record id, ciphertext hash and plaintext commitment (no personal data), 32 hex characters.
pub fn profile_fingerprint(id: &RecordId, content: &Hash, commitment: &Hash) -> String {
    let h = domain::tagged_hash(domain::QR, &[&id.0, &content.0, &commitment.0]);
    hex::encode(&h.0[..16])
}
