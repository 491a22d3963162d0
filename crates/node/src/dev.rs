//! The embedded development chain: one validator, a consortium admin and ten funded demo
//! accounts whose keystores (passphrase `dev`) are written next to the chain.

use crate::{
    GenesisFile, NodeConfig,
    config::{BlockConfig, write_validator_key},
    genesis::GenesisValidator,
    mempool::MempoolLimits,
};
use ehrchain_crypto::{Keypair, Keystore, keystore::DEFAULT_KDF};
use ehrchain_ledger::{GenesisAccount, GenesisState};
use ehrchain_types::{PublicKey, Role};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// The passphrase of the dev chain's keystores.
pub const DEV_PASSPHRASE: &str = "dev";
/// The dev chain's id.
pub const DEV_CHAIN_ID: &str = "ehrchain-dev";
/// Number of funded demo accounts and their balance (as in the papers' Ganache set-up).
pub const DEMO_ACCOUNTS: usize = 10;
pub const DEMO_BALANCE: u64 = 100;

/// The paths of a dev data dir.
pub struct DevLayout {
    pub data_dir: PathBuf,
    pub keys: PathBuf,
    pub genesis: PathBuf,
    pub config: PathBuf,
}

impl DevLayout {
    pub fn new(data_dir: &Path) -> DevLayout {
        DevLayout {
            data_dir: data_dir.to_path_buf(),
            keys: data_dir.join("keys"),
            genesis: data_dir.join("genesis.json"),
            config: data_dir.join("node.toml"),
        }
    }
}

/// Creates the keystores of the consortium admin and the funded demo accounts in `keys` (all
/// with the passphrase [`DEV_PASSPHRASE`]) and returns their genesis entries.
pub fn demo_accounts(keys: &Path) -> anyhow::Result<Vec<GenesisAccount>> {
    let ks = Keystore::new(keys);
    let mut accounts = Vec::new();
    let admin = Keypair::generate();
    ks.create("admin", &admin, DEV_PASSPHRASE, DEFAULT_KDF)?;
    accounts.push(GenesisAccount {
        public_key: admin.public_key(),
        role: Some(Role::Admin),
        balance: 0,
        encryption_key: Some(admin.encryption().public()),
    });
    for i in 1..=DEMO_ACCOUNTS {
        let k = Keypair::generate();
        ks.create(&format!("demo{i}"), &k, DEV_PASSPHRASE, DEFAULT_KDF)?;
        accounts.push(GenesisAccount {
            public_key: k.public_key(),
            role: None,
            balance: DEMO_BALANCE,
            encryption_key: Some(k.encryption().public()),
        });
    }
    Ok(accounts)
}

/// Prepares a dev data dir: on first use creates keys, genesis and config; afterwards reuses
/// them (the same chain again). Returns the config and whether the chain is new.
pub fn prepare(data_dir: &Path, api_listen: SocketAddr) -> anyhow::Result<(NodeConfig, bool)> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let layout = DevLayout::new(&data_dir);
    let p2p_listen = SocketAddr::new(api_listen.ip(), api_listen.port().wrapping_add(1).max(1024));
    if layout.config.exists() {
        let mut cfg = NodeConfig::load(&layout.config)?;
        cfg.api_listen = api_listen;
        let genesis = crate::genesis::load(&cfg.genesis)?;
        cfg.p2p_listen = genesis.validators[0].p2p_address;
        return Ok((cfg, false));
    }
    if layout.keys.exists() || layout.genesis.exists() {
        anyhow::bail!(
            "{} holds a partly initialised dev chain (no node.toml); remove it or pick another --data-dir",
            data_dir.display()
        );
    }
    let accounts = demo_accounts(&layout.keys)?;
    let validator = Keypair::generate();
    let vkey = data_dir.join("validator.key");
    write_validator_key(&vkey, &validator.seed())?;
    let vpk = ehrchain_consensus::tcp::public_key_of_seed(&validator.seed())?;
    let genesis = GenesisFile {
        ledger: GenesisState {
            chain_id: DEV_CHAIN_ID.into(),
            timestamp_ms: crate::api::now_ms(),
            accounts,
            synthetic_records: 0,
        },
        validators: vec![GenesisValidator {
            name: "dev".into(),
            public_key: PublicKey(vpk),
            p2p_address: p2p_listen,
        }],
    };
    crate::genesis::save(&genesis, &layout.genesis)?;
    let cfg = NodeConfig {
        data_dir: data_dir.clone(),
        genesis: layout.genesis.clone(),
        validator_key: vkey,
        api_listen,
        p2p_listen,
        mempool: MempoolLimits::default(),
        block: BlockConfig::default(),
        blobs: crate::config::BlobConfig::default(),
        store: crate::config::StoreConfig::default(),
        limits: crate::limits::LimitsConfig::default(),
        followers: Vec::new(),
    };
    cfg.save(&layout.config)?;
    Ok((cfg, true))
}
