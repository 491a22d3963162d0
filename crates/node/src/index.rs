//! The read API's lookup indexes, kept out of the block write: transaction id → location,
//! audit event id → location, a patient's audit events, and a reader's last allowed read of a
//! record.
//!
//! Executing a block never reads them, so they need not be written in the block's durable
//! write, where at scale each entry costs a random B-tree page (their keys are hashes, or
//! accounts spread over the whole key space; ADR 0008, eighth part). Instead:
//! - a committed block's entries enter memory ([`ApiIndex::push`]), where lookups find them at
//!   once;
//! - a thread of the index merges what memory holds into its own database (the directory
//!   `*.index` beside the chain's) about once a second, or sooner once [`FLUSH_ENTRIES`] are
//!   waiting, in one atomic batch, and the chain's writer does not wait for it;
//! - that database is a log-structured merge tree (fjall): a batch is appended to a log and a
//!   write buffer, and reaches the sorted tables in background merges that read and write
//!   sequentially. A B-tree paid a random 4 KiB page per entry at ten million entries, about
//!   four times the CPU (ADR 0008, ninth part);
//! - the index database records the last block it holds; at open, the blocks after it are
//!   indexed again from the chain store, whose blocks, receipts and audit events are the source
//!   of truth. A crash loses at most the entries not yet merged, and these are redone.
//!
//! Lookups read memory before the database: an entry leaves memory only after the write that
//! holds it committed, so a lookup never misses an entry of a committed block.

use crate::store::StoreError;
use ehrchain_types::{AuditAction, AuditEvent, Decision, Receipt};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    ops::Bound,
    path::Path,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Transaction id → location (height, index), [`loc`]-encoded.
const TXS: &str = "txs";
/// Audit event id → location.
const EVENTS: &str = "audit_ids";
/// patient ‖ height ‖ index of every audit event about a patient ([`patient_key`]); no value.
const BY_PATIENT: &str = "audit_by_patient";
/// reader ‖ record → block time of the reader's last allowed read of the record.
const LAST_READ: &str = "last_read";
/// `indexed` → height ‖ block id of the last block whose entries the database holds.
const META: &str = "meta";
const META_INDEXED: &[u8] = b"indexed";
/// Ciphertext hash → record ‖ height of the block that anchored it ([`RecordIndex`]).
const CONTENTS: &str = "record_contents";
/// Patient ‖ record → height of the block that anchored it ([`RecordIndex`]).
const PATIENTS: &str = "record_patients";
/// Memory for each keyspace's write buffer before it is written out as a sorted table (fjall's
/// default is 64 MiB each; the index's tables together stay under the node's memory bound).
const MEMTABLE_BYTES: u64 = 8 << 20;
/// The database's block cache.
const CACHE_BYTES: u64 = 32 << 20;

fn db_err(e: fjall::Error) -> StoreError {
    StoreError::Db(format!("lookup index: {e}"))
}

fn keyspace(db: &Database, name: &str) -> Result<Keyspace, fjall::Error> {
    db.keyspace(name, || {
        KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
    })
}

/// Opens the fjall database at `path` with `open`: one held by another process, or that
/// cannot be opened, is named, with what to do.
fn open_db<T>(
    path: &Path,
    what: &str,
    open: impl FnOnce(&Path) -> Result<T, fjall::Error>,
) -> Result<T, StoreError> {
    open(path).map_err(|e| match e {
        fjall::Error::Locked => StoreError::Db(format!(
            "{} is in use by another process (stop the node first)",
            path.display()
        )),
        other => StoreError::Db(format!(
            "the {what} {} cannot be opened ({other}); it holds only data derived from the chain: delete it and start again to rebuild it",
            path.display()
        )),
    })
}

/// What a failed write of an index database means. fjall refuses every write after one of
/// its writes, flushes or compactions failed (an I/O error, a full disk): it is "poisoned"
/// until it is opened again, when it recovers from its log. The node cannot go on committing
/// blocks (the content index is written with each) nor merging lookups, and retrying in the
/// process would never succeed, so it exits: restarted (by its supervisor, once there is
/// space), it recovers and catches up. Nothing committed is lost.
fn write_failed(what: &str, e: fjall::Error) -> StoreError {
    if matches!(e, fjall::Error::Poisoned) {
        tracing::error!(
            "the {what} can no longer be written after an I/O error (a full disk?); exiting, to recover it from its log at the next start"
        );
        std::process::exit(74);
    }
    StoreError::Db(format!("{what}: {e}"))
}

fn loc(h: u64, i: u32) -> [u8; 12] {
    let mut v = [0; 12];
    v[..8].copy_from_slice(&h.to_be_bytes());
    v[8..].copy_from_slice(&i.to_be_bytes());
    v
}

fn unloc(v: &[u8]) -> Result<(u64, u32), StoreError> {
    let v: &[u8; 12] = v.try_into().map_err(|_| {
        StoreError::Corrupt(format!("lookup index: a location of {} bytes", v.len()))
    })?;
    let (h, i) = v.split_at(8);
    Ok((
        u64::from_be_bytes(h.try_into().expect("8 bytes")),
        u32::from_be_bytes(i.try_into().expect("4 bytes")),
    ))
}

/// The key of a patient's audit event: big-endian, so a patient's events sort by location.
fn patient_key(patient: &[u8; 20], h: u64, i: u32) -> [u8; 32] {
    let mut k = [0; 32];
    k[..20].copy_from_slice(patient);
    k[20..].copy_from_slice(&loc(h, i));
    k
}

fn read_key(reader: &[u8; 20], record: &[u8; 16]) -> [u8; 36] {
    let mut k = [0; 36];
    k[..20].copy_from_slice(reader);
    k[20..].copy_from_slice(record);
    k
}

