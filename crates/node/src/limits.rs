//! Resource limits that hold against a hostile account: a disk watermark below which the node
//! refuses new work (with a ballast file that keeps room for consensus when something else
//! fills the disk), per-account quotas on uploaded blobs that no record anchors yet, expiry of
//! such blobs, and rate limits per account and per client address.
//!
//! Registration is free, so any patient may call the upload and submission endpoints. Without
//! these limits one account fills a validator's disk, the consensus journal's next write fails
//! and the process stops; enough such validators and the chain stops. The rule here: the API
//! refuses work (`507 storage_low`, `429 rate_limited`, `403 quota_exceeded`) long before the
//! disk is full, and the state machine and consensus keep the headroom.

use ehrchain_types::{AccountId, Hash};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    hash::Hash as StdHash,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Free bytes under which the disk counts as full and the ballast is released. Released any
/// earlier, a writer still filling the disk would take the ballast's room too; so the node
/// waits until the other writer has hit the wall (and reads the free space every 20 ms while
/// below the watermark, so that wait is short).
pub const RELEASE_BELOW: u64 = 1 << 20;

/// The `[limits]` section of the node config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Free bytes on the data dir's filesystem below which the node refuses uploads and new
    /// transactions (`507`). Finalizing blocks goes on below it.
    pub min_free_bytes: u64,
    /// Size of the ballast file kept in the data dir. When the disk is full (under
    /// `limits::RELEASE_BELOW` free: something other than the API filled it), the node deletes
    /// it so consensus and the chain store still have room, and recreates it when space
    /// returns. 0 disables it.
    pub ballast_bytes: u64,
    /// Most ciphertext bytes one account may have uploaded that no record anchors yet
    /// (including uploads in flight).
    pub max_pending_bytes_per_account: u64,
    /// Most unanchored blobs (stored or in flight) one account may have.
    pub max_pending_blobs_per_account: u32,
    /// Seconds after which an uploaded blob that no record anchors is deleted.
    pub pending_blob_ttl_secs: u64,
    /// Uploads one account may start per minute (burst: the same number).
    pub uploads_per_minute_per_account: u32,
    /// Uploads one client address may start per minute (burst: the same number).
    pub uploads_per_minute_per_address: u32,
    /// Transactions one account may submit per second (burst: twice that).
    pub txs_per_second_per_account: u32,
    /// Submission requests (single or batch) one client address may make per second
    /// (burst: twice that).
    pub submissions_per_second_per_address: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            min_free_bytes: 1 << 30,
            ballast_bytes: 64 << 20,
            max_pending_bytes_per_account: 2 << 30,
            max_pending_blobs_per_account: 16,
            pending_blob_ttl_secs: 3600,
            uploads_per_minute_per_account: 60,
            uploads_per_minute_per_address: 240,
            txs_per_second_per_account: 1_000,
            submissions_per_second_per_address: 1_000,
        }
    }
}

impl LimitsConfig {
    /// Checks the rules the section must follow, naming the broken one.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.ballast_bytes <= self.min_free_bytes,
            "limits.ballast_bytes must be at most limits.min_free_bytes"
        );
        anyhow::ensure!(
            self.max_pending_blobs_per_account >= 1,
            "limits.max_pending_blobs_per_account must be at least 1"
        );
        anyhow::ensure!(
            self.pending_blob_ttl_secs >= 1,
            "limits.pending_blob_ttl_secs must be at least 1"
        );
        for (name, v) in [
            (
                "uploads_per_minute_per_account",
                self.uploads_per_minute_per_account,
            ),
            (
                "uploads_per_minute_per_address",
                self.uploads_per_minute_per_address,
            ),
            (
                "txs_per_second_per_account",
                self.txs_per_second_per_account,
            ),
            (
                "submissions_per_second_per_address",
                self.submissions_per_second_per_address,
            ),
        ] {
            anyhow::ensure!(v >= 1, "limits.{name} must be at least 1");
        }
        Ok(())
    }
}

