//! Erasure coding of blobs across the validators (issue 16): a record's ciphertext is split
//! into stripes of [`STRIPE_BYTES`], each stripe is Reed-Solomon encoded into `n` shards (one
//! per validator) under a Merkle commitment (`commonware-coding`), and any `k` checked shards
//! rebuild the stripe. With `f = (n - 1) / 3` faulty validators tolerated, `k = f + 1`.
//!
//! A [`Manifest`] describes a coded blob: its content hash (the CID digest), size, the coding
//! parameters and one commitment per stripe. [`encode_blob`] streams a blob stripe by stripe
//! (memory: one stripe and its shards), [`check_shard`] verifies one shard against the
//! manifest before it is stored, [`decode_blob`] gathers, checks and rebuilds every stripe and
//! verifies the content hash. [`ShardStore`] keeps a node's manifests and shards on disk.
//!
//! Encoding and decoding are blocking CPU work (tens of milliseconds per stripe): async callers
//! run them on `spawn_blocking`, or drive [`encode_stripe`], [`check_shard`] and
//! [`decode_stripe`] themselves when shards arrive over the network.
//!
//! Shards are kept in their `commonware-codec` encoding (bytes on disk and on the wire) and
//! checked again whenever they are read: a checked shard has no encoding of its own.

use bytes::Bytes;
use commonware_codec::{Decode, Encode};
use commonware_coding::{Config, ReedSolomon, Scheme};
use commonware_cryptography::sha256;
use commonware_parallel::Sequential;
use ehrchain_types::{Hash, domain};
use futures::StreamExt;
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, local::LocalFileSystem, path::Path as ObjPath,
};
use sha2::{Digest as _, Sha256};
use std::{
    io::{Read, Write},
    num::NonZeroU16,
    path::Path,
    sync::Arc,
};

/// Bytes of ciphertext per stripe (the last stripe of a blob may be shorter).
pub const STRIPE_BYTES: usize = 4 << 20;

/// Largest number of shards (validators) a manifest may name. Decoding rebuilds all `n` shards
/// of a stripe, so an unbounded `n` from an untrusted manifest would cost unbounded work.
pub const MAX_SHARDS: u16 = 1024;

type Rs = ReedSolomon<commonware_cryptography::Sha256>;
type Shard = <Rs as Scheme>::Shard;
type CheckedShard = <Rs as Scheme>::CheckedShard;

/// Why encoding, checking or rebuilding a coded blob failed.
#[derive(Debug, thiserror::Error)]
pub enum CodingError {
    /// The manifest is not self-consistent (or does not fit the data it describes).
    #[error("invalid coding manifest: {0}")]
    Manifest(String),
    /// A shard failed its check (decoding, index or Merkle proof against the commitment).
    #[error("shard {index} of stripe {stripe} is invalid: {why}")]
    BadShard {
        stripe: u32,
        index: u16,
        why: String,
    },
    /// Fewer than `k` good shards of a stripe could be gathered.
    #[error("stripe {stripe} cannot be rebuilt: {good} good shards of the {needed} needed")]
    Unavailable { stripe: u32, good: u16, needed: u16 },
    /// `k` checked shards did not decode to the committed stripe (a malformed encoding).
    #[error("stripe {stripe} cannot be rebuilt: {why}")]
    Undecodable { stripe: u32, why: String },
    /// The rebuilt bytes do not hash to the manifest's content.
    #[error(
        "rebuilt content does not match the manifest (expected sha2-256 {expected}, got {got})"
    )]
    Mismatch { expected: Hash, got: Hash },
    /// The blob is larger than a manifest can describe.
    #[error("blob is too large to encode")]
    TooLarge,
    /// Reed-Solomon encoding failed.
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("reading the blob: {0}")]
    Read(std::io::Error),
    #[error("writing the blob: {0}")]
    Write(std::io::Error),
    /// The caller's shard sink failed.
    #[error("{0}")]
    Sink(Box<dyn std::error::Error + Send + Sync>),
}

/// Coding parameters: `n` shards per stripe, any `k` of which rebuild it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub n: u16,
    pub k: u16,
}

impl Params {
    /// The parameters for `n` validators: `k = f + 1` with `f = (n - 1) / 3`. `None` when there
    /// is a single validator (it keeps whole blobs) or more than [`MAX_SHARDS`].
    pub fn for_validators(n: usize) -> Option<Params> {
        let n = u16::try_from(n)
            .ok()
            .filter(|n| (2..=MAX_SHARDS).contains(n))?;
        Some(Params {
            n,
            k: (n - 1) / 3 + 1,
        })
    }

    fn config(self) -> Result<Config, CodingError> {
        if self.n > MAX_SHARDS || self.k == 0 || self.k >= self.n {
            return Err(CodingError::Manifest(format!(
                "cannot code {} shards with {} needed (1 <= k < n <= {MAX_SHARDS})",
                self.n, self.k
            )));
        }
        match (NonZeroU16::new(self.k), NonZeroU16::new(self.n - self.k)) {
            (Some(minimum_shards), Some(extra_shards)) => Ok(Config {
                minimum_shards,
                extra_shards,
            }),
            _ => Err(CodingError::Manifest(
                "k must be between 1 and n - 1".into(),
            )),
        }
    }
}

