//! The mempool: admitted, not yet finalized transactions, bounded in count and per sender.

use ehrchain_ledger::{State, TxError};
use ehrchain_types::{AccountId, Hash, SignedTransaction};
use std::collections::{BTreeMap, HashSet};

/// Mempool bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MempoolLimits {
    /// Transactions held in total; beyond it new ones are refused (HTTP 503, retry later).
    pub max_txs: usize,
    /// How far ahead of its next nonce one sender may queue.
    pub max_per_sender: u64,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            max_txs: 200_000,
            max_per_sender: 1_024,
        }
    }
}

/// Why the mempool refused a transaction.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MempoolError {
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("transaction {0} is already pending")]
    AlreadyPending(Hash),
    #[error("nonce {nonce} already has a different pending transaction from this account")]
    NonceTaken { nonce: u64 },
    #[error(
        "nonce {nonce} is too far ahead of the account's next nonce {next} (at most {max} may queue)"
    )]
    TooFarAhead { nonce: u64, next: u64, max: u64 },
    #[error("the mempool is full ({0} transactions); retry later")]
    Full(usize),
}

/// Pending transactions by sender and nonce.
#[derive(Debug, Default)]
pub struct Mempool {
    limits: MempoolLimits,
    /// Each sender's queue by nonce, with each transaction's id.
    by_sender: BTreeMap<AccountId, BTreeMap<u64, (Hash, SignedTransaction)>>,
    ids: HashSet<Hash>,
}

impl Mempool {
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            ..Mempool::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether this exact transaction (signature included) is pending: its signature was
    /// checked when it was admitted.
    pub fn holds(&self, stx: &SignedTransaction) -> bool {
        self.by_sender
            .get(&stx.tx.sender())
            .and_then(|q| q.get(&stx.tx.nonce))
            .is_some_and(|(_, t)| t == stx)
    }

    /// Whether `sender` has a pending transaction with `nonce`.
    pub fn has_nonce(&self, sender: &AccountId, nonce: u64) -> bool {
        self.by_sender
            .get(sender)
            .is_some_and(|q| q.contains_key(&nonce))
    }

    pub fn contains(&self, id: &Hash) -> bool {
        self.ids.contains(id)
    }

    /// The checks that need no signature verification, against the latest finalized
    /// `state`: not pending already, right chain, nonce not used, not too far ahead, not
    /// taken by another pending transaction, room left. Run before the (costly) signature
    /// check so that duplicates and replays cost nothing, and again at insertion.
    pub fn check(
        &self,
        stx: &SignedTransaction,
        id: &Hash,
        state: &State,
    ) -> Result<(), MempoolError> {
        if self.ids.contains(id) {
            return Err(MempoolError::AlreadyPending(*id));
        }
        let sender = stx.tx.sender();
        let next = state.accounts.get(&sender).map_or(0, |a| a.nonce);
        if stx.tx.chain_id != state.chain_id {
            return Err(TxError::WrongChain {
                expected: state.chain_id.clone(),
                got: stx.tx.chain_id.clone(),
            }
            .into());
        }
        if stx.tx.nonce < next {
            return Err(TxError::NonceReplayed {
                used: stx.tx.nonce,
                next,
            }
            .into());
        }
        if stx.tx.nonce >= next + self.limits.max_per_sender {
            return Err(MempoolError::TooFarAhead {
                nonce: stx.tx.nonce,
                next,
                max: self.limits.max_per_sender,
            });
        }
        if self.has_nonce(&sender, stx.tx.nonce) {
            return Err(MempoolError::NonceTaken {
                nonce: stx.tx.nonce,
            });
        }
        if self.ids.len() >= self.limits.max_txs {
            return Err(MempoolError::Full(self.ids.len()));
        }
        Ok(())
    }

    /// Admits a transaction whose signature the caller has checked
    /// ([`ehrchain_types::verify_signatures`]); blocks built from the mempool rely on it.
    /// Runs [`Mempool::check`] again (the state or the mempool may have moved since), and
    /// dry-runs a transaction that is next in line for its sender, so that an overdraft or a
    /// missing role is refused at once with its reason rather than later in a receipt.
    pub fn insert_verified(
        &mut self,
        stx: SignedTransaction,
        id: Hash,
        state: &State,
        next_height: u64,
        now_ms: u64,
    ) -> Result<Hash, MempoolError> {
        self.check(&stx, &id, state)?;
        let sender = stx.tx.sender();
        if stx.tx.nonce == state.accounts.get(&sender).map_or(0, |a| a.nonce) {
            ehrchain_ledger::execute::dry_run(state, &stx, next_height, now_ms)?;
        }
        self.ids.insert(id);
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(stx.tx.nonce, (id, stx));
        Ok(id)
    }

    /// Up to `max` candidates for a block on a parent whose state is `parent`: each sender's
    /// queue in nonce order from the nonce the parent expects next, senders interleaved
    /// round-robin so that one busy sender cannot starve the others. Transactions that blocks
    /// between the committed tip and the parent already carry stay here until those blocks
    /// are finalized, but are no candidates: counted against `max`, they would shrink every
    /// block while finalization lags behind consensus.
    pub fn candidates(&self, parent: &State, max: usize) -> Vec<SignedTransaction> {
        let mut queues: Vec<_> = (self.by_sender.iter())
            .map(|(sender, q)| q.range(parent.account(sender).map_or(0, |a| a.nonce)..))
            .map(|q| q.map(|(_, t)| t))
            .collect();
        let mut out = Vec::with_capacity(max.min(self.ids.len()));
        while out.len() < max && !queues.is_empty() {
            queues.retain_mut(|q| match q.next() {
                Some((_, t)) if out.len() < max => {
                    out.push(t.clone());
                    true
                }
                _ => false,
            });
        }
        out
    }

    /// Drops everything a newly finalized state has made stale (used nonces).
    pub fn prune(&mut self, state: &State, senders: impl IntoIterator<Item = AccountId>) {
        for sender in senders {
            let next = state.accounts.get(&sender).map_or(0, |a| a.nonce);
            if let Some(q) = self.by_sender.get_mut(&sender) {
                let keep = q.split_off(&next);
                for (id, _) in q.values() {
                    self.ids.remove(id);
                }
                *q = keep;
                if q.is_empty() {
                    self.by_sender.remove(&sender);
                }
            }
        }
    }
}
