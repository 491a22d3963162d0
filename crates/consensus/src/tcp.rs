//! Production wiring: the tokio runtime and authenticated, encrypted TCP between validators
//! (`p2p::authenticated::lookup`, addresses known from genesis).

use crate::{
    Channels, EngineConfig, Ledger,
    engine::{CH_BACKFILL, CH_BROADCAST, CH_CERT, CH_GOSSIP, CH_RESOLVE, CH_VOTE},
    start_validator,
};
use commonware_cryptography::{ChaCha20Poly1305, Signer as _, ed25519};
use commonware_p2p::{AddressableManager as _, authenticated::lookup};
use commonware_runtime::{Quota, Runner as _, Spawner as _, Supervisor as _, tokio as cw_tokio};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map, ordered::Set};
use ehrchain_types::Block;
use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

/// Largest p2p message: a full block plus framing and a certificate.
const MAX_MESSAGE: u32 = ehrchain_types::MAX_BLOCK_BYTES as u32 + 64 * 1024;

/// One validator process.
pub struct TcpValidator {
    /// 32-byte ed25519 seed of this validator's consensus key.
    pub signer_seed: [u8; 32],
    /// Where this validator accepts peer connections.
    pub listen: SocketAddr,
    /// Every validator (including this one): consensus public key and address.
    pub validators: Vec<([u8; 32], SocketAddr)>,
    pub genesis: Block,
    /// Directory for the engine's own storage (votes journal, finalized-block archives).
    pub storage_dir: PathBuf,
    pub leader_timeout: Duration,
    pub idle_block_interval: Duration,
    /// Request and response between validators on their own channel ([`crate::rpc`]): the
    /// handler answers peers, and the slot receives the handle once the network runs.
    pub rpc: Option<RpcSetup>,
}

/// What a node needs to use [`crate::rpc`].
pub struct RpcSetup {
    pub handler: Arc<dyn crate::rpc::RpcHandler>,
    pub slot: Arc<std::sync::OnceLock<crate::rpc::Rpc>>,
}

/// The channel of [`crate::rpc`] (after the consensus channels).
pub const CH_RPC: u64 = 6;

/// Why the validator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid validator public key in genesis: {0}")]
    BadValidatorKey(String),
    #[error("invalid validator secret key")]
    BadSigner,
    #[error("this validator's key is not in the genesis validator set")]
    NotAValidator,
    #[error("validator set has duplicate keys")]
    Duplicates,
}

/// Decodes an ed25519 public key given as 32 bytes.
pub fn public_key(bytes: &[u8; 32]) -> Result<ed25519::PublicKey, StartError> {
    use commonware_codec::DecodeExt as _;
    ed25519::PublicKey::decode(bytes::Bytes::copy_from_slice(bytes))
        .map_err(|e| StartError::BadValidatorKey(e.to_string()))
}

/// Decodes an ed25519 private key from its 32-byte seed.
pub fn private_key(seed: &[u8; 32]) -> Result<ed25519::PrivateKey, StartError> {
    use commonware_codec::DecodeExt as _;
    ed25519::PrivateKey::decode(bytes::Bytes::copy_from_slice(seed))
        .map_err(|_| StartError::BadSigner)
}

/// The public key of a 32-byte seed, as bytes.
pub fn public_key_of_seed(seed: &[u8; 32]) -> Result<[u8; 32], StartError> {
    let pk = private_key(seed)?.public_key();
    let mut out = [0u8; 32];
    out.copy_from_slice(pk.as_ref());
    Ok(out)
}

/// Runs a validator on the tokio runtime until `main` completes (e.g. the HTTP API server
/// returns after Ctrl-C). `main` runs inside the same runtime, so it may use tokio IO.
pub fn run<F>(v: TcpValidator, ledger: Arc<dyn Ledger>, main: F) -> Result<(), StartError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let signer = private_key(&v.signer_seed)?;
    let me = signer.public_key();
    let mut keys = Vec::new();
    for (pk, _) in &v.validators {
        keys.push(public_key(pk)?);
    }
    if !keys.contains(&me) {
        return Err(StartError::NotAValidator);
    }
    let set = Set::try_from(keys.clone()).map_err(|_| StartError::Duplicates)?;
    let peers: Map<ed25519::PublicKey, commonware_p2p::Address> = keys
        .iter()
        .cloned()
        .zip(v.validators.iter().map(|(_, a)| (*a).into()))
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| StartError::Duplicates)?;
    let n = keys.len();
    let runner =
        cw_tokio::Runner::new(cw_tokio::Config::new().with_storage_directory(&v.storage_dir));
    runner.start(|context| async move {
        let p2p = lookup::Config::local(
            Cups::<_, ChaCha20Poly1305>::new(
                Sake {
                    signer: signer.clone(),
                    synchrony_bound: Duration::from_secs(5),
                    max_handshake_age: Duration::from_secs(10),
                    version: sake::Version::V1,
                },
                cups::Version::V1,
            ),
            ehrchain_types::domain::P2P,
            v.listen,
            NZUsize!(n.max(1)),
            MAX_MESSAGE,
            NZUsize!(1_024),
        );
        let (mut network, mut oracle) = lookup::Network::new(context.child("network"), p2p);
        let _ = oracle.track(0, peers);
        // Per peer and channel. The engine's mailboxes are sized peers × this burst, so it is
        // also a memory bound: 100,000 here cost about 1 GB per peer.
        let quota = Quota::per_second(NZU32!(1_024));
        let channels = Channels {
            vote: network.register(CH_VOTE, quota),
            cert: network.register(CH_CERT, quota),
            resolve: network.register(CH_RESOLVE, quota),
            backfill: network.register(CH_BACKFILL, quota),
            broadcast: network.register(CH_BROADCAST, quota),
            gossip: network.register(CH_GOSSIP, quota),
        };
        // Shard messages are megabytes: a small burst bounds what a peer can queue here.
        let rpc = v.rpc.map(|setup| {
            let ch = network.register(CH_RPC, Quota::per_second(NZU32!(64)));
            (setup, ch)
        });
        network.start();
        if let Some((setup, (tx, rx))) = rpc {
            let me_at = keys.iter().position(|k| *k == me).expect("checked above");
            let spawner = context.child("rpc_request");
            let spawn = Arc::new(move |fut: futures::future::BoxFuture<'static, ()>| {
                spawner.child("request").spawn(move |_| fut);
            });
            let clock = context.child("rpc_clock");
            let sleep = Arc::new(move |d: Duration| {
                let c = clock.child("sleep");
                let f: futures::future::BoxFuture<'static, ()> =
                    Box::pin(async move { commonware_runtime::Clock::sleep(&c, d).await });
                f
            });
            let (handle, serve) =
                crate::rpc::serve(tx, rx, keys.clone(), me_at, setup.handler, spawn, sleep);
            let _ = setup.slot.set(handle);
            context.child("rpc").spawn(move |_| serve);
        }
        let cfg = EngineConfig {
            signer,
            validators: set,
            genesis: v.genesis,
            partition_prefix: "ehrchain".into(),
            leader_timeout: v.leader_timeout,
            idle_block_interval: v.idle_block_interval,
        };
        start_validator(
            context.child("validator"),
            cfg,
            oracle.clone(),
            oracle,
            channels,
            ledger,
        )
        .await;
        main.await;
    });
    Ok(())
}
