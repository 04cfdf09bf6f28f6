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
//! **Failures are not throughput.** A request that errs (or exceeds the
//! per-request `timeout`, or panics) is counted apart, by kind, and never
//! enters the latency histograms or the requests/s: against a refusing port
//! every request fails in microseconds, and counting those as served would
//! report a fast server. The binary exits 1 when the error rate passes
//! `--max-error-rate`.
//!
//! **Stopping.** Every loop watches a `CancellationToken`: on a stop the
//! workers send nothing more, requests in flight are dropped (not counted),
//! and the run reports what it measured with `interrupted: true`.
//!
//! **Hostile servers.** A body is streamed and counted, never buffered
//! ([`http_get`]), so an endless body costs one chunk of memory; the
//! per-request `timeout` ends it, a hang and a 1 byte/s body alike, as one
//! `timeout` error. Garbage, a close mid-headers and a redirect loop are
//! per-request errors of their kind.
//!
//! Both are generic over the operation (`Fn() -> Future<Output = Result>`),
//! so the tests drive them with fake operations on tokio's paused clock.
//!
//! tokio primitives: `JoinSet` (the workers; dropping it aborts them, so an
//! interrupted benchmark stops at once), `Semaphore::acquire_owned` (the
//! open loop's in-flight cap, released when each spawned request ends),
//! `sleep_until` (the schedule), and a second `JoinSet` for the open loop's
//! requests in flight (dropped with the run, so none outlives it).
//!
//! Production: `wrk2` / `oha` / `k6` (open loop, corrected histograms),
//! `criterion` for micro-benchmarks. Ours is shown because the mechanics of
//! a load generator are exactly the async patterns this crate teaches.
//!
//! ```text
//! cargo run --release --bin benchmark -- --latency 0s --concurrency 64 --count 100000 --runs 3
//! cargo run --release --bin benchmark -- --rate 400 --concurrency 4 --count 400
//! cargo test -p examples-http --test bench
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{LatencyRecorder, LatencySummary};
use futures::FutureExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Most distinct error kinds kept apart; the rest are counted as `other`.
const MAX_KINDS: usize = 16;

/// What bounds every request of a run.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Longest one request may take; past it, it counts as a `timeout` error.
    pub timeout: Option<Duration>,
    /// Cancelled to stop the run early (requests in flight are dropped).
    pub stop: CancellationToken,
}

/// How one request ended.
enum Outcome {
    Ok,
    Failed(String),
    Stopped,
}

/// Runs one request under the timeout and the stop; a panic in `op` (or in
/// its future) is an error of kind `panic`, not a dead worker.
async fn one<F, Fut, E>(op: &F, control: &Control) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let call = match std::panic::catch_unwind(AssertUnwindSafe(op)) {
        Ok(call) => AssertUnwindSafe(call).catch_unwind(),
        Err(_) => return Outcome::Failed("panic".to_owned()),
    };
    let timed = async {
        match control.timeout {
            Some(limit) => tokio::time::timeout(limit, call).await.ok(),
            None => Some(call.await),
        }
    };
    tokio::select! {
        biased;
        () = control.stop.cancelled() => Outcome::Stopped,
        result = timed => match result {
            None => Outcome::Failed("timeout".to_owned()),
            Some(Err(_panic)) => Outcome::Failed("panic".to_owned()),
            Some(Ok(Err(err))) => Outcome::Failed(err.to_string()),
            Some(Ok(Ok(()))) => Outcome::Ok,
        },
    }
}

/// Errors by kind, with the count of distinct kinds bounded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ErrorKinds(pub BTreeMap<String, u64>);

impl ErrorKinds {
    fn add(&mut self, kind: String, n: u64) {
        let key = if self.0.len() < MAX_KINDS || self.0.contains_key(&kind) {
            kind
        } else {
            "other".to_owned()
        };
        *self.0.entry(key).or_default() += n;
    }

