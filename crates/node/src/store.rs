//! Durable storage of the chain in `redb`: blocks, receipts, transaction index and state.
//!
//! Every finalized block is committed in exactly one write transaction (block, receipts,
//! index entries, changed accounts and the new tip together), so a process killed at any
//! moment restarts with every committed block and nothing half-written.

use ehrchain_ledger::{Account, State};
use ehrchain_types::{AccountId, Block, Hash, Receipt, decode, encode};
use redb::{Database, ReadableTable, TableDefinition};
use std::{collections::BTreeSet, path::Path};

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_IDS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("block_ids");
const CERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("finalizations");
const RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("receipts");
const TXS: TableDefinition<&[u8; 32], (u64, u32)> = TableDefinition::new("txs");
const ACCOUNTS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("accounts");
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
        "data dir belongs to chain {stored:?} (genesis {stored_genesis}), not {expected:?} (genesis {expected_genesis})"
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

impl ChainStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<ChainStore, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
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
        w.open_table(ACCOUNTS)?;
        w.open_table(META)?;
        w.commit()?;
        Ok(ChainStore { db })
    }

    /// Writes the genesis block and state into an empty store, or checks that a non-empty
    /// store holds the same chain.
    pub fn init_genesis(&self, block: &Block, state: &State) -> Result<(), StoreError> {
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
            return Ok(());
        }
        drop(meta);
        drop(r);
        let touched: BTreeSet<AccountId> = state.accounts.keys().copied().collect();
        let w = self.db.begin_write()?;
        {
            let mut meta = w.open_table(META)?;
            meta.insert(META_CHAIN_ID, state.chain_id.as_bytes())?;
            meta.insert(META_GENESIS, gid.0.as_slice())?;
        }
        Self::write_block(&w, block, &[], None, state, &touched)?;
        w.commit()?;
        Ok(())
    }

    fn write_block(
        w: &redb::WriteTransaction,
        block: &Block,
        receipts: &[Receipt],
        finalization: Option<&[u8]>,
        state: &State,
        touched: &BTreeSet<AccountId>,
    ) -> Result<(), StoreError> {
        let h = block.header.height;
        w.open_table(BLOCKS)?.insert(h, encode(block).as_slice())?;
        w.open_table(BLOCK_IDS)?.insert(&block.id().0, h)?;
        w.open_table(RECEIPTS)?
            .insert(h, encode(&receipts.to_vec()).as_slice())?;
        if let Some(f) = finalization {
            w.open_table(CERTS)?.insert(h, f)?;
        }
        let mut txs = w.open_table(TXS)?;
        for (i, t) in block.txs.iter().enumerate() {
            txs.insert(&t.id().0, (h, i as u32))?;
        }
        let mut accounts = w.open_table(ACCOUNTS)?;
        for id in touched {
            let acct = state
                .accounts
                .get(id)
                .expect("touched accounts exist in the post-state");
            accounts.insert(&id.0, encode(acct).as_slice())?;
        }
        Ok(())
    }

    /// Commits one finalized block with its receipts and the accounts it changed, atomically.
    pub fn commit_block(
        &self,
        block: &Block,
        receipts: &[Receipt],
        finalization: Option<&[u8]>,
        state: &State,
        touched: &BTreeSet<AccountId>,
    ) -> Result<(), StoreError> {
        let w = self.db.begin_write()?;
        Self::write_block(&w, block, receipts, finalization, state, touched)?;
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
        let t = r.open_table(ACCOUNTS)?;
        let mut accounts = std::collections::BTreeMap::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let acct: Account = decode(v.value(), 64 * 1024)
                .map_err(|e| StoreError::Corrupt(format!("account record: {e}")))?;
            accounts.insert(AccountId(*k.value()), acct);
        }
        Ok(State { chain_id, accounts })
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

fn decode_block(bytes: &[u8]) -> Result<Block, StoreError> {
    decode(bytes, ehrchain_types::MAX_BLOCK_BYTES)
        .map_err(|e| StoreError::Corrupt(format!("block: {e}")))
}
