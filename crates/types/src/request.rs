//! Signed API requests: reads of record lists, audit trails and blobs are made by an account,
//! which signs the chain, method, path and query, a timestamp and the SHA-256 of the body
//! under the `ehrchain/request/v2` tag. The node checks the signature and the time; the
//! handler checks the body against the signed hash (a read has an empty body; an upload's body
//! must hash to its content id).

use crate::{AccountId, Hash, PublicKey, Signature, domain};

/// The HTTP header carrying a request signature.
pub const HEADER: &str = "x-ehrchain-auth";
/// How far a request's timestamp may be from the node's clock.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// A request signature: who, when, which body, and the ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAuth {
    pub key: PublicKey,
    pub timestamp_ms: u64,
    /// SHA-256 of the request body the signer sent ([`empty_body`] for none).
    pub body: Hash,
    pub signature: Signature,
}

/// SHA-256 of an empty body: what a signed read (GET) signs.
pub fn empty_body() -> Hash {
    use sha2::Digest as _;
    Hash(sha2::Sha256::digest([]).into())
}

/// Why a request signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing {HEADER} header: this request must be signed by an account key")]
    Missing,
    #[error("malformed {HEADER} header (expected key=HEX,ts=MILLIS,body=HEX,sig=HEX)")]
    Malformed,
    #[error("request timestamp is {0} s away from the node's clock (at most 300 s allowed)")]
    Skew(u64),
    #[error("the request signature does not match the key, method, path and timestamp")]
    BadSignature,
}

/// The bytes signed after the domain tag.
pub fn message(
    chain_id: &str,
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    body: &Hash,
) -> Vec<u8> {
    format!("{chain_id}\n{method}\n{path_and_query}\n{timestamp_ms}\n{body}").into_bytes()
}

impl RequestAuth {
    /// The header value.
    pub fn header_value(&self) -> String {
        format!(
            "key={},ts={},body={},sig={}",
            self.key, self.timestamp_ms, self.body, self.signature
        )
    }

    pub fn parse(value: &str) -> Result<RequestAuth, AuthError> {
        let (mut key, mut ts, mut body, mut sig) = (None, None, None, None);
        for part in value.split(',') {
            match part.trim().split_once('=') {
                Some(("key", v)) => key = v.parse().ok(),
                Some(("ts", v)) => ts = v.parse().ok(),
                Some(("body", v)) => body = v.parse().ok(),
                Some(("sig", v)) => sig = v.parse().ok(),
                _ => return Err(AuthError::Malformed),
            }
        }
        match (key, ts, body, sig) {
            (Some(key), Some(timestamp_ms), Some(body), Some(signature)) => Ok(RequestAuth {
                key,
                timestamp_ms,
                body,
                signature,
            }),
            _ => Err(AuthError::Malformed),
        }
    }

    /// Checks the signature and the timestamp; returns the signing account.
    pub fn verify(
        &self,
        chain_id: &str,
        method: &str,
        path_and_query: &str,
        now_ms: u64,
    ) -> Result<AccountId, AuthError> {
        let skew = now_ms.abs_diff(self.timestamp_ms);
        if skew > MAX_SKEW_MS {
            return Err(AuthError::Skew(skew / 1000));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.key.0)
            .map_err(|_| AuthError::BadSignature)?;
        let mut bytes = domain::REQUEST.to_vec();
        bytes.extend_from_slice(&message(
            chain_id,
            method,
            path_and_query,
            self.timestamp_ms,
            &self.body,
        ));
        key.verify_strict(
            &bytes,
            &ed25519_dalek::Signature::from_bytes(&self.signature.0),
        )
        .map_err(|_| AuthError::BadSignature)?;
        Ok(AccountId::from_public_key(&self.key))
    }
}
