//! `priority-queue`: seed Example 7, its `--bench` race and the durable
//! queue (`--store`); the story and benchmarks live in `examples_queue::demo`.

use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use common::{Example, Report, args};
use examples_queue::demo::SimulatedWork;
use examples_queue::demo::{bench, store, story};
use examples_queue::processor::Config;
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

/// Seed Example 7 (advanced producer-consumer): producers push tasks with
/// random priorities (0 = urgent .. 3 = low) into a bounded priority queue,
/// consumers process them, failed tasks are retried then dead-lettered, and a
/// monitor prints the queue. Exits 0 when every task completed, 1 if any was
/// dead-lettered or a stop lost work, 130 after a clean stop (Ctrl-C). With
/// --store postgres://... the queue is in PostgreSQL, one role per process.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Producer tasks (in-process).
    #[arg(long, default_value = "3", value_parser = args::count(1usize, 1000))]
    producers: usize,
    /// Consumers taking work at once (per process with --store).
    #[arg(long, default_value = "5", value_parser = args::count(1usize, 1000))]
    concurrency: usize,
    /// Tasks in total [default: 400; 1000000 with --bench; 2000 with --bench --store].
    #[arg(long, value_parser = args::count(1u64, 100_000_000))]
    count: Option<u64>,
    /// Queue capacity; producers wait while it is full.
    #[arg(long, default_value = "50", value_parser = args::count(1usize, 1_000_000))]
    capacity: usize,
    /// Probability (0 to 1) that one processing attempt fails.
    #[arg(long, default_value = "0.1", value_parser = args::fraction())]
    error_rate: f64,
    /// Processing time per attempt: "MIN-MAX" or one duration (2ms-20ms, 5ms).
    #[arg(long, default_value = "2ms-20ms", value_parser = story::processing)]
    processing: RangeInclusive<Duration>,
    /// Retries after a failed attempt before a task is dead-lettered.
    #[arg(long, default_value = "3", value_parser = args::count(0u32, 1000))]
    retries: u32,
    /// Ageing: every STEP a task waits makes it one level more urgent ("--aging": 100ms).
    #[arg(long, value_name = "STEP", num_args = 0..=1, default_missing_value = "100ms",
          value_parser = args::duration(Duration::from_millis(1), HOUR))]
    aging: Option<Duration>,
    /// Tasks per push/pop (1 = strict priority order; more = throughput).
    #[arg(long, default_value = "1", value_parser = args::count(1usize, 4096))]
    batch: usize,
    /// Monitor interval (0s = no monitor).
    #[arg(long, default_value = "200ms", value_parser = args::duration(Duration::ZERO, HOUR))]
    monitor: Duration,
    /// Seed for priorities, failures and processing times.
    #[arg(long, default_value = "7", value_parser = args::count(0u64, u64::MAX))]
    seed: u64,
    /// After Ctrl-C/SIGTERM, how long consumers may finish accepted tasks.
    #[arg(long, default_value = "10s", value_parser = args::duration(Duration::from_millis(1), HOUR))]
    drain_timeout: Duration,
    /// Benchmark mode: the queue against tokio mpsc, or with --store the
    /// PostgreSQL queue (4 consumers in 2 processes) beside the in-process one.
    #[arg(long)]
    bench: bool,
    /// Benchmark runs per contender; the median is reported.
    #[arg(long, default_value = "3", value_parser = args::count(1u32, 50))]
    runs: u32,
    #[command(flatten)]
    store: store::StoreFlags,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "priority-queue";
    const SEED: Option<u8> = Some(7);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
    fn validate(&self) -> Result<(), String> {
        if self.bench && self.store.store.is_none() && self.batch > self.capacity {
            return Err(format!(
                "--batch ({}) must not exceed --capacity ({})",
                self.batch, self.capacity
            ));
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let work = SimulatedWork {
        processing: args.processing.clone(),
        error_rate: args.error_rate,
        seed: args.seed,
    };
    let quiet = args.output.json;
    let stored = args.store.store.is_some();
    let config = Config {
        producers: args.producers,
        consumers: args.concurrency,
        tasks: args
            .count
            .unwrap_or(store::default_count(args.bench, stored)),
        capacity: args.capacity,
        aging: args.aging,
        max_retries: args.retries,
        batch: args.batch,
        seed: args.seed,
        monitor_interval: (!args.monitor.is_zero()).then_some(args.monitor),
        drain_timeout: args.drain_timeout,
    };
    if stored {
        return store::run(args.store, config, work, quiet, args.bench, stop).await;
    }
    if args.bench {
        return bench::run(bench::Shape::of(&config), args.runs, quiet, &stop).await;
    }
    story::run(config, work, quiet, stop).await
}
