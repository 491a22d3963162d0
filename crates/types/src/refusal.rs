//! Why the ledger refused a transaction: one stable code per rule, with typed fields.
//!
//! A [`Refusal`] is consensus data: a rejected transaction's receipt carries it (borsh), and
//! so does the audit event of a denied read. Only the code and its fields are encoded, never
//! a sentence, so the wording of a message can change without changing a receipts or audit
//! root, and an application matches on [`Refusal::code`] rather than on text. `Display`
//! renders the sentence a user reads (client side); the JSON form carries `code`, the fields
//! and that rendered `message`, which is ignored when the JSON is read back.
//!
//! The borsh tag of a variant is its position, so variants are only ever appended; a
//! fixture test pins every variant's encoding.

use crate::{AccountId, Category, Grantee, IdError, ItemId, ItemKind, RecordId, RequestId, Role};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// A code enum whose derived serde form (`#[serde(remote = "Self", tag = "code")]`) is its
/// code and fields; [`serialize_with_message`] adds the rendered sentence.
pub(crate) trait Coded: fmt::Display {
    /// The derived form: `code` and the fields.
    fn serialize_fields<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
}

/// Serialises `value` as its code and fields plus `message`, the rendered sentence. Reading
/// the JSON back ignores `message`: it is derived, so it never decides anything.
pub(crate) fn serialize_with_message<T: Coded, S: Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    struct Fields<'a, T>(&'a T);
    impl<T: Coded> Serialize for Fields<'_, T> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.0.serialize_fields(s)
        }
    }
    #[derive(Serialize)]
    #[serde(bound = "T: Coded")]
    struct Shown<'a, T> {
        #[serde(flatten)]
        fields: Fields<'a, T>,
        message: String,
    }
    Shown {
        fields: Fields(value),
        message: value.to_string(),
    }
    .serialize(s)
}

/// A block time (milliseconds since the Unix epoch) as an RFC 3339 date in UTC, for messages.
pub(crate) struct Date(pub u64);

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // RFC 3339 stops at the year 9999 (humantime refuses to format later times).
        const YEAR_10000_MS: u64 = 253_402_300_800_000;
        if self.0 >= YEAR_10000_MS {
            return write!(f, "{} ms after the Unix epoch", self.0);
        }
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0);
        write!(f, "{}", humantime::format_rfc3339_seconds(t))
    }
}

/// "a" or "an" before `word`.
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A workflow item with its kind spelled out: "invoice inv3f…".
struct Named<'a>(&'a ItemId);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.kind, self.0)
    }
}

/// A field of a transaction that a rule bounds.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Organisation,
    Licence,
    /// The sealed reason of an access request, or the public reason of a claim decision.
    Reason,
    Amount,
    Fee,
    Price,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Organisation => "organisation",
            Field::Licence => "licence",
            Field::Reason => "reason",
            Field::Amount => "amount",
            Field::Fee => "fee",
            Field::Price => "price",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a patient-only rule is about: a record, an access request or a workflow item. Written
/// as the thing's id (`rec…`, `req…`, `inv…`…), whose prefix says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum Subject {
    Record(RecordId),
    Request(RequestId),
    Item(ItemId),
}

impl Subject {
    /// The kind and the id, for messages: "record rec…", "invoice inv…".
    fn named(&self) -> String {
        match self {
            Subject::Record(r) => format!("record {r}"),
            Subject::Request(r) => format!("access request {r}"),
            Subject::Item(i) => Named(i).to_string(),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Record(r) => r.fmt(f),
            Subject::Request(r) => r.fmt(f),
            Subject::Item(i) => i.fmt(f),
        }
    }
}

impl FromStr for Subject {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        // No item prefix starts with "rec" or "req".
        match s.trim() {
            t if t.starts_with("rec") => t.parse().map(Subject::Record),
            t if t.starts_with("req") => t.parse().map(Subject::Request),
            t => t.parse().map(Subject::Item),
        }
    }
}

