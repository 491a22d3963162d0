//! Black-box tests of the real `ehrchain` binary: start `dev`, drive the CLI, kill -9,
//! restart, verify the chain offline, tamper with a stored block.

use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_ehrchain");

/// Tests that start nodes run one at a time: they pick free ports by probing, and two tests
/// probing at once could pick the same ones.
static NODES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    NODES.lock().unwrap_or_else(|e| e.into_inner())
}

struct Dev {
    dir: PathBuf,
    node: String,
    child: Child,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    // An even port whose successor (the p2p port) is free too.
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn start_dev(dir: &Path, port: u16) -> Dev {
    let child = Command::new(BIN)
        .args(["dev", "--data-dir"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-portal"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dev = Dev {
        dir: dir.to_path_buf(),
        node: format!("http://127.0.0.1:{port}"),
        child,
    };
    let start = Instant::now();
    while !cli(&dev, &["chain", "status"]).status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "dev node did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    dev
}

fn cli_env(dev: &Dev, pass: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("EHRCHAIN_NODE", &dev.node)
        .env("EHRCHAIN_HOME", dev.dir.join("keys"))
        .env("EHRCHAIN_PASSPHRASE", pass)
        .output()
        .unwrap()
}

fn cli(dev: &Dev, args: &[&str]) -> Output {
    cli_env(dev, "dev", args)
}

/// Runs a command that must succeed and returns its `--json` output.
fn ok(dev: &Dev, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = cli(dev, &a);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs a command that must fail and returns its stderr.
fn fails(dev: &Dev, pass: &str, args: &[&str]) -> String {
    let out = cli_env(dev, pass, args);
    assert!(!out.status.success(), "{args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn balance(dev: &Dev, who: &str) -> u64 {
    ok(dev, &["account", who])["balance"].as_u64().unwrap()
}

#[test]
fn dev_chain_end_to_end() {
    let _serial = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chain");
    let port = free_port();
    let mut dev = start_dev(&dir, port);

    // The banner tells the user how to point the CLI at the demo keys.
    let keys = ok(&dev, &["key", "list"]);
    let names: Vec<_> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"admin".to_string()) && names.contains(&"demo10".to_string()),
        "{names:?}"
    );
    assert_eq!(balance(&dev, "demo1"), 100);

    ok(&dev, &["key", "new", "pat"]);
    ok(&dev, &["key", "new", "doc"]);
    let t = ok(
        &dev,
        &[
            "transfer", "--key", "demo1", "--to", "pat", "--amount", "30",
        ],
    );
    assert_eq!(t["receipt"]["outcome"]["status"], "applied");
    ok(&dev, &["register", "--key", "pat", "--role", "patient"]);
    ok(
        &dev,
        &[
            "register",
            "--key",
            "doc",
            "--role",
            "doctor",
            "--org",
            "St Mary",
            "--licence",
            "GMC-7",
        ],
    );
    assert_eq!(ok(&dev, &["account", "doc"])["status"], "pending");

    // Wrong approver, then the admin.
    let err = fails(&dev, "dev", &["approve", "--key", "demo2", "doc"]);
    assert!(err.contains("only the consortium admin"), "{err}");
    ok(&dev, &["approve", "--key", "admin", "doc"]);
    let d = ok(&dev, &["account", "doc"]);
    assert_eq!(
        (d["status"].as_str(), d["role"].as_str()),
        (Some("active"), Some("doctor"))
    );

    // A replayed transfer and an overdraft are refused with clear messages; nothing moves.
    let err = fails(
        &dev,
        "dev",
        &[
            "transfer", "--key", "demo1", "--to", "pat", "--amount", "1", "--nonce", "0",
        ],
    );
    assert!(
        err.contains("replayed transaction: nonce 0 was already used"),
        "{err}"
    );
    let err = fails(
        &dev,
        "dev",
        &[
            "transfer", "--key", "demo1", "--to", "pat", "--amount", "1000",
        ],
    );
    assert!(
        err.contains("insufficient balance: have 70, need 1000"),
        "{err}"
    );
    // With --json the refusal (here by the mempool's dry run, before any block) carries the
    // rule's stable code and typed fields next to the sentence, and the command fails.
    let out = cli(
        &dev,
        &[
            "transfer", "--key", "demo1", "--to", "pat", "--amount", "1000", "--json",
        ],
    );
    assert!(!out.status.success());
    let refused: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = &refused["error"];
    assert_eq!(error["code"], "rejected", "{refused}");
    assert_eq!(
        error["refusal"]["code"], "insufficient_balance",
        "{refused}"
    );
    assert_eq!(
        (
            error["refusal"]["balance"].as_u64(),
            error["refusal"]["needed"].as_u64()
        ),
        (Some(70), Some(1000))
    );
    assert!(
        error["refusal"]["message"]
            .as_str()
            .unwrap()
            .contains("insufficient balance")
    );
    assert_eq!((balance(&dev, "demo1"), balance(&dev, "pat")), (70, 30));

    // Bad input gets a clear error.
    let err = fails(
        &dev,
        "wrong",
        &["transfer", "--key", "demo1", "--to", "pat", "--amount", "1"],
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    let err = fails(
        &dev,
        "dev",
        &[
            "transfer", "--key", "demo1", "--to", "nobody", "--amount", "1",
        ],
    );
    assert!(err.contains("neither an account id"), "{err}");
    let err = fails(
        &dev,
        "dev",
        &["register", "--key", "pat", "--role", "surgeon"],
    );
    assert!(err.contains("unknown role"), "{err}");
    let err = fails(
        &dev,
        "dev",
        &["transfer", "--key", "ghost", "--to", "pat", "--amount", "1"],
    );
    assert!(err.contains("no key named \"ghost\""), "{err}");

    // The node times its block builds and its writes of finalized blocks.
    let height = ok(&dev, &["chain", "status"])["height"].as_u64().unwrap();
    let metrics = ureq_get(&format!("{}/metrics", dev.node));
    for name in ["build", "commit"] {
        let count = (metrics.lines())
            .find_map(|l| l.strip_prefix(&format!("ehrchain_block_{name}_seconds_count ")))
            .unwrap_or_else(|| panic!("no {name} timings: {metrics}"));
        let count: u64 = count.trim().parse().unwrap();
        assert!(count > 0 && count <= height, "{name}: {count} of {height}");
    }

    // kill -9 and restart: every finalized block and balance is still there.
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    drop(dev);
    let dev = start_dev(&dir, port);
    assert!(ok(&dev, &["chain", "status"])["height"].as_u64().unwrap() >= height);
    assert_eq!((balance(&dev, "demo1"), balance(&dev, "pat")), (70, 30));
    assert_eq!(ok(&dev, &["account", "doc"])["status"], "active");
    let t = ok(
        &dev,
        &["transfer", "--key", "pat", "--to", "doc", "--amount", "5"],
    );
    let tx_height = t["height"].as_u64().unwrap();
    // Anyone sees a block's header, ids and count; the consortium admin (a member) sees the
    // bodies; a transaction's body goes to its parties and members only.
    let block = ok(&dev, &["chain", "block", &tx_height.to_string()]);
    assert_eq!(block["tx_ids"].as_array().unwrap().len(), 1);
    assert!(block["txs"].is_null() && block["redacted"] == true);
    assert!(
        block["finalization"].is_string(),
        "finalized blocks carry their certificate"
    );
    let full = ok(
        &dev,
        &["chain", "block", &tx_height.to_string(), "--key", "admin"],
    );
    assert_eq!(full["txs"].as_array().unwrap().len(), 1);
    assert_eq!(full["redacted"], false);
    let id = t["id"].as_str().unwrap();
    let anon = ok(&dev, &["chain", "tx", id]);
    assert!(anon["tx"].is_null() && anon["sender"].is_null() && anon["redacted"] == true);
    let stranger = ok(&dev, &["chain", "tx", id, "--key", "demo3"]);
    assert!(stranger["tx"].is_null() && stranger["redacted"] == true);
    for party in ["pat", "doc", "admin"] {
        let seen = ok(&dev, &["chain", "tx", id, "--key", party]);
        assert_eq!(seen["tx"]["tx"]["payload"]["type"], "transfer", "{party}");
    }
    // A member verifies the whole chain through the API, against the local genesis.
    let v = ok(&dev, &["chain", "verify", "--remote", "--key", "admin"]);
    assert!(v["blocks"].as_u64().unwrap() > tx_height);
    assert!(
        fails(
            &dev,
            "dev",
            &["chain", "verify", "--remote", "--key", "pat"]
        )
        .contains("members")
    );
    let node = dev.node.clone();
    drop(dev);

    // Offline verification passes, and fails naming the block after one byte changes.
    let verify = |d: &Path| {
        Command::new(BIN)
            .args(["chain", "verify", "--data-dir"])
            .arg(d)
            .output()
            .unwrap()
    };
    let out = verify(&dir);
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("chain valid"), "{stdout}");
    // After a kill -9 and a restart, the stored state is exactly the replay's.
    assert!(
        stdout.contains("stored state matches the replay") && stdout.contains(", 0 orphaned"),
        "{stdout}"
    );
    let db = dir.join("chain.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    let genesis: Value =
        serde_json::from_slice(&std::fs::read(dir.join("genesis.json")).unwrap()).unwrap();
    let pat_pk = {
        let keys: Value =
            serde_json::from_slice(&std::fs::read(dir.join("keys/pat.json")).unwrap()).unwrap();
        hex::decode(keys["public_key"].as_str().unwrap()).unwrap()
    };
    let chain_id = genesis["chain_id"].as_str().unwrap();
    let mut pattern = (chain_id.len() as u32).to_le_bytes().to_vec();
    pattern.extend_from_slice(chain_id.as_bytes());
    pattern.extend_from_slice(&pat_pk);
    // pat's second transaction (nonce 1) is the transfer in block `tx_height`.
    pattern.extend_from_slice(&1u64.to_le_bytes());
    // Every copy: redb writes pages copy-on-write, so the file may also hold stale ones.
    let found: Vec<usize> = bytes
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == pattern.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert!(!found.is_empty(), "the stored transaction");
    for at in found {
        bytes[at + pattern.len() + 10] ^= 1;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = verify(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("block {tx_height}")), "{err}");
    let _ = node;
}

#[test]
fn cli_without_a_node_or_with_wrong_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["chain", "status"])
        .env("EHRCHAIN_NODE", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the node"));
    let out = Command::new(BIN)
        .args(["transfer", "--amount", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--amount"));
    let out = Command::new(BIN)
        .args(["chain", "verify", "--data-dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("genesis"));
}

/// A base port with `n` free consecutive ports after it.
fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = free_port();
        if base < 60000
            && (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        {
            return base;
        }
    }
    panic!("no {n} free consecutive ports");
}

struct Testnet {
    dir: PathBuf,
    base: u16,
    nodes: Vec<Option<Child>>,
}

impl Testnet {
    /// Initialises a 4-validator testnet in `dir` on free ports and starts every validator.
    fn start_four(dir: &Path) -> Testnet {
        let base = free_ports(8);
        let out = Command::new(BIN)
            .args(["testnet", "init", "--validators", "4", "--base-port"])
            .arg(base.to_string())
            .arg("--dir")
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tn = Testnet {
            dir: dir.to_path_buf(),
            base,
            nodes: (0..4).map(|_| None).collect(),
        };
        for i in 0..4 {
            tn.start(i);
        }
        tn
    }

    fn api(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.base + 2 * i as u16)
    }

    fn start(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.join(format!("node{i}/test.log"))).unwrap();
        let child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(self.dir.join(format!("node{i}/node.toml")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn run(&self, i: usize, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--json", "--node", &self.api(i)])
            .env("EHRCHAIN_HOME", self.dir.join("keys"))
            .env("EHRCHAIN_PASSPHRASE", "dev")
            .output()
            .unwrap()
    }

    fn json(&self, i: usize, args: &[&str]) -> Value {
        let out = self.run(i, args);
        assert!(
            out.status.success(),
            "node{i} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn height(&self, i: usize) -> u64 {
        self.json(i, &["chain", "status"])["height"]
            .as_u64()
            .unwrap()
    }

    fn wait_height(&self, i: usize, at_least: u64) {
        let start = Instant::now();
        let current = || {
            let out = self.run(i, &["chain", "status"]);
            if !out.status.success() {
                return 0;
            }
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            v["height"].as_u64().unwrap_or(0)
        };
        while current() < at_least {
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "node{i} did not reach height {at_least}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A transfer through node `i`, waited for; returns (tx id, height).
    fn transfer(&self, i: usize, from: &str) -> (String, u64) {
        let t = self.json(
            i,
            &["transfer", "--key", from, "--to", "demo10", "--amount", "1"],
        );
        assert_eq!(t["receipt"]["outcome"]["status"], "applied");
        (
            t["id"].as_str().unwrap().to_string(),
            t["height"].as_u64().unwrap(),
        )
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

#[test]
fn four_process_testnet_survives_faults() {
    let _serial = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tn");
    let mut tn = Testnet::start_four(&dir);
    tn.wait_height(0, 2);
    // Any node serves the API; the chain finalizes transactions sent to each of them.
    let mut finalized = Vec::new();
    for i in 0..4 {
        finalized.push(tn.transfer(i, &format!("demo{}", i + 1)));
    }
    // kill -9 one validator: the other three keep finalizing.
    tn.kill(3);
    let h = tn.height(0);
    finalized.push(tn.transfer(0, "demo1"));
    finalized.push(tn.transfer(1, "demo2"));
    tn.wait_height(1, h + 3);
    // Restarted, it catches up to the same chain.
    tn.start(3);
    let target = tn.height(0) + 2;
    tn.wait_height(3, target);
    let b0 = tn.json(0, &["chain", "block", &target.to_string()]);
    let b3 = tn.json(3, &["chain", "block", &target.to_string()]);
    assert_eq!(
        b0["id"], b3["id"],
        "the restarted node is on the same chain"
    );
    // Two of four down: no quorum, the chain halts without forking ...
    tn.kill(2);
    tn.kill(3);
    std::thread::sleep(Duration::from_secs(2));
    let pending = tn.json(
        0,
        &[
            "transfer",
            "--key",
            "demo5",
            "--to",
            "demo10",
            "--amount",
            "1",
            "--no-wait",
        ],
    );
    let stalled = tn.height(0);
    std::thread::sleep(Duration::from_secs(4));
    assert!(tn.height(0) <= stalled + 1, "finalized without a quorum");
    let id = pending["id"].as_str().unwrap();
    assert_eq!(tn.json(0, &["chain", "tx", id])["status"], "pending");
    // ... and resumes when one returns; the waiting transaction is finalized.
    tn.start(3);
    let start = Instant::now();
    while tn.json(0, &["chain", "tx", id])["status"] != "finalized" {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the chain did not resume"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // No finalized transaction is ever lost, on any live node.
    for i in [0, 1, 3] {
        tn.wait_height(i, tn.height(0));
        for (tx, height) in &finalized {
            let t = tn.json(i, &["chain", "tx", tx]);
            assert_eq!(
                (t["status"].as_str(), t["height"].as_u64()),
                (Some("finalized"), Some(*height)),
                "node{i} lost {tx}"
            );
        }
    }
}

#[test]
fn testnet_run_starts_and_stops_all_validators() {
    let _serial = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tn");
    let base = free_ports(8);
    let init = |extra: &[&str]| {
        Command::new(BIN)
            .args(["testnet", "init", "--base-port", &base.to_string(), "--dir"])
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = init(&["--validators", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("between 1 and"));
    assert!(init(&["--validators", "4"]).status.success());
    let out = init(&["--validators", "4"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "init refuses to overwrite"
    );
    let mut run = Command::new(BIN)
        .args(["testnet", "run", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tn = Testnet {
        dir: dir.clone(),
        base,
        nodes: Vec::new(),
    };
    for i in 0..4 {
        tn.wait_height(i, 1);
    }
    Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    while run.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "testnet run did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..4 {
        assert!(
            !tn.run(i, &["chain", "status"]).status.success(),
            "node{i} still serving after stop"
        );
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The records issue's "done when", as a new user would do it on `ehrchain dev`.
#[test]
fn encrypted_records_consent_and_audit_end_to_end() {
    let _serial = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chain");
    let dev = start_dev(&dir, free_port());
    let work = tmp.path();
    let profile = work.join("alice.json");
    std::fs::write(
        &profile,
        r#"{"name":"Alice Quartermain","date_of_birth":"1980-02-03","address":"1 Zebra Lane",
            "mobile":"+44 7700 900123","insurance":{"insurer":"Acme","policy":"POLICY-77123"}}"#,
    )
    .unwrap();
    let bad_profile = work.join("bad.json");
    std::fs::write(&bad_profile, r#"{"name":"X"}"#).unwrap();
    let e = fails(
        &dev,
        "dev",
        &[
            "register",
            "--key",
            "demo1",
            "--role",
            "patient",
            "--profile",
            bad_profile.to_str().unwrap(),
        ],
    );
    assert!(
        e.contains("missing: date_of_birth, address, mobile, insurance"),
        "{e}"
    );
    ok(
        &dev,
        &[
            "register",
            "--key",
            "demo1",
            "--role",
            "patient",
            "--profile",
            profile.to_str().unwrap(),
        ],
    );
    ok(
        &dev,
        &[
            "register",
            "--key",
            "demo2",
            "--role",
            "doctor",
            "--org",
            "StMarys",
            "--licence",
            "GMC-77",
        ],
    );
    ok(&dev, &["approve", "--key", "admin", "demo2"]);
    ok(
        &dev,
        &[
            "register",
            "--key",
            "demo3",
            "--role",
            "doctor",
            "--org",
            "Elsewhere",
        ],
    );
    ok(&dev, &["approve", "--key", "admin", "demo3"]);

    // A 1 MB scan with recognisable plaintext inside.
    let marker = b"SCAN-PLAINTEXT-MARKER-4242";
    let mut scan: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    scan[500_000..500_000 + marker.len()].copy_from_slice(marker);
    let scan_path = work.join("scan.bin");
    std::fs::write(&scan_path, &scan).unwrap();
    let added = ok(
        &dev,
        &[
            "record",
            "add",
            "--key",
            "demo1",
            "--patient",
            "demo1",
            "--category",
            "imaging",
            "--file",
            scan_path.to_str().unwrap(),
            "--title",
            "Knee MRI",
        ],
    );
    let rec = added["record"].as_str().unwrap().to_string();
    assert_eq!(added["status"], "active");
    // A record id starts with its writer's clock (milliseconds, 12 hex digits after "rec"),
    // except a profile record's: the public account view names it, so it is all random.
    let clock_of = |id: &str| u64::from_str_radix(&id["rec".len()..][..12], 16).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(clock_of(&rec).abs_diff(now_ms) < 3_600_000, "{rec}");
    let demo1 = ok(&dev, &["account", "demo1"]);
    let profile_id = demo1["profile"]
        .as_str()
        .expect("demo1 has a profile record");
    assert!(
        clock_of(profile_id).abs_diff(now_ms) > 30 * 86_400_000,
        "{profile_id}"
    );
    let list = ok(&dev, &["record", "list", "--key", "demo1"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["title"] == "Knee MRI")
    );

    // The doctor is denied, and the denial is in the patient's audit trail.
    let out = work.join("got.bin");
    let e = fails(
        &dev,
        "dev",
        &[
            "record",
            "get",
            "--key",
            "demo2",
            &rec,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    // The reader learns only that the read was denied: the same answer as for a record that
    // does not exist, so record ids cannot be probed.
    assert!(e.contains("access denied: no record you may read"), "{e}");
    assert!(!out.exists());
    let unknown = fails(
        &dev,
        "dev",
        &[
            "record",
            "get",
            "--key",
            "demo2",
            "rec00000000000000000000000000000000",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        unknown.replace(char::is_alphanumeric, ""),
        e.replace(char::is_alphanumeric, ""),
        "unknown: {unknown}\nforbidden: {e}"
    );
    let audit = ok(&dev, &["audit", "--key", "demo1", "--record", &rec]);
    let denied = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "read" && e["decision"] == "denied")
        .expect("denial audited")
        .clone();
    // The patient sees why: the rule's code, its fields and the sentence.
    assert_eq!(denied["reason"]["code"], "no_consent", "{denied}");
    assert_eq!(denied["reason"]["category"], "imaging", "{denied}");
    assert!(
        denied["reason"]["message"]
            .as_str()
            .unwrap()
            .contains("no consent for imaging records"),
        "{denied}"
    );
    // The doctor's listing of Alice's records shows nothing at all.
    assert_eq!(
        ok(
            &dev,
            &["record", "list", "--key", "demo2", "--patient", "demo1"]
        ),
        serde_json::json!([])
    );

    // Grant imaging: the doctor reads back exactly the same bytes.
    ok(
        &dev,
        &[
            "access",
            "grant",
            "--key",
            "demo1",
            "--to",
            "demo2",
            "--categories",
            "imaging",
        ],
    );
    let got = ok(
        &dev,
        &[
            "record",
            "get",
            "--key",
            "demo2",
            &rec,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(got["decision"], "allowed");
    assert_eq!(std::fs::read(&out).unwrap(), scan);
    // Revoke: denied again.
    ok(
        &dev,
        &["access", "revoke", "--key", "demo1", "--to", "demo2"],
    );
    let e = fails(
        &dev,
        "dev",
        &[
            "record",
            "get",
            "--key",
            "demo2",
            &rec,
            "--out",
            work.join("g2").to_str().unwrap(),
        ],
    );
    assert!(e.contains("access denied"), "{e}");
    // An expiring grant allows until it passes, then denies.
    ok(
        &dev,
        &[
            "access",
            "grant",
            "--key",
            "demo1",
            "--to",
            "demo2",
            "--categories",
            "imaging",
            "--expires",
            "3s",
        ],
    );
    ok(
        &dev,
        &[
            "record",
            "get",
            "--key",
            "demo2",
            &rec,
            "--out",
            work.join("g3").to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_secs(4));
    let e = fails(
        &dev,
        "dev",
        &[
            "record",
            "get",
            "--key",
            "demo2",
            &rec,
            "--out",
            work.join("g4").to_str().unwrap(),
        ],
    );
    // The reader is told no more than for any other denied read; the patient's trail says
    // the consent expired.
    assert!(e.contains("access denied: no record you may read"), "{e}");
    let trail = ok(&dev, &["audit", "--key", "demo1", "--record", &rec]);
    assert!(
        trail
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"]["code"] == "grant_expired"
                && e["reason"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("consent for imaging records has expired")),
        "{trail}"
    );

    // Request → approve grants access.
    let r = ok(
        &dev,
        &[
            "access",
            "request",
            "--key",
            "demo3",
            "--patient",
            "demo1",
            "--categories",
            "imaging,notes",
            "--reason",
            "second opinion",
            "--write",
        ],
    );
    let req = r["request"].as_str().unwrap().to_string();
    let inbox = ok(&dev, &["access", "requests", "--key", "demo1"]);
    assert_eq!(inbox[0]["reason_text"], "second opinion");
    assert_eq!(inbox[0]["status"], "open");
    let e = fails(
        &dev,
        "dev",
        &[
            "record",
            "get",
            "--key",
            "demo3",
            &rec,
            "--out",
            work.join("g5").to_str().unwrap(),
        ],
    );
    assert!(e.contains("access denied"), "{e}");
    ok(&dev, &["access", "approve", "--key", "demo1", &req]);
    ok(
        &dev,
        &[
            "record",
            "get",
            "--key",
            "demo3",
            &rec,
            "--out",
            work.join("g6").to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(work.join("g6")).unwrap(), scan);

    // A doctor-written note is invisible in the chart until the patient approves it.
    let note = work.join("note.txt");
    std::fs::write(&note, "NOTE-PLAINTEXT-MARKER meniscus tear").unwrap();
    let n = ok(
        &dev,
        &[
            "record",
            "add",
            "--key",
            "demo3",
            "--patient",
            "demo1",
            "--category",
            "notes",
            // The file may be given without `--file`.
            note.to_str().unwrap(),
            "--title",
            "Consult",
        ],
    );
    assert_eq!(n["status"], "pending");
    let note_id = n["record"].as_str().unwrap().to_string();
    let status_of = |who: &str, viewer_patient: &str| -> Option<String> {
        ok(
            &dev,
            &["record", "list", "--key", who, "--patient", viewer_patient],
        )
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == note_id.as_str())
        .map(|r| r["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of("demo1", "demo1").as_deref(), Some("pending"));
    ok(
        &dev,
        &[
            "access",
            "grant",
            "--key",
            "demo1",
            "--to",
            "demo2",
            "--categories",
            "notes",
        ],
    );
    assert_eq!(
        status_of("demo2", "demo1"),
        None,
        "a pending note must not be in the chart others see"
    );
    ok(&dev, &["record", "approve", "--key", "demo1", &note_id]);
    assert_eq!(status_of("demo2", "demo1").as_deref(), Some("active"));
    ok(
        &dev,
        &[
            "record",
            "get",
            "--key",
            "demo2",
            &note_id,
            "--out",
            work.join("n").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(work.join("n")).unwrap(),
        "NOTE-PLAINTEXT-MARKER meniscus tear"
    );

    // Wrong passphrase: refused, nothing sent.
    let e = fails(&dev, "wrong", &["record", "list", "--key", "demo1"]);
    assert!(e.contains("passphrase"), "{e}");

    // QR code: payload checks against the ledger; a forged fingerprint does not.
    let qr = ok(
        &dev,
        &[
            "qr",
            "--key",
            "demo1",
            "--out",
            work.join("a.svg").to_str().unwrap(),
        ],
    );
    let payload = qr["payload"].as_str().unwrap().to_string();
    assert!(
        std::fs::read_to_string(work.join("a.svg"))
            .unwrap()
            .contains("<svg")
    );
    assert_eq!(
        ok(&dev, &["qr", "check", &payload])["profile_matches"],
        true
    );
    let mut forged = payload.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    assert!(fails(&dev, "dev", &["qr", "check", &forged]).contains("does not match"));

    // An audit proof verifies offline against the genesis and fails when one byte changes.
    let proof = work.join("proof.json");
    ok(
        &dev,
        &[
            "audit",
            "proof",
            "--key",
            "demo1",
            denied["id"].as_str().unwrap(),
            "--out",
            proof.to_str().unwrap(),
        ],
    );
    let genesis = dir.join("genesis.json");
    // The genesis beside the key directory (the dev layout) is the default trust anchor.
    let v = ok(&dev, &["audit", "verify", proof.to_str().unwrap()]);
    assert_eq!(v["event_id"], denied["id"]);
    // Against another validator set, the same proof is refused.
    let mut other: Value = serde_json::from_slice(&std::fs::read(&genesis).unwrap()).unwrap();
    other["validators"][0]["public_key"] = Value::String("11".repeat(32));
    let other_path = work.join("other-genesis.json");
    std::fs::write(&other_path, other.to_string()).unwrap();
    let e = fails(
        &dev,
        "dev",
        &[
            "audit",
            "verify",
            proof.to_str().unwrap(),
            "--genesis",
            other_path.to_str().unwrap(),
        ],
    );
    assert!(e.contains("validator set is not the genesis file's"), "{e}");
    // Every one-byte change anywhere in the file makes it fail.
    let text = std::fs::read(&proof).unwrap();
    let mut tried = 0;
    for pos in (0..text.len()).step_by(text.len() / 40) {
        let mut bad = text.clone();
        bad[pos] = if bad[pos] == b'a' { b'b' } else { b'a' };
        let f = work.join("bad-proof.json");
        std::fs::write(&f, &bad).unwrap();
        let out = cli(
            &dev,
            &[
                "audit",
                "verify",
                f.to_str().unwrap(),
                "--genesis",
                genesis.to_str().unwrap(),
            ],
        );
        assert!(
            !out.status.success(),
            "a proof with byte {pos} changed still verifies"
        );
        tried += 1;
    }
    assert!(tried >= 40);

    // No file under the node's data dir contains any plaintext that was uploaded.
    drop(dev);
    let needles: [&[u8]; 5] = [
        marker,
        b"NOTE-PLAINTEXT-MARKER",
        b"Alice Quartermain",
        b"POLICY-77123",
        b"second opinion",
    ];
    for f in files_under(&dir) {
        let bytes = std::fs::read(&f).unwrap();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "{} contains plaintext {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
}

/// The clinical workflow's "done when": the whole scenario (appointment, symptoms,
/// prescription, dispensing, invoice, a claim approved level by level, a rejected one) runs
/// through the CLI against a real node, via the demo script a new user runs; the script
/// itself fails if any move that must be refused goes through. Then the ledger's state is
/// checked from the outside, and every token is accounted for.
#[test]
fn clinical_workflow_demo_end_to_end() {
    let _serial = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chain");
    let dev = start_dev(&dir, free_port());
    let script = std::path::PathBuf::from(manifest_dir()).join("../../scripts/demo-clinical");
    let out = Command::new("bash")
        .arg(&script)
        .env("EHRCHAIN_NODE", &dev.node)
        .env("EHRCHAIN_HOME", dir.join("keys"))
        .env("EHRCHAIN_PASSPHRASE", "dev")
        .env("EHRCHAIN_BIN", BIN)
        .env("DEMO_WAIT", "3")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("balances add up: 1000 tokens"), "{stdout}");
    // Each refusal, with its reason.
    for reason in [
        "cannot read your notes records: add --grant-for",
        "is not open: it cannot be booked",
        "only the slot's doctor answers and completes",
        "has already been dispensed",
        "is being decided: pay or claim after the decision",
        "waits for level 1 of 2; you approve level 2",
        "is already paid",
        "is no longer open: it was approved, rejected or withdrawn",
        "insufficient balance: have 70, need 150",
    ] {
        assert!(
            stdout.contains(reason),
            "no refusal {reason:?} in:\n{stdout}"
        );
    }
    // Balances: the patient paid 20 (appointment) + 10 (her share); the doctor earned the
    // fee; the pharmacy 40 from the insurer and 10 from the patient.
    let expected = [
        ("demo1", 70),
        ("demo2", 120),
        ("demo3", 150),
        ("demo4", 60),
        ("demo5", 100),
    ];
    for (k, b) in expected {
        assert_eq!(balance(&dev, k), b, "balance of {k}");
    }
    let status = ok(&dev, &["chain", "status"]);
    assert_eq!(status["total_supply"], 1000);
    assert_eq!(status["escrow_balance"], 0);
    // The items, as each party lists them.
    let slots = ok(&dev, &["appointment", "list", "--key", "demo2"]);
    let states: Vec<&str> = slots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["completed", "open"], "{slots}");
    let rx = ok(&dev, &["rx", "list", "--key", "demo3"]);
    assert_eq!(rx.as_array().unwrap().len(), 2);
    assert!(
        rx.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "dispensed")
    );
    // Titles (readable without an audited read) carry nothing medical.
    assert_eq!(rx[1]["title"], "Prescription");
    let inv = ok(&dev, &["invoice", "list", "--key", "demo1"]);
    let inv: Vec<(u64, u64, &str)> = inv
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["amount"].as_u64().unwrap(),
                i["insurer_paid"].as_u64().unwrap(),
                i["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(inv, [(150, 0, "unpaid"), (50, 40, "paid")]);
    let claims = ok(&dev, &["claim", "list", "--key", "demo5"]);
    let claims: Vec<&str> = claims
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(claims, ["rejected", "approved"]);
    // Outsiders see none of it; the doctor's inbox holds the report, readable only by the
    // parties.
    let none = ok(&dev, &["invoice", "list", "--key", "demo6"]);
    assert_eq!(none.as_array().unwrap().len(), 0);
    let inbox = ok(&dev, &["symptoms", "inbox", "--key", "demo2"]);
    let report = inbox[0]["id"].as_str().unwrap().to_string();
    assert_eq!(inbox[0]["title"], "Symptom report");
    // The doctor's view: the report in full and a suggestion, never an order.
    let shown = ok(&dev, &["symptoms", "show", "--key", "demo2", &report]);
    assert_eq!(shown["content"]["symptoms"][0], "fever");
    assert!(shown["suggestion"]["ranked"].as_array().unwrap().len() == 3);
    assert!(
        shown["suggestion"]["notice"]
            .as_str()
            .unwrap()
            .contains("not a diagnosis")
    );
    let err = fails(
        &dev,
        "dev",
        &["symptoms", "show", "--key", "demo6", &report],
    );
    assert!(err.contains("no symptom report"), "{err}");
    // The patient's audit trail names every kind of step.
    let trail = ok(&dev, &["audit", "--key", "demo1"]).to_string();
    for action in [
        "appointment_booked",
        "appointment_completed",
        "symptoms_reported",
        "prescribed",
        "dispensed",
        "invoice_issued",
        "policy_recorded",
        "claim_submitted",
        "claim_approved",
        "claim_rejected",
        "claim_paid",
        "invoice_paid",
    ] {
        assert!(trail.contains(action), "no {action} in the audit trail");
    }
    // Wrong ids get a clear error before anything is sent.
    let err = fails(&dev, "dev", &["invoice", "pay", "--key", "demo1", &report]);
    assert!(err.contains("is a symptom report, not an invoice"), "{err}");
    let err = fails(
        &dev,
        "dev",
        &["claim", "approve", "--key", "demo4", "clm00"],
    );
    assert!(err.contains("invalid claim id"), "{err}");
}

/// A size-limited filesystem for the disk-full test: a tmpfs mounted for the test (needs
/// root, as in CI), unmounted on drop. `None` where mounting is not possible.
struct SmallDisk {
    path: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> Option<SmallDisk> {
        let tmp = tempfile::tempdir().ok()?;
        let path = tmp.path().join("disk");
        std::fs::create_dir(&path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { path, _tmp: tmp })
    }

    fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Writes a file of `bytes` zeros, or until the disk is full.
    fn fill(&self, name: &str, bytes: u64) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path.join(name)).unwrap();
        let chunk = vec![0u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_refuses_work_and_never_stops_the_node() {
    let _serial = exclusive();
    let Some(disk) = SmallDisk::mount(160) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); CI runs this test as root");
        return;
    };
    let dir = disk.path.join("chain");
    let port = free_port();
    // Create the chain, then lower the limits for a 160 MiB disk: refuse below 64 MiB free,
    // with a 16 MiB ballast for consensus, and no rate limit in the way.
    drop(start_dev(&dir, port));
    let cfg_path = dir.join("node.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let lowered = cfg
        .replace(
            &format!("min_free_bytes = {}", 1u64 << 30),
            &format!("min_free_bytes = {}", 64u64 << 20),
        )
        .replace(
            &format!("ballast_bytes = {}", 64u64 << 20),
            &format!("ballast_bytes = {}", 16u64 << 20),
        );
    assert_ne!(cfg, lowered, "node.toml holds the default limits: {cfg}");
    std::fs::write(&cfg_path, lowered).unwrap();
    let dev = start_dev(&dir, port);
    assert!(dir.join("ballast.bin").exists(), "the ballast is laid down");
    ok(&dev, &["register", "--key", "demo1", "--role", "patient"]);
    let work = tempfile::tempdir().unwrap();
    let file = |name: &str, mib: usize| {
        let p = work.path().join(name);
        std::fs::write(&p, vec![7u8; mib << 20]).unwrap();
        p
    };
    let add = |p: &Path| {
        cli(
            &dev,
            &[
                "record",
                "add",
                "--key",
                "demo1",
                "--patient",
                "demo1",
                "--category",
                "lab",
                "--file",
                p.to_str().unwrap(),
                "--title",
                "t",
                "--json",
            ],
        )
    };
    // ~24 MiB fits above the watermark (about 118 MiB stay free); 64 MiB more would cross it
    // and is refused up front.
    let first = add(&file("a.bin", 24));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = add(&file("b.bin", 64));
    assert!(!second.status.success());
    let e = String::from_utf8_lossy(&second.stderr);
    assert!(e.contains("low on storage"), "{e}");

    // Something else fills the disk below the watermark: transactions are refused (507) too,
    // and blocks keep being finalized.
    let free = disk.free();
    disk.fill("filler1", free.saturating_sub(40 << 20));
    std::thread::sleep(Duration::from_secs(1));
    let e = fails(
        &dev,
        "dev",
        &[
            "transfer", "--key", "demo2", "--to", "demo3", "--amount", "1",
        ],
    );
    assert!(e.contains("low on storage"), "{e}");
    let metrics = ureq_get(&format!("{}/metrics", dev.node));
    assert!(metrics.contains("ehrchain_storage_low 1"), "{metrics}");
    let height = |dev: &Dev| ok(dev, &["chain", "status"])["height"].as_u64().unwrap();
    let h = height(&dev);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        height(&dev) > h,
        "blocks are still finalized below the watermark"
    );

    // The disk fills up completely: the node gives its ballast back to consensus and keeps
    // finalizing; the process does not stop.
    disk.fill("filler2", u64::MAX);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!dir.join("ballast.bin").exists(), "the ballast is released");
    let h = height(&dev);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        height(&dev) > h,
        "blocks are still finalized on a full disk"
    );

    // Space returns: normal service, and the ballast is back.
    std::fs::remove_file(disk.path.join("filler1")).unwrap();
    std::fs::remove_file(disk.path.join("filler2")).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    ok(
        &dev,
        &[
            "transfer", "--key", "demo2", "--to", "demo3", "--amount", "1",
        ],
    );
    let small = add(&file("c.bin", 1));
    assert!(
        small.status.success(),
        "{}",
        String::from_utf8_lossy(&small.stderr)
    );
    assert!(
        dir.join("ballast.bin").exists(),
        "the ballast is laid down again"
    );
    let mut dev = dev;
    assert!(
        dev.child.try_wait().unwrap().is_none(),
        "the node is still running"
    );
}

/// A plain GET of a text body.
fn ureq_get(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// This crate's directory, as cargo gives it to the running test (a build cache shared with
/// another checkout can hold a binary compiled there, whose compile-time path is gone).
fn manifest_dir() -> std::ffi::OsString {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

/// A command line's words (none of which has a space).
fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Issue 17 as a new user would try it on `ehrchain dev`: five guardians, threshold 3; two
/// approvals release nothing, a third does; a corrupted share is named and reported, and the
/// doctor still opens; the patient sees the alert and every read; after the window reads are
/// refused; the regulator sees the dispute.
#[test]
fn emergency_access_end_to_end() {
    use ehrchain_client::{Keystore, Node, Session, emergency as em};
    let _serial = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chain");
    let dev = start_dev(&dir, free_port());
    let refused = |cmd: &str| fails(&dev, "dev", &words(cmd));
    let reg = |k: &str, role: &str| {
        let mut a = vec!["register", "--key", k, "--role", role];
        if role != "patient" {
            a.extend(["--org", "StMarys"]);
        }
        ok(&dev, &a);
        if role != "patient" {
            ok(&dev, &["approve", "--key", "admin", k]);
        }
    };
    reg("demo1", "patient");
    reg("demo2", "doctor");
    for g in ["demo3", "demo4", "demo5", "demo6"] {
        reg(g, "patient");
    }
    reg("demo7", "doctor");
    reg("demo8", "regulator");
    reg("demo9", "patient");
    ok(&dev, &words("register --key demo10 --role doctor --org X"));

    let add = |category: &str, file: &Path, title: &str| -> String {
        let file = file.to_str().unwrap();
        let a = [
            "record",
            "add",
            "--key",
            "demo1",
            "--patient",
            "demo1",
            "--category",
            category,
        ];
        ok(
            &dev,
            &[&a[..], &["--file", file, "--title", title]].concat(),
        )["record"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let med = tmp.path().join("meds.txt");
    std::fs::write(&med, b"warfarin 5 mg daily; allergic to penicillin").unwrap();
    let rec = add("medication", &med, "Medication list");
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, b"private notes").unwrap();
    let notes_rec = add("notes", &notes, "Notes");
    // The file is needed, once: as `FILE` or as `--file FILE`.
    let e = refused("record add --key demo1 --patient demo1 --category notes");
    assert!(e.contains("<FILE>"), "{e}");
    let e = refused(&format!(
        "record add --key demo1 --patient demo1 --category notes {0} --file {0}",
        notes.display()
    ));
    assert!(e.contains("cannot be used with"), "{e}");

    // Guardians: a threshold of 1 is refused by the client before anything is sent.
    let e = refused("guardians set --key demo1 --guardians demo3,demo4 --threshold 1");
    assert!(e.contains("threshold"), "{e}");
    let set = ok(
        &dev,
        &words("guardians set --key demo1 --guardians demo3,demo4,demo5,demo6,demo7 --threshold 3"),
    );
    assert!(set["id"].as_str().unwrap().starts_with("grd"));
    let shown = ok(&dev, &words("guardians show --key demo1"));
    assert_eq!(shown["guardianship"]["threshold"], 3);
    let card = ok(&dev, &words("guardians show --key demo2 --patient demo1"));
    assert_eq!(card["guardians"].as_array().unwrap().len(), 5);

    let out = tmp.path().join("got.txt");
    let get = |who: &str, id: &str| {
        let _ = std::fs::remove_file(&out);
        cli(
            &dev,
            &[
                "record",
                "get",
                "--key",
                who,
                id,
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    let denied = get("demo2", &rec);
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("access denied"));

    // Role rules and a patient without guardians.
    let e = refused("emergency request --key demo10 --patient demo1 --reason unconscious");
    assert!(e.contains("approval") || e.contains("approved"), "{e}");
    let e = refused("emergency request --key demo2 --patient demo9 --reason unconscious");
    assert!(e.contains("no guardians"), "{e}");
    let e = refused("emergency request --key demo2 --patient demo1 --reason other");
    assert!(e.contains("note"), "{e}");

    let asked = ok(
        &dev,
        &[
            "emergency",
            "request",
            "--key",
            "demo2",
            "--patient",
            "demo1",
            "--reason",
            "unconscious",
            "--note",
            "brought in by ambulance",
            "--for",
            "25s",
        ],
    );
    let req = asked["id"].as_str().unwrap().to_string();
    assert!(req.starts_with("emg"));
    let inbox = ok(&dev, &words("emergency inbox --key demo3"));
    assert_eq!(inbox[0]["id"], req.as_str());
    assert_eq!(inbox[0]["note"], "brought in by ambulance");
    // A stranger cannot even see the request.
    let e = fails(
        &dev,
        "dev",
        &["emergency", "approve", "--key", "demo9", &req],
    );
    assert!(e.contains("that you may see"), "{e}");

    for g in ["demo3", "demo4"] {
        ok(&dev, &["emergency", "approve", "--key", g, &req]);
    }
    assert!(
        !get("demo2", &rec).status.success(),
        "two approvals release nothing"
    );
    let e = fails(
        &dev,
        "dev",
        &["emergency", "approve", "--key", "demo3", &req],
    );
    assert!(e.contains("already answered"), "{e}");
    let e = fails(&dev, "dev", &["emergency", "open", "--key", "demo2", &req]);
    assert!(e.contains("not released"), "{e}");
    let third = ok(&dev, &["emergency", "approve", "--key", "demo5", &req]);
    assert_eq!(third["status"], "released");
    let opened = ok(&dev, &["emergency", "open", "--key", "demo2", &req]);
    assert_eq!(opened["good"].as_array().unwrap().len(), 3);
    let got = get("demo2", &rec);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&med).unwrap());
    // Notes were not released.
    assert!(!get("demo2", &notes_rec).status.success());

    // A guardian hands over a corrupted share: named, reported, and the doctor still opens.
    let node = Node::new(&dev.node);
    let ks = Keystore::new(dir.join("keys"));
    let g6 = Session::new(node.clone(), ks.unlock("demo6", "dev").unwrap()).unwrap();
    let id: ehrchain_types::ItemId = req.parse().unwrap();
    let share = em::my_share(&g6, &id).unwrap();
    em::approve_with_share(&g6, &id, &share.corrupted()).unwrap();
    let opened = ok(&dev, &["emergency", "open", "--key", "demo2", &req]);
    let bad = opened["bad"].as_array().unwrap();
    assert_eq!(bad.len(), 1);
    let demo6 = ok(&dev, &words("key list"))
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "demo6")
        .unwrap()["account"]
        .clone();
    assert_eq!(bad[0][0], demo6);
    assert!(get("demo2", &rec).status.success());
    let list = ok(&dev, &words("emergency list --key demo1"));
    let answers = list["requests"][0]["answers"].as_array().unwrap();
    assert!(
        answers
            .iter()
            .any(|a| a["guardian"] == demo6 && a["bad"] == true)
    );

    // The patient's alert shows every read under the access.
    let alerts = list["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["reads"].as_array().unwrap().len(), 2);
    let text = cli(&dev, &words("emergency list --key demo1"));
    assert!(String::from_utf8_lossy(&text.stdout).contains("ALERT"));

    // After the window, reads are refused again.
    let expires = list["requests"][0]["expires_ms"].as_u64().unwrap();
    while ehrchain_client::api::now_ms() < expires + 1500 {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(!get("demo2", &rec).status.success(), "the window is over");

    // The patient disputes; the regulator sees it; nobody else lists disputes.
    let reviewed = ok(
        &dev,
        &["emergency", "review", "--key", "demo1", &req, "--disputed"],
    );
    assert!(reviewed["rotated"].as_array().unwrap().len() >= 2);
    let disputes = ok(&dev, &words("emergency disputes --key demo8"));
    assert_eq!(disputes[0]["id"], req.as_str());
    let e = refused("emergency disputes --key demo2");
    assert!(e.contains("regulator"), "{e}");
    let e = fails(
        &dev,
        "dev",
        &["emergency", "review", "--key", "demo1", &req, "--reviewed"],
    );
    assert!(e.contains("review"), "{e}");

    // Reviewing rotated: a new emergency key, new epochs of the released categories.
    let rotated = ok(&dev, &words("emergency rotate --key demo1"));
    assert!(
        rotated.as_array().unwrap().is_empty(),
        "already rotated by the review"
    );
    let shown2 = ok(&dev, &words("guardians show --key demo1"));
    assert_ne!(shown2["guardianship"]["id"], shown["guardianship"]["id"]);
    // A new record after the rotation still opens for the patient.
    let rec2 = add("medication", &med, "After");
    assert!(get("demo1", &rec2).status.success());
}

/// Bytes in files under `dir` (0 if it does not exist; files may come and go meanwhile).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Issue 16 on real processes: a 50 MB record uploaded through node 0 is erasure-coded across
/// the four validators (k = 2), reads back byte-identical through every other node, survives
/// node 0's death and a corrupted shard, and fails cleanly (`blob_unavailable`, nothing
/// written) once too few shards are left.
#[test]
fn records_are_erasure_coded_across_the_validators() {
    let _serial = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tn");
    let mut tn = Testnet::start_four(&dir);
    tn.wait_height(0, 2);
    tn.json(0, &words("register --key demo1 --role patient"));

    let marker = b"PLAINTEXT-MARKER-OF-THE-50MB-SCAN";
    let mut data: Vec<u8> = (0..50_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    data[25_000_000..25_000_000 + marker.len()].copy_from_slice(marker);
    let file = tmp.path().join("scan.bin");
    std::fs::write(&file, &data).unwrap();
    let added = tn.json(
        0,
        &[
            "record",
            "add",
            "--key",
            "demo1",
            "--patient",
            "demo1",
            "--category",
            "imaging",
            "--file",
            file.to_str().unwrap(),
        ],
    );
    let rec = added["record"].as_str().unwrap().to_string();
    // The ledger carries the root of the coding manifest the content was placed under.
    let tx = added["tx"]
        .as_str()
        .expect("the anchoring transaction")
        .to_string();
    let anchored = tn.json(0, &["chain", "tx", &tx, "--key", "demo1"]);
    let coding = &anchored["tx"]["tx"]["payload"]["coding"];
    assert!(coding.as_str().is_some_and(|c| c.len() == 64), "{anchored}");
    let out = tmp.path().join("got.bin");
    let get = |tn: &Testnet, i: usize| {
        let _ = std::fs::remove_file(&out);
        tn.run(
            i,
            &[
                "record",
                "get",
                "--key",
                "demo1",
                &rec,
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    for i in [1, 2, 3] {
        let o = get(&tn, i);
        assert!(
            o.status.success(),
            "read via node{i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            std::fs::read(&out).unwrap() == data,
            "node{i} served other bytes"
        );
    }
    // About size / k on each node, no whole copy anywhere, no plaintext anywhere.
    let ciphertext = added["size"].as_u64().unwrap_or(data.len() as u64);
    for i in 0..4 {
        let d = dir.join(format!("node{i}/data"));
        let shards = dir_bytes(&d.join("shards"));
        assert!(
            shards > ciphertext / 2 && shards < ciphertext / 2 + ciphertext / 10,
            "node{i} holds {shards} shard bytes for a {ciphertext}-byte blob"
        );
        assert!(
            dir_bytes(&d.join("blobs")) < 1 << 20,
            "node{i} kept a whole blob"
        );
        for f in files_under(&d) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "plaintext in {}",
                f.display()
            );
        }
    }
    // Node 2 loses its shards and restarts: it rebuilds them from its peers.
    tn.kill(2);
    std::fs::remove_dir_all(dir.join("node2/data/shards")).unwrap();
    tn.start(2);
    let start = Instant::now();
    let node2 = dir.join("node2/data/shards");
    while dir_bytes(&node2) < ciphertext / 2 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "node2 did not rebuild its shards ({} bytes)",
            dir_bytes(&node2)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let metrics = ureq_get(&format!("{}/metrics", tn.api(2)));
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ehrchain_shards_repaired_total ") && !l.ends_with(" 0")),
        "repair shows in the metrics"
    );
    // The node that received the upload dies: the record still reads through node 2.
    tn.kill(0);
    let o = get(&tn, 2);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == data);
    // A shard on node 1 is corrupted: node 3 skips it, reports it, and still rebuilds.
    let shard_files: Vec<PathBuf> = files_under(&dir.join("node1/data/shards"))
        .into_iter()
        .filter(|f| !f.ends_with("manifest"))
        .collect();
    let victim = &shard_files[0];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(victim, &bytes).unwrap();
    let o = get(&tn, 3);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == data);
    let log = std::fs::read_to_string(dir.join("node3/test.log")).unwrap();
    assert!(
        log.contains("a wrong shard was skipped"),
        "the corruption is reported"
    );
    // Node 0 is down and node 1's shards are gone: node 3 alone holds fewer than k = 2.
    std::fs::remove_dir_all(dir.join("node1/data/shards")).unwrap();
    std::fs::remove_dir_all(dir.join("node2/data/shards")).unwrap();
    let o = get(&tn, 3);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    assert!(e.contains("unavailable"), "{e}");
    assert!(!out.exists(), "nothing partial is written");
}

/// Issue 14: offline-checkable state proofs (a grant, and the absence of one), and a follower
/// started late that catches up, serves reads and proofs from its own state, and forwards
/// writes and record content to the validator.
#[test]
fn state_proofs_and_a_late_follower() {
    let _serial = exclusive();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("chain");
    let dev = start_dev(&dir, free_port());
    ok(&dev, &words("register --key demo1 --role patient"));
    ok(&dev, &words("register --key demo3 --role patient"));
    ok(
        &dev,
        &words("register --key demo2 --role doctor --org StMarys"),
    );
    ok(&dev, &words("approve --key admin demo2"));
    let file = tmp.path().join("lab.txt");
    std::fs::write(&file, b"HbA1c 6.1% (2026-11-30)").unwrap();
    let rec = ok(
        &dev,
        &[
            "record",
            "add",
            "--key",
            "demo1",
            "--patient",
            "demo1",
            "--category",
            "lab",
            "--file",
            file.to_str().unwrap(),
            "--title",
            "Lab",
        ],
    )["record"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &dev,
        &words("access grant --key demo1 --to demo2 --categories lab"),
    );
    let id = |k: &str| {
        ok(&dev, &["account", k])["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (p, d, other) = (id("demo1"), id("demo2"), id("demo3"));

    let prove = |node: &Dev, entry: &str, file: &Path| {
        ok(
            node,
            &[
                "state",
                "proof",
                entry,
                "--key",
                "demo1",
                "--out",
                file.to_str().unwrap(),
            ],
        )
    };
    let verify = |node: &Dev, file: &Path| ok(node, &["state", "verify", file.to_str().unwrap()]);
    // A proof that the grant exists, checked offline against the genesis file.
    let proof = tmp.path().join("grant.json");
    let got = prove(&dev, &format!("grant:{p}:{d}"), &proof);
    assert_eq!(got["exists"], true);
    let v = verify(&dev, &proof);
    assert_eq!(v["exists"], true);
    assert!(v["height"].as_u64().unwrap() >= 1);
    // A changed byte of the value or of the tree proof: refused.
    let text = std::fs::read_to_string(&proof).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    for field in ["value", "proof", "tree_root"] {
        let hex = file[field].as_str().unwrap();
        let at = hex.len() / 2;
        let flipped = if &hex[at..at + 1] == "0" { "1" } else { "0" };
        let changed = text.replacen(
            hex,
            &format!("{}{flipped}{}", &hex[..at], &hex[at + 1..]),
            1,
        );
        let bad = tmp.path().join(format!("bad-{field}.json"));
        std::fs::write(&bad, changed).unwrap();
        let e = fails(&dev, "dev", &["state", "verify", bad.to_str().unwrap()]);
        assert!(e.contains("proof is invalid"), "{field}: {e}");
    }
    // A file of the old format (its record keys were laid out otherwise) or of an unknown
    // one: refused, the old one with what to do.
    for (format, says) in [
        ("ehrchain-state-proof/v1", "ask the node for a new proof"),
        ("ehrchain-state-proof/v9", "not a state proof"),
    ] {
        let old = text.replacen("ehrchain-state-proof/v2", format, 1);
        assert_ne!(old, text);
        let bad = tmp.path().join("old-format.json");
        std::fs::write(&bad, old).unwrap();
        let e = fails(&dev, "dev", &["state", "verify", bad.to_str().unwrap()]);
        assert!(e.contains(says), "{format}: {e}");
    }
    // A proof of absence: no grant from the patient to demo3.
    let none = tmp.path().join("none.json");
    let got = prove(&dev, "grant:demo1:demo3", &none);
    assert_eq!(got["exists"], false);
    assert_eq!(verify(&dev, &none)["exists"], false);
    // Claimed as the proof of the grant that does exist, it fails.
    let swapped = std::fs::read_to_string(&none)
        .unwrap()
        .replace(&format!("grant:{p}:{other}"), &format!("grant:{p}:{d}"));
    let bad = tmp.path().join("swapped.json");
    std::fs::write(&bad, swapped).unwrap();
    assert!(
        fails(&dev, "dev", &["state", "verify", bad.to_str().unwrap()])
            .contains("proof is invalid")
    );
    // Someone else's keys, and a malformed key: refused with a clear error.
    let e = fails(
        &dev,
        "dev",
        &[
            "state",
            "proof",
            &format!("keys:{p}:lab"),
            "--key",
            "demo3",
            "--out",
            "/dev/null",
        ],
    );
    assert!(e.contains("no state entry"), "{e}");
    let e = fails(
        &dev,
        "dev",
        &[
            "state",
            "proof",
            "grant:nobody",
            "--key",
            "demo1",
            "--out",
            "/dev/null",
        ],
    );
    assert!(e.contains("state key"), "{e}");

    // A follower started now catches up from genesis.
    let fport = free_port();
    let fdir = tmp.path().join("follower");
    let child = Command::new(BIN)
        .args(["follow", "--upstream", &dev.node, "--genesis"])
        .arg(dir.join("genesis.json"))
        .args(["--key", "admin", "--data-dir"])
        .arg(&fdir)
        .args(["--listen", &format!("127.0.0.1:{fport}")])
        .env("EHRCHAIN_HOME", dir.join("keys"))
        .env("EHRCHAIN_PASSPHRASE", "dev")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("follower.log")).unwrap())
        .spawn()
        .unwrap();
    let follower = Dev {
        dir: dir.clone(),
        node: format!("http://127.0.0.1:{fport}"),
        child,
    };
    let height = |d: &Dev| {
        let out = cli(d, &["chain", "status", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["height"].as_u64())
    };
    let target = height(&dev).unwrap();
    let start = Instant::now();
    while height(&follower).is_none_or(|h| h < target) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the follower did not catch up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = |d: &Dev| ok(d, &["chain", "status"]);
    let at = |d: &Dev, h: u64| {
        ok(d, &["chain", "block", &h.to_string()])["header"]["state_root"].clone()
    };
    assert_eq!(at(&follower, target), at(&dev, target));
    // Reads and proofs from the follower's own state.
    assert_eq!(
        ok(&follower, &["record", "list", "--key", "demo1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let fproof = tmp.path().join("follower-grant.json");
    prove(&follower, &format!("grant:{p}:{d}"), &fproof);
    assert_eq!(verify(&follower, &fproof)["exists"], true);
    // A record read through the follower: the audited read is forwarded to the validator,
    // finalized, followed, and the content forwarded.
    let out = tmp.path().join("read.txt");
    let got = ok(
        &follower,
        &[
            "record",
            "get",
            "--key",
            "demo2",
            &rec,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(got["decision"], "allowed");
    assert_eq!(std::fs::read(&out).unwrap(), b"HbA1c 6.1% (2026-11-30)");
    // Writes through the follower land on the chain (and come back to it).
    let before = status(&follower)["height"].as_u64().unwrap();
    ok(&follower, &words("access revoke --key demo1 --to demo2"));
    assert!(status(&follower)["height"].as_u64().unwrap() > before);
    // With the validator gone, the follower still serves what it holds; writes say why not.
    drop(dev);
    assert_eq!(
        ok(&follower, &["record", "list", "--key", "demo1"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let e = fails(
        &follower,
        "dev",
        &words("access grant --key demo1 --to demo2 --categories lab"),
    );
    assert!(e.contains("could not reach a validator"), "{e}");
}
