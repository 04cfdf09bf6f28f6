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

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;

use crate::retry::Decision;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The server answered with a non-success status.
    #[error("HTTP {status}")]
    Status {
        /// The status code.
        status: StatusCode,
        /// `Retry-After` in delta-seconds form, if sent (the HTTP-date form
        /// is not parsed and falls back to our own backoff).
        retry_after: Option<Duration>,
    },
    /// The request (or reading the body) took longer than the client timeout.
    #[error("timed out")]
    Timeout(#[source] reqwest::Error),
    /// No connection, or it broke before a full answer.
    #[error("connection failed")]
    Connect(#[source] reqwest::Error),
    /// Anything else: a malformed URL, an undecodable body. Retrying the
    /// same request would fail the same way.
    #[error("request failed")]
    Other(#[source] reqwest::Error),
}

impl From<reqwest::Error> for HttpError {
    fn from(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            HttpError::Timeout(err)
        } else if err.is_connect() || (err.is_body() && !err.is_decode()) || err.is_request() {
            // is_request covers a connection reset while sending.
            HttpError::Connect(err)
        } else {
            HttpError::Other(err)
        }
    }
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
            HttpError::Other(_) => Decision::Stop,
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
            HttpError::Other(_) => false,
        }
    }
}

/// GETs `url` and returns its JSON body, or a classified error.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Result<serde_json::Value, HttpError> {
    let response = client.get(url).send().await?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(HttpError::Status {
            status,
            retry_after,
        });
    }
    Ok(response.json().await?)
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
        get_json(client, &format!("{base}/health"))
            .await
            .with_context(|| format!("cannot reach {base}/health"))?;
        Ok(Self {
            base,
            sandbox: None,
        })
    }
}
