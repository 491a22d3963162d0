//! The error body every failed request answers with, and its stable codes.

use serde::{Deserialize, Serialize};

/// `{"error": {"code": "...", "message": "..."}}`: every non-2xx answer of the API.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// A failure: a stable snake_case code to match on, and a message for the user.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    /// For code `rejected`: the ledger rule that refuses the transaction, with its own code
    /// and typed fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<ehrchain_types::Refusal>,
}

/// The codes the API answers with. A client matches on these, never on messages.
pub mod codes {
    /// Malformed request: a bad id, query or parameter.
    pub const BAD_REQUEST: &str = "bad_request";
    /// A JSON body of the wrong shape.
    pub const INVALID_BODY: &str = "invalid_body";
    /// A body not sent as `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// The request must be signed, or its signature does not verify.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Signed, but not allowed.
    pub const FORBIDDEN: &str = "forbidden";
    /// Signed, but the consent state does not let the caller read this.
    pub const ACCESS_DENIED: &str = "access_denied";
    /// Block bodies and receipts are shown to consortium members only.
    pub const MEMBERS_ONLY: &str = "members_only";
    /// No such thing, or nothing the caller may see (the two look the same).
    pub const NOT_FOUND: &str = "not_found";
    /// The path exists; the method does not.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// The request took too long.
    pub const TIMEOUT: &str = "timeout";
    /// The request conflicts with the node's state.
    pub const CONFLICT: &str = "conflict";
    /// A body, upload or list over a limit.
    pub const TOO_LARGE: &str = "too_large";
    /// A request target over the limit.
    pub const URI_TOO_LONG: &str = "uri_too_long";
    /// An upload whose bytes do not hash to its content id.
    pub const CID_MISMATCH: &str = "cid_mismatch";
    /// The upload's body ended early or failed.
    pub const UPLOAD_INTERRUPTED: &str = "upload_interrupted";
    /// A transaction signed for another chain.
    pub const WRONG_CHAIN: &str = "wrong_chain";
    /// A transaction whose signature does not verify.
    pub const BAD_SIGNATURE: &str = "bad_signature";
    /// A transaction too far ahead of its account's next nonce.
    pub const NONCE_GAP: &str = "nonce_gap";
    /// The same transaction is already in the mempool.
    pub const ALREADY_PENDING: &str = "already_pending";
    /// The mempool is full; try again shortly.
    pub const MEMPOOL_FULL: &str = "mempool_full";
    /// A transaction the ledger's rules refuse; `refusal` names the rule.
    pub const REJECTED: &str = "rejected";
    /// Too many requests; slow down.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The account's quota of unanchored uploads is used up.
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
    /// The node's disk is below its watermark; try later or another node.
    pub const STORAGE_LOW: &str = "storage_low";
    /// The node's disk filled during the request.
    pub const DISK_FULL: &str = "disk_full";
    /// The node cannot serve this now.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Fewer than the shards needed to rebuild a record's content could be found (503).
    pub const BLOB_UNAVAILABLE: &str = "blob_unavailable";
    /// An upload could not be placed on enough validators to be rebuildable (503).
    pub const BLOB_UNPLACEABLE: &str = "blob_unplaceable";
    /// The node failed; its log has the cause.
    pub const INTERNAL: &str = "internal";
}