/// Why the node refused work to protect its resources.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error(
        "the node is low on storage and refuses new uploads and transactions until space is freed; try another node or later"
    )]
    StorageLow,
    #[error(
        "upload quota exceeded: at most {max_bytes} bytes in at most {max_blobs} blobs that no record anchors yet (anchor or wait for unanchored uploads to expire)"
    )]
    Quota { max_bytes: u64, max_blobs: u32 },
    #[error("too many requests: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
}

/// Free bytes available to an unprivileged writer on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// The disk watermark: knows the free space of the data dir's filesystem (refreshed by a
/// background task and before every upload) and whether the node is below its watermark.
#[derive(Debug)]
pub struct DiskGuard {
    dir: PathBuf,
    min_free: u64,
    ballast: u64,
    free: AtomicU64,
    low: AtomicBool,
}

/// The ballast file's name inside the data dir.
const BALLAST: &str = "ballast.bin";

impl DiskGuard {
    /// A guard of `dir`'s filesystem; reads the free space once and lays the ballast down
    /// when there is room for it above the watermark.
    pub fn new(dir: &Path, cfg: &LimitsConfig) -> DiskGuard {
        let g = DiskGuard {
            dir: dir.to_path_buf(),
            min_free: cfg.min_free_bytes,
            ballast: cfg.ballast_bytes,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
        };
        g.refresh();
        g
    }

    /// The watermark.
    pub fn min_free(&self) -> u64 {
        self.min_free
    }

    /// Free bytes at the last refresh.
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Whether the node is below its watermark (at the last refresh).
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    fn ballast_path(&self) -> PathBuf {
        self.dir.join(BALLAST)
    }

    /// Reads the free space again, releases or restores the ballast, logs a crossing of the
    /// watermark once, and returns the free bytes.
    pub fn refresh(&self) -> u64 {
        let free = match free_bytes(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the data dir's free space");
                return self.free();
            }
        };
        let ballast = self.ballast_path();
        let has_ballast = ballast.exists();
        let free = if self.ballast > 0 && has_ballast && free < RELEASE_BELOW.min(self.min_free) {
            // Something other than our API (which stops at the watermark) filled the disk:
            // give the room back to consensus and the chain store.
            match std::fs::remove_file(&ballast) {
                Ok(()) => {
                    tracing::error!(
                        free,
                        ballast = self.ballast,
                        "disk nearly full: released the ballast file to keep consensus writing"
                    );
                    free_bytes(&self.dir).unwrap_or(free)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot release the ballast file");
                    free
                }
            }
        } else if self.ballast > 0 && !has_ballast && free >= self.min_free + self.ballast {
            match write_ballast(&ballast, self.ballast) {
                Ok(()) => free.saturating_sub(self.ballast),
                Err(e) => {
                    let _ = std::fs::remove_file(&ballast);
                    tracing::warn!(error = %e, "cannot lay down the ballast file");
                    free
                }
            }
        } else {
            free
        };
        self.free.store(free, Ordering::Relaxed);
        let low = free < self.min_free;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::error!(
                    free,
                    watermark = self.min_free,
                    "storage below the watermark: refusing uploads and new transactions"
                );
            } else {
                tracing::warn!(
                    free,
                    watermark = self.min_free,
                    "storage above the watermark again: accepting uploads and transactions"
                );
            }
        }
        free
    }

    /// Refuses new transactions below the watermark.
    pub fn check_tx(&self) -> Result<(), LimitError> {
        if self.is_low() {
            return Err(LimitError::StorageLow);
        }
        Ok(())
    }

    /// Refuses an upload of `more` bytes that would take the free space below the watermark.
    /// Reads the free space afresh (one statvfs); the ballast and the logging stay with the
    /// background [`DiskGuard::refresh`], off the request path.
    pub fn check_upload(&self, more: u64) -> Result<(), LimitError> {
        let free = free_bytes(&self.dir).unwrap_or_else(|_| self.free());
        if free < self.min_free.saturating_add(more) {
            return Err(LimitError::StorageLow);
        }
        Ok(())
    }
}