impl Serialize for Subject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why the ledger refused a transaction, or denied a read: the rule, as a stable snake_case
/// code ([`Refusal::code`]), with the values that broke it. Times are block times in
/// milliseconds since the Unix epoch; amounts are tokens.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "code", rename_all = "snake_case")]
pub enum Refusal {
    // Identity and roles.
    /// The account has never registered a role.
    NotRegistered {
        account: AccountId,
    },
    /// The sender already has a role.
    AlreadyRegistered {
        role: Role,
    },
    /// The role exists only from genesis.
    RoleNotRegistrable {
        role: Role,
    },
    /// Registering in this role needs an organisation.
    OrganisationRequired {
        role: Role,
    },
    /// Only the consortium admin may do this.
    NotAdmin,
    /// The sender's registration in `role` waits for the consortium admin.
    NotApproved {
        role: Role,
    },
    /// Only an account active in `role` may do this.
    RoleRequired {
        role: Role,
    },
    /// The admin approves pending accounts only; this one is active.
    NotPending {
        account: AccountId,
    },
    /// Another party named by the transaction must be active in `role`.
    NotInRole {
        account: AccountId,
        role: Role,
    },

    // Bounded fields.
    FieldEmpty {
        field: Field,
    },
    FieldTooLong {
        field: Field,
        len: u64,
        max: u64,
    },
    /// An amount or price above every token there is.
    AboveSupply {
        field: Field,
        amount: u64,
        supply: u64,
    },

    // Tokens.
    /// The sender cannot pay.
    InsufficientBalance {
        balance: u64,
        needed: u64,
    },
    /// Another account that pays in this transaction (an insurer) cannot.
    PayerInsufficientBalance {
        payer: AccountId,
        balance: u64,
        needed: u64,
    },
    ZeroAmount {
        field: Field,
    },
    SelfTransfer,
    /// Only the appointment contract moves tokens into and out of escrow.
    TransferToEscrow,
    BalanceOverflow {
        account: AccountId,
    },

    // Keys.
    /// The account published no encryption key to seal keys to.
    NoEncryptionKey {
        account: AccountId,
    },
    /// The patient has no key of this category yet.
    NoCategoryKey {
        category: Category,
    },
    /// A data key wrapped under an old epoch of the category key.
    StaleKeyEpoch {
        category: Category,
        current: u32,
        got: u32,
    },
    /// A wrapped data key has 24 + 32 + 16 bytes.
    WrappedKeyLength {
        len: u64,
    },
    /// The patient's own records keep their data key under a category key.
    CategoryKeyRequired,
    TooManyWraps {
        count: u64,
        max: u64,
    },
    /// A key wrap nobody needs: no such epoch, or a recipient without a grant of it.
    UnexpectedWrap {
        category: Category,
        epoch: u32,
        recipient: AccountId,
    },
    /// A grantee would miss a category key it must hold.
    MissingWrap {
        category: Category,
        epoch: u32,
        recipient: AccountId,
    },
    DuplicateRotation {
        category: Category,
    },
    /// Revoking a category starts a new epoch of its key in the same transaction.
    RotationRequired {
        category: Category,
    },
    UnexpectedRotation {
        category: Category,
    },

    // Records.
    NoSuchRecord {
        record: RecordId,
    },
    RecordExists {
        record: RecordId,
    },
    /// One ciphertext, one record.
    ContentAnchored,
    /// Encrypted metadata has one padded length, so no title shows through its length.
    MetaLength {
        len: u64,
    },
    /// Only the account itself sets its profile.
    NotOwnProfile,
    ProfileNotDemographics,
    /// A record written for a patient seals its data key to exactly the patient and the
    /// author.
    DirectKeyRecipients,
    /// Only a record waiting for the patient's approval is reviewed.
    RecordNotPending {
        record: RecordId,
    },
    /// Approving re-wraps the data key under the patient's category key.
    ApprovalNeedsKey,
    /// A rejection or a denial carries no key material.
    UnexpectedKeys,
    /// Only the patient concerned may do this.
    NotThePatient {
        subject: Subject,
    },

    // The access policy (`ledger::access`): why a read or write is not allowed.
    /// The record waits for the patient's approval.
    RecordPending {
        record: RecordId,
    },
    /// The patient rejected the record.
    RecordRejected {
        record: RecordId,
    },
    NoConsent {
        category: Category,
    },
    /// The patient's consent for the category expired at `expired_ms`.
    GrantExpired {
        category: Category,
        expired_ms: u64,
    },
    /// The role may never be given records of this category.
    RoleMayNotHold {
        role: Role,
        category: Category,
    },
    RoleMayNotWrite {
        role: Role,
    },
    /// The grant allows reading, not writing.
    ReadOnlyGrant {
        category: Category,
    },
    NoWriteConsent {
        category: Category,
    },

