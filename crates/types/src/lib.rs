//! Account ids, roles, transactions, blocks and their canonical encoding.
//!
//! Everything that is signed or hashed is encoded with `borsh`, which is deterministic: no
//! floats, no hash maps, fixed integer widths. Every signature and hash is taken over a
//! domain tag followed by the canonical bytes, so a signature made for one purpose can never
//! be replayed as another ([`domain`]).

pub mod block;
pub mod clinical;
pub mod codec;
pub mod domain;
pub mod entries;
pub mod id;
pub mod items;
pub mod records;
pub mod refusal;
pub mod request;
pub mod tx;

pub use block::{Block, BlockHeader, Receipt, TxOutcome};
pub use clinical::{ItemId, ItemKind, RecordDraft};
pub use codec::{CodecError, decode, encode};
pub use id::{AccountId, Hash, IdError, PublicKey, Role, Signature};
pub use records::{
    AuditAction, AuditEvent, AuditReason, Category, Decision, EncryptionKey, EventId, Grantee,
    HexBytes, KeyWrap, RecordId, RecordKey, RequestId, Rotation, SealedKey,
};
pub use refusal::{Field, Refusal, Subject};
pub use tx::{SignatureError, SignedTransaction, Transaction, TxPayload, verify_signatures};

/// The largest number of bytes any single encoded transaction may have.
pub const MAX_TX_BYTES: usize = 16 * 1024;
/// The largest number of transactions in one block.
pub const MAX_BLOCK_TXS: usize = 10_000;
/// The largest number of bytes of one encoded block.
pub const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024;
