//! async-cache: seed Example 12, the same skewed lookups straight to the
//! database and then through `examples_db::cache` (`get_or_load`).
//!
//! ```text
//! cargo run --bin async-cache
//! cargo run --bin async-cache -- --count 100000 --concurrency 64 --capacity 50
//! cargo run --bin async-cache -- --database-url postgres://postgres@127.0.0.1:5432/test
//! cargo run --release --bin async-cache -- --bench
//! ```

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use common::{Example, Report, args};
use examples_db::cache::Cache;
use examples_db::demo::{bench, db, store::Item, story, workload};
use examples_db::pool::PoolConfig;
use tokio_util::sync::CancellationToken;

/// Seed Example 12 (the async cache under test), ported: TTL + LRU,
/// single-flight loads, no lock across an await; shown as a read-through
/// cache over SQLite (default, temp dir) or PostgreSQL (--database-url).
/// `--bench` measures cache hits per second instead.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// PostgreSQL URL (postgres://user@host:port/db); default: SQLite in a temp dir.
    #[arg(long, value_name = "URL", value_parser = db::database_url, conflicts_with = "bench")]
    database_url: Option<String>,
    /// Distinct keys requested (a skewed draw: low ids are hot).
    #[arg(long, default_value = "300", value_parser = args::count(1i64, 1_000_000))]
    keys: i64,
    /// Lookups per phase [default: 5000; with --bench, reads per round: 20000000].
    #[arg(long, value_parser = args::count(1u64, 1_000_000_000))]
    count: Option<u64>,
    /// Concurrent workers.
    #[arg(long, default_value = "16", value_parser = args::count(1usize, 10_000))]
    concurrency: usize,
    /// Cache capacity (entries).
    #[arg(long, default_value = "200", value_parser = args::count(1usize, 10_000_000))]
    capacity: usize,
    /// Time to live of a cached entry.
    #[arg(long, default_value = "60s", value_parser = args::duration(Duration::from_millis(1), args::MAX_DURATION))]
    ttl: Duration,
    /// Pooled database connections.
    #[arg(long, default_value = "4", value_parser = args::count(1usize, 1000))]
    pool_size: usize,
    /// Seed for the request sequence.
    #[arg(long, default_value = "12", value_parser = args::count(0u64, u64::MAX))]
    seed: u64,
    /// Benchmark cache hits per second (no database).
    #[arg(long)]
    bench: bool,
    /// Benchmark rounds per case (the median is reported).
    #[arg(long, default_value = "5", value_parser = args::count(1u32, 100), requires = "bench")]
    runs: u32,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "async-cache";
    const SEED: Option<u8> = Some(12);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let story = !args.output.json;
    if args.bench {
        let figures =
            bench::cache(args.count.unwrap_or(20_000_000), args.runs, &stop, story).await?;
        return Ok(Report::ok().figures(figures));
    }
    let (size, acquire_timeout) = (args.pool_size, Duration::from_secs(10));
    let config = PoolConfig {
        size,
        max_overflow: 0,
        acquire_timeout,
    };
    let url = args.database_url.as_deref();
    let db = Arc::new(db::open(url, config, "async_cache_demo", Args::NAME)?);
    db.prepare(args.keys).await?;
    let count = args.count.unwrap_or(5000);
    let ids = Arc::new(workload::skewed_ids(count, args.keys, args.seed));
    let (concurrency, capacity, ttl) = (args.concurrency, args.capacity, args.ttl);
    if story {
        let cache = format!("capacity {capacity}, TTL {ttl:?}");
        story::cache_opening(&db, args.keys, ids.len(), concurrency, &cache);
    }
    let direct = workload::lookups(&ids, concurrency, &stop, {
        let db = Arc::clone(&db);
        move |id| {
            let db = Arc::clone(&db);
            async move { Ok(db.load_item(id).await?) }
        }
    })
    .await;
    let capacity = NonZeroUsize::new(capacity).context("capacity must be positive")?;
    let cache: Arc<Cache<i64, Arc<Item>>> = Arc::new(Cache::new(capacity, ttl));
    let cached = workload::lookups(&ids, concurrency, &stop, {
        let (db, cache) = (Arc::clone(&db), Arc::clone(&cache));
        move |id| {
            let (db, cache) = (Arc::clone(&db), Arc::clone(&cache));
            async move { Ok(cache.get_or_load(id, || db.load_item(id)).await?) }
        }
    })
    .await;
    db.drop_table().await?;
    db.pool.close(Duration::from_secs(5)).await;
    let (phases, stats) = ([direct, cached], cache.stats());
    Ok(story::cache_report(&db, concurrency, phases, stats, story))
}
