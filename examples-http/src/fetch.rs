//! Concurrent fetching: many URLs, at most N in flight, one result per URL.
//!
//! Ports seed Example 1. The Python version builds one task per URL and
//! awaits `asyncio.gather(*tasks)`. Two things go wrong under load:
//!
//! - **Nothing bounds it.** A list of 100,000 URLs opens 100,000 sockets at
//!   once; the remote server (or the local file-descriptor limit) pushes back
//!   with errors that look random.
//! - **One failure loses everything.** `gather` without
//!   `return_exceptions=True` raises the first exception and the other
//!   results are dropped, although their requests completed.
//!
//! Here [`fan_out`] runs any async operation over a list with at most
//! `limit` futures in flight, and returns every output *in input order*;
//! [`fetch_url`] never fails, it returns a [`FetchResult`] whose `outcome`
//! says what happened to that one URL (status, bytes, content type, or the
//! error), so one bad URL is one bad row.
//!
//! tokio and futures primitives: `futures::stream::StreamExt::buffer_unordered`
//! (the bound: it polls at most `limit` futures and pulls the next item only
//! when one finishes, all inside the caller's task, so the futures may borrow
//! the client), and `tokio::time::timeout` (a deadline for the whole request,
//! body included). `buffer_unordered` rather than `buffered`: the ordered
//! variant keeps finished futures waiting behind a slow head, which quietly
//! lowers the real concurrency; we restore input order ourselves at the end.
//!
//! Production: this *is* the production shape for a batch (the
//! `futures` combinators are what crates like `reqwest-middleware` users
//! reach for); for a service, put the bound in a `tower::limit::ConcurrencyLimit`
//! layer instead so every caller shares it.
//!
//! ```text
//! cargo run --bin concurrent-fetch
//! cargo run --release --bin concurrent-fetch -- --count 1000 --delay-ms 100 --concurrency 100 --no-sequential
//! cargo test -p examples-http --test fetch
//! ```

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

/// How many futures [`fan_out`] keeps in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// At most this many at a time.
    Bounded(NonZeroUsize),
    /// All at once: the seed's `gather`. Fine for ten URLs, a liability for
    /// a list of unknown length.
    Unbounded,
}

impl Concurrency {
    /// One at a time: the sequential baseline.
    pub const SEQUENTIAL: Concurrency = Concurrency::Bounded(NonZeroUsize::MIN);

    /// The number of futures allowed in flight for `len` items.
    fn limit(self, len: usize) -> usize {
        match self {
            Concurrency::Bounded(n) => n.get(),
            // buffer_unordered needs a number; "everything" is the item count.
            Concurrency::Unbounded => len.max(1),
        }
    }
}

/// Runs `op` over every item with at most `limit` operations in flight and
/// returns the outputs in the order of `items`.
///
/// The operations run concurrently inside the calling task (no `spawn`), so
/// `op` may borrow from the caller, e.g. a `&reqwest::Client`.
pub async fn fan_out<T, F, Fut>(items: Vec<T>, limit: Concurrency, mut op: F) -> Vec<Fut::Output>
where
    F: FnMut(T) -> Fut,
    Fut: Future,
{
    let len = items.len();
    // Tag each future with its position so the unordered completions can be
    // put back in input order.
    let mut finished: Vec<(usize, Fut::Output)> =
        futures::stream::iter(items.into_iter().enumerate())
            .map(|(index, item)| {
                let fut = op(item);
                async move { (index, fut.await) }
            })
            .buffer_unordered(limit.limit(len))
            .collect()
            .await;
    // Every index appears exactly once, so sorting by it restores the input.
    finished.sort_unstable_by_key(|(index, _)| *index);
    finished.into_iter().map(|(_, output)| output).collect()
}

/// What happened to one URL.
#[derive(Debug, Clone, Serialize)]
pub struct FetchResult {
    /// The URL as given.
    pub url: String,
    /// From sending the request to the end of the body (or the error).
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
    /// The response, or why there was none.
    pub outcome: Result<Fetched, FetchError>,
}

impl FetchResult {
    /// True for a 2xx response whose body was read completely.
    pub fn is_success(&self) -> bool {
        matches!(&self.outcome, Ok(fetched) if (200..300).contains(&fetched.status))
    }
}

/// A response that arrived, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    /// HTTP status code.
    pub status: u16,
    /// Body length actually received (counted, never buffered).
    pub bytes: u64,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
}

/// Why a URL has no complete response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum FetchError {
    /// The whole request (headers and body) took longer than the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting or sending failed (refused, DNS, TLS, reset).
    #[error("request failed: {0}")]
    Request(String),
    /// The headers arrived but the body broke off.
    #[error("body failed after {bytes} bytes: {message}")]
    Body {
        /// Bytes received before the failure.
        bytes: u64,
        /// The transport's error chain.
        message: String,
    },
}

/// GETs one URL with a deadline; never returns `Err`, the error is in the
/// result so a batch can report it beside the successes.
pub async fn fetch_url(client: &reqwest::Client, url: &str, timeout: Duration) -> FetchResult {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, get(client, url)).await {
        Ok(outcome) => outcome,
        // The deadline covers the body too: a server that sends headers and
        // then trickles bytes is caught as well.
        Err(_elapsed) => Err(FetchError::Timeout(timeout)),
    };
    FetchResult {
        url: url.to_owned(),
        elapsed: started.elapsed(),
        outcome,
    }
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Fetched, FetchError> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|err| FetchError::Request(error_chain(&err)))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // Count the body chunk by chunk: memory stays at one chunk whatever the
    // size (the seed's `await response.text()` holds the whole page).
    let mut bytes = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes += chunk.len() as u64,
            Ok(None) => break,
            Err(err) => {
                return Err(FetchError::Body {
                    bytes,
                    message: error_chain(&err),
                });
            }
        }
    }
    Ok(Fetched {
        status,
        bytes,
        content_type,
    })
}

/// `err: cause: cause`, like `{:#}` on an anyhow error: reqwest's own
/// Display stops at "error sending request", which hides the reason.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Checks that `input` is an absolute http(s) URL, with a message fit for a
/// one-line usage error.
pub fn parse_http_url(input: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(input).map_err(|err| format!("invalid URL {input:?}: {err}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(format!("invalid URL {input:?}: no host")),
        other => Err(format!(
            "invalid URL {input:?}: scheme {other:?} is not http or https"
        )),
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}
