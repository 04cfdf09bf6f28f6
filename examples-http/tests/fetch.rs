//! Behaviour of the bounded fan-out (paused clock, fake fetch) and of
//! `fetch_url` against the loopback sandbox (real time), including every
//! mode of the sandbox's hostile catalogue.
//!
//! Equivalent mutants (cargo mutants on `src/fetch.rs`):
//! - `parse_http_url`'s `url.host().is_some()` guard replaced with `true`:
//!   the url crate already rejects an http(s) URL without a host
//!   ("empty host"), so the guard is a belt-and-braces check.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::sandbox::HOSTILE_MODES;
use common::testing::cancel_at_every_await;
use common::{Sandbox, SandboxConfig};
use examples_http::fetch::{
    Concurrency, FetchError, FetchResult, Limits, fan_out, fan_out_until, fetch_url,
    parse_http_url, parse_url_list,
};
use futures::FutureExt;
use tokio::time::Instant;

fn limits(timeout: Duration) -> Limits {
    Limits::new(timeout, 16 << 20)
}

const D: Duration = Duration::from_millis(100);

fn bounded(n: usize) -> Concurrency {
    Concurrency::Bounded(NonZeroUsize::new(n).unwrap())
}

/// Runs `n` fake fetches that each sleep `D`; returns (wall time, peak in flight, outputs).
async fn fake_batch(n: usize, limit: Concurrency) -> (Duration, usize, Vec<usize>) {
    let in_flight = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let started = Instant::now();
    let outputs = fan_out((0..n).collect(), limit, |i| {
        let (in_flight, peak) = (&in_flight, &peak);
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(D).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            i
        }
    })
    .await;
    (started.elapsed(), peak.load(Ordering::SeqCst), outputs)
}

#[tokio::test(start_paused = true)]
async fn sequential_takes_n_times_the_latency() {
    let (elapsed, peak, _) = fake_batch(7, Concurrency::SEQUENTIAL).await;
    assert_eq!(elapsed, D * 7);
    assert_eq!(peak, 1);
}

#[tokio::test(start_paused = true)]
async fn bounded_takes_ceil_n_over_c_waves_and_never_exceeds_c() {
    for (n, c) in [(10, 3), (12, 4), (5, 16), (1, 1)] {
        let (elapsed, peak, outputs) = fake_batch(n, bounded(c)).await;
        assert_eq!(elapsed, D * n.div_ceil(c) as u32, "n={n} c={c}");
        assert_eq!(peak, c.min(n), "n={n} c={c}");
        assert_eq!(outputs, (0..n).collect::<Vec<_>>());
    }
}

#[tokio::test(start_paused = true)]
async fn unbounded_starts_everything_at_once() {
    let (elapsed, peak, _) = fake_batch(50, Concurrency::Unbounded).await;
    assert_eq!(elapsed, D);
    assert_eq!(peak, 50);
}

#[tokio::test(start_paused = true)]
async fn results_come_back_in_input_order_whatever_the_completion_order() {
    // Item i takes (5 - i) * 10 ms: the last finishes first.
    let outputs = fan_out((0..5u64).collect(), bounded(5), |i| async move {
        tokio::time::sleep(Duration::from_millis((5 - i) * 10)).await;
        i * 100
    })
    .await;
    assert_eq!(outputs, vec![0, 100, 200, 300, 400]);
}

#[tokio::test(start_paused = true)]
async fn empty_input_gives_empty_output() {
    let outputs: Vec<u8> = fan_out(
        Vec::<u8>::new(),
        Concurrency::Unbounded,
        |x| async move { x },
    )
    .await;
    assert!(outputs.is_empty());
}

