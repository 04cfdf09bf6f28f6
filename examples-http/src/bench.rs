//! Load generation: a closed-loop concurrency sweep and an open-loop run.
//!
//! Ports seed Example 13. The Python benchmark times one sequential and one
//! `gather` run of 16 live URLs, once, and prints the ratio. That measures
//! the weather: no warm-up (the first run pays DNS, TCP and TLS set-up for
//! the second), one sample, means only, and no idea what the ideal speedup
//! would have been.
//!
//! Here [`sweep`] warms the connection pool, then for each concurrency
//! setting runs `rounds` rounds of a *closed loop* ([`closed_loop`]: `c`
//! workers, each sending its next request when the previous one answered),
//! reports the median throughput, latency p50/p90/p99/max from an HDR
//! histogram, and the speedup over the smallest setting beside its ideal.
//!
//! A closed loop hides stalls: while the server is stuck, the workers are
//! stuck too and *send nothing*, so the stall is one slow sample instead of
//! the hundreds of users it would have delayed. That is **coordinated
//! omission**. [`open_loop`] sends on a fixed schedule instead (request `i`
//! is due at `t0 + i / rate`) and measures latency from the *intended* start,
//! next to the service time measured from the actual send. When the client
//! falls behind (server too slow, `max_in_flight` reached), the two diverge
//! and the first is what users feel.
//!
//! Both are generic over the operation (`Fn() -> Future<Output = Result>`),
//! so the tests drive them with fake operations on tokio's paused clock.
//!
//! tokio primitives: `JoinSet` (the workers; dropping it aborts them, so an
//! interrupted benchmark stops at once), `Semaphore::acquire_owned` (the
//! open loop's in-flight cap, released when each spawned request ends),
//! `sleep_until` (the schedule), and `tokio_util::task::TaskTracker` to wait
//! for the open loop's stragglers.
//!
//! Production: `wrk2` / `oha` / `k6` (open loop, corrected histograms),
//! `criterion` for micro-benchmarks. Ours is shown because the mechanics of
//! a load generator are exactly the async patterns this crate teaches.
//!
//! ```text
//! cargo run --release --bin benchmark -- --latency-ms 0 --concurrency 64 --requests 100000 --rounds 3
//! cargo run --release --bin benchmark -- --rate 400 --max-in-flight 4 --requests 400
//! cargo test -p examples-http --test bench
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{LatencyRecorder, LatencySummary};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// One closed-loop run.
#[derive(Debug, Clone)]
pub struct LoadRun {
    /// Requests sent (successes and errors).
    pub requests: u64,
    /// Requests whose operation returned `Err`.
    pub errors: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Every request's latency.
    pub latencies: LatencyRecorder,
}

impl LoadRun {
    /// Requests per second over the run.
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `requests` calls of `op` with `concurrency` workers, each starting
/// its next call when its previous one finished (a closed loop).
pub async fn closed_loop<F, Fut, E>(op: Arc<F>, concurrency: usize, requests: u64) -> LoadRun
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    // A shared ticket counter hands out exactly `requests` calls, whichever
    // worker is free first takes the next one.
    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (op, tickets) = (op.clone(), tickets.clone());
        workers.spawn(async move {
            // One recorder per worker: no lock on the hot path; merged below.
            let mut latencies = LatencyRecorder::new();
            let mut errors = 0u64;
            while tickets.fetch_add(1, Ordering::Relaxed) < requests {
                let sent = Instant::now();
                if op().await.is_err() {
                    errors += 1;
                }
                latencies.record(sent.elapsed());
            }
            (latencies, errors)
        });
    }
    let mut run = LoadRun {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: LatencyRecorder::new(),
    };
    while let Some(joined) = workers.join_next().await {
        // A worker only ends by finishing its loop; a panic in `op` is a
        // bug worth surfacing, not a benchmark result.
        let (latencies, errors) = joined.expect("benchmark worker panicked");
        run.latencies.merge(&latencies);
        run.errors += errors;
    }
    run.elapsed = started.elapsed();
    run.requests = run.latencies.len();
    run
}

/// One concurrency setting of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// Workers in flight.
    pub concurrency: usize,
    /// Requests over all rounds.
    pub requests: u64,
    /// Failed requests over all rounds.
    pub errors: u64,
    /// Median over the rounds, requests per second.
    pub throughput_rps: f64,
    /// Throughput relative to the sweep's first (smallest) setting.
    pub speedup: f64,
    /// What the speedup would be if latency did not grow with load:
    /// `concurrency / first concurrency`, capped by the requests per round.
    pub ideal_speedup: f64,
    /// Latency over all rounds.
    pub latency: LatencySummary,
}