/// The index's tables, one LSM tree each (fjall): an entry is appended to a write buffer and
/// its log, and reaches the sorted tables in background merges, sequentially. At ten million
/// entries a B-tree pays a random page per entry instead (ADR 0008, ninth part).
struct Tables {
    db: Database,
    txs: Keyspace,
    events: Keyspace,
    by_patient: Keyspace,
    last_read: Keyspace,
    meta: Keyspace,
}

impl Tables {
    fn open(path: &Path) -> Result<Tables, fjall::Error> {
        let db = Database::builder(path).cache_size(CACHE_BYTES).open()?;
        let ks = |name| keyspace(&db, name);
        Ok(Tables {
            txs: ks(TXS)?,
            events: ks(EVENTS)?,
            by_patient: ks(BY_PATIENT)?,
            last_read: ks(LAST_READ)?,
            meta: ks(META)?,
            db,
        })
    }

    fn all(&self) -> [&Keyspace; 5] {
        [
            &self.txs,
            &self.events,
            &self.by_patient,
            &self.last_read,
            &self.meta,
        ]
    }

    fn indexed(&self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        self.meta
            .get(META_INDEXED)
            .map_err(db_err)?
            .map(|v| unmark(&v))
            .transpose()
    }

    fn loc_of(ks: &Keyspace, key: &[u8]) -> Result<Option<(u64, u32)>, StoreError> {
        ks.get(key).map_err(db_err)?.map(|v| unloc(&v)).transpose()
    }
}

/// Entries waiting in memory that wake the merge before its interval is up.
pub const FLUSH_ENTRIES: usize = 50_000;
/// How often the merge runs while entries wait.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Entries memory may hold before committing a block waits for the merge: the bound on the
/// index's memory (about 100 bytes an entry) when its database cannot keep up or fails.
pub const MAX_PENDING: usize = 1_000_000;

/// What one committed block adds to the indexes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockEntries {
    pub height: u64,
    pub block_id: [u8; 32],
    /// Transaction ids in block order (a transaction's index is its position).
    pub txs: Vec<[u8; 32]>,
    /// Audit event ids with their patients, in the block's audit tree order.
    pub events: Vec<([u8; 32], [u8; 20])>,
    /// Allowed reads: (reader, record, block time).
    pub reads: Vec<([u8; 20], [u8; 16], u64)>,
}

impl BlockEntries {
    pub fn of(
        height: u64,
        block_id: [u8; 32],
        receipts: &[Receipt],
        events: &[AuditEvent],
    ) -> Self {
        BlockEntries {
            height,
            block_id,
            txs: receipts.iter().map(|r| r.tx_id.0).collect(),
            events: events.iter().map(|e| (e.id().0, e.patient.0)).collect(),
            reads: events
                .iter()
                .filter_map(|e| match (e.action, e.decision, e.record) {
                    (AuditAction::Read, Decision::Allowed, Some(r)) => {
                        Some((e.actor.0, r.0, e.time_ms))
                    }
                    _ => None,
                })
                .collect(),
        }
    }

    fn len(&self) -> usize {
        self.txs.len() + 2 * self.events.len() + self.reads.len()
    }
}

/// Committed entries not yet in the database, by key, with the blocks they came from.
#[derive(Default)]
struct Pending {
    blocks: VecDeque<Arc<BlockEntries>>,
    txs: HashMap<[u8; 32], (u64, u32)>,
    events: HashMap<[u8; 32], (u64, u32)>,
    by_patient: BTreeSet<([u8; 20], u64, u32)>,
    /// (reader, record) → (block time, height of the block that set it).
    reads: HashMap<([u8; 20], [u8; 16]), (u64, u64)>,
    entries: usize,
    stop: bool,
}

impl Pending {
    fn add(&mut self, b: Arc<BlockEntries>) {
        let h = b.height;
        for (i, id) in b.txs.iter().enumerate() {
            self.txs.insert(*id, (h, i as u32));
        }
        for (i, (id, patient)) in b.events.iter().enumerate() {
            self.events.insert(*id, (h, i as u32));
            self.by_patient.insert((*patient, h, i as u32));
        }
        for (reader, record, time) in &b.reads {
            self.reads.insert((*reader, *record), (*time, h));
        }
        self.entries += b.len();
        self.blocks.push_back(b);
    }

    /// Forgets the oldest `n` blocks, whose entries the database now holds.
    fn remove_merged(&mut self, n: usize) {
        for b in self.blocks.drain(..n) {
            let h = b.height;
            for id in &b.txs {
                if self.txs.get(id).is_some_and(|(at, _)| *at == h) {
                    self.txs.remove(id);
                }
            }
            for (i, (id, patient)) in b.events.iter().enumerate() {
                if self.events.get(id).is_some_and(|(at, _)| *at == h) {
                    self.events.remove(id);
                }
                self.by_patient.remove(&(*patient, h, i as u32));
            }
            // A later block still waiting may have set the reader's read again.
            for (reader, record, _) in &b.reads {
                let key = (*reader, *record);
                if self.reads.get(&key).is_some_and(|(_, at)| *at == h) {
                    self.reads.remove(&key);
                }
            }
            self.entries -= b.len();
        }
    }
}

struct Shared {
    db: Tables,
    pending: Mutex<Pending>,
    /// Wakes the merge (entries past [`FLUSH_ENTRIES`], or stop).
    wake: Condvar,
    /// Signalled after each merge, for a committer waiting on [`MAX_PENDING`].
    merged: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().expect("index lock poisoned")
    }
}

/// The indexes: memory for what the database does not hold yet, and the thread that merges it.
pub struct ApiIndex {
    shared: Arc<Shared>,
    merger: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ApiIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiIndex")
    }
}

