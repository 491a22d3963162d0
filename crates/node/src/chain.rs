//! The node's chain: committed state, speculative states of blocks not yet finalized, the
//! mempool and the store. Implements the consensus engine's [`Ledger`].

use crate::{
    config::BlockConfig,
    mempool::{Mempool, MempoolError, MempoolLimits},
    metrics::Metrics,
    store::{ChainStore, Finalized, StoreError, TxLocation},
};
use ehrchain_consensus::{Ledger, Verdict};
use ehrchain_ledger::{BlockContext, BlockOutput, State, TxError};
use ehrchain_types::{Block, BlockHeader, Hash, PublicKey, Receipt, SignedTransaction};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

/// Most transactions waiting to be gossiped; beyond it, new ones still enter the mempool but
/// reach other validators only through blocks.
const MAX_OUTBOX: usize = 20_000;
/// Largest gossip message accepted from a peer.
const MAX_GOSSIP_BYTES: usize = 8 * 1024 * 1024;
/// A block timestamped more than this many `max_clock_drift_ms` ahead of this node's clock is
/// invalid for good; one ahead by more than one drift but not this many is verified once it is
/// within one drift ([`Verdict::NotYet`]). A skew up to twice the tolerance (a clock stepped by
/// NTP, a proposer a little fast) is waited out, and the wait ends with the view if that comes
/// first; a block further ahead says its proposer's clock is wrong by more than the network
/// tolerates, and the rule needs a bound to be a rule at all.
pub const MAX_FUTURE_DRIFTS: u64 = 2;
/// How many committed blocks' writes a speculative state may still hold in memory before a
/// block built on it drops them ([`Chain::parent_state`]): rebasing costs what the state
/// holds, so doing it every few blocks rather than every block halves its share of a
/// proposal (measured with `ehrchain bench records`).
const REBASE_AFTER: u64 = 4;

/// The post-state of a block this node proposed or verified but that is not finalized yet.
struct Speculative {
    height: u64,
    parent: Hash,
    state: Arc<State>,
    output: Arc<BlockOutput>,
}

struct Inner {
    /// Transactions admitted from this node's clients, not yet gossiped to peers.
    outbox: Vec<SignedTransaction>,
    state: Arc<State>,
    tip: BlockHeader,
    mempool: Mempool,
    speculative: HashMap<Hash, Speculative>,
}

/// A consistent snapshot of the committed chain, for readers.
#[derive(Clone)]
pub struct Snapshot {
    pub state: Arc<State>,
    pub tip: BlockHeader,
    pub mempool_size: usize,
}

/// The node's chain.
pub struct Chain {
    store: ChainStore,
    genesis: Block,
    inner: Mutex<Inner>,
    block_cfg: BlockConfig,
    pub metrics: Metrics,
    finalized: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Chain")
    }
}

