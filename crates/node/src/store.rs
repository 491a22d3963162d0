//! Durable storage of the chain in `redb`: blocks, receipts, audit events and state.
//!
//! Every finalized block is committed in exactly one write transaction (block, receipts,
//! audit events, changed state and the new tip together), so a process killed at any moment
//! restarts with every committed block and nothing half-written. The read API's lookup
//! indexes (transactions and audit events by id, audit events by patient, last reads) are
//! derived from these and kept apart, off the block write ([`crate::index`]).

use crate::index::{ApiIndex, BlockEntries, IndexedRecord, RecordIndex};
use ehrchain_ledger::{BlockOutput, Cold, Record, State, StateKey, cold::TreeNodeKey, tree::Tree};
use ehrchain_types::{
    AccountId, AuditEvent, Block, EventId, Hash, Receipt, RecordId, decode, encode,
};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::{
    collections::BTreeSet,
    path::Path,
    sync::{Arc, Mutex},
};

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_IDS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("block_ids");
const CERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("finalizations");
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
/// State entries by their encoded [`StateKey`].
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// The state tree's nodes (borsh), by packed node key.
const TREE: TableDefinition<&[u8; 41], &[u8]> = TableDefinition::new("tree");
/// Tree nodes replaced by a block, by (height of that block, node key): deleted from [`TREE`]
/// a generation later (see [`ChainStore::prune_stale`]). Even and odd generations have a table
/// each, so that a pruned generation's log is dropped whole rather than entry by entry.
const TREE_STALE: [TableDefinition<(u64, &[u8; 41]), ()>; 2] = [
    TableDefinition::new("tree_stale_even"),
    TableDefinition::new("tree_stale_odd"),
];

/// The generation of the block at `height` (from 1), and its index in it.
fn generation_of(height: u64) -> (u64, u64) {
    (
        (height - 1) / PRUNE_GENERATION,
        (height - 1) % PRUNE_GENERATION,
    )
}

/// The stale-node log of generation `g`.
fn stale_log(g: u64) -> TableDefinition<'static, (u64, &'static [u8; 41]), ()> {
    TREE_STALE[(g % 2) as usize]
}
/// Audit events by (height, index in the block's audit tree).
const AUDIT: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("audit");
/// Tables of the lookup indexes that stores made before December 2026 kept here; they are
/// now in the index database ([`crate::index`]), and dropped from this one at open.
/// The state's record indexes too (`records_by_content`, `records_by_patient`): they are in
/// an LSM database of their own ([`RecordIndex`]), built from the stored records at the first
/// open.
const MOVED_TO_INDEX: [&str; 6] = [
    "txs",
    "audit_ids",
    "audit_by_patient",
    "last_read",
    "records_by_content",
    "records_by_patient",
];
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Meta keys.
const META_CHAIN_ID: &str = "chain_id";
const META_GENESIS: &str = "genesis_block_id";
/// The digest of the genesis file's ledger part the store was made from.
const META_GENESIS_FILE: &str = "genesis_file";
/// The layout of the stored state ([`STATE_FORMAT`]).
const META_STATE_FORMAT: &str = "state_format";
/// The state tree's newest version and root (borsh).
const META_TREE: &str = "tree";

/// Version of the stored state's layout: 2 keeps records, their indexes and the tree's nodes
/// on disk; 3 keys records in the tree by their ids' clock (`tree::key_hash`), so a store of
/// 2 holds another tree. A store of another layout is refused (start with a fresh data dir).
/// 4 kept the content index out of this database, 5 both record indexes ([`RecordIndex`]); a
/// store of 3 or 4 is upgraded at open (its record indexes built from its records), and an
/// older build then refuses it rather than find empty record indexes in it.
const STATE_FORMAT: &[u8] = b"5";

/// A storage failure. Disk full and IO errors land here and stop block execution, since a
/// node that cannot persist must not vote on further state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Db(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "data dir belongs to chain {stored:?} (genesis block {stored_genesis}), made from another genesis file or by an ehrchain version with another state format; it cannot be reused: start with a fresh data dir"
    )]
    OtherChain {
        stored: String,
        stored_genesis: String,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

fn parse_state_key(k: &[u8]) -> Result<StateKey, StoreError> {
    decode(k, 4096).map_err(|e| StoreError::Corrupt(format!("state key: {e}")))
}

/// The first byte of a record's encoded [`StateKey`] (borsh's variant index).
const RECORD_KEY_TAG: u8 = 1;

/// A read-only snapshot of the stored state (records, their indexes, the tree's nodes): what
/// a [`State`] reads through once its overlay is written ([`ehrchain_ledger::cold`]). The
/// tables hold their read transaction open, so the snapshot stays consistent however far
/// the store moves on.
struct ColdView {
    state: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// The record indexes, read as of `height`.
    records: RecordIndex,
    /// The height of the snapshot's last committed block.
    height: u64,
    tree: redb::ReadOnlyTable<&'static [u8; 41], &'static [u8]>,
}

impl std::fmt::Debug for ColdView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ColdView")
    }
}

