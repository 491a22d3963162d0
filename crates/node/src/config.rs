//! The node's TOML configuration.

use crate::mempool::MempoolLimits;
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// A validator node's configuration (`ehrchain node --config FILE`). Relative paths are
/// taken relative to the directory of the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the chain database and the engine's storage live.
    pub data_dir: PathBuf,
    /// The genesis file (JSON).
    pub genesis: PathBuf,
    /// File holding this validator's consensus key seed (64 hex characters, mode 0600).
    pub validator_key: PathBuf,
    /// HTTP API listen address.
    pub api_listen: SocketAddr,
    /// Peer-to-peer listen address; must match this validator's entry in the genesis.
    pub p2p_listen: SocketAddr,
    #[serde(default)]
    pub mempool: MempoolLimits,
    #[serde(default)]
    pub block: BlockConfig,
    #[serde(default)]
    pub blobs: BlobConfig,
    #[serde(default)]
    pub store: StoreConfig,
    /// Disk watermark, upload quotas and rate limits.
    #[serde(default)]
    pub limits: crate::limits::LimitsConfig,
    /// Accounts of follower nodes (`ehrchain follow`) this validator serves block bodies to:
    /// they see the whole ledger, as consortium members do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub followers: Vec<ehrchain_types::AccountId>,
}

/// The encrypted blob store (content-addressed): the local filesystem under
/// `data_dir/blobs`, or an S3-compatible bucket (build with `--features s3`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobConfig {
    /// Largest blob (ciphertext) accepted, in bytes.
    pub max_bytes: u64,
    /// How long after an allowed, audited read the reader may download the blob, in seconds.
    #[serde(default = "default_read_window")]
    pub read_window_secs: u64,
    /// An S3-compatible bucket instead of the local filesystem. Credentials come from the
    /// usual `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
}

/// Where the blobs live when they live in S3.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint of an S3-compatible service (MinIO, Ceph, …); AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Allow a plain-HTTP endpoint (only for a service on the same host or network).
    #[serde(default)]
    pub allow_http: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_read_window() -> u64 {
    600
}

impl Default for BlobConfig {
    fn default() -> Self {
        BlobConfig {
            max_bytes: 1 << 30,
            read_window_secs: default_read_window(),
            s3: None,
        }
    }
}

/// The chain store (`data_dir/chain.redb`): blocks, receipts, indexes and the ledger state.
/// Records, their indexes and the state tree's nodes are read from it as needed, so the
/// node's memory does not grow with them; this cache is what it keeps of them.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The store's page cache, in bytes.
    pub cache_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_bytes: crate::store::CACHE_BYTES,
        }
    }
}

/// Block production settings.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// Most transactions per block.
    pub max_txs: usize,
    /// How long a leader has to propose before its view times out, in milliseconds.
    pub leader_timeout_ms: u64,
    /// How far in the future (by this node's clock) a block's timestamp may be. A block further
    /// ahead is verified once this node's clock has caught up to within this drift, and refused
    /// if it is more than `chain::MAX_FUTURE_DRIFTS` (2) times this far ahead.
    pub max_clock_drift_ms: u64,
    /// With nothing to propose, how long after its parent a leader proposes an empty block.
    #[serde(default = "default_idle_ms")]
    pub idle_block_interval_ms: u64,
}

fn default_idle_ms() -> u64 {
    500
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            max_txs: 5_000,
            leader_timeout_ms: 1_000,
            max_clock_drift_ms: 10_000,
            idle_block_interval_ms: default_idle_ms(),
        }
    }
}

impl NodeConfig {
    /// Reads a config file and resolves its relative paths.
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let mut cfg: NodeConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config {} is malformed: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.data_dir, &mut cfg.genesis, &mut cfg.validator_key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the rules a config must follow, naming the broken one.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=ehrchain_types::MAX_BLOCK_TXS).contains(&self.block.max_txs),
            "block.max_txs must be between 1 and {}",
            ehrchain_types::MAX_BLOCK_TXS
        );
        anyhow::ensure!(
            self.block.leader_timeout_ms >= 50,
            "block.leader_timeout_ms must be at least 50"
        );
        anyhow::ensure!(
            self.block.idle_block_interval_ms * 2 <= self.block.leader_timeout_ms,
            "block.idle_block_interval_ms must be at most half of block.leader_timeout_ms"
        );
        anyhow::ensure!(
            self.mempool.max_txs >= 1,
            "mempool.max_txs must be at least 1"
        );
        anyhow::ensure!(
            self.mempool.max_per_sender >= 1,
            "mempool.max_per_sender must be at least 1"
        );
        anyhow::ensure!(
            self.api_listen != self.p2p_listen,
            "api_listen and p2p_listen must differ"
        );
        self.limits.validate()?;
        Ok(())
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_atomic(path, toml::to_string_pretty(self)?.as_bytes())
    }
}

/// Writes a file atomically: temp file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads a validator key file (64 hex characters).
pub fn read_validator_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read validator key {}: {e}", path.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| {
        anyhow::anyhow!(
            "validator key {} must hold 64 hex characters",
            path.display()
        )
    })?;
    Ok(seed)
}

/// Writes a validator key file readable only by its owner.
pub fn write_validator_key(path: &Path, seed: &[u8; 32]) -> anyhow::Result<()> {
    write_atomic(path, hex::encode(seed).as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
