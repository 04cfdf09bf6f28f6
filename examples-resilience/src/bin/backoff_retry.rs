//! `backoff-retry`: seed Example 10 against the sandbox's `/flaky` endpoint.
//!
//! Prints the four jitter strategies side by side, runs the seed's three
//! configurations (plus a `Retry-After` run with a deadline, and a 404 that
//! stops at once), and with `--bench` measures the happy-path overhead.
//! The pattern lives in `examples_resilience::retry`; the scenario in
//! `examples_resilience::demo::retry_story`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use common::args;
use common::driver::{Example, Report};
use examples_resilience::demo::bench;
use examples_resilience::demo::retry_story::{self, Story};
use examples_resilience::http::{self, Target};
use tokio_util::sync::CancellationToken;

/// Retry with exponential backoff, jitter, a deadline and a retryability
/// classifier, against a flaky HTTP endpoint. With no arguments it starts
/// the in-process sandbox. Exit 1 if a run meant to succeed gave up.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Base URL of a sandbox-compatible server (default: start one in-process).
    #[arg(long)]
    url: Option<String>,
    /// Failure rate of `/flaky` (the seed's success_rate 0.4 is 0.6 here).
    #[arg(long, default_value = "0.6", value_parser = args::fraction())]
    fail_rate: f64,
    /// Seed for `/flaky` (run i uses seed + i) and for the jitter.
    #[arg(long, default_value = "129", value_parser = args::count(0u64, u64::MAX))]
    seed: u64,
    /// One "second" of the seed's delays (1s = the seed's real timings).
    #[arg(long, default_value = "100ms", value_parser = args::duration(Duration::from_millis(1), Duration::from_secs(1)))]
    unit: Duration,
    /// Largest response body read (an endless body fails at this size).
    #[arg(long, default_value = "4MiB", value_parser = args::bytes(1024, 1 << 30))]
    max_body: u64,
    /// Longest `Retry-After` obeyed; longer demands are clamped to it.
    #[arg(long, default_value = "5m", value_parser = args::duration(Duration::ZERO, args::MAX_DURATION))]
    max_retry_after: Duration,
    /// Measure the happy-path overhead instead of the demo (use --release).
    #[arg(long, conflicts_with_all = ["url", "fail_rate", "unit", "max_body", "max_retry_after"])]
    bench: bool,
    /// --bench: calls per variant and run.
    #[arg(long, default_value = "2000000", requires = "bench", value_parser = args::count(1000u64, 1_000_000_000))]
    count: u64,
    /// --bench: runs (the median is reported).
    #[arg(long, default_value = "3", requires = "bench", value_parser = args::count(1usize, 100))]
    runs: usize,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "backoff-retry";
    const SEED: Option<u8> = Some(10);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let json = args.output.json;
    if args.bench {
        let rounds = bench::rounds(args.runs, &stop, || {
            bench::retry_happy_path(args.count, &stop)
        })
        .await;
        if !json {
            bench::print("retry happy path", &rounds);
        }
        return Ok(Report::ok().figures(bench::figures("retry happy path", &rounds)));
    }
    let say = |line: String| {
        if !json {
            println!("{line}");
        }
    };
    let client = http::client(10 * args.unit)?;
    let target = Target::start(args.url.as_deref(), &client).await?;
    let story = Story {
        base: target.base.clone(),
        fail_rate: args.fail_rate,
        seed: args.seed,
        unit: args.unit,
        max_body: args.max_body,
        max_retry_after: args.max_retry_after,
    };
    let table = retry_story::jitter_table(&story, &say);
    let (runs, failed) = retry_story::play(&story, &client, &stop, &say).await;
    let failure = (!failed.is_empty()).then(|| format!("gave up: {}", failed.join("; ")));
    Ok(Report::ok()
        .figure("jitter_ms", table)
        .figure("runs", runs)
        .fail_if(failure))
}
