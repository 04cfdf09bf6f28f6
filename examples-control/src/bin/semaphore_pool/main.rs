//! `semaphore-pool`: 20 users share 5 resources through a pool whose permit
//! is the resource (seed Example 8). See `examples_control::resource_pool`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

mod bench;
use common::{LatencySummary, Stopwatch};
use examples_control::resource_pool::{PoolError, ResourcePool};
use examples_control::timeline::{self, Span};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::task::JoinSet;

/// Seed Example 8 (Semaphore for Resource Limiting), ported: users acquire
/// a guard that owns one specific resource (FIFO, with a timeout), use it,
/// and give it back on drop; prints a timeline of who held which resource.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Users competing for the resources (all start at once, as in the seed).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    users: u32,
    /// Resources in the pool.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    resources: u32,
    /// Shortest time a user holds a resource, in milliseconds.
    #[arg(long, default_value_t = 100)]
    hold_min_ms: u64,
    /// Longest time a user holds a resource, in milliseconds.
    #[arg(long, default_value_t = 300)]
    hold_max_ms: u64,
    /// How long a user waits for a resource before giving up, in milliseconds.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Seed for the hold times.
    #[arg(long, default_value_t = 8)]
    seed: u64,
    /// Measure acquire+release per second instead of running the demo.
    #[arg(long)]
    bench: bool,
    /// Acquire+release cycles per benchmark measurement.
    #[arg(long, default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    bench_ops: u64,
    /// Benchmark repetitions (the median is reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    #[command(flatten)]
    output: common::OutputArgs,
}

/// A pooled thing with an identity, so the timeline can show which is which.
#[derive(Debug)]
struct Resource {
    id: usize,
    uses: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    let result = if args.bench {
        bench::run(&args).await
    } else {
        demo(&args).await
    };
    common::exit_code(result)
}

async fn demo(args: &Args) -> anyhow::Result<()> {
    if args.hold_min_ms > args.hold_max_ms {
        bail!(
            "--hold-min-ms ({}) must not exceed --hold-max-ms ({})",
            args.hold_min_ms,
            args.hold_max_ms
        );
    }
    let (users, size) = (args.users as usize, args.resources as usize);
    let timeout = Duration::from_millis(args.timeout_ms);
    let pool = ResourcePool::new(
        (0..size).map(|id| Resource { id, uses: 0 }).collect(),
        timeout,
    );
    let story = !args.output.json;
    if story {
        println!(
            "{users} users, {size} resources, hold {}-{} ms, acquire timeout {} ms, seed {}",
            args.hold_min_ms, args.hold_max_ms, args.timeout_ms, args.seed
        );
    }
    let clock = Arc::new(Stopwatch::start());
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut tasks = JoinSet::new();
    for user in 0..users {
        let hold = Duration::from_millis(rng.random_range(args.hold_min_ms..=args.hold_max_ms));
        let (pool, clock) = (pool.clone(), Arc::clone(&clock));
        tasks.spawn(async move {
            let mut resource = pool.acquire().await?;
            let start = clock.elapsed();
            resource.uses += 1;
            if story {
                println!(
                    "[{:>7.3}s] user {user:>2} got    R{} after waiting {:>4} ms (in use {}/{})",
                    start.as_secs_f64(),
                    resource.id,
                    resource.waited().as_millis(),
                    pool.in_use(),
                    size
                );
            }
            tokio::time::sleep(hold).await; // "use" the resource
            let span = Span {
                user,
                resource: resource.id,
                start,
                end: clock.elapsed(),
            };
            drop(resource); // back on the shelf, then the permit is released
            Ok::<_, PoolError>(span)
        });
    }
    // Ctrl-C / SIGTERM: close the pool, so every waiter gets `Closed` at
    // once; holders finish their (bounded) hold and return their resources.
    let shutdown = common::shutdown_signal();
    tokio::pin!(shutdown);
    let (mut spans, mut timed_out, mut refused) = (Vec::new(), 0usize, 0usize);
    loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            () = &mut shutdown, if !pool.is_closed() => { pool.close(); continue; }
        };
        let Some(joined) = joined else { break };
        match joined.context("user task panicked")? {
            Ok(span) => spans.push(span),
            Err(PoolError::Timeout(_)) => timed_out += 1,
            Err(PoolError::Closed) => refused += 1,
        }
    }
    let interrupted = pool.is_closed();
    let stats = pool.stats(); // the users' figures, before the late caller below
    pool.close();
    let late = pool.acquire().await.map(|_| ()); // shows what close() does
    // Nothing lost: every user was served or told why not, and the pool
    // never lent more than it has nor lent one resource twice at once.
    if spans.len() + timed_out + refused != users || stats.high_water > size || stats.in_use != 0 {
        bail!(
            "accounting broken: {} served + {timed_out} timed out + {refused} refused != {users} users, or high water {} > {size}",
            spans.len(),
            stats.high_water
        );
    }
    if let Some((a, b)) = timeline::first_overlap(&spans) {
        bail!(
            "resource R{} held by users {} and {} at once",
            a.resource,
            a.user,
            b.user
        );
    }
    if args.output.json {
        println!(
            "{}",
            json!({"users": users, "resources": size, "served": spans.len(), "timed_out": timed_out,
            "refused_closed": refused, "interrupted": interrupted, "elapsed_ms": clock.elapsed().as_secs_f64() * 1e3, "pool": stats})
        );
        return Ok(());
    }
    println!("\n{}", timeline::render(&spans, size, 72));
    println!(
        "served {} of {users}, timed out {timed_out}, refused (closed) {refused}; high-water {}/{size}; in use now {}",
        spans.len(),
        stats.high_water,
        stats.in_use
    );
    println!(
        "wait for a resource:\n{}\n{}",
        LatencySummary::HEADER,
        stats.wait
    );
    match late {
        Err(err) => println!("after close(): a late acquire fails at once: {err}"),
        Ok(()) => bail!("acquire succeeded on a closed pool"),
    }
    Ok(())
}
