//! Producers, consumers and a monitor around the [`PriorityQueue`]: the
//! pipeline of seed Example 7, with nothing lost.
//!
//! The Python `TaskProcessor` counts an error and moves on, so a failed task
//! simply disappears; its counters are bumped from many tasks without a
//! lock-free type (fine in asyncio, a data race in threaded Rust); and its
//! shutdown is a `running` flag plus `sleep(1.5)` plus `cancel()`. Here:
//!
//! - A failed attempt (an `Err` *or a panic* in the handler, caught with
//!   `catch_unwind` around both the call to [`Handler::handle`] and the
//!   future it returns) is put back with [`PriorityQueue::requeue`] up to
//!   `max_retries` times, then recorded in the dead-letter list with its last
//!   error.
//! - Nothing vanishes from the [`Report`]: `produced == completed +
//!   dead_lettered + left_queued + left_in_flight` holds on every exit path
//!   ([`Report::invariant_holds`]), a drain timeout included. "In flight" is
//!   the processor's own count of claims taken and not yet resolved, so the
//!   tasks of consumers aborted by the timeout stay counted there (the
//!   queue's `Done` guards drop with the aborted tasks and would forget
//!   them). [`Report::all_done`] adds "nothing left".
//! - Producers finish, then `join()` waits for every task to be finished (it
//!   returns, unlike the seed's), then `close()` ends the consumers' loops.
//! - On shutdown the queue is closed at once: producers stop, consumers drain
//!   what was accepted, bounded by `drain_timeout`; anything left is reported.
//! - The monitor is stopped on every way out of [`run`]: a drop guard
//!   cancels it on an error return and when the `run` future itself is
//!   dropped, so `on_snapshot` is never called after `run` is over. A panic
//!   in `on_snapshot` is caught, logged and counted
//!   ([`Report::callback_panics`]); the run goes on.
//! - A monitor reports depth per priority, in flight, blocked producers,
//!   completed/failed/retried/dead-lettered and the queue-wait p50/p99 of
//!   the last interval (HDR histograms: the tail, not just a mean).
//!
//! Hostile callbacks: a handler that panics (in `handle` or in its future)
//! or an `on_snapshot` that panics cannot kill a consumer, hang `join()` or
//! fail the run; a caller that drops `run` stops every task it spawned. The
//! dead-letter list holds at most one entry per task produced.
//!
//! Counters are atomics (`Relaxed`: each is an independent tally, and the
//! final read happens after the tasks that wrote them were joined).
//!
//! ```text
//! cargo run --bin priority-queue -- --error-rate 0.3 --max-retries 2
//! cargo test -p examples-queue --test processor
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use common::{LatencyRecorder, LatencySummary, Stopwatch};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::priority_queue::{PriorityQueue, QueueStats};

mod workers;

pub(crate) use workers::panic_message;
use workers::{consume, monitor, produce};

/// The seed's priority levels; lower is more urgent.
pub const LEVELS: [&str; 4] = ["urgent", "high", "normal", "low"];

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Task {
    /// Unique across producers.
    pub id: u64,
    /// Which producer made it.
    pub producer: usize,
    /// Index into [`LEVELS`] (0 = urgent).
    pub level: u8,
    /// Failed attempts so far.
    pub failures: u32,
}

/// What consumers run for each task. Errors and panics both count as a
/// failed attempt.
pub trait Handler: Send + Sync + 'static {
    /// Processes one task.
    fn handle(&self, task: &Task) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Pipeline settings (the binary's flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// Producer tasks.
    pub producers: usize,
    /// Consumer tasks.
    pub consumers: usize,
    /// Tasks produced in total, split evenly across producers.
    pub tasks: u64,
    /// Queue capacity.
    pub capacity: usize,
    /// Ageing step, if any (see [`PriorityQueue::with_aging`]).
    pub aging: Option<Duration>,
    /// Retries after the first failed attempt, before dead-lettering.
    pub max_retries: u32,
    /// Items per push/pop (1 = one at a time, the strictest priority order).
    pub batch: usize,
    /// Seed for the producers' priority choices.
    pub seed: u64,
    /// How often the monitor reports (`None`: no monitor).
    pub monitor_interval: Option<Duration>,
    /// How long consumers may drain after a shutdown request.
    pub drain_timeout: Duration,
}

