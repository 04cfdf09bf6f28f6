//! Overhead measurements: what wrapping a call costs when nothing fails.
//!
//! Both patterns sit on the hot path of every call, so their cost when all
//! is well matters more than their cost during an outage. Each measurement
//! runs the same trivial operation (an async fn returning `Ok` at once)
//! bare and wrapped, side by side in one run, and reports nanoseconds per
//! call for both and their difference. Wall-clock `std::time::Instant` is
//! right here (this is a real measurement, not a paused-clock test);
//! `std::hint::black_box` keeps the optimiser from deleting the work.
//!
//! Run in `--release`; the numbers in debug builds mean nothing.
//!
//! Every loop checks the stop token every [`STOP_CHECK_EVERY`] calls, so
//! Ctrl-C ends a multi-second benchmark at once with the rounds finished
//! so far (the harness then exits 130).

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::breaker::CircuitBreaker;
use crate::retry::{Decision, Retry, RetryPolicy};

/// How many calls run between two looks at the stop token: rare enough to
/// cost nothing per call, often enough to stop within microseconds.
pub const STOP_CHECK_EVERY: u64 = 4096;

/// Bare vs wrapped cost of one call, in nanoseconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Overhead {
    /// What was measured.
    pub variant: &'static str,
    /// Concurrent tasks making calls.
    pub tasks: usize,
    /// Calls made in each variant.
    pub calls: u64,
    /// ns per bare call (wall time / calls).
    pub bare_ns: f64,
    /// ns per wrapped call.
    pub wrapped_ns: f64,
    /// `wrapped_ns - bare_ns`.
    pub overhead_ns: f64,
}

impl Overhead {
    fn new(variant: &'static str, tasks: usize, calls: u64, bare: f64, wrapped: f64) -> Self {
        let per = |total: f64| total * 1e9 / calls as f64;
        Self {
            variant,
            tasks,
            calls,
            bare_ns: per(bare),
            wrapped_ns: per(wrapped),
            overhead_ns: per(wrapped) - per(bare),
        }
    }
}

/// The operation being wrapped: succeeds at once.
async fn ok_now(i: u64) -> Result<u64, Infallible> {
    Ok(black_box(i))
}