    fn merge(&mut self, other: &ErrorKinds) {
        for (kind, n) in &other.0 {
            self.add(kind.clone(), *n);
        }
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// Errors over requests (0 when nothing was sent).
pub fn error_rate(errors: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    }
}

/// One closed-loop run.
#[derive(Debug, Clone)]
pub struct LoadRun {
    /// Requests that finished (successes and errors; not those a stop cut).
    pub requests: u64,
    /// Requests that succeeded.
    pub successes: u64,
    /// Requests that failed, by kind (`timeout`, `panic`, or the error's text).
    pub errors: ErrorKinds,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Latency of every *successful* request.
    pub latencies: LatencyRecorder,
    /// A stop ended the run early.
    pub interrupted: bool,
}

impl LoadRun {
    /// Successful requests per second over the run (errors excluded).
    pub fn throughput(&self) -> f64 {
        self.successes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `requests` calls of `op` with `concurrency` workers, each starting
/// its next call when its previous one finished (a closed loop).
pub async fn closed_loop<F, Fut, E>(
    op: Arc<F>,
    concurrency: usize,
    requests: u64,
    control: &Control,
) -> LoadRun
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    // A shared ticket counter hands out exactly `requests` calls, whichever
    // worker is free first takes the next one.
    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (op, tickets, control) = (op.clone(), tickets.clone(), control.clone());
        workers.spawn(async move {
            // One recorder per worker: no lock on the hot path; merged below.
            let mut latencies = LatencyRecorder::new();
            let mut errors = ErrorKinds::default();
            while !control.stop.is_cancelled() && tickets.fetch_add(1, Ordering::Relaxed) < requests
            {
                let sent = Instant::now();
                match one(&*op, &control).await {
                    Outcome::Ok => latencies.record(sent.elapsed()),
                    Outcome::Failed(kind) => errors.add(kind, 1),
                    Outcome::Stopped => break,
                }
            }
            (latencies, errors)
        });
    }
    let mut run = LoadRun {
        requests: 0,
        successes: 0,
        errors: ErrorKinds::default(),
        elapsed: Duration::ZERO,
        latencies: LatencyRecorder::new(),
        interrupted: false,
    };
    while let Some(joined) = workers.join_next().await {
        // `one` catches the operation's panics; a worker can only fail by
        // a bug in this loop, and then its figures are lost, not invented.
        if let Ok((latencies, errors)) = joined {
            run.latencies.merge(&latencies);
            run.errors.merge(&errors);
        }
    }
    run.elapsed = started.elapsed();
    run.successes = run.latencies.len();
    run.requests = run.successes + run.errors.total();
    run.interrupted = control.stop.is_cancelled();
    run
}

/// One concurrency setting of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// Workers in flight.
    pub concurrency: usize,
    /// Requests finished over all rounds (successes and errors).
    pub requests: u64,
    /// Successful requests over all rounds.
    pub successes: u64,
    /// Failed requests over all rounds.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Failed requests by kind.
    pub error_kinds: ErrorKinds,
    /// Median over the rounds, successful requests per second.
    pub throughput_per_s: f64,
    /// Throughput relative to the sweep's first (smallest) setting.
    pub speedup: f64,
    /// What the speedup would be if latency did not grow with load:
    /// `concurrency / first concurrency`, capped by the requests per round.
    pub ideal_speedup: f64,
    /// Latency of the successful requests over all rounds.
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

/// Warm-up, then `rounds` closed-loop rounds per concurrency setting; a
/// stop ends it with the points measured so far (the last one from the
/// rounds it finished or cut).
pub async fn sweep<F, Fut, E>(
    op: Arc<F>,
    config: &SweepConfig,
    control: &Control,
) -> Vec<SweepPoint>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let widest = config.concurrency.iter().copied().max().unwrap_or(1);
    if config.warmup > 0 {
        closed_loop(op.clone(), widest, config.warmup, control).await;
    }
    let mut points: Vec<SweepPoint> = Vec::new();
    for &concurrency in &config.concurrency {
        let mut latency = LatencyRecorder::new();
        let (mut requests, mut successes) = (0, 0);
        let mut errors = ErrorKinds::default();
        let mut throughputs = Vec::new();
        for _ in 0..config.rounds.max(1) {
            let run = closed_loop(op.clone(), concurrency, config.requests, control).await;
            if run.interrupted && run.requests == 0 {
                break;
            }
            latency.merge(&run.latencies);
            requests += run.requests;
            successes += run.successes;
            errors.merge(&run.errors);
            throughputs.push(run.throughput());
            if run.interrupted {
                break; // a cut round still reports what it measured
            }
        }
        if throughputs.is_empty() {
            return points;
        }
        let cut = control.stop.is_cancelled();
        throughputs.sort_by(f64::total_cmp);
        let throughput_per_s = throughputs[throughputs.len() / 2];
        // Speedup is relative to the first setting (1 = sequential, when
        // the sweep starts there). More workers than requests cannot help.
        let (base_c, base_rps) = points.first().map_or((concurrency, throughput_per_s), |p| {
            (p.concurrency, p.throughput_per_s)
        });
        let effective = |c: usize| c.min(config.requests.max(1) as usize) as f64;
        points.push(SweepPoint {
            concurrency,
            requests,
            successes,
            errors: errors.total(),
            error_rate: error_rate(errors.total(), requests),
            error_kinds: errors,
            throughput_per_s,
            speedup: throughput_per_s / base_rps.max(1e-9),
            ideal_speedup: effective(concurrency) / effective(base_c),
            latency: latency.summary(),
        });
        if cut {
            break;
        }
    }
    points
}

/// The outcome of an open-loop run.
#[derive(Debug, Clone, Serialize)]
pub struct OpenLoopRun {
    /// Target rate, requests per second.
    pub rate_per_s: f64,
    /// Requests that finished (successes and errors).
    pub requests: u64,
    /// Successful requests.
    pub successes: u64,
    /// Failed requests.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Failed requests by kind.
    pub error_kinds: ErrorKinds,
    /// Requests of the schedule never sent (a stop came first).
    pub not_sent: u64,
    /// Requests sent more than 1 ms after their intended start.
    pub late_starts: u64,
    /// Successful requests per second.
    pub achieved_per_s: f64,
    /// From the intended start to completion, successes only: what a user
    /// arriving on schedule waits (includes time queued behind the cap).
    pub response: LatencySummary,
    /// From the actual send to completion: what a closed loop reports.
    pub service: LatencySummary,
    /// A stop ended the run early.
    pub interrupted: bool,
}

