//! `concurrent-fetch`: many URLs, sequential vs bounded concurrent (seed Example 1).
//!
//! ```text
//! cargo run --bin concurrent-fetch
//! cargo run --release --bin concurrent-fetch -- --count 1000 --delay-ms 100 --concurrency 100 --no-sequential
//! cargo run --bin concurrent-fetch -- --url https://example.com --url https://www.rust-lang.org
//! ```

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use common::{Sandbox, SandboxConfig, Stopwatch};
use examples_http::fetch::{Concurrency, FetchResult, fan_out, fetch_url, parse_http_url};

/// Fetches many URLs with one reused client: sequentially, then concurrently
/// with at most N in flight, and prints one row per URL and the speedup.
/// Ports seed Example 1 (asyncio.gather over aiohttp). With no URL it runs
/// against an in-process sandbox with varied latencies and two failing URLs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A URL to fetch (repeatable). Replaces the sandbox demo.
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    /// A file with one URL a line (blank lines and `#` comments skipped).
    #[arg(long, value_name = "PATH")]
    urls_file: Option<PathBuf>,
    /// Sandbox mode: fetch this many URLs of `--delay-ms` each.
    #[arg(long)]
    count: Option<usize>,
    /// Sandbox mode: server latency of each URL, in ms (default 100 with --count).
    #[arg(long)]
    delay_ms: Option<u64>,
    /// Most requests in flight at once.
    #[arg(long, default_value_t = NonZeroUsize::new(16).expect("16 > 0"))]
    concurrency: NonZeroUsize,
    /// No bound: start every request at once (the seed's gather).
    #[arg(long, conflicts_with = "concurrency")]
    unbounded: bool,
    /// Per-request timeout (headers and body), in ms.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Skip the sequential baseline (it takes n × latency).
    #[arg(long)]
    no_sequential: bool,
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
            println!("interrupted: requests in flight were cancelled");
            Ok(())
        }
    };
    common::exit_code(outcome)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut given = args.urls.clone();
    if let Some(path) = &args.urls_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        given.extend(lines.map(str::to_owned));
    }
    for url in &given {
        parse_http_url(url).map_err(anyhow::Error::msg)?;
    }
    // Real targets by flag; otherwise the in-process sandbox (kept alive
    // for the whole run by this binding).
    let (sandbox, urls) = if given.is_empty() {
        let sandbox = Sandbox::start(SandboxConfig::default())
            .await
            .context("start the sandbox")?;
        let urls = sandbox_urls(&sandbox, args.count, args.delay_ms);
        (Some(sandbox), urls)
    } else {
        (None, given)
    };
    let limit = if args.unbounded {
        Concurrency::Unbounded
    } else {
        Concurrency::Bounded(args.concurrency)
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    // One client for every request: it owns the connection pool, so
    // keep-alive connections are reused instead of reopened per URL.
    let client = reqwest::Client::builder()
        .build()
        .context("build the HTTP client")?;
    let fetch = |url: String| {
        let client = &client;
        async move { fetch_url(client, &url, timeout).await }
    };

    let sequential = if args.no_sequential {
        None
    } else {
        let watch = Stopwatch::start();
        fan_out(urls.clone(), Concurrency::SEQUENTIAL, fetch).await;
        Some(watch.elapsed())
    };
    let watch = Stopwatch::start();
    let results = fan_out(urls.clone(), limit, fetch).await;
    let concurrent = watch.elapsed();

    let ok = results.iter().filter(|r| r.is_success()).count();
    let speedup = sequential.map(|s| s.as_secs_f64() / concurrent.as_secs_f64());
    let bound = |c: usize| urls.len().div_ceil(c);
    let waves = if args.unbounded {
        1
    } else {
        bound(args.concurrency.get())
    };
    // The ideal wall time is known when every URL has the same latency.
    let ideal = args
        .delay_ms
        .or(args.count.map(|_| 100))
        .filter(|_| sandbox.is_some());
    let ideal = ideal.map(|ms| Duration::from_millis(ms) * waves as u32);
    if args.output.json {
        let summary = serde_json::json!({
            "urls": urls.len(), "ok": ok, "failed": urls.len() - ok,
            "concurrency": (!args.unbounded).then_some(args.concurrency.get()),
            "sequential_s": sequential.map(|d| d.as_secs_f64()),
            "concurrent_s": concurrent.as_secs_f64(),
            "ideal_s": ideal.map(|d| d.as_secs_f64()),
            "speedup": speedup,
        });
        println!("{summary}");
        return Ok(());
    }
    print_table(&results);
    let mode = if args.unbounded {
        "unbounded".to_owned()
    } else {
        format!("concurrency {}", args.concurrency)
    };
    println!(
        "\n{ok}/{} succeeded; failures are reported per URL, never fatal to the batch",
        urls.len()
    );
    if let Some(sequential) = sequential {
        println!("sequential: {:.3} s", sequential.as_secs_f64());
    }
    print!("concurrent ({mode}): {:.3} s", concurrent.as_secs_f64());
    match ideal {
        Some(ideal) => println!(
            " (ideal {:.3} s = {waves} waves x latency)",
            ideal.as_secs_f64()
        ),
        None => println!(),
    }
    if let Some(speedup) = speedup {
        println!("speedup: {speedup:.2}x");
    }
    Ok(())
}

/// The demo set: varied latencies, one 503 and one body cut mid-way; or
/// `count` identical URLs of `delay_ms` for the scale run.
fn sandbox_urls(sandbox: &Sandbox, count: Option<usize>, delay_ms: Option<u64>) -> Vec<String> {
    if count.is_some() || delay_ms.is_some() {
        let path = format!("/delay/{}", delay_ms.unwrap_or(100));
        return vec![sandbox.url(&path); count.unwrap_or(20)];
    }
    let mut urls: Vec<String> = (0..14u64)
        .map(|i| sandbox.url(&format!("/delay/{}", 40 + (i * 37) % 160)))
        .collect();
    urls.insert(4, sandbox.url("/status/503"));
    urls.insert(9, sandbox.url("/bytes/200000?fail_after=50000"));
    urls.push(sandbox.url("/bytes/100000"));
    urls
}

fn print_table(results: &[FetchResult]) {
    const SHOWN: usize = 30;
    println!(
        "{:>4}  {:>6}  {:>9}  {:>9}  {:<24}  url",
        "#", "status", "bytes", "ms", "content type"
    );
    for (i, result) in results.iter().enumerate().take(SHOWN) {
        let ms = result.elapsed.as_secs_f64() * 1e3;
        match &result.outcome {
            Ok(f) => {
                let kind = f.content_type.as_deref().unwrap_or("-");
                println!(
                    "{i:>4}  {:>6}  {:>9}  {ms:>9.1}  {kind:<24}  {}",
                    f.status, f.bytes, result.url
                );
            }
            Err(err) => println!(
                "{i:>4}  {:>6}  {:>9}  {ms:>9.1}  {:<24}  {}\n        error: {err}",
                "-", "-", "-", result.url
            ),
        }
    }
    if results.len() > SHOWN {
        println!("  ... {} more rows", results.len() - SHOWN);
    }
}
