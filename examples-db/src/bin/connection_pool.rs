//! connection-pool: seed Example 6 on real database connections.
//!
//! Opens a pool of single sqlx connections (SQLite in a temp dir by
//! default, PostgreSQL with `--database-url`), creates and seeds a table,
//! runs concurrent workers doing real reads and writes, prints live pool
//! stats, and closes the pool cleanly. The pattern is in `examples_db::pool`.
//!
//! ```text
//! cargo run --bin connection-pool
//! cargo run --bin connection-pool -- --workers 64 --requests 200 --hold-ms 0
//! cargo run --bin connection-pool -- --database-url postgres://postgres@127.0.0.1:5432/test
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use common::LatencySummary;
use examples_db::managers::{Backend, PoolDemo, run_on_database};
use examples_db::pool::{Manager, Pool, PoolConfig};
use examples_db::store::{ItemStore, ItemsTable};
use examples_db::workload::{self, Workload};
use tokio_util::sync::CancellationToken;

/// Seed Example 6 (connection pool management), ported: a generic async
/// pool with FIFO waiters, overflow, health checks and drift-free stats,
/// on real SQLite (default, temp dir, WAL) or PostgreSQL connections.
#[derive(Debug, Parser)]
#[command(version, long_about = None)]
struct Args {
    /// PostgreSQL URL (postgres://user@host:port/db); default: SQLite in a temp dir.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Connections kept open.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    size: u16,
    /// Extra connections opened under load, closed when returned.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(0..=1000))]
    max_overflow: u16,
    /// Concurrent workers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    workers: u32,
    /// Requests per worker (each: acquire, SELECT, UPDATE, hold, release).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    requests: u32,
    /// Milliseconds each request keeps its connection after its queries.
    #[arg(long, default_value_t = 20)]
    hold_ms: u64,
    /// Rows in the demo table.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=10_000_000))]
    rows: i64,
    /// Longest wait for a connection, in milliseconds.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    acquire_timeout_ms: u64,
    /// Live stats interval in milliseconds (0 = off).
    #[arg(long, default_value_t = 100)]
    stats_every_ms: u64,
    /// Seed for the workers' row choices.
    #[arg(long, default_value_t = 6)]
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
        size: args.size.into(),
        max_overflow: args.max_overflow.into(),
        acquire_timeout: Duration::from_millis(args.acquire_timeout_ms),
    };
    let demo = Demo {
        args: &args,
        shutdown,
    };
    run_on_database(
        args.database_url.as_deref(),
        config,
        "connection_pool_demo",
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
        let Backend {
            name: backend,
            label,
        } = backend;
        let story = !args.output.json;
        let c = pool.config();
        if story {
            println!("connection-pool (seed 6): {label}");
            println!(
                "pool: size {} + overflow {}, acquire timeout {:?}",
                c.size, c.max_overflow, c.acquire_timeout
            );
        }
        pool.fill().await.context("open the pool's connections")?;
        pool.get()
            .await?
            .create_items(&table, args.rows)
            .await
            .context("create the demo table")?;
        if story {
            println!(
                "opened {} connections; table {}: {} rows",
                c.size,
                table.name(),
                args.rows
            );
            println!(
                "{} workers x {} requests (SELECT + UPDATE, holding the connection {} ms)",
                args.workers, args.requests, args.hold_ms
            );
        }
        let work = Workload {
            workers: args.workers as usize,
            requests_per_worker: args.requests as usize,
            rows: args.rows,
            hold: Duration::from_millis(args.hold_ms),
            seed: args.seed,
        };
        let mut run = std::pin::pin!(workload::run(&pool, &table, work, shutdown.clone()));
        let report = if story && args.stats_every_ms > 0 {
            let mut ticks = tokio::time::interval(Duration::from_millis(args.stats_every_ms));
            ticks.tick().await; // the first tick is immediate
            let started = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    report = &mut run => break report,
                    _ = ticks.tick() => println!("  [{:>6.2} s] {}", started.elapsed().as_secs_f64(), pool.stats()),
                }
            }
        } else {
            run.await
        };
        // Clean up our PostgreSQL table (a SQLite temp dir goes with the pool).
        if backend == "postgres" {
            pool.get()
                .await?
                .drop_items(&table)
                .await
                .context("drop the demo table")?;
        }
        let before_close = pool.stats();
        let close = pool.close(Duration::from_secs(5)).await;
        let after = pool.stats();
        let qps = report.ok as f64 / report.elapsed_s.max(1e-9);
        if args.output.json {
            let summary = serde_json::json!({
                "example": "connection-pool", "backend": backend,
                "workers": args.workers, "requests_per_worker": args.requests,
                "ok": report.ok, "failed": report.failed, "skipped": report.skipped,
                "elapsed_s": report.elapsed_s, "requests_per_s": qps,
                "latency": report.latency, "pool": before_close, "close": close,
                "connections_created": after.created, "connections_closed": after.closed,
            });
            println!("{summary}");
        } else {
            println!(
                "done: {} requests ok, {} failed, {} skipped in {:.2} s ({qps:.0} requests/s)",
                report.ok, report.failed, report.skipped, report.elapsed_s
            );
            println!(
                "request latency (acquire + SELECT + UPDATE + hold):\n{}\n{}",
                LatencySummary::HEADER,
                report.latency
            );
            println!(
                "acquire wait:\n{}\n{}",
                LatencySummary::HEADER,
                before_close.wait
            );
            println!(
                "pool: created {}, closed {} before shutdown (overflow returned), health-check failures {}, timeouts {}",
                before_close.created,
                before_close.closed,
                before_close.health_check_failures,
                before_close.timeouts
            );
            println!(
                "closed: {} idle connections, {} still in use; created {} = closed {}",
                close.closed_idle, close.still_in_use, after.created, after.closed
            );
        }
        if report.failed > 0 {
            bail!(
                "{} of {} requests failed (see the log)",
                report.failed,
                report.ok + report.failed
            );
        }
        Ok(())
    }
}