impl Chain {
    /// Opens the chain in `store`, writing the genesis block first if the store is empty.
    pub fn open(
        store: ChainStore,
        genesis: &ehrchain_ledger::GenesisState,
        mempool: MempoolLimits,
        block_cfg: BlockConfig,
    ) -> Result<Chain, StoreError> {
        let digest = ehrchain_types::domain::tagged_hash(
            ehrchain_types::domain::GENESIS_FILE,
            &[&serde_json::to_vec(genesis).expect("a genesis state encodes")],
        );
        let rebuild = || ehrchain_ledger::genesis(genesis).0;
        let (gblock, state) = match store.stored_genesis(&digest, rebuild)? {
            Some(gblock) => (gblock, store.load_state()?),
            None => {
                // A large prefill is stored a chunk at a time instead of held in memory.
                let mut failed = None;
                let (gblock, mut gstate) =
                    ehrchain_ledger::genesis_with(genesis, &mut |state, touched| {
                        if failed.is_some() {
                            return;
                        }
                        match store
                            .store_genesis_part(state, &touched)
                            .and_then(|()| store.cold_view())
                        {
                            Ok(cold) => state.rebase(cold, 0),
                            Err(e) => failed = Some(e),
                        }
                    });
                if let Some(e) = failed {
                    return Err(e);
                }
                store.init_genesis(&gblock, &gstate, &digest)?;
                if genesis.synthetic_records > 0 {
                    // As large as the lookup indexes of a chain that anchored them in blocks.
                    store.prefill_index(genesis.synthetic_records)?;
                }
                gstate.rebase(store.cold_view()?, 0);
                (gblock, gstate)
            }
        };
        let tip = store.tip()?.expect("the genesis block is stored").header;
        if state.root() != tip.state_root {
            return Err(StoreError::Corrupt(format!(
                "stored state root {} does not match block {}'s state root {}",
                state.root(),
                tip.height,
                tip.state_root
            )));
        }
        let metrics = Metrics::new();
        metrics.height.set(tip.height as i64);
        let (finalized, _) = tokio::sync::watch::channel(tip.height);
        Ok(Chain {
            store,
            genesis: gblock,
            inner: Mutex::new(Inner {
                outbox: Vec::new(),
                state: Arc::new(state),
                tip,
                mempool: Mempool::new(mempool),
                speculative: HashMap::new(),
            }),
            block_cfg,
            metrics,
            finalized,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("chain lock poisoned")
    }

    pub fn genesis_block(&self) -> &Block {
        &self.genesis
    }

    pub fn store(&self) -> &ChainStore {
        &self.store
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            state: inner.state.clone(),
            tip: inner.tip.clone(),
            mempool_size: inner.mempool.len(),
        }
    }

    /// Commits a finalized block that arrived from outside consensus (a follower pulling from
    /// a validator; its certificate already checked): it must execute on the committed state
    /// to the roots its header names, or it is refused and nothing changes.
    pub fn apply_finalized(&self, block: &Block, certificate: Vec<u8>) -> Result<(), String> {
        let (state, tip) = {
            let inner = self.lock();
            (inner.state.clone(), inner.tip.clone())
        };
        if block.header.height <= tip.height {
            return Ok(());
        }
        let (post, output) =
            ehrchain_ledger::verify_block(&tip, &state, block).map_err(|e| e.to_string())?;
        self.remember(block, post, output);
        ehrchain_consensus::Ledger::finalized(self, block, Some(certificate))
    }

    /// Subscribes to the height of the last finalized block.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.finalized.subscribe()
    }

    /// Admits a transaction from a client to the mempool; it is then gossiped to the other
    /// validators.
    pub fn submit(&self, stx: SignedTransaction, now_ms: u64) -> Result<Hash, MempoolError> {
        self.submit_batch(vec![stx], now_ms)
            .pop()
            .expect("one result per transaction")
    }

    /// [`Chain::submit`] for many transactions: one result each, in order.
    pub fn submit_batch(
        &self,
        txs: Vec<SignedTransaction>,
        now_ms: u64,
    ) -> Vec<Result<Hash, MempoolError>> {
        self.admit(txs, now_ms, true)
    }

