//! Demo support: the workload both binaries run through the pool, workers
//! doing a read and a write per request on real connections, measured end
//! to end.
//!
//! Kept out of the binaries so they stay thin drivers, and generic over the
//! [`Manager`] (the demos use [`super::db::DbManager`], the tests fakes).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{LatencyRecorder, LatencySummary, Stopwatch};
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::store::{Item, ItemStore, ItemsTable};
use crate::pool::{Manager, Pool, PoolError};

/// What one run of workers does.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Concurrent workers (tasks), at least 1.
    pub concurrency: usize,
    /// Requests in total, shared out evenly among the workers.
    pub requests: usize,
    /// Rows in the table (ids are drawn from 1..=rows).
    pub rows: i64,
    /// How long a request keeps its connection after its queries (the
    /// application work a real handler does inside its transaction).
    pub hold: Duration,
    /// Seeds each worker's id sequence.
    pub seed: u64,
}

/// How a run went. `ok + failed + skipped == requests`:
/// every request is accounted for, including those a shutdown prevented.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct WorkloadReport {
    /// Requests that completed.
    pub ok: u64,
    /// Requests that failed (pool timeout, query error); logged.
    pub failed: u64,
    /// Requests not started because of shutdown.
    pub skipped: u64,
    /// Wall time of the run, in seconds.
    pub elapsed_s: f64,
    /// Per request: acquire + read + write + hold.
    pub latency: LatencySummary,
}

/// A failed lookup through the pool.
#[derive(Debug, thiserror::Error)]
pub enum LookupError<E: std::error::Error + 'static> {
    /// No connection (timeout, closed pool, connect failure).
    #[error(transparent)]
    Pool(#[from] PoolError<E>),
    /// The query failed.
    #[error("query failed")]
    Query(#[source] sqlx::Error),
    /// No such row.
    #[error("no item with id {0}")]
    NotFound(i64),
}

/// Reads one item through the pool (the cache demo's loader).
pub async fn lookup<M>(
    pool: &Pool<M>,
    table: &ItemsTable,
    id: i64,
) -> Result<Item, LookupError<M::Error>>
where
    M: Manager,
    M::Connection: ItemStore,
{
    let mut conn = pool.get().await?;
    let item = conn
        .fetch_item(table, id)
        .await
        .map_err(LookupError::Query)?;
    item.ok_or(LookupError::NotFound(id))
}

/// Runs `workload` against `table` until done or `shutdown` is cancelled.
pub async fn run<M>(
    pool: &Pool<M>,
    table: &ItemsTable,
    workload: Workload,
    shutdown: CancellationToken,
) -> WorkloadReport
where
    M: Manager,
    M::Connection: ItemStore,
{
    let watch = Stopwatch::start();
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    let concurrency = workload.concurrency.max(1);
    for worker in 0..concurrency {
        // The first `requests % concurrency` workers take one extra.
        let share =
            workload.requests / concurrency + usize::from(worker < workload.requests % concurrency);
        let (pool, table, shutdown) = (pool.clone(), table.clone(), shutdown.clone());
        let failed = Arc::clone(&failed);
        workers.spawn(async move {
            let mut rng =
                rand::rngs::StdRng::seed_from_u64(workload.seed.wrapping_add(worker as u64));
            let mut latencies = LatencyRecorder::new();
            for _ in 0..share {
                // Between requests only: a request in progress finishes,
                // so no connection is dropped mid-query.
                if shutdown.is_cancelled() {
                    break;
                }
                let id = rng.random_range(1..=workload.rows);
                let started = Stopwatch::start();
                match request(&pool, &table, id, workload.hold).await {
                    Ok(()) => latencies.record(started.elapsed()),
                    Err(err) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(worker, id, "request failed: {:#}", anyhow::Error::new(err));
                    }
                }
            }
            latencies
        });
    }
    let mut latencies = LatencyRecorder::new();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(recorded) => latencies.merge(&recorded),
            // A worker panic is a bug; its requests count as skipped below.
            Err(err) => tracing::error!("worker task failed: {err}"),
        }
    }
    let total = workload.requests as u64;
    let (ok, failed) = (latencies.len(), failed.load(Ordering::Relaxed));
    WorkloadReport {
        ok,
        failed,
        skipped: total.saturating_sub(ok + failed),
        elapsed_s: watch.elapsed().as_secs_f64(),
        latency: latencies.summary(),
    }
}