#[tokio::test]
async fn against_the_sandbox_concurrency_achieves_at_least_a_third_of_the_ideal_speedup() {
    common::init_crypto();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = reqwest::Client::new();
    let urls = vec![sandbox.url("/delay/100"); 20];
    let timeout = Duration::from_secs(30);
    let fetch = |url: String| {
        let client = &client;
        async move { fetch_url(client, &url, limits(timeout)).await }
    };
    let started = Instant::now();
    let sequential = fan_out(urls.clone(), Concurrency::SEQUENTIAL, fetch).await;
    let sequential_time = started.elapsed();
    let started = Instant::now();
    let concurrent = fan_out(urls, bounded(10), fetch).await;
    let concurrent_time = started.elapsed();

    assert!(sequential.iter().chain(&concurrent).all(|r| r.is_success()));
    let speedup = sequential_time.as_secs_f64() / concurrent_time.as_secs_f64();
    // Ideal: 20 sequential latencies vs 2 waves = 10x; accept a third of it
    // (the concurrent phase is 200 ms, and a loaded machine adds its own
    // delays to it; the exact limits are tested on the paused clock above).
    assert!(
        speedup >= 10.0 / 3.0,
        "speedup {speedup:.2} (seq {sequential_time:?}, conc {concurrent_time:?})"
    );
}

#[tokio::test]
async fn a_failing_url_is_reported_while_the_rest_succeed() {
    common::init_crypto();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = reqwest::Client::new();
    // A port that was free a moment ago: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let urls = vec![
        sandbox.url("/delay/10"),
        format!("http://{closed}/nothing"),
        sandbox.url("/status/500"),
        sandbox.url("/bytes/100000?fail_after=1000"),
        sandbox.url("/bytes/1234"),
    ];
    let results = fan_out(urls, bounded(4), |url| {
        let client = &client;
        async move { fetch_url(client, &url, limits(Duration::from_secs(30))).await }
    })
    .await;
    assert!(results[0].is_success());
    assert!(
        matches!(results[1].outcome, Err(FetchError::Request(_))),
        "{:?}",
        results[1]
    );
    let five_hundred = results[2].outcome.as_ref().unwrap();
    assert_eq!(five_hundred.status, 500);
    assert!(!results[2].is_success());
    assert!(
        matches!(
            results[3].outcome,
            Err(FetchError::Body { bytes: 1000, .. })
        ),
        "{:?}",
        results[3]
    );
    let bytes = results[4].outcome.as_ref().unwrap();
    assert_eq!((bytes.status, bytes.bytes), (200, 1234));
    assert_eq!(
        bytes.content_type.as_deref(),
        Some("application/octet-stream")
    );
}

#[tokio::test]
async fn a_slow_url_times_out_with_a_typed_error() {
    common::init_crypto();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = reqwest::Client::new();
    let result = fetch_url(
        &client,
        &sandbox.url("/delay/5000"),
        limits(Duration::from_millis(200)),
    )
    .await;
    assert_eq!(
        result.outcome,
        Err(FetchError::Timeout(Duration::from_millis(200)))
    );
}

