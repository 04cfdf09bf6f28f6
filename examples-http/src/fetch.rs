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
//! [`fan_out_until`] does the same but stops early when a stop future
//! resolves (Ctrl-C), keeping the outputs that finished. [`fetch_url`] never
//! fails, it returns a [`FetchResult`] whose `outcome` says what happened
//! to that one URL (status, bytes, content type, or the error), so one bad
//! URL is one bad row.
//!
//! tokio and futures primitives: `futures::stream::StreamExt::buffer_unordered`
//! (the bound: it polls at most `limit` futures and pulls the next item only
//! when one finishes, all inside the caller's task, so the futures may borrow
//! the client), `tokio::select!` (the early stop) and `tokio::time::timeout`
//! (a deadline for the whole request, body included). `buffer_unordered`
//! rather than `buffered`: the ordered variant keeps finished futures
//! waiting behind a slow head, which quietly lowers the real concurrency; we
//! restore input order ourselves at the end.
//!
//! A panic in `op` propagates out of [`fan_out`] to its caller, as a panic
//! in a `gather`ed coroutine would: the operations run inside the caller's
//! task, and `fan_out` keeps no state between calls, so the next call works
//! as before.
//!
//! ## Hostile servers
//!
//! A server is untrusted input; [`fetch_url`] holds against every mode of
//! the sandbox's hostile catalogue (`common::sandbox::HOSTILE_MODES`, tested
//! one by one in `tests/fetch.rs`):
//!
//! - **Slow or silent** (`hang`, `slow-body`, `short-body-hang`): one
//!   deadline, [`Limits::timeout`], covers connecting, the headers *and*
//!   the body, so a server that trickles one byte a second is cut at the
//!   deadline like one that never answers ([`FetchError::Timeout`]).
//! - **Endless or huge bodies** (`endless-chunked`, `endless-length`): the
//!   body is counted chunk by chunk, never buffered, and stops at
//!   [`Limits::max_body`] ([`FetchError::TooLarge`]); a `Content-Length`
//!   over the cap is refused before a byte of body is read. Memory is one
//!   chunk per request in flight.
//! - **Broken framing** (`garbage-status`, `close-mid-headers`,
//!   `huge-headers`, `endless-headers`): hyper rejects the response head
//!   (its header buffer is bounded) and the row says why
//!   ([`FetchError::Request`] with the whole error chain).
//! - **A body shorter than its Content-Length** (`short-body-close`):
//!   [`FetchError::Body`] with the bytes received.
//! - **Redirect loops**: reqwest's default policy stops after 10 hops
//!   ([`FetchError::Request`], "too many redirects").
//! - **Gzip bombs**: this client has no decompression, so a gzip body is
//!   counted as the compressed bytes on the wire; nothing inflates.
//! - **Any status** (`retry-after-*` 429/503 with hostile `Retry-After`
//!   values): a fetch does not retry, so the header is never turned into a
//!   sleep; the row shows the status and [`FetchResult::is_success`] is
//!   false. (Retrying is `rate-limited-client`'s and `backoff-retry`'s job.)
//! - **What HTTP/1.1 cannot detect** (`no-length-cut`): a body with neither
//!   Content-Length nor chunking ends at the close, so a cut looks complete.
//!   A fetch that needs integrity must check a digest (see
//!   `streaming-download --sha256`).
//!
//! Production: this *is* the production shape for a batch (the
//! `futures` combinators are what crates like `reqwest-middleware` users
//! reach for); for a service, put the bound in a `tower::limit::ConcurrencyLimit`
//! layer instead so every caller shares it.
//!
//! ```text
//! cargo run --bin concurrent-fetch
//! cargo run --bin concurrent-fetch -- --demo-failures
//! cargo run --release --bin concurrent-fetch -- --count 1000 --delay 100ms --concurrency 100 --no-sequential
//! cargo test -p examples-http --test fetch
//! ```

use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::pin;
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
pub async fn fan_out<T, F, Fut>(items: Vec<T>, limit: Concurrency, op: F) -> Vec<Fut::Output>
where
    F: FnMut(T) -> Fut,
    Fut: Future,
{
    // Never stopped, so every slot is filled.
    fan_out_until(items, limit, std::future::pending(), op)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// [`fan_out`] that stops early when `stop` resolves: the operations in
/// flight are dropped (cancelled) and the rest never start. Returns one
/// slot per item, in input order: `Some(output)` for the operations that
/// finished, `None` for those cancelled or never started.
pub async fn fan_out_until<T, F, Fut, S>(
    items: Vec<T>,
    limit: Concurrency,
    stop: S,
    mut op: F,
) -> Vec<Option<Fut::Output>>
where
    F: FnMut(T) -> Fut,
    Fut: Future,
    S: Future<Output = ()>,
{
    let len = items.len();
    let mut outputs: Vec<Option<Fut::Output>> = std::iter::repeat_with(|| None).take(len).collect();
    // Tag each future with its position so the unordered completions land
    // in their input slot.
    let mut running = futures::stream::iter(items.into_iter().enumerate())
        .map(|(index, item)| {
            let fut = op(item);
            async move { (index, fut.await) }
        })
        .buffer_unordered(limit.limit(len));
    let mut stop = pin!(stop);
    loop {
        tokio::select! {
            // A stop that is due wins over completions that are also ready.
            biased;
            () = &mut stop => break,
            next = running.next() => match next {
                Some((index, output)) => outputs[index] = Some(output),
                None => break,
            },
        }
    }
    outputs
}

/// The bounds every fetch runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One deadline for the whole request: connect, headers and body.
    pub timeout: Duration,
    /// The most body bytes read; a longer body (or a Content-Length above
    /// it) is [`FetchError::TooLarge`].
    pub max_body: u64,
}

