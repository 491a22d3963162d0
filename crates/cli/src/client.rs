//! A small blocking HTTP client for the node's JSON API.

use anyhow::{Context as _, anyhow};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use std::time::Duration;

/// Talks to one node.
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// An error the node answered with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct NodeError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl NodeError {
    /// The node's `{"error": {"code", "message"}}` answer.
    fn from_body(status: u16, body: &Value) -> NodeError {
        let err = &body["error"];
        NodeError {
            status,
            code: err["code"].as_str().unwrap_or("error").to_string(),
            message: err["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}")),
        }
    }
}

/// An agent for bodies that may take long to stream (record uploads and downloads).
fn streaming_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3600)))
        .build()
        .into()
}

impl Client {
    pub fn new(base: &str) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn handle<T: DeserializeOwned>(
        &self,
        path: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let mut resp = result.map_err(|e| {
            anyhow!(
                "cannot reach the node at {} ({e}); is it running? (start one with `ehrchain dev`, or set --node / EHRCHAIN_NODE)",
                self.base
            )
        })?;
        let status = resp.status().as_u16();
        let body: Value = resp.body_mut().read_json().with_context(|| {
            format!("node answered {path} with HTTP {status} and a non-JSON body")
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_value(body)
                .with_context(|| format!("unexpected response shape from {path}"));
        }
        Err(NodeError::from_body(status, &body).into())
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.handle(path, self.agent.get(&url).call())
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.handle(path, self.agent.post(&url).send_json(body))
    }

    /// GET with a signed-request header.
    pub fn get_signed<T: DeserializeOwned>(&self, path: &str, auth: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.handle(
            path,
            self.agent
                .get(&url)
                .header(ehrchain_types::request::HEADER, auth)
                .call(),
        )
    }

    /// PUT a file as the body (streamed), with a signed-request header.
    pub fn put_file<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: &str,
        file: &mut std::fs::File,
        len: u64,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.handle(
            path,
            streaming_agent()
                .put(&url)
                .header(ehrchain_types::request::HEADER, auth)
                .header("content-length", len.to_string())
                .send(ureq::SendBody::from_reader(file)),
        )
    }

    /// GET a binary body (streamed into `out`), with a signed-request header.
    pub fn download(
        &self,
        path: &str,
        auth: &str,
        out: &mut dyn FnMut(&mut dyn std::io::Read) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let mut resp = streaming_agent()
            .get(&url)
            .header(ehrchain_types::request::HEADER, auth)
            .call()
            .map_err(|e| anyhow!("cannot reach the node at {} ({e})", self.base))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body: Value = resp.body_mut().read_json().unwrap_or_default();
            return Err(NodeError::from_body(status, &body).into());
        }
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        out(&mut reader)
    }

    /// Polls a transaction until it is finalized; fails if it leaves the mempool without
    /// being finalized or the timeout passes. `auth` signs each poll (the node shows a
    /// transaction's body and receipt only to its parties and to consortium members).
    pub fn wait_final(
        &self,
        id: &ehrchain_types::Hash,
        timeout: Duration,
        auth: &dyn Fn(&str) -> String,
    ) -> anyhow::Result<ehrchain_node::api::TxView> {
        let start = std::time::Instant::now();
        loop {
            let path = format!("/api/v1/transactions/{id}");
            let t: ehrchain_node::api::TxView = self.get_signed(&path, &auth(&path))?;
            if t.status == "finalized" {
                return Ok(t);
            }
            if t.status == "unknown" && start.elapsed() > Duration::from_secs(5) {
                anyhow::bail!(
                    "transaction {id} is no longer pending and was not finalized (dropped from the mempool)"
                );
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "transaction {id} not finalized after {}s; check `ehrchain chain tx {id}` later",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
