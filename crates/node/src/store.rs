//! Durable storage of the chain in `redb`: blocks, receipts, transaction index and state.
//!
//! Every finalized block is committed in exactly one write transaction (block, receipts,
//! index entries, changed accounts and the new tip together), so a process killed at any
//! moment restarts with every committed block and nothing half-written.

use ehrchain_ledger::{BlockOutput, State, StateKey};
use ehrchain_types::{
    AccountId, AuditAction, AuditEvent, Block, Decision, EventId, Hash, Receipt, RecordId, decode,
    encode,
};
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_IDS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("block_ids");
const CERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("finalizations");
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
const TXS: TableDefinition<&[u8; 32], (u64, u32)> = TableDefinition::new("txs");
/// State entries by their encoded [`StateKey`].
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// Audit events by (height, index in the block's audit tree).
const AUDIT: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("audit");
const AUDIT_IDS: TableDefinition<&[u8; 32], (u64, u32)> = TableDefinition::new("audit_ids");
/// (reader, record) → block time of the reader's last allowed read of the record.
const LAST_READ: TableDefinition<(&[u8; 20], &[u8; 16]), u64> = TableDefinition::new("last_read");
/// (patient, height, index) of every event about a patient.
const AUDIT_BY_PATIENT: TableDefinition<(&[u8; 20], u64, u32), ()> =
    TableDefinition::new("audit_by_patient");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Meta keys.
const META_CHAIN_ID: &str = "chain_id";
const META_GENESIS: &str = "genesis_block_id";

/// A storage failure. Disk full and IO errors land here and stop block execution, since a
/// node that cannot persist must not vote on further state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Db(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "data dir belongs to chain {stored:?} (genesis {stored_genesis}), not {expected:?} (genesis {expected_genesis}); a data dir made by another chain or by an ehrchain version with another state format cannot be reused: start with a fresh data dir"
    )]
    OtherChain {
        stored: String,
        stored_genesis: String,
        expected: String,
        expected_genesis: String,
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

/// First byte of a record's key in the `state` table (borsh's variant bytes of `StateKey` are
/// small, so it never starts another key).
const RECORD_BY_HEIGHT: u8 = 0x80;

/// An entry's key in the `state` table. A record is keyed by the height that anchored it,
/// then its id: record ids are random, and keyed by id every new record of a block would
/// rewrite a different leaf page of the table (at a million records that was ~59 KB written
/// per transaction). A record's height never changes. Anything else: its encoded `StateKey`.
fn storage_key(key: &StateKey, state: &State) -> Vec<u8> {
    if let StateKey::Record(id) = key
        && let Some(r) = state.records.get(id)
    {
        let mut k = Vec::with_capacity(25);
        k.push(RECORD_BY_HEIGHT);
        k.extend_from_slice(&r.height.to_be_bytes());
        k.extend_from_slice(&id.0);
        return k;
    }
    encode(key)
}

/// The `StateKey` of a key of the `state` table ([`storage_key`]).
fn parse_storage_key(k: &[u8]) -> Result<StateKey, StoreError> {
    match k {
        [RECORD_BY_HEIGHT, rest @ ..] if rest.len() == 24 => Ok(StateKey::Record(RecordId(
            rest[8..].try_into().expect("16 bytes"),
        ))),
        _ => decode(k, 4096).map_err(|e| StoreError::Corrupt(format!("state key: {e}"))),
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
}

impl std::fmt::Debug for ChainStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainStore")
    }
}

/// redb's page cache. Its default (1 GiB) lets the node's memory grow with the database
/// until it reaches that; a fixed, smaller cache keeps resident memory bounded (the recent
/// blocks and indexes that reads touch fit easily).
pub const CACHE_BYTES: usize = 128 << 20;

