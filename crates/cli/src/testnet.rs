//! `ehrchain testnet init|run`: a local consortium of validators as separate processes.

use ehrchain_node::testnet;
use serde_json::json;
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub fn init(json_out: bool, dir: &Path, validators: usize, base_port: u16) -> anyhow::Result<()> {
    let configs = testnet::init(dir, validators, base_port)?;
    let dir = dir.canonicalize()?;
    let nodes: Vec<_> = configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"name": format!("node{i}"), "api": format!("http://{}", c.api_listen),
                   "p2p": c.p2p_listen.to_string(), "config": testnet::node_config(&dir, i)})
        })
        .collect();
    if json_out {
        println!(
            "{}",
            json!({"dir": dir, "nodes": nodes, "keys": dir.join("keys"), "passphrase": "dev"})
        );
    } else {
        println!("testnet of {validators} validators in {}", dir.display());
        for n in &nodes {
            println!(
                "  {}  api {}  p2p {}",
                n["name"].as_str().unwrap_or(""),
                n["api"].as_str().unwrap_or(""),
                n["p2p"].as_str().unwrap_or("")
            );
        }
        println!("start all:  ehrchain testnet run --dir {}", dir.display());
        println!(
            "start one:  ehrchain node --config {}",
            testnet::node_config(&dir, 0).display()
        );
        println!(
            "CLI:        export EHRCHAIN_HOME={} EHRCHAIN_PASSPHRASE=dev EHRCHAIN_NODE={}",
            dir.join("keys").display(),
            nodes[0]["api"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Starts every validator of `dir` as its own process (logs in `nodeI/node.log`) and stops
/// them all on Ctrl-C or SIGTERM.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let n = testnet::count(dir)?;
    let exe = std::env::current_exe()?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for i in 0..n {
        let log = std::fs::File::create(testnet::node_dir(dir, i).join("node.log"))?;
        let child = Command::new(&exe)
            .arg("node")
            .arg("--config")
            .arg(testnet::node_config(dir, i))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        println!(
            "node{i} started (pid {}), log {}",
            child.id(),
            testnet::node_dir(dir, i).join("node.log").display()
        );
        children.push((i, child));
    }
    println!("{n} validators running; Ctrl-C stops them all");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut reported = vec![false; n];
        loop {
            tokio::select! {
                _ = ehrchain_node::run::shutdown_signal() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    for (i, c) in children.iter_mut() {
                        if !reported[*i] && let Ok(Some(status)) = c.try_wait() {
                            eprintln!("node{i} exited ({status}); see its node.log");
                            reported[*i] = true;
                        }
                    }
                    if reported.iter().all(|r| *r) {
                        break;
                    }
                }
            }
        }
    });
    println!("stopping {n} validators");
    for (_, c) in &children {
        signal(c, "-TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, c) in children.iter_mut() {
        while c.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!("node{i} did not stop in time; killing it");
                let _ = c.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}