/// A task that failed `max_retries + 1` times.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The task, with its failure count.
    pub task: Task,
    /// The last error (`{err:#}`) or panic message.
    pub error: String,
}

/// One monitor line.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Since the start of the run.
    pub elapsed: Duration,
    /// The queue's own view (depth per priority, in flight, waiters).
    #[serde(skip)]
    pub queue: QueueStats,
    /// Running totals.
    pub counts: Counts,
    /// Queue wait of the tasks taken during the last interval.
    pub wait: LatencySummary,
}

/// Running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Tasks accepted by the queue.
    pub produced: u64,
    /// Tasks whose handler succeeded.
    pub completed: u64,
    /// Failed attempts (errors and panics).
    pub failed: u64,
    /// Attempts put back for another try.
    pub retried: u64,
    /// Tasks given up on.
    pub dead_lettered: u64,
}

/// The end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Final totals.
    pub counts: Counts,
    /// Every dead-lettered task (at most `tasks` entries: bounded).
    pub dead_letters: Vec<DeadLetter>,
    /// Left in the queue at the end (0 unless a drain timed out).
    pub left_queued: usize,
    /// Claimed but unfinished at the end (0 unless a drain timed out).
    pub left_in_flight: usize,
    /// Queue wait per level, indexed like [`LEVELS`].
    pub wait_by_level: Vec<LatencySummary>,
    /// Queue wait over all tasks.
    pub wait: LatencySummary,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// A shutdown request cut production short.
    pub interrupted: bool,
    /// Panics caught in the `on_snapshot` callback (the monitor carried on).
    pub callback_panics: u64,
}

impl Report {
    /// The rule that holds on every exit path, a drain timeout included:
    /// `produced == completed + dead_lettered + left_queued + left_in_flight`.
    pub fn invariant_holds(&self) -> bool {
        let c = self.counts;
        c.produced
            == c.completed + c.dead_lettered + self.left_queued as u64 + self.left_in_flight as u64
    }

    /// All work done: the invariant holds with nothing queued or in flight.
    pub fn all_done(&self) -> bool {
        self.invariant_holds() && self.left_queued == 0 && self.left_in_flight == 0
    }
}

#[derive(Debug, Default)]
struct Counters {
    produced: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    /// Claimed by a consumer and not yet completed, requeued or
    /// dead-lettered; an aborted consumer leaves its claims counted here.
    in_flight: AtomicU64,
}

impl Counters {
    fn read(&self) -> Counts {
        Counts {
            produced: self.produced.load(Relaxed),
            completed: self.completed.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retried: self.retried.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
        }
    }
}

/// What every task of a run shares.
struct Shared<H> {
    queue: PriorityQueue<Task>,
    handler: H,
    counters: Counters,
    /// std Mutex: pushed to once per dead letter, never across an await.
    dead_letters: Mutex<Vec<DeadLetter>>,
    /// One window recorder per consumer (uncontended except when the monitor
    /// swaps it out), so recording never serialises the consumers.
    windows: Vec<Mutex<LatencyRecorder>>,
    config: Config,
}

