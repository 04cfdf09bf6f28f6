//! `rate-limited-client`: a typed API client under a real rate limit (seed Example 2).
//!
//! ```text
//! cargo run --bin rate-limited-client                 # zero 429s
//! cargo run --bin rate-limited-client -- --no-limit   # the same run without the limiter
//! cargo run --release --bin rate-limited-client -- --rps 200 --burst 5 --count 2000 --max-concurrent 20
//! cargo run --bin rate-limited-client -- --base-url https://api.github.com --users rust-lang,tokio-rs --rps 0.5
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use common::{Sandbox, SandboxConfig, Stopwatch};
use examples_http::api::{ApiClient, ApiError, User};
use examples_http::fetch::{Concurrency, fan_out, parse_http_url};
use examples_http::rate_limit::{RateLimiter, Throttle};

/// Fetches many users from a GitHub-like JSON API at a fixed rate (GCRA
/// limiter: --rps, --burst) with a separate in-flight cap, typed results and
/// Retry-After handling. Ports seed Example 2. With no --base-url it talks
/// to an in-process sandbox whose own limit answers 429 to clients that go
/// too fast; by default that limit is 25% above --rps, so the limited run
/// shows zero 429s and --no-limit shows what happens without the limiter.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Requests started per second (fractional allowed, e.g. 0.5).
    #[arg(long, default_value_t = 20.0, value_parser = positive_rate)]
    rps: f64,
    /// Requests that may start back to back when the limiter is idle.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    burst: u32,
    /// Most requests in flight at once (independent of the rate).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    max_concurrent: u64,
    /// Turn the rate limiter off (the in-flight cap stays).
    #[arg(long)]
    no_limit: bool,
    /// Users to fetch, comma separated (default: `--count` generated names).
    #[arg(long, value_delimiter = ',')]
    users: Vec<String>,
    /// How many generated users to fetch when --users is not given.
    #[arg(long, default_value_t = 40)]
    count: usize,
    /// A real API instead of the sandbox (e.g. `https://api.github.com`).
    #[arg(long)]
    base_url: Option<String>,
    /// Sandbox only: its own limit in requests per second (default 1.25 x --rps).
    #[arg(long, value_parser = positive_rate)]
    server_rps: Option<f64>,
    /// Sandbox only: its own burst (default 2 x --burst).
    #[arg(long)]
    server_burst: Option<u32>,
    /// Per-request timeout, in ms.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Retries after a 429 (each waits Retry-After and pauses the limiter).
    #[arg(long, default_value_t = 2)]
    retries: u32,
    #[command(flatten)]
    output: common::OutputArgs,
}

