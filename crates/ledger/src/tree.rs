//! The authenticated state tree: a Jellyfish Merkle tree (the `jmt` crate) over a digest of every
//! state entry, so a block's state root costs O(changes × log n) instead of hashing the whole
//! state, and any entry (or its absence) can be proven against a block header.
//!
//! - A leaf's key is `sha256(STATE_KEY tag ‖ borsh(StateKey))` (a record's starts with its
//!   id's clock to the minute instead, so new records cluster: [`key_hash`]); its value is the
//!   32-byte `tagged_hash(STATE_ENTRY, borsh(entry))`. The tree never holds an entry itself, so
//!   a proof (which shows the leaf on the key's path and single-leaf siblings) reveals
//!   neighbours' key hashes and value digests, never their contents; a neighbouring record's
//!   key shows the minute its id was made. A guessable key's hash can still be
//!   matched against them, so the node limits whose proofs it serves
//!   (`node::visibility::may_prove_entry`).
//! - The root depends only on the set of entries, not on the history that produced it: a node
//!   that restarts rebuilds the tree from its stored entries and must reach the header's root.
//! - The nodes written since the state's store snapshot ([`crate::cold`]) live in a persistent
//!   map (`immutable-chunkmap`): cloning a state is O(1) and a block's post-state shares every
//!   node it did not change with its parent, so speculative states of unfinalized blocks cost
//!   their changes, not a copy. Older nodes are read from the snapshot. Nodes that a write
//!   replaced are listed, so the node deletes them from its store when the block commits.

use crate::{cold::Cold, state::StateKey};
use ehrchain_types::{Hash, domain, encode};
use immutable_chunkmap::map::Map;
use jmt::{
    KeyHash, OwnedValue, RootHash, Sha256Jmt, Version,
    proof::SparseMerkleProof,
    storage::{LeafNode, Node, NodeKey, TreeReader},
};
use std::sync::Arc;

/// Tag of a leaf key.
pub const STATE_KEY: &[u8] = b"ehrchain/state-key/v2";
/// Tag of a leaf value (the digest of an entry's encoding).
pub const STATE_ENTRY: &[u8] = b"ehrchain/state-entry/v1";

/// How many leading bytes of a record's id (its clock) lead its leaf key: four of the six,
/// the clock in steps of 65.536 s.
pub const RECORD_KEY_CLOCK_BYTES: usize = 4;

/// The tree's leaf key for a state key: `sha256(STATE_KEY tag ‖ borsh(key))`, except that a
/// record's key starts with its id's clock to the minute (the first
/// [`RECORD_KEY_CLOCK_BYTES`] bytes of the id) instead of the hash's first four bytes.
/// Records are almost all of the state and come in time order, so a block's new records
/// land in the subtree of the current minute, whose nodes are recent and cached, instead of
/// replacing a whole path per record at a random place in the tree (ADR 0008, fourth part).
/// Within a minute the key is a hash, so that subtree is balanced and a proof's neighbouring
/// leaves show at most that other records were made in the same minute. Distinct keys still
/// differ in 28 hash bytes. Records' paths start with the clock's slowly changing bytes, so
/// they are a few levels deeper than with plain hashes.
pub fn key_hash(key: &StateKey) -> KeyHash {
    let mut hash = domain::tagged_hash(STATE_KEY, &[&encode(key)]).0;
    if let StateKey::Record(id) = key {
        hash[..RECORD_KEY_CLOCK_BYTES].copy_from_slice(&id.0[..RECORD_KEY_CLOCK_BYTES]);
    }
    KeyHash(hash)
}

/// The tree's leaf value for an entry's encoding.
pub fn entry_digest(encoded: &[u8]) -> [u8; 32] {
    domain::tagged_hash(STATE_ENTRY, &[encoded]).0
}

