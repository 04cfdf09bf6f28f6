//! connection-pool: seed Example 6 on real database connections. The
//! pattern is `examples_db::pool`; the database set-up is demo support.
//!
//! ```text
//! cargo run --bin connection-pool
//! cargo run --bin connection-pool -- --concurrency 64 --count 20000 --hold 0s
//! cargo run --bin connection-pool -- --database-url postgres://postgres@127.0.0.1:5432/test
//! cargo run --release --bin connection-pool -- --bench   # beside deadpool
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use common::{Example, Report, args};
use examples_db::demo::{bench, db, story, workload};
use examples_db::pool::PoolConfig;
use tokio_util::sync::CancellationToken;

/// Seed Example 6 (connection pool management), ported: a generic async
/// pool with FIFO waiters, overflow, health checks and drift-free stats,
/// on real SQLite (default, temp dir, WAL) or PostgreSQL connections.
/// `--bench` measures acquire+release beside deadpool instead.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// PostgreSQL URL (postgres://user@host:port/db); default: SQLite in a temp dir.
    #[arg(long, value_name = "URL", value_parser = db::database_url, conflicts_with = "bench")]
    database_url: Option<String>,
    /// Connections kept open.
    #[arg(long, default_value = "5", value_parser = args::count(1usize, 1000))]
    size: usize,
    /// Extra connections opened under load, closed when returned.
    #[arg(long, default_value = "3", value_parser = args::count(0usize, 1000))]
    max_overflow: usize,
    /// Concurrent workers.
    #[arg(long, default_value = "10", value_parser = args::count(1usize, 100_000))]
    concurrency: usize,
    /// Requests in total (each: acquire, SELECT, UPDATE, hold, release)
    /// [default: 100; with --bench, acquires per round: 2000000].
    #[arg(long, value_parser = args::count(1u64, 1_000_000_000))]
    count: Option<u64>,
    /// How long each request keeps its connection after its queries.
    #[arg(long, default_value = "20ms", value_parser = args::duration(Duration::ZERO, Duration::from_secs(3600)))]
    hold: Duration,
    /// Rows in the demo table.
    #[arg(long, default_value = "1000", value_parser = args::count(1i64, 10_000_000))]
    rows: i64,
    /// Longest wait for a connection.
    #[arg(long, default_value = "5s", value_parser = args::duration(Duration::from_millis(1), Duration::from_secs(3600)))]
    timeout: Duration,
    /// Live stats interval (0s = off).
    #[arg(long, default_value = "100ms", value_parser = args::duration(Duration::ZERO, Duration::from_secs(3600)))]
    stats_every: Duration,
    /// Seed for the workers' row choices.
    #[arg(long, default_value = "6", value_parser = args::count(0u64, u64::MAX))]
    seed: u64,
    /// Benchmark acquire+release beside deadpool (trivial manager, no database).
    #[arg(long)]
    bench: bool,
    /// Benchmark rounds per case (the median is reported).
    #[arg(long, default_value = "5", value_parser = args::count(1u32, 100), requires = "bench")]
    runs: u32,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "connection-pool";
    const SEED: Option<u8> = Some(6);
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
        let figures = bench::pool(args.count.unwrap_or(2_000_000), args.runs, &stop, story).await?;
        return Ok(Report::ok().figures(figures));
    }
    let config = PoolConfig {
        size: args.size,
        max_overflow: args.max_overflow,
        acquire_timeout: args.timeout,
    };
    let db = db::open(
        args.database_url.as_deref(),
        config,
        "connection_pool_demo",
        Args::NAME,
    )?;
    db.prepare(args.rows).await?;
    let requests = args.count.unwrap_or(100) as usize;
    if story {
        story::pool_opening(&db, args.rows, args.concurrency, requests, args.hold);
    }
    let work = workload::Workload {
        concurrency: args.concurrency,
        requests,
        rows: args.rows,
        hold: args.hold,
        seed: args.seed,
    };
    let run = workload::run(&db.pool, &db.table, work, stop.clone());
    let report = workload::with_progress(run, story, args.stats_every, || db.pool.stats()).await;
    db.drop_table().await?;
    let before_close = db.pool.stats();
    let close = db.pool.close(Duration::from_secs(5)).await;
    let stats = [before_close, db.pool.stats()];
    Ok(story::pool_report(
        &db,
        args.concurrency,
        &report,
        stats,
        close,
        story,
    ))
}
