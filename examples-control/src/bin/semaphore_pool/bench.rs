//! `--bench`: uncontended acquire+release per second, beside a bare tokio
//! `Semaphore` doing the same, so the cost of the pool's bookkeeping shows.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::Stopwatch;
use examples_control::resource_pool::ResourcePool;
use serde_json::json;

use super::Args;

pub(super) async fn run(args: &Args) -> anyhow::Result<()> {
    let ops = args.bench_ops;
    let (mut pooled, mut bare) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let pool = ResourcePool::new(vec![0u64; args.resources as usize], Duration::from_secs(1));
        let watch = Stopwatch::start();
        for _ in 0..ops {
            // Uncontended: the fast path every time.
            let mut resource = pool.acquire().await?;
            *resource += 1;
        }
        pooled.push(ops as f64 / watch.elapsed().as_secs_f64());
        let semaphore = Arc::new(tokio::sync::Semaphore::new(args.resources as usize));
        let watch = Stopwatch::start();
        for _ in 0..ops {
            // Never closed, so acquire cannot fail.
            let permit = semaphore.acquire().await.context("semaphore closed")?;
            drop(std::hint::black_box(permit));
        }
        bare.push(ops as f64 / watch.elapsed().as_secs_f64());
        if !args.output.json {
            println!(
                "run {run}: pool {:>12.0} acquire+release/s   bare Semaphore {:>12.0}/s",
                pooled[pooled.len() - 1],
                bare[bare.len() - 1]
            );
        }
    }
    let (pooled, bare) = (median(&mut pooled), median(&mut bare));
    if args.output.json {
        println!(
            "{}",
            json!({"bench": "uncontended acquire+release", "ops": ops, "runs": args.runs,
            "pool_per_sec": pooled.round(), "semaphore_per_sec": bare.round()})
        );
    } else {
        println!(
            "median of {} runs, {ops} cycles each: ResourcePool {pooled:.0}/s, bare tokio Semaphore {bare:.0}/s",
            args.runs
        );
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
