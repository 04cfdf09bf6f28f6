//! Demo support: `semaphore-pool --bench`, uncontended acquire+release per
//! second, beside a bare tokio `Semaphore` doing the same, so the cost of
//! the pool's bookkeeping shows.
//!
//! ```text
//! cargo run --release --bin semaphore-pool -- --bench --count 5000000 --runs 3
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::Stopwatch;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::resource_pool::ResourcePool;

/// How often the loops look at the stop token.
const CHECK_EVERY: u64 = 4096;

/// `ops` cycles per measurement, `runs` measurements (the median is
/// reported), on a pool of `resources`. Stops between checks of `stop`
/// with the runs finished so far. Figures: `{"ops", "runs", "runs_done",
/// "pool_per_s", "semaphore_per_s"}` (`null` when no run finished).
pub async fn pool_vs_semaphore(
    resources: usize,
    ops: u64,
    runs: u32,
    stop: &CancellationToken,
    print: bool,
) -> anyhow::Result<Value> {
    let (mut pooled, mut bare) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let pool = ResourcePool::new(vec![0u64; resources], Duration::from_secs(1));
        let watch = Stopwatch::start();
        for i in 0..ops {
            if i % CHECK_EVERY == 0 && stop.is_cancelled() {
                break;
            }
            // Uncontended: the fast path every time.
            let mut resource = pool.acquire().await?;
            *resource += 1;
        }
        let pool_rate = ops as f64 / watch.elapsed().as_secs_f64().max(1e-9);
        let semaphore = Arc::new(tokio::sync::Semaphore::new(resources));
        let watch = Stopwatch::start();
        for i in 0..ops {
            if i % CHECK_EVERY == 0 && stop.is_cancelled() {
                break;
            }
            // Never closed, so acquire cannot fail.
            let permit = semaphore.acquire().await.context("semaphore closed")?;
            drop(std::hint::black_box(permit));
        }
        if stop.is_cancelled() {
            break; // this run was cut short: not a measurement
        }
        pooled.push(pool_rate);
        bare.push(ops as f64 / watch.elapsed().as_secs_f64().max(1e-9));
        if print {
            println!(
                "run {run}: pool {pool_rate:>12.0} acquire+release/s   bare Semaphore {:>12.0}/s",
                bare[bare.len() - 1]
            );
        }
    }
    let runs_done = pooled.len();
    let (pooled, bare) = (median(pooled), median(bare));
    if print && let (Some(pooled), Some(bare)) = (pooled, bare) {
        println!(
            "median of {runs_done} runs, {ops} cycles each: ResourcePool {pooled:.0}/s, bare tokio Semaphore {bare:.0}/s"
        );
    }
    Ok(json!({
        "ops": ops, "runs": runs, "runs_done": runs_done,
        "pool_per_s": pooled.map(f64::round), "semaphore_per_s": bare.map(f64::round),
    }))
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}
