//! `rate-limited-client`: a typed API client under a real rate limit (seed Example 2).
//!
//! ```text
//! cargo run --bin rate-limited-client                 # zero 429s
//! cargo run --bin rate-limited-client -- --no-limit   # the same run without the limiter
//! cargo run --release --bin rate-limited-client -- --rate 200 --burst 5 --count 2000 --concurrency 20
//! cargo run --bin rate-limited-client -- --url https://api.github.com --users rust-lang,tokio-rs --rate 0.5
//! cargo run --bin rate-limited-client -- --shared-limit redis://127.0.0.1:6379 --limit-key demo
//! cargo run --release --bin rate-limited-client -- --bench --shared-limit redis://127.0.0.1:6379
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use common::{Report, Sandbox, UsageError};
use examples_http::api::ApiClient;
use examples_http::demo::rate::{self, Args, bench};
use examples_http::fetch::parse_http_url;
use examples_http::rate_limit::{RateLimiter, Throttle};
use examples_http::shared_limit::{MAX_SHARED_RATE, SharedLimiter};
use rate::AnyLimiter;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    // Named so an operator (or a fault test) can find it in CLIENT LIST.
    let name = format!("rate-limited-client-{}", std::process::id());
    // The bench decides as fast as it can on a key of its own, never on
    // the budget real clients share.
    let (key, rate) = match args.bench {
        true => (
            format!("{}:bench:{}", args.limit_key, std::process::id()),
            MAX_SHARED_RATE,
        ),
        false => (args.limit_key.clone(), args.rate),
    };
    let shared = match &args.shared_limit {
        Some(url) => Some(
            SharedLimiter::connect(url, &key, &name, rate, args.burst)
                .await
                .context("--shared-limit")?,
        ),
        None => None,
    };
    if args.bench {
        let duration = args.duration.unwrap_or(rate::args::BENCH_DURATION);
        let json = args.output.json;
        return Ok(bench::run(shared, args.concurrency, duration, json, &stop).await);
    }
    // No --url: an in-process sandbox whose own limit answers 429 to
    // clients that go too fast.
    let sandbox = match &args.url {
        Some(_) => None,
        None => Some(
            Sandbox::start(args.sandbox_config())
                .await
                .context("start the sandbox")?,
        ),
    };
    let base = match (&args.url, &sandbox) {
        (Some(url), _) => parse_http_url(url).map_err(UsageError::new)?,
        (None, Some(sandbox)) => {
            parse_http_url(&sandbox.url("/api")).map_err(anyhow::Error::msg)?
        }
        (None, None) => anyhow::bail!("no --url and no sandbox"),
    };
    let limiter = match shared {
        Some(shared) => Some(AnyLimiter::Shared(shared)),
        None if args.no_limit => None,
        None => Some(AnyLimiter::Local(RateLimiter::new(args.rate, args.burst)?)),
    };
    let http = reqwest::Client::builder()
        .user_agent("tokio-patterns-rate-limited-client")
        .build()?;
    let throttle = Throttle::with_limiter(limiter, args.concurrency);
    let client = ApiClient::new(http, base, throttle, args.timeout, args.retries)
        .with_max_body(usize::try_from(args.max_body).unwrap_or(usize::MAX))
        .with_max_retry_after(args.max_retry_after);
    let client = Arc::new(client);

    let lookups = rate::lookups(&args.users, args.count, sandbox.is_some());
    let outcome = rate::drive(
        client.clone(),
        lookups,
        args.duration,
        args.concurrency,
        &stop,
    )
    .await;
    let settings = rate::Settings {
        rate: args.rate,
        burst: args.burst,
        limited: !args.no_limit,
        shared_key: args.shared_limit.as_ref().map(|_| args.limit_key.clone()),
        concurrency: args.concurrency,
        json: args.output.json,
    };
    let server_429 = sandbox.as_ref().map(|s| s.stats().api_rate_limited);
    Ok(rate::report(&settings, &client, &outcome, server_429))
}