/// Sends `requests` calls of `op` at `rate` per second, never more than
/// `max_in_flight` at once, measuring latency from each call's intended
/// start (see the module docs on coordinated omission). `rate` must be
/// finite and positive (the binary's parser bounds it); anything else
/// sends nothing.
pub async fn open_loop<F, Fut, E>(
    op: Arc<F>,
    rate: f64,
    requests: u64,
    max_in_flight: usize,
    control: &Control,
) -> OpenLoopRun
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    // (response, service, errors). std Mutex: locked once per request for
    // two O(1) records, never across an await.
    let results = Arc::new(Mutex::new((
        LatencyRecorder::new(),
        LatencyRecorder::new(),
        ErrorKinds::default(),
    )));
    // A JoinSet, not a detached spawn: dropping this future aborts the
    // requests in flight, so nothing outlives the run.
    let mut in_flight = JoinSet::new();
    let (mut late_starts, mut sent_count) = (0, 0);
    let started = Instant::now();
    for i in 0..requests {
        // Computed from t0, not "previous + interval": no drift accumulates.
        // Checked all the way: i / rate may not fit a Duration (rate
        // 1e-300) or an Instant; such a schedule ends there.
        let Some(intended) = Duration::try_from_secs_f64(i as f64 / rate)
            .ok()
            .and_then(|offset| started.checked_add(offset))
        else {
            break;
        };
        let permit = tokio::select! {
            biased;
            () = control.stop.cancelled() => break,
            permit = async {
                tokio::time::sleep_until(intended).await;
                permits.clone().acquire_owned().await
            } => match permit {
                Ok(permit) => permit,
                Err(_closed) => break, // never closed: it lives in this function
            },
        };
        let sent = Instant::now();
        if sent.duration_since(intended) > Duration::from_millis(1) {
            late_starts += 1;
        }
        sent_count += 1;
        // Reap finished requests so the set holds only those in flight.
        while in_flight.try_join_next().is_some() {}
        let (op, results, control) = (op.clone(), results.clone(), control.clone());
        in_flight.spawn(async move {
            let outcome = one(&*op, &control).await;
            let done = Instant::now();
            drop(permit);
            // Poisoning needs a panic under the lock; records cannot panic.
            let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
            match outcome {
                Outcome::Ok => {
                    results.0.record(done.duration_since(intended));
                    results.1.record(done.duration_since(sent));
                }
                Outcome::Failed(kind) => results.2.add(kind, 1),
                Outcome::Stopped => {}
            }
        });
    }
    while in_flight.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let results = results.lock().unwrap_or_else(|p| p.into_inner());
    let (successes, errors) = (results.0.len(), results.2.total());
    OpenLoopRun {
        rate_per_s: rate,
        requests: successes + errors,
        successes,
        errors,
        error_rate: error_rate(errors, successes + errors),
        error_kinds: results.2.clone(),
        not_sent: requests - sent_count,
        late_starts,
        achieved_per_s: successes as f64 / elapsed.as_secs_f64().max(1e-9),
        response: results.0.summary(),
        service: results.1.summary(),
        interrupted: control.stop.is_cancelled(),
    }
}

/// A boxed request future, as [`http_get`] makes them.
pub type Request = Pin<Box<dyn Future<Output = Result<(), RequestError>> + Send>>;

/// Why one HTTP request failed; its `Display` is the kind the report counts.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No connection (refused, reset, DNS).
    #[error("connect")]
    Connect,
    /// The server answered with a non-2xx status.
    #[error("HTTP {0}")]
    Status(u16),
    /// The response could not be read (garbage, a close mid-headers or
    /// mid-body, too many redirects).
    #[error("response")]
    Response,
}

/// The benchmark's operation: one GET of `url` with a reused `client`, its
/// body streamed chunk by chunk and only counted into `body_bytes` (so the
/// connection goes back to the pool and an endless body costs one chunk).
pub fn http_get(
    client: reqwest::Client,
    url: reqwest::Url,
    body_bytes: Arc<AtomicU64>,
) -> impl Fn() -> Request + Send + Sync + 'static {
    move || {
        let request = client.get(url.clone());
        let body_bytes = body_bytes.clone();
        Box::pin(async move {
            let classify = |err: reqwest::Error| {
                if err.is_connect() {
                    RequestError::Connect
                } else {
                    RequestError::Response
                }
            };
            let mut response = request.send().await.map_err(classify)?;
            if !response.status().is_success() {
                return Err(RequestError::Status(response.status().as_u16()));
            }
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                body_bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            Ok(())
        })
    }
}