/// Seconds taken by `calls` sequential awaits of `call(i)` in this task
/// (stops early, with the time so far, once `stop` is cancelled).
async fn time_loop<F, Fut>(calls: u64, stop: &CancellationToken, mut call: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = u64>,
{
    let start = Instant::now();
    for i in 0..calls {
        if i % STOP_CHECK_EVERY == 0 && stop.is_cancelled() {
            break;
        }
        black_box(call(i).await);
    }
    start.elapsed().as_secs_f64()
}

/// The retry loop's happy path (the first attempt succeeds), without and
/// with a deadline (which wraps each attempt in `tokio::time::timeout_at`).
pub async fn retry_happy_path(calls: u64, stop: &CancellationToken) -> Vec<Overhead> {
    let mut out = Vec::new();
    for (variant, deadline) in [
        ("retry", None),
        ("retry+deadline", Some(std::time::Duration::from_secs(10))),
    ] {
        let policy = RetryPolicy {
            deadline,
            ..RetryPolicy::default()
        };
        let retry = Retry::new(policy, |_: &Infallible| Decision::Retry);
        // Warm-up, so page faults and lazy init do not land in the first variant.
        time_loop(
            calls / 10,
            stop,
            |i| async move { ok_now(i).await.unwrap_or(0) },
        )
        .await;
        let bare = time_loop(calls, stop, |i| async move { ok_now(i).await.unwrap_or(0) }).await;
        let wrapped = time_loop(calls, stop, |i| {
            let retry = &retry;
            async move { retry.run(|| ok_now(i)).await.map_or(0, |r| r.value) }
        })
        .await;
        out.push(Overhead::new(variant, 1, calls, bare, wrapped));
    }
    out
}

/// A closed breaker shared by `tasks` tasks, `calls` calls in total.
///
/// Tasks are spawned on the current runtime (the binary's multi-thread
/// runtime), so with more than one task the breaker's mutex is contended.
pub async fn breaker_closed(
    breaker: &CircuitBreaker,
    tasks: usize,
    calls: u64,
    stop: &CancellationToken,
) -> Overhead {
    let per_task = calls / tasks as u64;
    let run = |wrapped: bool| {
        let breaker = breaker.clone();
        let stop = stop.clone();
        async move {
            let start = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..tasks {
                let breaker = breaker.clone();
                let stop = stop.clone();
                set.spawn(async move {
                    if wrapped {
                        time_loop(per_task, &stop, |i| {
                            let breaker = &breaker;
                            async move { breaker.call(|| ok_now(i)).await.unwrap_or(0) }
                        })
                        .await
                    } else {
                        time_loop(
                            per_task,
                            &stop,
                            |i| async move { ok_now(i).await.unwrap_or(0) },
                        )
                        .await
                    }
                });
            }
            // A panicking bench task is a bug worth seeing: re-raise it.
            while let Some(joined) = set.join_next().await {
                if let Err(err) = joined
                    && err.is_panic()
                {
                    std::panic::resume_unwind(err.into_panic());
                }
            }
            start.elapsed().as_secs_f64()
        }
    };
    run(true).await; // warm-up
    let bare = run(false).await;
    let wrapped = run(true).await;
    Overhead::new(
        "closed breaker",
        tasks,
        per_task * tasks as u64,
        bare,
        wrapped,
    )
}

/// Runs `measure` up to `n` times (each returns one [`Overhead`] per
/// variant); a round cut by `stop` is dropped, the finished ones are kept.
pub async fn rounds<F, Fut>(
    n: usize,
    stop: &CancellationToken,
    mut measure: F,
) -> Vec<Vec<Overhead>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<Overhead>>,
{
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let round = measure().await;
        if stop.is_cancelled() {
            break;
        }
        all.push(round);
    }
    all
}

/// The per-variant medians of `rounds` (by overhead).
pub fn medians(rounds: &[Vec<Overhead>]) -> Vec<Overhead> {
    let variants = rounds.first().map_or(0, Vec::len);
    (0..variants)
        .map(|v| {
            let mut column: Vec<Overhead> = rounds.iter().map(|r| r[v]).collect();
            column.sort_by(|a, b| a.overhead_ns.total_cmp(&b.overhead_ns));
            column[column.len() / 2]
        })
        .collect()
}

/// The build profile, as the figures should be read.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug (figures meaningless; use --release)"
    } else {
        "release"
    }
}

/// The envelope figures: `bench`, `profile`, `rounds`, `median` (each
/// entry with `variant`, `tasks`, `calls`, `bare_ns`, `wrapped_ns`,
/// `overhead_ns`).
pub fn figures(title: &str, rounds: &[Vec<Overhead>]) -> serde_json::Value {
    serde_json::json!({ "bench": title, "profile": profile(), "rounds": rounds, "median": medians(rounds) })
}

/// The human table: every round and the medians.
pub fn print(title: &str, rounds: &[Vec<Overhead>]) {
    let medians = medians(rounds);
    println!(
        "{title}: ns per call, {} build, {} rounds",
        profile(),
        rounds.len()
    );
    println!(
        "{:>8} {:<16} {:>6} {:>12} {:>12} {:>12} {:>12}",
        "round", "variant", "tasks", "calls", "bare", "wrapped", "overhead"
    );
    let rows = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| ((i + 1).to_string(), r));
    for (label, row) in rows.chain(std::iter::once(("median".to_owned(), &medians))) {
        for o in row {
            println!(
                "{label:>8} {:<16} {:>6} {:>12} {:>12.1} {:>12.1} {:>12.1}",
                o.variant, o.tasks, o.calls, o.bare_ns, o.wrapped_ns, o.overhead_ns
            );
        }
    }
}
