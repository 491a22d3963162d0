//! A session: one unlocked account key talking to one node.

use crate::{Error, Node, Result, invalid};
use ehrchain_api::{
    AccountView, StatusView, SubmitRequest, SubmitResponse, TxView, now_ms, tx_status,
};
use ehrchain_crypto::Keypair;
use ehrchain_types::{
    AccountId, EncryptionKey, Hash, SignedTransaction, Transaction, TxOutcome, TxPayload,
};
use serde::de::DeserializeOwned;
use std::time::{Duration, Instant};

/// How many times a rate-limited submission is sent again.
pub const RATE_LIMIT_RETRIES: u32 = 3;
/// The longest `Retry-After` a submission waits for before giving up.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Entries asked for per page of a list (the node's maximum).
pub const PAGE: usize = 1000;

/// How long [`Session::submit`] waits for a transaction to be finalized.
pub const FINALITY_TIMEOUT: Duration = Duration::from_secs(60);

/// An account's unlocked key and the node it talks to. The key never leaves the process: the
/// node receives signed transactions, signed requests, ciphertext and sealed keys only.
pub struct Session {
    pub node: Node,
    pub key: Keypair,
    /// The account of `key`.
    pub me: AccountId,
    /// The chain the node serves (bound into every signature).
    pub chain_id: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("node", &self.node)
            .field("me", &self.me)
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens a session: asks the node which chain it serves.
    pub fn new(node: Node, key: Keypair) -> Result<Session> {
        let status: StatusView = node.get("/api/v1/status")?;
        Ok(Session {
            me: key.account(),
            node,
            key,
            chain_id: status.chain_id,
        })
    }

    /// The signed-request header value for `method` on `path` without a body.
    pub fn auth(&self, method: &str, path: &str) -> String {
        self.auth_body(method, path, &ehrchain_api::request::empty_body())
    }

    /// The signed-request header value for `method` on `path` with a body whose SHA-256 is
    /// `body`.
    pub fn auth_body(&self, method: &str, path: &str, body: &Hash) -> String {
        self.key
            .sign_request(&self.chain_id, method, path, body, now_ms())
            .header_value()
    }

    /// A signed GET.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.node.get_signed(path, &self.auth("GET", path))
    }

    /// Every entry of a paginated list (signed GETs of `path` with `limit` and a cursor):
    /// `cursor` names the query parameter (`after`, or `before` for the newest-first audit
    /// trail) and `key` gives an entry's cursor value.
    pub fn get_all<T: DeserializeOwned>(
        &self,
        path: &str,
        cursor: &str,
        key: impl Fn(&T) -> String,
    ) -> Result<Vec<T>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out: Vec<T> = Vec::new();
        loop {
            let mut page_path = format!("{path}{sep}limit={PAGE}");
            if let Some(last) = out.last() {
                page_path += &format!("&{cursor}={}", key(last));
            }
            let page: Vec<T> = self.get(&page_path)?;
            let n = page.len();
            out.extend(page);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// An account as the ledger has it.
    pub fn account(&self, id: &AccountId) -> Result<AccountView> {
        self.node.get(&format!("/api/v1/accounts/{id}"))
    }

    /// The key others seal to `id` with.
    pub fn encryption_key(&self, id: &AccountId) -> Result<EncryptionKey> {
        match self.account(id)?.account.encryption_key {
            Some(k) => Ok(k),
            None => invalid!(
                "account {id} has no encryption key on the ledger (it must register first)"
            ),
        }
    }

    /// The nonce this account's next new transaction should carry.
    pub fn next_nonce(&self) -> Result<u64> {
        Ok(self.account(&self.me)?.next_nonce)
    }

    /// Signs a payload with `nonce`.
    pub fn sign(&self, payload: TxPayload, nonce: u64) -> SignedTransaction {
        self.key.sign_tx(Transaction {
            chain_id: self.chain_id.clone(),
            signer: self.key.public_key(),
            nonce,
            payload,
        })
    }

    /// Signs a payload with `nonce` and submits it; returns the transaction id. A `429` is
    /// retried after the node's `Retry-After` (up to [`RATE_LIMIT_RETRIES`] times, waiting at
    /// most [`MAX_RETRY_WAIT`] each).
    pub fn post(&self, payload: TxPayload, nonce: u64) -> Result<Hash> {
        let body = SubmitRequest {
            tx: hex::encode(ehrchain_types::encode(&self.sign(payload, nonce))),
        };
        let mut tries = 0;
        loop {
            match self
                .node
                .post::<_, SubmitResponse>("/api/v1/transactions", &body)
            {
                Ok(resp) => return Ok(resp.id),
                Err(Error::Node {
                    status: 429,
                    retry_after_secs: Some(secs),
                    ..
                }) if tries < RATE_LIMIT_RETRIES && Duration::from_secs(secs) <= MAX_RETRY_WAIT => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(secs));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A transaction as this account sees it (signed, so a party sees its body and receipt).
    pub fn transaction(&self, id: &Hash) -> Result<TxView> {
        self.get(&format!("/api/v1/transactions/{id}"))
    }

    /// Polls a transaction until it is finalized; fails if it leaves the mempool without
    /// being finalized or `timeout` passes.
    pub fn wait_final_within(&self, id: &Hash, timeout: Duration) -> Result<TxView> {
        let start = Instant::now();
        loop {
            let t = self.transaction(id)?;
            if t.status == tx_status::FINALIZED {
                return Ok(t);
            }
            if t.status == tx_status::UNKNOWN && start.elapsed() > Duration::from_secs(5) {
                return Err(Error::NotFinal(format!(
                    "transaction {id} is no longer pending and was not finalized (dropped from the mempool)"
                )));
            }
            if start.elapsed() > timeout {
                return Err(Error::NotFinal(format!(
                    "transaction {id} not finalized after {}s; look it up again later",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Self::wait_final_within`] the default [`FINALITY_TIMEOUT`].
    pub fn wait_final(&self, id: &Hash) -> Result<TxView> {
        self.wait_final_within(id, FINALITY_TIMEOUT)
    }

    /// Signs and submits payloads with consecutive nonces, waits for all to be finalized, and
    /// fails with [`Error::Rejected`] on the first the ledger refused.
    pub fn submit(&self, payloads: Vec<TxPayload>) -> Result<Vec<TxView>> {
        let next = self.next_nonce()?;
        let ids = payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| self.post(p, next + i as u64))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::new();
        for id in ids {
            let t = self.wait_final(&id)?;
            rejection(&t)?;
            out.push(t);
        }
        Ok(out)
    }

    /// [`Self::submit`] of one payload.
    pub fn submit_one(&self, payload: TxPayload) -> Result<TxView> {
        Ok(self.submit(vec![payload])?.remove(0))
    }
}

/// `Err(Error::Rejected)` if the finalized transaction's receipt is a refusal.
pub fn rejection(t: &TxView) -> Result<()> {
    match t.receipt.as_ref().map(|r| &r.outcome) {
        Some(TxOutcome::Rejected { reason }) => Err(Error::Rejected {
            tx: t.id,
            refusal: reason.clone(),
        }),
        _ => Ok(()),
    }
}
