//! Demo support: the benchmarks behind `connection-pool --bench` and
//! `async-cache --bench`.
//!
//! - [`pool`]: acquire + release throughput, ours beside deadpool, in one
//!   run. Both pools wrap a trivial manager (create and recycle return at
//!   once), so the figures measure the pools' own bookkeeping: semaphore,
//!   idle list, guard. Each case alternates the pools for `runs` rounds and
//!   reports the median; the machine is shared, so compare the ratio, not
//!   the absolute numbers.
//! - [`cache`]: cache hit throughput from 1, 2 and 64 tasks over 1,000 hot
//!   string keys, beside a floor (a locked `HashMap` lookup plus a clock
//!   read, with no LRU or TTL bookkeeping).
//!
//! Each case runs on a runtime of its own (current-thread or
//! multi-thread, as its label says) on a thread of its own, as the figures
//! were taken when these were `cargo bench` targets. Every loop checks the stop token every 1,024 operations and
//! between rounds, so Ctrl-C ends a benchmark within milliseconds with the
//! rounds done so far.
//!
//! ```text
//! cargo run --release --bin connection-pool -- --bench              # 2 M acquires per round
//! cargo run --release --bin async-cache -- --bench --count 2000000  # 2 M reads per round
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool::managed::{self, Metrics, RecycleResult};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::pool::{Manager, Pool, PoolConfig};

/// How often the loops look at the stop token.
const CHECK_EVERY: usize = 1024;

/// Our side: nothing to open, nothing to check.
struct Trivial;

impl Manager for Trivial {
    type Connection = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }

    async fn recycle(&self, _conn: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
}

/// deadpool's side, the same.
struct DeadpoolTrivial;

impl managed::Manager for DeadpoolTrivial {
    type Type = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }

    async fn recycle(&self, _conn: &mut u64, _: &Metrics) -> RecycleResult<Infallible> {
        Ok(())
    }
}

/// Which runtime a case runs on.
#[derive(Debug, Clone, Copy)]
enum Flavor {
    CurrentThread,
    /// A multi-thread runtime with this many workers (`None`: one per core).
    MultiThread(Option<usize>),
}

/// Runs `make()` to completion on a fresh runtime of `flavor`, on a new OS
/// thread (a runtime cannot be started from inside the caller's).
async fn on_runtime<T, F, Fut>(flavor: Flavor, make: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = match flavor {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Flavor::MultiThread(workers) => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                if let Some(workers) = workers {
                    builder.worker_threads(workers);
                }
                builder.enable_all().build()
            }
        };
        let outcome = match runtime {
            Ok(runtime) => runtime.block_on(make()),
            Err(err) => Err(anyhow::Error::new(err).context("start a benchmark runtime")),
        };
        // The receiver is gone only if our caller was dropped: nobody to tell.
        let _ = tx.send(outcome);
    });
    rx.await.context("the benchmark thread panicked")?
}

/// The median of `rates`, `None` when no round completed.
fn median(mut rates: Vec<f64>) -> Option<f64> {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied()
}