#[test]
fn malformed_urls_are_rejected_with_one_clear_line() {
    for bad in [
        "not a url",
        "ftp://example.com/x",
        "http://",
        "example.com/path",
    ] {
        let message = parse_http_url(bad).unwrap_err();
        assert!(message.starts_with("invalid URL"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
    assert!(parse_http_url("https://example.com/a?b=c").is_ok());
}

#[test]
fn url_lists_skip_comments_and_reject_empty_or_malformed_lists() {
    let text = "# targets\n\n  https://example.com/a  \nhttp://127.0.0.1:1/b\n";
    assert_eq!(
        parse_url_list(text).unwrap(),
        ["https://example.com/a", "http://127.0.0.1:1/b"]
    );
    assert_eq!(parse_url_list("").unwrap_err(), "no URL in the list");
    assert_eq!(
        parse_url_list("# only\n\n").unwrap_err(),
        "no URL in the list"
    );
    let bad = parse_url_list("https://example.com\nnot a url\n").unwrap_err();
    assert!(bad.starts_with("invalid URL \"not a url\""), "{bad}");
}

#[tokio::test(start_paused = true)]
async fn fan_out_until_keeps_what_finished_before_the_stop() {
    // Item i takes (i + 1) * 100 ms; two at a time; stop at 250 ms.
    let stop = tokio::time::sleep(Duration::from_millis(250));
    let started = AtomicUsize::new(0);
    let slots = fan_out_until((0..6u64).collect(), bounded(2), stop, |i| {
        started.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis((i + 1) * 100)).await;
            i
        }
    })
    .await;
    // 0 ends at 100 ms and 2 starts; 1 ends at 200 ms and 3 starts; at
    // 250 ms 2 (ends 400) and 3 (ends 600) are cancelled, 4 and 5 never start.
    assert_eq!(slots, [Some(0), Some(1), None, None, None, None]);
    assert_eq!(started.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_stop_that_is_due_wins_over_ready_completions() {
    let slots = fan_out_until(vec![1, 2], bounded(2), async {}, |x| async move { x }).await;
    assert_eq!(slots, [None, None]);
    let never = std::future::pending::<()>();
    let slots = fan_out_until(vec![1, 2], bounded(2), never, |x| async move { x }).await;
    assert_eq!(slots, [Some(1), Some(2)]);
}

/// Counts operations alive (started and not yet dropped).
struct Alive<'a>(&'a AtomicUsize);

impl<'a> Alive<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn fan_out_dropped_at_every_await_leaves_no_operation_behind() {
    let alive = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let polls = cancel_at_every_await(
        |_| {
            let (alive, finished) = (&alive, &finished);
            fan_out((0..5u64).collect(), bounded(2), move |i| async move {
                let _alive = Alive::new(alive);
                tokio::time::sleep(Duration::from_millis(10 * (i + 1))).await;
                finished.fetch_add(1, Ordering::SeqCst);
                i
            })
        },
        async |_| assert_eq!(alive.load(Ordering::SeqCst), 0),
    )
    .await;
    assert!(polls > 1);
}

#[tokio::test]
async fn fetch_url_dropped_at_every_await_leaves_the_client_usable() {
    common::init_crypto();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = reqwest::Client::new();
    let url = sandbox.url("/bytes/300000?chunk_size=16384");
    let health = sandbox.url("/health");
    let polls = cancel_at_every_await(
        |_| fetch_url(&client, &url, limits(Duration::from_secs(10))),
        async |n| {
            let after = fetch_url(&client, &health, limits(Duration::from_secs(10))).await;
            assert!(after.is_success(), "after a drop at {n}: {after:?}");
        },
    )
    .await;
    assert!(polls > 2, "{polls}");
}

#[tokio::test]
async fn a_panic_in_the_operation_reaches_the_caller_and_fan_out_still_works() {
    let panicked =
        std::panic::AssertUnwindSafe(fan_out(vec![1, 2, 3], bounded(2), |x| async move {
            assert_ne!(x, 2, "planted panic");
            x
        }))
        .catch_unwind()
        .await;
    assert!(panicked.is_err());
    let outputs = fan_out(vec![1, 2, 3], bounded(2), |x| async move { x * 10 }).await;
    assert_eq!(outputs, [10, 20, 30]);
}

#[tokio::test]
async fn the_body_cap_refuses_a_long_content_length_and_cuts_a_long_stream() {
    common::init_crypto();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = reqwest::Client::new();
    let cap = Limits::new(Duration::from_secs(10), 100_000);
    let announced = fetch_url(&client, &sandbox.url("/bytes/100001"), cap).await;
    assert_eq!(
        announced.outcome,
        Err(FetchError::TooLarge {
            limit: 100_000,
            announced: Some(100_001),
            received: 0
        })
    );
    let exact = fetch_url(&client, &sandbox.url("/bytes/100000"), cap).await;
    assert_eq!(exact.outcome.unwrap().bytes, 100_000);
    let streamed = fetch_url(
        &client,
        &sandbox.url("/bytes/100001?no_length=1&chunk_size=1000"),
        cap,
    )
    .await;
    match streamed.outcome {
        Err(FetchError::TooLarge {
            limit: 100_000,
            announced: None,
            received,
        }) => assert_eq!(received, 100_001),
        other => panic!("{other:?}"),
    }
    let message = FetchError::TooLarge {
        limit: 10,
        announced: Some(99),
        received: 0,
    }
    .to_string();
    assert_eq!(
        message,
        "body of 99 bytes (Content-Length) exceeds the 10-byte cap"
    );
}

/// What `fetch_url` must make of one hostile mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `FetchError::Request` whose message contains the needle.
    Request(&'static str),
    /// `FetchError::Body`.
    Body,
    /// `FetchError::Timeout`.
    Timeout,
    /// `FetchError::TooLarge`.
    TooLarge,
    /// A response with this status and a body within the cap.
    Status(u16),
}

/// Every hostile mode, what the fetch must report, and why.
const CATALOGUE: &[(&str, Expect)] = &[
    (
        "garbage-status",
        Expect::Request("invalid HTTP status-code"),
    ),
    ("close-mid-headers", Expect::Request("request")),
    ("slow-body", Expect::Timeout), // the deadline covers the body
    ("short-body-close", Expect::Body),
    ("short-body-hang", Expect::Timeout),
    ("endless-chunked", Expect::TooLarge),
    ("endless-length", Expect::TooLarge), // refused from its Content-Length
    ("huge-headers", Expect::Request("request")),
    ("endless-headers", Expect::Request("request")),
    ("gzip-bomb", Expect::Status(200)), // no decompression: ~1 MiB counted
    ("retry-after-max", Expect::Status(429)), // no retry, no sleep
    ("retry-after-huge", Expect::Status(429)),
    ("retry-after-past-date", Expect::Status(429)),
    ("retry-after-garbage", Expect::Status(429)),
    ("retry-after-negative", Expect::Status(429)),
    ("redirect-loop", Expect::Request("too many redirects")),
    ("bad-range", Expect::Status(200)), // no Range sent
    ("changing", Expect::Status(200)),
    ("no-length-cut", Expect::Status(200)), // undetectable in HTTP/1.1
    ("hang", Expect::Timeout),
];

#[tokio::test]
async fn every_hostile_mode_gives_one_clear_bounded_error_and_never_a_panic() {
    let listed: BTreeSet<&str> = HOSTILE_MODES.iter().map(|(mode, _)| *mode).collect();
    let covered: BTreeSet<&str> = CATALOGUE.iter().map(|(mode, _)| *mode).collect();
    assert_eq!(listed, covered, "every catalogue mode has an expectation");

    common::init_crypto();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = reqwest::Client::new();
    const TIMEOUT: Duration = Duration::from_secs(2);
    const CAP: u64 = 4 << 20;
    let cap = Limits::new(TIMEOUT, CAP);
    let mut urls: Vec<String> = CATALOGUE
        .iter()
        .map(|(mode, _)| sandbox.url(&format!("/hostile/{mode}")))
        .collect();
    urls.extend(
        CATALOGUE
            .iter()
            .filter(|(mode, _)| mode.starts_with("retry-after"))
            .map(|(mode, _)| sandbox.url(&format!("/hostile/{mode}?status=503"))),
    );
    let started = Instant::now();
    // All at once, through the pattern itself: bounded time is one timeout.
    let results: Vec<FetchResult> = fan_out(urls, Concurrency::Unbounded, |url| {
        let client = &client;
        async move { fetch_url(client, &url, cap).await }
    })
    .await;
    assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());

    let expectations = CATALOGUE.iter().chain(
        CATALOGUE
            .iter()
            .filter(|(mode, _)| mode.starts_with("retry-after")),
    );
    for (result, (mode, expect)) in results.iter().zip(expectations) {
        let expect = match (*expect, result.url.contains("status=503")) {
            (Expect::Status(_), true) => Expect::Status(503),
            (expect, _) => expect,
        };
        assert!(
            result.elapsed <= TIMEOUT + Duration::from_secs(1),
            "{mode}: {result:?}"
        );
        assert!(
            !result.is_success() || expect == Expect::Status(200),
            "{mode}"
        );
        let message = match &result.outcome {
            Ok(_) => String::new(),
            Err(err) => err.to_string(),
        };
        assert!(!message.contains('\n'), "{mode}: one line: {message}");
        match (expect, &result.outcome) {
            (Expect::Request(needle), Err(FetchError::Request(text))) => {
                assert!(text.contains(needle), "{mode}: {text}");
            }
            (Expect::Body, Err(FetchError::Body { bytes, .. })) => assert_eq!(*bytes, 500),
            (Expect::Timeout, Err(FetchError::Timeout(t))) => assert_eq!(*t, TIMEOUT),
            (
                Expect::TooLarge,
                Err(FetchError::TooLarge {
                    limit, received, ..
                }),
            ) => {
                assert_eq!(*limit, CAP);
                // Memory: at most the cap plus one chunk was ever counted.
                assert!(*received <= CAP + (1 << 20), "{mode}: {received}");
            }
            (Expect::Status(status), Ok(done)) => {
                assert_eq!(done.status, status, "{mode}");
                assert!(done.bytes <= CAP, "{mode}: {}", done.bytes);
            }
            (expect, outcome) => panic!("{mode}: expected {expect:?}, got {outcome:?}"),
        }
    }
}