impl Limits {
    /// A deadline and a body cap.
    pub fn new(timeout: Duration, max_body: u64) -> Self {
        Self { timeout, max_body }
    }
}

impl Default for Limits {
    /// 5 s and [`DEFAULT_MAX_BODY`].
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// The default body cap: 16 MiB, far above a web page or a JSON answer.
pub const DEFAULT_MAX_BODY: u64 = 16 << 20;

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

/// One table row: `status bytes ms content-type url`, and the error on a
/// second line when there is one. [`ROW_HEADER`] names the columns.
impl fmt::Display for FetchResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.elapsed.as_secs_f64() * 1e3;
        match &self.outcome {
            Ok(done) => {
                let kind = done.content_type.as_deref().unwrap_or("-");
                write!(
                    f,
                    "{:>6}  {:>9}  {ms:>9.1}  {kind:<24}  {}",
                    done.status, done.bytes, self.url
                )
            }
            Err(err) => write!(
                f,
                "{:>6}  {:>9}  {ms:>9.1}  {:<24}  {}\n        error: {err}",
                "-", "-", "-", self.url
            ),
        }
    }
}

/// The column names of a [`FetchResult`] row.
pub const ROW_HEADER: &str = "status      bytes         ms  content type              url";

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
    /// Connecting, sending or reading the response head failed (refused,
    /// DNS, TLS, reset, not HTTP, headers too large, too many redirects).
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
    /// The body is longer than [`Limits::max_body`].
    #[error("{}", too_large(*.limit, *.announced, *.received))]
    TooLarge {
        /// The cap.
        limit: u64,
        /// The Content-Length, if the server announced one.
        announced: Option<u64>,
        /// Bytes read before giving up (0 when the announcement was enough).
        received: u64,
    },
}

fn too_large(limit: u64, announced: Option<u64>, received: u64) -> String {
    match announced {
        Some(length) if length > limit => {
            format!("body of {length} bytes (Content-Length) exceeds the {limit}-byte cap")
        }
        _ => format!("body exceeds the {limit}-byte cap (stopped after {received} bytes)"),
    }
}

/// GETs one URL within `limits`; never returns `Err`, the error is in the
/// result so a batch can report it beside the successes.
pub async fn fetch_url(client: &reqwest::Client, url: &str, limits: Limits) -> FetchResult {
    let started = Instant::now();
    let outcome =
        match tokio::time::timeout(limits.timeout, get(client, url, limits.max_body)).await {
            Ok(outcome) => outcome,
            // The deadline covers the body too: a server that sends headers and
            // then trickles bytes is caught as well.
            Err(_elapsed) => Err(FetchError::Timeout(limits.timeout)),
        };
    FetchResult {
        url: url.to_owned(),
        elapsed: started.elapsed(),
        outcome,
    }
}

async fn get(client: &reqwest::Client, url: &str, max_body: u64) -> Result<Fetched, FetchError> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|err| FetchError::Request(error_chain(&err)))?;
    let status = response.status().as_u16();
    let announced = response.content_length();
    if announced.is_some_and(|length| length > max_body) {
        return Err(FetchError::TooLarge {
            limit: max_body,
            announced,
            received: 0,
        });
    }
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
            Ok(Some(chunk)) => {
                bytes = bytes.saturating_add(chunk.len() as u64);
                if bytes > max_body {
                    return Err(FetchError::TooLarge {
                        limit: max_body,
                        announced,
                        received: bytes,
                    });
                }
            }
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

/// [`parse_url_list`] of a file's contents; the error names the path.
pub fn read_url_file(path: &std::path::Path) -> Result<Vec<String>, String> {
    std::fs::read_to_string(path)
        .map_err(|err| err.to_string())
        .and_then(|text| parse_url_list(&text))
        .map_err(|err| format!("{}: {err}", path.display()))
}

/// The URLs of a list file: one a line, blank lines and `#` comments
/// skipped, each checked with [`parse_http_url`]. A list with no URL is an
/// error, not an empty batch that would silently succeed.
pub fn parse_url_list(text: &str) -> Result<Vec<String>, String> {
    let urls: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_http_url(line).map(|_| line.to_owned()))
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err("no URL in the list".to_owned());
    }
    Ok(urls)
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}
