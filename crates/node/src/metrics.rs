//! Prometheus metrics served at `/metrics`.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// The labels of an API request count: the route template (never the concrete path, so ids
/// stay out of the metrics and the label set stays small), the method and the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// A histogram of a block timing, in seconds: buckets from 1 ms to ~8 s, doubling.
#[derive(Clone, Debug)]
pub struct BlockTime(pub Histogram);

impl Default for BlockTime {
    fn default() -> Self {
        BlockTime(Histogram::new(exponential_buckets(0.001, 2.0, 14)))
    }
}

/// The node's own metrics.
#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    pub height: Gauge,
    pub blocks_finalized: Counter,
    pub txs_finalized: Counter,
    pub txs_rejected: Counter,
    pub mempool_size: Gauge,
    /// Lookup-index entries of committed blocks not yet merged into the index database.
    pub index_pending: Gauge,
    pub submissions_accepted: Counter,
    pub submissions_refused: Counter,
    pub blob_bytes: Counter,
    pub audit_events: Counter,
    pub disk_free_bytes: Gauge,
    pub storage_low: Gauge,
    pub storage_refusals: Counter,
    pub rate_limited: Counter,
    pub pending_blobs: Gauge,
    pub pending_blob_bytes: Gauge,
    pub blobs_expired: Counter,
    pub http_requests: Family<RequestLabels, Counter>,
    /// Time to build a proposed block (execute its transactions on the parent's state).
    pub block_build_seconds: BlockTime,
    /// Time of each durable write of finalized blocks (one or more per write) to the store.
    pub block_commit_seconds: BlockTime,
    /// Erasure-coded storage (issue 16).
    pub shards: crate::placement::Counters,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics::default();
        let r = &mut m.registry;
        r.register(
            "ehrchain_http_requests",
            "API requests answered, by route template, method and status",
            m.http_requests.clone(),
        );
        r.register(
            "ehrchain_height",
            "Height of the last finalized block",
            m.height.clone(),
        );
        r.register(
            "ehrchain_blocks_finalized",
            "Finalized blocks applied",
            m.blocks_finalized.clone(),
        );
        r.register(
            "ehrchain_txs_finalized",
            "Finalized transactions",
            m.txs_finalized.clone(),
        );
        r.register(
            "ehrchain_txs_rejected",
            "Finalized transactions whose receipt is rejected",
            m.txs_rejected.clone(),
        );
        r.register(
            "ehrchain_mempool_size",
            "Transactions waiting in the mempool",
            m.mempool_size.clone(),
        );
        r.register(
            "ehrchain_api_index_pending",
            "Lookup-index entries of committed blocks held in memory, not yet in the index database",
            m.index_pending.clone(),
        );
        r.register(
            "ehrchain_submissions_accepted",
            "Transactions admitted to the mempool",
            m.submissions_accepted.clone(),
        );
        r.register(
            "ehrchain_submissions_refused",
            "Transactions refused at submission",
            m.submissions_refused.clone(),
        );
        r.register(
            "ehrchain_blob_bytes_stored",
            "Ciphertext bytes accepted by the blob store",
            m.blob_bytes.clone(),
        );
        r.register(
            "ehrchain_audit_events",
            "Audit events finalized",
            m.audit_events.clone(),
        );
        r.register(
            "ehrchain_disk_free_bytes",
            "Free bytes on the data dir's filesystem",
            m.disk_free_bytes.clone(),
        );
        r.register(
            "ehrchain_storage_low",
            "1 while free space is below the watermark and the node refuses uploads and transactions",
            m.storage_low.clone(),
        );
        r.register(
            "ehrchain_storage_refusals",
            "Uploads and submissions refused for lack of storage",
            m.storage_refusals.clone(),
        );
        r.register(
            "ehrchain_rate_limited",
            "Requests refused by a rate limit or an upload quota",
            m.rate_limited.clone(),
        );
        r.register(
            "ehrchain_pending_blobs",
            "Uploaded blobs that no record anchors yet",
            m.pending_blobs.clone(),
        );
        r.register(
            "ehrchain_pending_blob_bytes",
            "Bytes of uploaded blobs that no record anchors yet",
            m.pending_blob_bytes.clone(),
        );
        r.register(
            "ehrchain_blobs_expired",
            "Unanchored blobs deleted after their time",
            m.blobs_expired.clone(),
        );
        r.register(
            "ehrchain_block_build_seconds",
            "Time to build a proposed block",
            m.block_build_seconds.0.clone(),
        );
        r.register(
            "ehrchain_block_commit_seconds",
            "Time of each durable write of finalized blocks to the store",
            m.block_commit_seconds.0.clone(),
        );
        let c = &m.shards;
        for (name, help, counter) in [
            (
                "ehrchain_shards_stored",
                "Shards this validator checked and stored",
                &c.stored,
            ),
            (
                "ehrchain_shards_refused",
                "Shards refused because they did not match their commitment",
                &c.refused,
            ),
            (
                "ehrchain_shards_bad",
                "Wrong shards skipped while rebuilding a record's content",
                &c.bad,
            ),
            (
                "ehrchain_shards_missing",
                "Shards a peer did not send while rebuilding",
                &c.missing,
            ),
            (
                "ehrchain_blobs_rebuilt",
                "Record contents rebuilt from shards and served",
                &c.rebuilt,
            ),
            (
                "ehrchain_shards_repaired",
                "Own shards rebuilt by the repair loop",
                &c.repaired,
            ),
            (
                "ehrchain_shards_swept",
                "Shards of contents no record anchored, deleted after their time",
                &c.swept,
            ),
        ] {
            r.register(name, help, counter.clone());
        }
        r.register(
            "ehrchain_repair_pending",
            "Anchored contents whose own shards the repair loop still has to rebuild",
            c.repair_pending.clone(),
        );
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}