/// A read of the stored state that fails: the node cannot go on executing blocks.
fn cold_failed(e: impl std::fmt::Display) -> ! {
    panic!("reading the stored state failed: {e}")
}

impl Cold for ColdView {
    fn record(&self, id: &RecordId) -> Option<Record> {
        let v = self
            .state
            .get(encode(&StateKey::Record(*id)).as_slice())
            .unwrap_or_else(|e| cold_failed(e))?;
        Some(decode(v.value(), ehrchain_types::MAX_BLOCK_BYTES).unwrap_or_else(|e| cold_failed(e)))
    }

    fn record_with_content(&self, content: &Hash) -> Option<RecordId> {
        self.records
            .content(&content.0, self.height)
            .unwrap_or_else(|e| cold_failed(e))
            .map(RecordId)
    }

    fn records_of(
        &self,
        patient: &AccountId,
        after: Option<RecordId>,
        limit: usize,
    ) -> Vec<RecordId> {
        self.records
            .records_of(&patient.0, after.map(|a| a.0), limit, self.height)
            .unwrap_or_else(|e| cold_failed(e))
            .into_iter()
            .map(RecordId)
            .collect()
    }

    fn tree_node(&self, key: &TreeNodeKey) -> Option<Vec<u8>> {
        let v = self.tree.get(key).unwrap_or_else(|e| cold_failed(e))?;
        Some(v.value().to_vec())
    }
}

/// Where a transaction was finalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxLocation {
    pub height: u64,
    pub index: u32,
}

/// The node's chain database.
pub struct ChainStore {
    db: Database,
    /// The read API's lookup indexes, in a database of their own beside this one.
    index: ApiIndex,
    /// The state's record indexes, in a database of their own beside this one.
    records: RecordIndex,
    /// The sorted keys of the generation whose stale tree nodes the blocks being committed
    /// delete (see [`ChainStore::prune_stale`]), read from [`TREE_STALE`] once per generation.
    pruning: Mutex<Option<(u64, Arc<[TreeNodeKey]>)>>,
}

/// Blocks per generation of stale tree nodes: the nodes blocks replace are deleted from the
/// store over the next generation's blocks, a slice per block, in key order (see
/// [`ChainStore::prune_stale`]).
const PRUNE_GENERATION: u64 = 32;

impl std::fmt::Debug for ChainStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainStore")
    }
}

/// redb's page cache by default (`[store] cache_bytes`). redb's own default (1 GiB) lets the
/// node's memory grow with the database until it reaches that; a fixed, smaller cache keeps
/// resident memory bounded.
pub const CACHE_BYTES: usize = 256 << 20;

/// What [`ChainStore::tree_stats`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Nodes in the store, live or waiting to be deleted.
    pub nodes: u64,
    /// Replaced nodes logged for deletion, and how many of them the store still holds.
    pub stale_logged: u64,
    pub stale_present: u64,
    /// The height of the oldest block whose replaced nodes are still logged.
    pub oldest_stale_height: Option<u64>,
}

/// What [`ChainStore::check_state`] compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StateCheck {
    /// State entries equal to the replay's.
    pub entries: u64,
    /// Records among them, each in both indexes.
    pub records: u64,
    /// Nodes of the stored tree reachable from its root, each hash checked.
    pub tree_nodes: u64,
    /// Replaced nodes still stored, logged for deletion a generation after their block.
    pub tree_nodes_replaced: u64,
    /// Stored nodes neither reachable nor logged: space, not state (builds before December
    /// 2026 left one per block whose deletions changed nothing).
    pub tree_nodes_orphaned: u64,
}

/// A finalized block with what committing it writes.
pub struct Finalized<'a> {
    pub block: &'a Block,
    pub output: &'a BlockOutput,
    pub finalization: Option<&'a [u8]>,
    /// The state after the block (its changes at the block's height are written).
    pub state: &'a State,
}

impl ChainStore {
    /// Opens (or creates) the database at `path` with the default cache.
    pub fn open(path: &Path) -> Result<ChainStore, StoreError> {
        Self::open_with_cache(path, CACHE_BYTES)
    }

