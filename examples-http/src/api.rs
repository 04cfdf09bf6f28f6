//! A typed JSON API client that respects the server's rate limit.
//!
//! Ports the client half of seed Example 2. The Python `RateLimitedAPIClient`
//! returns `resp.json()` as an untyped dict, turns every failure into a
//! string, counts a request and an error from many tasks with unguarded
//! `+= 1`, and treats a 429 like any other status: it neither waits for
//! `Retry-After` nor slows down, so it keeps hitting a limit it already hit.
//!
//! [`ApiClient`] fixes each of those:
//!
//! - responses deserialize into a [`User`] with serde; the body is capped at
//!   [`MAX_BODY`] before it is parsed (the network is untrusted);
//! - failures are an [`ApiError`] a caller can `match` (status, rate limited,
//!   timeout, bad JSON, transport), never a panic;
//! - a 429 pushes the shared limiter's schedule back by `Retry-After` (every
//!   caller slows down, not just the one that was refused) and is retried
//!   through the limiter up to `max_429_retries` times;
//! - counters are atomics, read as an [`ApiStats`] snapshot.
//!
//! Limits come from [`crate::rate_limit::Throttle`]: a GCRA limiter for the
//! start rate and a semaphore for the in-flight cap.
//!
//! Production: the same shape with `reqwest-middleware` + `reqwest-retry`
//! (which honours `Retry-After`), or a `tower` stack (`RateLimit`,
//! `ConcurrencyLimit`, `Retry`) around a hyper client.
//!
//! ```text
//! cargo run --bin rate-limited-client
//! cargo run --bin rate-limited-client -- --no-limit     # the same run without a limiter: 429s
//! cargo test -p examples-http --test api
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::fetch::error_chain;
use crate::rate_limit::Throttle;

/// The largest response body the client will read (1 MiB).
pub const MAX_BODY: usize = 1 << 20;
/// How long to wait after a 429 that has no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The fields of a GitHub user that the example prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The login (user name).
    pub login: String,
    /// Numeric id.
    pub id: u64,
    /// Display name; users may not set one.
    pub name: Option<String>,
    /// Number of public repositories.
    pub public_repos: u64,
    /// Followers count.
    pub followers: u64,
}

/// Why a call returned no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A non-2xx status other than 429.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status code.
        status: u16,
        /// The API's `message` field, or the start of the body.
        message: String,
    },
    /// 429 Too Many Requests, after the retries ran out.
    #[error("rate limited (429), retry after {retry_after:?}")]
    RateLimited {
        /// The server's `Retry-After`, when it sent one in seconds.
        retry_after: Option<Duration>,
    },
    /// No complete response within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A 2xx whose body is not the JSON we expect.
    #[error("bad JSON: {0}")]
    Decode(String),
    /// The body exceeded [`MAX_BODY`].
    #[error("response body larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    /// Connecting, sending or reading failed.
    #[error("transport: {0}")]
    Transport(String),
}

/// Counters since the client was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ApiStats {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Calls that returned a value.
    pub ok: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// 429 responses received (each one slowed the limiter, if any).
    pub rate_limited: u64,
    /// Most requests in flight at once.
    pub peak_in_flight: u64,
}

/// A JSON API client with a start-rate limit, an in-flight cap, typed
/// results and `Retry-After` handling. Share it (`Arc`) between tasks.
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: reqwest::Url,
    throttle: Throttle,
    timeout: Duration,
    max_429_retries: u32,
    requests: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    rate_limited: AtomicU64,
}

impl ApiClient {
    /// A client for the API at `base` (e.g. `https://api.github.com`).
    pub fn new(
        http: reqwest::Client,
        base: reqwest::Url,
        throttle: Throttle,
        timeout: Duration,
        max_429_retries: u32,
    ) -> Self {
        Self {
            http,
            base,
            throttle,
            timeout,
            max_429_retries,
            requests: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }

    /// `GET {base}/users/{login}`.
    pub async fn user(&self, login: &str) -> Result<User, ApiError> {
        self.get(&["users", login], &[]).await
    }

    /// `GET {base}/{segments...}?{query}` decoded as `T`. Segments are
    /// percent-encoded, so a name like `../admin` stays one segment.
    pub async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        let mut url = self.base.clone();
        // Only a URL that cannot be a base (mailto:, data:) has no path
        // segments; the caller checked the base is http(s).
        url.path_segments_mut()
            .expect("an http(s) base URL has path segments")
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let result = self.get_with_retries(url).await;
        let counter = if result.is_ok() {
            &self.ok
        } else {
            &self.errors
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn get_with_retries<T: DeserializeOwned>(
        &self,
        url: reqwest::Url,
    ) -> Result<T, ApiError> {
        let mut attempt = 0;
        loop {
            let result = self.throttle.run(self.send(url.clone())).await;
            let Err(ApiError::RateLimited { retry_after }) = &result else {
                return result;
            };
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
            // Without a limiter there is nothing to slow down, and retrying
            // at full speed would only earn more 429s: report it.
            let Some(limiter) = self.throttle.limiter() else {
                return result;
            };
            if attempt >= self.max_429_retries {
                return result;
            }
            attempt += 1;
            let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
            tracing::warn!(%url, ?wait, attempt, "429: pausing the limiter, then retrying");
            limiter.pause_until(Instant::now() + wait);
        }
    }

    async fn send<T: DeserializeOwned>(&self, url: reqwest::Url) -> Result<T, ApiError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, self.send_inner(url)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(ApiError::Timeout(self.timeout)),
        }
    }

    async fn send_inner<T: DeserializeOwned>(&self, url: reqwest::Url) -> Result<T, ApiError> {
        let transport = |err: reqwest::Error| ApiError::Transport(error_chain(&err));
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ApiError::RateLimited {
                retry_after: retry_after(response.headers()),
            });
        }
        // Read at most MAX_BODY bytes, whatever Content-Length claims.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ApiError::BodyTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(ApiError::Status {
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|err| ApiError::Decode(err.to_string()))
    }

    /// The throttle (limits, start times, peak in flight).
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ApiStats {
        ApiStats {
            requests: self.requests.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            peak_in_flight: self.throttle.peak_in_flight() as u64,
        }
    }
}

/// `Retry-After` in its delay-seconds form. The HTTP-date form is rare on
/// APIs and would need a date parser; it falls back to the default wait.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The `message` of a JSON error body, or the first 200 characters of it.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.message,
        Err(_) => String::from_utf8_lossy(body).chars().take(200).collect(),
    }
}