/// A coded blob: what its shards commit to. Its [`root`](Manifest::root) names it.
///
/// An empty blob has no stripes (and no shards).
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    borsh::BorshSerialize,
    borsh::BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Manifest {
    /// SHA-256 of the whole ciphertext (the CID's digest).
    pub content: Hash,
    /// Ciphertext bytes.
    pub size: u64,
    /// Bytes per stripe (the last may be shorter).
    pub stripe_bytes: u32,
    /// Shards per stripe.
    pub n: u16,
    /// Shards needed to rebuild a stripe.
    pub k: u16,
    /// The Reed-Solomon commitment (Merkle root over its `n` shards) of each stripe.
    pub stripes: Vec<Hash>,
}

impl Manifest {
    /// Tagged hash of every field (fixed-width big-endian integers, then the commitments).
    pub fn root(&self) -> Hash {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(6 + self.stripes.len());
        let size = self.size.to_be_bytes();
        let stripe_bytes = self.stripe_bytes.to_be_bytes();
        let n = self.n.to_be_bytes();
        let k = self.k.to_be_bytes();
        let count = (self.stripes.len() as u64).to_be_bytes();
        parts.extend([
            &self.content.0[..],
            &size[..],
            &stripe_bytes[..],
            &n[..],
            &k[..],
            &count[..],
        ]);
        parts.extend(self.stripes.iter().map(|s| &s.0[..]));
        domain::tagged_hash(domain::CODING_MANIFEST, &parts)
    }

    /// The coding parameters.
    pub fn params(&self) -> Params {
        Params {
            n: self.n,
            k: self.k,
        }
    }

    /// Bytes of ciphertext in stripe `i` (0 past the end).
    pub fn stripe_len(&self, i: u32) -> usize {
        let start = u64::from(i) * u64::from(self.stripe_bytes);
        // Bounded by `stripe_bytes`, so the cast cannot truncate.
        self.size
            .saturating_sub(start)
            .min(u64::from(self.stripe_bytes)) as usize
    }

    /// Checks the manifest is self-consistent: `1 <= k < n <= MAX_SHARDS`, a stripe size of at
    /// most [`STRIPE_BYTES`], and one commitment per stripe (none for an empty blob).
    pub fn check(&self) -> Result<(), CodingError> {
        self.params().config()?;
        if self.stripe_bytes == 0 || self.stripe_bytes as usize > STRIPE_BYTES {
            return Err(CodingError::Manifest(format!(
                "stripe size {} is not between 1 and {STRIPE_BYTES}",
                self.stripe_bytes
            )));
        }
        let expected = self.size.div_ceil(u64::from(self.stripe_bytes));
        if self.stripes.len() as u64 != expected {
            return Err(CodingError::Manifest(format!(
                "{} stripe commitments for {} bytes (expected {expected})",
                self.stripes.len(),
                self.size
            )));
        }
        Ok(())
    }

    fn commitment(&self, stripe: u32) -> Result<sha256::Digest, CodingError> {
        self.stripes
            .get(stripe as usize)
            .map(|h| sha256::Digest(h.0))
            .ok_or_else(|| {
                CodingError::Manifest(format!(
                    "stripe {stripe} is past the last of {}",
                    self.stripes.len()
                ))
            })
    }
}

/// A shard that passed [`check_shard`]: it belongs at its index of its stripe's commitment.
#[derive(Clone)]
pub struct Checked {
    pub stripe: u32,
    pub index: u16,
    shard: CheckedShard,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("stripe", &self.stripe)
            .field("index", &self.index)
            .finish()
    }
}

/// Encodes one stripe into `params.n` shards; returns the commitment and each shard's encoding
/// (position = shard index).
pub fn encode_stripe(params: Params, data: &[u8]) -> Result<(Hash, Vec<Bytes>), CodingError> {
    let cfg = params.config()?;
    if data.len() > STRIPE_BYTES {
        return Err(CodingError::Encode(format!(
            "a stripe holds at most {STRIPE_BYTES} bytes, not {}",
            data.len()
        )));
    }
    let (commitment, shards) =
        Rs::encode(&cfg, data, &Sequential).map_err(|e| CodingError::Encode(e.to_string()))?;
    Ok((
        Hash(commitment.0),
        shards.iter().map(|s| s.encode()).collect(),
    ))
}

