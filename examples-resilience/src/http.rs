//! The operation both demos wrap: one HTTP GET, with errors a policy can
//! classify.
//!
//! Retry and circuit breaking are only as good as the error taxonomy under
//! them. `reqwest` does not turn 4xx/5xx into errors by itself, and a bare
//! `reqwest::Error` mixes "the server is down" with "the URL is malformed".
//! [`HttpError`] splits them so that each policy can ask the question it
//! cares about:
//!
//! - the retry loop: *will the same request succeed later?*
//!   ([`HttpError::retry_decision`]): timeouts, connection failures, 408,
//!   429, 500, 502, 503, 504 yes (`Retry-After` honoured); other 4xx, 501,
//!   a malformed body or a bad URL, no;
//! - the breaker: *is the server unhealthy?* ([`HttpError::is_server_fault`]):
//!   a 404 is the caller's problem and must not open the circuit.
//!
//! Retrying is only safe for idempotent requests; both demos send GETs.
//!
//! Hostile servers (issue 14) this module defends against, and how:
//!
//! - **A huge or malformed `Retry-After`** (`18446744073709551615`,
//!   `999999999`, `-1`, garbage, a past HTTP-date): parsed by
//!   [`common::retry_after::parse_bytes`] with checked arithmetic (both
//!   forms; malformed means absent, a past date means zero); the retry
//!   loop then clamps it and gives up at once if it is longer than the
//!   deadline leaves ([`GiveUp::RetryAfterTooLong`](crate::retry::GiveUp)).
//! - **An endless or enormous body** (chunked or with a length, a gzip
//!   bomb: the client does not decompress): the body is read chunk by chunk
//!   and counted; past `max_body` bytes (or a `Content-Length` above it)
//!   the request fails with [`HttpError::TooLarge`] before buffering more.
//! - **A server that hangs or trickles** (no answer, 1 byte/s): the
//!   client's total timeout covers connect, headers *and* body, and the
//!   retry loop's deadline cuts the attempt around it.
//! - **Garbage instead of HTTP, a close mid-headers**: reqwest reports them
//!   as connection errors, retried like any broken connection.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;

use crate::retry::Decision;