/// One request: check out, read, write, hold, give back (on Drop).
async fn request<M>(
    pool: &Pool<M>,
    table: &ItemsTable,
    id: i64,
    hold: Duration,
) -> Result<(), LookupError<M::Error>>
where
    M: Manager,
    M::Connection: ItemStore,
{
    let mut conn = pool.get().await?;
    let item = conn
        .fetch_item(table, id)
        .await
        .map_err(LookupError::Query)?;
    item.ok_or(LookupError::NotFound(id))?;
    conn.record_view(table, id)
        .await
        .map_err(LookupError::Query)?;
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    Ok(())
}

/// How a run of [`lookups`] went; `ok + failed + skipped` = lookups asked.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LookupReport {
    /// Lookups that returned the right row.
    pub ok: u64,
    /// Lookups that failed or returned the wrong row; logged.
    pub failed: u64,
    /// Lookups not started because of shutdown.
    pub skipped: u64,
    /// Wall time, in seconds.
    pub elapsed_s: f64,
    /// Per lookup.
    pub latency: LatencySummary,
}

/// Runs `lookup` over `ids` with `concurrency` tasks (the cache demo runs
/// it straight to the pool, then through the cache); task `w` takes ids
/// w, w + concurrency, ...; checks each answer is the row asked for.
/// Stops between lookups once `shutdown` is cancelled.
pub async fn lookups<F, Fut>(
    ids: &Arc<Vec<i64>>,
    concurrency: usize,
    shutdown: &CancellationToken,
    lookup: F,
) -> LookupReport
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<Arc<Item>>> + Send,
{
    let watch = Stopwatch::start();
    let mut tasks = tokio::task::JoinSet::new();
    let concurrency = concurrency.max(1);
    for worker in 0..concurrency {
        let (ids, shutdown, lookup) = (Arc::clone(ids), shutdown.clone(), lookup.clone());
        tasks.spawn(async move {
            let (mut latencies, mut failed) = (LatencyRecorder::new(), 0u64);
            for &id in ids.iter().skip(worker).step_by(concurrency) {
                if shutdown.is_cancelled() {
                    break;
                }
                let started = Stopwatch::start();
                match lookup(id).await {
                    Ok(item) if item.id == id && item.name == format!("item-{id}") => {
                        latencies.record(started.elapsed())
                    }
                    Ok(item) => {
                        failed += 1;
                        tracing::error!(id, ?item, "lookup returned the wrong row");
                    }
                    Err(err) => {
                        failed += 1;
                        tracing::warn!(id, "lookup failed: {err:#}");
                    }
                }
            }
            (latencies, failed)
        });
    }
    let (mut latencies, mut failed) = (LatencyRecorder::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((recorded, worker_failed)) => {
                latencies.merge(&recorded);
                failed += worker_failed;
            }
            // A worker panic is a bug; its lookups count as skipped.
            Err(err) => tracing::error!("worker task failed: {err}"),
        }
    }
    let ok = latencies.len();
    LookupReport {
        ok,
        failed,
        skipped: (ids.len() as u64).saturating_sub(ok + failed),
        elapsed_s: watch.elapsed().as_secs_f64(),
        latency: latencies.summary(),
    }
}

/// Awaits `run`; meanwhile, when `print` and `every` is not zero, prints
/// `stats()` every `every` (the live pool line of `connection-pool`).
pub async fn with_progress<T, S: std::fmt::Display>(
    run: impl Future<Output = T>,
    print: bool,
    every: Duration,
    stats: impl Fn() -> S,
) -> T {
    if !print || every.is_zero() {
        return run.await;
    }
    let mut run = std::pin::pin!(run);
    let mut ticks = tokio::time::interval(every);
    ticks.tick().await; // the first tick is immediate
    let started = tokio::time::Instant::now();
    loop {
        tokio::select! {
            done = &mut run => break done,
            _ = ticks.tick() => println!("  [{:>6.2} s] {}", started.elapsed().as_secs_f64(), stats()),
        }
    }
}

/// `count` ids in `1..=keys`, skewed towards low ids (u^3 puts 46% of
/// draws in the lowest 10%), reproducible from `seed`.
pub fn skewed_ids(count: u64, keys: i64, seed: u64) -> Vec<i64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| (1 + (rng.random::<f64>().powi(3) * keys as f64) as i64).min(keys))
        .collect()
}
