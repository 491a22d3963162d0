//! The blob store: encrypted record contents, addressed by their CID (v1, raw codec,
//! sha2-256 of the ciphertext). It only ever sees ciphertext.
//!
//! Backed by `object_store`: the local filesystem under the node's data dir by default (writes
//! are staged, fsynced and renamed into place, so a killed node never leaves a partial blob
//! under a CID), or an S3-compatible bucket with the `s3` cargo feature (a multipart upload
//! only becomes an object when completed). Uploads stream: the hash is computed on the way and
//! a blob whose bytes do not match its CID is aborted before it becomes visible.

use bytes::Bytes;
use ehrchain_types::Hash;
use futures::{Stream, StreamExt, stream::BoxStream};
use object_store::{
    ObjectStore, ObjectStoreExt, WriteMultipart, local::LocalFileSystem, path::Path as ObjPath,
};
use sha2::{Digest, Sha256};
use std::{path::Path, sync::Arc};

/// Bytes buffered before a part is written.
const PART: usize = 4 * 1024 * 1024;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob is larger than the node's limit of {max} bytes")]
    TooLarge { max: u64 },
    #[error("blob bytes do not match its CID (expected sha2-256 {expected}, got {got})")]
    Mismatch { expected: Hash, got: Hash },
    #[error("the node's blob storage is full")]
    DiskFull,
    /// The blob is not in this node's store (the location is kept for the log only).
    #[error("the record's content is not stored on this node")]
    NotFound(String),
    #[error("upload interrupted: {0}")]
    Body(String),
    #[error("blob storage: {0}")]
    Io(String),
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
}

impl From<object_store::Error> for BlobError {
    fn from(e: object_store::Error) -> Self {
        if let object_store::Error::NotFound { path, .. } = &e {
            return BlobError::NotFound(path.clone());
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && (io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28))
            {
                return BlobError::DiskFull;
            }
            source = s.source();
        }
        BlobError::Io(e.to_string())
    }
}

pub use ehrchain_api::cid::{cid_string, parse_cid};

/// The node's blob store.
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    max_bytes: u64,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobStore")
    }
}

fn location(content: &Hash) -> ObjPath {
    ObjPath::from(cid_string(content))
}

impl BlobStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<BlobStore, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let store = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        Ok(BlobStore {
            store: Arc::new(store),
            max_bytes,
        })
    }

    /// Opens the store a node config asks for: `data_dir/blobs`, or the configured bucket.
    pub fn from_config(
        data_dir: &Path,
        cfg: &crate::config::BlobConfig,
    ) -> Result<BlobStore, BlobError> {
        match &cfg.s3 {
            None => Self::open(&data_dir.join("blobs"), cfg.max_bytes),
            Some(s3) => Self::s3(s3, cfg.max_bytes),
        }
    }

    #[cfg(feature = "s3")]
    fn s3(cfg: &crate::config::S3Config, max_bytes: u64) -> Result<BlobStore, BlobError> {
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_allow_http(cfg.allow_http);
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e);
        }
        Ok(BlobStore {
            store: Arc::new(b.build()?),
            max_bytes,
        })
    }

    #[cfg(not(feature = "s3"))]
    fn s3(_: &crate::config::S3Config, _: u64) -> Result<BlobStore, BlobError> {
        Err(BlobError::Io(
            "the config asks for an S3 blob store, but this binary was built without it (cargo build --features s3)".into(),
        ))
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Streams `body` into the store under `content`, checking size and hash on the way, and
    /// asking `admit` about every chunk's length before it is written (quotas, disk space).
    /// Nothing is visible under the CID unless every byte matched.
    pub async fn put<E: std::fmt::Display>(
        &self,
        content: &Hash,
        mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        mut admit: impl FnMut(u64) -> Result<(), crate::limits::LimitError>,
    ) -> Result<u64, BlobError> {
        let upload = self.store.put_multipart(&location(content)).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let failure = loop {
            match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(BlobError::Body(e.to_string())),
                Some(Ok(chunk)) => {
                    size += chunk.len() as u64;
                    if size > self.max_bytes {
                        break Some(BlobError::TooLarge {
                            max: self.max_bytes,
                        });
                    }
                    if let Err(e) = admit(chunk.len() as u64) {
                        break Some(e.into());
                    }
                    hasher.update(&chunk);
                    if let Err(e) = w.wait_for_capacity(2).await {
                        break Some(e.into());
                    }
                    w.put(chunk);
                }
            }
        };
        let got = Hash(hasher.finalize().into());
        let failure = failure.or_else(|| {
            (got != *content).then_some(BlobError::Mismatch {
                expected: *content,
                got,
            })
        });
        if let Some(e) = failure {
            let _ = w.abort().await;
            return Err(e);
        }
        w.finish().await?;
        Ok(size)
    }

    /// The blob's size and a stream of its bytes.
    pub async fn get(
        &self,
        content: &Hash,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, object_store::Error>>), BlobError> {
        let r = self.store.get(&location(content)).await?;
        let size = r.meta.size;
        Ok((size, r.into_stream()))
    }

    /// Deletes a blob (an unanchored upload that expired); a missing blob is not an error.
    pub async fn delete(&self, content: &Hash) -> Result<(), BlobError> {
        match self.store.delete(&location(content)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The stored blobs that `keep` picks, with their sizes (the staging files of unfinished
    /// uploads excluded). The listing streams: memory holds what is kept, not every blob.
    pub async fn list_where(
        &self,
        mut keep: impl FnMut(&Hash) -> bool,
    ) -> Result<Vec<(Hash, u64)>, BlobError> {
        let mut out = Vec::new();
        let mut listing = self.store.list(None);
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            if let Ok(h) = parse_cid(meta.location.as_ref())
                && keep(&h)
            {
                out.push((h, meta.size));
            }
        }
        Ok(out)
    }

    /// Whether the blob is stored.
    pub async fn contains(&self, content: &Hash) -> Result<bool, BlobError> {
        match self.store.head(&location(content)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