/// Writes a file of `len` bytes whose blocks are really allocated (zeros, written, fsynced),
/// so deleting it frees that much space.
fn write_ballast(path: &Path, len: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// One stored blob that no record anchors yet.
#[derive(Clone, Debug)]
struct PendingBlob {
    /// Who uploaded it; unknown for blobs found on disk at start.
    owner: Option<AccountId>,
    size: u64,
    since: Instant,
}

#[derive(Default, Debug, Clone, Copy)]
struct Usage {
    bytes: u64,
    blobs: u32,
}

#[derive(Default, Debug)]
struct PendingInner {
    blobs: HashMap<Hash, PendingBlob>,
    usage: HashMap<AccountId, Usage>,
}

impl PendingInner {
    fn release(&mut self, who: &AccountId, bytes: u64, blobs: u32) {
        if let Some(u) = self.usage.get_mut(who) {
            u.bytes = u.bytes.saturating_sub(bytes);
            u.blobs = u.blobs.saturating_sub(blobs);
            if u.blobs == 0 && u.bytes == 0 {
                self.usage.remove(who);
            }
        }
    }
}

/// Unanchored uploads: per-account quotas while they are in flight or stored, and their
/// expiry.
#[derive(Debug)]
pub struct PendingBlobs {
    max_bytes: u64,
    max_blobs: u32,
    ttl: Duration,
    inner: Mutex<PendingInner>,
}

/// An upload in progress, holding its share of the uploader's quota; dropping it without
/// [`UploadPermit::stored`] gives the share back.
#[derive(Debug)]
pub struct UploadPermit<'a> {
    pending: &'a PendingBlobs,
    who: AccountId,
    bytes: u64,
    done: bool,
}

impl UploadPermit<'_> {
    /// Counts `n` more bytes against the quota.
    pub fn grow(&mut self, n: u64) -> Result<(), LimitError> {
        let mut inner = self.pending.lock();
        let u = inner.usage.entry(self.who).or_default();
        if u.bytes.saturating_add(n) > self.pending.max_bytes {
            return Err(self.pending.quota_error());
        }
        u.bytes += n;
        self.bytes += n;
        Ok(())
    }

    /// The blob is stored under `content` with `size` bytes: it stays counted until a record
    /// anchors it or it expires.
    pub fn stored(mut self, content: Hash, size: u64) {
        let mut inner = self.pending.lock();
        self.done = true;
        // The permit reserved `self.bytes`; the blob holds `size`.
        inner.release(&self.who, self.bytes, 1);
        if inner.blobs.contains_key(&content) {
            // The same ciphertext uploaded again: it is already counted once.
            return;
        }
        let u = inner.usage.entry(self.who).or_default();
        u.bytes += size;
        u.blobs += 1;
        inner.blobs.insert(
            content,
            PendingBlob {
                owner: Some(self.who),
                size,
                since: Instant::now(),
            },
        );
    }
}

impl Drop for UploadPermit<'_> {
    fn drop(&mut self) {
        if !self.done {
            let (who, bytes) = (self.who, self.bytes);
            self.pending.lock().release(&who, bytes, 1);
        }
    }
}

/// What a sweep of the unanchored blobs found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Blobs a record now anchors (no longer counted).
    pub anchored: usize,
    /// Blobs past their time, to delete.
    pub expired: Vec<Hash>,
}

impl PendingBlobs {
    /// How long an unanchored upload is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn new(cfg: &LimitsConfig) -> PendingBlobs {
        PendingBlobs {
            max_bytes: cfg.max_pending_bytes_per_account,
            max_blobs: cfg.max_pending_blobs_per_account,
            ttl: Duration::from_secs(cfg.pending_blob_ttl_secs),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quota_error(&self) -> LimitError {
        LimitError::Quota {
            max_bytes: self.max_bytes,
            max_blobs: self.max_blobs,
        }
    }

    /// Starts an upload of (at least) `declared` bytes by `who`.
    pub fn begin(&self, who: AccountId, declared: u64) -> Result<UploadPermit<'_>, LimitError> {
        let mut inner = self.lock();
        let u = inner.usage.entry(who).or_default();
        if u.blobs >= self.max_blobs || u.bytes.saturating_add(declared) > self.max_bytes {
            return Err(self.quota_error());
        }
        u.blobs += 1;
        u.bytes += declared;
        Ok(UploadPermit {
            pending: self,
            who,
            bytes: declared,
            done: false,
        })
    }