/// Streams `reader` stripe by stripe, handing each stripe's commitment and encoded shards
/// (position = shard index) to `sink`, and returns the manifest. Holds one stripe and its shards
/// in memory at a time; the content hash is computed on the way.
pub fn encode_blob<E>(
    params: Params,
    mut reader: impl Read,
    mut sink: impl FnMut(u32, &Hash, Vec<Bytes>) -> Result<(), E>,
) -> Result<Manifest, CodingError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    params.config()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; STRIPE_BYTES];
    let mut stripes = Vec::new();
    let mut size = 0u64;
    loop {
        let len = fill(&mut reader, &mut buf).map_err(CodingError::Read)?;
        if len == 0 {
            break;
        }
        let data = &buf[..len];
        hasher.update(data);
        size += len as u64;
        let stripe = u32::try_from(stripes.len()).map_err(|_| CodingError::TooLarge)?;
        let (commitment, shards) = encode_stripe(params, data)?;
        sink(stripe, &commitment, shards).map_err(|e| CodingError::Sink(e.into()))?;
        stripes.push(commitment);
        if len < buf.len() {
            break;
        }
    }
    Ok(Manifest {
        content: Hash(hasher.finalize().into()),
        size,
        stripe_bytes: STRIPE_BYTES as u32,
        n: params.n,
        k: params.k,
        stripes,
    })
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match reader.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(r) => len += r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

/// Checks an encoded shard: it decodes within the stripe's size bound and its Merkle proof
/// places it at `index` of the stripe's commitment.
pub fn check_shard(
    manifest: &Manifest,
    stripe: u32,
    index: u16,
    bytes: Bytes,
) -> Result<Checked, CodingError> {
    manifest.check()?;
    let cfg = manifest.params().config()?;
    let commitment = manifest.commitment(stripe)?;
    let bad = |why: String| CodingError::BadShard { stripe, index, why };
    let shard = Shard::decode_cfg(bytes, &(cfg, manifest.stripe_len(stripe)))
        .map_err(|e| bad(format!("undecodable: {e}")))?;
    let shard =
        Rs::check(&cfg, &commitment, index, &shard, &Sequential).map_err(|e| bad(e.to_string()))?;
    Ok(Checked {
        stripe,
        index,
        shard,
    })
}

/// Rebuilds stripe `stripe` from at least `k` of its checked shards (extra ones are ignored).
pub fn decode_stripe(
    manifest: &Manifest,
    stripe: u32,
    shards: &[Checked],
) -> Result<Vec<u8>, CodingError> {
    let cfg = manifest.params().config()?;
    let commitment = manifest.commitment(stripe)?;
    let needed = manifest.k;
    if let Some(other) = shards.iter().find(|c| c.stripe != stripe) {
        return Err(CodingError::BadShard {
            stripe,
            index: other.index,
            why: format!("checked for stripe {}", other.stripe),
        });
    }
    if shards.len() < usize::from(needed) {
        return Err(CodingError::Unavailable {
            stripe,
            good: shards.len() as u16,
            needed,
        });
    }
    let data = Rs::decode(
        &cfg,
        &commitment,
        shards.iter().map(|c| &c.shard),
        &Sequential,
    )
    .map_err(|e| CodingError::Undecodable {
        stripe,
        why: e.to_string(),
    })?;
    let want = manifest.stripe_len(stripe);
    if data.len() != want {
        return Err(CodingError::Manifest(format!(
            "stripe {stripe} rebuilt to {} bytes, the manifest says {want}",
            data.len()
        )));
    }
    Ok(data)
}

/// What a rebuild ran into on the way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// Shards that failed their check: `(stripe, index, why)`. Their holders deserve a look.
    pub bad: Vec<(u32, u16, String)>,
    /// Shards asked for and not obtained: `(stripe, index)`.
    pub missing: Vec<(u32, u16)>,
    /// Bytes written.
    pub written: u64,
}

/// Rebuilds a blob into `out`, stripe by stripe. For each stripe, `fetch(stripe, index)` is
/// asked for shards starting at `prefer` (this node's own index) and wrapping around, until `k`
/// of them pass their check; wrong shards are skipped and reported, missing ones noted. A
/// stripe is only written once rebuilt, and the content hash is checked after the last one.
///
/// On an error, the stripes before the failing one have already been written: the caller must
/// write into a temporary file (or buffer) and discard it unless this returns `Ok`, so a
/// client never sees a partial or wrong file.
pub fn decode_blob(
    manifest: &Manifest,
    prefer: Option<u16>,
    mut fetch: impl FnMut(u32, u16) -> Option<Bytes>,
    mut out: impl Write,
) -> Result<DecodeReport, CodingError> {
    manifest.check()?;
    let n = manifest.n;
    let needed = usize::from(manifest.k);
    let start = prefer.filter(|p| *p < n).unwrap_or(0);
    let mut report = DecodeReport::default();
    let mut hasher = Sha256::new();
    for stripe in 0..manifest.stripes.len() as u32 {
        let mut good = Vec::with_capacity(needed);
        for i in 0..n {
            if good.len() == needed {
                break;
            }
            let index = ((u32::from(start) + u32::from(i)) % u32::from(n)) as u16;
            let Some(bytes) = fetch(stripe, index) else {
                report.missing.push((stripe, index));
                continue;
            };
            match check_shard(manifest, stripe, index, bytes) {
                Ok(c) => good.push(c),
                Err(CodingError::BadShard { why, .. }) => report.bad.push((stripe, index, why)),
                Err(e) => return Err(e),
            }
        }
        if good.len() < needed {
            return Err(CodingError::Unavailable {
                stripe,
                good: good.len() as u16,
                needed: manifest.k,
            });
        }
        let data = decode_stripe(manifest, stripe, &good)?;
        hasher.update(&data);
        out.write_all(&data).map_err(CodingError::Write)?;
        report.written += data.len() as u64;
    }
    out.flush().map_err(CodingError::Write)?;
    let got = Hash(hasher.finalize().into());
    if got != manifest.content {
        return Err(CodingError::Mismatch {
            expected: manifest.content,
            got,
        });
    }
    Ok(report)
}

