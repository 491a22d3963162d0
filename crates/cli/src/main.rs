//! `ehrchain`: the node, the development chain and the client commands in one binary.
#![forbid(unsafe_code)]

mod bench;
mod bench_client;
mod clinical;
mod emergency;
mod ml;
mod soak;
mod testnet;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use ehrchain_client::api::{AccountView, StatusView, TxView};
use ehrchain_client::{self as sdk, Node, Session};
use ehrchain_crypto::{Keypair, Keystore, keystore::DEFAULT_KDF};
use ehrchain_node::{NodeConfig, dev};
use ehrchain_portal::PortalConfig;
use ehrchain_types::{AccountId, Hash, Role, TxPayload, entries::RecordStatus};
use serde_json::{Value, json};
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

#[derive(Parser)]
#[command(
    name = "ehrchain",
    version,
    about = "Patient-owned health records on a permissioned BFT ledger",
    long_about = "Patient-owned health records on a permissioned BFT ledger.\n\nStart a development chain with `ehrchain dev`, then use the client commands against it."
)]
struct Cli {
    /// The node's API URL.
    #[arg(
        long,
        global = true,
        env = "EHRCHAIN_NODE",
        default_value = "http://127.0.0.1:8080"
    )]
    node: String,
    /// Directory of your keystores (default: ~/.ehrchain/keys).
    #[arg(long, global = true, env = "EHRCHAIN_HOME")]
    home: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the embedded development chain: one validator, the API, an admin and 10 funded demo accounts.
    Dev {
        /// Where the chain, its keys and config live (created on first use, reused after).
        #[arg(long, default_value = "./ehrchain-dev")]
        data_dir: PathBuf,
        /// API listen address (peer-to-peer uses the next port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Web portal listen address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        portal: SocketAddr,
        /// Do not start the web portal.
        #[arg(long)]
        no_portal: bool,
        /// Seed a small demo world (a patient, doctors, a pharmacist, an insurer, a regulator,
        /// with records, vitals, an appointment, prescriptions and a claim) so every portal
        /// dashboard has content. Done once per chain.
        #[arg(long)]
        demo: bool,
    },
    /// Run the web portal: every role's pages and the chain explorer, as a client of a node
    /// (`--node`), with the keystores of `--home`.
    Portal {
        /// Listen address (loopback by default: run it on your own machine).
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// The chain's genesis file, to check audit proofs against (default: genesis.json
        /// beside the key directory, as `ehrchain dev` lays it out).
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// Also answer to this Host (host:port), when the portal is served behind a name.
        #[arg(long = "public-host")]
        public_host: Vec<String>,
        /// Sign a session out after this long without a request (e.g. 15m, 1h).
        #[arg(long, default_value = "15m")]
        idle_timeout: String,
        /// Mark the session cookie Secure: use when users reach the portal over HTTPS (a TLS
        /// proxy in front of it, named with --public-host).
        #[arg(long)]
        secure_cookies: bool,
    },
    /// Run a validator node from a TOML config.
    Node {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a follower: a non-voting node that pulls finalized blocks from validators, checks
    /// their certificates against the genesis validators, executes them and serves the read
    /// API; submissions, uploads and record content are forwarded to a validator. The
    /// validators serve it if its account (--key) is the admin, an approved auditor, or listed
    /// under `followers` in their configs.
    Follow {
        /// A validator's API (repeat for more; tried in order).
        #[arg(long = "upstream", required = true)]
        upstreams: Vec<String>,
        /// The chain's genesis file (the trust anchor for every certificate).
        #[arg(long)]
        genesis: PathBuf,
        /// The local key the follower signs its block requests with.
        #[arg(long = "key")]
        key: String,
        /// Where the follower keeps its chain.
        #[arg(long, default_value = "./ehrchain-follower")]
        data_dir: PathBuf,
        /// API listen address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
    /// Manage local keystores.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Register your account in a role (professional roles wait for the admin's approval).
    Register {
        #[command(flatten)]
        key: KeyArg,
        /// patient, doctor, pharmacist, organisation, insurer, regulator, researcher or guardian.
        #[arg(long)]
        role: String,
        /// Organisation name (required for doctors and pharmacists).
        #[arg(long)]
        org: Option<String>,
        /// Professional registration / licence number.
        #[arg(long)]
        licence: Option<String>,
        /// Your details as JSON (patients: name, date_of_birth, address, mobile, insurance;
        /// doctors: name, date_of_birth, address, email, phone, licence, organisation). They are
        /// encrypted here and stored as your profile record; only a fingerprint is on the ledger.
        #[arg(long)]
        profile: Option<PathBuf>,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Approve a pending professional account (consortium admin only).
    Approve {
        #[command(flatten)]
        key: KeyArg,
        /// The account to approve (ehr… id or a local key name).
        account: String,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Transfer tokens.
    Transfer {
        #[command(flatten)]
        key: KeyArg,
        /// Recipient (ehr… id or a local key name).
        #[arg(long)]
        to: String,
        #[arg(long)]
        amount: u64,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Show an account: role, approval, balance, nonce.
    Account {
        /// ehr… id or a local key name.
        account: String,
    },
    /// Encrypted health records: add, list, read, approve.
    #[command(subcommand)]
    Record(RecordCmd),
    /// Consent: grant, revoke, list; access requests and their answers.
    #[command(subcommand)]
    Access(AccessCmd),
    /// Appointment slots, bookings (fee in escrow), confirmation, cancellation, completion.
    #[command(subcommand)]
    Appointment(clinical::AppointmentCmd),
    /// Symptom reports from patients to doctors (encrypted notes records).
    #[command(subcommand)]
    Symptoms(clinical::SymptomsCmd),
    /// Prescriptions: write, direct to a pharmacy, dispense (which issues an invoice).
    #[command(subcommand)]
    Rx(clinical::RxCmd),
    /// Invoices: list, pay.
    #[command(subcommand)]
    Invoice(clinical::InvoiceCmd),
    /// Insurance policies: an insurer records coverage and approval levels for a patient.
    #[command(subcommand)]
    Policy(clinical::PolicyCmd),
    /// Insurance claims for invoices, approved level by level.
    #[command(subcommand)]
    Claim(clinical::ClaimCmd),
    /// Your guardians for emergency access: who, how many must agree, what it opens.
    #[command(subcommand)]
    Guardians(emergency::GuardiansCmd),
    /// Emergency ("break-glass") access: a doctor asks, guardians release k-of-n, the
    /// patient is alerted and reviews.
    #[command(subcommand)]
    Emergency(emergency::EmergencyCmd),
    /// Decision support: rank diseases for symptoms, with ICD-10 codes and medicines to
    /// consider (a suggestion for a clinician to confirm, never an order).
    Predict(ml::PredictArgs),
    /// Train, evaluate and benchmark the decision-support models (docs/ml.md).
    #[command(subcommand)]
    Ml(ml::MlCmd),
    /// A patient's audit trail, and offline-checkable inclusion proofs of audit events.
    Audit(AuditArgs),
    /// Offline-checkable proofs of ledger state: an account, a grant, a record's status, or
    /// their absence ("no grant to X"), in the state after a finalized block.
    #[command(subcommand)]
    State(StateCmd),
    /// A patient's QR code (account id and profile fingerprint), and checking a scanned one.
    Qr(QrArgs),
    /// Inspect and verify the chain.
    #[command(subcommand)]
    Chain(ChainCmd),
    /// Run a local multi-validator testnet (separate processes on loopback).
    #[command(subcommand)]
    Testnet(TestnetCmd),
    /// Load-test a fresh network of validator processes: throughput, latency, CPU, memory, disk.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum TestnetCmd {
    /// Write a genesis, keys and one config per validator into a new directory.
    Init {
        /// Number of validators.
        #[arg(long)]
        validators: usize,
        /// The testnet directory (must be new or empty).
        #[arg(long)]
        dir: PathBuf,
        /// Validator i listens for the API on BASE+2i and for peers on BASE+2i+1.
        #[arg(long, default_value_t = 8080)]
        base_port: u16,
    },
    /// Start every validator of a testnet as its own process; Ctrl-C stops them all.
    Run {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum RecordCmd {
    /// Encrypt a file here, upload the ciphertext and anchor the record on the ledger.
    Add {
        #[command(flatten)]
        key: KeyArg,
        /// The patient the record is about (ehr… id or key name).
        #[arg(long)]
        patient: String,
        /// demographics, vitals, lab, imaging, medication, notes, insurance or emergency.
        #[arg(long)]
        category: String,
        /// The file to encrypt and upload (or give it as `--file FILE`).
        #[arg(
            value_name = "FILE",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        path: Option<PathBuf>,
        /// The same as `FILE`.
        #[arg(long)]
        file: Option<PathBuf>,
        /// A title, sealed with the record (only readers of the record see it).
        #[arg(long)]
        title: Option<String>,
    },
    /// List the records of a patient that you may see.
    List {
        #[command(flatten)]
        key: KeyArg,
        /// Default: your own records.
        #[arg(long)]
        patient: Option<String>,
    },
    /// Read a record: the read is audited on the ledger; if allowed, the ciphertext is
    /// downloaded, decrypted here and checked against the ledger's commitment.
    Get {
        #[command(flatten)]
        key: KeyArg,
        record: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Approve a record someone wrote for you: it enters your chart.
    Approve {
        #[command(flatten)]
        key: KeyArg,
        record: String,
    },
    /// Reject a record someone wrote for you: it never enters your chart.
    Reject {
        #[command(flatten)]
        key: KeyArg,
        record: String,
    },
}

#[derive(Subcommand)]
enum AccessCmd {
    /// Grant an account (or org:NAME) access to categories of your records.
    Grant {
        #[command(flatten)]
        key: KeyArg,
        /// ehr… id, key name, or org:NAME for every member of an organisation.
        #[arg(long)]
        to: String,
        /// CAT[,CAT…] or all.
        #[arg(long)]
        categories: String,
        /// e.g. 30m, 12h, 7d; the grant stops allowing anything after it.
        #[arg(long)]
        expires: Option<String>,
        /// Also allow writing records (they wait for your approval).
        #[arg(long)]
        write: bool,
    },
    /// Revoke a grant (all of it, or some categories); revoked categories get a new key.
    Revoke {
        #[command(flatten)]
        key: KeyArg,
        #[arg(long)]
        to: String,
        #[arg(long)]
        categories: Option<String>,
    },
    /// Your grants.
    List {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Ask a patient for access, with a reason only the patient can read.
    Request {
        #[command(flatten)]
        key: KeyArg,
        #[arg(long)]
        patient: String,
        #[arg(long)]
        categories: String,
        #[arg(long)]
        reason: String,
        /// Ask for write access too.
        #[arg(long)]
        write: bool,
    },
    /// Your inbox of access requests (and the requests you made).
    Requests {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Approve a request: grants what was asked.
    Approve {
        #[command(flatten)]
        key: KeyArg,
        request: String,
        #[arg(long)]
        expires: Option<String>,
    },
    /// Deny a request.
    Deny {
        #[command(flatten)]
        key: KeyArg,
        request: String,
    },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AuditArgs {
    #[command(subcommand)]
    cmd: Option<AuditCmd>,
    /// The patient's key (lists who accessed what and when).
    #[arg(long = "key")]
    key: Option<String>,
    /// Only events about this record.
    #[arg(long)]
    record: Option<String>,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Fetch the inclusion proof of an audit event into a file (asked as the patient, a
    /// party of the event, or a consortium member).
    Proof {
        event: String,
        /// The local key that asks.
        #[arg(long = "key")]
        key: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a proof file offline: leaf, Merkle path, block header and finality certificate.
    Verify {
        file: PathBuf,
        #[command(flatten)]
        genesis: GenesisArg,
    },
}

#[derive(Subcommand)]
enum StateCmd {
    /// Fetch the proof of a state entry, or of its absence, into a file (asked as a party of
    /// the entry, or a consortium member).
    Proof {
        /// The entry: account:ID, record:ID, keys:PATIENT:CATEGORY, grant:PATIENT:GRANTEE
        /// (an account id or org:NAME), request:ID or item:ID; accounts may be local key names.
        entry: String,
        /// The local key that asks.
        #[arg(long = "key")]
        key: String,
        #[arg(long)]
        out: PathBuf,
        /// The answer is checked against it before it is written, when one is found.
        #[command(flatten)]
        genesis: GenesisArg,
    },
    /// Check a state proof file offline: the tree proof, the block header's state root and
    /// its finality certificate, against the genesis validators.
    Verify {
        file: PathBuf,
        #[command(flatten)]
        genesis: GenesisArg,
    },
}

/// The genesis file a proof is checked against.
#[derive(Args)]
struct GenesisArg {
    /// The chain's genesis file: the validator set the finality certificate must satisfy
    /// (the trust anchor). Default: $EHRCHAIN_GENESIS, else genesis.json beside the key
    /// directory (as `ehrchain dev` lays it out).
    #[arg(long, env = "EHRCHAIN_GENESIS")]
    genesis: Option<PathBuf>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct QrArgs {
    #[command(subcommand)]
    cmd: Option<QrCmd>,
    /// The patient's key.
    #[arg(long = "key")]
    key: Option<String>,
    /// Where to write the SVG.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum QrCmd {
    /// Check a scanned payload (ehrchain:1:CHAIN:ACCOUNT:FINGERPRINT) against the ledger.
    Check { payload: String },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Create a new signing key, encrypted under a passphrase.
    New { name: String },
    /// List local keys.
    List,
}

#[derive(Subcommand)]
enum ChainCmd {
    /// The node's chain status.
    Status,
    /// A block by height. Without `--key`, or for a key that is not a consortium member
    /// (validator, admin, approved auditor), only the header and transaction ids.
    Block {
        height: u64,
        /// Ask as this local key.
        #[arg(long = "key")]
        key: Option<String>,
    },
    /// A transaction by id. Its body, receipt and events are shown to its parties and to
    /// consortium members; ask with `--key`.
    Tx {
        hash: String,
        /// Ask as this local key.
        #[arg(long = "key")]
        key: Option<String>,
    },
    /// Verify a chain: every block's hash, links, Merkle roots, signatures, finality
    /// certificate and state root, replayed from the genesis file. From a stopped node's data
    /// dir (`--data-dir`), or, as a consortium member (`--key` of the admin or of an
    /// approved auditor account), from a running node's API (`--remote`).
    Verify {
        /// The node's data dir (holding chain.redb).
        #[arg(long, required_unless_present = "remote", conflicts_with = "remote")]
        data_dir: Option<PathBuf>,
        /// Fetch the blocks from the node (`--node`) instead, signed by `--key`.
        #[arg(long, requires = "key")]
        remote: bool,
        /// The member key that signs the block requests (with `--remote`).
        #[arg(long = "key")]
        key: Option<String>,
        /// The genesis file, the trust anchor (default: DATA_DIR/genesis.json; with `--remote`,
        /// genesis.json beside the key directory).
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
}

#[derive(Args)]
struct KeyArg {
    /// Name of the local key that signs.
    #[arg(long = "key")]
    name: String,
}

#[derive(Args)]
struct WaitArg {
    /// Return once the node accepts the transaction instead of waiting for finality.
    #[arg(long)]
    no_wait: bool,
    /// Use this nonce instead of the account's next one (to replace a stuck transaction; a
    /// used nonce is refused as a replay).
    #[arg(long)]
    nonce: Option<u64>,
}

struct Ctx {
    json: bool,
    node: String,
    home: PathBuf,
}

impl Ctx {
    fn client(&self) -> Node {
        Node::new(&self.node)
    }

    /// A GET, signed by the local key `key` when one is named, else anonymous.
    fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        key: Option<&str>,
        path: &str,
    ) -> anyhow::Result<T> {
        match key {
            None => Ok(self.client().get(path)?),
            Some(name) => Ok(Session::new(self.client(), self.unlock(name)?)?.get(path)?),
        }
    }

    fn keystore(&self) -> Keystore {
        Keystore::new(&self.home)
    }

    /// Prints a result: JSON when asked, else the human text.
    fn print(&self, value: &Value, human: impl FnOnce() -> String) {
        use std::io::Write as _;
        let text = if self.json {
            serde_json::to_string_pretty(value).expect("json")
        } else {
            human()
        };
        // A reader that went away (`ehrchain … | head`) is not an error worth a panic.
        match writeln!(std::io::stdout().lock(), "{text}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            Err(e) => {
                eprintln!("error: cannot write the output: {e}");
                std::process::exit(1);
            }
        }
    }

    fn unlock(&self, name: &str) -> anyhow::Result<Keypair> {
        let ks = self.keystore();
        ks.read(name)?;
        let pass = passphrase(&format!("Passphrase for key {name:?}: "))?;
        Ok(ks.unlock(name, &pass)?)
    }

    /// Resolves an account argument: an `ehr…` id or the name of a local key.
    fn resolve(&self, arg: &str) -> anyhow::Result<AccountId> {
        if let Ok(id) = arg.parse::<AccountId>() {
            return Ok(id);
        }
        match self.keystore().read(arg) {
            Ok(file) => Ok(file.account),
            Err(_) => bail!(
                "{arg:?} is neither an account id (ehr + 40 hex characters) nor a key in {}",
                self.home.display()
            ),
        }
    }
}

fn passphrase(prompt: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("EHRCHAIN_PASSPHRASE") {
        return Ok(p);
    }
    rpassword::prompt_password(prompt)
        .context("no passphrase: set EHRCHAIN_PASSPHRASE or run in a terminal")
}

fn default_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".ehrchain")
        .join("keys")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ctx = Ctx {
        json: cli.json,
        node: cli.node.clone(),
        home: cli.home.clone().unwrap_or_else(default_home),
    };
    init_tracing(matches!(
        cli.cmd,
        Cmd::Dev { .. }
            | Cmd::Node { .. }
            | Cmd::Follow { .. }
            | Cmd::Testnet(TestnetCmd::Run { .. })
    ));
    match run(&ctx, cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let sdk_error = e.downcast_ref::<sdk::Error>();
            let code = sdk_error.map(|n| n.code().to_string());
            let hint = match sdk_error {
                Some(sdk::Error::Unreachable { .. }) => {
                    " (start one with `ehrchain dev`, or set --node / EHRCHAIN_NODE)"
                }
                _ => "",
            };
            if ctx.json {
                println!(
                    "{}",
                    json!({"error": {
                        "code": code.as_deref().unwrap_or("error"),
                        "message": format!("{e:#}{hint}"),
                        "refusal": sdk_error.and_then(sdk::Error::refusal),
                    }})
                );
            }
            eprintln!("error: {e:#}{hint}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(server: bool) {
    // The index databases (fjall, lsm-tree) log through `log`, which `init` bridges: their
    // warnings and errors only (at info they log opening, recovery and journal rotation, and
    // lsm-tree has a debugging dump of keys and values at info that must never reach a log).
    let default = if server {
        "info,commonware=warn,fjall=warn,lsm_tree=warn"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EHRCHAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn run(ctx: &Ctx, cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Dev {
            data_dir,
            listen,
            portal,
            no_portal,
            demo,
        } => run_dev(ctx, data_dir, listen, (!no_portal).then_some(portal), demo),
        Cmd::Portal {
            listen,
            genesis,
            public_host,
            idle_timeout,
            secure_cookies,
        } => {
            let mut cfg = PortalConfig::new(&ctx.node, listen, ctx.home.clone());
            cfg.genesis = genesis.or_else(|| {
                let beside = ctx.home.parent()?.join("genesis.json");
                beside.exists().then_some(beside)
            });
            cfg.public_hosts = public_host;
            cfg.secure_cookies = secure_cookies;
            cfg.idle_timeout = parse_duration(&idle_timeout)?;
            let listener = std::net::TcpListener::bind(listen)
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for the portal: {e}"))?;
            let addr = listener.local_addr()?;
            println!(
                "Portal: http://{addr}/  (node {}, keys in {})",
                ctx.node,
                ctx.home.display()
            );
            ehrchain_portal::run_blocking(cfg, listener)
        }
        Cmd::Node { config } => {
            let cfg = NodeConfig::load(&config)?;
            ehrchain_node::run::run_node(&cfg, None, |_| {})
        }
        Cmd::Follow {
            upstreams,
            genesis,
            key,
            data_dir,
            listen,
        } => {
            let key = ctx.unlock(&key)?;
            let cfg = ehrchain_node::follow::FollowerConfig {
                data_dir,
                genesis,
                upstreams,
                api_listen: listen,
            };
            ehrchain_node::follow::run_follower(&cfg, key, None, |_| {})
        }
        Cmd::Key(KeyCmd::New { name }) => {
            let ks = ctx.keystore();
            if ks.read(&name).is_ok() {
                bail!(
                    "a key named {name:?} already exists in {}",
                    ks.dir().display()
                );
            }
            let pass = match std::env::var("EHRCHAIN_PASSPHRASE") {
                Ok(p) => p,
                Err(_) => {
                    let a = passphrase(&format!("New passphrase for key {name:?}: "))?;
                    let b = passphrase("Repeat the passphrase: ")?;
                    if a != b {
                        bail!("the passphrases differ");
                    }
                    a
                }
            };
            if pass.is_empty() {
                bail!("the passphrase must not be empty");
            }
            let key = Keypair::generate();
            let file = ks.create(&name, &key, &pass, DEFAULT_KDF)?;
            ctx.print(
                &json!({"name": name, "account": file.account, "public_key": file.public_key, "path": ks.dir().join(format!("{name}.json"))}),
                || format!("created key {name}\naccount: {}", file.account),
            );
            Ok(())
        }
        Cmd::Key(KeyCmd::List) => {
            let keys = ctx.keystore().list()?;
            let value: Vec<Value> = keys
                .iter()
                .map(|(n, f)| json!({"name": n, "account": f.account, "public_key": f.public_key}))
                .collect();
            ctx.print(&Value::Array(value), || {
                if keys.is_empty() {
                    format!("no keys in {}", ctx.home.display())
                } else {
                    keys.iter()
                        .map(|(n, f)| format!("{n:<12} {}", f.account))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
            Ok(())
        }
        Cmd::Register {
            key,
            role,
            org,
            licence,
            profile,
            wait,
        } => {
            let role: Role = role.parse()?;
            let profile = profile
                .map(|p| -> anyhow::Result<_> {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    sdk::schemas::check_profile(role, &text)?;
                    Ok(p)
                })
                .transpose()?;
            let k = ctx.unlock(&key.name)?;
            let payload = TxPayload::Enrol {
                role,
                organisation: org,
                licence,
                encryption_key: k.encryption().public(),
            };
            match profile {
                None => send_with(ctx, k, payload, &wait),
                Some(p) => {
                    let s = Session::new(ctx.client(), k)?;
                    let t = s.submit(vec![payload])?.remove(0);
                    let added = sdk::records::add_record(
                        &s,
                        &s.me,
                        ehrchain_types::Category::Demographics,
                        &p,
                        Some("profile".into()),
                        true,
                    )?;
                    ctx.print(&json!({"registration": t, "profile": added}), || {
                        format!(
                            "{}
profile record: {} (encrypted; fingerprint on the ledger)",
                            describe_tx(&t),
                            added.record
                        )
                    });
                    Ok(())
                }
            }
        }
        Cmd::Record(cmd) => run_record(ctx, cmd),
        Cmd::Access(cmd) => run_access(ctx, cmd),
        Cmd::Appointment(c) => clinical::run_appointment(ctx, c),
        Cmd::Symptoms(c) => clinical::run_symptoms(ctx, c),
        Cmd::Rx(c) => clinical::run_rx(ctx, c),
        Cmd::Invoice(c) => clinical::run_invoice(ctx, c),
        Cmd::Policy(c) => clinical::run_policy(ctx, c),
        Cmd::Claim(c) => clinical::run_claim(ctx, c),
        Cmd::Guardians(c) => emergency::run_guardians(ctx, c),
        Cmd::Emergency(c) => emergency::run_emergency(ctx, c),
        Cmd::Predict(a) => ml::run_predict(ctx, a),
        Cmd::Ml(c) => ml::run_ml(ctx, c),
        Cmd::Audit(args) => run_audit(ctx, args),
        Cmd::State(c) => run_state(ctx, c),
        Cmd::Qr(args) => run_qr(ctx, args),
        Cmd::Approve { key, account, wait } => {
            let account = ctx.resolve(&account)?;
            send(ctx, &key.name, TxPayload::Approve { account }, &wait)
        }
        Cmd::Transfer {
            key,
            to,
            amount,
            wait,
        } => {
            let to = ctx.resolve(&to)?;
            send(ctx, &key.name, TxPayload::Transfer { to, amount }, &wait)
        }
        Cmd::Account { account } => {
            let id = ctx.resolve(&account)?;
            let view: AccountView = ctx.client().get(&format!("/api/v1/accounts/{id}"))?;
            ctx.print(&serde_json::to_value(&view)?, || {
                let a = &view.account;
                let mut s = format!("account: {}\n", view.id);
                s += &format!(
                    "role:    {}\nstatus:  {}\n",
                    a.role.map_or("-".to_string(), |r| r.to_string()),
                    a.status.name()
                );
                if let Some(o) = &a.organisation {
                    s += &format!("org:     {o}\n");
                }
                if let Some(l) = &a.licence {
                    s += &format!("licence: {l}\n");
                }
                if let Some(p) = &view.profile_fingerprint {
                    s += &format!("profile: {p} (encrypted record; this is its fingerprint)\n");
                }
                s += &format!(
                    "keys:    {}\n",
                    if a.encryption_key.is_some() {
                        "can receive records"
                    } else {
                        "no encryption key yet (register)"
                    }
                );
                s += &format!("balance: {}\nnonce:   {}", a.balance, a.nonce);
                s
            });
            Ok(())
        }
        Cmd::Chain(ChainCmd::Status) => {
            let s: StatusView = ctx.client().get("/api/v1/status")?;
            ctx.print(&serde_json::to_value(&s)?, || {
                format!(
                    "chain:      {}\nheight:     {}\ntip:        {}\nstate root: {}\nvalidators: {}\naccounts:   {}\nmempool:    {}",
                    s.chain_id, s.height, s.tip_id, s.state_root, s.validators, s.accounts, s.mempool_size
                )
            });
            Ok(())
        }
        Cmd::Chain(ChainCmd::Block { height, key }) => {
            let b: Value = ctx.get_as(key.as_deref(), &format!("/api/v1/blocks/{height}"))?;
            ctx.print(&b, || {
                let h = &b["header"];
                let mut s = format!(
                    "block {} ({})\nparent:    {}\ntime:      {} ms\nproposer:  {}\ntx root:   {}\nstate root:{}\ntxs:       {}",
                    h["height"], b["id"].as_str().unwrap_or(""), h["parent"].as_str().unwrap_or(""),
                    h["timestamp_ms"], h["proposer"].as_str().unwrap_or(""), h["tx_root"].as_str().unwrap_or(""),
                    h["state_root"].as_str().unwrap_or(""), h["tx_count"]
                );
                if let (Some(txs), Some(rs)) = (b["txs"].as_array(), b["receipts"].as_array()) {
                    for (t, r) in txs.iter().zip(rs) {
                        s += &format!(
                            "\n  {} {} {}",
                            r["tx_id"].as_str().unwrap_or(""),
                            t["tx"]["payload"]["type"].as_str().unwrap_or(""),
                            r["outcome"]["status"].as_str().unwrap_or("")
                        );
                    }
                } else if let Some(ids) = b["tx_ids"].as_array() {
                    for id in ids {
                        s += &format!("\n  {}", id.as_str().unwrap_or(""));
                    }
                    if !ids.is_empty() {
                        s += "\n(bodies and receipts: consortium members only; `--key` of a party shows a transaction with `chain tx`)";
                    }
                }
                s
            });
            Ok(())
        }
        Cmd::Chain(ChainCmd::Tx { hash, key }) => {
            let id: Hash = hash
                .parse()
                .map_err(|e| anyhow!("invalid transaction id: {e}"))?;
            let t: TxView = ctx.get_as(key.as_deref(), &format!("/api/v1/transactions/{id}"))?;
            ctx.print(&serde_json::to_value(&t)?, || describe_tx(&t));
            Ok(())
        }
        Cmd::Chain(ChainCmd::Verify {
            data_dir: Some(data_dir),
            genesis,
            ..
        }) => verify(ctx, data_dir, genesis),
        Cmd::Chain(ChainCmd::Verify { key, genesis, .. }) => {
            verify_remote(ctx, &key.expect("clap requires --key"), genesis)
        }
        Cmd::Testnet(TestnetCmd::Init {
            validators,
            dir,
            base_port,
        }) => testnet::init(ctx.json, &dir, validators, base_port),
        Cmd::Testnet(TestnetCmd::Run { dir }) => testnet::run(&dir),
        Cmd::Bench(args) => bench::run(ctx.json, args),
    }
}

fn describe_tx(t: &TxView) -> String {
    let mut s = format!("transaction {}\nstatus: {}", t.id, t.status);
    if let (Some(h), Some(i)) = (t.height, t.index) {
        s += &format!("\nblock:  {h} (index {i})");
    }
    if let Some(r) = &t.receipt {
        match &r.outcome {
            ehrchain_types::TxOutcome::Applied => s += "\nresult: applied",
            ehrchain_types::TxOutcome::Rejected { reason } => {
                s += &format!("\nresult: rejected: {reason}")
            }
        }
    }
    if t.redacted {
        s += "\n(its body and receipt are shown to its parties and consortium members: ask with --key)";
    }
    s
}

/// Signs a transaction with a local key, submits it and (unless told not to) waits for it to
/// be finalized. A rejected receipt is an error.
fn send(ctx: &Ctx, key_name: &str, payload: TxPayload, wait: &WaitArg) -> anyhow::Result<()> {
    send_with(ctx, ctx.unlock(key_name)?, payload, wait)
}

fn send_with(ctx: &Ctx, key: Keypair, payload: TxPayload, wait: &WaitArg) -> anyhow::Result<()> {
    let s = Session::new(ctx.client(), key)?;
    let nonce = match wait.nonce {
        Some(n) => n,
        None => s.next_nonce()?,
    };
    let id = s.post(payload, nonce)?;
    if wait.no_wait {
        ctx.print(&json!({"id": id, "status": "pending"}), || {
            format!("submitted {id} (pending)")
        });
        return Ok(());
    }
    let t = s.wait_final(&id)?;
    ctx.print(&serde_json::to_value(&t)?, || describe_tx(&t));
    if let Some(ehrchain_types::Receipt {
        outcome: ehrchain_types::TxOutcome::Rejected { reason },
        ..
    }) = &t.receipt
    {
        if ctx.json {
            std::process::exit(1);
        }
        bail!("transaction rejected: {reason}");
    }
    Ok(())
}

fn run_dev(
    ctx: &Ctx,
    data_dir: PathBuf,
    listen: SocketAddr,
    portal: Option<SocketAddr>,
    demo: bool,
) -> anyhow::Result<()> {
    let (cfg, fresh) = dev::prepare(&data_dir, listen)?;
    let layout = dev::DevLayout::new(&cfg.data_dir);
    let keys = layout.keys.clone();
    // Bind the portal first so a busy port is reported before the node starts.
    let portal = portal
        .map(|addr| -> anyhow::Result<_> {
            let l = std::net::TcpListener::bind(addr).map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {addr} for the portal: {e} (use --portal ADDR or --no-portal)"
                )
            })?;
            let mut pc = PortalConfig::new(
                &format!("http://{}", cfg.api_listen),
                l.local_addr()?,
                keys.clone(),
            );
            pc.genesis = Some(layout.genesis.clone());
            Ok((l, pc))
        })
        .transpose()?;
    let portal_url = portal
        .as_ref()
        .map(|(_, pc)| format!("http://{}/", pc.listen));
    let demo_marker = cfg.data_dir.join("demo.json");
    let ks = Keystore::new(&keys);
    let accounts: Vec<Value> = ks
        .list()?
        .into_iter()
        .map(|(n, f)| json!({"name": n, "account": f.account}))
        .collect();
    let banner = json!({
        "data_dir": cfg.data_dir,
        "api": format!("http://{}", cfg.api_listen),
        "fresh": fresh,
        "keys": keys,
        "passphrase": dev::DEV_PASSPHRASE,
        "accounts": accounts,
        "export": format!("export EHRCHAIN_HOME={} EHRCHAIN_PASSPHRASE={}", keys.display(), dev::DEV_PASSPHRASE),
        "portal": portal_url,
    });
    let node_url = format!("http://{}", cfg.api_listen);
    let json_mode = ctx.json;
    let api = cfg.api_listen;
    ehrchain_node::run::run_node(&cfg, None, move |chain| {
        let height = chain.snapshot().tip.height;
        if let Some((listener, pc)) = portal {
            std::thread::spawn(move || {
                if let Err(e) = ehrchain_portal::run_blocking(pc, listener) {
                    eprintln!("error: the portal stopped: {e:#}");
                }
            });
        }
        if json_mode {
            println!("{banner}");
        } else {
            println!(
                "ehrchain dev chain {} at height {height} ({})",
                if fresh { "created" } else { "reopened" },
                banner["data_dir"].as_str().unwrap_or("")
            );
            println!("API:     http://{api}/api/v1/status  (OpenAPI: /api/v1/openapi.json)");
            if let Some(url) = banner["portal"].as_str() {
                println!("Portal: {url}");
            }
            println!("Keys (passphrase \"{}\"):", dev::DEV_PASSPHRASE);
            for a in banner["accounts"].as_array().into_iter().flatten() {
                println!(
                    "  {:<8} {}",
                    a["name"].as_str().unwrap_or(""),
                    a["account"].as_str().unwrap_or("")
                );
            }
            println!(
                "Use the CLI against it:\n  {}",
                banner["export"].as_str().unwrap_or("")
            );
            println!("Stop with Ctrl-C; `ehrchain dev` again reopens the same chain.");
        }
        if demo {
            std::thread::spawn(move || seed_demo(&node_url, &keys, &demo_marker, json_mode));
        }
    })
}

/// Seeds the demo world once per chain (a marker file remembers it) and prints who to sign
/// in as.
fn seed_demo(node: &str, keys: &std::path::Path, marker: &std::path::Path, json_mode: bool) {
    let users = if marker.exists() {
        std::fs::read(marker)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<ehrchain_portal::demo::DemoUser>>(&b).ok())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{} is unreadable; delete it to seed again",
                    marker.display()
                )
            })
    } else {
        if !json_mode {
            println!("Seeding the demo world (about a minute)…");
        }
        ehrchain_portal::demo::seed(node, keys).and_then(|users| {
            std::fs::write(marker, serde_json::to_vec_pretty(&users)?)?;
            Ok(users)
        })
    };
    match users {
        Ok(users) if json_mode => println!("{}", json!({"demo": users})),
        Ok(users) => {
            println!(
                "Demo world ready. Sign in to the portal as (password \"{}\"):",
                dev::DEV_PASSPHRASE
            );
            for u in users {
                println!("  {:<10} {:<11} {}", u.name, u.role, u.does);
            }
        }
        Err(e) => eprintln!("error: seeding the demo world failed: {e:#}"),
    }
}

fn verify(ctx: &Ctx, data_dir: PathBuf, genesis: Option<PathBuf>) -> anyhow::Result<()> {
    let genesis_path = genesis.unwrap_or_else(|| data_dir.join("genesis.json"));
    let genesis = ehrchain_node::genesis::load(&genesis_path)?;
    let db = data_dir.join("chain.redb");
    if !db.exists() {
        bail!("no chain database at {}", db.display());
    }
    let summary = ehrchain_node::verify::verify_data_dir(&db, &genesis)?;
    ctx.print(&serde_json::to_value(&summary)?, || {
        let mut out = format!(
            "chain valid: {} blocks, {} transactions, {} finality certificates checked\ntip:        {}\nstate root: {}",
            summary.blocks, summary.transactions, summary.certificates, summary.tip, summary.state_root
        );
        if let Some(s) = &summary.stored_state {
            out += &format!(
                "\nstored state matches the replay: {} entries ({} records, both indexes), {} tree nodes hash-checked; {} replaced nodes awaiting deletion, {} orphaned",
                s.entries, s.records, s.tree_nodes, s.tree_nodes_replaced, s.tree_nodes_orphaned
            );
        }
        out
    });
    Ok(())
}

/// Verifies the chain a node serves, fetching every block's bytes and certificate as a
/// consortium member, against a local genesis file (never the node's own copy).
fn verify_remote(ctx: &Ctx, key: &str, genesis: Option<PathBuf>) -> anyhow::Result<()> {
    let genesis_path = genesis.unwrap_or_else(|| ctx.home.join("..").join("genesis.json"));
    let genesis = ehrchain_node::genesis::load(&genesis_path)?;
    let s = Session::new(ctx.client(), ctx.unlock(key)?)?;
    let tip = s.node.get::<StatusView>("/api/v1/status")?.height;
    let fetch = |height: u64| -> anyhow::Result<ehrchain_node::verify::BlockSource> {
        let raw: ehrchain_client::api::RawBlockView =
            s.get(&format!("/api/v1/blocks/{height}/raw"))?;
        let hex_field = |h: &str| hex::decode(h).map_err(|_| anyhow!("block {height}: bad hex"));
        Ok(ehrchain_node::verify::BlockSource {
            height,
            bytes: hex_field(&raw.bytes)?,
            certificate: raw.finalization.as_deref().map(hex_field).transpose()?,
            indexed_id: None,
        })
    };
    let summary = ehrchain_node::verify::verify_blocks(&genesis, (0..=tip).map(fetch))?;
    ctx.print(&serde_json::to_value(&summary)?, || {
        format!(
            "chain valid: {} blocks, {} transactions, {} finality certificates checked\ntip:        {}\nstate root: {}",
            summary.blocks, summary.transactions, summary.certificates, summary.tip, summary.state_root
        )
    });
    Ok(())
}

/// A block time (ms since the Unix epoch) as UTC, to the second.
fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn session(ctx: &Ctx, key: &KeyArg) -> anyhow::Result<Session> {
    Ok(Session::new(ctx.client(), ctx.unlock(&key.name)?)?)
}

fn parse_record(s: &str) -> anyhow::Result<ehrchain_types::RecordId> {
    s.parse().map_err(|e| anyhow!("invalid record id: {e}"))
}

fn parse_categories(s: &str) -> anyhow::Result<Vec<ehrchain_types::Category>> {
    ehrchain_types::Category::parse_list(s).map_err(|e| anyhow!("{e}"))
}

fn parse_grantee(ctx: &Ctx, s: &str) -> anyhow::Result<ehrchain_types::Grantee> {
    match s.strip_prefix("org:") {
        Some(o) if !o.trim().is_empty() => {
            Ok(ehrchain_types::Grantee::Organisation(o.trim().into()))
        }
        Some(_) => bail!("org: needs an organisation name, e.g. org:StMarys"),
        None => Ok(ehrchain_types::Grantee::Account(ctx.resolve(s)?)),
    }
}

/// A record status as one word.
fn status_word(s: RecordStatus) -> &'static str {
    match s {
        RecordStatus::Pending => "pending",
        RecordStatus::Active => "active",
        RecordStatus::Rejected => "rejected",
    }
}

/// Parses `90s`, `30m`, `12h`, `7d` into a duration.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| anyhow!("invalid duration {s:?} (examples: 90s, 30m, 12h, 7d)"))?;
    let secs = match unit {
        "s" | "" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => bail!("invalid duration unit in {s:?} (use s, m, h or d)"),
    };
    match secs {
        Some(0) => bail!("the duration must be positive"),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => bail!("the duration {s:?} is too long"),
    }
}

fn tx_line(t: &TxView) -> String {
    match t.height {
        Some(h) => format!("transaction {} finalized in block {h}", t.id),
        None => format!("transaction {}", t.id),
    }
}

fn run_record(ctx: &Ctx, cmd: RecordCmd) -> anyhow::Result<()> {
    match cmd {
        RecordCmd::Add {
            key,
            patient,
            category,
            path,
            file,
            title,
        } => {
            let file = path.or(file).expect("clap requires one of them");
            let category = category.parse().map_err(|e| anyhow!("{e}"))?;
            let patient = ctx.resolve(&patient)?;
            let s = session(ctx, &key)?;
            let a = sdk::records::add_record(&s, &patient, category, &file, title, false)?;
            ctx.print(&serde_json::to_value(&a)?, || {
                let mut out = format!(
                    "record {} ({category}, {} bytes encrypted as {} bytes)\ncid:    {}\nstatus: {}",
                    a.record,
                    a.plaintext_size,
                    a.size,
                    a.cid,
                    status_word(a.status)
                );
                if a.status == RecordStatus::Pending {
                    out += " (waits for the patient's approval: ehrchain record approve)";
                }
                out
            });
            Ok(())
        }
        RecordCmd::List { key, patient } => {
            let s = session(ctx, &key)?;
            let patient = match patient {
                Some(p) => ctx.resolve(&p)?,
                None => s.me,
            };
            let list = sdk::records::list_records(&s, &patient)?;
            ctx.print(&serde_json::to_value(&list)?, || {
                if list.is_empty() {
                    return format!("no records of {patient} that you may see");
                }
                list.iter()
                    .map(|r| {
                        format!(
                            "{}  {:<12} {:<8} {:>10} B  {}",
                            r.id,
                            r.category.name(),
                            format!("{:?}", r.status).to_lowercase(),
                            r.size,
                            r.title
                                .as_deref()
                                .or(r.file_name.as_deref())
                                .unwrap_or("(title not readable)")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        RecordCmd::Get { key, record, out } => {
            let id = parse_record(&record)?;
            let s = session(ctx, &key)?;
            let f = sdk::records::get_record(&s, &id, &out)?;
            if f.decision == ehrchain_types::Decision::Allowed || ctx.json {
                ctx.print(&serde_json::to_value(&f)?, || match f.decision {
                    ehrchain_types::Decision::Allowed => format!(
                        "wrote {} bytes to {} (read allowed: {}; audit event {})",
                        f.bytes,
                        out.display(),
                        f.reason,
                        f.event.map(|e| e.to_string()).unwrap_or_default()
                    ),
                    ehrchain_types::Decision::Denied => String::new(),
                });
            }
            if f.decision == ehrchain_types::Decision::Denied {
                if ctx.json {
                    std::process::exit(1);
                }
                bail!(
                    "access denied: {} (the denial is recorded in the patient's audit trail)",
                    f.reason
                );
            }
            Ok(())
        }
        RecordCmd::Approve { key, record } => review(ctx, key, &record, true),
        RecordCmd::Reject { key, record } => review(ctx, key, &record, false),
    }
}

fn review(ctx: &Ctx, key: KeyArg, record: &str, approve: bool) -> anyhow::Result<()> {
    let id = parse_record(record)?;
    let s = session(ctx, &key)?;
    let t = sdk::records::review(&s, &id, approve)?;
    ctx.print(&serde_json::to_value(&t)?, || {
        format!(
            "record {id} {}\n{}",
            if approve {
                "approved: it is in your chart"
            } else {
                "rejected: it stays out of your chart"
            },
            tx_line(&t)
        )
    });
    Ok(())
}

fn run_access(ctx: &Ctx, cmd: AccessCmd) -> anyhow::Result<()> {
    let done = |t: &TxView, what: String| {
        ctx.print(&serde_json::to_value(t).unwrap_or_default(), || {
            format!("{what}\n{}", tx_line(t))
        });
    };
    match cmd {
        AccessCmd::Grant {
            key,
            to,
            categories,
            expires,
            write,
        } => {
            let to = parse_grantee(ctx, &to)?;
            let cats = parse_categories(&categories)?;
            let expires = expires.as_deref().map(parse_duration).transpose()?;
            let s = session(ctx, &key)?;
            let t = sdk::consent::grant(&s, &to, &cats, expires, write)?;
            done(
                &t,
                format!(
                    "granted {} {} access to {}",
                    to,
                    if write { "read+write" } else { "read" },
                    cats.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")
                ),
            );
            Ok(())
        }
        AccessCmd::Revoke {
            key,
            to,
            categories,
        } => {
            let from = parse_grantee(ctx, &to)?;
            let cats = categories
                .as_deref()
                .map(parse_categories)
                .transpose()?
                .unwrap_or_default();
            let s = session(ctx, &key)?;
            let t = sdk::consent::revoke(&s, &from, &cats)?;
            done(
                &t,
                format!("revoked access of {from} (new key epoch for the revoked categories)"),
            );
            Ok(())
        }
        AccessCmd::List { key } => {
            let s = session(ctx, &key)?;
            let grants: Vec<ehrchain_client::api::GrantView> =
                s.get(&format!("/api/v1/grants?patient={}", s.me))?;
            let shown: Vec<Value> = grants
                .iter()
                .map(|g| {
                    json!({"grantee": g.grantee, "categories": g.grant.categories, "write": g.grant.write,
                           "expires_ms": g.grant.expires_ms, "expired": g.expired, "granted_ms": g.grant.granted_ms})
                })
                .collect();
            ctx.print(&Value::Array(shown), || {
                if grants.is_empty() {
                    return "no grants".into();
                }
                grants
                    .iter()
                    .map(|g| {
                        format!(
                            "{}  {}  {}{}",
                            g.grantee,
                            g.grant
                                .categories
                                .iter()
                                .map(|c| c.name())
                                .collect::<Vec<_>>()
                                .join(","),
                            if g.grant.write { "read+write" } else { "read" },
                            match (g.expired, g.grant.expires_ms) {
                                (true, _) => " (expired)".to_string(),
                                (false, Some(e)) => format!(" (until {})", when(e)),
                                _ => String::new(),
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        AccessCmd::Request {
            key,
            patient,
            categories,
            reason,
            write,
        } => {
            let patient = ctx.resolve(&patient)?;
            let cats = parse_categories(&categories)?;
            let s = session(ctx, &key)?;
            let (id, t) = sdk::consent::request(&s, &patient, &cats, write, &reason)?;
            ctx.print(&json!({"request": id, "tx": t}), || {
                format!("request {id} sent to {patient}\n{}", tx_line(&t))
            });
            Ok(())
        }
        AccessCmd::Requests { key } => {
            let s = session(ctx, &key)?;
            let inbox = sdk::consent::requests(&s)?;
            ctx.print(&serde_json::to_value(&inbox)?, || {
                if inbox.is_empty() {
                    return "no access requests".into();
                }
                inbox
                    .iter()
                    .map(|r| {
                        format!(
                            "{}  {:?}  from {} ({}{})  {}  {}",
                            r.request.id,
                            r.request.status,
                            r.request.requester,
                            r.requester_role.map_or("-".into(), |x| x.to_string()),
                            r.requester_organisation
                                .as_deref()
                                .map(|o| format!(", {o}"))
                                .unwrap_or_default(),
                            r.request
                                .categories
                                .iter()
                                .map(|c| c.name())
                                .collect::<Vec<_>>()
                                .join(","),
                            r.reason_text
                                .as_deref()
                                .map(|t| format!("reason: {t}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        AccessCmd::Approve {
            key,
            request,
            expires,
        } => {
            let id = request
                .parse()
                .map_err(|e| anyhow!("invalid request id: {e}"))?;
            let expires = expires.as_deref().map(parse_duration).transpose()?;
            let s = session(ctx, &key)?;
            let t = sdk::consent::answer(&s, &id, true, expires)?;
            done(&t, format!("approved request {id}"));
            Ok(())
        }
        AccessCmd::Deny { key, request } => {
            let id = request
                .parse()
                .map_err(|e| anyhow!("invalid request id: {e}"))?;
            let s = session(ctx, &key)?;
            let t = sdk::consent::answer(&s, &id, false, None)?;
            done(&t, format!("denied request {id}"));
            Ok(())
        }
    }
}

/// The genesis file a proof is checked against: `--genesis`, else genesis.json beside the key
/// directory (as `ehrchain dev` lays it out).
fn trust_anchor(ctx: &Ctx, genesis: Option<PathBuf>) -> anyhow::Result<ehrchain_node::GenesisFile> {
    let path = genesis
        .or_else(|| {
            let beside = ctx.home.parent()?.join("genesis.json");
            beside.exists().then_some(beside)
        })
        .ok_or_else(|| {
            anyhow!(
                "give --genesis FILE: the chain's genesis file is what a proof is checked against"
            )
        })?;
    ehrchain_node::genesis::load(&path)
}

/// A state key from its text form, where the accounts may also be local key names
/// (`grant:demo1:demo3`, `keys:demo1:lab`, `account:demo2`).
fn state_key(ctx: &Ctx, text: &str) -> anyhow::Result<ehrchain_ledger::StateKey> {
    let mut parts: Vec<String> = text.splitn(3, ':').map(str::to_string).collect();
    let kind = parts[0].as_str();
    let accounts = match kind {
        "account" | "keys" => 1..2,
        "grant" if parts.get(2).is_some_and(|g| g.starts_with("org:")) => 1..2,
        "grant" => 1..3,
        _ => 0..0,
    };
    for i in accounts {
        if let Some(p) = parts.get_mut(i)
            && p.parse::<ehrchain_types::AccountId>().is_err()
            && let Ok(id) = ctx.resolve(p)
        {
            *p = id.to_string();
        }
    }
    parts.join(":").parse().map_err(|e: String| anyhow!(e))
}

fn run_state(ctx: &Ctx, cmd: StateCmd) -> anyhow::Result<()> {
    match cmd {
        StateCmd::Proof {
            entry,
            key,
            out,
            genesis,
        } => {
            let entry = state_key(ctx, &entry)?;
            let s = Session::new(ctx.client(), ctx.unlock(&key)?)?;
            let proof = sdk::audit::state_proof(&s, &entry)?;
            // What the node answered is not taken on trust: the proof must be of the key asked
            // for, and it is checked against the genesis file when one is at hand.
            if proof.key != entry.to_string() {
                bail!("the node answered a proof of {}, not of {entry}", proof.key);
            }
            let bytes = proof.to_file_bytes();
            let checked = match trust_anchor(ctx, genesis.genesis) {
                Ok(genesis) => {
                    sdk::audit::verify_state_file(
                        &bytes,
                        &genesis,
                        &ehrchain_node::proof::EngineFinality,
                    )?;
                    true
                }
                Err(_) => false,
            };
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let exists = proof.value.is_some();
            ctx.print(
                &json!({"key": proof.key, "exists": exists, "height": proof.height, "out": out, "checked": checked}),
                || {
                    format!(
                        "proof that {} {} after block {} written to {}{}",
                        proof.key,
                        if exists { "exists" } else { "does not exist" },
                        proof.height,
                        out.display(),
                        if checked {
                            " (checked against the genesis file)"
                        } else {
                            " (not checked: no genesis file; run `state verify --genesis FILE`)"
                        }
                    )
                },
            );
            Ok(())
        }
        StateCmd::Verify { file, genesis } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let genesis = trust_anchor(ctx, genesis.genesis)?;
            let (_, v) = sdk::audit::verify_state_file(
                &bytes,
                &genesis,
                &ehrchain_node::proof::EngineFinality,
            )?;
            ctx.print(&serde_json::to_value(&v)?, || {
                format!(
                    "proof is valid: {} {} in the state after block {} ({}), finalized by the validators in view {}",
                    v.key,
                    if v.exists { "exists" } else { "does not exist" },
                    v.height,
                    v.block_id,
                    v.view
                )
            });
            Ok(())
        }
    }
}

fn run_audit(ctx: &Ctx, args: AuditArgs) -> anyhow::Result<()> {
    match args.cmd {
        Some(AuditCmd::Proof { event, out, key }) => {
            let id: ehrchain_types::EventId = event
                .parse()
                .map_err(|e| anyhow!("invalid event id: {e}"))?;
            let s = Session::new(ctx.client(), ctx.unlock(&key)?)?;
            let proof = sdk::audit::proof(&s, &id)?;
            std::fs::write(&out, proof.to_file_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            ctx.print(
                &json!({"event": id, "height": proof.height, "out": out}),
                || {
                    format!(
                        "proof of {id} (block {}) written to {}",
                        proof.height,
                        out.display()
                    )
                },
            );
            Ok(())
        }
        Some(AuditCmd::Verify { file, genesis }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let genesis = trust_anchor(ctx, genesis.genesis)?;
            let (proof, v) =
                sdk::audit::verify_file(&bytes, &genesis, &ehrchain_node::proof::EngineFinality)?;
            ctx.print(&serde_json::to_value(&v)?, || {
                let e = &proof.event;
                format!(
                    "proof is valid: event {} is leaf {} of block {} ({}), finalized by the validators in view {}\n{:?} by {} on {}'s data at {}: {:?} ({})",
                    v.event_id, proof.index, v.height, v.block_id, v.view,
                    e.action, e.actor, e.patient, when(e.time_ms), e.decision, e.reason
                )
            });
            Ok(())
        }
        None => {
            let key = args
                .key
                .ok_or_else(|| anyhow!("give --key PATIENT to list your audit trail (or use `audit proof` / `audit verify`)"))?;
            let record = args.record.as_deref().map(parse_record).transpose()?;
            let s = session(ctx, &KeyArg { name: key })?;
            let events = sdk::audit::trail(&s, record.as_ref())?;
            ctx.print(&serde_json::to_value(&events)?, || {
                if events.is_empty() {
                    return "no audit events".into();
                }
                events
                    .iter()
                    .map(|e| {
                        let ev = &e.event;
                        format!(
                            "{}  {}  {:<21} {:<7} by {}{}{}{}{}  {}",
                            e.id,
                            when(ev.time_ms),
                            format!("{:?}", ev.action),
                            format!("{:?}", ev.decision).to_lowercase(),
                            ev.actor,
                            ev.record
                                .map(|r| format!(" record {r}"))
                                .unwrap_or_default(),
                            ev.item.map(|i| format!(" {i}")).unwrap_or_default(),
                            ev.amount
                                .map(|a| format!(" ({a} tokens)"))
                                .unwrap_or_default(),
                            ev.counterparty
                                .as_ref()
                                .map(|c| format!(" with {c}"))
                                .unwrap_or_default(),
                            ev.reason
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
    }
}

fn run_qr(ctx: &Ctx, args: QrArgs) -> anyhow::Result<()> {
    match args.cmd {
        Some(QrCmd::Check { payload }) => {
            let c = sdk::qr::check(&ctx.client(), &payload)?;
            ctx.print(&serde_json::to_value(&c)?, || {
                format!(
                    "valid: {} is a {} account ({}) and its profile matches the ledger",
                    c.account,
                    c.role.map_or("unregistered".into(), |r| r.to_string()),
                    c.status
                )
            });
            Ok(())
        }
        None => {
            let (Some(key), Some(out)) = (args.key, args.out) else {
                bail!(
                    "usage: ehrchain qr --key PATIENT --out FILE.svg, or ehrchain qr check PAYLOAD"
                );
            };
            let id = ctx.resolve(&key)?;
            let payload = sdk::qr::payload_of(&ctx.client(), &id)?;
            std::fs::write(&out, sdk::qr::svg(&payload)?)
                .with_context(|| format!("cannot write {}", out.display()))?;
            ctx.print(&json!({"payload": payload, "out": out}), || {
                format!("QR code written to {}\npayload: {payload}", out.display())
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks over every command and argument (they otherwise only
    /// fire when a command is first used).
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn coverage_parses_as_basis_points() {
        use super::clinical::parse_coverage;
        assert_eq!(parse_coverage("80").unwrap(), 8_000);
        assert_eq!(parse_coverage("72.5%").unwrap(), 7_250);
        assert_eq!(parse_coverage("100 %").unwrap(), 10_000);
        assert!(parse_coverage("101").is_err());
        assert!(parse_coverage("-1").is_err());
        assert!(parse_coverage("most").is_err());
    }
}
