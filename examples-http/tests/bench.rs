//! The load generators with fake operations on tokio's paused clock, and
//! the SVG chart of a sweep.
//!
//! Equivalent mutant: `sweep`'s `warmup > 0` as `warmup >= 0` runs a
//! closed loop of zero requests, which calls nothing and takes no time.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use examples_http::bench::{Control, SweepConfig, closed_loop, http_get, open_loop, sweep};
use examples_http::demo::chart::sweep_svg;
use futures::FutureExt;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// HDR histograms keep three significant digits: equal within 0.1%.
fn assert_hdr_eq(actual: Duration, expected: Duration) {
    let error = actual.as_secs_f64() - expected.as_secs_f64();
    assert!(
        error.abs() <= expected.as_secs_f64() / 1000.0,
        "{actual:?} != {expected:?}"
    );
}

/// A boxed fake request future.
type FakeCall = Pin<Box<dyn Future<Output = Result<(), &'static str>> + Send>>;

/// A fake request that takes `latency` and fails every `fail_every`-th time.
fn fake(latency: Duration, fail_every: u64) -> Arc<impl Fn() -> FakeCall + Send + Sync + 'static> {
    let calls = Arc::new(AtomicU64::new(0));
    Arc::new(move || {
        let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            if fail_every > 0 && n.is_multiple_of(fail_every) {
                Err("boom")
            } else {
                Ok(())
            }
        }) as FakeCall
    })
}

fn control() -> Control {
    Control::default()
}

#[tokio::test(start_paused = true)]
async fn a_closed_loop_of_c_workers_takes_ceil_n_over_c_latencies() {
    let run = closed_loop(fake(ms(10), 5), 4, 40, &control()).await;
    assert_eq!(run.elapsed, ms(100));
    assert_eq!(
        (run.requests, run.successes, run.errors.total()),
        (40, 32, 8)
    );
    // Only the 32 successes count as throughput: 32 in 100 ms.
    assert_eq!(run.throughput(), 320.0);
    assert_eq!(run.errors.0.get("boom"), Some(&8));
    let latency = run.latencies.summary();
    assert_hdr_eq(latency.p50, ms(10));
    assert_hdr_eq(latency.max, ms(10));
}