    /// Opens (or creates) the database at `path` with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<ChainStore, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| open_failed(path, e, |other| StoreError::Db(other.to_string())))?;
        let w = db.begin_write()?;
        for t in [BLOCKS, CERTS, RECEIPTS] {
            w.open_table(t)?;
        }
        w.open_table(BLOCK_IDS)?;
        w.open_table(STATE)?;
        w.open_table(TREE)?;
        w.open_table(AUDIT)?;
        w.open_table(META)?;
        for name in MOVED_TO_INDEX {
            w.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new(name))?;
        }
        {
            let mut meta = w.open_table(META)?;
            let format = meta.get(META_STATE_FORMAT)?.map(|v| v.value().to_vec());
            if matches!(format.as_deref(), Some(b"3" | b"4")) {
                meta.insert(META_STATE_FORMAT, STATE_FORMAT)?;
            }
        }
        w.commit()?;
        // Format 4 kept the content index alone in `*.contents`; the new one is built.
        let old = path.with_extension("contents");
        if old.is_dir() {
            std::fs::remove_dir_all(&old)
                .map_err(|e| StoreError::Db(format!("removing {}: {e}", old.display())))?;
        }
        let records_path = path.with_extension("records");
        let records = Self::checked_records(&db, RecordIndex::open(&records_path)?, &records_path)?;
        let index = ApiIndex::open(&index_path(path), |height, id| {
            let stored = || -> Result<Option<u64>, StoreError> {
                let r = db.begin_read()?;
                Ok(r.open_table(BLOCK_IDS)?.get(id)?.map(|v| v.value()))
            };
            stored().ok().flatten() == Some(height)
        })?;
        let store = ChainStore {
            db,
            records,
            index,
            pruning: Mutex::new(None),
        };
        store.catch_up_index()?;
        Ok(store)
    }

    /// Makes sure the record indexes hold every committed record: they are written before
    /// each commit, so they can lack records only if their database was lost or replaced
    /// (deleted by hand, another chain's, a store of a layout that kept them elsewhere). Then
    /// they are built again from the stored records. The indexes of a store without a genesis
    /// block (a first start that stopped midway) are emptied.
    fn checked_records(
        db: &Database,
        records: RecordIndex,
        path: &Path,
    ) -> Result<RecordIndex, StoreError> {
        let r = db.begin_read()?;
        let Some(tip) = last_block(&r)? else {
            return records.emptied(path);
        };
        let genesis = r
            .open_table(META)?
            .get(META_GENESIS)?
            .map(|v| v.value().to_vec());
        // The tip must be the indexes' last block, or, if a later commit failed or was cut
        // short after they were written (its records are seen by no snapshot), one of their
        // recent blocks.
        let sound = match records.through()? {
            Some((marks, g)) => {
                Some(g.as_slice()) == genesis.as_deref()
                    && marks.contains(&(tip.header.height, tip.id().0))
            }
            None => false,
        };
        if sound {
            return Ok(records);
        }
        drop(r);
        tracing::info!("building the record indexes again from the stored records");
        let records = records.emptied(path)?;
        build_records(db, &records)?;
        Ok(records)
    }

    /// Indexes the committed blocks the index database does not hold yet (those its merge had
    /// not written when the node stopped, or every block of a store made before it existed),
    /// from the stored receipts and audit events.
    fn catch_up_index(&self) -> Result<(), StoreError> {
        let Some(tip) = self.tip()?.map(|b| b.header.height) else {
            return Ok(());
        };
        let from = self.index.indexed()? + 1;
        if tip >= from + 1_000 {
            tracing::info!(from, tip, "indexing committed blocks for the read API");
        }
        let mut batch = Vec::new();
        let mut entries = 0;
        for h in from..=tip {
            let id = self
                .block(h)?
                .ok_or_else(|| StoreError::Corrupt(format!("block {h} is missing")))?
                .id();
            let b = BlockEntries::of(h, id.0, &self.receipts(h)?, &self.audit_events(h)?);
            entries += b.txs.len() + b.events.len() + 1;
            batch.push(Arc::new(b));
            if entries >= crate::index::FLUSH_ENTRIES || h == tip {
                self.index.merge(&batch)?;
                batch.clear();
                entries = 0;
            }
        }
        Ok(())
    }

    /// The genesis block of a store made from the genesis whose digest is `genesis_digest`,
    /// `None` for an empty store; a store of another chain or state layout is refused. A
    /// genesis file with another digest (re-encoded by a newer version, say) is accepted if
    /// `rebuild` (which computes its genesis block) gives the stored block, and its digest
    /// is recorded.
    pub fn stored_genesis(
        &self,
        genesis_digest: &Hash,
        rebuild: impl FnOnce() -> Block,
    ) -> Result<Option<Block>, StoreError> {
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        let Some(stored) = meta.get(META_GENESIS)? else {
            // No genesis block yet: the state tables must be empty too (a prefill is stored
            // in parts before the genesis block; parts left by a node stopped while building
            // one, possibly from another genesis file, must not mix with a new one).
            if !r.open_table(STATE)?.is_empty()? || !r.open_table(TREE)?.is_empty()? {
                return Err(StoreError::Corrupt(
                    "the data dir holds part of a genesis state whose building was interrupted; start with a fresh data dir".into(),
                ));
            }
            return Ok(None);
        };
        let stored_genesis = hex::encode(stored.value());
        let text = |k: &str| -> Result<String, StoreError> {
            Ok(meta
                .get(k)?
                .map(|v| String::from_utf8_lossy(v.value()).to_string())
                .unwrap_or_default())
        };
        let same_genesis = meta
            .get(META_GENESIS_FILE)?
            .is_some_and(|v| v.value() == genesis_digest.0.as_slice());
        let same_format = text(META_STATE_FORMAT)?.as_bytes() == STATE_FORMAT;
        let other = StoreError::OtherChain {
            stored: text(META_CHAIN_ID)?,
            stored_genesis,
        };
        if !same_format {
            return Err(other);
        }
        drop(meta);
        drop(r);
        let block = self
            .block(0)?
            .ok_or_else(|| StoreError::Corrupt("the genesis block is missing".into()))?;
        if !same_genesis {
            if rebuild().id() != block.id() {
                return Err(other);
            }
            let w = self.db.begin_write()?;
            w.open_table(META)?
                .insert(META_GENESIS_FILE, genesis_digest.0.as_slice())?;
            w.commit()?;
        }
        Ok(Some(block))
    }

    /// Stores part of a genesis state being built (a chunk of a large prefill) before the
    /// genesis block exists; the caller then drops it from memory ([`State::rebase`]). Its
    /// records are indexed with the genesis block ([`Self::init_genesis`]).
    pub fn store_genesis_part(
        &self,
        state: &State,
        touched: &BTreeSet<StateKey>,
    ) -> Result<(), StoreError> {
        let w = self.db.begin_write()?;
        Self::write_state(&w, state, touched, 0, &mut Vec::new())?;
        w.commit()?;
        Ok(())
    }

    /// Writes the genesis block and the rest of its state into an empty store, then builds
    /// the record indexes from every stored record (a large genesis state is loaded as
    /// sorted tables; a crash before they are built has them built at the next open).
    pub fn init_genesis(
        &self,
        block: &Block,
        state: &State,
        genesis_digest: &Hash,
    ) -> Result<(), StoreError> {
        let output = BlockOutput {
            touched: state.all_keys(),
            ..BlockOutput::default()
        };
        let w = self.db.begin_write()?;
        {
            let mut meta = w.open_table(META)?;
            meta.insert(META_CHAIN_ID, state.chain_id.as_bytes())?;
            meta.insert(META_GENESIS, block.id().0.as_slice())?;
            meta.insert(META_GENESIS_FILE, genesis_digest.0.as_slice())?;
            meta.insert(META_STATE_FORMAT, STATE_FORMAT)?;
        }
        Self::write_block(&w, block, &output, None, state, &mut Vec::new())?;
        w.commit()?;
        build_records(&self.db, &self.records)
    }

    /// A snapshot of the stored state as it is now, for a [`State`] to read through.
    pub fn cold_view(&self) -> Result<Arc<dyn Cold>, StoreError> {
        cold_view_of(&self.db.begin_read()?, &self.records)
    }

    /// Writes what the block at `height` changed (the entries under `touched`, read from its
    /// post-state `state`): entries, the tree's new nodes (deleting those replaced) and its
    /// root; the records it anchored go to `new_records`, for the record indexes. Keys go in
    /// sorted order, so neighbours share B-tree pages.
    fn write_state(
        w: &redb::WriteTransaction,
        state: &State,
        touched: &BTreeSet<StateKey>,
        height: u64,
        new_records: &mut Vec<IndexedRecord>,
    ) -> Result<(), StoreError> {
        let mut entries = w.open_table(STATE)?;
        let mut keys: Vec<(Vec<u8>, &StateKey)> = touched.iter().map(|k| (encode(k), k)).collect();
        keys.sort_unstable();
        for (k, key) in &keys {
            match state.entry(key) {
                Some(v) => {
                    if let StateKey::Record(id) = key {
                        let r = state.record(id).expect("the entry exists");
                        // Anchored by this block (not a later change of its status).
                        if r.height == height {
                            new_records.push(indexed(&r));
                        }
                    }
                    entries.insert(k.as_slice(), v.as_slice())?
                }
                None => entries.remove(k.as_slice())?,
            };
        }
        let (nodes, stale) = state.tree.changes(height);
        let mut tree = w.open_table(TREE)?;
        for (k, n) in &nodes {
            tree.insert(k, n.as_slice())?;
        }
        if height == 0 {
            // The parts of a genesis prefill replace one another's nodes at version 0.
            for k in &stale {
                tree.remove(k)?;
            }
        } else {
            let mut log = w.open_table(stale_log(generation_of(height).0))?;
            for k in &stale {
                log.insert((height, k), ())?;
            }
        }
        w.open_table(META)?
            .insert(META_TREE, encode(&state.tree.version_and_root()).as_slice())?;
        Ok(())
    }

    fn write_block(
        w: &redb::WriteTransaction,
        block: &Block,
        output: &BlockOutput,
        finalization: Option<&[u8]>,
        state: &State,
        new_records: &mut Vec<IndexedRecord>,
    ) -> Result<(), StoreError> {
        let h = block.header.height;
        w.open_table(BLOCKS)?.insert(h, encode(block).as_slice())?;
        w.open_table(BLOCK_IDS)?.insert(&block.id().0, h)?;
        w.open_table(RECEIPTS)?
            .insert(h, encode(&output.receipts).as_slice())?;
        {
            let mut audit = w.open_table(AUDIT)?;
            for (i, ev) in output.events.iter().enumerate() {
                audit.insert((h, i as u32), ev.leaf().as_slice())?;
            }
        }
        if let Some(f) = finalization {
            w.open_table(CERTS)?.insert(h, f)?;
        }
        Self::write_state(w, state, &output.touched, h, new_records)
    }

    /// Commits consecutive finalized blocks, each with its receipts, audit events, finality
    /// certificate and post-state (whose changes of that block are written), atomically: one
    /// durable write for all of them.
    pub fn commit_blocks(&self, blocks: &[Finalized<'_>]) -> Result<(), StoreError> {
        let w = self.db.begin_write()?;
        let mut records = Vec::new();
        let written = blocks.iter().try_for_each(|b| {
            Self::write_block(&w, b.block, b.output, b.finalization, b.state, &mut records)?;
            self.prune_stale(&w, b.block.header.height)
        });
        // The record indexes first, durably: they then hold every record the chain store holds
        // (and, if this commit fails, records of blocks it lacks, which no snapshot sees).
        let through = blocks
            .last()
            .map(|b| (b.block.header.height, b.block.id().0));
        let committed = written
            .and_then(|()| self.records.write(&records, through, None))
            .and_then(|()| Ok(w.commit()?));
        if committed.is_err() {
            // Nothing of the transaction stays: forget the generation it may have read, so
            // that nothing derived from it is reused.
            *self.pruning.lock().expect("pruning lock") = None;
            return committed;
        }
        self.index.push(
            blocks
                .iter()
                .map(|b| {
                    let (block, out) = (b.block, b.output);
                    BlockEntries::of(
                        block.header.height,
                        block.id().0,
                        &out.receipts,
                        &out.events,
                    )
                })
                .collect(),
        );
        Ok(())
    }

    /// Fills the empty lookup indexes with synthetic entries for `records` records (the
    /// benchmarks' prefill: [`ApiIndex::prefill_synthetic`]).
    pub fn prefill_index(&self, records: u64) -> Result<(), StoreError> {
        self.index.prefill_synthetic(records)
    }

    /// The state's record indexes.
    pub fn records(&self) -> &RecordIndex {
        &self.records
    }

    /// Lookup-index entries held in memory, not yet merged into the index database.
    pub fn index_pending(&self) -> usize {
        self.index.pending()
    }

    /// Deletes the share of block `height` of the tree nodes that the previous generation's
    /// blocks replaced. A block replaces a few nodes at random places in the tree; deleting
    /// each right away would rewrite a store page per node. Instead they are logged
    /// ([`TREE_STALE`]) and, a generation later, deleted in key order, a contiguous slice of
    /// them per block, so that one page holds many of them. Which slice a block deletes
    /// follows from its height and the log alone, so a node that restarts, or a transaction
    /// that is retried, deletes exactly the same nodes (deleting one twice is a no-op). No
    /// reader needs a stale node: the committed tree and every state built on it point to
    /// their replacements, and older snapshots keep their own copy of the store.
    fn prune_stale(&self, w: &redb::WriteTransaction, height: u64) -> Result<(), StoreError> {
        let (generation, slice) = generation_of(height);
        let Some(previous) = generation.checked_sub(1) else {
            return Ok(());
        };
        let heights = previous * PRUNE_GENERATION + 1..=generation * PRUNE_GENERATION;
        let range = (*heights.start(), &[0u8; 41])..=(*heights.end(), &[0xffu8; 41]);
        let keys = {
            let mut cached = self.pruning.lock().expect("pruning lock");
            match &*cached {
                Some((g, keys)) if *g == previous => keys.clone(),
                _ => {
                    let log = w.open_table(stale_log(previous))?;
                    let mut keys = Vec::new();
                    for entry in log.range(range.clone())? {
                        keys.push(*entry?.0.value().1);
                    }
                    keys.sort_unstable();
                    let keys: Arc<[TreeNodeKey]> = keys.into();
                    *cached = Some((previous, keys.clone()));
                    keys
                }
            }
        };
        let n = keys.len() as u64;
        let (from, to) = (
            n * slice / PRUNE_GENERATION,
            n * (slice + 1) / PRUNE_GENERATION,
        );
        let mut tree = w.open_table(TREE)?;
        for k in &keys[from as usize..to as usize] {
            tree.remove(k)?;
        }
        if slice == PRUNE_GENERATION - 1 {
            // The log holds nothing but this generation: the next one writes the other table.
            w.delete_table(stale_log(previous))?;
            *self.pruning.lock().expect("pruning lock") = None;
        }
        Ok(())
    }

    /// The state tree's nodes in the store, and the replaced ones logged for deletion.
    pub fn tree_stats(&self) -> Result<TreeStats, StoreError> {
        let r = self.db.begin_read()?;
        let tree = r.open_table(TREE)?;
        let mut stats = TreeStats {
            nodes: tree.len()?,
            ..TreeStats::default()
        };
        for def in TREE_STALE {
            let log = match r.open_table(def) {
                Ok(log) => log,
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            stats.stale_logged += log.len()?;
            for entry in log.iter()? {
                let (stored, _) = entry?;
                let (height, key) = stored.value();
                let oldest = stats.oldest_stale_height.get_or_insert(height);
                *oldest = (*oldest).min(height);
                stats.stale_present += u64::from(tree.get(key)?.is_some());
            }
        }
        Ok(stats)
    }

    /// Compares the stored state with `replay`, the state a replay of every stored block from
    /// genesis reached (held in memory whole): every entry and both record indexes must be
    /// exactly the replay's, and the stored tree must have the replay's root, with every node
    /// present and hashing to what its parent records. Tree nodes that are neither reachable
    /// nor logged for deletion are counted as orphaned (space, not a wrong state).
    pub fn check_state(&self, replay: &State) -> Result<StateCheck, StoreError> {
        let corrupt = |what: String| Err(StoreError::Corrupt(what));
        let r = self.db.begin_read()?;
        let entries = r.open_table(STATE)?;
        let tip = committed_height(&r)?;
        let keys = replay.all_keys();
        let mut records = 0u64;
        for key in &keys {
            let want = replay.entry(key);
            let got = entries.get(encode(key).as_slice())?;
            if got.as_ref().map(|v| v.value()) != want.as_deref() {
                return corrupt(format!("state entry {key:?} differs from the replay"));
            }
            if let StateKey::Record(id) = key {
                let rec = replay.record(id).expect("the entry exists");
                records += 1;
                if !self.records.is_patients(&rec.patient.0, &id.0, tip)? {
                    return corrupt(format!("record {id} is missing from an index (patient)"));
                }
                if self.records.content(&rec.content.0, tip)? != Some(id.0) {
                    return corrupt(format!("record {id} is missing from an index (content)"));
                }
            }
        }
        let stored = entries.len()?;
        if stored != keys.len() as u64 {
            return corrupt(format!(
                "the store holds {stored} state entries, the replay {}",
                keys.len()
            ));
        }
        let mut contents = 0u64;
        for bucket in 0..=u8::MAX {
            for entry in self.records.bucket(bucket) {
                contents += u64::from(entry?.2 <= tip);
            }
        }
        let patients = self.records.patient_entries(tip)?;
        for (name, len) in [("patient", patients), ("content", contents)] {
            if len != records {
                return corrupt(format!(
                    "the {name} index holds {len} entries for {records} records"
                ));
            }
        }
        drop(entries);
        let tree = stored_tree(&r, &self.records)?.0;
        if tree.root() != replay.tree.root() {
            return corrupt(format!(
                "stored state tree root {} differs from the replay's {}",
                hex::encode(tree.root()),
                hex::encode(replay.tree.root())
            ));
        }
        let walk = tree.check();
        if walk.missing > 0 || walk.bad_hashes > 0 {
            return corrupt(format!(
                "the stored state tree lacks {} node(s) and has {} node(s) whose hash is wrong",
                walk.missing, walk.bad_hashes
            ));
        }
        let stats = self.tree_stats()?;
        Ok(StateCheck {
            entries: keys.len() as u64,
            records,
            tree_nodes: walk.nodes,
            tree_nodes_replaced: stats.stale_present,
            tree_nodes_orphaned: stats.nodes.saturating_sub(walk.nodes + stats.stale_present),
        })
    }

    /// The highest committed block, if any.
    pub fn tip(&self) -> Result<Option<Block>, StoreError> {
        last_block(&self.db.begin_read()?)
    }

    /// The bytes stored under `height` in one of the per-height tables.
    fn at_height(
        &self,
        table: TableDefinition<u64, &[u8]>,
        height: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(table)?;
        Ok(t.get(height)?.map(|v| v.value().to_vec()))
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        self.at_height(BLOCKS, height)?
            .map(|b| decode_block(&b))
            .transpose()
    }

    /// The raw stored bytes of a block (for offline verification and proofs).
    pub fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.at_height(BLOCKS, height)
    }

    /// The stored id of the block at `height`, from the id index.
    pub fn indexed_ids(&self) -> Result<Vec<(u64, Hash)>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BLOCK_IDS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((v.value(), Hash(*k.value())));
        }
        out.sort();
        Ok(out)
    }

    pub fn receipts(&self, height: u64) -> Result<Vec<Receipt>, StoreError> {
        match self.at_height(RECEIPTS, height)? {
            None => Ok(Vec::new()),
            Some(v) => decode(&v, ehrchain_types::MAX_BLOCK_BYTES)
                .map_err(|e| StoreError::Corrupt(format!("receipts at {height}: {e}"))),
        }
    }

    pub fn finalization(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.at_height(CERTS, height)
    }

    pub fn tx_location(&self, id: &Hash) -> Result<Option<TxLocation>, StoreError> {
        Ok(self
            .index
            .tx(&id.0)?
            .map(|(height, index)| TxLocation { height, index }))
    }

    /// Loads the stored state (at node start): the entries kept in memory are read, the rest
    /// is read through a snapshot as needed.
    pub fn load_state(&self) -> Result<State, StoreError> {
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        let chain_id = meta
            .get(META_CHAIN_ID)?
            .map(|v| String::from_utf8_lossy(v.value()).to_string())
            .ok_or_else(|| StoreError::Corrupt("no chain id".into()))?;
        let (tree, cold) = stored_tree(&r, &self.records)?;
        let mut state = State::stored(&chain_id, tree, cold.clone());
        let t = r.open_table(STATE)?;
        // Every entry but the records, which stay on disk.
        let before: &[u8] = &[RECORD_KEY_TAG];
        let after: &[u8] = &[RECORD_KEY_TAG + 1];
        for item in t.range(..before)?.chain(t.range(after..)?) {
            let (k, v) = item?;
            let key = parse_state_key(k.value())?;
            state
                .load_entry(key, v.value())
                .map_err(|e| StoreError::Corrupt(format!("state entry: {e}")))?;
        }
        // Everything up to the tip is in the store: a block built on a state derived from this
        // one drops only what later blocks write.
        let tip = committed_height(&r)?;
        state.rebase(cold, tip);
        // The caller checks the stored tree's root against the tip's.
        Ok(state)
    }

    /// The ciphertext hashes whose first byte is `bucket` that committed records anchor and
    /// `held` (sorted) lacks, in hash order: one bucket of the content index, so the caller
    /// holds a 256th of the contents at a time.
    pub fn contents_missing_from(
        &self,
        bucket: u8,
        held: &[Hash],
    ) -> Result<Vec<Hash>, StoreError> {
        let tip = committed_height(&self.db.begin_read()?)?;
        let mut out = Vec::new();
        for entry in self.records.bucket(bucket) {
            let (content, _, height) = entry?;
            let c = Hash(content);
            if height <= tip && held.binary_search(&c).is_err() {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The audit events of the block at `height`, in tree order.
    pub fn audit_events(&self, height: u64) -> Result<Vec<AuditEvent>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(AUDIT)?;
        let mut out = Vec::new();
        for item in t.range((height, 0)..=(height, u32::MAX))? {
            let (_, v) = item?;
            out.push(decode_event(v.value())?);
        }
        Ok(out)
    }

    /// Block time of `reader`'s last allowed, audited read of `record`.
    pub fn last_allowed_read(
        &self,
        reader: &AccountId,
        record: &RecordId,
    ) -> Result<Option<u64>, StoreError> {
        self.index.last_read(&reader.0, &record.0)
    }

    /// Where an audit event is: (height, index).
    pub fn audit_location(&self, id: &EventId) -> Result<Option<(u64, u32)>, StoreError> {
        self.index.event(&id.0)
    }

    /// A patient's audit events, newest first, at most `limit`.
    pub fn audit_of(
        &self,
        patient: &AccountId,
        before: Option<(u64, u32)>,
        limit: usize,
    ) -> Result<Vec<(u64, u32, AuditEvent)>, StoreError> {
        let found = self.index.events_of(&patient.0, before, limit)?;
        let r = self.db.begin_read()?;
        let t = r.open_table(AUDIT)?;
        let mut out = Vec::new();
        for (h, i) in found {
            let corrupt = || StoreError::Corrupt(format!("audit index points at {h}/{i}"));
            let ev = decode_event(t.get((h, i))?.ok_or_else(corrupt)?.value())?;
            if ev.patient != *patient {
                return Err(corrupt());
            }
            out.push((h, i, ev));
        }
        Ok(out)
    }

    /// All stored blocks in height order as raw bytes, read one at a time from one snapshot:
    /// a chain's blocks need not fit in memory.
    pub fn raw_blocks(
        &self,
    ) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + use<>, StoreError> {
        let r = self.db.begin_read()?;
        let blocks = r.open_table(BLOCKS)?.range::<u64>(..)?;
        Ok(blocks.map(|item| {
            let (k, v) = item?;
            Ok((k.value(), v.value().to_vec()))
        }))
    }
}

/// The error of opening the database at `path`: one held by another process says so, any other
/// failure is `otherwise`'s.
pub(crate) fn open_failed(
    path: &Path,
    e: redb::DatabaseError,
    otherwise: impl FnOnce(redb::DatabaseError) -> StoreError,
) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Db(format!(
            "{} is in use by another process (stop the node first)",
            path.display()
        )),
        other => otherwise(other),
    }
}

