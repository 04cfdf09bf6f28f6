//! Throughput: the [`PriorityQueue`] beside a plain `tokio::sync::mpsc` of
//! the same shape (N producers, M consumers, bounded, no processing time).
//!
//! Both sides do the same work per task: a producer hands over a `u64`, a
//! consumer takes it and counts it. The priority queue also timestamps each
//! entry, keeps four FIFO lanes and a `Done` guard per task for `join()`;
//! `mpsc` has none of that, but it is single-consumer, so M consumers share
//! its `Receiver` behind a `tokio::sync::Mutex` (an async mutex because the
//! guard is held across `recv().await`), the usual way to fan it out.
//!
//! Each is measured one item at a time and in batches (`push_many` /
//! `pop_many` against `reserve_many` / `recv_many`): a batch moves up to B items per lock and
//! per wake-up, which is where most of the per-item cost goes when there is
//! no processing time. Each run checks that every task arrived exactly once.
//!
//! Demo support (the binary's `--bench` mode), not a pattern.
//!
//! ```text
//! cargo run --release --bin priority-queue -- --bench
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::priority_queue::PriorityQueue;

/// The shape of one benchmark run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Shape {
    /// Producer tasks.
    pub producers: usize,
    /// Consumer tasks.
    pub consumers: usize,
    /// Tasks in total.
    pub tasks: u64,
    /// Queue / channel capacity.
    pub capacity: usize,
    /// Items per batch for the batched variants.
    pub batch: usize,
}

impl Shape {
    /// The shape of the pipeline `config` describes (batch: `config.batch`
    /// if above 1, else 64 capped at the capacity).
    pub fn of(config: &crate::processor::Config) -> Self {
        let batch = if config.batch > 1 {
            config.batch
        } else {
            64.min(config.capacity)
        };
        Self {
            producers: config.producers,
            consumers: config.consumers,
            tasks: config.tasks,
            capacity: config.capacity,
            batch,
        }
    }
}

/// The contenders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// `PriorityQueue::push` / `pop`.
    PriorityQueue,
    /// `PriorityQueue::push_many` / `pop_many`.
    PriorityQueueBatched,
    /// `mpsc::Sender::send` / `Receiver::recv` behind a shared mutex.
    Mpsc,
    /// `mpsc::Sender::reserve_many` / `Receiver::recv_many` behind a shared mutex.
    MpscBatched,
}

impl Contender {
    /// All four, in report order.
    pub const ALL: [Contender; 4] = [
        Self::PriorityQueue,
        Self::PriorityQueueBatched,
        Self::Mpsc,
        Self::MpscBatched,
    ];

    /// A label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::PriorityQueue => "priority queue, push/pop",
            Self::PriorityQueueBatched => "priority queue, push_many/pop_many",
            Self::Mpsc => "tokio mpsc, send/recv",
            Self::MpscBatched => "tokio mpsc, reserve_many/recv_many",
        }
    }
}

/// Runs one contender once; returns the wall time for all tasks.
pub async fn run_once(contender: Contender, shape: Shape) -> anyhow::Result<Duration> {
    ensure!(
        shape.producers > 0 && shape.consumers > 0,
        "producers and consumers must be at least 1"
    );
    ensure!(
        shape.capacity > 0 && shape.batch > 0,
        "capacity and batch must be at least 1"
    );
    ensure!(
        shape.batch <= shape.capacity,
        "batch ({}) must not exceed capacity ({})",
        shape.batch,
        shape.capacity
    );
    let started = tokio::time::Instant::now();
    let received = match contender {
        Contender::PriorityQueue | Contender::PriorityQueueBatched => {
            let batch = if contender == Contender::PriorityQueue {
                1
            } else {
                shape.batch
            };
            priority_queue(shape, batch).await?
        }
        Contender::Mpsc | Contender::MpscBatched => {
            let batch = if contender == Contender::Mpsc {
                1
            } else {
                shape.batch
            };
            channel(shape, batch).await?
        }
    };
    let elapsed = started.elapsed();
    ensure!(
        received == shape.tasks,
        "{}: {received} of {} tasks arrived",
        contender.label(),
        shape.tasks
    );
    Ok(elapsed)
}

/// The tasks producer `index` of `producers` sends: `index, index + producers, ...`.
fn share(index: usize, shape: Shape) -> impl Iterator<Item = u64> {
    (index as u64..shape.tasks).step_by(shape.producers)
}