#[tokio::test(start_paused = true)]
async fn a_sweep_of_a_latency_bound_operation_reaches_its_ideal_speedup() {
    let config = SweepConfig {
        concurrency: vec![1, 4, 16],
        requests: 64,
        rounds: 2,
        warmup: 8,
    };
    let points = sweep(fake(ms(10), 0), &config, &control()).await;
    let summary: Vec<(usize, f64, f64, f64, u64)> = points
        .iter()
        .map(|p| {
            (
                p.concurrency,
                p.throughput_per_s,
                p.speedup,
                p.ideal_speedup,
                p.requests,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, 100.0, 1.0, 1.0, 128),
            (4, 400.0, 4.0, 4.0, 128),
            (16, 1600.0, 16.0, 16.0, 128)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_loop_with_capacity_to_spare_sends_on_schedule() {
    let started = Instant::now();
    let run = open_loop(fake(ms(10), 0), 100.0, 50, 100, &control()).await;
    // 50 requests 10 ms apart, the last one due at 490 ms and done at 500.
    assert_eq!(started.elapsed(), ms(500));
    assert_eq!(run.late_starts, 0);
    assert_hdr_eq(run.response.max, ms(10));
    assert_hdr_eq(run.service.max, ms(10));
}

#[tokio::test(start_paused = true)]
async fn an_open_loop_exposes_the_queueing_a_closed_loop_would_omit() {
    // Due every 10 ms, served one at a time in 20 ms: the client falls
    // behind by 10 ms per request.
    let run = open_loop(fake(ms(20), 0), 100.0, 20, 1, &control()).await;
    assert_hdr_eq(run.service.max, ms(20));
    // Request 19: due at 190 ms, sent at 380 ms, done at 400 ms.
    assert_hdr_eq(run.response.max, ms(210));
    assert_eq!(run.late_starts, 19);
}

#[tokio::test(start_paused = true)]
async fn the_sweep_chart_is_an_svg_with_both_series_and_every_setting() {
    let config = SweepConfig {
        concurrency: vec![1, 8, 64],
        requests: 64,
        rounds: 1,
        warmup: 0,
    };
    let points = sweep(fake(ms(5), 0), &config, &control()).await;
    let svg = sweep_svg(&points, "fake <5 ms>");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert_eq!(svg.matches("<circle").count(), 6);
    assert!(svg.contains("fake &lt;5 ms&gt;"));
    for label in [
        ">1</text>",
        ">8</text>",
        ">64</text>",
        "p99 latency (ms)",
        "throughput (requests/s)",
    ] {
        assert!(svg.contains(label), "{label}");
    }
}

#[tokio::test(start_paused = true)]
async fn fast_failures_never_enter_the_latency_or_the_throughput() {
    // Every other request fails at once; the others take 10 ms.
    let calls = Arc::new(AtomicU64::new(0));
    let op = Arc::new(move || {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            if n.is_multiple_of(2) {
                return Err("refused");
            }
            tokio::time::sleep(ms(10)).await;
            Ok(())
        }) as FakeCall
    });
    let run = closed_loop(op, 1, 20, &control()).await;
    assert_eq!((run.successes, run.errors.total()), (10, 10));
    assert_hdr_eq(run.latencies.summary().p50, ms(10));
    assert_eq!(run.throughput(), 100.0);
}

#[tokio::test(start_paused = true)]
async fn a_request_past_the_timeout_is_a_timeout_error_not_a_hang() {
    let control = Control {
        timeout: Some(ms(1000)),
        ..control()
    };
    let run = closed_loop(fake(Duration::from_secs(3600), 0), 2, 6, &control).await;
    assert_eq!(run.elapsed, ms(3000));
    assert_eq!((run.successes, run.errors.0.get("timeout")), (0, Some(&6)));
    assert_eq!(run.throughput(), 0.0);
    let open = open_loop(fake(Duration::from_secs(3600), 0), 10.0, 5, 5, &control).await;
    assert_eq!(
        (open.successes, open.errors, open.achieved_per_s),
        (0, 5, 0.0)
    );
    assert_eq!(open.error_kinds.0.get("timeout"), Some(&5));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_operation_is_an_error_of_kind_panic_and_the_run_goes_on() {
    let calls = Arc::new(AtomicU64::new(0));
    let op = Arc::new(move || {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(3) {
            panic!("op broke before its future");
        }
        Box::pin(async move {
            tokio::time::sleep(ms(1)).await;
            if n % 3 == 1 {
                panic!("op broke inside its future");
            }
            Ok(())
        }) as FakeCall
    });
    let run = closed_loop(op.clone(), 3, 30, &control()).await;
    assert_eq!((run.successes, run.errors.0.get("panic")), (10, Some(&20)));
    let open = open_loop(op, 1000.0, 30, 3, &control()).await;
    assert_eq!((open.successes, open.errors), (10, 20));
}

#[tokio::test(start_paused = true)]
async fn the_open_loop_counts_errors_apart_from_the_achieved_rate() {
    let run = open_loop(fake(ms(10), 2), 100.0, 50, 100, &control()).await;
    assert_eq!((run.requests, run.successes, run.errors), (50, 25, 25));
    assert_eq!(run.error_rate, 0.5);
    assert_eq!(run.achieved_per_s, 50.0); // 25 successes in 500 ms
    assert_eq!(run.response.count, 25);
}

#[tokio::test(start_paused = true)]
async fn every_loop_notices_the_stop_and_reports_what_it_did() {
    let control = control();
    let stop = control.stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(105)).await;
        stop.cancel();
    });
    let run = closed_loop(fake(ms(10), 0), 4, 1_000_000, &control).await;
    assert!(run.interrupted);
    assert_eq!(run.successes, 40); // 10 rounds of 4 done; the 11th was cut
    assert_eq!(run.elapsed, ms(105));
    // Already stopped: the sweep and the open loop return at once.
    let config = SweepConfig {
        concurrency: vec![1, 4],
        requests: 100,
        rounds: 3,
        warmup: 0,
    };
    assert!(sweep(fake(ms(10), 0), &config, &control).await.is_empty());
    let open = open_loop(fake(ms(10), 0), 100.0, 1000, 10, &control).await;
    assert!(open.interrupted);
    assert_eq!((open.requests, open.not_sent), (0, 1000));
}

/// Counts requests in flight: +1 when started, -1 when finished or dropped.
struct InFlight(Arc<std::sync::atomic::AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_loop_dropped_at_any_await_leaves_no_request_running() {
    let live = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let counted = live.clone();
    let op = Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(counted.clone());
        Box::pin(async move {
            let _guard = guard;
            tokio::time::sleep(ms(10)).await;
            Ok(())
        }) as FakeCall
    });
    let check = async |n: usize| {
        // Aborted tasks are dropped by the runtime on its next turn.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(live.load(Ordering::SeqCst), 0, "n = {n}");
    };
    let control = control();
    common::testing::cancel_at_every_await(|_| closed_loop(op.clone(), 3, 9, &control), check)
        .await;
    common::testing::cancel_at_every_await(|_| open_loop(op.clone(), 200.0, 9, 3, &control), check)
        .await;
}

#[tokio::test]
async fn an_unreachable_target_is_all_errors_and_no_throughput() {
    common::init_crypto();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = reqwest::Url::parse(&format!("http://{closed}/")).unwrap();
    let op = Arc::new(http_get(
        reqwest::Client::new(),
        url,
        Arc::new(AtomicU64::new(0)),
    ));
    let run = closed_loop(op, 8, 64, &control()).await;
    assert_eq!((run.successes, run.errors.0.get("connect")), (0, Some(&64)));
    assert_eq!(run.throughput(), 0.0);
}

