//! Block execution: admission checks, applying transactions, building and verifying blocks.

use crate::{BlockError, State, TxError, contracts, state::StateKey};
use ehrchain_types::{
    AccountId, AuditEvent, Block, BlockHeader, Hash, MAX_BLOCK_TXS, PublicKey, Receipt,
    SignedTransaction, TxOutcome,
    block::{receipts_root, tx_root},
    records::audit_root,
};
use std::collections::{BTreeMap, BTreeSet};

/// What the block gives every transaction besides its own fields: an input, never read from
/// the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockContext {
    pub height: u64,
    pub timestamp_ms: u64,
    pub proposer: PublicKey,
}

/// What executing a block produced.
#[derive(Clone, Debug, Default)]
pub struct BlockOutput {
    pub receipts: Vec<Receipt>,
    /// State entries that changed, so storage writes only those.
    pub touched: BTreeSet<StateKey>,
    /// The audit events, in transaction order: the leaves of the block's audit tree.
    pub events: Vec<AuditEvent>,
}

/// Whether a transaction may enter a block on top of `state`: right chain, valid signature,
/// and exactly the account's next nonce (no replay, no gap).
pub fn admit(state: &State, stx: &SignedTransaction) -> Result<(), TxError> {
    admit_nonce(state, stx, state_nonce(state, &stx.tx.sender()))?;
    stx.verify_signature()
        .map_err(|e| TxError::BadSignature(e.to_string()))
}

fn state_nonce(state: &State, id: &AccountId) -> u64 {
    state.accounts.get(id).map_or(0, |a| a.nonce)
}

fn admit_nonce(state: &State, stx: &SignedTransaction, next: u64) -> Result<(), TxError> {
    if stx.tx.chain_id != state.chain_id {
        return Err(TxError::WrongChain {
            expected: state.chain_id.clone(),
            got: stx.tx.chain_id.clone(),
        });
    }
    match stx.tx.nonce {
        n if n < next => Err(TxError::NonceReplayed { used: n, next }),
        n if n > next => Err(TxError::NonceGap { got: n, next }),
        _ => Ok(()),
    }
}

/// Checks every transaction's signature, in one ed25519 batch when they all hold.
pub fn verify_signatures(txs: &[SignedTransaction]) -> Result<(), BlockError> {
    verify_signatures_where(txs, &|_| true)
}

/// [`verify_signatures`] for the transactions whose index `check` selects; errors name the
/// transaction's index in `txs`.
fn verify_signatures_where(
    txs: &[SignedTransaction],
    check: &dyn Fn(usize) -> bool,
) -> Result<(), BlockError> {
    let selected: Vec<usize> = (0..txs.len()).filter(|i| check(*i)).collect();
    let results = ehrchain_types::verify_signatures(selected.iter().map(|&i| &txs[i]));
    match selected
        .iter()
        .zip(results)
        .find_map(|(&i, r)| r.err().map(|e| (i, e)))
    {
        None => Ok(()),
        Some((index, e)) => Err(BlockError::Inadmissible {
            index,
            tx_id: txs[index].id(),
            error: TxError::BadSignature(e.to_string()),
        }),
    }
}

/// Applies one admitted transaction: the nonce is always consumed; the payload applies fully
/// or not at all.
fn apply_tx(state: &mut State, stx: &SignedTransaction, ctx: &BlockContext, out: &mut BlockOutput) {
    let sender = stx.tx.sender();
    let tx_id = stx.id();
    let result = {
        let mut scope = contracts::TxScope::new(state, sender, tx_id, ctx);
        contracts::dispatch(&mut scope, &stx.tx.payload).map(|()| scope.into_writes())
    };
    let acct = state.accounts.get_or_default(sender);
    acct.nonce += 1;
    acct.public_key.get_or_insert(stx.tx.signer);
    out.touched.insert(StateKey::Account(sender));
    let outcome = match result {
        Ok(mut writes) => {
            out.events.append(&mut writes.events);
            writes.apply(state, &sender, &mut out.touched);
            TxOutcome::Applied
        }
        Err(reason) => TxOutcome::Rejected { reason },
    };
    out.receipts.push(Receipt { tx_id, outcome });
}

/// Executes a block's transactions on `state`. Signatures must already have been checked
/// ([`verify_signatures`]). Either every transaction is admissible in order and the state
/// moves on, or the block is refused and `state` is unchanged.
pub fn execute_block(
    state: &mut State,
    txs: &[SignedTransaction],
    ctx: &BlockContext,
) -> Result<BlockOutput, BlockError> {
    if txs.len() > MAX_BLOCK_TXS {
        return Err(BlockError::TooManyTransactions(txs.len()));
    }
    // Admission pass first, so a bad transaction late in the block changes nothing.
    let mut next: BTreeMap<AccountId, u64> = BTreeMap::new();
    for (index, stx) in txs.iter().enumerate() {
        let sender = stx.tx.sender();
        let n = next
            .entry(sender)
            .or_insert_with(|| state_nonce(state, &sender));
        admit_nonce(state, stx, *n).map_err(|error| BlockError::Inadmissible {
            index,
            tx_id: stx.id(),
            error,
        })?;
        *n += 1;
    }
    let mut out = BlockOutput::default();
    state.begin_block(ctx.height);
    for stx in txs {
        apply_tx(state, stx, ctx, &mut out);
    }
    state.update_tree(&out.touched);
    Ok(out)
}

