//! Pool acquire + release throughput, ours beside deadpool, in one run.
//!
//! Both pools wrap a trivial manager (create and recycle return at once),
//! so the figures measure the pools' own bookkeeping: semaphore, idle list,
//! guard. Each case alternates the two pools for several rounds and prints
//! the median; the machine is shared, so compare the ratio, not the
//! absolute numbers.
//!
//! ```text
//! cargo bench -p examples-db --bench pool            # 2 M acquires per round
//! cargo bench -p examples-db --bench pool -- --quick # 200 k
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleResult};
use examples_db::pool::{Manager, Pool, PoolConfig};

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

const ROUNDS: usize = 5;

/// Runs `tasks` tasks doing `total / tasks` acquire+release each; returns
/// acquires per second.
async fn drive<F, Fut>(tasks: usize, total: usize, one: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per_task = total / tasks;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let one = one.clone();
        set.spawn(async move {
            for _ in 0..per_task {
                one().await;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.expect("bench task");
    }
    (per_task * tasks) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn case(label: &str, tasks: usize, size: usize, total: usize) -> serde_json::Value {
    let config = PoolConfig {
        size,
        max_overflow: 0,
        acquire_timeout: Duration::from_secs(30),
    };
    let ours = Pool::new(Trivial, config).expect("valid config");
    // deadpool skips its timer entirely when no timeout is configured; our
    // pool always has one (an acquire without a deadline is a hang waiting
    // to happen), so deadpool is measured both ways.
    let theirs: managed::Pool<DeadpoolTrivial> = managed::Pool::builder(DeadpoolTrivial)
        .max_size(size)
        .build()
        .expect("deadpool builds");
    let theirs_timeout: managed::Pool<DeadpoolTrivial> = managed::Pool::builder(DeadpoolTrivial)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .expect("deadpool builds");
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        let pool = ours.clone();
        rates[0].push(
            drive(tasks, total, move || {
                let pool = pool.clone();
                async move {
                    drop(pool.get().await.expect("acquire"));
                }
            })
            .await,
        );
        for (slot, pool) in [(1, &theirs), (2, &theirs_timeout)] {
            let pool = pool.clone();
            rates[slot].push(
                drive(tasks, total, move || {
                    let pool = pool.clone();
                    async move {
                        drop(pool.get().await.expect("acquire"));
                    }
                })
                .await,
            );
        }
    }
    let [o, t, tt] = rates.map(median);
    println!(
        "{label:<34} ours {:>5.2} M/s | deadpool {:>5.2} M/s ({:.2}x) | deadpool+wait_timeout {:>5.2} M/s ({:.2}x)",
        o / 1e6,
        t / 1e6,
        o / t,
        tt / 1e6,
        o / tt
    );
    let stats = ours.stats();
    assert_eq!(stats.in_use, 0, "bench left connections out: {stats:?}");
    serde_json::json!({
        "case": label, "tasks": tasks, "size": size,
        "ours_per_sec": o.round(), "deadpool_per_sec": t.round(),
        "deadpool_wait_timeout_per_sec": tt.round(), "ratio": o / t,
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let total = if quick { 200_000 } else { 2_000_000 };
    println!("pool acquire+release, trivial manager, median of {ROUNDS} rounds x {total} acquires");
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(case("1 task, size 8 (current_thread)", 1, 8, total));
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let wide = multi.block_on(case("64 tasks, size 64 (multi_thread)", 64, 64, total));
    let narrow = multi.block_on(case("64 tasks, size 8 (multi_thread)", 64, 8, total));
    // The last line is the machine-readable summary (scripts/bench.sh reads it).
    println!(
        "{}",
        serde_json::json!({ "bench": "pool", "acquires_per_round": total, "cases": [single, wide, narrow] })
    );
}
