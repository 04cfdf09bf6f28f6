//! The load generators with fake operations on tokio's paused clock, and
//! the SVG chart of a sweep.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use examples_http::bench::{SweepConfig, closed_loop, open_loop, sweep};
use examples_http::demo::chart::sweep_svg;
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
type FakeCall = Pin<Box<dyn Future<Output = Result<(), ()>> + Send>>;

/// A fake request that takes `latency` and fails every `fail_every`-th time.
fn fake(latency: Duration, fail_every: u64) -> Arc<impl Fn() -> FakeCall + Send + Sync + 'static> {
    let calls = Arc::new(AtomicU64::new(0));
    Arc::new(move || {
        let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            if fail_every > 0 && n.is_multiple_of(fail_every) {
                Err(())
            } else {
                Ok(())
            }
        }) as FakeCall
    })
}

#[tokio::test(start_paused = true)]
async fn a_closed_loop_of_c_workers_takes_ceil_n_over_c_latencies() {
    let run = closed_loop(fake(ms(10), 5), 4, 40).await;
    assert_eq!(run.elapsed, ms(100));
    assert_eq!((run.requests, run.errors), (40, 8));
    assert_eq!(run.throughput(), 400.0);
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
    let points = sweep(fake(ms(10), 0), &config).await;
    let summary: Vec<(usize, f64, f64, f64, u64)> = points
        .iter()
        .map(|p| {
            (
                p.concurrency,
                p.throughput_rps,
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
    let run = open_loop(fake(ms(10), 0), 100.0, 50, 100).await;
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
    let run = open_loop(fake(ms(20), 0), 100.0, 20, 1).await;
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
    let points = sweep(fake(ms(5), 0), &config).await;
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
