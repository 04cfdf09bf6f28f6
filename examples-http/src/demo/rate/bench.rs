//! `rate-limited-client --bench` (demo support, not a pattern): how many
//! limiter decisions a second, and how long each takes, in-process and
//! through Redis side by side.
//!
//! A decision is one reservation, without the sleep that follows it: the
//! in-process [`RateLimiter::reserve`] (a mutex and a few additions) and
//! the shared [`SharedLimiter::reserve`] (one round trip running the GCRA
//! script). `concurrency` tasks decide in a loop for `duration` each.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::rate_limit::RateLimiter;
use crate::shared_limit::SharedLimiter;

/// Decisions/s and latency of one limiter.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Decisions {
    /// Decisions made.
    pub decisions: u64,
    /// Decisions per second over the run.
    pub per_s: f64,
    /// Median decision latency.
    pub p50_ms: f64,
    /// 99th percentile decision latency.
    pub p99_ms: f64,
    /// Decisions that failed (shared limiter only).
    pub errors: u64,
}

/// Runs `decide` from `concurrency` tasks for `duration` (or until `stop`).
async fn measure<F, Fut>(
    concurrency: usize,
    duration: Duration,
    stop: &CancellationToken,
    decide: F,
) -> Decisions
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (decide, stop) = (decide.clone(), stop.clone());
        tasks.spawn(async move {
            // 1 ns to 60 s, 3 significant figures: cannot fail.
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
            let mut errors = 0;
            while Instant::now() < end && !stop.is_cancelled() {
                let t0 = Instant::now();
                if !decide().await {
                    errors += 1;
                }
                histogram.saturating_record(t0.elapsed().as_nanos().try_into().unwrap_or(u64::MAX));
                // Let the stop and the other tasks in even when every
                // decision is ready at once (the in-process limiter).
                tokio::task::yield_now().await;
            }
            (histogram, errors)
        });
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        if let Ok((histogram, task_errors)) = joined {
            // Same bounds on both sides: add cannot fail.
            let _ = all.add(&histogram);
            errors += task_errors;
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let ms = |q: f64| all.value_at_quantile(q) as f64 / 1e6;
    Decisions {
        decisions: all.len(),
        per_s: all.len() as f64 / elapsed,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        errors,
    }
}

/// The in-process limiter's decisions (a rate so high nobody waits).
pub async fn local(concurrency: usize, duration: Duration, stop: &CancellationToken) -> Decisions {
    // 1e9/s: interval 1 ns, so reservations never run far ahead.
    let limiter = Arc::new(RateLimiter::new(1e9, 1).expect("a valid rate"));
    measure(concurrency, duration, stop, move || {
        let limiter = limiter.clone();
        async move {
            std::hint::black_box(limiter.reserve());
            true
        }
    })
    .await
}

/// The shared limiter's decisions: one script round trip each.
pub async fn shared(
    limiter: SharedLimiter,
    concurrency: usize,
    duration: Duration,
    stop: &CancellationToken,
) -> Decisions {
    measure(concurrency, duration, stop, move || {
        let limiter = limiter.clone();
        async move { limiter.reserve().await.is_ok() }
    })
    .await
}

/// Runs the benchmark (in-process, then shared when given) and builds its
/// report; prints two lines unless `json`.
pub async fn run(
    shared: Option<SharedLimiter>,
    concurrency: usize,
    duration: Duration,
    json: bool,
    stop: &CancellationToken,
) -> common::Report {
    let local = local(concurrency, duration, stop).await;
    let shared = match shared {
        Some(limiter) if !stop.is_cancelled() => {
            Some(self::shared(limiter, concurrency, duration, stop).await)
        }
        _ => None,
    };
    if !json {
        println!(
            "in-process: {:.0} decisions/s, p99 {:.4} ms",
            local.per_s, local.p99_ms
        );
        match &shared {
            Some(s) => println!(
                "Redis:      {:.0} decisions/s, p99 {:.4} ms ({} errors)",
                s.per_s, s.p99_ms, s.errors
            ),
            None => println!("Redis:      not measured (give --shared-limit redis://...)"),
        }
    }
    let failure = shared
        .filter(|s| s.errors > 0)
        .map(|s| format!("{} shared decisions failed", s.errors));
    common::Report::ok()
        .figures(serde_json::json!({
            "concurrency": concurrency, "duration_s": duration.as_secs_f64(),
            "local_decisions": local.decisions, "local_decisions_per_s": local.per_s,
            "local_p50_decision_ms": local.p50_ms, "local_p99_decision_ms": local.p99_ms,
            "shared_decisions": shared.map(|s| s.decisions),
            "shared_decisions_per_s": shared.map(|s| s.per_s),
            "shared_p50_decision_ms": shared.map(|s| s.p50_ms),
            "shared_p99_decision_ms": shared.map(|s| s.p99_ms),
            "shared_errors": shared.map(|s| s.errors),
        }))
        .fail_if(failure)
}
