//! The one error type of the SDK.

use ehrchain_types::{AuditReason, EventId, Hash, Refusal};

/// Everything a client operation can fail with. Match on the variant (and on `code` for
/// [`Error::Node`]); the `Display` text is for people.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer from the node at all.
    #[error("cannot reach the node at {url} ({reason}); is it running?")]
    Unreachable { url: String, reason: String },
    /// The node answered with an error body: `code` is stable (`ehrchain_api::error::codes`).
    #[error("{message}")]
    Node {
        status: u16,
        code: String,
        message: String,
        /// For code `rejected`: the ledger rule the mempool's dry run refused the transaction
        /// by, with its own code and fields.
        refusal: Option<Refusal>,
        /// For `429`: when to try again (the `Retry-After` header).
        retry_after_secs: Option<u64>,
    },
    /// The node answered something this client does not understand.
    #[error("{0}")]
    Protocol(String),
    /// A transaction was finalized but refused by the ledger's rules; nothing but its nonce
    /// was consumed.
    #[error("transaction rejected: {refusal}")]
    Rejected { tx: Hash, refusal: Refusal },
    /// A transaction did not reach a finalized block.
    #[error("{0}")]
    NotFinal(String),
    /// An audited read the ledger denied (the denial itself is on the ledger).
    #[error("access denied: {reason} (the denial is recorded in the patient's audit trail)")]
    Denied {
        event: Option<EventId>,
        reason: AuditReason,
    },
    /// The flow needs `grantee` to hold a grant of `category` first (e.g. a doctor who is to
    /// read a symptom report).
    #[error("{grantee} cannot read your {category} records: grant read access first")]
    NoGrant {
        grantee: ehrchain_types::AccountId,
        category: ehrchain_types::Category,
    },
    /// Sealing or opening failed: a wrong key, altered data, a bad recipient key.
    #[error(transparent)]
    Crypto(#[from] ehrchain_crypto::envelope::EnvelopeError),
    /// Local files.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The request cannot be made as asked (bad input, or the ledger's state rules it out);
    /// the message says what to change.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An [`Error::Io`] with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status of an error the node answered, if it was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Node { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The ledger rule behind the failure, if one refused a transaction (at admission or in
    /// its receipt).
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Node { refusal, .. } => refusal.as_ref(),
            Error::Rejected { refusal, .. } => Some(refusal),
            _ => None,
        }
    }

    /// The stable code of the failure, for programs: the node's code, `rejected`/`denied`
    /// with the ledger's code, or the kind of local failure.
    pub fn code(&self) -> &str {
        match self {
            Error::Unreachable { .. } => "unreachable",
            Error::Node { code, .. } => code,
            Error::Protocol(_) => "protocol",
            Error::Rejected { refusal, .. } => refusal.code(),
            Error::NotFinal(_) => "not_final",
            Error::Denied { reason, .. } => reason.code(),
            Error::NoGrant { .. } => "no_grant",
            Error::Crypto(_) => "crypto",
            Error::Io { .. } => "io",
            Error::Invalid(_) => "invalid",
        }
    }
}

/// The SDK's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Err(Error::Invalid(format!(...)))`.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;