/// Runs the pipeline to the end (or until `shutdown` fires and the drain is
/// over), calling `on_snapshot` at every monitor tick.
pub async fn run<H: Handler>(
    config: Config,
    handler: H,
    on_snapshot: impl FnMut(&Snapshot) + Send + 'static,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Report> {
    anyhow::ensure!(
        config.producers > 0 && config.consumers > 0,
        "producers and consumers must be at least 1"
    );
    anyhow::ensure!(
        config.capacity > 0 && config.batch > 0,
        "capacity and batch must be at least 1"
    );
    let queue = match config.aging {
        Some(step) => PriorityQueue::with_aging(config.capacity, step),
        None => PriorityQueue::new(config.capacity),
    };
    let shared = Arc::new(Shared {
        queue,
        handler,
        counters: Counters::default(),
        dead_letters: Mutex::new(Vec::new()),
        windows: (0..config.consumers).map(|_| Mutex::default()).collect(),
        config,
    });
    let watch = Stopwatch::start();
    // Stops the monitor on every way out of this function: the normal end,
    // an error returned with `?`, and this future being dropped.
    let monitor = shared.config.monitor_interval.map(|every| {
        let stop = CancellationToken::new();
        let task = tokio::spawn(monitor(
            Arc::clone(&shared),
            every,
            watch,
            stop.clone(),
            on_snapshot,
        ));
        MonitorGuard {
            _stop: stop.drop_guard(),
            task: Some(task),
        }
    });

    let mut consumers = JoinSet::new();
    for index in 0..shared.config.consumers {
        consumers.spawn(consume(Arc::clone(&shared), index));
    }
    let mut producers = JoinSet::new();
    let per_producer = shared.config.tasks / shared.config.producers as u64;
    let extra = shared.config.tasks % shared.config.producers as u64;
    for index in 0..shared.config.producers {
        let count = per_producer + u64::from((index as u64) < extra);
        producers.spawn(produce(Arc::clone(&shared), index, count));
    }

    // Normal end: producers finish, join() sees every task finished, close()
    // lets consumers leave. Shutdown: close() at once, then drain.
    let mut shutdown = std::pin::pin!(shutdown);
    let interrupted = tokio::select! {
        finished = async {
            while let Some(done) = producers.join_next().await {
                done.context("a producer task failed")?;
            }
            shared.queue.join().await;
            anyhow::Ok(())
        } => {
            finished?;
            false
        }
        () = &mut shutdown => true,
    };
    shared.queue.close();
    // Producers see `Closed` on their next push and return.
    while producers.join_next().await.is_some() {}

    let mut wait_by_level = vec![LatencyRecorder::new(); LEVELS.len()];
    let drained = tokio::time::timeout(shared.config.drain_timeout, async {
        while let Some(done) = consumers.join_next().await {
            for (total, part) in wait_by_level
                .iter_mut()
                .zip(done.context("a consumer task failed")?)
            {
                total.merge(&part);
            }
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => {
            tracing::error!(
                "drain timed out after {:?}; abandoning the rest",
                shared.config.drain_timeout
            );
            consumers.shutdown().await;
        }
    }
    let callback_panics = match monitor {
        Some(monitor) => monitor.stop().await,
        None => 0,
    };

    let queued = shared.queue.stats().queued;
    let mut wait = LatencyRecorder::new();
    for level in &wait_by_level {
        wait.merge(level);
    }
    let dead_letters = std::mem::take(
        &mut *shared
            .dead_letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    Ok(Report {
        counts: shared.counters.read(),
        dead_letters,
        left_queued: queued,
        // Our count, not the queue's: an aborted consumer's claims were
        // dropped (finished for `join()`), but their tasks were not done.
        left_in_flight: usize::try_from(shared.counters.in_flight.load(Relaxed))
            .unwrap_or(usize::MAX),
        wait_by_level: wait_by_level.iter().map(LatencyRecorder::summary).collect(),
        wait: wait.summary(),
        elapsed: watch.elapsed(),
        interrupted,
        callback_panics,
    })
}

/// The running monitor: cancels it when dropped (the `DropGuard`), or stops
/// it and waits for it with [`MonitorGuard::stop`].
struct MonitorGuard {
    _stop: tokio_util::sync::DropGuard,
    task: Option<tokio::task::JoinHandle<u64>>,
}

impl MonitorGuard {
    /// Stops the monitor and returns how many `on_snapshot` panics it caught.
    async fn stop(mut self) -> u64 {
        let task = self.task.take();
        drop(self); // cancels the token
        match task {
            Some(task) => task.await.unwrap_or(0),
            None => 0,
        }
    }
}

impl Drop for MonitorGuard {
    fn drop(&mut self) {
        // Dropped without `stop` (an error path, or `run` cancelled): the
        // token is cancelled by `_stop`; also abort in case the monitor is
        // inside `on_snapshot`, so it cannot call it again.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