    /// Admits transactions to the mempool, in three steps so that the costly one holds no
    /// lock: the cheap checks under the lock (duplicates and replays stop here), every
    /// remaining signature in one batch outside it, then insertion under the lock. With
    /// `gossip`, the admitted transactions also go to the outbox for the other validators.
    fn admit(
        &self,
        txs: Vec<SignedTransaction>,
        now_ms: u64,
        gossip: bool,
    ) -> Vec<Result<Hash, MempoolError>> {
        let ids: Vec<Hash> = txs.iter().map(SignedTransaction::id).collect();
        let mut results: Vec<Result<Hash, MempoolError>> = {
            let inner = self.lock();
            txs.iter()
                .zip(&ids)
                .map(|(t, id)| inner.mempool.check(t, id, &inner.state).map(|()| *id))
                .collect()
        };
        let unchecked: Vec<usize> = (0..txs.len()).filter(|&i| results[i].is_ok()).collect();
        let signatures = ehrchain_types::verify_signatures(unchecked.iter().map(|&i| &txs[i]));
        for (&i, sig) in unchecked.iter().zip(signatures) {
            if let Err(e) = sig {
                results[i] = Err(TxError::BadSignature(e.to_string()).into());
            }
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let next_height = inner.tip.height + 1;
        for ((stx, id), result) in txs.into_iter().zip(ids).zip(&mut results) {
            if result.is_err() {
                continue;
            }
            let copy = (gossip && inner.outbox.len() < MAX_OUTBOX).then(|| stx.clone());
            *result = inner
                .mempool
                .insert_verified(stx, id, &inner.state, next_height, now_ms);
            if let (Ok(_), Some(stx)) = (&result, copy) {
                inner.outbox.push(stx);
            }
        }
        let accepted = results.iter().filter(|r| r.is_ok()).count() as u64;
        self.metrics.mempool_size.set(inner.mempool.len() as i64);
        self.metrics.submissions_accepted.inc_by(accepted);
        self.metrics
            .submissions_refused
            .inc_by(results.len() as u64 - accepted);
        results
    }

    /// The nonce a new transaction from `id` should carry: the committed nonce plus the
    /// transactions it already has queued in the mempool.
    pub fn next_nonce(&self, id: &ehrchain_types::AccountId) -> u64 {
        let inner = self.lock();
        let mut n = inner.state.account(id).map_or(0, |a| a.nonce);
        while inner.mempool.has_nonce(id, n) {
            n += 1;
        }
        n
    }

    pub fn is_pending(&self, id: &Hash) -> bool {
        self.lock().mempool.contains(id)
    }

    /// Where a transaction was finalized, with its receipt and the transaction itself.
    pub fn finalized_tx(
        &self,
        id: &Hash,
    ) -> Result<Option<(TxLocation, SignedTransaction, Receipt)>, StoreError> {
        let Some(loc) = self.store.tx_location(id)? else {
            return Ok(None);
        };
        let block = self.store.block(loc.height)?.ok_or_else(|| {
            StoreError::Corrupt(format!("tx index points at missing block {}", loc.height))
        })?;
        let receipts = self.store.receipts(loc.height)?;
        let i = loc.index as usize;
        match (block.txs.get(i), receipts.get(i)) {
            (Some(t), Some(r)) if t.id() == *id => Ok(Some((loc, t.clone(), r.clone()))),
            _ => Err(StoreError::Corrupt(format!(
                "tx index points at another transaction in block {}",
                loc.height
            ))),
        }
    }

    /// Keeps the post-state of a proposed or verified block until it is finalized or pruned.
    fn remember(&self, block: &Block, post: State, output: BlockOutput) {
        self.lock().speculative.insert(
            block.id(),
            Speculative {
                height: block.header.height,
                parent: block.header.parent,
                state: Arc::new(post),
                output: Arc::new(output),
            },
        );
    }

    /// The post-state of `parent` if this node knows it: the committed state when `parent`
    /// is the tip, or a speculative state of a block proposed or verified earlier. A
    /// speculative state holding what [`REBASE_AFTER`] or more committed blocks wrote drops
    /// it first (once: the rebased state replaces it), so a chain of blocks built on
    /// unfinalized parents holds the changes of the unfinalized ones and a few more, not of
    /// everything since its snapshot. The rebase runs outside the chain's lock, so readers
    /// and admission do not wait for it.
    fn parent_state(&self, parent: &Block) -> Option<Arc<State>> {
        let id = parent.id();
        let (spec, rebase_on) = {
            let inner = self.lock();
            if id == inner.tip.id() {
                return Some(inner.state.clone());
            }
            let committed = inner.tip.height;
            let spec = inner.speculative.get(&id)?.state.clone();
            // Only a state built on the tip may drop what the store now holds (a state on
            // another branch wrote nodes the store never got): walk up to the tip.
            let tip = inner.tip.id();
            let mut at = id;
            let on_tip = loop {
                match inner.speculative.get(&at) {
                    _ if at == tip => break true,
                    Some(s) if s.height > committed => at = s.parent,
                    _ => break false,
                }
            };
            let due = on_tip && spec.rebased_to() + REBASE_AFTER <= committed;
            let cold = inner.state.cold().filter(|_| due);
            (spec, cold.map(|c| (c, committed)))
        };
        let Some((cold, committed)) = rebase_on else {
            return Some(spec);
        };
        let mut state = State::clone(&spec);
        state.rebase(cold, committed);
        let state = Arc::new(state);
        // Keep it for the next block built on the same parent, unless the entry changed (or
        // went) meanwhile.
        if let Some(entry) = self.lock().speculative.get_mut(&id)
            && Arc::ptr_eq(&entry.state, &spec)
        {
            entry.state = state.clone();
        }
        Some(state)
    }
}

impl Ledger for Chain {
    fn propose(
        &self,
        parent: &Block,
        view: u64,
        proposer: PublicKey,
        now_ms: u64,
    ) -> Option<Block> {
        let state = self.parent_state(parent)?;
        let candidates = (self.lock().mempool).candidates(&state, self.block_cfg.max_txs);
        let ctx = BlockContext {
            height: parent.header.height + 1,
            // Strictly after the parent even if this clock lags behind the parent's proposer.
            timestamp_ms: now_ms.max(parent.header.timestamp_ms + 1),
            proposer,
        };
        let started = std::time::Instant::now();
        let (block, post, output) = ehrchain_ledger::build_block(
            &parent.header,
            &state,
            candidates,
            &ctx,
            view,
            self.block_cfg.max_txs,
        );
        (self.metrics.block_build_seconds.0).observe(started.elapsed().as_secs_f64());
        self.remember(&block, post, output);
        Some(block)
    }

