//! `priority-queue`: seed Example 7 (advanced producer-consumer) on a
//! bounded MPMC priority queue, with retries, dead letters, a monitor, and a
//! `--bench` mode that races the queue against a plain `tokio::sync::mpsc`.
//!
//! ```text
//! cargo run --bin priority-queue
//! cargo run --bin priority-queue -- --aging --error-rate 0.3
//! cargo run --release --bin priority-queue -- --bench
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use examples_queue::processor::{self, Config, SimulatedWork};

mod output;

/// Seed Example 7 (advanced producer-consumer), ported: producers push tasks
/// with random priorities (0 = urgent .. 3 = low) into a bounded priority
/// queue, consumers process them, failed tasks are retried then
/// dead-lettered, and a monitor prints the queue on an interval. Exits 1 if
/// produced != completed + dead-lettered at the end.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Producer tasks.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    producers: u16,
    /// Consumer tasks.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    consumers: u16,
    /// Tasks in total [default: 400, or 1000000 with --bench].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    tasks: Option<u64>,
    /// Queue capacity; producers wait while it is full.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    capacity: u32,
    /// Probability (0 to 1) that one processing attempt fails.
    #[arg(long, default_value_t = 0.1, value_parser = output::probability)]
    error_rate: f64,
    /// Processing time per attempt in ms: "MIN-MAX" or one value.
    #[arg(long, default_value = "2-20", value_parser = output::ms_range)]
    processing_ms: (u64, u64),
    /// Retries after a failed attempt before a task is dead-lettered.
    #[arg(long, default_value_t = 3)]
    max_retries: u32,
    /// Ageing: every MS a task waits makes it one level more urgent, so low
    /// priorities cannot starve ("--aging" alone: 100 ms).
    #[arg(long, value_name = "MS", num_args = 0..=1, default_missing_value = "100",
          value_parser = clap::value_parser!(u64).range(1..))]
    aging: Option<u64>,
    /// Tasks per push/pop (1 = strict priority order; more = throughput).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch: u32,
    /// Monitor interval in ms (0 = no monitor).
    #[arg(long, default_value_t = 200)]
    monitor_ms: u64,
    /// Seed for priorities, failures and processing times.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// After Ctrl-C/SIGTERM, how long consumers may drain accepted tasks.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    drain_timeout_secs: u64,
    /// Benchmark mode: the queue against tokio mpsc, no processing time
    /// (uses --producers, --consumers, --tasks, --capacity, --batch).
    #[arg(long)]
    bench: bool,
    /// Benchmark runs per contender; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
    #[command(flatten)]
    output: common::OutputArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    common::exit_code(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.bench {
        return output::bench(&args).await;
    }
    let (min_ms, max_ms) = args.processing_ms;
    let config = Config {
        producers: args.producers.into(),
        consumers: args.consumers.into(),
        tasks: args.tasks.unwrap_or(400),
        capacity: args.capacity as usize,
        aging: args.aging.map(Duration::from_millis),
        max_retries: args.max_retries,
        batch: args.batch as usize,
        seed: args.seed,
        monitor_interval: (args.monitor_ms > 0).then(|| Duration::from_millis(args.monitor_ms)),
        drain_timeout: Duration::from_secs(args.drain_timeout_secs),
    };
    let handler = SimulatedWork {
        processing: Duration::from_millis(min_ms)..=Duration::from_millis(max_ms),
        error_rate: args.error_rate,
        seed: args.seed,
    };
    if !args.output.json {
        output::banner(&config, &handler);
    }
    let json = args.output.json;
    let on_snapshot = move |snapshot: &processor::Snapshot| {
        if !json {
            output::snapshot(snapshot);
        }
    };
    let report = processor::run(config, handler, on_snapshot, common::shutdown_signal()).await?;
    if args.output.json {
        output::report_json(&report)?;
    } else {
        output::report(&report);
    }
    let c = report.counts;
    anyhow::ensure!(
        report.invariant_holds(),
        "invariant violated: produced {} != completed {} + dead-lettered {} (left queued {}, in flight {})",
        c.produced,
        c.completed,
        c.dead_lettered,
        report.left_queued,
        report.left_in_flight
    );
    Ok(())
}