/// Why a shard store operation failed. The storage detail (which may name files) is kept for
/// the log (`Debug`) and never displayed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("the node's shard storage is full")]
    DiskFull,
    #[error("the node's shard storage failed")]
    Io(String),
    /// A stored manifest does not decode or is inconsistent.
    #[error("a stored coding manifest is corrupt")]
    Corrupt(String),
    #[error(transparent)]
    Coding(#[from] CodingError),
}

impl From<object_store::Error> for ShardError {
    fn from(e: object_store::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && (io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28))
            {
                return ShardError::DiskFull;
            }
            source = s.source();
        }
        ShardError::Io(e.to_string())
    }
}

/// This node's manifests and shards: `<bucket>/<cid>/manifest` (borsh) and
/// `<bucket>/<cid>/<stripe>` (the node's encoded shard of that stripe), on the local
/// filesystem under `data_dir/shards` (writes are staged, fsynced and renamed into place).
/// The bucket is the hex of the content hash's first byte ([`bucket_of`]): no directory
/// holds more than about a 256th of the contents, and the chores walk the store a bucket at
/// a time, so their memory is a 256th of the contents', not all of it.
pub struct ShardStore {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for ShardStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardStore")
    }
}

/// The bucket of the shard store that holds `content`.
pub fn bucket_of(content: &Hash) -> u8 {
    content.0[0]
}

fn bucket_dir(bucket: u8) -> String {
    format!("{bucket:02x}")
}

fn dir(content: &Hash) -> ObjPath {
    ObjPath::from_iter([
        bucket_dir(bucket_of(content)),
        crate::blobs::cid_string(content),
    ])
}

/// Moves contents that an earlier version stored at the top level (`<cid>/…`) into their
/// buckets. Each move is one rename, so a node killed midway finds every content in one
/// place or the other, and finishes the moves when it next starts.
fn move_into_buckets(root: &Path) -> std::io::Result<usize> {
    let mut moved = 0;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(content) = name.to_str().and_then(|n| crate::blobs::parse_cid(n).ok()) else {
            continue;
        };
        let bucket = root.join(bucket_dir(bucket_of(&content)));
        std::fs::create_dir_all(&bucket)?;
        let to = bucket.join(&name);
        if to.exists() {
            // Stored again since (the move is a rename, so not half of one): keep the
            // newer files, move the others, drop the old directory.
            for f in std::fs::read_dir(entry.path())? {
                let f = f?;
                let t = to.join(f.file_name());
                if !t.exists() {
                    std::fs::rename(f.path(), t)?;
                }
            }
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::rename(entry.path(), to)?;
        }
        moved += 1;
    }
    Ok(moved)
}

fn manifest_path(content: &Hash) -> ObjPath {
    dir(content).join("manifest")
}

fn shard_path(content: &Hash, stripe: u32) -> ObjPath {
    dir(content).join(stripe.to_string())
}