impl ChainStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<ChainStore, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Db(format!(
                    "{} is in use by another process (stop the node first)",
                    path.display()
                )),
                other => StoreError::Db(other.to_string()),
            })?;
        let w = db.begin_write()?;
        for t in [BLOCKS, CERTS, RECEIPTS] {
            w.open_table(t)?;
        }
        w.open_table(BLOCK_IDS)?;
        w.open_table(TXS)?;
        w.open_table(STATE)?;
        w.open_table(AUDIT)?;
        w.open_table(AUDIT_IDS)?;
        w.open_table(AUDIT_BY_PATIENT)?;
        w.open_table(LAST_READ)?;
        w.open_table(META)?;
        w.commit()?;
        Ok(ChainStore { db })
    }

    /// Writes the genesis block and state into an empty store (returns `true`), or checks that
    /// a non-empty store holds the same chain (`false`).
    pub fn init_genesis(&self, block: &Block, state: &State) -> Result<bool, StoreError> {
        let gid = block.id();
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        if let Some(stored) = meta.get(META_GENESIS)? {
            let stored_id = hex::encode(stored.value());
            let chain = meta
                .get(META_CHAIN_ID)?
                .map(|v| String::from_utf8_lossy(v.value()).to_string())
                .unwrap_or_default();
            if stored.value() != gid.0.as_slice() {
                return Err(StoreError::OtherChain {
                    stored: chain,
                    stored_genesis: stored_id,
                    expected: state.chain_id.clone(),
                    expected_genesis: gid.to_string(),
                });
            }
            return Ok(false);
        }
        drop(meta);
        drop(r);
        let output = BlockOutput {
            touched: state.all_keys(),
            ..BlockOutput::default()
        };
        let w = self.db.begin_write()?;
        {
            let mut meta = w.open_table(META)?;
            meta.insert(META_CHAIN_ID, state.chain_id.as_bytes())?;
            meta.insert(META_GENESIS, gid.0.as_slice())?;
        }
        Self::write_block(&w, block, &output, None, state)?;
        w.commit()?;
        Ok(true)
    }

    fn write_block(
        w: &redb::WriteTransaction,
        block: &Block,
        output: &BlockOutput,
        finalization: Option<&[u8]>,
        state: &State,
    ) -> Result<(), StoreError> {
        let h = block.header.height;
        w.open_table(BLOCKS)?.insert(h, encode(block).as_slice())?;
        w.open_table(BLOCK_IDS)?.insert(&block.id().0, h)?;
        w.open_table(RECEIPTS)?
            .insert(h, encode(&output.receipts).as_slice())?;
        // The hash-keyed indexes are written in key order: neighbouring inserts then land in
        // the same B-tree pages (about a third less work for redb than random order).
        let mut event_ids = Vec::with_capacity(output.events.len());
        let mut patients = Vec::with_capacity(output.events.len());
        {
            let mut audit = w.open_table(AUDIT)?;
            let mut reads = w.open_table(LAST_READ)?;
            for (i, ev) in output.events.iter().enumerate() {
                let i = i as u32;
                audit.insert((h, i), ev.leaf().as_slice())?;
                event_ids.push((ev.id().0, i));
                patients.push((ev.patient.0, i));
                if let (AuditAction::Read, Decision::Allowed, Some(r)) =
                    (ev.action, ev.decision, ev.record)
                {
                    reads.insert((&ev.actor.0, &r.0), ev.time_ms)?;
                }
            }
        }
        event_ids.sort_unstable();
        let mut ids = w.open_table(AUDIT_IDS)?;
        for (id, i) in &event_ids {
            ids.insert(id, (h, *i))?;
        }
        patients.sort_unstable();
        let mut by_patient = w.open_table(AUDIT_BY_PATIENT)?;
        for (patient, i) in &patients {
            by_patient.insert((patient, h, *i), ())?;
        }
        if let Some(f) = finalization {
            w.open_table(CERTS)?.insert(h, f)?;
        }
        // The receipts carry each transaction's id, in block order.
        let mut tx_ids: Vec<([u8; 32], u32)> = (output.receipts.iter().enumerate())
            .map(|(i, r)| (r.tx_id.0, i as u32))
            .collect();
        tx_ids.sort_unstable();
        let mut txs = w.open_table(TXS)?;
        for (id, i) in &tx_ids {
            txs.insert(id, (h, *i))?;
        }
        let mut entries = w.open_table(STATE)?;
        let mut keys: Vec<(Vec<u8>, &StateKey)> = output
            .touched
            .iter()
            .map(|k| (storage_key(k, state), k))
            .collect();
        keys.sort_unstable();
        for (k, key) in &keys {
            match state.entry(key) {
                Some(v) => entries.insert(k.as_slice(), v.as_slice())?,
                None => entries.remove(k.as_slice())?,
            };
        }
        Ok(())
    }

    /// Commits one finalized block with its receipts, audit events and the state entries it
    /// changed, atomically.
    pub fn commit_block(
        &self,
        block: &Block,
        output: &BlockOutput,
        finalization: Option<&[u8]>,
        state: &State,
    ) -> Result<(), StoreError> {
        let w = self.db.begin_write()?;
        Self::write_block(&w, block, output, finalization, state)?;
        w.commit()?;
        Ok(())
    }

    /// The highest committed block, if any.
    pub fn tip(&self) -> Result<Option<Block>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BLOCKS)?;
        let last = t.last()?;
        last.map(|(_, v)| decode_block(v.value())).transpose()
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
        let r = self.db.begin_read()?;
        let t = r.open_table(TXS)?;
        Ok(t.get(&id.0)?.map(|v| {
            let (height, index) = v.value();
            TxLocation { height, index }
        }))
    }

    /// Loads the whole state (at node start).
    pub fn load_state(&self) -> Result<State, StoreError> {
        let r = self.db.begin_read()?;
        let meta = r.open_table(META)?;
        let chain_id = meta
            .get(META_CHAIN_ID)?
            .map(|v| String::from_utf8_lossy(v.value()).to_string())
            .ok_or_else(|| StoreError::Corrupt("no chain id".into()))?;
        let t = r.open_table(STATE)?;
        let mut state = State::empty(&chain_id);
        for item in t.iter()? {
            let (k, v) = item?;
            let key = parse_storage_key(k.value())?;
            state
                .load_entry(key, v.value())
                .map_err(|e| StoreError::Corrupt(format!("state entry: {e}")))?;
        }
        // The tree is derived: rebuilt here, and checked against the tip's root by the caller.
        state.rebuild_tree();
        Ok(state)
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
        let r = self.db.begin_read()?;
        let t = r.open_table(LAST_READ)?;
        Ok(t.get((&reader.0, &record.0))?.map(|v| v.value()))
    }

    /// Where an audit event is: (height, index).
    pub fn audit_location(&self, id: &EventId) -> Result<Option<(u64, u32)>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(AUDIT_IDS)?;
        Ok(t.get(&id.0)?.map(|v| v.value()))
    }

    /// A patient's audit events, newest first, at most `limit`.
    pub fn audit_of(
        &self,
        patient: &AccountId,
        before: Option<(u64, u32)>,
        limit: usize,
    ) -> Result<Vec<(u64, u32, AuditEvent)>, StoreError> {
        let r = self.db.begin_read()?;
        let idx = r.open_table(AUDIT_BY_PATIENT)?;
        let t = r.open_table(AUDIT)?;
        let mut out = Vec::new();
        let range = match before {
            Some((h, i)) => idx.range((&patient.0, 0, 0)..(&patient.0, h, i))?,
            None => idx.range((&patient.0, 0, 0)..=(&patient.0, u64::MAX, u32::MAX))?,
        };
        for item in range.rev().take(limit) {
            let (k, _) = item?;
            let (_, h, i) = k.value();
            let v = t
                .get((h, i))?
                .ok_or_else(|| StoreError::Corrupt(format!("audit index points at {h}/{i}")))?;
            out.push((h, i, decode_event(v.value())?));
        }
        Ok(out)
    }

    /// Iterates all stored blocks in height order as raw bytes, with the indexed id.
    pub fn raw_blocks(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(BLOCKS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }
}

fn decode_event(bytes: &[u8]) -> Result<AuditEvent, StoreError> {
    decode(bytes, 64 * 1024).map_err(|e| StoreError::Corrupt(format!("audit event: {e}")))
}

fn decode_block(bytes: &[u8]) -> Result<Block, StoreError> {
    decode(bytes, ehrchain_types::MAX_BLOCK_BYTES)
        .map_err(|e| StoreError::Corrupt(format!("block: {e}")))
}
