//! Erasure-coded record storage across the validators (issue 16): a blob uploaded to one node
//! is split into stripes, each stripe coded into one shard per validator
//! ([`crate::coding`]), and every validator keeps only its own shard, checked against the
//! stripe's commitment before it is stored. A read through any node gathers shards (its own
//! first, then its peers'), skips and reports wrong or missing ones, rebuilds and checks the
//! whole ciphertext against its CID before serving a byte.
//!
//! Validators talk over their own p2p channel ([`ehrchain_consensus::rpc`]): `put` a shard,
//! `put` a blob's manifest, `get` a shard, `get` a manifest. A single validator keeps whole
//! blobs as before (there is no one to share with).

use crate::coding::{self, Manifest, Params, ShardStore};
use borsh::{BorshDeserialize, BorshSerialize};
use ehrchain_consensus::rpc::{Rpc, RpcError, RpcHandler};
use ehrchain_types::Hash;
use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

/// How long a peer has to answer one shard message.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per shard before a peer is given up on for this blob.
const TRIES: usize = 3;

/// One request between validators.
#[derive(BorshSerialize, BorshDeserialize, Debug)]
pub enum Request {
    /// The blob's manifest (every stripe's commitment), sent before its shards.
    PutManifest { manifest: Manifest },
    /// Store your shard of `stripe` of `content`, checked against the manifest's commitment
    /// at your index.
    Put {
        content: Hash,
        stripe: u32,
        shard: Vec<u8>,
    },
    /// Send your shard of `stripe` of `content`.
    Get { content: Hash, stripe: u32 },
    /// Send the manifest of `content`.
    GetManifest { content: Hash },
}

/// The answer.
#[derive(BorshSerialize, BorshDeserialize, Debug)]
pub enum Reply {
    Stored,
    Refused(String),
    Shard(Vec<u8>),
    Manifest(Manifest),
    Missing,
}

/// Largest request or reply: a shard of the widest stripe (k = 1 makes it the whole stripe)
/// with its proof and framing.
const MAX_MESSAGE: usize = coding::STRIPE_BYTES + 64 * 1024;

/// What placement did, as Prometheus metrics (registered in [`crate::metrics::Metrics`]).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub stored: prometheus_client::metrics::counter::Counter,
    pub refused: prometheus_client::metrics::counter::Counter,
    pub bad: prometheus_client::metrics::counter::Counter,
    pub missing: prometheus_client::metrics::counter::Counter,
    pub rebuilt: prometheus_client::metrics::counter::Counter,
    pub repaired: prometheus_client::metrics::counter::Counter,
    pub swept: prometheus_client::metrics::counter::Counter,
    pub repair_pending: prometheus_client::metrics::gauge::Gauge,
}

/// A validator's part in erasure-coded storage.
pub struct Placement {
    pub params: Params,
    pub store: ShardStore,
    /// This validator's position in the genesis list (its shard index).
    pub me: usize,
    pub rpc: Arc<OnceLock<Rpc>>,
    pub counters: Counters,
    /// Where rebuilt blobs are written before they are served (then deleted).
    pub tmp_dir: std::path::PathBuf,
    /// The node's disk watermark: a peer's shards are refused below it, like uploads.
    pub limits: Arc<crate::limits::Limits>,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Placement({} of {}, k = {})",
            self.me, self.params.n, self.params.k
        )
    }
}

/// Why a blob could not be placed or rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "the record's content could be placed on only {placed} of the {needed} validators needed to rebuild it; try again later"
    )]
    Unplaceable { placed: usize, needed: usize },
    #[error(
        "the record's content is unavailable: {good} good shards of the {needed} needed for part {stripe} were found"
    )]
    Unavailable {
        stripe: u32,
        good: usize,
        needed: usize,
    },
    #[error("no validator holds the record's content")]
    NoManifest,
    #[error("the p2p network is not running yet")]
    NotRunning,
    #[error("shard storage: {0}")]
    Store(String),
    #[error("the rebuilt content does not match its CID")]
    Corrupt,
}

/// A blob's bytes as they come from the store.
pub type ByteStream =
    futures::stream::BoxStream<'static, Result<bytes::Bytes, object_store::Error>>;

/// Cuts a byte stream into stripes of [`coding::STRIPE_BYTES`] (the last one shorter).
struct Stripes {
    stream: ByteStream,
    buf: Vec<u8>,
    done: bool,
}