impl ApiIndex {
    /// Opens (or creates) the index database at `path`. `is_committed(height, id)` says whether
    /// the chain store holds that block: an index whose last block is not the chain's (a data
    /// dir of another chain, a chain store restored from a backup) is emptied, to be built
    /// again. The caller then brings it up to the chain's tip ([`ApiIndex::indexed`],
    /// [`ApiIndex::merge`]).
    pub fn open(
        path: &Path,
        is_committed: impl FnOnce(u64, &[u8; 32]) -> bool,
    ) -> Result<ApiIndex, StoreError> {
        // The layout before the index was an LSM: a redb file, derived data like this.
        // (`chain.index` → `chain.index.redb`).
        let old = {
            let mut name = path.as_os_str().to_owned();
            name.push(".redb");
            std::path::PathBuf::from(name)
        };
        if old.is_file() {
            std::fs::remove_file(&old)
                .map_err(|e| StoreError::Db(format!("removing {}: {e}", old.display())))?;
        }
        let db = open_db(path, "lookup index", Tables::open)?;
        let stale = db.indexed()?.is_some_and(|(h, id)| !is_committed(h, &id));
        if stale {
            tracing::warn!(path = %path.display(), "the API index is of another chain; building it again");
            for ks in db.all() {
                ks.clear().map_err(db_err)?;
            }
            db.db.persist(PersistMode::SyncAll).map_err(db_err)?;
        }
        let shared = Arc::new(Shared {
            db,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            merged: Condvar::new(),
        });
        let merger = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("api-index".into())
                .spawn(move || merge_loop(&shared))
                .map_err(|e| StoreError::Db(format!("starting the index thread: {e}")))?
        };
        Ok(ApiIndex {
            shared,
            merger: Some(merger),
        })
    }

    /// The height of the last block the database holds (0 for none).
    pub fn indexed(&self) -> Result<u64, StoreError> {
        Ok(self.shared.db.indexed()?.map_or(0, |(h, _)| h))
    }

    /// Writes `blocks` (consecutive, after [`ApiIndex::indexed`]) to the database now, in one
    /// write: bringing the index up to the chain at open.
    pub fn merge(&self, blocks: &[Arc<BlockEntries>]) -> Result<(), StoreError> {
        write(&self.shared.db, blocks)
    }

    /// Fills an empty index with `n` synthetic entries of each kind (transaction ids, audit
    /// event ids, and audit events of `n / 4 + 1` patients), the size a chain that anchored `n`
    /// records through transactions would have: the benchmarks' prefill
    /// (`GenesisState::synthetic_records`), so that merges at scale cost what they would on
    /// such a chain. The keys are spread over the key space like hashes, but no transaction,
    /// event or account has them, so no lookup finds them. Written a sixteenth of the key
    /// space at a time, so memory holds a sixteenth of the entries.
    pub fn prefill_synthetic(&self, n: u64) -> Result<(), StoreError> {
        const PASSES: u64 = 16;
        let patients = n / 4 + 1;
        let t = &self.shared.db;
        // A pass holds the keys whose first four bits are its number, so the passes in turn
        // give each table its keys in order: a bulk load, as sorted tables.
        for (tag, ks) in [(1, &t.txs), (2, &t.events), (3, &t.by_patient)] {
            let mut load = ks.start_ingestion().map_err(db_err)?;
            for pass in 0..PASSES {
                let mut keys: Vec<([u8; 32], u32)> = Vec::new();
                for i in 0..n {
                    let k = if tag == 3 { i % patients } else { i };
                    if spread(tag, k, 0) >> 60 != pass {
                        continue;
                    }
                    keys.push(if tag == 3 {
                        (patient_key(&spread_key::<20>(3, k), 0, i as u32), i as u32)
                    } else {
                        (spread_key::<32>(tag, k), i as u32)
                    });
                }
                keys.sort_unstable();
                for (key, i) in keys {
                    let value: &[u8] = if tag == 3 { &[] } else { &loc(0, i) };
                    load.write(key.to_vec(), value.to_vec()).map_err(db_err)?;
                }
            }
            load.finish().map_err(db_err)?;
        }
        t.db.persist(PersistMode::SyncAll).map_err(db_err)
    }

    /// Takes the entries of blocks just committed to the chain store, in height order. Waits
    /// while memory holds [`MAX_PENDING`] entries the database has not taken yet.
    pub fn push(&self, blocks: Vec<BlockEntries>) {
        let mut p = self.shared.lock();
        let mut waited = Instant::now();
        while p.entries >= MAX_PENDING && !p.stop {
            let (guard, _) = (self.shared.merged)
                .wait_timeout(p, Duration::from_secs(1))
                .expect("index lock poisoned");
            p = guard;
            if waited.elapsed() >= Duration::from_secs(10) {
                tracing::warn!(
                    pending = p.entries,
                    "block commits wait for the API index to catch up"
                );
                waited = Instant::now();
            }
        }
        for b in blocks {
            p.add(Arc::new(b));
        }
        if p.entries >= FLUSH_ENTRIES {
            self.shared.wake.notify_one();
        }
    }

    /// Entries in memory not yet in the database.
    pub fn pending(&self) -> usize {
        self.shared.lock().entries
    }

    /// Where a transaction was finalized: (height, index in the block).
    pub fn tx(&self, id: &[u8; 32]) -> Result<Option<(u64, u32)>, StoreError> {
        if let Some(v) = self.shared.lock().txs.get(id) {
            return Ok(Some(*v));
        }
        Tables::loc_of(&self.shared.db.txs, id)
    }

    /// Where an audit event is: (height, index in the block's audit tree).
    pub fn event(&self, id: &[u8; 32]) -> Result<Option<(u64, u32)>, StoreError> {
        if let Some(v) = self.shared.lock().events.get(id) {
            return Ok(Some(*v));
        }
        Tables::loc_of(&self.shared.db.events, id)
    }

    /// Block time of `reader`'s last allowed read of `record`.
    pub fn last_read(
        &self,
        reader: &[u8; 20],
        record: &[u8; 16],
    ) -> Result<Option<u64>, StoreError> {
        if let Some((time, _)) = self.shared.lock().reads.get(&(*reader, *record)) {
            return Ok(Some(*time));
        }
        let Some(v) = (self.shared.db.last_read)
            .get(read_key(reader, record))
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let v: [u8; 8] = v[..]
            .try_into()
            .map_err(|_| StoreError::Corrupt("lookup index: a read time".into()))?;
        Ok(Some(u64::from_be_bytes(v)))
    }

    /// The locations of `patient`'s audit events before `before` (all if `None`), newest
    /// first, at most `limit`.
    pub fn events_of(
        &self,
        patient: &[u8; 20],
        before: Option<(u64, u32)>,
        limit: usize,
    ) -> Result<Vec<(u64, u32)>, StoreError> {
        let (bh, bi) = before.unwrap_or((u64::MAX, u32::MAX));
        // Memory first: what leaves it is in the database by the time that is read.
        let mut found: BTreeSet<(u64, u32)> = {
            let p = self.shared.lock();
            p.by_patient
                .range((*patient, 0, 0)..(*patient, bh, bi))
                .rev()
                .take(limit)
                .map(|(_, h, i)| (*h, *i))
                .collect()
        };
        let from = patient_key(patient, 0, 0);
        let to = match before {
            Some(_) => Bound::Excluded(patient_key(patient, bh, bi)),
            None => Bound::Included(patient_key(patient, bh, bi)),
        };
        let range = (self.shared.db.by_patient).range((Bound::Included(from), to));
        for item in range.rev().take(limit) {
            let key = item.key().map_err(db_err)?;
            if key.len() != 32 {
                return Err(StoreError::Corrupt(
                    "lookup index: a patient's event key".into(),
                ));
            }
            found.insert(unloc(&key[20..])?);
        }
        Ok(found.into_iter().rev().take(limit).collect())
    }
}