    // Consent.
    NoCategories,
    SelfGrant,
    SelfRequest,
    /// A grant to an organisation with no approved member holding an encryption key.
    NoOrganisationMembers {
        organisation: String,
    },
    /// An expiry at or before the block time.
    AlreadyExpired {
        expires_ms: u64,
        now_ms: u64,
    },
    /// A grant covering less than the one in force: revoking is what narrows a grant.
    GrantNarrowing {
        grantee: Grantee,
        category: Category,
    },
    NoSuchGrant {
        grantee: Grantee,
    },
    GrantLacksCategory {
        grantee: Grantee,
        category: Category,
    },
    NoSuchRequest {
        request: RequestId,
    },
    RequestAnswered {
        request: RequestId,
    },

    // Workflow items.
    NoSuchItem {
        item: ItemId,
    },
    WrongItemKind {
        item: ItemId,
        expected: ItemKind,
    },

    // Appointments.
    StartInPast {
        start_ms: u64,
        now_ms: u64,
    },
    SlotLength {
        minutes: u32,
        max: u32,
    },
    /// Only an open slot is booked.
    SlotNotOpen {
        slot: ItemId,
    },
    /// A slot is booked before it starts.
    SlotStarted {
        slot: ItemId,
    },
    /// Only the slot's doctor answers and completes its booking.
    NotSlotDoctor {
        slot: ItemId,
    },
    /// Only the slot's doctor or the patient who booked it cancels.
    NotSlotParty {
        slot: ItemId,
    },
    /// Only a booking waiting for the doctor is confirmed or declined.
    NotRequested {
        slot: ItemId,
    },
    /// A booking left unconfirmed until the start is declined, not confirmed.
    StartedUnconfirmed {
        slot: ItemId,
    },
    /// A completed or withdrawn slot is not cancelled.
    SlotClosed {
        slot: ItemId,
    },
    /// After the start the doctor completes (or declines), never cancels.
    DoctorCancelAfterStart {
        slot: ItemId,
    },
    /// After the start the patient reclaims the fee of a confirmed appointment only from
    /// `refund_from_ms` (a week after its end).
    RefundNotYet {
        slot: ItemId,
        refund_from_ms: u64,
    },
    /// Only a confirmed appointment is completed.
    NotConfirmed {
        slot: ItemId,
    },
    NotStarted {
        slot: ItemId,
    },

    // Symptom reports and prescriptions.
    /// A symptom report is one of the sender's own records.
    ReportNotOwnRecord {
        record: RecordId,
    },
    /// A symptom report is an active notes record.
    ReportNotActiveNotes {
        record: RecordId,
    },
    /// The doctor could not read the report under the patient's consent.
    DoctorCannotRead {
        doctor: AccountId,
    },
    PrescriptionNotMedication,
    SelfPrescription,
    /// A pharmacy and the data key sealed to it come together.
    PharmacyKeyMismatch,
    AlreadyDispensed {
        rx: ItemId,
    },
    /// The patient rejected the prescription's record, which withdraws it.
    PrescriptionRejected {
        rx: ItemId,
    },
    NotYourPharmacy {
        rx: ItemId,
    },

    // Invoices, policies and claims.
    InvoicePaid {
        invoice: ItemId,
    },
    /// An invoice with a claim being decided is neither paid nor claimed again.
    ClaimOpen {
        invoice: ItemId,
        claim: ItemId,
    },
    CoverageTooHigh {
        coverage_bp: u16,
    },
    ApprovalLevels {
        count: u64,
        max: u64,
    },
    DuplicateApprover {
        approver: AccountId,
    },
    /// An approver must be an approved insurer or regulator.
    ApproverNotEligible {
        approver: AccountId,
        level: u32,
    },
    /// The policy is not the invoice's patient's.
    PolicyNotForPatient {
        policy: ItemId,
    },
    PolicyExpired {
        policy: ItemId,
        expired_ms: u64,
    },
    /// An insurer already paid its share of the invoice.
    InsurerAlreadyPaid {
        invoice: ItemId,
    },
    /// The claim was approved, rejected or withdrawn.
    ClaimNotOpen {
        claim: ItemId,
    },
    /// The claim waits for an earlier level than the sender's.
    ClaimLevelNotReached {
        claim: ItemId,
        level: u32,
        levels: u32,
        yours: u32,
    },
    ClaimLevelDecided {
        claim: ItemId,
        level: u32,
    },
    NotAnApprover {
        claim: ItemId,
    },

