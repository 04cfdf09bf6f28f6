//! A typed JSON API client that respects the server's rate limit.
//!
//! Ports the client half of seed Example 2. The Python `RateLimitedAPIClient`
//! returns `resp.json()` as an untyped dict, turns every failure into a
//! string, and treats a 429 like any other status: it neither waits for
//! `Retry-After` nor slows down, so it keeps hitting a limit it already hit.
//! (Its counters, `self.request_count += 1` from many tasks, are fine: with
//! no `await` inside the statement no other task can run in between, and
//! asyncio is single-threaded. In Rust the tasks run on several threads, so
//! the same counters are atomics.)
//!
//! [`ApiClient`] fixes each of those:
//!
//! - responses deserialize into a [`User`] with serde; the body is read in
//!   chunks and capped ([`ApiClient::with_max_body`], default [`MAX_BODY`])
//!   before it is parsed, whatever `Content-Length` claims: there is no
//!   unbounded `.json()`;
//! - failures are an [`ApiError`] a caller can `match` (status, rate limited,
//!   a `Retry-After` demand too long to honour, timeout, bad JSON,
//!   transport, limiter unavailable), never a panic;
//! - a 429 pushes the shared limiter's schedule back by `Retry-After` (every
//!   caller slows down, not just the one that was refused) and is retried
//!   through the limiter up to `max_429_retries` times;
//! - counters are atomics, read as an [`ApiStats`] snapshot.
//!
//! ## Hostile servers
//!
//! A server is untrusted input. What this client defends against, and how:
//!
//! - **A huge `Retry-After`** (`18446744073709551615`, `999999999`): parsed
//!   by `common::retry_after` with checked arithmetic, clamped to
//!   [`ApiClient::with_max_retry_after`] (default [`DEFAULT_MAX_RETRY_AFTER`]),
//!   and compared with what is left of the call's timeout. A demand that does
//!   not fit gives up at once with [`ApiError::RetryAfterTooLong`], which
//!   names the demand; the client never sleeps past its own limit and no
//!   `Instant + Duration` can overflow.
//! - **A malformed, negative or past `Retry-After`**: malformed and negative
//!   mean absent (wait [`DEFAULT_RETRY_AFTER`]); a past date means now.
//! - **A server that never answers, or answers one byte a second**: the
//!   call's whole budget (`timeout`: every attempt, every `Retry-After` wait
//!   and every wait for a slot after the first) is one deadline.
//! - **An endless or lying body, a gzip bomb**: counted as it streams and
//!   cut at the cap ([`ApiError::BodyTooLarge`]); a `Content-Length` above
//!   the cap is refused before reading. (reqwest here decodes no gzip, so
//!   the cap counts the bytes on the wire.)
//!
//! Limits come from [`crate::rate_limit::Throttle`]: a GCRA limiter for the
//! start rate (in-process, or shared through Redis with
//! [`crate::shared_limit`]) and a semaphore for the in-flight cap.
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

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use common::retry_after::{self, Demand, TooLong};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::fetch::error_chain;
use crate::rate_limit::{Limiter, MAX_PAUSE, RateLimiter, Throttle};

/// The default cap on a response body (1 MiB): ample for a JSON API.
pub const MAX_BODY: usize = 1 << 20;
/// How long to wait after a 429 that has no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The default clamp on a server's `Retry-After` demand.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

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
    /// 429 Too Many Requests, after the retries ran out (or with no
    /// limiter to slow down).
    #[error("rate limited (429), retry after {retry_after:?}")]
    RateLimited {
        /// The server's `Retry-After` as parsed (unclamped); `None` when
        /// absent or malformed.
        retry_after: Option<Duration>,
    },
    /// A 429 whose `Retry-After` (after clamping) is longer than what is
    /// left of the call's timeout: given up at once, without sleeping.
    #[error("rate limited (429): {0}")]
    RetryAfterTooLong(TooLong),
    /// No complete response within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A 2xx whose body is not the JSON we expect.
    #[error("bad JSON: {0}")]
    Decode(String),
    /// The body exceeded the cap ([`ApiClient::with_max_body`]).
    #[error("response body larger than the cap (--max-body)")]
    BodyTooLarge,
    /// Connecting, sending or reading failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The rate limiter could not give a start slot (a shared limiter's
    /// store is unreachable); the request was not sent.
    #[error("rate limiter unavailable: {0}")]
    Limiter(String),
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
pub struct ApiClient<L = RateLimiter> {
    http: reqwest::Client,
    base: reqwest::Url,
    throttle: Throttle<L>,
    timeout: Duration,
    max_429_retries: u32,
    max_body: usize,
    max_retry_after: Duration,
    requests: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    rate_limited: AtomicU64,
}