#[tokio::test]
async fn a_streamed_body_exactly_at_the_cap_is_accepted() {
    common::init_crypto();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = reqwest::Client::new();
    let cap = Limits::new(Duration::from_secs(10), 100_000);
    let url = sandbox.url("/bytes/100000?no_length=1&chunk_size=1000");
    let result = fetch_url(&client, &url, cap).await;
    assert_eq!(result.outcome.unwrap().bytes, 100_000);
}

#[test]
fn too_large_names_the_cap_and_what_was_read() {
    let streamed = FetchError::TooLarge {
        limit: 10,
        announced: Some(10),
        received: 11,
    };
    assert_eq!(
        streamed.to_string(),
        "body exceeds the 10-byte cap (stopped after 11 bytes)"
    );
    let unannounced = FetchError::TooLarge {
        limit: 10,
        announced: None,
        received: 12,
    };
    assert_eq!(
        unannounced.to_string(),
        "body exceeds the 10-byte cap (stopped after 12 bytes)"
    );
}

#[test]
fn default_limits_are_five_seconds_and_sixteen_mebibytes() {
    let limits = Limits::default();
    assert_eq!(limits.timeout, Duration::from_secs(5));
    assert_eq!(limits.max_body, 16 * 1024 * 1024);
    assert_eq!(examples_http::fetch::DEFAULT_MAX_BODY, 16 * 1024 * 1024);
}