    // Guardians and emergency access.
    /// A patient names 1 to `max` guardians (or none, to remove them).
    GuardianCount {
        count: u64,
        max: u64,
    },
    /// The threshold is at least 2 (no guardian releases alone) and at most the guardians.
    BadThreshold {
        threshold: u8,
        guardians: u64,
    },
    /// A guardian is an active account with an encryption key, not the patient.
    GuardianNotEligible {
        guardian: AccountId,
    },
    DuplicateGuardian {
        guardian: AccountId,
    },
    /// The commitments are `threshold` valid Ristretto points, not the identity.
    BadCommitments,
    /// The emergency window is between `min_ms` and `max_ms`.
    BadEmergencyWindow {
        duration_ms: u64,
        min_ms: u64,
        max_ms: u64,
    },
    /// The patient has no guardians for emergency access.
    NoGuardians {
        patient: AccountId,
    },
    /// The doctor already has an open request, or access released and not over, for this
    /// patient.
    EmergencyPending {
        request: ItemId,
    },
    /// A note is sealed only to the patient or a guardian, and the reason `other` needs one.
    BadEmergencyNote,
    NotAGuardian {
        request: ItemId,
    },
    AlreadyAnswered {
        request: ItemId,
    },
    /// The request was refused or withdrawn, or its window is over.
    EmergencyClosed {
        request: ItemId,
    },
    /// An approval carries the sealed share and its digest; a refusal neither.
    ShareRequired,
    /// Only the requesting doctor reports a share, and the patient reviews.
    NotYourEmergency {
        request: ItemId,
    },
    /// The guardian did not approve, or the revealed bytes do not match the digest they
    /// published.
    ShareNotRevealed {
        guardian: AccountId,
    },
    /// The revealed share passes the Feldman check: it is not wrong.
    ShareValid {
        guardian: AccountId,
    },
    /// Only a released request is reviewed, once.
    NotReviewable {
        request: ItemId,
    },
    /// The requesting doctor does not answer their own request, even as a guardian.
    SelfApproval {
        request: ItemId,
    },
}

impl Coded for Refusal {
    fn serialize_fields<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Refusal::serialize(self, s)
    }
}

/// The JSON form: `code`, the fields and the rendered `message`.
impl Serialize for Refusal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_with_message(self, s)
    }
}

impl<'de> Deserialize<'de> for Refusal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Refusal::deserialize(d)
    }
}