fn positive_rate(text: &str) -> Result<f64, String> {
    let rps: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    RateLimiter::new(rps, 1)
        .map(|_| rps)
        .map_err(|err| err.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    common::init_crypto();
    let outcome = tokio::select! {
        result = run(args) => result,
        () = common::shutdown_signal() => {
            println!("interrupted: requests in flight were cancelled");
            Ok(())
        }
    };
    common::exit_code(outcome)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let sandbox = match &args.base_url {
        Some(_) => None,
        None => {
            let config = SandboxConfig {
                api_rps: Some(args.server_rps.unwrap_or(args.rps * 1.25)),
                api_burst: args.server_burst.unwrap_or(args.burst.saturating_mul(2)),
                ..SandboxConfig::default()
            };
            Some(Sandbox::start(config).await.context("start the sandbox")?)
        }
    };
    let base = match (&args.base_url, &sandbox) {
        (Some(url), _) => parse_http_url(url).map_err(anyhow::Error::msg)?,
        (None, Some(sandbox)) => {
            parse_http_url(&sandbox.url("/api")).map_err(anyhow::Error::msg)?
        }
        (None, None) => unreachable!("a sandbox is started whenever --base-url is absent"),
    };
    // Validated by the value parser; repeated here for the error type.
    let limiter = (!args.no_limit)
        .then(|| RateLimiter::new(args.rps, args.burst))
        .transpose()?;
    let throttle = Throttle::new(limiter, args.max_concurrent as usize);
    let http = reqwest::Client::builder()
        .user_agent("tokio-patterns-rate-limited-client")
        .build()?;
    let client = Arc::new(ApiClient::new(
        http,
        base,
        throttle,
        Duration::from_millis(args.timeout_ms),
        args.retries,
    ));

    // (login, ask the sandbox for malformed JSON): the demo mixes in one
    // invalid login (404) and one broken body to show typed errors.
    let mut lookups: Vec<(String, bool)> = if args.users.is_empty() {
        (0..args.count)
            .map(|i| (format!("user-{i}"), false))
            .collect()
    } else {
        args.users.iter().map(|u| (u.clone(), false)).collect()
    };
    if sandbox.is_some() && args.users.is_empty() && lookups.len() >= 10 {
        lookups[3] = ("-not-a-login-".to_owned(), false);
        lookups[7].1 = true;
    }

    let watch = Stopwatch::start();
    // The throttle bounds what runs; fan_out only needs to offer enough work.
    let results = fan_out(
        lookups.clone(),
        Concurrency::Unbounded,
        |(login, malformed)| {
            let client = client.clone();
            async move {
                let query: &[(&str, &str)] = if malformed {
                    &[("malformed", "1")]
                } else {
                    &[]
                };
                client.get::<User>(&["users", &login], query).await
            }
        },
    )
    .await;
    let elapsed = watch.elapsed();
    let stats = client.stats();
    let starts = client.throttle().starts();
    let sustained = starts.sustained_rate(args.burst);
    let server_429 = sandbox.as_ref().map(|s| s.stats().api_rate_limited);
    let success_rate = 100.0 * stats.ok as f64 / (lookups.len().max(1)) as f64;
    // How far the sustained rate is from the configured one, in percent
    // (negative: slower). Only meaningful with the limiter on.
    let rate_error = sustained
        .filter(|_| !args.no_limit)
        .map(|rate| 100.0 * (rate - args.rps) / args.rps);

    if args.output.json {
        let summary = serde_json::json!({
            "rps": args.rps, "burst": args.burst, "limited": !args.no_limit,
            "max_concurrent": args.max_concurrent, "calls": lookups.len(),
            "requests": stats.requests, "ok": stats.ok, "errors": stats.errors,
            "rate_limited_429": stats.rate_limited, "server_429": server_429,
            "success_rate_pct": success_rate, "elapsed_s": elapsed.as_secs_f64(),
            "sustained_rps": sustained, "rate_error_pct": rate_error,
            "peak_in_flight": stats.peak_in_flight,
        });
        println!("{summary}");
        return Ok(());
    }
    for ((login, _), result) in lookups.iter().zip(&results).take(12) {
        match result {
            Ok(user) => println!(
                "ok   {:<16} {:>4} repos {:>6} followers",
                user.login, user.public_repos, user.followers
            ),
            Err(err) => println!("err  {login:<16} {}", describe(err)),
        }
    }
    if results.len() > 12 {
        println!("... {} more", results.len() - 12);
    }
    let limit = if args.no_limit {
        "no limiter".to_owned()
    } else {
        format!("{} rps, burst {}", args.rps, args.burst)
    };
    println!(
        "\n=== stats ({limit}, at most {} in flight) ===",
        args.max_concurrent
    );
    println!(
        "calls: {}   HTTP requests: {}   ok: {}   errors: {}",
        lookups.len(),
        stats.requests,
        stats.ok,
        stats.errors
    );
    println!(
        "429 responses: {}   success rate: {success_rate:.1}%",
        stats.rate_limited
    );
    match sustained {
        Some(rate) => println!(
            "achieved rate after the burst: {rate:.2} req/s   elapsed: {:.2} s",
            elapsed.as_secs_f64()
        ),
        None => println!("elapsed: {:.2} s", elapsed.as_secs_f64()),
    }
    println!("peak in flight: {}", stats.peak_in_flight);
    if let Some(rejected) = server_429 {
        println!("the sandbox rejected {rejected} requests with 429");
    }
    Ok(())
}

/// One short phrase per error kind.
fn describe(err: &ApiError) -> String {
    match err {
        ApiError::Decode(detail) => format!("bad JSON ({detail})"),
        other => other.to_string(),
    }
}
