//! The seed's background loops, rewritten as supervised tasks.
//!
//! Seed Example 11 runs a data processor (every 2 s), a cleanup task (every
//! 5 s) and a heartbeat (every 1 s), each `while not self.should_exit:
//! await asyncio.sleep(n)`. Two differences here:
//!
//! - Each loop races its timer against `ctx.cancelled()` in `select!`, so a
//!   stop request is seen at once, not after the current sleep; the work in
//!   the handler is not raced, so a half-done batch is never dropped.
//! - Each loop calls `ctx.tick()` after a unit of work, which is what the
//!   supervisor's liveness column shows.
//!
//! A fourth task, `cache-warmup`, runs once and completes, to show the
//! `Never` restart policy; `--crash-after` makes the data processor panic to
//! show a restart with backoff; `--slow-stop` makes the cleanup task's final
//! flush slower than the stop deadline, to show an abort.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at};

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::supervisor::{
    Backoff, Event, Jitter, RestartPolicy, StatusReport, Supervisor, TaskContext, TaskSpec,
};

/// The seed's periods.
pub const PROCESS_EVERY: Duration = Duration::from_secs(2);
/// How often the cleanup task runs.
pub const CLEANUP_EVERY: Duration = Duration::from_secs(5);
/// How often the heartbeat beats.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long the one-shot warm-up takes.
pub const WARMUP_TAKES: Duration = Duration::from_millis(1500);

/// Knobs for the demo tasks.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoOptions {
    /// Each data-processor run panics this long after it starts.
    pub crash_after: Option<Duration>,
    /// How long the cleanup task's final flush takes once asked to stop.
    pub slow_stop: Duration,
}

/// The four demo tasks with their policies and staleness limits.
pub fn demo_tasks(options: DemoOptions) -> Vec<TaskSpec> {
    // Jitter::None keeps the demo's story the same every run; a fleet of
    // processes restarting one dependency would want Jitter::Full.
    let doubling = |base, max_delay| Backoff {
        base,
        factor: 2.0,
        max_delay,
        jitter: Jitter::None,
    };
    let quick = doubling(Duration::from_millis(500), Duration::from_secs(4));
    vec![
        TaskSpec::new(
            "data-processor",
            RestartPolicy::OnFailure(quick),
            move |ctx| data_processor(ctx, options.crash_after),
        )
        .stale_after(PROCESS_EVERY * 2),
        TaskSpec::new(
            "cleanup",
            RestartPolicy::OnFailure(doubling(Duration::from_secs(1), Duration::from_secs(10))),
            move |ctx| cleanup(ctx, options.slow_stop),
        )
        .stale_after(CLEANUP_EVERY * 2),
        // A heartbeat that ends is a bug whatever it returned: Always.
        TaskSpec::new("heartbeat", RestartPolicy::Always(quick), heartbeat)
            .stale_after(HEARTBEAT_EVERY * 3),
        TaskSpec::new("cache-warmup", RestartPolicy::Never, cache_warmup),
    ]
}