/// The index database (a directory) beside the chain database at `path`: `chain.redb` →
/// `chain.index`.
fn index_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("index")
}

/// The stored state tree (its version and root in `meta`) over a snapshot of `r`, and the
/// snapshot.
fn stored_tree(
    r: &redb::ReadTransaction,
    records: &RecordIndex,
) -> Result<(Tree, Arc<dyn Cold>), StoreError> {
    let (version, root): (Option<u64>, [u8; 32]) = r
        .open_table(META)?
        .get(META_TREE)?
        .map(|v| decode(v.value(), 64))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("tree: {e}")))?
        .ok_or_else(|| StoreError::Corrupt("no state tree".into()))?;
    let cold = cold_view_of(r, records)?;
    Ok((Tree::stored(version, root, cold.clone()), cold))
}

/// The last block `r` sees committed, if any.
fn last_block(r: &redb::ReadTransaction) -> Result<Option<Block>, StoreError> {
    let t = r.open_table(BLOCKS)?;
    let last = t.last()?;
    last.map(|(_, v)| decode_block(v.value())).transpose()
}

/// The height of the last block `r` sees committed (0 before the genesis block).
fn committed_height(r: &redb::ReadTransaction) -> Result<u64, StoreError> {
    Ok(r.open_table(BLOCKS)?.last()?.map_or(0, |(k, _)| k.value()))
}

