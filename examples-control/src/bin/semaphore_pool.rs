//! `semaphore-pool`: 20 users share 5 resources through a pool whose permit
//! is the resource (seed Example 8). See `examples_control::resource_pool`.
//!
//! ```text
//! cargo run --bin semaphore-pool
//! cargo run --release --bin semaphore-pool -- --bench
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use common::{Example, Report, args};
use examples_control::demo::{bench, users};
use examples_control::resource_pool::ResourcePool;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

/// Seed Example 8 (Semaphore for Resource Limiting), ported: users acquire
/// a guard that owns one specific resource (FIFO, with a timeout), use it,
/// and give it back on drop; prints a timeline of who held which resource.
/// On Ctrl-C / SIGTERM the pool closes, holders get --drain-timeout to
/// finish and are then cancelled; a second signal exits at once.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Users, all starting at once [default: 20; with --bench, acquire+release cycles per run: 5000000].
    #[arg(long, value_parser = args::count(1u64, 1_000_000_000))]
    count: Option<u64>,
    /// Resources in the pool.
    #[arg(long, default_value = "5", value_parser = args::count(1usize, 10_000))]
    resources: usize,
    /// Shortest time a user holds a resource.
    #[arg(long, default_value = "100ms", value_parser = args::duration(Duration::ZERO, HOUR))]
    hold_min: Duration,
    /// Longest time a user holds a resource.
    #[arg(long, default_value = "300ms", value_parser = args::duration(Duration::ZERO, HOUR))]
    hold_max: Duration,
    /// How long a user waits for a resource before giving up.
    #[arg(long, default_value = "5s", value_parser = args::duration(Duration::from_millis(1), HOUR))]
    timeout: Duration,
    /// On a stop, how long holders may keep their resources before they are cancelled.
    #[arg(long, default_value = "5s", value_parser = args::duration(Duration::ZERO, HOUR))]
    drain_timeout: Duration,
    /// Seed for the hold times.
    #[arg(long, default_value = "8", value_parser = args::count(0u64, u64::MAX))]
    seed: u64,
    /// Measure acquire+release per second instead of running the demo.
    #[arg(long)]
    bench: bool,
    /// Benchmark repetitions (the median is reported).
    #[arg(long, default_value = "3", value_parser = args::count(1u32, 100), requires = "bench")]
    runs: u32,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "semaphore-pool";
    const SEED: Option<u8> = Some(8);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
    fn validate(&self) -> Result<(), String> {
        if self.hold_min > self.hold_max {
            return Err(format!(
                "--hold-min ({:?}) must not exceed --hold-max ({:?})",
                self.hold_min, self.hold_max
            ));
        }
        match self.count {
            Some(n) if !self.bench && n > 100_000 => {
                Err(format!("--count {n}: at most 100000 users"))
            }
            _ => Ok(()),
        }
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let story = !args.output.json;
    if args.bench {
        let ops = args.count.unwrap_or(5_000_000);
        let figures =
            bench::pool_vs_semaphore(args.resources, ops, args.runs, &stop, story).await?;
        return Ok(Report::ok().figures(figures));
    }
    let (count, size) = (args.count.unwrap_or(20) as usize, args.resources);
    let pool = ResourcePool::new(users::resources(size), args.timeout);
    if story {
        let (min, max, timeout, seed) = (args.hold_min, args.hold_max, args.timeout, args.seed);
        println!(
            "{count} users, {size} resources, hold {min:?}-{max:?}, acquire timeout {timeout:?}, seed {seed}"
        );
    }
    // Hold times in nanoseconds: both bounds are at most an hour.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let range = args.hold_min.as_nanos() as u64..=args.hold_max.as_nanos() as u64;
    let holds = (0..count)
        .map(|_| Duration::from_nanos(rng.random_range(range.clone())))
        .collect();
    let report = users::run(&pool, holds, &stop, args.drain_timeout, move |user, resource, waited, in_use| {
        if story {
            println!("user {user:>2} got    R{resource} after waiting {:>4} ms (in use {in_use}/{size})", waited.as_millis());
        }
    })
    .await;
    let stats = pool.stats(); // the users' figures, before the late caller below
    pool.close();
    let late = pool.acquire().await.map(|_| ()); // shows what close() does
    let failure = report.failure(count, &stats, late.is_ok(), args.drain_timeout);
    if story {
        report.print(count, &stats, late.err());
    }
    let figures = serde_json::json!({
        "users": count, "resources": size, "served": report.spans.len(), "timed_out": report.timed_out,
        "refused_closed": report.refused, "cancelled": report.cancelled, "pool": stats,
    });
    Ok(Report::ok().figures(figures).fail_if(failure))
}
