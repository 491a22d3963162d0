//! HTTP to one node's public API (blocking; a server-side app calls it from a blocking task).

use crate::{Error, Result};
use ehrchain_api::{ErrorBody, request::HEADER};
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;

/// How long an ordinary request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a streamed upload or download may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(3600);

/// One node's API.
#[derive(Clone)]
pub struct Node {
    base: String,
    agent: ureq::Agent,
    streaming: ureq::Agent,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("base", &self.base).finish()
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

type Response = ureq::http::Response<ureq::Body>;

impl Node {
    /// The node whose API is at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Node {
        Node {
            base: base.trim_end_matches('/').to_string(),
            agent: agent(TIMEOUT),
            streaming: agent(STREAM_TIMEOUT),
        }
    }

    /// The API's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: ureq::Error) -> Error {
        Error::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        }
    }

    /// The error body of a non-2xx answer.
    fn node_error(status: u16, resp: &mut Response) -> Error {
        let retry_after_secs = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        match resp.body_mut().read_json::<ErrorBody>() {
            Ok(b) => Error::Node {
                status,
                code: b.error.code,
                message: b.error.message,
                refusal: b.error.refusal,
                retry_after_secs,
            },
            Err(_) => Error::Node {
                status,
                code: "error".into(),
                message: format!("HTTP {status}"),
                refusal: None,
                retry_after_secs,
            },
        }
    }

    fn handle<T: DeserializeOwned>(
        &self,
        path: &str,
        result: Result<Response, ureq::Error>,
    ) -> Result<T> {
        let mut resp = result.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(Self::node_error(status, &mut resp));
        }
        resp.body_mut().read_json().map_err(|e| {
            Error::Protocol(format!("unexpected answer to {path} (HTTP {status}): {e}"))
        })
    }

    /// An unsigned GET.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        self.handle(path, self.agent.get(&url).call())
    }

    /// A GET with a signed-request header.
    pub fn get_signed<T: DeserializeOwned>(&self, path: &str, auth: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        self.handle(path, self.agent.get(&url).header(HEADER, auth).call())
    }

    /// A POST of a JSON body.
    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let url = format!("{}{path}", self.base);
        self.handle(path, self.agent.post(&url).send_json(body))
    }

    /// A PUT of `len` bytes read from `body` (streamed), with a signed-request header.
    pub fn put_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        auth: &str,
        body: &mut dyn std::io::Read,
        len: u64,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        self.handle(
            path,
            self.streaming
                .put(&url)
                .header(HEADER, auth)
                .header("content-length", len.to_string())
                .send(ureq::SendBody::from_reader(body)),
        )
    }

    /// A GET of a binary body, streamed into `out`, with a signed-request header.
    pub fn download<T>(
        &self,
        path: &str,
        auth: &str,
        out: &mut dyn FnMut(&mut dyn std::io::Read) -> Result<T>,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .streaming
            .get(&url)
            .header(HEADER, auth)
            .call()
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(Self::node_error(status, &mut resp));
        }
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        out(&mut reader)
    }
}