impl Drop for ApiIndex {
    /// Merges what memory holds (a clean stop leaves nothing to redo) and stops the thread.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.merger.take() {
            let _ = t.join();
        }
    }
}

/// The state's record indexes, in an LSM database of their own (`*.records` beside the
/// chain's): ciphertext hash → (record, height of the block that anchored it), and patient ‖
/// record → that height. Unlike the lookup indexes, execution reads them (a record's content
/// must be new; a patient's records are listed), so they are written before the chain store's
/// commit of the blocks that add to them, and durably: they always hold every committed
/// record, and may hold the records of blocks whose commit had not happened yet when the node
/// stopped. A snapshot of the chain store at height `h` sees only the entries of heights up to
/// `h` ([`RecordIndex::content`], [`RecordIndex::records_of`]), so those never show. Records
/// are never deleted, and an entry keeps the height that anchored its record, so both indexes
/// only grow. Their keys are hashes and accounts spread over the key space: a B-tree paid a
/// random page per record at ten million (ADR 0008, ninth and tenth parts).
#[derive(Clone)]
pub struct RecordIndex {
    db: Database,
    contents: Keyspace,
    patients: Keyspace,
    meta: Keyspace,
}

impl std::fmt::Debug for RecordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordIndex")
    }
}

/// A block: (height, id).
pub type BlockMark = (u64, [u8; 32]);

/// The last blocks an index was written for, in height order, and the chain's genesis block.
pub type RecentMarks = (Vec<BlockMark>, [u8; 32]);

/// A content entry: (content, record, height).
pub type ContentEntry = ([u8; 32], [u8; 16], u64);

/// A record as its indexes hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexedRecord {
    pub id: [u8; 16],
    pub content: [u8; 32],
    pub patient: [u8; 20],
    /// The height of the block that anchored it.
    pub height: u64,
}

impl RecordIndex {
    /// Opens (or creates) the record indexes at `path`. The caller checks that they hold the
    /// chain's records ([`RecordIndex::through`]) and builds them again if not.
    pub fn open(path: &Path) -> Result<RecordIndex, StoreError> {
        open_db(path, "record index", |path| {
            let db = Database::builder(path).cache_size(CACHE_BYTES).open()?;
            Ok(RecordIndex {
                contents: keyspace(&db, CONTENTS)?,
                patients: keyspace(&db, PATIENTS)?,
                meta: keyspace(&db, META)?,
                db,
            })
        })
    }

    /// The record anchoring `content` as of height `at`.
    pub fn content(&self, content: &[u8; 32], at: u64) -> Result<Option<[u8; 16]>, StoreError> {
        let Some(v) = self.contents.get(content).map_err(db_err)? else {
            return Ok(None);
        };
        let (record, height) = unentry(&v)?;
        Ok((height <= at).then_some(record))
    }

    /// Whether `record` is `patient`'s as of height `at`.
    pub fn is_patients(
        &self,
        patient: &[u8; 20],
        record: &[u8; 16],
        at: u64,
    ) -> Result<bool, StoreError> {
        match self
            .patients
            .get(patient_record(patient, record))
            .map_err(db_err)?
        {
            Some(v) => Ok(height_of(&v)? <= at),
            None => Ok(false),
        }
    }

