//! Candidate (b): `jmt` (Jellyfish Merkle Tree) over `redb`.
//!
//! Layout (one redb file):
//! - `nodes`:  borsh(NodeKey) -> borsh(Node)      (the tree; only the latest version is kept:
//!   stale nodes are deleted in the same write transaction that commits a block)
//! - `values`: key_hash -> version_le(8) || value (latest value of each key)
//! - `meta`:   "version" -> latest committed version (= block height)
//!
//! Speculative blocks: `jmt::put_value_set` returns a `TreeUpdateBatch` (new nodes + values +
//! stale-node list) without writing anything. A child block is computed through an [`Overlay`]
//! reader that looks in the parent's (uncommitted) batches first and then in redb. Discarding a
//! speculative block is dropping its batch.

use anyhow::Result;
use jmt::{
    KeyHash, OwnedValue, Version,
    storage::{LeafNode, Node, NodeKey, TreeReader, TreeUpdateBatch},
};
use redb::{Database, ReadOnlyTable, TableDefinition};
use std::path::Path;

const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("nodes");
const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("values");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub struct Store {
    pub db: Database,
    /// Experiment knobs (environment): `JMT_KEY=be` stores a node under big-endian version
    /// then path, so a block's new nodes are one contiguous run of the B-tree instead of
    /// random inserts (borsh puts the version first but little-endian); `JMT_DEFER_STALE=1`
    /// leaves stale nodes to a separate pass ([`Store::prune`]) instead of the block's commit;
    /// `JMT_DURABILITY=none` commits without fsync (what sharing the block store's one fsync
    /// would save).
    pub be_keys: bool,
    pub defer_stale: bool,
    pub no_fsync: bool,
    /// Stale node keys waiting for [`Store::prune`].
    pub stale: std::cell::RefCell<Vec<Vec<u8>>>,
}

fn env_is(k: &str, v: &str) -> bool {
    std::env::var(k).is_ok_and(|x| x == v)
}

/// A node's key in the `nodes` table.
pub fn node_key_bytes(be: bool, k: &NodeKey) -> Result<Vec<u8>> {
    if be {
        let mut out = k.version().to_be_bytes().to_vec();
        out.extend(borsh::to_vec(k.nibble_path())?);
        Ok(out)
    } else {
        Ok(borsh::to_vec(k)?)
    }
}

impl Store {
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(dir.join("state.redb"))?;
        {
            let w = db.begin_write()?;
            w.open_table(NODES)?;
            w.open_table(VALUES)?;
            w.open_table(META)?;
            w.commit()?;
        }
        Ok(Self {
            db,
            be_keys: env_is("JMT_KEY", "be"),
            defer_stale: env_is("JMT_DEFER_STALE", "1"),
            no_fsync: env_is("JMT_DURABILITY", "none"),
            stale: Default::default(),
        })
    }

    /// Deletes the stale nodes deferred by earlier commits (the background pass), one
    /// transaction.
    pub fn prune(&self) -> Result<usize> {
        let keys: Vec<Vec<u8>> = std::mem::take(&mut *self.stale.borrow_mut());
        let mut w = self.db.begin_write()?;
        if self.no_fsync {
            w.set_durability(redb::Durability::None);
        }
        {
            let mut nodes = w.open_table(NODES)?;
            for k in &keys {
                nodes.remove(k.as_slice())?;
            }
        }
        w.commit()?;
        Ok(keys.len())
    }

    /// Latest committed version (block height), if any.
    pub fn latest_version(&self) -> Result<Option<Version>> {
        let r = self.db.begin_read()?;
        let t = r.open_table(META)?;
        Ok(t.get("version")?.map(|g| g.value()))
    }

    /// A consistent read snapshot (an MVCC read transaction of redb).
    pub fn snapshot(&self) -> Result<Snapshot> {
        let r = self.db.begin_read()?;
        Ok(Snapshot {
            nodes: r.open_table(NODES)?,
            values: r.open_table(VALUES)?,
            be: self.be_keys,
        })
    }

    /// Commit one block's batch durably (one redb write transaction, fsync'd), deleting the
    /// nodes the batch made stale.
    pub fn commit(&self, version: Version, batch: &TreeUpdateBatch) -> Result<()> {
        let mut w = self.db.begin_write()?;
        if self.no_fsync {
            w.set_durability(redb::Durability::None);
        }
        {
            let mut nodes = w.open_table(NODES)?;
            let mut new: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for (k, n) in batch.node_batch.nodes() {
                new.push((node_key_bytes(self.be_keys, k)?, borsh::to_vec(n)?));
            }
            new.sort();
            for (k, n) in &new {
                nodes.insert(k.as_slice(), n.as_slice())?;
            }
            for stale in &batch.stale_node_index_batch {
                let k = node_key_bytes(self.be_keys, &stale.node_key)?;
                if self.defer_stale {
                    self.stale.borrow_mut().push(k);
                } else {
                    nodes.remove(k.as_slice())?;
                }
            }
            let mut values = w.open_table(VALUES)?;
            for ((v, kh), val) in batch.node_batch.values() {
                match val {
                    Some(val) => {
                        let mut buf = Vec::with_capacity(8 + val.len());
                        buf.extend_from_slice(&v.to_le_bytes());
                        buf.extend_from_slice(val);
                        values.insert(kh.0.as_slice(), buf.as_slice())?;
                    }
                    None => {
                        values.remove(kh.0.as_slice())?;
                    }
                }
            }
            let mut meta = w.open_table(META)?;
            meta.insert("version", version)?;
        }
        w.commit()?;
        Ok(())
    }
}