    fn take_gossip(&self) -> Vec<u8> {
        let batch = std::mem::take(&mut self.lock().outbox);
        if batch.is_empty() {
            Vec::new()
        } else {
            ehrchain_types::encode(&batch)
        }
    }

    fn receive_gossip(&self, bytes: &[u8], now_ms: u64) {
        let Ok(batch) = ehrchain_types::decode::<Vec<SignedTransaction>>(bytes, MAX_GOSSIP_BYTES)
        else {
            tracing::debug!("dropping malformed gossip");
            return;
        };
        // Already pending, already final or invalid: peers gossip what they admitted, so
        // refusals here are expected and harmless.
        let _ = self.admit(batch.into_iter().take(MAX_OUTBOX).collect(), now_ms, false);
    }

    fn has_state(&self, id: &Hash) -> bool {
        let inner = self.lock();
        *id == inner.tip.id() || inner.speculative.contains_key(id)
    }

    fn finalized_height(&self) -> u64 {
        self.lock().tip.height
    }

    fn has_pending(&self) -> bool {
        !self.lock().mempool.is_empty()
    }

    fn verify(&self, parent: &Block, block: &Block, now_ms: u64) -> Verdict {
        if block.txs.len() > self.block_cfg.max_txs {
            tracing::warn!(height = block.header.height, "refusing oversized block");
            return Verdict::Invalid;
        }
        let ahead = block.header.timestamp_ms.saturating_sub(now_ms);
        let drift = self.block_cfg.max_clock_drift_ms;
        if ahead > drift {
            // A clock skew is transient and `Invalid` is final: up to `MAX_FUTURE_DRIFTS`
            // drifts ahead, ask to be asked again once the block is within one drift.
            if ahead > drift.saturating_mul(MAX_FUTURE_DRIFTS) {
                tracing::warn!(
                    height = block.header.height,
                    ahead_ms = ahead,
                    "refusing block from the future"
                );
                return Verdict::Invalid;
            }
            return Verdict::NotYet {
                at_ms: block.header.timestamp_ms - drift,
            };
        }
        let Some(state) = self.parent_state(parent) else {
            // Final although states come and go: the engine asks only after `has_state(parent)`
            // held (it replays unknown ancestors first), and a state is dropped only when the
            // finalized tip reaches its height. So `parent` is at or below the finalized height
            // and not the tip: `block` forks off the finalized chain, or sits at or below the
            // finalized height where the view is decided and this vote no longer counts.
            tracing::warn!(
                height = block.header.height,
                "refusing block on an unknown parent state"
            );
            return Verdict::Invalid;
        };
        // Transactions this node admitted itself (byte for byte) had their signatures checked
        // on entry; only the others are checked here.
        let admitted: Vec<bool> = {
            let inner = self.lock();
            block.txs.iter().map(|t| inner.mempool.holds(t)).collect()
        };
        let already = |i: usize| admitted[i];
        match ehrchain_ledger::verify_block_with(&parent.header, &state, block, &already) {
            Ok((post, output)) => {
                self.remember(block, post, output);
                Verdict::Valid
            }
            Err(e) => {
                tracing::warn!(height = block.header.height, error = %e, "refusing invalid block");
                Verdict::Invalid
            }
        }
    }

