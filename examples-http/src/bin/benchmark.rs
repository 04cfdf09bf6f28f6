//! `benchmark`: sequential vs concurrent, as a concurrency sweep (seed Example 13).
//!
//! ```text
//! cargo run --bin benchmark
//! cargo run --release --bin benchmark -- --latency-ms 0 --concurrency 1,16,64 --requests 100000 --rounds 3
//! cargo run --release --bin benchmark -- --url http://127.0.0.1/index.html --concurrency 64 --requests 200000
//! cargo run --bin benchmark -- --rate 400 --max-in-flight 4 --requests 400    # coordinated omission
//! cargo run --bin benchmark -- --svg target/sweep.svg
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use common::{LatencySummary, Sandbox, SandboxConfig};
use examples_http::bench::{SweepConfig, open_loop, sweep};
use examples_http::demo::chart::sweep_svg;
use examples_http::fetch::parse_http_url;

/// Measures one reused HTTP client against the in-process sandbox (given
/// latency and jitter) or a real URL: warm-up, then for each concurrency
/// setting `--rounds` closed-loop rounds, with throughput, latency
/// p50/p90/p99/max and the speedup beside its ideal. `--rate` switches to an
/// open loop (fixed schedule, latency from the intended start) to show
/// coordinated omission. Ports seed Example 13 (sequential vs gather).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Target URL (default: the sandbox's /delay/{latency}).
    #[arg(long)]
    url: Option<String>,
    /// Sandbox latency per request, in ms (0 = /health, no timer).
    #[arg(long, default_value_t = 10)]
    latency_ms: u64,
    /// Sandbox: extra seeded random latency 0..=J ms per request.
    #[arg(long, default_value_t = 5)]
    jitter_ms: u64,
    /// Concurrency settings to sweep, comma separated (1 = sequential).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: Vec<u64>,
    /// Requests per round (and in total for --rate).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Rounds per concurrency setting; the median throughput is reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Unmeasured requests first, to open connections.
    #[arg(long, default_value_t = 64)]
    warmup: u64,
    /// Open loop: send this many requests per second on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most requests in flight (the client's own queue beyond it).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: u64,
    /// Write an SVG chart of the sweep (throughput and p99 vs concurrency).
    #[arg(long, value_name = "PATH")]
    svg: Option<PathBuf>,
    #[command(flatten)]
    output: common::OutputArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    common::init_crypto();
    let outcome = tokio::select! {
        result = run(args) => result,
        () = common::shutdown_signal() => {
            println!("interrupted: the load stopped, partial results discarded");
            Ok(())
        }
    };
    common::exit_code(outcome)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        bail!("--rate must be a number of requests per second > 0, got {rate}");
    }
    let (sandbox, url) = match &args.url {
        Some(url) => (None, parse_http_url(url).map_err(anyhow::Error::msg)?),
        None => {
            let sandbox = Sandbox::start(SandboxConfig::default())
                .await
                .context("start the sandbox")?;
            let path = match args.latency_ms {
                0 => "/health".to_owned(),
                ms => format!("/delay/{ms}?jitter_ms={}&seed=13", args.jitter_ms),
            };
            let url = parse_http_url(&sandbox.url(&path)).map_err(anyhow::Error::msg)?;
            (Some(sandbox), url)
        }
    };
    let target = match &sandbox {
        Some(_) if args.jitter_ms == 0 => {
            format!("in-process sandbox, {} ms latency", args.latency_ms)
        }
        Some(_) => format!(
            "in-process sandbox, {} ms + 0..={} ms jitter",
            args.latency_ms, args.jitter_ms
        ),
        None => url.to_string(),
    };
    // One client, one connection pool, keep-alive: what a service would do.
    let client = reqwest::Client::builder()
        .build()
        .context("build the HTTP client")?;
    let op = Arc::new(move || {
        let request = client.get(url.clone());
        async move {
            let response = request.send().await?.error_for_status()?;
            // Read the whole body so the connection goes back to the pool.
            response.bytes().await.map(drop)
        }
    });

    if let Some(rate) = args.rate {
        let run = open_loop(op, rate, args.requests, args.max_in_flight as usize).await;
        if args.output.json {
            println!(
                "{}",
                serde_json::json!({"mode": "open-loop", "target": target, "max_in_flight": args.max_in_flight, "run": run})
            );
            return Ok(());
        }
        println!(
            "open loop: {} requests at {rate} req/s, at most {} in flight ({target})",
            run.requests, args.max_in_flight
        );
        println!(
            "achieved {:.1} req/s, {} errors, {} requests sent late (> 1 ms)\n",
            run.achieved_rps, run.errors, run.late_starts
        );
        println!("{:<28}{}", "latency measured from", LatencySummary::HEADER);
        println!("{:<28}{}", "intended start (response)", run.response);
        println!("{:<28}{}", "actual send (service)", run.service);
        println!(
            "\nA closed-loop tool reports the second row; users arriving on schedule see the first."
        );
        return Ok(());
    }

    let config = SweepConfig {
        concurrency: args.concurrency.iter().map(|&c| c as usize).collect(),
        requests: args.requests,
        rounds: args.rounds,
        warmup: args.warmup,
    };
    let points = sweep(op, &config).await;
    if let Some(path) = &args.svg {
        let title = format!("HTTP benchmark: {target}");
        std::fs::write(path, sweep_svg(&points, &title))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if args.output.json {
        println!(
            "{}",
            serde_json::json!({"mode": "sweep", "target": target, "requests_per_round": args.requests, "rounds": args.rounds, "results": points})
        );
        return Ok(());
    }
    println!(
        "target: {target}; {} requests x {} rounds per setting, after {} warm-up\n",
        args.requests, args.rounds, args.warmup
    );
    println!(
        "{:>6} {:>11} {:>8} {:>6} {:>7}{}",
        "conc",
        "req/s",
        "speedup",
        "ideal",
        "errors",
        LatencySummary::HEADER
    );
    for p in &points {
        println!(
            "{:>6} {:>11.1} {:>7.2}x {:>5.0}x {:>7}{}",
            p.concurrency, p.throughput_rps, p.speedup, p.ideal_speedup, p.errors, p.latency
        );
    }
    if let Some(path) = &args.svg {
        println!("\nchart written to {}", path.display());
    }
    Ok(())
}