/// The header's state root: the tree's root bound to the chain id.
pub fn state_root(chain_id: &str, tree_root: &[u8; 32]) -> Hash {
    domain::tagged_hash(
        domain::STATE_ROOT,
        &[&encode(&chain_id.to_string()), tree_root],
    )
}

/// A node's key, packed into a fixed array so the persistent map copies chunks with no
/// allocation: version (big-endian), nibble count, then the path's bytes.
type PackedKey = crate::cold::TreeNodeKey;

fn pack(k: &NodeKey) -> PackedKey {
    let mut out = [0u8; 41];
    out[..8].copy_from_slice(&k.version().to_be_bytes());
    let path = k.nibble_path();
    out[8] = path.num_nibbles() as u8;
    for (i, nibble) in path.nibbles().enumerate() {
        out[9 + i / 2] |= u8::from(nibble) << if i % 2 == 0 { 4 } else { 0 };
    }
    out
}

/// Nodes by key, each with the height of the block that wrote it.
type Nodes = Map<PackedKey, (u64, Arc<Node>), { crate::pmap::CHUNK }>;
/// Keys of replaced nodes, each with the height of the block that replaced it.
type Stale = Map<PackedKey, u64, { crate::pmap::CHUNK }>;

/// The tree of one state. Cloning shares every node.
#[derive(Clone, Default)]
pub struct Tree {
    /// Nodes written since the snapshot `cold` (all of them when there is none).
    nodes: Nodes,
    /// Nodes replaced since the snapshot: the store deletes them when the state commits.
    stale: Stale,
    cold: Option<Arc<dyn Cold>>,
    /// The version of the newest root: jmt reads a tree's root at the version before the one
    /// it writes, so versions count writes (one per block that changed the state), not
    /// heights. They are not part of any hash, so nodes need not agree on them. `None` while
    /// the tree has never been written.
    version: Option<Version>,
    root: [u8; 32],
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("nodes", &self.nodes.len())
            .field("stale", &self.stale.len())
            .field("cold", &self.cold.is_some())
            .field("version", &self.version)
            .field("root", &hex::encode(self.root))
            .finish()
    }
}

impl PartialEq for Tree {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}
impl Eq for Tree {}

/// What walking a tree from its root found ([`Tree::check`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeCheck {
    /// Nodes reached.
    pub nodes: u64,
    /// Nodes a parent points to that neither memory nor the store holds.
    pub missing: u64,
    /// Nodes whose hash differs from the one their parent (or the root) records, or whose
    /// stored bytes do not decode.
    pub bad_hashes: u64,
}

/// The root of an empty tree (jmt's placeholder hash, which jmt does not export).
const EMPTY_ROOT: [u8; 32] = *b"SPARSE_MERKLE_PLACEHOLDER_HASH__";

/// The proof type: jmt's, over SHA-256.
pub type StateProof = SparseMerkleProof<sha2_10::Sha256>;

/// Reads the tree's nodes; the one value it can answer is the digest of the key being proven.
struct Reader<'a> {
    nodes: &'a Nodes,
    cold: Option<&'a dyn Cold>,
    value: Option<(KeyHash, [u8; 32])>,
    /// Answer a null root at version 0 (a tree never written).
    empty: bool,
}

/// The node under `key`: written since the snapshot (`nodes`), else read from the snapshot
/// `cold` and decoded.
fn node_at(
    nodes: &Nodes,
    cold: Option<&dyn Cold>,
    key: &PackedKey,
) -> Option<Result<Node, std::io::Error>> {
    if let Some((_, n)) = nodes.get(key) {
        return Some(Ok(Node::clone(n)));
    }
    let bytes = cold?.tree_node(key)?;
    Some(borsh::from_slice(&bytes))
}

impl TreeReader for Reader<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        if self.empty && node_key.version() == 0 && node_key.nibble_path().num_nibbles() == 0 {
            return Ok(Some(Node::Null));
        }
        Ok(node_at(self.nodes, self.cold, &pack(node_key)).transpose()?)
    }

    fn get_value_option(
        &self,
        _max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self
            .value
            .filter(|(k, _)| *k == key_hash)
            .map(|(_, v)| v.to_vec()))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Only jmt's restore path asks for it, and this tree is never restored that way.
        Ok(None)
    }
}

