//! Persistent ordered maps and sets for the state: `immutable-chunkmap`'s, behind the handful
//! of `BTreeMap`/`BTreeSet` methods the ledger uses. Cloning is O(1) and a clone that changes
//! copies only the paths it touches, so the post-state of a block shares everything it did
//! not change with its parent.
//!
//! A write to a shared map copies the chunk it lands in, so chunks are small ([`CHUNK`]) and
//! values sit behind an `Arc` (a copy moves pointers, never records).

use immutable_chunkmap::{map::Map, set::Set};
use std::{borrow::Borrow, ops::RangeBounds, sync::Arc};

/// Entries per chunk of the persistent maps (the crate's default, 512, makes every first
/// write to a shared chunk copy 512 entries).
pub const CHUNK: usize = 32;

/// A persistent ordered map.
#[derive(Clone, PartialEq, Eq)]
pub struct PMap<K: Ord + Clone, V: Clone>(Map<K, Arc<V>, CHUNK>);

impl<K: Ord + Clone, V: Clone> Default for PMap<K, V> {
    fn default() -> Self {
        PMap(Map::new())
    }
}

impl<K: Ord + Clone + std::fmt::Debug, V: Clone + std::fmt::Debug> std::fmt::Debug for PMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone, V: Clone> PMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get<Q: ?Sized + Ord>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.0.get(k).map(|v| &**v)
    }

    pub fn contains_key<Q: ?Sized + Ord>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.get(k).is_some()
    }

    /// Inserts, returning the value it replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.0.insert_cow(k, Arc::new(v)).map(Arc::unwrap_or_clone)
    }

    /// Removes, returning the value it held.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.0.remove_cow(k).map(Arc::unwrap_or_clone)
    }

    /// The value under `k`, inserting `V::default()` first if there is none.
    pub fn get_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        Arc::make_mut(self.0.get_or_default_cow(k))
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.0.get_mut_cow(k).map(Arc::make_mut)
    }

    pub fn range<'a, Q, R>(&'a self, r: R) -> impl DoubleEndedIterator<Item = (&'a K, &'a V)> + 'a
    where
        Q: Ord + ?Sized + 'a,
        K: Borrow<Q>,
        R: RangeBounds<Q> + 'a,
    {
        self.0.range(r).map(|(k, v)| (k, &**v))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        (&self.0).into_iter().map(|(k, v)| (k, &**v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

impl<K: Ord + Clone, V: Clone> std::ops::Index<&K> for PMap<K, V> {
    type Output = V;
    fn index(&self, k: &K) -> &V {
        self.get(k).expect("no entry for the key")
    }
}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for PMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Map::new();
        for (k, v) in iter {
            map.insert_cow(k, Arc::new(v));
        }
        PMap(map)
    }
}

/// A persistent ordered set.
#[derive(Clone, PartialEq, Eq)]
pub struct PSet<K: Ord + Clone>(Set<K, CHUNK>);

impl<K: Ord + Clone> Default for PSet<K> {
    fn default() -> Self {
        PSet(Set::new())
    }
}

impl<K: Ord + Clone + std::fmt::Debug> std::fmt::Debug for PSet<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone> PSet<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts, returning whether `k` was new.
    pub fn insert(&mut self, k: K) -> bool {
        !self.0.insert_cow(k)
    }

    pub fn remove(&mut self, k: &K) -> bool {
        self.0.remove_cow(k)
    }

    pub fn contains(&self, k: &K) -> bool {
        self.0.contains(k)
    }

    pub fn range<'a, Q, R>(&'a self, r: R) -> impl DoubleEndedIterator<Item = &'a K> + 'a
    where
        Q: Ord + ?Sized + 'a,
        K: Borrow<Q>,
        R: RangeBounds<Q> + 'a,
    {
        self.0.range(r)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        (&self.0).into_iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}