#[tokio::test]
async fn an_endless_body_is_counted_not_buffered_and_ends_at_the_timeout() {
    common::init_crypto();
    let sandbox = common::Sandbox::start(common::SandboxConfig::default())
        .await
        .unwrap();
    let bytes = Arc::new(AtomicU64::new(0));
    let mut errors = Vec::new();
    for mode in [
        "endless-chunked",
        "endless-length",
        "hang",
        "slow-body",
        "garbage-status",
    ] {
        let url = reqwest::Url::parse(&sandbox.url(&format!("/hostile/{mode}"))).unwrap();
        let op = Arc::new(http_get(reqwest::Client::new(), url, bytes.clone()));
        let control = Control {
            timeout: Some(ms(500)),
            ..control()
        };
        let run = closed_loop(op, 2, 2, &control).await;
        assert_eq!(run.successes, 0, "{mode}");
        errors.push(run.errors.0.keys().cloned().collect::<Vec<_>>().join(","));
    }
    assert_eq!(
        errors,
        ["timeout", "timeout", "timeout", "timeout", "response"]
    );
    // Streamed: far more bytes went by than this process holds.
    assert!(bytes.load(Ordering::Relaxed) > 1 << 20);
}

#[tokio::test(start_paused = true)]
async fn a_sweep_cut_by_a_stop_reports_the_round_it_was_in() {
    let control = control();
    let stop = control.stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(105)).await;
        stop.cancel();
    });
    let config = SweepConfig {
        concurrency: vec![1, 4],
        requests: 1000,
        rounds: 3,
        warmup: 0,
    };
    let points = sweep(fake(ms(10), 0), &config, &control).await;
    assert_eq!(points.len(), 1);
    assert_eq!((points[0].concurrency, points[0].successes), (1, 10));
}

#[tokio::test(start_paused = true)]
async fn error_kinds_past_the_cap_are_counted_as_other() {
    // One worker, so the kinds arrive in call order: 20 distinct errors.
    let calls = Arc::new(AtomicU64::new(0));
    let op = Arc::new(move || {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Err::<(), String>(format!("kind {n}")) })
    });
    let run = closed_loop(op, 1, 20, &control()).await;
    // The first 16 kinds keep their names; kinds 17-20 share `other`.
    assert_eq!(run.errors.0.len(), 17);
    assert_eq!(run.errors.0.get("other"), Some(&4));
    assert_eq!(run.errors.0.get("kind 15"), Some(&1));
    assert_eq!(run.errors.0.get("kind 16"), None);
    assert_eq!(run.errors.total(), 20);
}

#[tokio::test(start_paused = true)]
async fn a_sweep_warms_up_at_its_widest_setting_and_does_not_measure_it() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let op = Arc::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        Box::pin(tokio::time::sleep(ms(10)).map(Ok::<(), &str>))
    });
    let config = SweepConfig {
        concurrency: vec![1, 4],
        requests: 8,
        rounds: 1,
        warmup: 8,
    };
    let started = Instant::now();
    let points = sweep(op, &config, &control()).await;
    // 8 warm-up calls, 4 at a time (20 ms), then 8 sequential (80 ms) and
    // 8 four at a time (20 ms): 120 ms, 24 calls, 16 of them measured.
    assert_eq!(calls.load(Ordering::Relaxed), 24);
    assert_eq!(started.elapsed(), ms(120));
    assert_eq!(points.iter().map(|p| p.requests).sum::<u64>(), 16);
}

#[tokio::test(start_paused = true)]
async fn the_ideal_speedup_is_relative_to_the_first_setting_and_capped_by_the_requests() {
    let config = SweepConfig {
        concurrency: vec![2, 8, 32],
        requests: 16,
        rounds: 1,
        warmup: 0,
    };
    let points = sweep(fake(ms(10), 0), &config, &control()).await;
    let ideal: Vec<f64> = points.iter().map(|p| p.ideal_speedup).collect();
    // 8 / 2 = 4; 32 workers for 16 requests can do no better than 16.
    assert_eq!(ideal, [1.0, 4.0, 8.0]);
    let speedup: Vec<f64> = points.iter().map(|p| p.speedup).collect();
    assert_eq!(speedup, [1.0, 4.0, 8.0]);
}

#[tokio::test(start_paused = true)]
async fn a_start_late_by_exactly_one_millisecond_is_not_a_late_start() {
    // Due every 10 ms, served one at a time in 11 ms: request i is sent
    // i ms late. Request 1 (exactly 1 ms) is on time; 2..=9 are late.
    let run = open_loop(fake(ms(11), 0), 100.0, 10, 1, &control()).await;
    assert_eq!(run.late_starts, 8);
    assert_eq!((run.successes, run.not_sent), (10, 0));
}

#[tokio::test(start_paused = true)]
async fn an_open_loop_cut_by_a_stop_counts_what_it_never_sent() {
    let control = control();
    let stop = control.stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(105)).await;
        stop.cancel();
    });
    // Due at 0, 10, .., 100 ms before the stop: 11 sent, 39 never sent.
    // The one sent at 100 ms was in flight and is dropped, not counted.
    let run = open_loop(fake(ms(10), 0), 100.0, 50, 100, &control).await;
    assert!(run.interrupted);
    assert_eq!((run.not_sent, run.successes, run.requests), (39, 10, 10));
}