impl<L: Limiter> ApiClient<L> {
    /// A client for the API at `base` (e.g. `https://api.github.com`).
    /// `timeout` bounds each call as a whole, from its first start:
    /// every attempt, `Retry-After` wait and later slot wait included.
    pub fn new(
        http: reqwest::Client,
        base: reqwest::Url,
        throttle: Throttle<L>,
        timeout: Duration,
        max_429_retries: u32,
    ) -> Self {
        Self {
            http,
            base,
            throttle,
            timeout,
            max_429_retries,
            max_body: MAX_BODY,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            requests: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }

    /// The largest response body read (default [`MAX_BODY`]).
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The clamp on a server's `Retry-After` (default
    /// [`DEFAULT_MAX_RETRY_AFTER`]).
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max.min(MAX_PAUSE);
        self
    }

    /// `GET {base}/users/{login}`.
    pub async fn user(&self, login: &str) -> Result<User, ApiError> {
        self.get(&["users", login], &[]).await
    }

    /// `GET {base}/{segments...}?{query}` decoded as `T`. Segments are
    /// percent-encoded, so a name like `../admin` stays one segment.
    ///
    /// Cancel-safe: dropped at any await, it gives back its permit and
    /// in-flight slot; it is then counted neither as ok nor as an error.
    pub async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        let mut url = self.base.clone();
        match url.path_segments_mut() {
            Ok(mut path) => {
                path.pop_if_empty().extend(segments);
            }
            // A base that cannot be a base (mailto:, data:): a caller bug,
            // reported like any other failed call rather than a panic.
            Err(()) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let base = &self.base;
                return Err(ApiError::Transport(format!("{base} cannot be a base URL")));
            }
        }
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
        // The call's deadline starts at its first start: time spent queued
        // behind the rate limit before that is the limiter's business, not
        // the server's. Checked: a library caller may pass any timeout.
        // OnceLock, not Cell: the future must stay Send.
        let deadline: OnceLock<Instant> = OnceLock::new();
        let start_clock = || {
            *deadline.get_or_init(|| {
                let now = Instant::now();
                now.checked_add(self.timeout.min(MAX_PAUSE)).unwrap_or(now)
            })
        };
        let mut attempt = 0;
        loop {
            let run = self.throttle.try_run(async {
                let at = start_clock();
                self.send(url.clone(), at).await
            });
            let result = match deadline.get().copied() {
                // A retry: waiting for the permit and the slot counts too.
                Some(at) => match tokio::time::timeout_at(at, run).await {
                    Ok(result) => result,
                    Err(_elapsed) => return Err(ApiError::Timeout(self.timeout)),
                },
                None => run.await,
            }
            .map_err(|err| ApiError::Limiter(error_chain(&err)))
            .and_then(|inner| inner);
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
            let remaining = deadline
                .get()
                .map(|at| at.saturating_duration_since(Instant::now()));
            let demand = Demand(retry_after.unwrap_or(DEFAULT_RETRY_AFTER));
            // Clamp, then give up at once if it cannot fit in what is left.
            let wait = demand
                .plan(self.max_retry_after, remaining)
                .map_err(ApiError::RetryAfterTooLong)?;
            tracing::warn!(%url, ?wait, attempt, "429: pausing the limiter, then retrying");
            limiter
                .pause(wait)
                .await
                .map_err(|err| ApiError::Limiter(error_chain(&err)))?;
        }
    }

    /// One request, bounded by the call's `deadline`.
    async fn send<T: DeserializeOwned>(
        &self,
        url: reqwest::Url,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout_at(deadline, self.send_inner(url)).await {
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
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| retry_after::parse_bytes(value.as_bytes(), SystemTime::now()));
            return Err(ApiError::RateLimited { retry_after });
        }
        // A declared length above the cap is refused before reading.
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body as u64)
        {
            return Err(ApiError::BodyTooLarge);
        }
        // Read at most max_body bytes, whatever Content-Length claims.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len().saturating_add(chunk.len()) > self.max_body {
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
    pub fn throttle(&self) -> &Throttle<L> {
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