impl Tree {
    /// The current root of the tree (jmt's placeholder for an empty tree).
    pub fn root(&self) -> [u8; 32] {
        if self.version.is_none() {
            EMPTY_ROOT
        } else {
            self.root
        }
    }

    /// How many nodes the tree holds in memory (written since its snapshot).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Walks the tree at its newest version from its root, through memory and the store,
    /// checking every node's hash against what its parent (or the root) says. O(n) reads;
    /// for offline checks and tests.
    pub fn check(&self) -> TreeCheck {
        let mut out = TreeCheck::default();
        let Some(version) = self.version else {
            return out;
        };
        // `Some(None)`: stored bytes that do not decode.
        let node =
            |key: &PackedKey| node_at(&self.nodes, self.cold.as_deref(), key).map(Result::ok);
        let mut root = [0u8; 41];
        root[..8].copy_from_slice(&version.to_be_bytes());
        let mut todo = vec![(root, self.root)];
        while let Some((key, expected)) = todo.pop() {
            let Some(n) = node(&key) else {
                out.missing += 1;
                continue;
            };
            let Some(n) = n else {
                out.bad_hashes += 1;
                continue;
            };
            out.nodes += 1;
            let hash = match &n {
                Node::Null => EMPTY_ROOT,
                Node::Leaf(leaf) => leaf.hash::<sha2_10::Sha256>(),
                Node::Internal(internal) => internal.hash::<sha2_10::Sha256>(),
            };
            out.bad_hashes += u64::from(hash != expected);
            if let Node::Internal(internal) = n {
                let depth = key[8] as usize;
                for (nibble, child) in internal.children_sorted() {
                    let mut k = key;
                    k[..8].copy_from_slice(&child.version.to_be_bytes());
                    k[8] = depth as u8 + 1;
                    k[9 + depth / 2] |=
                        u8::from(nibble) << if depth.is_multiple_of(2) { 4 } else { 0 };
                    todo.push((k, child.hash));
                }
            }
        }
        out
    }

    /// A tree stored in a node's store: its newest version and root, read through `cold`.
    pub fn stored(version: Option<Version>, root: [u8; 32], cold: Arc<dyn Cold>) -> Tree {
        Tree {
            version,
            root,
            cold: Some(cold),
            ..Tree::default()
        }
    }

    /// The newest version and the root, for the store.
    pub fn version_and_root(&self) -> (Option<Version>, [u8; 32]) {
        (self.version, self.root)
    }

    /// What the store writes when the block at `height` commits: the nodes it wrote,
    /// borsh-encoded, and the keys of the nodes it replaced (which may include nodes it wrote
    /// itself; deleting a key the store lacks changes nothing), each in key order.
    pub fn changes(&self, height: u64) -> (Vec<(PackedKey, Vec<u8>)>, Vec<PackedKey>) {
        let nodes = (&self.nodes)
            .into_iter()
            .filter(|(_, (h, _))| *h == height)
            .map(|(k, (_, n))| (*k, borsh::to_vec(&**n).expect("a node encodes")))
            .collect();
        let stale = (&self.stale)
            .into_iter()
            .filter(|(_, h)| **h == height)
            .map(|(k, _)| *k)
            .collect();
        (nodes, stale)
    }

    /// Drops from memory what blocks up to `committed` wrote or replaced, now that the store
    /// holds it and `cold` is a snapshot taken after ([`crate::State::rebase`]).
    pub fn rebase(&mut self, cold: Arc<dyn Cold>, committed: u64) {
        let mut nodes = Nodes::default();
        for (k, v) in &self.nodes {
            if v.0 > committed {
                nodes.insert_cow(*k, v.clone());
            }
        }
        let mut stale = Stale::default();
        for (k, h) in &self.stale {
            if *h > committed {
                stale.insert_cow(*k, *h);
            }
        }
        self.nodes = nodes;
        self.stale = stale;
        self.cold = Some(cold);
    }

