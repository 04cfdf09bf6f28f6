//! async-cache: seed Example 12 as a read-through cache in front of the
//! connection-pool database.
//!
//! Runs the same skewed sequence of lookups twice, straight to the database
//! through the pool and then through `examples_db::cache::Cache`
//! (`get_or_load`), and prints the latency of each and the hit ratio.
//!
//! ```text
//! cargo run --bin async-cache
//! cargo run --bin async-cache -- --requests 100000 --workers 64 --capacity 50
//! cargo run --bin async-cache -- --database-url postgres://postgres@127.0.0.1:5432/test
//! ```

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use common::LatencySummary;
use examples_db::cache::Cache;
use examples_db::managers::{Backend, PoolDemo, run_on_database};
use examples_db::pool::{Manager, Pool, PoolConfig};
use examples_db::store::{Item, ItemStore, ItemsTable};
use examples_db::workload;
use rand::{RngExt, SeedableRng};
use tokio_util::sync::CancellationToken;

/// Seed Example 12 (the async cache under test), ported: TTL + LRU,
/// single-flight loads, no lock across an await; shown as a read-through
/// cache over SQLite (default, temp dir) or PostgreSQL (--database-url).
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// PostgreSQL URL (postgres://user@host:port/db); default: SQLite in a temp dir.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Distinct keys requested (a skewed draw: low ids are hot).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    keys: i64,
    /// Lookups per phase.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    requests: u32,
    /// Concurrent workers.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    workers: u32,
    /// Cache capacity (entries).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
    /// Time to live of a cached entry, in milliseconds.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    ttl_ms: u64,
    /// Pooled database connections.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pool_size: u16,
    /// Seed for the request sequence.
    #[arg(long, default_value_t = 12)]
    seed: u64,
    #[command(flatten)]
    output: common::OutputArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    // Handlers are installed by this call, before any work starts.
    let shutdown = common::shutdown_token();
    common::exit_code(run(args, shutdown).await)
}

async fn run(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = PoolConfig {
        size: args.pool_size.into(),
        max_overflow: 0,
        acquire_timeout: Duration::from_secs(10),
    };
    let demo = Demo {
        args: &args,
        shutdown,
    };
    run_on_database(
        args.database_url.as_deref(),
        config,
        "async_cache_demo",
        demo,
    )
    .await
}

/// The demo proper: one body for both backends, generic over the pool's
/// manager (see [`PoolDemo`] for why it is a type and not a function).
struct Demo<'a> {
    args: &'a Args,
    shutdown: CancellationToken,
}

impl PoolDemo for Demo<'_> {
    async fn run<M>(self, pool: Pool<M>, table: ItemsTable, backend: Backend) -> anyhow::Result<()>
    where
        M: Manager,
        M::Connection: ItemStore,
    {
        let Demo { args, shutdown } = self;
        let Backend { name: backend, .. } = backend;
        pool.fill().await.context("open the pool's connections")?;
        pool.get()
            .await?
            .create_items(&table, args.keys)
            .await
            .context("create the demo table")?;
        // A skewed sequence (u^3 puts 46% of draws in the lowest 10% of ids),
        // the same for both phases.
        let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
        let ids: Arc<Vec<i64>> = Arc::new(
            (0..args.requests)
                .map(|_| 1 + (rng.random::<f64>().powi(3) * args.keys as f64) as i64)
                .map(|id| id.min(args.keys))
                .collect(),
        );
        if !args.output.json {
            println!(
                "async-cache (seed 12): read-through cache over {backend}, {} rows",
                args.keys
            );
            println!(
                "{} lookups by {} workers, skewed towards low ids; cache capacity {}, TTL {} ms",
                ids.len(),
                args.workers,
                args.capacity,
                args.ttl_ms
            );
        }

        let direct = workload::lookups(&ids, args.workers, &shutdown, {
            let (pool, table) = (pool.clone(), table.clone());
            move |id| {
                let (pool, table) = (pool.clone(), table.clone());
                async move { Ok(Arc::new(workload::lookup(&pool, &table, id).await?)) }
            }
        })
        .await;

        // Capacity is >= 1 by the clap range.
        let capacity =
            NonZeroUsize::new(args.capacity as usize).context("capacity must be positive")?;
        let cache: Arc<Cache<i64, Arc<Item>>> =
            Arc::new(Cache::new(capacity, Duration::from_millis(args.ttl_ms)));
        let cached = workload::lookups(&ids, args.workers, &shutdown, {
            let (pool, table, cache) = (pool.clone(), table.clone(), Arc::clone(&cache));
            move |id| {
                let (pool, table, cache) = (pool.clone(), table.clone(), Arc::clone(&cache));
                async move {
                    let load = || async { workload::lookup(&pool, &table, id).await.map(Arc::new) };
                    Ok(cache.get_or_load(id, load).await?)
                }
            }
        })
        .await;

        if backend == "postgres" {
            pool.get()
                .await?
                .drop_items(&table)
                .await
                .context("drop the demo table")?;
        }
        pool.close(Duration::from_secs(5)).await;
        let stats = cache.stats();
        let speedup =
            direct.latency.mean.as_secs_f64() / cached.latency.mean.as_secs_f64().max(1e-12);
        if args.output.json {
            let summary = serde_json::json!({
                "example": "async-cache", "backend": backend, "requests": ids.len(), "workers": args.workers,
                "direct": direct, "cached": cached, "cache": stats, "hit_ratio": stats.hit_ratio(),
                "mean_speedup": speedup,
            });
            println!("{summary}");
        } else {
            for (name, report) in [
                ("direct (pool + SELECT)", &direct),
                ("through the cache", &cached),
            ] {
                println!(
                    "{name}: {} ok, {} failed, {} skipped in {:.3} s ({:.0} lookups/s)",
                    report.ok,
                    report.failed,
                    report.skipped,
                    report.elapsed_s,
                    report.ok as f64 / report.elapsed_s.max(1e-9)
                );
                println!("{}\n{}", LatencySummary::HEADER, report.latency);
            }
            println!(
                "cache: hit ratio {:.1}% ({} hits, {} misses), {} loads ({} misses coalesced into another's load), {} evictions, {} entries",
                stats.hit_ratio() * 100.0,
                stats.hits,
                stats.misses,
                stats.loads,
                stats.coalesced,
                stats.evictions,
                stats.len
            );
            println!("mean lookup latency: {speedup:.1}x lower through the cache");
        }
        if direct.failed + cached.failed > 0 {
            bail!(
                "{} lookups failed (see the log)",
                direct.failed + cached.failed
            );
        }
        Ok(())
    }
}