/// What [`sweep`] runs.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Concurrency settings, in the order to run them.
    pub concurrency: Vec<usize>,
    /// Requests per round.
    pub requests: u64,
    /// Rounds per setting (the median throughput is reported).
    pub rounds: u32,
    /// Requests sent first and not measured (opens the pool's connections).
    pub warmup: u64,
}

/// Warm-up, then `rounds` closed-loop rounds per concurrency setting.
pub async fn sweep<F, Fut, E>(op: Arc<F>, config: &SweepConfig) -> Vec<SweepPoint>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    let widest = config.concurrency.iter().copied().max().unwrap_or(1);
    if config.warmup > 0 {
        closed_loop(op.clone(), widest, config.warmup).await;
    }
    let mut points: Vec<SweepPoint> = Vec::new();
    for &concurrency in &config.concurrency {
        let mut latency = LatencyRecorder::new();
        let (mut requests, mut errors) = (0, 0);
        let mut throughputs = Vec::new();
        for _ in 0..config.rounds.max(1) {
            let run = closed_loop(op.clone(), concurrency, config.requests).await;
            latency.merge(&run.latencies);
            requests += run.requests;
            errors += run.errors;
            throughputs.push(run.throughput());
        }
        throughputs.sort_by(f64::total_cmp);
        let throughput_rps = throughputs[throughputs.len() / 2];
        // Speedup is relative to the first setting (1 = sequential, when
        // the sweep starts there). More workers than requests cannot help.
        let (base_c, base_rps) = points.first().map_or((concurrency, throughput_rps), |p| {
            (p.concurrency, p.throughput_rps)
        });
        let effective = |c: usize| c.min(config.requests.max(1) as usize) as f64;
        points.push(SweepPoint {
            concurrency,
            requests,
            errors,
            throughput_rps,
            speedup: throughput_rps / base_rps.max(1e-9),
            ideal_speedup: effective(concurrency) / effective(base_c),
            latency: latency.summary(),
        });
    }
    points
}

/// The outcome of an open-loop run.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopRun {
    /// Target rate, requests per second.
    pub rate: f64,
    /// Requests sent.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Requests sent more than 1 ms after their intended start.
    pub late_starts: u64,
    /// Requests actually completed per second.
    pub achieved_rps: f64,
    /// From the intended start to completion: what a user arriving on
    /// schedule waits (includes time queued behind the in-flight cap).
    pub response: LatencySummary,
    /// From the actual send to completion: what a closed loop reports.
    pub service: LatencySummary,
}

/// Sends `requests` calls of `op` at `rate` per second, never more than
/// `max_in_flight` at once, measuring latency from each call's intended
/// start (see the module docs on coordinated omission).
pub async fn open_loop<F, Fut, E>(
    op: Arc<F>,
    rate: f64,
    requests: u64,
    max_in_flight: usize,
) -> OpenLoopRun
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    let interval = Duration::from_secs_f64(1.0 / rate);
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    // (response, service, errors). std Mutex: locked once per request for
    // two O(1) records, never across an await.
    let results = Arc::new(Mutex::new((
        LatencyRecorder::new(),
        LatencyRecorder::new(),
        0u64,
    )));
    let tracker = TaskTracker::new();
    let mut late_starts = 0;
    let started = Instant::now();
    for i in 0..requests {
        // Computed from t0, not "previous + interval": no drift accumulates.
        let intended = started + interval.mul_f64(i as f64);
        if intended > Instant::now() {
            tokio::time::sleep_until(intended).await;
        }
        // The semaphore lives in this function and is never closed.
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let sent = Instant::now();
        if sent.duration_since(intended) > Duration::from_millis(1) {
            late_starts += 1;
        }
        let (op, results) = (op.clone(), results.clone());
        tracker.spawn(async move {
            let failed = op().await.is_err();
            let done = Instant::now();
            drop(permit);
            // Poisoning needs a panic under the lock; records cannot panic.
            let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
            results.0.record(done.duration_since(intended));
            results.1.record(done.duration_since(sent));
            results.2 += u64::from(failed);
        });
    }
    tracker.close();
    tracker.wait().await;
    let elapsed = started.elapsed();
    let results = results.lock().unwrap_or_else(|p| p.into_inner());
    OpenLoopRun {
        rate,
        requests,
        errors: results.2,
        late_starts,
        achieved_rps: requests as f64 / elapsed.as_secs_f64().max(1e-9),
        response: results.0.summary(),
        service: results.1.summary(),
    }
}
