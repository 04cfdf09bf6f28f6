//! `circuit-breaker`: seed Example 14 with concurrent callers against the
//! sandbox's `/flaky` endpoint, whose failure rate changes phase by phase.
//!
//! Prints a timeline of the breaker's transitions as they happen and, per
//! phase, the calls made, failed, and spared by the open circuit. With
//! `--bench` it measures the closed breaker's overhead per call. The pattern
//! lives in `examples_resilience::breaker`; the scenario in
//! `examples_resilience::demo::breaker_story`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use common::args;
use common::driver::{Example, Report};
use examples_resilience::breaker::CircuitBreaker;
use examples_resilience::demo::bench;
use examples_resilience::demo::breaker_story::{self, Load};
use examples_resilience::http::{self, HttpError, Target};
use tokio_util::sync::CancellationToken;

/// A circuit breaker shared by concurrent callers of a flaky HTTP endpoint.
/// With no arguments it starts the in-process sandbox and runs four phases:
/// healthy, degraded (60% errors), outage (95% errors and hangs),
/// recovered. Exit 1 if no call succeeded at all.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Base URL of a sandbox-compatible server (default: start one in-process).
    #[arg(long)]
    url: Option<String>,
    /// Concurrent callers sharing the breaker.
    #[arg(long, default_value = "8", value_parser = args::count(1u32, 1024))]
    concurrency: u32,
    /// Length of each phase.
    #[arg(long, default_value = "1s", value_parser = args::duration(Duration::from_millis(100), Duration::from_secs(600)))]
    phase: Duration,
    /// Pause between one caller's calls (paces the load).
    #[arg(long, default_value = "20ms", value_parser = args::duration(Duration::from_millis(1), Duration::from_secs(10)))]
    pace: Duration,
    /// Seed for `/flaky`.
    #[arg(long, default_value = "14", value_parser = args::count(0u64, u64::MAX))]
    seed: u64,
    /// Largest response body read (an endless body fails at this size).
    #[arg(long, default_value = "4MiB", value_parser = args::bytes(1024, 1 << 30))]
    max_body: u64,
    /// Measure the closed breaker's overhead (1, 2 and 64 tasks) instead (use --release).
    #[arg(long, conflicts_with_all = ["url", "concurrency", "phase", "pace", "seed", "max_body"])]
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
    const NAME: &'static str = "circuit-breaker";
    const SEED: Option<u8> = Some(14);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let json = args.output.json;
    let breaker = CircuitBreaker::new(breaker_story::config(args.phase))?;
    if args.bench {
        let title = "closed circuit breaker";
        let rounds = bench::rounds(args.runs, &stop, || async {
            let mut row = Vec::new();
            for tasks in [1, 2, 64] {
                row.push(bench::breaker_closed(&breaker, tasks, args.count, &stop).await);
            }
            row
        })
        .await;
        if !json {
            bench::print(title, &rounds);
        }
        return Ok(Report::ok().figures(bench::figures(title, &rounds)));
    }
    let breaker = breaker.with_classifier(HttpError::is_server_fault as fn(&HttpError) -> bool);
    let client = http::client(Duration::from_millis(300))?;
    let target = Target::start(args.url.as_deref(), &client).await?;
    let say = move |line: String| {
        if !json {
            println!("{line}");
        }
    };
    say(format!(
        "{} callers, one call each every {:?}; phases of {:?}; timeline:",
        args.concurrency, args.pace, args.phase
    ));
    let load = Load {
        base: target.base.clone(),
        concurrency: args.concurrency,
        phase: args.phase,
        pace: args.pace,
        seed: args.seed,
        max_body: args.max_body,
    };
    let outcome = breaker_story::play(breaker.clone(), client, load, &stop, say).await;
    let (metrics, _) = breaker.metrics();
    let phases = breaker_story::phase_table(&outcome, &say);
    say(format!(
        "\nbreaker: {} calls made, {} spared by the open circuit, {} slow, {} transitions",
        metrics.permitted, metrics.rejected, metrics.slow_calls, metrics.transitions
    ));
    let succeeded: u64 = outcome.counts.iter().map(|c| c[1]).sum();
    let failure = (succeeded == 0 && !stop.is_cancelled()).then(|| "no call succeeded".to_owned());
    Ok(Report::ok()
        .figure("phases", phases)
        .figure("transitions", outcome.transitions)
        .figure("metrics", metrics)
        .fail_if(failure))
}