    /// `patient`'s records after `after` as of height `at`, in id order, at most `limit`.
    pub fn records_of(
        &self,
        patient: &[u8; 20],
        after: Option<[u8; 16]>,
        limit: usize,
        at: u64,
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        let from = patient_record(patient, &after.unwrap_or([0; 16]));
        let to = patient_record(patient, &[0xff; 16]);
        let from = match after {
            Some(_) => Bound::Excluded(from),
            None => Bound::Included(from),
        };
        let mut out = Vec::new();
        for item in self.patients.range((from, Bound::Included(to))) {
            if out.len() == limit {
                break;
            }
            let (k, v) = item.into_inner().map_err(db_err)?;
            if k.len() != 36 {
                return Err(StoreError::Corrupt("record index: a patient key".into()));
            }
            if height_of(&v)? <= at {
                out.push(k[20..].try_into().expect("16 bytes"));
            }
        }
        Ok(out)
    }

    /// Writes `records` and, if given, the last block they are complete for (height, id) and
    /// the chain's genesis block, durably, in one batch. The last [`RECENT_MARKS`] such blocks
    /// are kept ([`RecordIndex::through`]).
    pub fn write(
        &self,
        records: &[IndexedRecord],
        through: Option<(u64, [u8; 32])>,
        genesis: Option<&[u8; 32]>,
    ) -> Result<(), StoreError> {
        let mut w = self.db.batch();
        if let Some(g) = genesis {
            w.insert(&self.meta, META_GENESIS.to_vec(), g.to_vec());
        }
        for r in records {
            w.insert(
                &self.contents,
                r.content.to_vec(),
                entry(&r.id, r.height).to_vec(),
            );
            w.insert(
                &self.patients,
                patient_record(&r.patient, &r.id).to_vec(),
                r.height.to_be_bytes().to_vec(),
            );
        }
        if let Some((h, id)) = through {
            let mut marks = self.marks()?;
            marks.retain(|(m, _)| *m < h);
            marks.push((h, id));
            let from = marks.len().saturating_sub(RECENT_MARKS);
            let value: Vec<u8> = marks[from..]
                .iter()
                .flat_map(|(h, id)| mark(*h, id))
                .collect();
            w.insert(&self.meta, META_RECORDS.to_vec(), value);
        }
        w.commit().map_err(|e| write_failed("record index", e))?;
        (self.db.persist(PersistMode::SyncAll)).map_err(|e| write_failed("record index", e))
    }

    /// Fills the empty indexes with every record `scan` yields, then records
    /// `through` and `genesis`: a bulk load, as sorted tables (a rebuild, a large genesis
    /// state; written in batches, ten million records would leave the trees a backlog of
    /// merges that slows the chain's first blocks). `scan` is called [`LOAD_PASSES`] times
    /// per index and must yield the same records each time: a pass keeps the entries whose
    /// first byte falls in its share, so memory holds a share of an index at a time.
    /// Returns how many records were loaded.
    pub fn load(
        &self,
        mut scan: impl FnMut(&mut dyn FnMut(&IndexedRecord)) -> Result<(), StoreError>,
        through: BlockMark,
        genesis: &[u8; 32],
    ) -> Result<u64, StoreError> {
        let empty = |ks: &Keyspace| ks.is_empty().map_err(db_err);
        if !empty(&self.contents)? || !empty(&self.patients)? {
            return Err(StoreError::Db(
                "record index: a bulk load needs empty indexes".into(),
            ));
        }
        let records = ingest(&self.contents, &mut scan, |r| {
            (r.content, entry(&r.id, r.height))
        })?;
        ingest(&self.patients, &mut scan, |r| {
            (patient_record(&r.patient, &r.id), r.height.to_be_bytes())
        })?;
        self.write(&[], Some(through), Some(genesis))?;
        Ok(records)
    }

    /// The last blocks the indexes were written complete for (the last of them, and up to
    /// [`RECENT_MARKS`] − 1 before it, in height order), and the chain's genesis block they
    /// belong to. A block above the chain's tip is one whose commit failed or was cut short;
    /// the tip is then among the earlier ones, unless the indexes are another chain's.
    pub fn through(&self) -> Result<Option<RecentMarks>, StoreError> {
        let Some(g) = self.meta.get(META_GENESIS).map_err(db_err)? else {
            return Ok(None);
        };
        let marks = self.marks()?;
        if marks.is_empty() {
            return Ok(None);
        }
        let g: [u8; 32] = g[..]
            .try_into()
            .map_err(|_| StoreError::Corrupt("record index: its genesis block".into()))?;
        Ok(Some((marks, g)))
    }

    fn marks(&self) -> Result<Vec<BlockMark>, StoreError> {
        let Some(v) = self.meta.get(META_RECORDS).map_err(db_err)? else {
            return Ok(Vec::new());
        };
        if v.len() % 40 != 0 {
            return Err(StoreError::Corrupt("record index: its blocks".into()));
        }
        v.chunks(40).map(unmark).collect()
    }

    /// Replaces the indexes at `path` (these, closed first) with empty ones. The directory is
    /// removed rather than the keyspaces cleared: fjall 3.1 logs a clear and replays it when
    /// it recovers, after tables loaded since, which it then loses.
    pub fn emptied(self, path: &Path) -> Result<RecordIndex, StoreError> {
        drop(self);
        if path.exists() {
            std::fs::remove_dir_all(path)
                .map_err(|e| StoreError::Db(format!("removing {}: {e}", path.display())))?;
        }
        RecordIndex::open(path)
    }

    /// Every content entry whose content starts with byte `bucket`, in content order.
    pub fn bucket(
        &self,
        bucket: u8,
    ) -> impl Iterator<Item = Result<ContentEntry, StoreError>> + use<> {
        self.contents.prefix([bucket]).map(|item| {
            let (k, v) = item.into_inner().map_err(db_err)?;
            let content: [u8; 32] = k[..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("record index: a content key".into()))?;
            let (record, height) = unentry(&v)?;
            Ok((content, record, height))
        })
    }