/// `tasks` tasks doing `total / tasks` calls of `one` each, stopping early
/// on `stop`; calls per second, or `None` if stopped.
async fn drive<F, Fut>(tasks: usize, total: u64, stop: &CancellationToken, one: F) -> Option<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per_task = usize::try_from(total).unwrap_or(usize::MAX) / tasks;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (one, stop) = (one.clone(), stop.clone());
        set.spawn(async move {
            for i in 0..per_task {
                if i % CHECK_EVERY == 0 && stop.is_cancelled() {
                    return;
                }
                one().await;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        // A panicking call is a benchmark bug: make it loud.
        if let Err(err) = joined {
            std::panic::resume_unwind(err.into_panic());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    (!stop.is_cancelled()).then(|| (per_task * tasks) as f64 / elapsed.max(1e-9))
}

/// One pool case: ours, deadpool, deadpool with a wait timeout.
async fn pool_case(
    tasks: usize,
    size: usize,
    total: u64,
    runs: u32,
    stop: CancellationToken,
) -> anyhow::Result<[Option<f64>; 3]> {
    let config = PoolConfig {
        size,
        max_overflow: 0,
        acquire_timeout: Duration::from_secs(30),
    };
    let ours = Pool::new(Trivial, config)?;
    // deadpool skips its timer entirely when no timeout is configured; our
    // pool always has one (an acquire without a deadline is a hang waiting
    // to happen), so deadpool is measured both ways.
    let theirs: managed::Pool<DeadpoolTrivial> = managed::Pool::builder(DeadpoolTrivial)
        .max_size(size)
        .build()?;
    let theirs_timeout: managed::Pool<DeadpoolTrivial> = managed::Pool::builder(DeadpoolTrivial)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?;
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..runs {
        let pool = ours.clone();
        let rate = drive(tasks, total, &stop, move || {
            let pool = pool.clone();
            async move {
                // Cannot fail: trivial manager, 30 s timeout, never closed.
                drop(pool.get().await);
            }
        });
        let Some(rate) = rate.await else { break };
        rates[0].push(rate);
        for (slot, pool) in [(1, &theirs), (2, &theirs_timeout)] {
            let pool = pool.clone();
            let rate = drive(tasks, total, &stop, move || {
                let pool = pool.clone();
                async move {
                    // As above: cannot fail.
                    drop(pool.get().await);
                }
            });
            if let Some(rate) = rate.await {
                rates[slot].push(rate);
            }
        }
    }
    let stats = ours.stats();
    anyhow::ensure!(stats.in_use == 0, "bench left connections out: {stats:?}");
    Ok(rates.map(median))
}

/// `connection-pool --bench`: `count` acquire+release per round, `runs`
/// rounds per case, three cases. Figures: `{"acquires_per_round", "runs",
/// "cases": [{"case", "tasks", "size", "ours_per_s", "deadpool_per_s",
/// "deadpool_wait_timeout_per_s", "ratio"}]}`.
pub async fn pool(
    count: u64,
    runs: u32,
    stop: &CancellationToken,
    print: bool,
) -> anyhow::Result<Value> {
    if print {
        println!(
            "pool acquire+release, trivial manager, median of {runs} rounds x {count} acquires"
        );
    }
    let cases = [
        (
            "1 task, size 8 (current_thread)",
            Flavor::CurrentThread,
            1,
            8,
        ),
        (
            "64 tasks, size 64 (multi_thread)",
            Flavor::MultiThread(None),
            64,
            64,
        ),
        (
            "64 tasks, size 8 (multi_thread)",
            Flavor::MultiThread(None),
            64,
            8,
        ),
    ];
    let mut rows = Vec::new();
    for (label, flavor, tasks, size) in cases {
        if stop.is_cancelled() {
            break;
        }
        let token = stop.clone();
        let [o, t, tt] =
            on_runtime(flavor, move || pool_case(tasks, size, count, runs, token)).await?;
        let ratio = o.zip(t).map(|(o, t)| o / t);
        if print && let (Some(o), Some(t), Some(tt)) = (o, t, tt) {
            println!(
                "{label:<34} ours {:>5.2} M/s | deadpool {:>5.2} M/s ({:.2}x) | deadpool+wait_timeout {:>5.2} M/s ({:.2}x)",
                o / 1e6,
                t / 1e6,
                o / t,
                tt / 1e6,
                o / tt
            );
        }
        rows.push(json!({
            "case": label, "tasks": tasks, "size": size,
            "ours_per_s": o.map(f64::round), "deadpool_per_s": t.map(f64::round),
            "deadpool_wait_timeout_per_s": tt.map(f64::round), "ratio": ratio,
        }));
    }
    Ok(json!({ "acquires_per_round": count, "runs": runs, "cases": rows }))
}

/// The hot keys every cache case reads.
const KEYS: usize = 1_000;

/// Hits per second from `tasks` tasks reading every key in turn.
async fn hits_per_second(
    cache: &Arc<Cache<String, Arc<str>>>,
    keys: &Arc<Vec<String>>,
    tasks: usize,
    total: u64,
    stop: &CancellationToken,
) -> anyhow::Result<Option<f64>> {
    let per_task = usize::try_from(total).unwrap_or(usize::MAX) / tasks;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let (cache, keys, stop) = (Arc::clone(cache), Arc::clone(keys), stop.clone());
        set.spawn(async move {
            let mut found = 0usize;
            let mut at = (t * 7) % KEYS;
            for i in 0..per_task {
                let key = &keys[at];
                at = if at + 1 == KEYS { 0 } else { at + 1 };
                found += usize::from(cache.get(key.as_str()).is_some());
                // Yield so the 64 tasks interleave on the workers; look at
                // the stop token at the same time.
                if i % 256 == 255 {
                    if i % CHECK_EVERY == CHECK_EVERY - 1 && stop.is_cancelled() {
                        return None;
                    }
                    tokio::task::yield_now().await;
                }
            }
            Some(found)
        });
    }
    let mut found = 0;
    while let Some(joined) = set.join_next().await {
        match joined.context("a benchmark task panicked")? {
            Some(n) => found += n,
            None => return Ok(None),
        }
    }
    anyhow::ensure!(found == per_task * tasks, "every read must be a hit");
    Ok(Some(
        found as f64 / started.elapsed().as_secs_f64().max(1e-9),
    ))
}

/// One cache case: a filled cache read by `tasks` tasks for `runs` rounds.
async fn cache_case(
    tasks: usize,
    total: u64,
    runs: u32,
    stop: CancellationToken,
) -> anyhow::Result<Option<f64>> {
    let capacity = NonZeroUsize::new(KEYS * 2).context("non-zero capacity")?;
    let cache = Arc::new(Cache::new(capacity, Duration::from_secs(3600)));
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|n| format!("user:{n}")).collect());
    for key in keys.iter() {
        cache.set(key.clone(), Arc::<str>::from(format!("profile of {key}")));
    }
    let mut rates = Vec::new();
    for _ in 0..runs {
        match hits_per_second(&cache, &keys, tasks, total, &stop).await? {
            Some(rate) => rates.push(rate),
            None => break,
        }
    }
    Ok(median(rates))
}

