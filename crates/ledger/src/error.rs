//! Why a transaction or a block is refused.

use ehrchain_types::{AccountId, Hash, Role};

/// Why a transaction was refused. The `Display` text is what the user sees in receipts and
/// API errors, so it says what to do.
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
    #[error("account is already registered as {0}")]
    AlreadyRegistered(Role),
    #[error("the {0} role cannot be registered; it exists only from genesis")]
    RoleNotRegistrable(Role),
    #[error("a {0} must name an organisation (--org)")]
    OrganisationRequired(Role),
    #[error("{field} is too long ({len} bytes, at most {max})")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} must not be empty")]
    FieldEmpty { field: &'static str },
    #[error("{field} of {amount} tokens exceeds the total supply of {supply}")]
    AboveSupply {
        field: &'static str,
        amount: u64,
        supply: u128,
    },
    #[error("only the consortium admin may do this")]
    NotAdmin,
    #[error("the account's {0} registration is still pending approval by the consortium admin")]
    NotApproved(Role),
    #[error("only an active {0} may do this")]
    RoleRequired(Role),
    #[error("account {0} is not registered")]
    NotRegistered(AccountId),
    #[error("account {account} is {status}, not pending approval")]
    NotPending {
        account: AccountId,
        status: &'static str,
    },
    #[error("insufficient balance: have {balance}, need {needed}")]
    InsufficientBalance { balance: u64, needed: u64 },
    #[error("amount must be greater than zero")]
    ZeroAmount,
    #[error("cannot transfer to the sending account itself")]
    SelfTransfer,
    #[error("balance of {0} would overflow")]
    Overflow(AccountId),
    #[error("account {0} has not published an encryption key (register with `ehrchain register`)")]
    NoEncryptionKey(AccountId),
    #[error("no record {0}")]
    NoSuchRecord(ehrchain_types::RecordId),
    #[error("no access request {0}")]
    NoSuchRequest(ehrchain_types::RequestId),
    /// A rule of the records or consent contracts; the text says which.
    #[error("{0}")]
    Refused(String),
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