/// The stored state as `r` sees it.
fn cold_view_of(
    r: &redb::ReadTransaction,
    records: &RecordIndex,
) -> Result<Arc<dyn Cold>, StoreError> {
    Ok(Arc::new(ColdView {
        state: r.open_table(STATE)?,
        records: records.clone(),
        height: committed_height(r)?,
        tree: r.open_table(TREE)?,
    }))
}

/// Builds the (empty) record indexes from the records in the store `db`, as of its tip.
fn build_records(db: &Database, records: &RecordIndex) -> Result<(), StoreError> {
    let r = db.begin_read()?;
    let tip = last_block(&r)?.ok_or_else(|| StoreError::Corrupt("no genesis block".into()))?;
    let genesis: [u8; 32] = (r.open_table(META)?.get(META_GENESIS)?)
        .and_then(|g| g.value().try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("no genesis block id".into()))?;
    let started = std::time::Instant::now();
    let entries = r.open_table(STATE)?;
    let scan = |f: &mut dyn FnMut(&IndexedRecord)| -> Result<(), StoreError> {
        let before: &[u8] = &[RECORD_KEY_TAG];
        let after: &[u8] = &[RECORD_KEY_TAG + 1];
        for item in entries.range(before..after)? {
            let (_, v) = item?;
            let rec: Record = decode(v.value(), ehrchain_types::MAX_BLOCK_BYTES)
                .map_err(|e| StoreError::Corrupt(format!("record: {e}")))?;
            f(&indexed(&rec));
        }
        Ok(())
    };
    let through = (tip.header.height, tip.id().0);
    let records = records.load(scan, through, &genesis)?;
    let secs = started.elapsed().as_secs();
    if secs > 0 {
        tracing::info!(records, secs, "record indexes built");
    }
    Ok(())
}

/// A record's entry in the record indexes.
fn indexed(r: &Record) -> IndexedRecord {
    IndexedRecord {
        id: r.id.0,
        content: r.content.0,
        patient: r.patient.0,
        height: r.height,
    }
}

fn decode_event(bytes: &[u8]) -> Result<AuditEvent, StoreError> {
    decode(bytes, 64 * 1024).map_err(|e| StoreError::Corrupt(format!("audit event: {e}")))
}

fn decode_block(bytes: &[u8]) -> Result<Block, StoreError> {
    decode(bytes, ehrchain_types::MAX_BLOCK_BYTES)
        .map_err(|e| StoreError::Corrupt(format!("block: {e}")))
}