    /// Counts a blob found in the store at start that no record anchors; its time starts now.
    pub fn adopt(&self, content: Hash, size: u64) {
        self.lock().blobs.entry(content).or_insert(PendingBlob {
            owner: None,
            size,
            since: Instant::now(),
        });
    }

    /// Stops counting the blobs `is_anchored` says a record anchors and takes out those past
    /// their time (the caller deletes them from the store).
    pub fn sweep(&self, is_anchored: impl Fn(&Hash) -> bool) -> Sweep {
        let mut inner = self.lock();
        let mut out = Sweep::default();
        let now = Instant::now();
        let done: Vec<(Hash, bool)> = inner
            .blobs
            .iter()
            .filter_map(|(h, b)| {
                if is_anchored(h) {
                    Some((*h, true))
                } else if now.duration_since(b.since) >= self.ttl {
                    Some((*h, false))
                } else {
                    None
                }
            })
            .collect();
        for (h, anchored) in done {
            let b = inner.blobs.remove(&h).expect("listed above");
            if let Some(owner) = b.owner {
                inner.release(&owner, b.size, 1);
            }
            if anchored {
                out.anchored += 1;
            } else {
                out.expired.push(h);
            }
        }
        out
    }

    /// Unanchored blobs and their bytes, in all.
    pub fn totals(&self) -> (usize, u64) {
        let inner = self.lock();
        (
            inner.blobs.len(),
            inner.blobs.values().map(|b| b.size).sum(),
        )
    }
}

/// A keyed token bucket: `rate` tokens a second, at most `burst` saved up. The map of keys is
/// bounded: when it is full, buckets that have refilled completely (they carry no state worth
/// keeping) are dropped.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// Most keys a rate limiter tracks before it drops idle ones.
const MAX_KEYS: usize = 100_000;

impl<K: StdHash + Eq + Clone> RateLimiter<K> {
    pub fn new(rate: f64, burst: f64) -> RateLimiter<K> {
        RateLimiter {
            rate,
            burst,
            max_keys: MAX_KEYS,
            buckets: Mutex::default(),
        }
    }

    /// Takes `cost` tokens from `key`'s bucket, or says how long until there are enough.
    pub fn check(&self, key: &K, cost: f64, now: Instant) -> Result<(), LimitError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= self.max_keys && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= self.max_keys {
                // Every tracked key is busy: refuse newcomers rather than grow without bound.
                return Err(LimitError::RateLimited {
                    retry_after_secs: 1,
                });
            }
        }
        let (tokens, at) = buckets
            .entry(key.clone())
            .or_insert((self.burst, now))
            .to_owned();
        let tokens =
            (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        if tokens < cost {
            buckets.insert(key.clone(), (tokens, now));
            let wait = ((cost.min(self.burst) - tokens) / self.rate)
                .ceil()
                .max(1.0);
            return Err(LimitError::RateLimited {
                retry_after_secs: wait as u64,
            });
        }
        buckets.insert(key.clone(), (tokens - cost, now));
        Ok(())
    }
}

/// Every limit the API applies, built from the config.
#[derive(Debug)]
pub struct Limits {
    pub disk: DiskGuard,
    pub pending: PendingBlobs,
    pub uploads_by_account: RateLimiter<AccountId>,
    pub uploads_by_address: RateLimiter<IpAddr>,
    pub txs_by_account: RateLimiter<AccountId>,
    pub submissions_by_address: RateLimiter<IpAddr>,
}