pub struct Snapshot {
    nodes: ReadOnlyTable<&'static [u8], &'static [u8]>,
    values: ReadOnlyTable<&'static [u8], &'static [u8]>,
    be: bool,
}

impl TreeReader for Snapshot {
    fn get_node_option(&self, node_key: &NodeKey) -> Result<Option<Node>> {
        let k = node_key_bytes(self.be, node_key)?;
        Ok(match self.nodes.get(k.as_slice())? {
            Some(g) => Some(borsh::from_slice(g.value())?),
            None => None,
        })
    }

    fn get_value_option(&self, max_version: Version, key_hash: KeyHash) -> Result<Option<OwnedValue>> {
        // Latest-only value table: good for reads at the latest committed version. Keeping
        // history would key this table by (key_hash, version) and range-scan backwards.
        Ok(match self.values.get(key_hash.0.as_slice())? {
            Some(g) => {
                let b = g.value();
                let v = u64::from_le_bytes(b[..8].try_into().unwrap());
                (v <= max_version).then(|| b[8..].to_vec())
            }
            None => None,
        })
    }

    fn get_rightmost_leaf(&self) -> Result<Option<(NodeKey, LeafNode)>> {
        // Only used by jmt's restore/migration paths, which the spike does not use.
        Ok(None)
    }
}

/// Reader for a speculative block: its uncommitted ancestors' batches (newest last) over redb.
pub struct Overlay<'a> {
    pub base: &'a Snapshot,
    pub layers: Vec<&'a TreeUpdateBatch>,
}

impl TreeReader for Overlay<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> Result<Option<Node>> {
        for l in self.layers.iter().rev() {
            if let Some(n) = l.node_batch.get_node(node_key) {
                return Ok(Some(n.clone()));
            }
        }
        self.base.get_node_option(node_key)
    }

    fn get_value_option(&self, max_version: Version, key_hash: KeyHash) -> Result<Option<OwnedValue>> {
        for l in self.layers.iter().rev() {
            if let Some((_, v)) = l
                .node_batch
                .values()
                .iter()
                .rev()
                .find(|((v, k), _)| *k == key_hash && *v <= max_version)
            {
                return Ok(v.clone());
            }
        }
        self.base.get_value_option(max_version, key_hash)
    }

    fn get_rightmost_leaf(&self) -> Result<Option<(NodeKey, LeafNode)>> {
        Ok(None)
    }
}