async fn priority_queue(shape: Shape, batch: usize) -> anyhow::Result<u64> {
    let queue = PriorityQueue::<u64>::new(shape.capacity);
    let mut consumers = JoinSet::new();
    for _ in 0..shape.consumers {
        let queue = queue.clone();
        consumers.spawn(async move {
            let mut received = 0u64;
            let mut claims = Vec::with_capacity(batch);
            // Dropping the claims is "task done".
            while queue.pop_many(batch, &mut claims).await > 0 {
                received += claims.len() as u64;
                claims.clear();
            }
            received
        });
    }
    let mut producers = JoinSet::new();
    for index in 0..shape.producers {
        let queue = queue.clone();
        producers.spawn(async move {
            let mut ids = share(index, shape).peekable();
            while ids.peek().is_some() {
                // Four priority levels, as in the seed.
                let chunk: Vec<(u8, u64)> = ids
                    .by_ref()
                    .take(batch)
                    .map(|id| ((id % 4) as u8, id))
                    .collect();
                if let [(level, id)] = chunk[..] {
                    queue.push(level, id).await?;
                } else {
                    queue
                        .push_many(chunk)
                        .await
                        .map_err(|_| anyhow::anyhow!("queue closed"))?;
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    queue.close();
    let mut received = 0;
    while let Some(count) = consumers.join_next().await {
        received += count?;
    }
    queue.join().await; // returns at once: every claim was dropped
    Ok(received)
}

async fn channel(shape: Shape, batch: usize) -> anyhow::Result<u64> {
    let (tx, rx) = mpsc::channel::<u64>(shape.capacity);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut consumers = JoinSet::new();
    for _ in 0..shape.consumers {
        let rx = Arc::clone(&rx);
        consumers.spawn(async move {
            let mut received = 0u64;
            let mut buffer = Vec::with_capacity(batch);
            loop {
                // recv_many(.., 1) is recv() into the buffer: one code path.
                let count = rx.lock().await.recv_many(&mut buffer, batch).await;
                if count == 0 {
                    return received; // every Sender dropped and the channel drained
                }
                received += count as u64;
                buffer.clear();
            }
        });
    }
    let mut producers = JoinSet::new();
    for index in 0..shape.producers {
        let tx = tx.clone();
        producers.spawn(async move {
            let mut ids = share(index, shape).peekable();
            while ids.peek().is_some() {
                let chunk: Vec<u64> = ids.by_ref().take(batch).collect();
                if let [id] = chunk[..] {
                    tx.send(id).await?;
                } else {
                    // The batched counterpart of push_many: reserve a run of
                    // slots with one wait, then fill them.
                    let permits = tx.reserve_many(chunk.len()).await?;
                    for (permit, id) in permits.zip(chunk) {
                        permit.send(id);
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    drop(tx); // the producers hold the only senders now
    while let Some(done) = producers.join_next().await {
        done??;
    }
    let mut received = 0;
    while let Some(count) = consumers.join_next().await {
        received += count?;
    }
    Ok(received)
}

/// The median of some durations (the middle one; the upper middle for an
/// even count).
pub fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs.get(runs.len() / 2).copied().unwrap_or_default()
}

/// Races every contender `runs` times and reports the medians as figures
/// (`mode`, `shape`, `runs`, `results[].{contender, median_tasks_per_s,
/// runs_tasks_per_s}`); prints the table unless `quiet`. Stops between and
/// within runs when `stop` is cancelled, reporting the runs finished.
pub async fn run(
    shape: Shape,
    runs: u32,
    quiet: bool,
    stop: &CancellationToken,
) -> anyhow::Result<common::Report> {
    if !quiet {
        println!(
            "bench: {} producers, {} consumers, {} tasks, capacity {}, batch {}, no processing time; median of {runs} runs",
            shape.producers, shape.consumers, shape.tasks, shape.capacity, shape.batch
        );
        println!(
            "{:<38} {:>14}   runs (tasks/s)",
            "contender", "median tasks/s"
        );
    }
    let rate = |d: Duration| shape.tasks as f64 / d.as_secs_f64().max(1e-9);
    let mut results = Vec::new();
    'contenders: for contender in Contender::ALL {
        let mut times = Vec::new();
        for _ in 0..runs {
            tokio::select! {
                () = stop.cancelled() => break 'contenders,
                time = run_once(contender, shape) => times.push(time?),
            }
        }
        let median = rate(median(times.clone()));
        let each: Vec<f64> = times.iter().map(|d| rate(*d).round()).collect();
        if !quiet {
            let listed: Vec<String> = each.iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "{:<38} {median:>14.0}   {}",
                contender.label(),
                listed.join(", ")
            );
        }
        results.push(json!({
            "contender": contender,
            "median_tasks_per_s": median.round(),
            "runs_tasks_per_s": each,
        }));
    }
    Ok(common::Report::ok().figures(json!({
        "mode": "bench", "shape": shape, "runs": runs, "results": results,
    })))
}