/// The floor, same loop on one task: a clock read plus a locked `HashMap`
/// lookup and an `Arc` clone, with no LRU or TTL bookkeeping.
fn floor(total: u64, runs: u32, stop: &CancellationToken) -> Option<f64> {
    let keys: Vec<String> = (0..KEYS).map(|n| format!("user:{n}")).collect();
    let map: std::sync::Mutex<std::collections::HashMap<String, Arc<str>>> = std::sync::Mutex::new(
        keys.iter()
            .map(|k| (k.clone(), Arc::<str>::from(k.as_str())))
            .collect(),
    );
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let mut rates = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let origin = tokio::time::Instant::now();
        let (mut at, mut found) = (0, 0usize);
        for i in 0..total {
            if i % CHECK_EVERY == 0 && stop.is_cancelled() {
                return median(rates);
            }
            let now = std::hint::black_box(tokio::time::Instant::now());
            // Nothing panics while holding this lock.
            let hit = map
                .lock()
                .ok()
                .and_then(|m| m.get(keys[at].as_str()).cloned());
            found += usize::from(hit.is_some() && now >= origin);
            at = if at + 1 == KEYS { 0 } else { at + 1 };
        }
        std::hint::black_box(found);
        rates.push(total as f64 / started.elapsed().as_secs_f64().max(1e-9));
    }
    median(rates)
}

/// `async-cache --bench`: `count` reads per round, `runs` rounds per case.
/// Figures: `{"reads_per_round", "runs", "cases": [{"case", "tasks",
/// "hits_per_s"}], "floor_lookups_per_s"}`.
pub async fn cache(
    count: u64,
    runs: u32,
    stop: &CancellationToken,
    print: bool,
) -> anyhow::Result<Value> {
    if print {
        println!("cache hits, {KEYS} hot string keys, median of {runs} rounds x {count} reads");
    }
    let cases = [
        ("1 task (current_thread)", 1, Flavor::CurrentThread),
        (
            "2 tasks (multi_thread, 2 workers)",
            2,
            Flavor::MultiThread(Some(2)),
        ),
        (
            "64 tasks (multi_thread, 2 workers)",
            64,
            Flavor::MultiThread(Some(2)),
        ),
    ];
    let mut rows = Vec::new();
    for (label, tasks, flavor) in cases {
        if stop.is_cancelled() {
            break;
        }
        let token = stop.clone();
        let rate = on_runtime(flavor, move || cache_case(tasks, count, runs, token)).await?;
        if print && let Some(rate) = rate {
            println!("{label:<36} {:>7.2} M hits/s", rate / 1e6);
        }
        rows.push(json!({ "case": label, "tasks": tasks, "hits_per_s": rate.map(f64::round) }));
    }
    let token = stop.clone();
    let floor = on_runtime(Flavor::CurrentThread, move || async move {
        Ok(floor(count, runs, &token))
    })
    .await?;
    if print && let Some(floor) = floor {
        println!(
            "{:<36} {:>7.2} M lookups/s",
            "floor: Mutex<HashMap> + clock, 1 task",
            floor / 1e6
        );
    }
    Ok(json!({
        "reads_per_round": count, "runs": runs, "cases": rows,
        "floor_lookups_per_s": floor.map(f64::round),
    }))
}
