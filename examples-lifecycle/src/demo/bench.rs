//! How cheap is a task? N concurrent tasks that each sleep, timed and weighed.
//!
//! The asyncio equivalent is `await asyncio.gather(*(asyncio.sleep(1) for _
//! in range(100_000)))`, which (the project's reference run) takes 2.6 s and
//! 169 MiB: every coroutine is a heap object plus a Task object plus a timer
//! handle in the event loop's heap. A tokio task is one allocation holding
//! the future's state machine; its timer entry lives *inside* that
//! allocation and is linked into the timer wheel without another one.
//!
//! Two modes, so the cost of spawning can be seen on its own:
//!
//! - [`BenchMode::Spawn`]: `JoinSet::spawn` per sleeper (what `create_task`
//!   is): each is scheduled independently, on any worker thread.
//! - [`BenchMode::Tracker`]: `TaskTracker::spawn` per sleeper, handles
//!   dropped, then `tracker.wait()`: the same tasks without the per-task
//!   bookkeeping a `JoinSet` keeps so that it can hand back each result.
//! - [`BenchMode::Futures`]: one task polls all sleepers through a
//!   `FuturesUnordered` (what `gather` over bare coroutines is): no
//!   per-task scheduling, all on one thread.
//! - [`BenchMode::FuturesUnconstrained`]: the same inside
//!   `tokio::task::unconstrained`. This is a trap worth measuring: tokio
//!   gives each task a budget of 128 resource polls per turn; when 100,000
//!   timers fire at once, the budget runs out, every further `Sleep` poll
//!   answers `Pending` and wakes itself, and `FuturesUnordered` keeps
//!   re-polling them (futures-rs issue 2053). On the development machine
//!   that made the plain `Futures` mode take 5 to 10 s instead of 1.05 s.
//!   Spawned tasks do not have the problem: each has its own budget.
//!
//! Peak memory is the process's high-water mark (`VmHWM` in
//! `/proc/self/status`, Linux only), read at the end; run each mode in its
//! own process, since a high-water mark never goes down.
//!
//! ```text
//! cargo build --release -p examples-lifecycle
//! target/release/background-tasks --bench --count 100000 --json
//! /usr/bin/time -v target/release/background-tasks --bench --count 100000 --bench-mode futures
//! ```

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

/// How the sleepers are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BenchMode {
    /// One spawned task per sleeper, in a `JoinSet`.
    Spawn,
    /// One spawned task per sleeper, counted by a `TaskTracker`.
    Tracker,
    /// All sleepers as plain futures in one `FuturesUnordered`.
    Futures,
    /// The same, with tokio's cooperative budget switched off for the task.
    FuturesUnconstrained,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Which mode ran.
    pub mode: BenchMode,
    /// How many sleepers.
    pub tasks: usize,
    /// How long each slept, in milliseconds.
    pub sleep_ms: u128,
    /// Time to create (spawn or push) all sleepers, in milliseconds.
    pub spawn_ms: f64,
    /// Wall time from the first spawn to the last completion, in ms.
    pub wall_ms: f64,
    /// Peak resident memory of the process, in bytes (`VmHWM`), if known.
    pub peak_rss_bytes: Option<u64>,
}

/// Runs `tasks` sleepers of `sleep` each and measures wall time and memory;
/// `Ok(None)` when `stop` was cancelled first (the sleepers are aborted).
///
/// Uses the real clock (`std::time::Instant`): this is a measurement, not
/// timer logic, and must not run under a paused test clock.
pub async fn run(
    tasks: usize,
    sleep: Duration,
    mode: BenchMode,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<BenchResult>> {
    // Measured inside a spawned task: the harness's `block_on` body runs on
    // the main thread, outside the worker pool, so every spawn from there
    // goes through the shared injection queue (a lock and a wake-up each).
    // From a worker, spawns land in its local run queue, as in a server.
    let mut measuring = tokio::spawn(measure(tasks, sleep, mode));
    tokio::select! {
        joined = &mut measuring => Ok(Some(joined??)),
        () = stop.cancelled() => {
            // Aborting the task drops its JoinSet, which aborts the sleepers.
            measuring.abort();
            Ok(None)
        }
    }
}

async fn measure(tasks: usize, sleep: Duration, mode: BenchMode) -> anyhow::Result<BenchResult> {
    let started = std::time::Instant::now();
    let spawned;
    match mode {
        BenchMode::Spawn => {
            let mut sleepers = JoinSet::new();
            for _ in 0..tasks {
                sleepers.spawn(tokio::time::sleep(sleep));
            }
            spawned = started.elapsed();
            while let Some(joined) = sleepers.join_next().await {
                // A sleep cannot panic and nobody aborts these tasks, so an
                // error here is a runtime fault worth reporting.
                joined?;
            }
        }
        BenchMode::Tracker => {
            let tracker = TaskTracker::new();
            for _ in 0..tasks {
                // Dropping the JoinHandle detaches the task, which is fine
                // here: the tracker still counts it until it finishes.
                drop(tracker.spawn(tokio::time::sleep(sleep)));
            }
            spawned = started.elapsed();
            tracker.close();
            tracker.wait().await;
        }
        BenchMode::Futures | BenchMode::FuturesUnconstrained => {
            let mut sleepers: FuturesUnordered<_> =
                (0..tasks).map(|_| tokio::time::sleep(sleep)).collect();
            spawned = started.elapsed();
            let drain = async { while sleepers.next().await.is_some() {} };
            if mode == BenchMode::FuturesUnconstrained {
                tokio::task::unconstrained(drain).await;
            } else {
                drain.await;
            }
        }
    }
    let wall = started.elapsed();
    Ok(BenchResult {
        mode,
        tasks,
        sleep_ms: sleep.as_millis(),
        spawn_ms: spawned.as_secs_f64() * 1e3,
        wall_ms: wall.as_secs_f64() * 1e3,
        peak_rss_bytes: peak_rss_kib().map(|kib| kib.saturating_mul(1024)),
    })
}

/// The process's peak resident set size in KiB (`VmHWM`), on Linux.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

impl std::fmt::Display for BenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rss = self.peak_rss_bytes.map_or("n/a".to_owned(), |b| {
            format!("{:.1} MiB", b as f64 / 1_048_576.0)
        });
        write!(
            f,
            "{} sleepers of {} ms ({:?} mode): spawned in {:.1} ms, all done in {:.1} ms, peak RSS {rss}",
            self.tasks, self.sleep_ms, self.mode, self.spawn_ms, self.wall_ms
        )
    }
}