impl Limits {
    pub fn new(data_dir: &Path, cfg: &LimitsConfig) -> Limits {
        fn per_min<K: StdHash + Eq + Clone>(n: u32) -> RateLimiter<K> {
            RateLimiter::new(f64::from(n) / 60.0, f64::from(n))
        }
        fn per_sec<K: StdHash + Eq + Clone>(n: u32) -> RateLimiter<K> {
            RateLimiter::new(f64::from(n), 2.0 * f64::from(n))
        }
        Limits {
            disk: DiskGuard::new(data_dir, cfg),
            pending: PendingBlobs::new(cfg),
            uploads_by_account: per_min(cfg.uploads_per_minute_per_account),
            uploads_by_address: per_min(cfg.uploads_per_minute_per_address),
            txs_by_account: per_sec(cfg.txs_per_second_per_account),
            submissions_by_address: per_sec(cfg.submissions_per_second_per_address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(b: u8) -> AccountId {
        AccountId([b; 20])
    }

    #[test]
    fn quota_counts_in_flight_and_stored_blobs_until_anchored_or_expired() {
        let cfg = LimitsConfig {
            max_pending_bytes_per_account: 100,
            max_pending_blobs_per_account: 2,
            ..LimitsConfig::default()
        };
        let p = PendingBlobs::new(&cfg);
        let a = acct(1);
        let mut up = p.begin(a, 60).expect("first upload fits");
        assert!(
            up.grow(50).is_err(),
            "60 + 50 bytes exceed the 100-byte quota"
        );
        up.grow(10).expect("70 fits");
        up.stored(Hash([1; 32]), 70);
        assert!(p.begin(a, 40).is_err(), "70 stored + 40 exceed the quota");
        let second = p.begin(a, 30).expect("70 + 30 fit");
        assert!(p.begin(a, 0).is_err(), "two blobs already count");
        drop(second);
        assert!(p.begin(acct(2), 100).is_ok(), "quotas are per account");
        let sweep = p.sweep(|h| *h == Hash([1; 32]));
        assert_eq!(sweep.anchored, 1);
        p.begin(a, 100).expect("an anchored blob no longer counts");
    }

    #[test]
    fn expired_blobs_are_swept_and_free_the_quota() {
        let cfg = LimitsConfig {
            max_pending_bytes_per_account: 100,
            ..LimitsConfig::default()
        };
        let mut p = PendingBlobs::new(&cfg);
        p.ttl = Duration::ZERO;
        let a = acct(1);
        p.begin(a, 100).expect("fits").stored(Hash([2; 32]), 100);
        let sweep = p.sweep(|_| false);
        assert_eq!(sweep.expired, vec![Hash([2; 32])]);
        assert_eq!(p.totals(), (0, 0));
        p.begin(a, 100).expect("the expired blob no longer counts");
    }

    #[test]
    fn rate_limiter_refills_and_bounds_its_keys() {
        let now = Instant::now();
        let mut r = RateLimiter::new(1.0, 2.0);
        r.max_keys = 2;
        r.check(&1u8, 1.0, now).expect("burst");
        r.check(&1u8, 1.0, now).expect("burst");
        assert_eq!(
            r.check(&1u8, 1.0, now),
            Err(LimitError::RateLimited {
                retry_after_secs: 1
            })
        );
        r.check(&1u8, 1.0, now + Duration::from_secs(1))
            .expect("refilled");
        r.check(&2u8, 1.0, now).expect("second key");
        assert!(
            r.check(&3u8, 1.0, now).is_err(),
            "both tracked keys are still busy"
        );
        r.check(&3u8, 1.0, now + Duration::from_secs(10))
            .expect("idle keys are dropped to make room");
    }

    #[test]
    fn disk_guard_refuses_below_the_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = free_bytes(dir.path()).expect("statvfs");
        let cfg = LimitsConfig {
            min_free_bytes: free.saturating_sub(1 << 30),
            ballast_bytes: 0,
            ..LimitsConfig::default()
        };
        let g = DiskGuard::new(dir.path(), &cfg);
        g.check_tx().expect("above the watermark");
        assert_eq!(g.check_upload(2 << 30), Err(LimitError::StorageLow));
        let g = DiskGuard::new(
            dir.path(),
            &LimitsConfig {
                min_free_bytes: u64::MAX,
                ballast_bytes: 0,
                ..LimitsConfig::default()
            },
        );
        assert_eq!(g.check_tx(), Err(LimitError::StorageLow));
    }
}
