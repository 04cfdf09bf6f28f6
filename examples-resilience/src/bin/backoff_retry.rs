//! `backoff-retry`: seed Example 10 against the sandbox's `/flaky` endpoint.
//!
//! Prints the four jitter strategies side by side, runs the seed's three
//! configurations (plus a `Retry-After` run with a deadline, and a 404 that
//! stops at once), and with `--bench` measures the happy-path overhead.
//! The pattern lives in `examples_resilience::retry`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use examples_resilience::bench;
use examples_resilience::http::{self, HttpError, Target};
use examples_resilience::retry::{Backoff, Jitter, Retry, RetryNotice, RetryPolicy};
use rand::SeedableRng;
use serde_json::json;

/// Retry with exponential backoff, jitter, a deadline and a retryability
/// classifier, against a flaky HTTP endpoint (ports seed Example 10 of the
/// asyncio cookbook). With no arguments it starts the in-process sandbox.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Base URL of a sandbox-compatible server (default: start one in-process).
    #[arg(long)]
    url: Option<String>,
    /// Failure rate of `/flaky` (the seed's success_rate 0.4 is 0.6 here).
    #[arg(long, default_value_t = 0.6, value_parser = parse_rate)]
    fail_rate: f64,
    /// Seed for `/flaky` (run i uses seed + i) and for the jitter, so runs
    /// repeat exactly; the default gives each run a different story.
    #[arg(long, default_value_t = 129)]
    seed: u64,
    /// Milliseconds per "second" of the seed's delays (1000 = the seed's real timings).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    unit_ms: u64,
    /// Measure the happy-path overhead instead of running the demo (use --release).
    #[arg(long)]
    bench: bool,
    /// Calls per variant and round in --bench.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    bench_calls: u64,
    #[command(flatten)]
    output: common::OutputArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{s:?} is not a rate between 0 and 1")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    // Ctrl-C drops run(): the retry loop is cancelled wherever it is, mid-sleep included.
    let result = tokio::select! {
        result = run(args) => result,
        () = common::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    common::exit_code(result)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.bench {
        let rounds = bench::rounds(3, || async {
            bench::retry_happy_path(args.bench_calls).await
        })
        .await;
        return bench::report("retry happy path", &rounds, args.output.json);
    }
    let say = |line: String| {
        if !args.output.json {
            println!("{line}")
        }
    };
    let unit = Duration::from_millis(args.unit_ms);
    let client = http::client(10 * unit)?;
    let target = Target::start(args.url.as_deref(), &client).await?;

    // The four jitters side by side: same schedule, same seed, six delays.
    let shape = Backoff {
        base: unit,
        factor: 2.0,
        max_delay: 10 * unit,
        jitter: Jitter::None,
    };
    say(format!(
        "== jitter strategies: base {unit:?}, factor 2, cap {:?}, seed {} (ms)",
        10 * unit,
        args.seed
    ));
    let mut table = serde_json::Map::new();
    for jitter in [
        Jitter::None,
        Jitter::Full,
        Jitter::Equal,
        Jitter::Decorrelated,
    ] {
        let rng = rand::rngs::StdRng::seed_from_u64(args.seed);
        let delays: Vec<u128> = Backoff { jitter, ..shape }
            .delays(rng)
            .take(6)
            .map(|d| d.as_millis())
            .collect();
        say(format!("  {:<13} {delays:?}", format!("{jitter:?}")));
        table.insert(format!("{jitter:?}").to_lowercase(), json!(delays));
    }

    // The seed's three configurations, a Retry-After run and a 404.
    let flaky = |seed: u64, extra: &str| {
        format!(
            "{}/flaky?fail_rate={}&seed={seed}{extra}",
            target.base, args.fail_rate
        )
    };
    let policy = |max_attempts, base: f64, factor, jitter, deadline| RetryPolicy {
        max_attempts,
        backoff: Backoff {
            base: unit.mul_f64(base),
            factor,
            max_delay: 60 * unit,
            jitter,
        },
        deadline,
        ..RetryPolicy::default()
    };
    let runs = [
        (
            "seed config 1: 3 retries, base 1, full jitter",
            policy(4, 1.0, 2.0, Jitter::Full, None),
            flaky(args.seed, ""),
        ),
        (
            "seed config 2: 5 retries, base 0.5, factor 1.5",
            policy(6, 0.5, 1.5, Jitter::Full, None),
            flaky(args.seed + 1, ""),
        ),
        (
            "seed config 3: 4 retries, base 2, no jitter",
            policy(5, 2.0, 2.0, Jitter::None, None),
            flaky(args.seed + 2, ""),
        ),
        (
            "Retry-After: 1 s on 503, deadline 1.5 s",
            policy(6, 1.0, 2.0, Jitter::Full, Some(Duration::from_millis(1500))),
            flaky(args.seed + 3, "&retry_after=1"),
        ),
        (
            "404: not retryable",
            policy(4, 1.0, 2.0, Jitter::Full, None),
            format!("{}/status/404", target.base),
        ),
    ];
    let mut summaries = Vec::new();
    for (name, policy, url) in runs {
        say(format!("\n== {name}\n   GET {url}"));
        let retry = Retry::new(policy, HttpError::retry_decision).seed(args.seed).on_retry(|n: &RetryNotice<'_, HttpError>| {
            tracing::info!(attempt = n.attempt, error = %n.error, delay_ms = n.delay.as_millis() as u64, "retrying");
            say(format!("   attempt {} failed ({}); retrying in {:.0?}", n.attempt, n.error, n.delay));
        });
        let (outcome, stats) = match retry
            .run(|| http::get_json(&client, &url, http::DEFAULT_MAX_BODY))
            .await
        {
            Ok(ok) => {
                say(format!(
                    "   ok after {} attempt(s), {:.0?} asleep, {:.0?} in all: {}",
                    ok.stats.attempts, ok.stats.total_delay, ok.stats.elapsed, ok.value
                ));
                ("ok".to_owned(), ok.stats)
            }
            Err(err) => {
                say(format!("   {err}"));
                for a in &err.history {
                    let error = a
                        .error
                        .as_ref()
                        .map_or("cut by the deadline".to_owned(), ToString::to_string);
                    say(format!(
                        "     #{} at +{:.0?} took {:.0?}: {error}",
                        a.number, a.started, a.took
                    ));
                }
                (
                    json!(err.reason).as_str().unwrap_or_default().to_owned(),
                    err.stats,
                )
            }
        };
        summaries.push(json!({ "name": name, "outcome": outcome, "attempts": stats.attempts,
            "total_delay_ms": stats.total_delay.as_millis() as u64, "elapsed_ms": stats.elapsed.as_millis() as u64 }));
    }
    if args.output.json {
        println!("{}", json!({ "jitter_ms": table, "runs": summaries }));
    }
    Ok(())
}
