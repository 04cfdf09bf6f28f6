//! `benchmark`: sequential vs concurrent, as a concurrency sweep (seed Example 13).
//!
//! ```text
//! cargo run --bin benchmark -- --svg target/sweep.svg
//! cargo run --release --bin benchmark -- --latency 0s --concurrency 1,16,64 --count 100000 --runs 3
//! cargo run --bin benchmark -- --rate 400 --concurrency 4 --count 400    # coordinated omission
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use common::{Example, Report, args};
use examples_http::bench::{Control, SweepConfig, http_get, open_loop, sweep};
use examples_http::demo::bench_report as story;
use examples_http::fetch::parse_http_url;
use reqwest::Url;
use tokio_util::sync::CancellationToken;

/// Seed Example 13 (sequential vs gather), as a sweep: one reused client
/// against the in-process sandbox or a URL, `--runs` closed-loop rounds per
/// concurrency, successful requests/s, p50/p90/p99/max and the ideal
/// speed-up. Errors are counted apart (exit 1 past --max-error-rate).
/// `--rate`: an open loop, to show coordinated omission.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Target URL (default: the sandbox's /delay/{latency}).
    #[arg(long, value_parser = parse_http_url)]
    url: Option<Url>,
    /// Sandbox latency per request (0s = /health, no timer).
    #[arg(long, default_value = "10ms", conflicts_with = "url", value_parser = args::duration(Duration::ZERO, Duration::from_secs(10)))]
    latency: Duration,
    /// Sandbox: extra seeded random latency, up to this much per request.
    #[arg(long, default_value = "5ms", conflicts_with = "url", value_parser = args::duration(Duration::ZERO, Duration::from_secs(10)))]
    jitter: Duration,
    /// Requests in flight: the settings to sweep, comma separated (default
    /// 1,4,16,64); with --rate, one value, the open loop's cap (default 1000).
    #[arg(long, value_delimiter = ',', value_parser = args::count(1usize, 10_000))]
    concurrency: Vec<usize>,
    /// Requests per run (in total with --rate).
    #[arg(long, default_value = "128", value_parser = args::count(1u64, 10_000_000))]
    count: u64,
    /// Runs per concurrency setting; the median throughput is reported.
    #[arg(long, default_value = "1", value_parser = args::count(1u32, 100))]
    runs: u32,
    /// Unmeasured requests first, to open connections.
    #[arg(long, default_value = "64", value_parser = args::count(0u64, 1_000_000))]
    warmup: u64,
    /// Open loop: send this many requests per second on a fixed schedule.
    #[arg(long, value_parser = args::rate(0.001, 1e6))]
    rate: Option<f64>,
    /// Open loop: run for this long (--rate x --duration requests) instead of --count.
    #[arg(long, requires = "rate", conflicts_with = "count", value_parser = args::duration(Duration::from_millis(1), Duration::from_secs(24 * 3600)))]
    duration: Option<Duration>,
    /// Longest one request may take; past it, it counts as a timeout error.
    #[arg(long, default_value = "10s", value_parser = args::duration(Duration::from_millis(1), Duration::from_secs(3600)))]
    timeout: Duration,
    /// Exit 1 when failed requests / requests is above this fraction.
    #[arg(long, default_value = "0", value_parser = args::fraction())]
    max_error_rate: f64,
    /// Write an SVG chart of the sweep (throughput and p99 vs concurrency).
    #[arg(long, value_name = "PATH", conflicts_with = "rate")]
    svg: Option<PathBuf>,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "benchmark";
    const SEED: Option<u8> = Some(13);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
    fn validate(&self) -> Result<(), String> {
        if self.rate.is_some() && self.concurrency.len() > 1 {
            return Err("--rate takes one --concurrency value (the in-flight cap)".into());
        }
        if let (Some(rate), Some(d)) = (self.rate, self.duration)
            && rate * d.as_secs_f64() > 10e6
        {
            return Err("--rate x --duration is more than 10,000,000 requests".into());
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let (max, story) = (args.max_error_rate, !args.output.json);
    let (latency, jitter) = (args.latency, args.jitter);
    let (_sandbox, url, out) = story::target(args.url.clone(), latency, jitter, max, story).await?;
    // One client, one connection pool, keep-alive: what a service would do.
    let client = reqwest::Client::builder().build()?;
    let op = Arc::new(http_get(client, url, out.body_bytes.clone()));
    let control = Control {
        timeout: Some(args.timeout),
        stop,
    };
    if let Some(rate) = args.rate {
        let cap = args.concurrency.first().copied().unwrap_or(1000);
        let count = args.duration.map_or(args.count, |d| {
            (rate * d.as_secs_f64()).ceil().max(1.0) as u64
        });
        return Ok(out.open_loop(cap, open_loop(op, rate, count, cap, &control).await));
    }
    let swept = Some(args.concurrency.clone()).filter(|c| !c.is_empty());
    let concurrency = swept.unwrap_or_else(|| vec![1, 4, 16, 64]);
    let (requests, rounds, warmup) = (args.count, args.runs, args.warmup);
    let config = SweepConfig {
        concurrency,
        requests,
        rounds,
        warmup,
    };
    let points = sweep(op, &config, &control).await;
    if let Some(path) = &args.svg {
        out.write_chart(path, &points)?;
    }
    Ok(out.sweep(&config, points))
}