/// Builds a block on top of `parent` whose post-state is `state` (a clone of it, which is
/// O(1): the state's maps are persistent), taking candidates in order
/// and skipping any that is not admissible at its turn (stale nonce, wrong chain). The
/// candidates' signatures must already have been checked (the mempool does so on entry).
/// Returns the block and the state after it.
pub fn build_block(
    parent: &BlockHeader,
    state: &State,
    candidates: impl IntoIterator<Item = SignedTransaction>,
    ctx: &BlockContext,
    view: u64,
    max_txs: usize,
) -> (Block, State, BlockOutput) {
    let mut post = state.clone();
    post.begin_block(ctx.height);
    let mut txs = Vec::new();
    let mut out = BlockOutput::default();
    for stx in candidates {
        if txs.len() >= max_txs.min(MAX_BLOCK_TXS) {
            break;
        }
        let next = state_nonce(&post, &stx.tx.sender());
        if admit_nonce(&post, &stx, next).is_err() {
            continue;
        }
        apply_tx(&mut post, &stx, ctx, &mut out);
        txs.push(stx);
    }
    post.update_tree(&out.touched);
    let header = BlockHeader {
        height: parent.height + 1,
        parent: parent.id(),
        timestamp_ms: ctx.timestamp_ms,
        view,
        proposer: ctx.proposer,
        tx_count: txs.len() as u32,
        tx_root: tx_root(&txs),
        receipts_root: receipts_root(&out.receipts),
        state_root: post.root(),
        audit_root: audit_root(&out.events),
    };
    (Block { header, txs }, post, out)
}

/// Checks a block against its parent and the parent's post-state: links, time, counts,
/// signatures, then re-executes it and compares the receipts and state roots. Returns the
/// post-state on success.
pub fn verify_block(
    parent: &BlockHeader,
    parent_state: &State,
    block: &Block,
) -> Result<(State, BlockOutput), BlockError> {
    verify_block_with(parent, parent_state, block, &|_| false)
}

/// [`verify_block`], skipping the signature check of the transactions whose index
/// `already_verified` selects (e.g. byte-identical to one the node's mempool admitted after
/// checking its signature).
pub fn verify_block_with(
    parent: &BlockHeader,
    parent_state: &State,
    block: &Block,
    already_verified: &dyn Fn(usize) -> bool,
) -> Result<(State, BlockOutput), BlockError> {
    let h = &block.header;
    if h.height != parent.height + 1 {
        return Err(BlockError::Height {
            parent: parent.height,
            got: h.height,
        });
    }
    if h.parent != parent.id() {
        return Err(BlockError::Parent {
            expected: parent.id(),
            got: h.parent,
        });
    }
    if h.timestamp_ms <= parent.timestamp_ms {
        return Err(BlockError::Timestamp {
            parent: parent.timestamp_ms,
            got: h.timestamp_ms,
        });
    }
    if h.tx_count as usize != block.txs.len() {
        return Err(BlockError::TxCount {
            header: h.tx_count,
            actual: block.txs.len(),
        });
    }
    check_root("transaction", h.tx_root, tx_root(&block.txs))?;
    verify_signatures_where(&block.txs, &|i| !already_verified(i))?;
    let mut post = parent_state.clone();
    let ctx = BlockContext {
        height: h.height,
        timestamp_ms: h.timestamp_ms,
        proposer: h.proposer,
    };
    let out = execute_block(&mut post, &block.txs, &ctx)?;
    check_root("receipts", h.receipts_root, receipts_root(&out.receipts))?;
    check_root("state", h.state_root, post.root())?;
    check_root("audit", h.audit_root, audit_root(&out.events))?;
    Ok((post, out))
}

fn check_root(root: &'static str, header: Hash, computed: Hash) -> Result<(), BlockError> {
    if header == computed {
        Ok(())
    } else {
        Err(BlockError::Root {
            root,
            header,
            computed,
        })
    }
}

/// The genesis block and state.
pub fn genesis(g: &crate::GenesisState) -> (Block, State) {
    genesis_with(g, &mut |_, _| {})
}

/// [`genesis`], handing a large synthetic prefill to `flush` a chunk at a time
/// ([`State::genesis_with`]).
pub fn genesis_with(
    g: &crate::GenesisState,
    flush: &mut dyn FnMut(&mut State, std::collections::BTreeSet<crate::StateKey>),
) -> (Block, State) {
    let state = State::genesis_with(g, flush);
    let header = BlockHeader {
        height: 0,
        parent: Hash::ZERO,
        timestamp_ms: g.timestamp_ms,
        view: 0,
        proposer: PublicKey([0; 32]),
        tx_count: 0,
        tx_root: tx_root(&[]),
        receipts_root: receipts_root(&[]),
        state_root: state.root(),
        audit_root: audit_root(&[]),
    };
    (
        Block {
            header,
            txs: Vec::new(),
        },
        state,
    )
}

/// Checks what a transaction that is next in line would do on `state`, without changing it:
/// admission (chain, nonce, signature not included) and the contract's own rules.
pub fn dry_run(
    state: &State,
    stx: &SignedTransaction,
    height: u64,
    timestamp_ms: u64,
) -> Result<(), TxError> {
    admit_nonce(state, stx, state_nonce(state, &stx.tx.sender()))?;
    let ctx = BlockContext {
        height,
        timestamp_ms,
        proposer: PublicKey([0; 32]),
    };
    let mut scope = contracts::TxScope::new(state, stx.tx.sender(), stx.id(), &ctx);
    Ok(contracts::dispatch(&mut scope, &stx.tx.payload)?)
}