fn row(outcome: Result<examples_http::fetch::Fetched, FetchError>) -> FetchResult {
    FetchResult {
        url: "http://x/y".to_owned(),
        elapsed: Duration::from_micros(12_345),
        outcome,
    }
}

#[test]
fn a_result_prints_as_one_table_row_and_serialises_elapsed_in_ms() {
    let ok = row(Ok(examples_http::fetch::Fetched {
        status: 200,
        bytes: 42,
        content_type: Some("text/plain".to_owned()),
    }));
    assert_eq!(
        ok.to_string(),
        "   200         42       12.3  text/plain                http://x/y"
    );
    let failed = row(Err(FetchError::Timeout(Duration::from_secs(1))));
    assert_eq!(
        failed.to_string(),
        "     -          -       12.3  -                         http://x/y\n        error: timed out after 1s"
    );
    assert_eq!(
        examples_http::fetch::ROW_HEADER.len(),
        ok.to_string().len() - "http://x/y".len() + "url".len()
    );
    let json = serde_json::to_value(&ok).unwrap();
    assert_eq!(json["elapsed"], 12.345);
}

#[derive(Debug)]
struct Outer(std::io::Error);

impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outer")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn error_chain_joins_every_cause() {
    let err = Outer(std::io::Error::other("inner"));
    assert_eq!(examples_http::fetch::error_chain(&err), "outer: inner");
}

#[test]
fn url_files_are_read_and_a_missing_one_names_its_path() {
    let path = std::env::temp_dir().join(format!("fetch-urls-{}.txt", std::process::id()));
    std::fs::write(&path, "# list\nhttp://a.example/\n").unwrap();
    let read = examples_http::fetch::read_url_file(&path);
    // Best effort: a leftover file in the temp dir is harmless.
    let _removed = std::fs::remove_file(&path);
    assert_eq!(read.unwrap(), ["http://a.example/"]);
    let missing = examples_http::fetch::read_url_file(std::path::Path::new("/nonexistent/u.txt"));
    assert!(missing.unwrap_err().starts_with("/nonexistent/u.txt: "));
}