    /// How many (patient, record) entries there are as of height `at`.
    pub fn patient_entries(&self, at: u64) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.patients.iter() {
            n += u64::from(height_of(&item.value().map_err(db_err)?)? <= at);
        }
        Ok(n)
    }
}

/// The last blocks the record indexes were written for, [`mark`]s in height order.
const META_RECORDS: &[u8] = b"records";
/// How many of them are kept.
const RECENT_MARKS: usize = 16;
/// Passes of a bulk load ([`RecordIndex::load`]).
const LOAD_PASSES: usize = 4;

/// Loads the entries `of` the records `scan` yields into the empty keyspace `ks`, in
/// [`LOAD_PASSES`] passes of sorted keys. Returns how many there were.
fn ingest<const K: usize, const V: usize>(
    ks: &Keyspace,
    scan: &mut impl FnMut(&mut dyn FnMut(&IndexedRecord)) -> Result<(), StoreError>,
    of: impl Fn(&IndexedRecord) -> ([u8; K], [u8; V]),
) -> Result<u64, StoreError> {
    let failed = |e| write_failed("record index", e);
    let mut load = ks.start_ingestion().map_err(failed)?;
    let mut total = 0;
    for pass in 0..LOAD_PASSES {
        let mut entries = Vec::new();
        scan(&mut |r| {
            let (k, v) = of(r);
            if usize::from(k[0]) * LOAD_PASSES / 256 == pass {
                entries.push((k, v));
            }
        })?;
        entries.sort_unstable_by_key(|e| e.0);
        // Keys are unique (a content anchors one record); a repeated one would make the
        // load panic, so it is refused here instead.
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(StoreError::Corrupt(
                "record index: two records with one key".into(),
            ));
        }
        total += entries.len() as u64;
        for (k, v) in entries {
            load.write(k.to_vec(), v.to_vec()).map_err(failed)?;
        }
    }
    load.finish().map_err(failed)?;
    Ok(total)
}
const META_GENESIS: &[u8] = b"records_genesis";

fn patient_record(patient: &[u8; 20], record: &[u8; 16]) -> [u8; 36] {
    let mut k = [0; 36];
    k[..20].copy_from_slice(patient);
    k[20..].copy_from_slice(record);
    k
}

fn height_of(v: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(v.try_into().map_err(|_| {
        StoreError::Corrupt("record index: a patient entry".into())
    })?))
}

fn entry(record: &[u8; 16], height: u64) -> [u8; 24] {
    let mut v = [0; 24];
    v[..16].copy_from_slice(record);
    v[16..].copy_from_slice(&height.to_be_bytes());
    v
}

fn unentry(v: &[u8]) -> Result<([u8; 16], u64), StoreError> {
    if v.len() != 24 {
        return Err(StoreError::Corrupt("record index: a content entry".into()));
    }
    Ok((
        v[..16].try_into().expect("16 bytes"),
        u64::from_be_bytes(v[16..].try_into().expect("8 bytes")),
    ))
}

fn mark(h: u64, id: &[u8; 32]) -> [u8; 40] {
    let mut v = [0; 40];
    v[..8].copy_from_slice(&h.to_be_bytes());
    v[8..].copy_from_slice(id);
    v
}

fn unmark(v: &[u8]) -> Result<(u64, [u8; 32]), StoreError> {
    if v.len() != 40 {
        return Err(StoreError::Corrupt("index: a block mark".into()));
    }
    Ok((
        u64::from_be_bytes(v[..8].try_into().expect("8 bytes")),
        v[8..].try_into().expect("32 bytes"),
    ))
}

/// Word `j` of synthetic key `i` of kind `tag` (splitmix64's finaliser): spread evenly over the
/// key space like a hash, but cheap, since a ten-million prefill makes it half a billion
/// times. Benchmark data only, never a digest of anything.
fn spread(tag: u64, i: u64, j: u64) -> u64 {
    let mut z = ((tag << 56) ^ (i << 3) ^ j).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Synthetic key `i` of kind `tag`, `N` bytes: [`spread`]'s words, big-endian.
fn spread_key<const N: usize>(tag: u64, i: u64) -> [u8; N] {
    let mut out = [0; N];
    for (j, chunk) in out.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&spread(tag, i, j as u64).to_be_bytes()[..chunk.len()]);
    }
    out
}

/// The merge thread: about once a [`FLUSH_INTERVAL`] (sooner past [`FLUSH_ENTRIES`]), writes
/// every waiting block's entries in one write, then forgets them from memory.
fn merge_loop(shared: &Shared) {
    let mut last = Instant::now();
    let mut failing = false;
    loop {
        let (batch, stopping) = {
            let mut p = shared.lock();
            while !p.stop && p.entries < FLUSH_ENTRIES {
                let left = FLUSH_INTERVAL.saturating_sub(last.elapsed());
                if left.is_zero() && !p.blocks.is_empty() {
                    break;
                }
                let wait = if left.is_zero() { FLUSH_INTERVAL } else { left };
                p = shared
                    .wake
                    .wait_timeout(p, wait)
                    .expect("index lock poisoned")
                    .0;
            }
            (p.blocks.iter().cloned().collect::<Vec<_>>(), p.stop)
        };
        last = Instant::now();
        if !batch.is_empty() {
            match write(&shared.db, &batch) {
                Ok(()) => {
                    shared.lock().remove_merged(batch.len());
                    shared.merged.notify_all();
                    if std::mem::take(&mut failing) {
                        tracing::info!("the API index is written again");
                    }
                }
                // Memory keeps the entries (lookups still find them) and the merge is tried
                // again each interval; at open, the blocks after the database's last are
                // indexed again. Logged once, not every second.
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "writing the API index failed; retrying every second");
                }
                Err(_) => {}
            }
        }
        if stopping {
            return;
        }
    }
}

