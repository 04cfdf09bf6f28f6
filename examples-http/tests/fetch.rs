//! Behaviour of the bounded fan-out (paused clock, fake fetch) and of
//! `fetch_url` against the loopback sandbox (real time).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Sandbox, SandboxConfig};
use examples_http::fetch::{Concurrency, FetchError, fan_out, fetch_url, parse_http_url};
use tokio::time::Instant;

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
async fn against_the_sandbox_concurrency_achieves_at_least_half_the_ideal_speedup() {
    common::init_crypto();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = reqwest::Client::new();
    let urls = vec![sandbox.url("/delay/100"); 20];
    let timeout = Duration::from_secs(30);
    let fetch = |url: String| {
        let client = &client;
        async move { fetch_url(client, &url, timeout).await }
    };
    let started = Instant::now();
    let sequential = fan_out(urls.clone(), Concurrency::SEQUENTIAL, fetch).await;
    let sequential_time = started.elapsed();
    let started = Instant::now();
    let concurrent = fan_out(urls, bounded(10), fetch).await;
    let concurrent_time = started.elapsed();

    assert!(sequential.iter().chain(&concurrent).all(|r| r.is_success()));
    let speedup = sequential_time.as_secs_f64() / concurrent_time.as_secs_f64();
    // Ideal: 20 sequential latencies vs 2 waves = 10x; accept half of it.
    assert!(
        speedup >= 5.0,
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
        async move { fetch_url(client, &url, Duration::from_secs(30)).await }
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
        Duration::from_millis(200),
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