    /// Writes one block's changes (`None` deletes a leaf). Nothing to write keeps the tree.
    /// Inserts and updates go in one sorted batch (jmt's batch path makes each new node
    /// once); deletions, which that path cannot do, follow as a version of their own.
    pub fn update(&mut self, changes: Vec<(KeyHash, Option<[u8; 32]>)>, height: u64) {
        let (puts, dels): (Vec<_>, Vec<_>) = changes.into_iter().partition(|(_, v)| v.is_some());
        if !puts.is_empty() {
            let puts = puts
                .into_iter()
                .map(|(k, v)| (k, v.expect("partitioned").to_vec()))
                .collect();
            self.write(height, |jmt, version| {
                jmt.batch_put_value_sets(vec![puts], None, version)
            });
        }
        if !dels.is_empty() {
            self.write(height, |jmt, version| {
                jmt.put_value_sets(vec![dels.into_iter().map(|(k, _)| (k, None))], version)
            });
        }
    }

    /// Applies one jmt write as the tree's next version.
    fn write(
        &mut self,
        height: u64,
        f: impl FnOnce(
            &Sha256Jmt<'_, Reader<'_>>,
            Version,
        ) -> anyhow::Result<(Vec<RootHash>, jmt::storage::TreeUpdateBatch)>,
    ) {
        let version = self.version.map_or(0, |v| v + 1);
        let reader = Reader {
            nodes: &self.nodes,
            cold: self.cold.as_deref(),
            value: None,
            empty: false,
        };
        let (roots, batch) = f(&Sha256Jmt::new(&reader), version)
            // jmt fails only when a node it wrote earlier is missing: a broken invariant.
            .expect("the state tree holds every node it wrote");
        let root = *roots.last().expect("one value set, one root");
        if self.version.is_some() && root.0 == self.root {
            // Nothing changed (deleting entries the tree does not hold, say): jmt would copy
            // the root under the new version without replacing the old one, which would stay
            // in the store for good. The same entries give the same nodes: keep them.
            return;
        }
        // One at a time: the persistent map's `insert_many` is far slower at this chunk size
        // (measured: 3.3 s against 0.19 s for 400,000 keys).
        for stale in &batch.stale_node_index_batch {
            let key = pack(&stale.node_key);
            // A node written since the snapshot may be in the store too (the commit of a parent
            // this state was built on before it committed wrote it): list it anyway.
            self.nodes.remove_cow(&key);
            if self.cold.is_some() {
                self.stale.insert_cow(key, height);
            }
        }
        for (k, n) in batch.node_batch.nodes() {
            self.nodes
                .insert_cow(pack(k), (height, Arc::new(n.clone())));
        }
        self.version = Some(version);
        self.root = root.0;
    }

    /// A proof of `key`'s digest (or of its absence) against [`Self::root`]. `digest` is the
    /// key's current entry digest, if it has one.
    pub fn prove(&self, key: &StateKey, digest: Option<[u8; 32]>) -> StateProof {
        let kh = key_hash(key);
        let reader = Reader {
            nodes: &self.nodes,
            cold: self.cold.as_deref(),
            value: digest.map(|d| (kh, d)),
            empty: self.version.is_none(),
        };
        let version = self.version.unwrap_or(0);
        let (_, proof) = Sha256Jmt::new(&reader)
            .get_with_proof(kh, version)
            .expect("the state tree holds every node on a path");
        proof
    }
}

