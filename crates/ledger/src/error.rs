//! Why a transaction or a block is refused.

use ehrchain_types::{Hash, Refusal};

/// Why a transaction was refused: either it is not admissible at all (wrong chain, bad
/// signature, wrong nonce: it never enters a block, so it has no receipt), or a contract's
/// rule refused it ([`Refusal`], the code its receipt records).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxError {
    #[error("transaction is for chain {got:?}, this is chain {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("bad signature: {0}")]
    BadSignature(String),
    #[error(
        "replayed transaction: nonce {used} was already used (the account's next nonce is {next})"
    )]
    NonceReplayed { used: u64, next: u64 },
    #[error("out-of-order transaction: nonce {got} is ahead of the account's next nonce {next}")]
    NonceGap { got: u64, next: u64 },
    /// A rule of a contract; the receipt of an admitted transaction records it.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl TxError {
    /// A stable snake_case code: the refusal's, or the admission check's.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::WrongChain { .. } => "wrong_chain",
            TxError::BadSignature(_) => "bad_signature",
            TxError::NonceReplayed { .. } => "nonce_replayed",
            TxError::NonceGap { .. } => "nonce_gap",
            TxError::Refused(r) => r.code(),
        }
    }
}

/// Why a proposed block is invalid. An invalid block is never finalized by honest validators.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    #[error("block has {0} transactions, more than the limit")]
    TooManyTransactions(usize),
    #[error("height {got} does not follow parent height {parent}")]
    Height { parent: u64, got: u64 },
    #[error("parent is {got}, expected {expected}")]
    Parent { expected: Hash, got: Hash },
    #[error("timestamp {got} ms is not after the parent's {parent} ms")]
    Timestamp { parent: u64, got: u64 },
    #[error("header says {header} transactions, block has {actual}")]
    TxCount { header: u32, actual: usize },
    #[error("{root} root in header is {header}, recomputed {computed}")]
    Root {
        root: &'static str,
        header: Hash,
        computed: Hash,
    },
    #[error("transaction {index} ({tx_id}) is not admissible: {error}")]
    Inadmissible {
        index: usize,
        tx_id: Hash,
        error: TxError,
    },
}
