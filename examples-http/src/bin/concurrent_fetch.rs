//! `concurrent-fetch`: many URLs, sequential vs bounded concurrent (seed Example 1).
//!
//! ```text
//! cargo run --bin concurrent-fetch
//! cargo run --bin concurrent-fetch -- --demo-failures
//! cargo run --release --bin concurrent-fetch -- --count 1000 --delay 100ms --concurrency 100 --no-sequential
//! cargo run --bin concurrent-fetch -- --url https://example.com --url https://www.rust-lang.org
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use common::{Example, Report, UsageError, args};
use examples_http::demo::fetch::{self as demo, Demo};
use examples_http::fetch::{self, Concurrency, Limits, fetch_url};
use tokio_util::sync::CancellationToken;

/// Fetches many URLs with one reused client: sequentially, then concurrently
/// with at most N in flight, and prints one row per URL and the speedup.
/// Ports seed Example 1 (asyncio.gather over aiohttp). With no URL it runs
/// against an in-process sandbox with varied latencies. Exits 1 if any URL
/// fails (an error or a non-2xx status); `--demo-failures` plants five.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A URL to fetch (repeatable). Replaces the sandbox demo.
    #[arg(long = "url", value_name = "URL", value_parser = http_url)]
    urls: Vec<String>,
    /// A file with one URL a line (blank lines and `#` comments skipped).
    #[arg(long, value_name = "PATH")]
    urls_file: Option<PathBuf>,
    /// Sandbox mode: fetch this many identical URLs of `--delay` each.
    #[arg(long, value_name = "N", value_parser = args::count(1usize, 100_000), conflicts_with_all = ["urls", "urls_file"])]
    count: Option<usize>,
    /// Sandbox mode: server latency of each URL (default 100ms with --count).
    #[arg(long, value_name = "DUR", value_parser = args::duration(Duration::from_millis(1), common::sandbox::MAX_DELAY), conflicts_with_all = ["urls", "urls_file"])]
    delay: Option<Duration>,
    /// Sandbox demo with five planted failures (a 503, a cut body, garbage,
    /// an endless body, a redirect loop): shows the per-URL errors, exits 1.
    #[arg(long, conflicts_with_all = ["urls", "urls_file", "count", "delay"])]
    demo_failures: bool,
    /// Most requests in flight at once.
    #[arg(long, value_name = "N", default_value = "16", value_parser = args::count(1usize, 10_000))]
    concurrency: usize,
    /// No bound: start every request at once (the seed's gather).
    #[arg(long, conflicts_with = "concurrency")]
    unbounded: bool,
    /// Per-request deadline, covering connect, headers and body.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = args::duration(Duration::from_millis(1), args::MAX_DURATION))]
    timeout: Duration,
    /// Largest response body read per URL; a longer one is an error.
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = args::bytes(1, 1 << 40))]
    max_body: u64,
    /// Skip the sequential baseline (it takes n × latency).
    #[arg(long)]
    no_sequential: bool,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "concurrent-fetch";
    const SEED: Option<u8> = Some(1);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

fn http_url(text: &str) -> Result<String, String> {
    fetch::parse_http_url(text).map(|_| text.to_owned())
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let mut urls = args.urls.clone();
    if let Some(path) = &args.urls_file {
        let listed =
            fetch::read_url_file(path).map_err(|e| UsageError::new(format!("--urls-file {e}")));
        urls.extend(listed?);
    }
    // Real targets by flag; otherwise the sandbox demo (kept alive for
    // the whole run by this binding).
    let sandbox = match urls.is_empty() {
        true => Some(Demo::start(args.count, args.delay, args.demo_failures).await?),
        false => None,
    };
    let urls = sandbox.as_ref().map_or(urls, |demo| demo.urls.clone());
    let limit = match args.unbounded {
        true => Concurrency::Unbounded,
        false => Concurrency::Bounded(args.concurrency.try_into()?),
    };
    let limits = Limits::new(args.timeout, args.max_body);
    // One client for every request: it owns the connection pool, so
    // keep-alive connections are reused instead of reopened per URL.
    let client = reqwest::Client::builder()
        .build()
        .context("build the HTTP client")?;
    let fetch = |url: String| {
        let client = &client;
        async move { fetch_url(client, &url, limits).await }
    };
    let json = args.output.json;
    if !json {
        let (n, timeout, cap) = (urls.len(), args.timeout, args.max_body);
        println!("fetching {n} URLs (timeout {timeout:?}, max body {cap} bytes)");
    }
    // Each phase stops at the first signal and reports what finished.
    let batch = demo::Batch {
        urls: &urls,
        limit,
        sequential: !args.no_sequential,
        same_latency: sandbox.as_ref().and_then(|demo| demo.same_latency),
        stop: &stop,
        json,
    };
    Ok(batch.run(fetch).await)
}