/// Checks a proof: `digest` is the entry's digest, or `None` to prove absence.
pub fn verify_proof(
    proof: &StateProof,
    tree_root: &[u8; 32],
    key: &StateKey,
    digest: Option<[u8; 32]>,
) -> Result<(), String> {
    proof
        .verify(RootHash(*tree_root), key_hash(key), digest)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Grant, State, synthetic_record};
    use ehrchain_types::{AccountId, Grantee, RecordId};
    use std::collections::BTreeSet;

    /// Synthetic record `i` of a history of 20,000 made over five years.
    fn record(i: u64) -> crate::state::Record {
        synthetic_record(i, 20_000)
    }

    fn with_records(n: u64) -> State {
        let mut s = State::empty("t");
        for i in 0..n {
            s.insert_record(record(i));
        }
        s.rebuild_tree();
        s
    }

    fn grant() -> Grant {
        Grant {
            categories: vec![ehrchain_types::Category::Lab],
            expires_ms: None,
            write: false,
            granted_ms: 1,
            wraps: Vec::new(),
        }
    }

    #[test]
    fn the_root_depends_on_the_entries_not_on_their_history() {
        let all = with_records(300);
        // The same entries written over three "blocks", one of them overwritten on the way.
        let mut s = State::empty("t");
        for chunk in [0..100u64, 100..250, 250..300] {
            let mut touched = BTreeSet::new();
            for i in chunk {
                let mut r = record(i);
                touched.insert(StateKey::Record(r.id));
                if i == 120 {
                    r.size += 1;
                    s.insert_record(r.clone());
                    s.update_tree(&touched);
                    r.size -= 1;
                }
                s.insert_record(r);
            }
            s.update_tree(&touched);
        }
        assert_eq!(s.root(), all.root());
        assert_ne!(with_records(299).root(), all.root());
        // The chain id is bound in.
        let mut other = all.clone();
        other.chain_id = "u".into();
        assert_ne!(other.root(), all.root());
    }

    #[test]
    fn a_deleted_entry_leaves_the_root_it_never_touched() {
        let base = with_records(50);
        let mut s = base.clone();
        let key = (AccountId([1; 20]), Grantee::Account(AccountId([2; 20])));
        let touched = BTreeSet::from([StateKey::Grant(key.0, key.1.clone())]);
        s.grants.insert(key.clone(), grant());
        s.update_tree(&touched);
        assert_ne!(s.root(), base.root());
        // The parent (a clone taken before) is untouched: clones share, never alias.
        assert_eq!(base.root(), with_records(50).root());
        s.grants.remove(&key);
        s.update_tree(&touched);
        assert_eq!(s.root(), base.root());
    }

    #[test]
    fn proofs_of_a_value_and_of_absence_verify_and_fail_when_a_byte_changes() {
        let s = with_records(1000);
        let root = s.tree.root();
        let present = StateKey::Record(record(7).id);
        let (value, proof) = s.prove(&present);
        let value = value.expect("record 7 exists");
        let digest = entry_digest(&value);
        verify_proof(&proof, &root, &present, Some(digest)).expect("value proof");
        // A changed value, a claim of absence, another key: all refused.
        let mut changed = value.clone();
        changed[20] ^= 1;
        assert!(verify_proof(&proof, &root, &present, Some(entry_digest(&changed))).is_err());
        assert!(verify_proof(&proof, &root, &present, None).is_err());
        let absent = StateKey::Record(ehrchain_types::RecordId([0xee; 16]));
        assert!(verify_proof(&proof, &root, &absent, Some(digest)).is_err());
        // Every byte of the encoded proof matters (or the proof no longer decodes).
        let bytes = borsh::to_vec(&proof).expect("encode");
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            if let Ok(p) = borsh::from_slice::<StateProof>(&b) {
                assert!(
                    verify_proof(&p, &root, &present, Some(digest)).is_err(),
                    "byte {i}"
                );
            }
        }

        // Absence: no grant to X.
        let g = StateKey::Grant(AccountId([1; 20]), Grantee::Account(AccountId([2; 20])));
        let (none, proof) = s.prove(&g);
        assert!(none.is_none());
        verify_proof(&proof, &root, &g, None).expect("absence proof");
        assert!(verify_proof(&proof, &root, &g, Some([0; 32])).is_err());
        // ...and a proof of absence does not carry a neighbour's entry, only hashes.
        let encoded = borsh::to_vec(&proof).expect("encode");
        let neighbour_meta = &record(0).meta.0[..16];
        assert!(!encoded.windows(16).any(|w| w == neighbour_meta));

        // An empty state proves absence too.
        let empty = State::empty("t");
        let (none, proof) = empty.prove(&g);
        assert!(none.is_none());
        verify_proof(&proof, &empty.tree.root(), &g, None).expect("empty tree");
    }

    /// A block adding `ids`' records to `base` (at height 1): how many tree nodes it writes and
    /// how many it replaces.
    fn block_of_records(base: &State, ids: &[RecordId]) -> (usize, usize) {
        let mut s = base.clone();
        s.begin_block(1);
        let mut touched = BTreeSet::new();
        for (i, id) in ids.iter().enumerate() {
            let mut r = record(1_000_000 + i as u64);
            r.id = *id;
            touched.insert(StateKey::Record(r.id));
            s.insert_record(r);
        }
        s.update_tree(&touched);
        let written = s.tree.changes(1).0.len();
        // A tree with no store snapshot drops the nodes it replaces.
        let replaced = base.tree.nodes.len() + written - s.tree.nodes.len();
        (written, replaced)
    }

    #[test]
    fn records_made_in_time_order_share_one_region_of_the_tree() {
        let id = RecordId::time_ordered(0x0102_0304_0506, [7; 10]);
        assert_eq!(id.0[..6], [1, 2, 3, 4, 5, 6]);
        assert_eq!(key_hash(&StateKey::Record(id)).0[..4], [1, 2, 3, 4]);
        // The rest of a record's key, and every other key, is the tagged hash.
        let hashed = domain::tagged_hash(STATE_KEY, &[&encode(&StateKey::Record(id))]).0;
        assert_eq!(key_hash(&StateKey::Record(id)).0[4..], hashed[4..]);
        let g = StateKey::Grant(AccountId([1; 20]), Grantee::Account(AccountId([2; 20])));
        assert_eq!(
            key_hash(&g).0,
            domain::tagged_hash(STATE_KEY, &[&encode(&g)]).0
        );

        // A block of 1,000 new records on 20,000 (made over five years): made within a second
        // (as clients make ids), against the same with clocks scattered over those five years
        // (each lands among the old records, as every record did when keys were plain hashes).
        let base = with_records(20_000);
        let random = |j: u64| -> [u8; 10] {
            domain::tagged_hash(b"test", &[&j.to_be_bytes()]).0[..10]
                .try_into()
                .expect("10 bytes")
        };
        let made_in_turn: Vec<RecordId> = (0..1_000u64)
            .map(|j| RecordId::time_ordered(1_800_000_000_000 + j, random(j)))
            .collect();
        let scattered: Vec<RecordId> = (0..1_000u64)
            .map(|j| {
                let (from, to) = (record(0).created_ms, record(19_999).created_ms);
                let r = u64::from_be_bytes(random(j + 7)[..8].try_into().expect("8"));
                RecordId::time_ordered(from + r % (to - from), random(j))
            })
            .collect();
        let (in_turn_written, in_turn_replaced) = block_of_records(&base, &made_in_turn);
        let (scattered_written, scattered_replaced) = block_of_records(&base, &scattered);
        // Made in turn, they replace one path of the tree, not one per record, and write about
        // a node per record (their leaves) instead of a path each.
        assert!(
            in_turn_replaced * 20 < scattered_replaced,
            "{in_turn_replaced} vs {scattered_replaced} nodes replaced"
        );
        assert!(
            in_turn_written * 3 < scattered_written * 2,
            "{in_turn_written} vs {scattered_written} nodes written"
        );
    }
}