/// A ticker whose first tick is one period from now (like the seed's
/// sleep-then-work), and which delays rather than bursts after a slow tick.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// Processes a batch every 2 s; with `crash_after`, panics mid-run.
pub async fn data_processor(ctx: TaskContext, crash_after: Option<Duration>) -> anyhow::Result<()> {
    let mut ticker = ticker(PROCESS_EVERY);
    // A future that never resolves when no crash is asked for, so the
    // select! below keeps one shape either way.
    let crash = async {
        match crash_after {
            Some(after) => {
                tokio::time::sleep(after).await;
                after
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(crash);
    let mut batches = 0_u64;
    loop {
        tokio::select! {
            () = ctx.cancelled() => {
                tracing::info!(batches, "data-processor: stop requested, state saved");
                return Ok(());
            }
            _ = ticker.tick() => {
                batches += 1;
                ctx.tick();
                tracing::info!(batches, "data-processor: processed batch");
            }
            after = &mut crash => {
                panic!("data-processor: corrupt batch {after:?} into the run (--crash-after)");
            }
        }
    }
}

/// Cleans up every 5 s; on stop, runs a final flush that takes `slow_stop`.
pub async fn cleanup(ctx: TaskContext, slow_stop: Duration) -> anyhow::Result<()> {
    let mut ticker = ticker(CLEANUP_EVERY);
    let mut rounds = 0_u64;
    loop {
        tokio::select! {
            () = ctx.cancelled() => break,
            _ = ticker.tick() => {
                rounds += 1;
                ctx.tick();
                tracing::info!(rounds, "cleanup: round completed");
            }
        }
    }
    // Async cleanup after a normal loop exit: the thing Python does in
    // `except CancelledError`, which Rust cannot (a cancelled future is
    // dropped, nothing after its .await runs). If this overruns the stop
    // deadline the supervisor aborts it here.
    tracing::info!(?slow_stop, "cleanup: final flush");
    tokio::time::sleep(slow_stop).await;
    Ok(())
}

/// Beats every second.
pub async fn heartbeat(ctx: TaskContext) -> anyhow::Result<()> {
    let mut ticker = ticker(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            () = ctx.cancelled() => return Ok(()),
            _ = ticker.tick() => {
                ctx.tick();
                tracing::debug!("heartbeat");
            }
        }
    }
}

/// Loads a cache once and completes (policy `Never`).
pub async fn cache_warmup(ctx: TaskContext) -> anyhow::Result<()> {
    tokio::select! {
        () = ctx.cancelled() => return Ok(()),
        () = tokio::time::sleep(WARMUP_TAKES) => {}
    }
    ctx.tick();
    tracing::info!("cache-warmup: cache loaded");
    Ok(())
}

/// How long the demo runs, how often it reports, how long the stop may take.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Run this long, then stop.
    pub duration: Duration,
    /// Print a status report this often.
    pub status_every: Duration,
    /// The stop's deadline.
    pub drain_timeout: Duration,
}

/// Runs the four demo tasks until `timing.duration` or `stop`, printing the
/// events (when `story`), then stops them; returns the final report and why
/// it stopped.
pub async fn play(
    options: DemoOptions,
    timing: Timing,
    story: bool,
    stop: &CancellationToken,
) -> (StatusReport, &'static str) {
    let started = Instant::now();
    let (supervisor, mut events) = Supervisor::start(demo_tasks(options));
    if story {
        println!(
            "=== started 4 supervised tasks for {:?} ===",
            timing.duration
        );
    }
    let every = timing.status_every;
    // Flag-parsed durations are at most 7 days: no overflow.
    let mut status = tokio::time::interval_at(started + every, every);
    let stop_at = tokio::time::sleep(timing.duration);
    tokio::pin!(stop_at);
    let why = loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if story => print_event(started, &event),
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "event stream lagged"),
                // Closed only once the supervisor is gone, which needs stop().
                Err(RecvError::Closed) => break "supervisor ended",
            },
            _ = status.tick(), if story => println!("--- status at {:.1}s ---\n{}", started.elapsed().as_secs_f64(), supervisor.status()),
            () = &mut stop_at => break "duration elapsed",
            () = stop.cancelled() => break "signal received",
        }
    };
    if story {
        println!(
            "=== stopping ({why}), drain timeout {:?} ===",
            timing.drain_timeout
        );
    }
    let report = supervisor.stop(timing.drain_timeout).await;
    while let Ok(event) = events.try_recv() {
        if story {
            print_event(started, &event);
        }
    }
    if story {
        println!("=== final report ===\n{report}");
    }
    (report, why)
}

fn print_event(started: Instant, event: &Event) {
    let at = started.elapsed().as_secs_f64();
    match event {
        Event::Started { task, run } => println!("[{at:6.2}s] {task}: run {run} started"),
        Event::Exited {
            task,
            reason,
            restart_in: Some(delay),
        } => println!("[{at:6.2}s] {task}: {reason}; restarting in {delay:?}"),
        Event::Exited {
            task,
            reason,
            restart_in: None,
        } => println!("[{at:6.2}s] {task}: {reason}"),
    }
}