impl ShardStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<ShardStore, ShardError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ShardError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let moved = move_into_buckets(dir).map_err(|e| {
            ShardError::Io(format!("cannot move {} into buckets: {e}", dir.display()))
        })?;
        if moved > 0 {
            tracing::info!(contents = moved, "moved stored shards into buckets");
        }
        let store = LocalFileSystem::new_with_prefix(dir)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(ShardStore {
            store: Arc::new(store),
        })
    }

    /// Opens the store of a node: `data_dir/shards`.
    pub fn from_data_dir(data_dir: &Path) -> Result<ShardStore, ShardError> {
        Self::open(&data_dir.join("shards"))
    }

    /// Stores a manifest (checked first) under its content.
    pub async fn put_manifest(&self, manifest: &Manifest) -> Result<(), ShardError> {
        manifest.check()?;
        let bytes = borsh::to_vec(manifest).map_err(|e| ShardError::Io(e.to_string()))?;
        self.store
            .put(&manifest_path(&manifest.content), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// The stored manifest of `content`, if any.
    pub async fn manifest(&self, content: &Hash) -> Result<Option<Manifest>, ShardError> {
        let Some(bytes) = self.read(&manifest_path(content)).await? else {
            return Ok(None);
        };
        let m: Manifest = borsh::from_slice(&bytes)
            .map_err(|e| ShardError::Corrupt(format!("{content}: {e}")))?;
        m.check()
            .map_err(|e| ShardError::Corrupt(format!("{content}: {e}")))?;
        if m.content != *content {
            return Err(ShardError::Corrupt(format!(
                "{content}: the manifest names {}",
                m.content
            )));
        }
        Ok(Some(m))
    }

    /// Checks this node's shard (`index`) of `stripe` against the manifest, then stores it.
    /// Returns the check's error, and stores nothing, for a wrong shard.
    pub async fn put_shard(
        &self,
        manifest: &Manifest,
        stripe: u32,
        index: u16,
        bytes: Bytes,
    ) -> Result<(), ShardError> {
        check_shard(manifest, stripe, index, bytes.clone())?;
        self.store
            .put(
                &shard_path(&manifest.content, stripe),
                PutPayload::from(bytes),
            )
            .await?;
        Ok(())
    }

    /// This node's stored shard of `stripe`, if any (unchecked: check it before use).
    pub async fn shard(&self, content: &Hash, stripe: u32) -> Result<Option<Bytes>, ShardError> {
        self.read(&shard_path(content, stripe)).await
    }

    /// Deletes the manifest and shards of `content`; nothing stored is not an error.
    pub async fn delete(&self, content: &Hash) -> Result<(), ShardError> {
        let prefix = dir(content);
        let mut listing = self.store.list(Some(&prefix));
        let mut locations = Vec::new();
        while let Some(meta) = listing.next().await {
            locations.push(meta?.location);
        }
        for location in locations {
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The contents of `bucket` with something stored (a manifest or shards), in hash order.
    pub async fn list_bucket(&self, bucket: u8) -> Result<Vec<Hash>, ShardError> {
        let prefix = ObjPath::from(bucket_dir(bucket));
        let listing = match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out: Vec<Hash> = (listing.common_prefixes.iter())
            .filter_map(|p| crate::blobs::parse_cid(p.filename()?).ok())
            .filter(|c| bucket_of(c) == bucket)
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every content with something stored, in hash order: O(contents) in memory, for
    /// tests and tools; the node's chores go a bucket at a time ([`Self::list_bucket`]).
    pub async fn list(&self) -> Result<Vec<Hash>, ShardError> {
        let mut out = Vec::new();
        for b in 0..=u8::MAX {
            out.extend(self.list_bucket(b).await?);
        }
        Ok(out)
    }

    /// The stripes of `manifest` this node holds no shard of.
    pub async fn missing_stripes(&self, manifest: &Manifest) -> Result<Vec<u32>, ShardError> {
        let mut held = vec![false; manifest.stripes.len()];
        let prefix = dir(&manifest.content);
        let mut listing = self.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            // Staging files of unfinished writes and the manifest do not parse as a stripe.
            if let Some(Ok(i)) = meta.location.filename().map(str::parse::<u32>)
                && let Some(h) = held.get_mut(i as usize)
            {
                *h = true;
            }
        }
        Ok((0..held.len() as u32)
            .filter(|i| !held[*i as usize])
            .collect())
    }

    async fn read(&self, location: &ObjPath) -> Result<Option<Bytes>, ShardError> {
        match self.store.get(location).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift64*), so failures reproduce.
    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Encodes `data`, keeping every shard: `shards[stripe][index]`.
    fn encode(params: Params, data: &[u8]) -> (Manifest, Vec<Vec<Bytes>>) {
        let mut all = Vec::new();
        let m = encode_blob(params, data, |stripe, _, shards| {
            assert_eq!(stripe as usize, all.len());
            assert_eq!(shards.len(), usize::from(params.n));
            all.push(shards);
            Ok::<_, std::io::Error>(())
        })
        .unwrap();
        (m, all)
    }

    fn sha(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    #[test]
    fn params() {
        assert_eq!(Params::for_validators(0), None);
        assert_eq!(Params::for_validators(1), None);
        assert_eq!(Params::for_validators(2), Some(Params { n: 2, k: 1 }));
        assert_eq!(Params::for_validators(3), Some(Params { n: 3, k: 1 }));
        assert_eq!(Params::for_validators(4), Some(Params { n: 4, k: 2 }));
        assert_eq!(Params::for_validators(7), Some(Params { n: 7, k: 3 }));
        assert_eq!(Params::for_validators(10), Some(Params { n: 10, k: 4 }));
        assert_eq!(Params::for_validators(MAX_SHARDS as usize + 1), None);
        assert!(Params { n: 3, k: 3 }.config().is_err());
        assert!(Params { n: 3, k: 0 }.config().is_err());
    }

    #[test]
    fn round_trips() {
        let sizes = [0, 1, STRIPE_BYTES, STRIPE_BYTES + 1, 10_000_000 + 12_345];
        for n in [4usize, 7, 2] {
            let params = Params::for_validators(n).unwrap();
            for (j, &size) in sizes.iter().enumerate() {
                let data = random(size, (n * 10 + j) as u64);
                let (m, shards) = encode(params, &data);
                m.check().unwrap();
                assert_eq!(m.content, sha(&data));
                assert_eq!(m.size, size as u64);
                assert_eq!((m.n, m.k), (params.n, params.k));
                assert_eq!(m.stripes.len(), size.div_ceil(STRIPE_BYTES));
                let total: usize = (0..m.stripes.len() as u32).map(|i| m.stripe_len(i)).sum();
                assert_eq!(total, size);
                for prefer in [None, Some(params.n - 1)] {
                    let mut out = Vec::new();
                    let report = decode_blob(
                        &m,
                        prefer,
                        |s, i| Some(shards[s as usize][i as usize].clone()),
                        &mut out,
                    )
                    .unwrap();
                    assert_eq!(
                        report,
                        DecodeReport {
                            written: size as u64,
                            ..Default::default()
                        }
                    );
                    assert!(out == data, "n={n} size={size} prefer={prefer:?}");
                }
            }
        }
    }

    #[test]
    fn empty_blob_has_no_stripes() {
        let (m, shards) = encode(Params::for_validators(4).unwrap(), &[]);
        assert!(m.stripes.is_empty() && shards.is_empty());
        assert_eq!(m.content, sha(&[]));
        let mut out = Vec::new();
        decode_blob(&m, None, |_, _| panic!("no shard to fetch"), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn any_k_subset_decodes() {
        let data = random(STRIPE_BYTES + 777, 1);
        for n in [4usize, 7] {
            let params = Params::for_validators(n).unwrap();
            let (m, shards) = encode(params, &data);
            // Every subset of exactly k indices.
            for mask in 0u32..(1 << n) {
                if mask.count_ones() != u32::from(params.k) {
                    continue;
                }
                let mut out = Vec::new();
                let report = decode_blob(
                    &m,
                    None,
                    |s, i| (mask & (1 << i) != 0).then(|| shards[s as usize][i as usize].clone()),
                    &mut out,
                )
                .unwrap();
                assert!(out == data, "n={n} mask={mask:b}");
                assert!(report.bad.is_empty());
                assert!(!report.missing.is_empty() || mask & ((1 << params.k) - 1) == mask);
            }
        }
    }

    #[test]
    fn own_shard_is_asked_first_and_wraps() {
        let params = Params::for_validators(7).unwrap();
        let (m, shards) = encode(params, &random(1000, 2));
        let mut asked = Vec::new();
        decode_blob(
            &m,
            Some(5),
            |s, i| {
                asked.push(i);
                Some(shards[s as usize][i as usize].clone())
            },
            std::io::sink(),
        )
        .unwrap();
        assert_eq!(asked, vec![5, 6, 0]);
    }

    #[test]
    fn corrupted_shard_is_reported_and_skipped() {
        let params = Params::for_validators(4).unwrap();
        let data = random(STRIPE_BYTES + 5000, 3);
        let (m, shards) = encode(params, &data);
        // Flip one byte of shard 0 of stripe 1, in its data (past the 5-byte length prefix).
        let mut bad = shards[1][0].to_vec();
        bad[100] ^= 1;
        let bad = Bytes::from(bad);
        let mut out = Vec::new();
        let report = decode_blob(
            &m,
            None,
            |s, i| {
                if (s, i) == (1, 0) {
                    Some(bad.clone())
                } else {
                    Some(shards[s as usize][i as usize].clone())
                }
            },
            &mut out,
        )
        .unwrap();
        assert!(out == data);
        assert_eq!(report.bad.len(), 1);
        assert_eq!((report.bad[0].0, report.bad[0].1), (1, 0));
        assert!(report.bad[0].2.contains("invalid proof"), "{report:?}");
        // Garbage that does not even decode is reported too.
        assert!(matches!(
            check_shard(&m, 0, 0, Bytes::from_static(b"garbage")),
            Err(CodingError::BadShard {
                stripe: 0,
                index: 0,
                ..
            })
        ));
        // A truncated shard.
        let short = shards[0][1].slice(..shards[0][1].len() - 1);
        assert!(check_shard(&m, 0, 1, short).is_err());
    }

    #[test]
    fn shards_of_another_stripe_or_index_are_rejected() {
        let params = Params::for_validators(4).unwrap();
        let (m, shards) = encode(params, &random(2 * STRIPE_BYTES, 4));
        check_shard(&m, 0, 2, shards[0][2].clone()).unwrap();
        check_shard(&m, 1, 2, shards[1][2].clone()).unwrap();
        // Another stripe's shard at the same index.
        assert!(check_shard(&m, 0, 2, shards[1][2].clone()).is_err());
        // The right stripe, the wrong index.
        assert!(check_shard(&m, 0, 3, shards[0][2].clone()).is_err());
        // A stripe or index out of range.
        assert!(check_shard(&m, 2, 0, shards[0][0].clone()).is_err());
        assert!(check_shard(&m, 0, 4, shards[0][0].clone()).is_err());
        // Another blob's shard.
        let (_, other) = encode(params, &random(2 * STRIPE_BYTES, 5));
        assert!(check_shard(&m, 0, 0, other[0][0].clone()).is_err());
        // Checked shards of different stripes do not decode together.
        let mixed = [
            check_shard(&m, 0, 0, shards[0][0].clone()).unwrap(),
            check_shard(&m, 1, 1, shards[1][1].clone()).unwrap(),
        ];
        assert!(matches!(
            decode_stripe(&m, 0, &mixed),
            Err(CodingError::BadShard { .. })
        ));
        // A fetch that serves every stripe the shards of stripe 0 rebuilds stripe 0 only.
        let mut out = Vec::new();
        let err = decode_blob(
            &m,
            None,
            |_, i| Some(shards[0][i as usize].clone()),
            &mut out,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            CodingError::Unavailable {
                stripe: 1,
                good: 0,
                needed: 2
            }
        ));
        assert_eq!(out.len(), STRIPE_BYTES);
    }

    #[test]
    fn fewer_than_k_is_unavailable_and_writes_nothing_of_that_stripe() {
        let params = Params::for_validators(7).unwrap();
        let data = random(STRIPE_BYTES + 10, 6);
        let (m, shards) = encode(params, &data);
        let mut out = Vec::new();
        let err = decode_blob(
            &m,
            None,
            // Stripe 0 complete; stripe 1: two good shards, one corrupt, the rest missing.
            |s, i| match (s, i) {
                (0, _) | (1, 4 | 6) => Some(shards[s as usize][i as usize].clone()),
                (1, 5) => Some(shards[0][5].clone()),
                _ => None,
            },
            &mut out,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                CodingError::Unavailable {
                    stripe: 1,
                    good: 2,
                    needed: 3
                }
            ),
            "{err}"
        );
        assert!(out == data[..STRIPE_BYTES]);
        // With no shards at all, nothing is written.
        let mut out = Vec::new();
        assert!(decode_blob(&m, None, |_, _| None, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn wrong_manifests_are_rejected() {
        let params = Params::for_validators(4).unwrap();
        let data = random(STRIPE_BYTES + 3, 7);
        let (m, shards) = encode(params, &data);
        let fetch = |s: u32, i: u16| Some(shards[s as usize][i as usize].clone());

        // A wrong content hash: every stripe rebuilds, the end check fails.
        let mut wrong = m.clone();
        wrong.content = sha(b"something else");
        let mut out = Vec::new();
        let err = decode_blob(&wrong, None, fetch, &mut out).unwrap_err();
        assert!(matches!(err, CodingError::Mismatch { got, .. } if got == m.content));
        assert!(
            out == data,
            "rebuilt stripes were written: the caller discards them"
        );

        // A wrong size: the last stripe rebuilds to fewer bytes than the manifest says.
        let mut wrong = m.clone();
        wrong.size += 1;
        let err = decode_blob(&wrong, None, fetch, Vec::new()).unwrap_err();
        assert!(matches!(err, CodingError::Manifest(_)), "{err}");

        // Inconsistent manifests.
        for bad in [
            Manifest {
                stripes: vec![],
                ..m.clone()
            },
            Manifest { k: 4, ..m.clone() },
            Manifest { k: 0, ..m.clone() },
            Manifest {
                n: MAX_SHARDS + 1,
                ..m.clone()
            },
            Manifest {
                stripe_bytes: 0,
                ..m.clone()
            },
            Manifest {
                stripe_bytes: STRIPE_BYTES as u32 + 1,
                ..m.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
            assert!(decode_blob(&bad, None, fetch, Vec::new()).is_err());
        }

        // The root names every field.
        let mut other = m.clone();
        other.stripes[1].0[0] ^= 1;
        assert_ne!(other.root(), m.root());
        assert_ne!(Manifest { k: 1, ..m.clone() }.root(), m.root());
        assert_eq!(m.clone().root(), m.root());
    }

    #[test]
    fn n2_and_n3_shards_are_full_copies() {
        for n in [2usize, 3] {
            let params = Params::for_validators(n).unwrap();
            let data = random(100_000, 8);
            let (m, shards) = encode(params, &data);
            for i in 0..params.n {
                let mut out = Vec::new();
                decode_blob(
                    &m,
                    None,
                    |s, j| (j == i).then(|| shards[s as usize][j as usize].clone()),
                    &mut out,
                )
                .unwrap();
                assert!(out == data);
            }
        }
    }

    #[test]
    fn sink_errors_stop_encoding() {
        let params = Params::for_validators(4).unwrap();
        let data = random(2 * STRIPE_BYTES, 9);
        let mut calls = 0;
        let err = encode_blob(params, &data[..], |_, _, _| {
            calls += 1;
            Err(std::io::Error::other("peer gone"))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(err, CodingError::Sink(_)) && err.to_string() == "peer gone");
    }

    #[tokio::test]
    async fn shard_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ShardStore::from_data_dir(tmp.path()).unwrap();
        let params = Params::for_validators(4).unwrap();
        let data = random(2 * STRIPE_BYTES + 1, 10);
        let (m, shards) = encode(params, &data);
        let (m2, shards2) = encode(params, &random(10, 11));
        let me = 3u16;

        assert!(store.list().await.unwrap().is_empty());
        assert_eq!(store.manifest(&m.content).await.unwrap(), None);
        assert_eq!(store.shard(&m.content, 0).await.unwrap(), None);

        store.put_manifest(&m).await.unwrap();
        assert_eq!(store.manifest(&m.content).await.unwrap(), Some(m.clone()));
        assert_eq!(store.missing_stripes(&m).await.unwrap(), vec![0, 1, 2]);

        // A wrong shard is refused and not stored.
        let err = store
            .put_shard(&m, 1, me, shards[1][0].clone())
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            ShardError::Coding(CodingError::BadShard { .. })
        ));
        assert_eq!(store.shard(&m.content, 1).await.unwrap(), None);

        store
            .put_shard(&m, 1, me, shards[1][me as usize].clone())
            .await
            .unwrap();
        assert_eq!(store.missing_stripes(&m).await.unwrap(), vec![0, 2]);
        assert_eq!(
            store.shard(&m.content, 1).await.unwrap(),
            Some(shards[1][me as usize].clone())
        );
        for s in [0, 2] {
            store
                .put_shard(&m, s, me, shards[s as usize][me as usize].clone())
                .await
                .unwrap();
        }
        assert!(store.missing_stripes(&m).await.unwrap().is_empty());

        store.put_manifest(&m2).await.unwrap();
        store
            .put_shard(&m2, 0, me, shards2[0][me as usize].clone())
            .await
            .unwrap();
        let mut both = vec![m.content, m2.content];
        both.sort();
        assert_eq!(store.list().await.unwrap(), both);

        // Rebuild with this node's shards first, the peers' from memory.
        let mut own = Vec::new();
        for s in 0..3 {
            own.push(store.shard(&m.content, s).await.unwrap());
        }
        let mut out = Vec::new();
        let report = decode_blob(
            &m,
            Some(me),
            |s, i| {
                if i == me {
                    own[s as usize].clone()
                } else {
                    Some(shards[s as usize][i as usize].clone())
                }
            },
            &mut out,
        )
        .unwrap();
        assert!(out == data && report.bad.is_empty() && report.missing.is_empty());

        // A corrupt stored manifest is an error that names no path.
        let path = tmp
            .path()
            .join("shards")
            .join(bucket_dir(bucket_of(&m2.content)))
            .join(crate::blobs::cid_string(&m2.content))
            .join("manifest");
        std::fs::write(&path, b"junk").unwrap();
        let err = store.manifest(&m2.content).await.unwrap_err();
        assert!(matches!(err, ShardError::Corrupt(_)));
        assert!(!err.to_string().contains(tmp.path().to_str().unwrap()));

        store.delete(&m.content).await.unwrap();
        store.delete(&m.content).await.unwrap();
        assert_eq!(store.manifest(&m.content).await.unwrap(), None);
        assert_eq!(store.missing_stripes(&m).await.unwrap(), vec![0, 1, 2]);
        assert_eq!(store.list().await.unwrap(), vec![m2.content]);
        store.delete(&m2.content).await.unwrap();
        assert!(store.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_store_of_the_flat_layout_moves_into_buckets_on_open() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("shards");
        let params = Params::for_validators(4).unwrap();
        let me = 1u16;
        let mut stored = Vec::new();
        {
            let store = ShardStore::open(&root).unwrap();
            for seed in 20..24 {
                let (m, shards) = encode(params, &random(1000, seed));
                store.put_manifest(&m).await.unwrap();
                store
                    .put_shard(&m, 0, me, shards[0][me as usize].clone())
                    .await
                    .unwrap();
                stored.push((m, shards[0][me as usize].clone()));
            }
        }
        stored.sort_by_key(|(m, _)| m.content);
        // Lay the store out as earlier versions did: every content at the top level.
        for (m, _) in &stored {
            let cid = crate::blobs::cid_string(&m.content);
            let bucket = root.join(bucket_dir(bucket_of(&m.content)));
            std::fs::rename(bucket.join(&cid), root.join(&cid)).unwrap();
        }
        // One of them also stored again in its bucket since, as a newer version would.
        let (again, _) = &stored[0];
        let again_dir = root
            .join(bucket_dir(bucket_of(&again.content)))
            .join(crate::blobs::cid_string(&again.content));
        std::fs::create_dir_all(&again_dir).unwrap();
        std::fs::copy(
            root.join(crate::blobs::cid_string(&again.content))
                .join("manifest"),
            again_dir.join("manifest"),
        )
        .unwrap();
        for _ in 0..2 {
            let store = ShardStore::open(&root).unwrap();
            let all: Vec<Hash> = stored.iter().map(|(m, _)| m.content).collect();
            assert_eq!(store.list().await.unwrap(), all);
            for (m, shard) in &stored {
                assert_eq!(store.manifest(&m.content).await.unwrap().as_ref(), Some(m));
                assert_eq!(
                    store.shard(&m.content, 0).await.unwrap().as_ref(),
                    Some(shard)
                );
                assert_eq!(
                    store.list_bucket(bucket_of(&m.content)).await.unwrap(),
                    (all.iter().copied())
                        .filter(|c| bucket_of(c) == bucket_of(&m.content))
                        .collect::<Vec<_>>()
                );
            }
            // Nothing is left at the top level but buckets.
            for e in std::fs::read_dir(&root).unwrap() {
                let name = e.unwrap().file_name().into_string().unwrap();
                assert!(
                    name.len() == 2 && u8::from_str_radix(&name, 16).is_ok(),
                    "{name}"
                );
            }
        }
    }
}