impl Stripes {
    fn new(stream: ByteStream) -> Stripes {
        Stripes {
            stream,
            buf: Vec::with_capacity(coding::STRIPE_BYTES),
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<Vec<u8>>, PlacementError> {
        use futures::StreamExt as _;
        while !self.done && self.buf.len() < coding::STRIPE_BYTES {
            match self.stream.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(PlacementError::Store(e.to_string())),
                None => self.done = true,
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let rest = if self.buf.len() > coding::STRIPE_BYTES {
            self.buf.split_off(coding::STRIPE_BYTES)
        } else {
            Vec::new()
        };
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

/// Encodes one stripe off the async threads.
async fn code_stripe(
    params: Params,
    stripe: Vec<u8>,
) -> Result<(Hash, Vec<bytes::Bytes>), PlacementError> {
    tokio::task::spawn_blocking(move || coding::encode_stripe(params, &stripe))
        .await
        .map_err(|e| PlacementError::Store(e.to_string()))?
        .map_err(|e| PlacementError::Store(e.to_string()))
}

impl Placement {
    fn rpc(&self) -> Result<&Rpc, PlacementError> {
        self.rpc.get().ok_or(PlacementError::NotRunning)
    }

    async fn call(&self, to: usize, req: &Request) -> Result<Reply, RpcError> {
        let rpc = self.rpc.get().ok_or(RpcError::Closed)?;
        let bytes = rpc
            .call(to, &ehrchain_types::encode(req), CALL_TIMEOUT)
            .await?;
        ehrchain_types::decode(&bytes, MAX_MESSAGE).map_err(|_| RpcError::Busy(to))
    }

    /// Answers one request from validator `from`.
    async fn answer(&self, from: usize, req: Request) -> Reply {
        let me = self.me as u16;
        match req {
            Request::PutManifest { manifest } => {
                if let Err(e) = manifest.check() {
                    return Reply::Refused(e.to_string());
                }
                if manifest.n != self.params.n || manifest.k != self.params.k {
                    return Reply::Refused(
                        "the manifest's code does not match this network".into(),
                    );
                }
                match self.store.put_manifest(&manifest).await {
                    Ok(()) => Reply::Stored,
                    Err(e) => Reply::Refused(e.to_string()),
                }
            }
            Request::Put {
                content,
                stripe,
                shard,
            } => {
                if let Err(e) = self.limits.disk.check_upload(shard.len() as u64) {
                    self.counters.refused.inc();
                    return Reply::Refused(e.to_string());
                }
                let manifest = match self.store.manifest(&content).await {
                    Ok(Some(m)) => m,
                    Ok(None) => return Reply::Refused("no manifest for this content yet".into()),
                    Err(e) => return Reply::Refused(e.to_string()),
                };
                match self
                    .store
                    .put_shard(&manifest, stripe, me, bytes::Bytes::from(shard))
                    .await
                {
                    Ok(()) => {
                        self.counters.stored.inc();
                        Reply::Stored
                    }
                    Err(e) => {
                        self.counters.refused.inc();
                        tracing::warn!(peer = from, content = %crate::blobs::cid_string(&content), stripe, error = %e, "refused a shard that does not match its commitment");
                        Reply::Refused(e.to_string())
                    }
                }
            }
            Request::Get { content, stripe } => match self.store.shard(&content, stripe).await {
                Ok(Some(b)) => Reply::Shard(b.to_vec()),
                _ => Reply::Missing,
            },
            Request::GetManifest { content } => match self.store.manifest(&content).await {
                Ok(Some(m)) => Reply::Manifest(m),
                _ => Reply::Missing,
            },
        }
    }

    /// Codes the blob `content` (read twice through `open`, only one stripe in memory at a
    /// time: once for the manifest, once to send the shards) and places every shard on its
    /// validator. Succeeds when at least `k` validators (this one included) hold the manifest
    /// and a checked shard of every stripe.
    pub async fn spread<F, Fut>(
        &self,
        content: &Hash,
        size: u64,
        open: F,
    ) -> Result<Manifest, PlacementError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<ByteStream, PlacementError>>,
    {
        self.rpc()?;
        let params = self.params;
        // Pass 1: the manifest.
        let mut stripes = Vec::new();
        let mut reader = Stripes::new(open().await?);
        while let Some(stripe) = reader.next().await? {
            let (commitment, _) = code_stripe(params, stripe).await?;
            stripes.push(commitment);
        }
        let manifest = Manifest {
            content: *content,
            size,
            stripe_bytes: coding::STRIPE_BYTES as u32,
            n: params.n,
            k: params.k,
            stripes,
        };
        manifest
            .check()
            .map_err(|e| PlacementError::Store(e.to_string()))?;
        let n = usize::from(params.n);
        let sends = (0..n).map(|i| {
            let manifest = manifest.clone();
            async move {
                if i == self.me {
                    return self.store.put_manifest(&manifest).await.is_ok();
                }
                matches!(
                    self.call_tries(i, &Request::PutManifest { manifest }).await,
                    Some(Reply::Stored)
                )
            }
        });
        let mut ok: Vec<bool> = futures::future::join_all(sends).await;
        // Pass 2: the shards, each to its validator.
        let mut reader = Stripes::new(open().await?);
        let mut index: u32 = 0;
        while let Some(stripe) = reader.next().await? {
            let (_, shards) = code_stripe(params, stripe).await?;
            let sends = shards.into_iter().enumerate().map(|(i, shard)| {
                let live = ok[i];
                let manifest = &manifest;
                async move {
                    if !live {
                        return false;
                    }
                    if i == self.me {
                        return self
                            .store
                            .put_shard(manifest, index, i as u16, shard)
                            .await
                            .is_ok();
                    }
                    let req = Request::Put {
                        content: *content,
                        stripe: index,
                        shard: shard.to_vec(),
                    };
                    match self.call_tries(i, &req).await {
                        Some(Reply::Stored) => true,
                        other => {
                            tracing::warn!(peer = i, content = %crate::blobs::cid_string(content), stripe = index, answer = ?other.map(|r| format!("{r:?}").chars().take(120).collect::<String>()), "a peer did not take its shard");
                            false
                        }
                    }
                }
            });
            let results = futures::future::join_all(sends).await;
            for (i, r) in results.into_iter().enumerate() {
                ok[i] &= r;
            }
            index += 1;
        }
        let placed = ok.iter().filter(|x| **x).count();
        let needed = usize::from(params.k);
        if placed < needed {
            return Err(PlacementError::Unplaceable { placed, needed });
        }
        if placed < n {
            tracing::warn!(content = %crate::blobs::cid_string(content), placed, n, "content placed on fewer than all validators; repair will fill in");
        }
        Ok(manifest)
    }

    /// A call with up to [`TRIES`] attempts (a refusal is final).
    async fn call_tries(&self, to: usize, req: &Request) -> Option<Reply> {
        for _ in 0..TRIES {
            match self.call(to, req).await {
                Ok(r) => return Some(r),
                Err(_) => continue,
            }
        }
        None
    }

    /// The manifest of `content`. When the ledger names its root (`expected`, from the
    /// record), only a manifest with that root: this validator's, else any peer's. Otherwise
    /// this validator's, else one that `f + 1` peers agree on (at most `f` validators are
    /// faulty, so an honest one vouches for it). Either way a lone faulty peer cannot make this
    /// node rebuild, or repair into, a manifest of its choosing.
    pub async fn manifest(
        &self,
        content: &Hash,
        expected: Option<Hash>,
    ) -> Result<Manifest, PlacementError> {
        if let Ok(Some(m)) = self.store.manifest(content).await {
            if expected.is_none_or(|r| r == m.root()) {
                return Ok(m);
            }
            tracing::warn!(content = %crate::blobs::cid_string(content), "this validator's manifest is not the one the ledger names");
        }
        let n = usize::from(self.params.n);
        let f = (n - 1) / 3;
        let asks = (0..n).filter(|i| *i != self.me).map(|i| async move {
            match self
                .call(i, &Request::GetManifest { content: *content })
                .await
            {
                Ok(Reply::Manifest(m))
                    if m.content == *content
                        && m.check().is_ok()
                        && m.n == self.params.n
                        && m.k == self.params.k =>
                {
                    Some(m)
                }
                _ => None,
            }
        });
        let answers: Vec<Manifest> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        if let Some(root) = expected {
            return answers
                .into_iter()
                .find(|m| m.root() == root)
                .ok_or(PlacementError::NoManifest);
        }
        let mut votes: std::collections::BTreeMap<Hash, (usize, Manifest)> =
            std::collections::BTreeMap::new();
        for m in answers {
            votes.entry(m.root()).or_insert((0, m)).0 += 1;
        }
        votes
            .into_values()
            .find(|(count, _)| *count > f)
            .map(|(_, m)| m)
            .ok_or(PlacementError::NoManifest)
    }

    /// Rebuilds `content` into `out` (a temporary file: on an error the caller discards it,
    /// so nobody is ever served a partial file). Wrong shards are skipped and reported.
    pub async fn gather(
        self: &Arc<Self>,
        content: &Hash,
        expected: Option<Hash>,
        out: std::fs::File,
    ) -> Result<Manifest, PlacementError> {
        self.rpc()?;
        let manifest = self.manifest(content, expected).await?;
        let me = self.clone();
        let m = manifest.clone();
        let handle = tokio::runtime::Handle::current();
        let report = tokio::task::spawn_blocking(move || {
            // A peer that did not answer once is not asked again for this blob: a dead
            // validator costs one timeout per read, not one per stripe.
            let mut silent = std::collections::BTreeSet::new();
            let mut fetch = |stripe: u32, index: u16| -> Option<bytes::Bytes> {
                let i = usize::from(index);
                if i == me.me {
                    return handle
                        .block_on(me.store.shard(&m.content, stripe))
                        .ok()
                        .flatten();
                }
                if silent.contains(&i) {
                    return None;
                }
                match handle.block_on(me.call(i, &Request::Get {
                    content: m.content,
                    stripe,
                })) {
                    Ok(Reply::Shard(b)) => Some(bytes::Bytes::from(b)),
                    other => {
                        if other.is_err() {
                            silent.insert(i);
                        }
                        me.counters.missing.inc();
                        tracing::warn!(peer = i, content = %crate::blobs::cid_string(&m.content), stripe, "a peer did not send its shard");
                        None
                    }
                }
            };
            let fetch = move |stripe: u32, index: u16| fetch(stripe, index);
            coding::decode_blob(&m, Some(me.me as u16), fetch, std::io::BufWriter::new(out))
        })
        .await
        .map_err(|e| PlacementError::Store(e.to_string()))?;
        match report {
            Ok(report) => {
                for (stripe, index, why) in &report.bad {
                    self.counters.bad.inc();
                    tracing::warn!(peer = *index, content = %crate::blobs::cid_string(content), stripe = *stripe, why = %why, "a wrong shard was skipped");
                }
                self.counters.rebuilt.inc();
                Ok(manifest)
            }
            Err(coding::CodingError::Unavailable {
                stripe,
                good,
                needed,
            }) => Err(PlacementError::Unavailable {
                stripe,
                good: good.into(),
                needed: needed.into(),
            }),
            Err(coding::CodingError::Mismatch { .. }) => Err(PlacementError::Corrupt),
            Err(e) => Err(PlacementError::Store(e.to_string())),
        }
    }
}

impl Placement {
    /// Rebuilds this validator's missing shards of `content` (a validator that was down, is
    /// new, or lost its disk): the manifest from a peer if need be, then for each missing
    /// stripe `k` checked shards from peers, the stripe decoded and coded again, and this
    /// validator's shard stored (checked against the manifest like any other). Returns how
    /// many shards were rebuilt; waits `pause` between stripes to bound the rate.
    pub async fn repair(
        &self,
        content: &Hash,
        expected: Option<Hash>,
        pause: Duration,
    ) -> Result<usize, PlacementError> {
        let store = |e: coding::ShardError| PlacementError::Store(e.to_string());
        let manifest = match self.store.manifest(content).await {
            Ok(Some(m)) if expected.is_none_or(|r| r == m.root()) => m,
            _ => {
                let m = self.manifest(content, expected).await?;
                self.store.put_manifest(&m).await.map_err(store)?;
                m
            }
        };
        let me = self.me as u16;
        let k = usize::from(manifest.k);
        let mut done = 0;
        for stripe in self.store.missing_stripes(&manifest).await.map_err(store)? {
            let mut good = Vec::new();
            for i in (0..usize::from(manifest.n)).filter(|i| *i != self.me) {
                if good.len() == k {
                    break;
                }
                let req = Request::Get {
                    content: *content,
                    stripe,
                };
                if let Ok(Reply::Shard(b)) = self.call(i, &req).await
                    && let Ok(c) =
                        coding::check_shard(&manifest, stripe, i as u16, bytes::Bytes::from(b))
                {
                    good.push(c);
                }
            }
            if good.len() < k {
                return Err(PlacementError::Unavailable {
                    stripe,
                    good: good.len(),
                    needed: k,
                });
            }
            let m = manifest.clone();
            let shard = tokio::task::spawn_blocking(move || {
                let data = coding::decode_stripe(&m, stripe, &good)?;
                let (_, mut shards) = coding::encode_stripe(m.params(), &data)?;
                Ok::<_, coding::CodingError>(shards.swap_remove(usize::from(me)))
            })
            .await
            .map_err(|e| PlacementError::Store(e.to_string()))?
            .map_err(|e| PlacementError::Store(e.to_string()))?;
            self.store
                .put_shard(&manifest, stripe, me, shard)
                .await
                .map_err(store)?;
            self.counters.repaired.inc();
            done += 1;
            tokio::time::sleep(pause).await;
        }
        Ok(done)
    }
}

/// The [`RpcHandler`] of a shared [`Placement`].
pub struct PlacementHandler(pub Arc<Placement>);

impl RpcHandler for PlacementHandler {
    fn handle(
        &self,
        from: usize,
        request: bytes::Bytes,
    ) -> futures::future::BoxFuture<'static, Option<Vec<u8>>> {
        let p = self.0.clone();
        Box::pin(async move {
            let req: Request = ehrchain_types::decode(&request, MAX_MESSAGE).ok()?;
            Some(ehrchain_types::encode(&p.answer(from, req).await))
        })
    }
}
