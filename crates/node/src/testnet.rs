//! Local multi-validator testnets: one genesis, keys and a config per validator, all on
//! loopback with distinct ports, each validator a separate `ehrchain node --config` process.

use crate::{
    GenesisFile, NodeConfig,
    config::{BlockConfig, write_validator_key},
    dev::demo_accounts,
    genesis::GenesisValidator,
    mempool::MempoolLimits,
};
use ehrchain_crypto::Keypair;
use ehrchain_ledger::GenesisState;
use ehrchain_types::PublicKey;
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

/// The chain id of local testnets.
pub const TESTNET_CHAIN_ID: &str = "ehrchain-testnet";
/// Most validators `init` creates.
pub const MAX_VALIDATORS: usize = 64;

/// Where validator `i`'s files live.
pub fn node_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("node{i}"))
}

/// The config file of validator `i`.
pub fn node_config(dir: &Path, i: usize) -> PathBuf {
    node_dir(dir, i).join("node.toml")
}

/// Validator `i`'s API and p2p addresses: `base + 2i` and `base + 2i + 1` on 127.0.0.1.
pub fn addresses(base_port: u16, i: usize) -> (SocketAddr, SocketAddr) {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let api = base_port as usize + 2 * i;
    (
        SocketAddr::new(ip, api as u16),
        SocketAddr::new(ip, (api + 1) as u16),
    )
}

/// Writes a testnet of `validators` validators into an empty or new `dir`: `genesis.json`,
/// `keys/` (admin and demo keystores, passphrase `dev`) and `nodeI/{node.toml,validator.key}`.
pub fn init(dir: &Path, validators: usize, base_port: u16) -> anyhow::Result<Vec<NodeConfig>> {
    prepare_dir(dir, validators, base_port)?;
    let accounts = demo_accounts(&dir.join("keys"))?;
    init_with(dir, validators, base_port, TESTNET_CHAIN_ID, accounts)
}

fn prepare_dir(dir: &Path, validators: usize, base_port: u16) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_VALIDATORS).contains(&validators),
        "--validators must be between 1 and {MAX_VALIDATORS}"
    );
    anyhow::ensure!(
        base_port >= 1024 && (base_port as usize + 2 * validators) <= 65_535,
        "--base-port must leave room for {} ports between 1024 and 65535",
        2 * validators
    );
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!("{} is not empty; pick a new --dir", dir.display());
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Writes a testnet with the given chain id and genesis accounts into `dir` (which
/// [`init`] has checked and created).
pub fn init_with(
    dir: &Path,
    validators: usize,
    base_port: u16,
    chain_id: &str,
    accounts: Vec<ehrchain_ledger::GenesisAccount>,
) -> anyhow::Result<Vec<NodeConfig>> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let mut genesis_validators = Vec::new();
    let mut seeds = Vec::new();
    for i in 0..validators {
        let key = Keypair::generate();
        let pk = ehrchain_consensus::tcp::public_key_of_seed(&key.seed())?;
        genesis_validators.push(GenesisValidator {
            name: format!("node{i}"),
            public_key: PublicKey(pk),
            p2p_address: addresses(base_port, i).1,
        });
        seeds.push(key.seed());
    }
    let genesis = GenesisFile {
        ledger: GenesisState {
            chain_id: chain_id.into(),
            timestamp_ms: crate::api::now_ms(),
            accounts,
            synthetic_records: 0,
        },
        validators: genesis_validators,
    };
    let genesis_path = dir.join("genesis.json");
    crate::genesis::save(&genesis, &genesis_path)?;
    let mut configs = Vec::new();
    for (i, seed) in seeds.iter().enumerate() {
        let nd = node_dir(&dir, i);
        std::fs::create_dir_all(&nd)?;
        write_validator_key(&nd.join("validator.key"), seed)?;
        let (api_listen, p2p_listen) = addresses(base_port, i);
        let cfg = NodeConfig {
            data_dir: nd.join("data"),
            genesis: genesis_path.clone(),
            validator_key: nd.join("validator.key"),
            api_listen,
            p2p_listen,
            mempool: MempoolLimits::default(),
            block: BlockConfig::default(),
            blobs: crate::config::BlobConfig::default(),
            store: crate::config::StoreConfig::default(),
            limits: crate::limits::LimitsConfig::default(),
            followers: Vec::new(),
        };
        cfg.save(&node_config(&dir, i))?;
        configs.push(cfg);
    }
    Ok(configs)
}

/// The number of validators of a testnet written by [`init`].
pub fn count(dir: &Path) -> anyhow::Result<usize> {
    let genesis = crate::genesis::load(&dir.join("genesis.json")).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a testnet dir (run `ehrchain testnet init`): {e}",
            dir.display()
        )
    })?;
    Ok(genesis.validators.len())
}