/// The default response-body cap (`--max-body`): 4 MiB, generous for the
/// JSON these demos read, small enough that a hostile body cannot matter.
pub const DEFAULT_MAX_BODY: u64 = 4 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server answered with a non-success status.
    #[error("HTTP {status}")]
    Status {
        /// The status code.
        status: StatusCode,
        /// `Retry-After`, if sent and well-formed (either form), as the
        /// server's raw demand: the retry loop clamps it.
        retry_after: Option<Duration>,
    },
    /// The request (or reading the body) took longer than the client timeout.
    #[error("timed out")]
    Timeout(#[source] reqwest::Error),
    /// No connection, or it broke before a full answer.
    #[error("connection failed")]
    Connect(#[source] reqwest::Error),
    /// The body is longer than the cap (announced or counted): reading
    /// stopped there, nothing more was buffered.
    #[error("response body larger than the {limit}-byte limit (--max-body)")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// The body is not the JSON we expected. Retrying the same request
    /// would fail the same way.
    #[error("malformed JSON body")]
    Json(#[source] serde_json::Error),
    /// Anything else: a malformed URL, an undecodable body. Retrying the
    /// same request would fail the same way.
    #[error("request failed")]
    Other(#[source] reqwest::Error),
}

impl From<reqwest::Error> for HttpError {
    fn from(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            HttpError::Timeout(err)
        } else if err.is_connect() || cut_short(&err) || err.is_request() {
            // is_request covers a connection reset while sending.
            HttpError::Connect(err)
        } else {
            HttpError::Other(err)
        }
    }
}

/// The connection failed while the body was being read (reset, or closed
/// before `Content-Length` bytes). `Response::chunk` reports that as a
/// decode error whose source is the body error, so both shapes count; a
/// decode error of any other origin (a corrupt encoding) does not.
fn cut_short(err: &reqwest::Error) -> bool {
    let source = std::error::Error::source(err).and_then(|s| s.downcast_ref::<reqwest::Error>());
    err.is_body() || source.is_some_and(reqwest::Error::is_body)
}

impl HttpError {
    /// The retry classifier: is this failure worth another attempt?
    pub fn retry_decision(&self) -> Decision {
        match self {
            HttpError::Timeout(_) | HttpError::Connect(_) => Decision::Retry,
            HttpError::Status {
                status,
                retry_after,
            } => match *status {
                StatusCode::REQUEST_TIMEOUT
                | StatusCode::TOO_MANY_REQUESTS
                | StatusCode::INTERNAL_SERVER_ERROR
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT => match retry_after {
                    Some(after) => Decision::RetryAfter(*after),
                    None => Decision::Retry,
                },
                // Other 4xx are the request's fault; 501 and 505 are
                // permanent answers from a healthy server.
                _ => Decision::Stop,
            },
            // The same request gets the same oversized or malformed body.
            HttpError::TooLarge { .. } | HttpError::Json(_) | HttpError::Other(_) => Decision::Stop,
        }
    }

    /// The breaker classifier: does this failure say the server is unwell?
    /// 429 counts: a server shedding load wants less traffic, which is
    /// exactly what an open circuit gives it.
    pub fn is_server_fault(&self) -> bool {
        match self {
            HttpError::Timeout(_) | HttpError::Connect(_) => true,
            HttpError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            // An endless body or garbage where JSON was promised: the
            // server is broken, and calling it less is the right answer.
            HttpError::TooLarge { .. } | HttpError::Json(_) => true,
            HttpError::Other(_) => false,
        }
    }
}

/// GETs `url` and returns its JSON body (at most `max_body` bytes), or a
/// classified error.
pub async fn get_json(
    client: &reqwest::Client,
    url: &str,
    max_body: u64,
) -> Result<serde_json::Value, HttpError> {
    let mut response = client.get(url).send().await?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| common::retry_after::parse_bytes(v.as_bytes(), SystemTime::now()));
        return Err(HttpError::Status {
            status,
            retry_after,
        });
    }
    // A length above the cap fails before a byte of the body is read.
    if response.content_length().is_some_and(|len| len > max_body) {
        return Err(HttpError::TooLarge { limit: max_body });
    }
    // Chunk by chunk, counted: `response.json()` would buffer an endless
    // body until memory runs out (1.8 GB in the run).
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if (body.len() as u64).saturating_add(chunk.len() as u64) > max_body {
            return Err(HttpError::TooLarge { limit: max_body });
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(HttpError::Json)
}

/// Builds the demos' client: a per-request timeout so a hung server
/// becomes a [`HttpError::Timeout`] instead of a stuck caller.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    common::init_crypto();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| anyhow::anyhow!(e).context("cannot build the HTTP client"))
}

/// Where a demo sends its requests: the in-process sandbox (the default),
/// or a sandbox-compatible server given with `--url`.
#[derive(Debug)]
pub struct Target {
    /// `http://host:port` without a trailing slash.
    pub base: String,
    /// The sandbox we started, if we started one (kept alive, and for its stats).
    pub sandbox: Option<common::Sandbox>,
}

impl Target {
    /// Starts the sandbox on 127.0.0.1:0, or checks that `url` answers
    /// `/health`, so a typo fails in one line before the demo starts.
    pub async fn start(url: Option<&str>, client: &reqwest::Client) -> anyhow::Result<Self> {
        use anyhow::Context;
        let Some(url) = url else {
            let sandbox = common::Sandbox::start(common::SandboxConfig::default())
                .await
                .context("cannot start the sandbox")?;
            return Ok(Self {
                base: sandbox.url(""),
                sandbox: Some(sandbox),
            });
        };
        let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid --url {url:?}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            anyhow::bail!("invalid --url {url:?}: expected http://host[:port]");
        }
        let base = url.trim_end_matches('/').to_owned();
        get_json(client, &format!("{base}/health"), DEFAULT_MAX_BODY)
            .await
            .with_context(|| format!("cannot reach {base}/health"))?;
        Ok(Self {
            base,
            sandbox: None,
        })
    }
}