/// Writes the entries of consecutive `blocks` and the last one's height, in one write, each
/// table's keys in sorted order.
fn write(db: &Tables, blocks: &[Arc<BlockEntries>]) -> Result<(), StoreError> {
    let Some(last) = blocks.last() else {
        return Ok(());
    };
    let mut txs = Vec::new();
    let mut events = Vec::new();
    let mut patients = Vec::new();
    // Later blocks' reads replace earlier ones.
    let mut reads = BTreeMap::new();
    for b in blocks {
        let h = b.height;
        txs.extend(b.txs.iter().enumerate().map(|(i, id)| (*id, i as u32, h)));
        for (i, (id, patient)) in b.events.iter().enumerate() {
            events.push((*id, i as u32, h));
            patients.push((*patient, h, i as u32));
        }
        for (reader, record, time) in &b.reads {
            reads.insert((*reader, *record), *time);
        }
    }
    txs.sort_unstable();
    events.sort_unstable();
    patients.sort_unstable();
    let mut w = db.db.batch();
    for (id, i, h) in &txs {
        w.insert(&db.txs, id.to_vec(), loc(*h, *i).to_vec());
    }
    for (id, i, h) in &events {
        w.insert(&db.events, id.to_vec(), loc(*h, *i).to_vec());
    }
    for (patient, h, i) in &patients {
        w.insert(
            &db.by_patient,
            patient_key(patient, *h, *i).to_vec(),
            Vec::new(),
        );
    }
    for ((reader, record), time) in &reads {
        w.insert(
            &db.last_read,
            read_key(reader, record).to_vec(),
            time.to_be_bytes().to_vec(),
        );
    }
    w.insert(
        &db.meta,
        META_INDEXED.to_vec(),
        mark(last.height, &last.block_id).to_vec(),
    );
    // One batch is atomic across the tables; durable before memory forgets its entries.
    w.commit().map_err(|e| write_failed("lookup index", e))?;
    (db.db.persist(PersistMode::SyncAll)).map_err(|e| write_failed("lookup index", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(
        height: u64,
        txs: &[u8],
        events: &[(u8, u8)],
        reads: &[(u8, u8, u64)],
    ) -> BlockEntries {
        BlockEntries {
            height,
            block_id: [height as u8; 32],
            txs: txs.iter().map(|t| [*t; 32]).collect(),
            events: events.iter().map(|(e, p)| ([*e; 32], [*p; 20])).collect(),
            reads: reads
                .iter()
                .map(|(r, rec, t)| ([*r; 20], [*rec; 16], *t))
                .collect(),
        }
    }

    /// Waits until the merge took everything (its interval is a second).
    fn merged(ix: &ApiIndex) {
        let until = Instant::now() + Duration::from_secs(30);
        while ix.pending() > 0 {
            assert!(Instant::now() < until, "the merge never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Blocks 1 and 2, whose entries [`lookups`] checks.
    fn two_blocks() -> Vec<BlockEntries> {
        vec![
            block(
                1,
                &[1, 2],
                &[(10, 7), (11, 8)],
                &[(5, 6, 1_000), (5, 4, 1_000)],
            ),
            block(2, &[3], &[(12, 7), (13, 7)], &[(5, 6, 2_000)]),
        ]
    }

    fn lookups(ix: &ApiIndex) {
        assert_eq!(ix.tx(&[1; 32]).unwrap(), Some((1, 0)));
        assert_eq!(ix.tx(&[3; 32]).unwrap(), Some((2, 0)));
        assert_eq!(ix.tx(&[9; 32]).unwrap(), None);
        assert_eq!(ix.event(&[13; 32]).unwrap(), Some((2, 1)));
        // Patient 7's events, newest first, across both blocks; paged with `before`.
        assert_eq!(
            ix.events_of(&[7; 20], None, 10).unwrap(),
            vec![(2, 1), (2, 0), (1, 0)]
        );
        assert_eq!(
            ix.events_of(&[7; 20], None, 2).unwrap(),
            vec![(2, 1), (2, 0)]
        );
        assert_eq!(
            ix.events_of(&[7; 20], Some((2, 0)), 10).unwrap(),
            vec![(1, 0)]
        );
        assert_eq!(ix.events_of(&[8; 20], None, 10).unwrap(), vec![(1, 1)]);
        // The later block's read of the same record wins.
        assert_eq!(ix.last_read(&[5; 20], &[6; 16]).unwrap(), Some(2_000));
        assert_eq!(ix.last_read(&[5; 20], &[4; 16]).unwrap(), Some(1_000));
        assert_eq!(ix.last_read(&[6; 20], &[6; 16]).unwrap(), None);
    }

    #[test]
    fn lookups_agree_before_and_after_the_merge_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.index");
        let ix = ApiIndex::open(&path, |_, _| true).unwrap();
        ix.push(two_blocks());
        // From memory at once, before any merge.
        lookups(&ix);
        merged(&ix);
        assert_eq!(ix.indexed().unwrap(), 2);
        lookups(&ix);
        // Half in the database, half in memory.
        ix.push(vec![block(3, &[4], &[(14, 7)], &[(5, 6, 3_000)])]);
        assert_eq!(
            ix.events_of(&[7; 20], None, 2).unwrap(),
            vec![(3, 0), (2, 1)]
        );
        assert_eq!(ix.last_read(&[5; 20], &[6; 16]).unwrap(), Some(3_000));
        // A clean stop merges what memory holds.
        drop(ix);
        let ix = ApiIndex::open(&path, |h, id| h == 3 && id == &[3; 32]).unwrap();
        assert_eq!(ix.indexed().unwrap(), 3);
        assert_eq!(ix.tx(&[4; 32]).unwrap(), Some((3, 0)));
        assert_eq!(ix.last_read(&[5; 20], &[6; 16]).unwrap(), Some(3_000));
        drop(ix);
        // An index whose last block the chain does not hold is emptied.
        let ix = ApiIndex::open(&path, |_, _| false).unwrap();
        assert_eq!(ix.indexed().unwrap(), 0);
        assert_eq!(ix.tx(&[1; 32]).unwrap(), None);
        assert_eq!(ix.events_of(&[7; 20], None, 10).unwrap(), vec![]);
    }

    #[test]
    fn a_prefill_fills_each_index_without_touching_real_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let ix = ApiIndex::open(&dir.path().join("i"), |_, _| true).unwrap();
        ix.prefill_synthetic(1_000).unwrap();
        ix.push(two_blocks());
        merged(&ix);
        lookups(&ix);
        let t = &ix.shared.db;
        assert_eq!(t.txs.len().unwrap(), 1_003);
        assert_eq!(t.events.len().unwrap(), 1_004);
        assert_eq!(t.by_patient.len().unwrap(), 1_004);
        // 251 synthetic patients (and the two real ones), their entries spread over the keys.
        let mut patients = BTreeSet::new();
        for item in t.by_patient.iter() {
            let key = item.key().unwrap();
            patients.insert(<[u8; 20]>::try_from(&key[..20]).unwrap());
        }
        assert_eq!(patients.len(), 253);
        let first_bytes: BTreeSet<u8> = patients.iter().map(|p| p[0] >> 4).collect();
        assert_eq!(first_bytes.len(), 16, "every sixteenth of the key space");
    }

    #[test]
    fn memory_forgets_a_merged_read_only_if_no_later_block_set_it() {
        let mut p = Pending::default();
        p.add(Arc::new(block(1, &[1], &[], &[(5, 6, 1_000)])));
        p.add(Arc::new(block(2, &[2], &[], &[(5, 6, 2_000)])));
        assert_eq!(p.entries, 4);
        p.remove_merged(1);
        assert_eq!(p.reads.get(&([5; 20], [6; 16])), Some(&(2_000, 2)));
        assert!(!p.txs.contains_key(&[1; 32]) && p.txs.contains_key(&[2; 32]));
        p.remove_merged(1);
        assert!(p.reads.is_empty() && p.txs.is_empty() && p.entries == 0);
    }

    /// A bulk load and blocks written after it agree on every record, as of each height.
    #[test]
    fn the_record_indexes_answer_alike_after_a_load_and_after_writes() {
        let dir = tempfile::tempdir().unwrap();
        let ix = RecordIndex::open(&dir.path().join("chain.records")).unwrap();
        let record = |i: u64, height: u64| IndexedRecord {
            id: spread_key::<16>(4, i),
            content: spread_key::<32>(5, i),
            patient: spread_key::<20>(6, i % 7),
            height,
        };
        let loaded: Vec<_> = (0..5_000).map(|i| record(i, 0)).collect();
        let n = ix
            .load(
                |f| {
                    for r in &loaded {
                        f(r)
                    }
                    Ok(())
                },
                (0, [1; 32]),
                &[1; 32],
            )
            .unwrap();
        assert_eq!(n, 5_000);
        let later: Vec<_> = (5_000..5_100).map(|i| record(i, 1 + i % 2)).collect();
        ix.write(&later, Some((2, [2; 32])), None).unwrap();
        drop(ix);
        let ix = RecordIndex::open(&dir.path().join("chain.records")).unwrap();
        for r in loaded.iter().chain(&later) {
            assert_eq!(ix.content(&r.content, 2).unwrap(), Some(r.id));
            assert!(ix.is_patients(&r.patient, &r.id, 2).unwrap());
            let seen = r.height <= 1;
            assert_eq!(ix.content(&r.content, 1).unwrap().is_some(), seen);
            assert_eq!(ix.is_patients(&r.patient, &r.id, 1).unwrap(), seen);
        }
        assert_eq!(ix.patient_entries(2).unwrap(), 5_100);
        assert_eq!(ix.patient_entries(1).unwrap(), 5_050);
        let p = spread_key::<20>(6, 3);
        let mut mine: Vec<_> = loaded
            .iter()
            .chain(&later)
            .filter(|r| r.patient == p)
            .map(|r| r.id)
            .collect();
        mine.sort_unstable();
        let page = ix.records_of(&p, None, 10, 2).unwrap();
        assert_eq!(page, mine[..10]);
        let next = ix.records_of(&p, Some(page[9]), 1_000, 2).unwrap();
        assert_eq!(next, mine[10..]);
        let (marks, genesis) = ix.through().unwrap().unwrap();
        assert_eq!(
            (marks, genesis),
            (vec![(0, [1; 32]), (2, [2; 32])], [1; 32])
        );
        // Emptied and loaded again, they hold what was loaded after a restart too (fjall
        // replays a logged clear over tables loaded after it; the directory is removed).
        let path = dir.path().join("chain.records");
        let ix = ix.emptied(&path).unwrap();
        assert_eq!(ix.content(&later[0].content, 2).unwrap(), None);
        assert!(ix.through().unwrap().is_none());
        let scan = |f: &mut dyn FnMut(&IndexedRecord)| {
            for r in &later {
                f(r)
            }
            Ok(())
        };
        ix.load(scan, (2, [2; 32]), &[1; 32]).unwrap();
        assert!(ix.load(scan, (2, [2; 32]), &[1; 32]).is_err(), "not empty");
        drop(ix);
        let ix = RecordIndex::open(&path).unwrap();
        assert_eq!(ix.content(&later[0].content, 2).unwrap(), Some(later[0].id));
        assert_eq!(ix.content(&loaded[0].content, 2).unwrap(), None);
        assert_eq!(ix.patient_entries(2).unwrap(), 100);
    }
}