impl Refusal {
    /// The stable snake_case code of the rule (the `code` of the JSON form).
    pub fn code(&self) -> &'static str {
        use Refusal::*;
        match self {
            NotRegistered { .. } => "not_registered",
            AlreadyRegistered { .. } => "already_registered",
            RoleNotRegistrable { .. } => "role_not_registrable",
            OrganisationRequired { .. } => "organisation_required",
            NotAdmin => "not_admin",
            NotApproved { .. } => "not_approved",
            RoleRequired { .. } => "role_required",
            NotPending { .. } => "not_pending",
            NotInRole { .. } => "not_in_role",
            FieldEmpty { .. } => "field_empty",
            FieldTooLong { .. } => "field_too_long",
            AboveSupply { .. } => "above_supply",
            InsufficientBalance { .. } => "insufficient_balance",
            PayerInsufficientBalance { .. } => "payer_insufficient_balance",
            ZeroAmount { .. } => "zero_amount",
            SelfTransfer => "self_transfer",
            TransferToEscrow => "transfer_to_escrow",
            BalanceOverflow { .. } => "balance_overflow",
            NoEncryptionKey { .. } => "no_encryption_key",
            NoCategoryKey { .. } => "no_category_key",
            StaleKeyEpoch { .. } => "stale_key_epoch",
            WrappedKeyLength { .. } => "wrapped_key_length",
            CategoryKeyRequired => "category_key_required",
            TooManyWraps { .. } => "too_many_wraps",
            UnexpectedWrap { .. } => "unexpected_wrap",
            MissingWrap { .. } => "missing_wrap",
            DuplicateRotation { .. } => "duplicate_rotation",
            RotationRequired { .. } => "rotation_required",
            UnexpectedRotation { .. } => "unexpected_rotation",
            NoSuchRecord { .. } => "no_such_record",
            RecordExists { .. } => "record_exists",
            ContentAnchored => "content_anchored",
            MetaLength { .. } => "meta_length",
            NotOwnProfile => "not_own_profile",
            ProfileNotDemographics => "profile_not_demographics",
            DirectKeyRecipients => "direct_key_recipients",
            RecordNotPending { .. } => "record_not_pending",
            ApprovalNeedsKey => "approval_needs_key",
            UnexpectedKeys => "unexpected_keys",
            NotThePatient { .. } => "not_the_patient",
            RecordPending { .. } => "record_pending",
            RecordRejected { .. } => "record_rejected",
            NoConsent { .. } => "no_consent",
            GrantExpired { .. } => "grant_expired",
            RoleMayNotHold { .. } => "role_may_not_hold",
            RoleMayNotWrite { .. } => "role_may_not_write",
            ReadOnlyGrant { .. } => "read_only_grant",
            NoWriteConsent { .. } => "no_write_consent",
            NoCategories => "no_categories",
            SelfGrant => "self_grant",
            SelfRequest => "self_request",
            NoOrganisationMembers { .. } => "no_organisation_members",
            AlreadyExpired { .. } => "already_expired",
            GrantNarrowing { .. } => "grant_narrowing",
            NoSuchGrant { .. } => "no_such_grant",
            GrantLacksCategory { .. } => "grant_lacks_category",
            NoSuchRequest { .. } => "no_such_request",
            RequestAnswered { .. } => "request_answered",
            NoSuchItem { .. } => "no_such_item",
            WrongItemKind { .. } => "wrong_item_kind",
            StartInPast { .. } => "start_in_past",
            SlotLength { .. } => "slot_length",
            SlotNotOpen { .. } => "slot_not_open",
            SlotStarted { .. } => "slot_started",
            NotSlotDoctor { .. } => "not_slot_doctor",
            NotSlotParty { .. } => "not_slot_party",
            NotRequested { .. } => "not_requested",
            StartedUnconfirmed { .. } => "started_unconfirmed",
            SlotClosed { .. } => "slot_closed",
            DoctorCancelAfterStart { .. } => "doctor_cancel_after_start",
            RefundNotYet { .. } => "refund_not_yet",
            NotConfirmed { .. } => "not_confirmed",
            NotStarted { .. } => "not_started",
            ReportNotOwnRecord { .. } => "report_not_own_record",
            ReportNotActiveNotes { .. } => "report_not_active_notes",
            DoctorCannotRead { .. } => "doctor_cannot_read",
            PrescriptionNotMedication => "prescription_not_medication",
            SelfPrescription => "self_prescription",
            PharmacyKeyMismatch => "pharmacy_key_mismatch",
            AlreadyDispensed { .. } => "already_dispensed",
            PrescriptionRejected { .. } => "prescription_rejected",
            NotYourPharmacy { .. } => "not_your_pharmacy",
            InvoicePaid { .. } => "invoice_paid",
            ClaimOpen { .. } => "claim_open",
            CoverageTooHigh { .. } => "coverage_too_high",
            ApprovalLevels { .. } => "approval_levels",
            DuplicateApprover { .. } => "duplicate_approver",
            ApproverNotEligible { .. } => "approver_not_eligible",
            PolicyNotForPatient { .. } => "policy_not_for_patient",
            PolicyExpired { .. } => "policy_expired",
            InsurerAlreadyPaid { .. } => "insurer_already_paid",
            ClaimNotOpen { .. } => "claim_not_open",
            ClaimLevelNotReached { .. } => "claim_level_not_reached",
            ClaimLevelDecided { .. } => "claim_level_decided",
            NotAnApprover { .. } => "not_an_approver",
            GuardianCount { .. } => "guardian_count",
            BadThreshold { .. } => "bad_threshold",
            GuardianNotEligible { .. } => "guardian_not_eligible",
            DuplicateGuardian { .. } => "duplicate_guardian",
            BadCommitments => "bad_commitments",
            BadEmergencyWindow { .. } => "bad_emergency_window",
            NoGuardians { .. } => "no_guardians",
            EmergencyPending { .. } => "emergency_pending",
            BadEmergencyNote => "bad_emergency_note",
            NotAGuardian { .. } => "not_a_guardian",
            AlreadyAnswered { .. } => "already_answered",
            EmergencyClosed { .. } => "emergency_closed",
            ShareRequired => "share_required",
            NotYourEmergency { .. } => "not_your_emergency",
            ShareNotRevealed { .. } => "share_not_revealed",
            ShareValid { .. } => "share_valid",
            NotReviewable { .. } => "not_reviewable",
            SelfApproval { .. } => "self_approval",
        }
    }
}

impl std::error::Error for Refusal {}