    fn finalized_many(&self, blocks: &[(&Block, Option<Vec<u8>>)]) -> Result<(), String> {
        let (mut state, mut tip, specs) = {
            let inner = self.lock();
            // The speculative entries stay until the tip moves (below), so that each block's
            // state is known, as tip or as speculative, at every instant: a proposal on one
            // that arrives while the blocks are being written must not find it missing.
            let specs: Vec<_> = blocks
                .iter()
                .filter(|(b, _)| b.header.height > inner.tip.height)
                .map(|(b, f)| {
                    let spec = inner
                        .speculative
                        .get(&b.id())
                        .map(|s| (s.state.clone(), s.output.clone()));
                    (*b, f.as_deref(), spec)
                })
                .collect();
            (inner.state.clone(), inner.tip.clone(), specs)
        };
        if specs.is_empty() {
            return Ok(());
        }
        let mut applied = Vec::with_capacity(specs.len());
        for (block, finalization, spec) in specs {
            assert_eq!(
                block.header.height,
                tip.height + 1,
                "marshal delivers finalized blocks in height order without gaps"
            );
            let (post, output) = match spec {
                Some(known) => known,
                None => {
                    // Not seen during voting (back-filled): re-verify against the state
                    // before it.
                    let (post, output) = ehrchain_ledger::verify_block(&tip, &state, block)
                        .unwrap_or_else(|e| {
                            panic!(
                                "finalized block {} does not apply to the committed state: {e}",
                                block.header.height
                            )
                        });
                    (Arc::new(post), Arc::new(output))
                }
            };
            state = post.clone();
            tip = block.header.clone();
            applied.push((block, finalization, post, output));
        }
        let writes: Vec<Finalized<'_>> = applied
            .iter()
            .map(|(block, finalization, post, output)| Finalized {
                block,
                output,
                finalization: *finalization,
                state: post,
            })
            .collect();
        let started = std::time::Instant::now();
        self.store
            .commit_blocks(&writes)
            .map_err(|e| e.to_string())?;
        (self.metrics.block_commit_seconds.0).observe(started.elapsed().as_secs_f64());
        // What the blocks wrote is read from the store from now on: memory holds the changes
        // of unfinalized blocks, not the chain's history.
        let cold = self.store.cold_view().map_err(|e| e.to_string())?;
        let mut committed = State::clone(&state);
        committed.rebase(cold, tip.height);
        let post = Arc::new(committed);
        let last = applied.last().expect("at least one block").0;
        let id = last.id();
        {
            let mut inner = self.lock();
            inner.state = post.clone();
            inner.tip = tip.clone();
            let senders: Vec<_> = (applied.iter())
                .flat_map(|(b, ..)| b.txs.iter().map(|t| t.tx.sender()))
                .collect();
            inner.mempool.prune(&post, senders);
            let h = tip.height;
            // States of blocks not built on the new tip can never be finalized now.
            let mut specs: Vec<(Hash, Speculative)> = inner.speculative.drain().collect();
            specs.sort_by_key(|(_, s)| s.height);
            let mut descendants = std::collections::HashSet::from([id]);
            for (sid, s) in specs {
                if s.height > h && descendants.contains(&s.parent) {
                    descendants.insert(sid);
                    inner.speculative.insert(sid, s);
                }
            }
            self.metrics.mempool_size.set(inner.mempool.len() as i64);
        }
        (self.metrics.index_pending).set(self.store.index_pending() as i64);
        for (block, _, _, output) in &applied {
            let rejected = output
                .receipts
                .iter()
                .filter(|r| matches!(r.outcome, ehrchain_types::TxOutcome::Rejected { .. }))
                .count();
            self.metrics.blocks_finalized.inc();
            self.metrics.txs_finalized.inc_by(block.txs.len() as u64);
            self.metrics.txs_rejected.inc_by(rejected as u64);
            self.metrics.audit_events.inc_by(output.events.len() as u64);
        }
        self.metrics.height.set(tip.height as i64);
        self.finalized.send_replace(tip.height);
        Ok(())
    }
}