/// The sentence a user reads. Not part of any hash: reword freely.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Refusal::*;
        match self {
            NotRegistered { account } => write!(f, "account {account} is not registered"),
            AlreadyRegistered { role } => {
                write!(f, "the account is already registered as {role}")
            }
            RoleNotRegistrable { role } => write!(
                f,
                "the {role} role cannot be registered: it exists only from genesis"
            ),
            OrganisationRequired { role } => write!(
                f,
                "{} {role} must name an organisation",
                article(role.name())
            ),
            NotAdmin => f.write_str("only the consortium admin may do this"),
            NotApproved { role } => write!(
                f,
                "the account's {role} registration is still pending approval by the consortium admin"
            ),
            RoleRequired { role } => write!(f, "only an active {role} may do this"),
            NotPending { account } => {
                write!(f, "account {account} is active, not pending approval")
            }
            NotInRole { account, role } if role.needs_approval() => {
                write!(f, "{account} is not an approved {role}")
            }
            NotInRole { account, role } => write!(f, "{account} is not a registered {role}"),
            FieldEmpty { field } => write!(f, "{field} must not be empty"),
            FieldTooLong { field, len, max } => {
                write!(f, "{field} is too long ({len} bytes, at most {max})")
            }
            AboveSupply {
                field,
                amount,
                supply,
            } => write!(
                f,
                "{field} of {amount} tokens exceeds the total supply of {supply}"
            ),
            InsufficientBalance { balance, needed } => {
                write!(f, "insufficient balance: have {balance}, need {needed}")
            }
            PayerInsufficientBalance {
                payer,
                balance,
                needed,
            } => write!(f, "{payer} holds {balance} tokens, {needed} are needed"),
            ZeroAmount { field } => write!(f, "the {field} must be greater than zero"),
            SelfTransfer => f.write_str("cannot transfer to the sending account itself"),
            TransferToEscrow => f.write_str("the escrow account only holds appointment fees"),
            BalanceOverflow { account } => {
                write!(f, "the balance of {account} would overflow")
            }
            NoEncryptionKey { account } => write!(
                f,
                "account {account} has not published an encryption key"
            ),
            NoCategoryKey { category } => write!(
                f,
                "there is no {category} key yet: rotate the category key first"
            ),
            StaleKeyEpoch {
                category,
                current,
                got,
            } => write!(
                f,
                "the data key must be wrapped under the current {category} key (epoch {current}), not epoch {got}"
            ),
            WrappedKeyLength { len } => {
                write!(f, "a wrapped data key is 72 bytes, not {len}")
            }
            CategoryKeyRequired => f.write_str(
                "the patient's own records keep their data key under a category key",
            ),
            TooManyWraps { count, max } => {
                write!(f, "{count} key wraps in one transaction, at most {max}")
            }
            UnexpectedWrap {
                category,
                epoch,
                recipient,
            } => write!(
                f,
                "unexpected key wrap: the {category} key of epoch {epoch} for {recipient}, who needs none"
            ),
            MissingWrap {
                category,
                epoch,
                recipient,
            } => write!(
                f,
                "missing key wrap: the {category} key of epoch {epoch} must be sealed to {recipient}"
            ),
            DuplicateRotation { category } => {
                write!(f, "two rotations of the {category} key in one transaction")
            }
            RotationRequired { category } => write!(
                f,
                "revoking {category} must start a new {category} key epoch (add a rotation)"
            ),
            UnexpectedRotation { category } => write!(
                f,
                "unexpected rotation of the {category} key: no grant of {category} is revoked"
            ),
            NoSuchRecord { record } => write!(f, "no record {record}"),
            RecordExists { record } => write!(f, "record {record} already exists"),
            ContentAnchored => {
                f.write_str("this ciphertext is already anchored by another record")
            }
            MetaLength { len } => write!(
                f,
                "encrypted metadata must be exactly {} bytes (padded before encryption), not {len}",
                crate::records::SEALED_META_BYTES
            ),
            NotOwnProfile => f.write_str("only the account itself sets its profile"),
            ProfileNotDemographics => f.write_str("a profile is a demographics record"),
            DirectKeyRecipients => f.write_str(
                "a record written for a patient seals its data key to exactly the patient and the author",
            ),
            RecordNotPending { record } => {
                write!(f, "record {record} is not waiting for approval")
            }
            ApprovalNeedsKey => f.write_str(
                "approving re-wraps the data key under the patient's category key",
            ),
            UnexpectedKeys => f.write_str("a rejection or a denial carries no keys"),
            NotThePatient { subject } => write!(
                f,
                "only the patient of {} may do this",
                subject.named()
            ),
            RecordPending { .. } => f.write_str("the record awaits the patient's approval"),
            RecordRejected { .. } => f.write_str("the patient rejected this record"),
            NoConsent { category } => write!(f, "no consent for {category} records"),
            GrantExpired {
                category,
                expired_ms,
            } => write!(
                f,
                "consent for {category} records has expired (at {})",
                Date(*expired_ms)
            ),
            RoleMayNotHold { role, category } => write!(
                f,
                "{} {role} may not be given {category} records",
                article(role.name())
            ),
            RoleMayNotWrite { role } => write!(
                f,
                "{} {role} cannot be given write access",
                article(role.name())
            ),
            ReadOnlyGrant { category } => write!(
                f,
                "the patient granted read but not write access to {category} records"
            ),
            NoWriteConsent { category } => write!(
                f,
                "no consent to write {category} records for this patient"
            ),
            NoCategories => f.write_str("name at least one category"),
            SelfGrant => f.write_str("cannot grant access to yourself"),
            SelfRequest => f.write_str("cannot request access to your own records"),
            NoOrganisationMembers { organisation } => write!(
                f,
                "organisation {organisation:?} has no approved members with an encryption key"
            ),
            AlreadyExpired { expires_ms, now_ms } => write!(
                f,
                "the expiry {} is not after the block time {}",
                Date(*expires_ms),
                Date(*now_ms)
            ),
            GrantNarrowing { grantee, category } => write!(
                f,
                "the grant to {grantee} already covers {category}: revoke it (which starts a new key epoch) instead of granting less"
            ),
            NoSuchGrant { grantee } => write!(f, "there is no grant to {grantee}"),
            GrantLacksCategory { grantee, category } => {
                write!(f, "the grant to {grantee} does not include {category}")
            }
            NoSuchRequest { request } => write!(f, "no access request {request}"),
            RequestAnswered { request } => write!(f, "request {request} was already answered"),
            NoSuchItem { item } => write!(f, "no {}", Named(item)),
            WrongItemKind { item, expected } => write!(
                f,
                "{item} is not {}: it is {}",
                expected.with_article(),
                item.kind.with_article()
            ),
            StartInPast { start_ms, now_ms } => write!(
                f,
                "a slot must start in the future: {} is not after the block time {}",
                Date(*start_ms),
                Date(*now_ms)
            ),
            SlotLength { minutes, max } => {
                write!(f, "a slot lasts 1 to {max} minutes, not {minutes}")
            }
            SlotNotOpen { slot } => write!(f, "{} is not open: it cannot be booked", Named(slot)),
            SlotStarted { slot } => write!(f, "{} has already started", Named(slot)),
            NotSlotDoctor { slot } => write!(
                f,
                "only the slot's doctor answers and completes the booking of {}",
                Named(slot)
            ),
            NotSlotParty { slot } => write!(
                f,
                "only the slot's doctor or the patient who booked it may cancel {}",
                Named(slot)
            ),
            NotRequested { slot } => write!(
                f,
                "{} has no booking waiting for the doctor: it cannot be confirmed or declined",
                Named(slot)
            ),
            StartedUnconfirmed { slot } => write!(
                f,
                "{} has started unconfirmed: decline it (the patient may cancel for a refund)",
                Named(slot)
            ),
            SlotClosed { slot } => write!(
                f,
                "{} is completed or withdrawn: it cannot be cancelled",
                Named(slot)
            ),
            DoctorCancelAfterStart { slot } => write!(
                f,
                "{} has started: complete it, or decline it if it was never confirmed",
                Named(slot)
            ),
            RefundNotYet {
                slot,
                refund_from_ms,
            } => write!(
                f,
                "{} has started: the doctor completes a confirmed appointment (the patient may reclaim the fee from {} if it never is)",
                Named(slot),
                Date(*refund_from_ms)
            ),
            NotConfirmed { slot } => write!(
                f,
                "{} is not a confirmed appointment: it cannot be completed",
                Named(slot)
            ),
            NotStarted { slot } => write!(f, "{} has not started yet", Named(slot)),
            ReportNotOwnRecord { .. } => f.write_str("a symptom report is one of your own records"),
            ReportNotActiveNotes { .. } => {
                f.write_str("a symptom report is an active notes record")
            }
            DoctorCannotRead { doctor } => write!(
                f,
                "the doctor {doctor} could not read the report: grant them notes access first"
            ),
            PrescriptionNotMedication => f.write_str("a prescription is a medication record"),
            SelfPrescription => f.write_str("doctors do not prescribe for themselves"),
            PharmacyKeyMismatch => f.write_str(
                "a pharmacy comes with the prescription's data key sealed to it",
            ),
            AlreadyDispensed { rx } => write!(f, "{} has already been dispensed", Named(rx)),
            PrescriptionRejected { rx } => write!(
                f,
                "the patient rejected {}: it can no longer be dispensed",
                Named(rx)
            ),
            NotYourPharmacy { rx } => {
                write!(f, "{} is not directed to your pharmacy", Named(rx))
            }
            InvoicePaid { invoice } => write!(f, "{} is already paid", Named(invoice)),
            ClaimOpen { invoice, claim } => write!(
                f,
                "claim {claim} on {} is being decided: pay or claim after the decision",
                Named(invoice)
            ),
            CoverageTooHigh { coverage_bp } => write!(
                f,
                "coverage is at most 100 % ({} basis points), not {coverage_bp}",
                crate::clinical::FULL_COVERAGE_BP
            ),
            ApprovalLevels { count, max } => {
                write!(f, "a policy has 1 to {max} approval levels, not {count}")
            }
            DuplicateApprover { approver } => {
                write!(f, "{approver} approves more than one level")
            }
            ApproverNotEligible { approver, level } => write!(
                f,
                "approver {approver} of level {level} is not an approved insurer or regulator"
            ),
            PolicyNotForPatient { policy } => write!(
                f,
                "{} does not cover the invoice's patient",
                Named(policy)
            ),
            PolicyExpired { policy, expired_ms } => write!(
                f,
                "{} has expired (at {})",
                Named(policy),
                Date(*expired_ms)
            ),
            InsurerAlreadyPaid { invoice } => write!(
                f,
                "an insurer already paid its share of {}",
                Named(invoice)
            ),
            ClaimNotOpen { claim } => write!(
                f,
                "{} is no longer open: it was approved, rejected or withdrawn",
                Named(claim)
            ),
            ClaimLevelNotReached {
                claim,
                level,
                levels,
                yours,
            } => write!(
                f,
                "{} waits for level {level} of {levels}; you approve level {yours}",
                Named(claim)
            ),
            ClaimLevelDecided { claim, level } => {
                write!(f, "you already decided level {level} of {}", Named(claim))
            }
            NotAnApprover { claim } => {
                write!(f, "you are not an approver of {}", Named(claim))
            }
            GuardianCount { count, max } => {
                write!(f, "name 1 to {max} guardians (or none, to remove them), not {count}")
            }
            BadThreshold {
                threshold,
                guardians,
            } => write!(
                f,
                "the threshold must be at least 2 and at most the {guardians} guardians, not {threshold}"
            ),
            GuardianNotEligible { guardian } => write!(
                f,
                "guardian {guardian} is not an active account with an encryption key (or is the patient)"
            ),
            DuplicateGuardian { guardian } => write!(f, "guardian {guardian} is named twice"),
            BadCommitments => f.write_str(
                "the share commitments must be one valid Ristretto point per threshold step",
            ),
            BadEmergencyWindow {
                duration_ms,
                min_ms,
                max_ms,
            } => write!(
                f,
                "an emergency window is between {} and {}, not {}",
                crate::items::Hours(*min_ms),
                crate::items::Hours(*max_ms),
                crate::items::Hours(*duration_ms)
            ),
            NoGuardians { patient } => {
                write!(f, "patient {patient} has named no guardians for emergency access")
            }
            EmergencyPending { request } => write!(
                f,
                "you already have {} for this patient that is open or not over",
                Named(request)
            ),
            BadEmergencyNote => f.write_str(
                "a note is sealed only to the patient and their guardians, and the reason other needs one",
            ),
            NotAGuardian { request } => {
                write!(f, "you are not a guardian of {}", Named(request))
            }
            AlreadyAnswered { request } => {
                write!(f, "you already answered {}", Named(request))
            }
            EmergencyClosed { request } => write!(
                f,
                "{} was refused, withdrawn or lapsed, or its window is over",
                Named(request)
            ),
            ShareRequired => f.write_str(
                "an approval carries the share sealed to the doctor and its digest; a refusal neither",
            ),
            NotYourEmergency { request } => write!(f, "{} is not yours", Named(request)),
            ShareNotRevealed { guardian } => write!(
                f,
                "the revealed bytes are not what guardian {guardian} handed over (or they did not approve)"
            ),
            ShareValid { guardian } => write!(
                f,
                "the share of guardian {guardian} matches the commitments: it is not wrong"
            ),
            NotReviewable { request } => write!(
                f,
                "{} is not a released emergency access waiting for review",
                Named(request)
            ),
            SelfApproval { request } => write!(
                f,
                "you asked for {}: you cannot answer it, even as a guardian",
                Named(request)
            ),
        }
    }
}
