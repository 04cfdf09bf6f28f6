//! `streaming-download`: verified, resumable downloads with progress bars (seed Example 3).
//!
//! ```text
//! cargo run --bin streaming-download
//! cargo run --release --bin streaming-download -- --size 1GiB --chunk-delay 0s
//! cargo run --bin streaming-download -- --url https://example.com/file.iso --sha256 <hex> --output-dir /tmp
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use common::{Example, Report, Stopwatch, args};
use examples_http::demo::download_report as story;
use examples_http::download::{DownloadOptions, parse_sha256};
use examples_http::fetch::parse_http_url;
use reqwest::Url;
use tokio_util::sync::CancellationToken;

/// Downloads files by streaming them to DEST.part, fsyncing, verifying the
/// length (and --sha256), then renaming into place. A .part is resumed with
/// Range + If-Range only while the server's validator (ETag/Last-Modified,
/// saved beside it) is unchanged, and is locked: a second run for the same
/// destination fails at once. Every --url is saved, several at once with a
/// progress bar each (on a terminal). With no --url it downloads three files
/// from an in-process sandbox into a temporary directory. On Ctrl-C/SIGTERM
/// the .part files are kept for a resume (exit 130).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A URL to download (repeatable; every one is saved). Replaces the demo.
    #[arg(long = "url", value_name = "URL", value_parser = parse_http_url)]
    urls: Vec<Url>,
    /// Directory for the files (default: current directory; a temporary one for the demo).
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Exact destination path (only with exactly one --url).
    #[arg(long, conflicts_with = "output_dir", requires = "urls")]
    output: Option<PathBuf>,
    /// Expected SHA-256 (64 hex digits), one per --url, in the same order.
    #[arg(long, value_parser = parse_sha256, requires = "urls")]
    sha256: Vec<String>,
    /// Replace existing destination files (regular files only).
    #[arg(long)]
    force: bool,
    /// Downloads at once.
    #[arg(long, default_value = "4", value_parser = args::count(1usize, 256))]
    concurrency: usize,
    /// Longest wait for headers or any one chunk; also the --min-rate window.
    #[arg(long, default_value = "10s", value_parser = args::duration(Duration::from_millis(1), Duration::from_secs(3600)))]
    timeout: Duration,
    /// Least bytes per second over each --timeout window (0 = none): stops a trickling body.
    #[arg(long, default_value = "1KiB", value_parser = args::bytes(0, 1 << 40))]
    min_rate: u64,
    /// The whole run: every download, its retries and pauses.
    #[arg(long, value_parser = args::duration(Duration::from_millis(1), args::MAX_DURATION))]
    deadline: Option<Duration>,
    /// Largest file accepted (default 1GiB, or --size): an endless body must not fill the disk.
    #[arg(long, value_parser = args::bytes(1, 1 << 50))]
    max_size: Option<u64>,
    /// Attempts after a dropped connection or stall, each resuming if it can.
    #[arg(long, default_value = "3", value_parser = args::count(0u32, 100))]
    retries: u32,
    /// Demo only: download one sandbox file of this size (a benchmark).
    #[arg(long, conflicts_with = "urls", value_parser = args::bytes(1, 64 << 30))]
    size: Option<u64>,
    /// Demo only: pause between 64 KiB chunks (default 15ms, 0s with --size).
    #[arg(long, conflicts_with = "urls", value_parser = args::duration(Duration::ZERO, Duration::from_secs(10)))]
    chunk_delay: Option<Duration>,
    // `report`, not `output`: that name is the `--output` path above.
    #[command(flatten)]
    report: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "streaming-download";
    const SEED: Option<u8> = Some(3);
    fn output(&self) -> &common::OutputArgs {
        &self.report
    }
    fn validate(&self) -> Result<(), String> {
        if self.output.is_some() && self.urls.len() != 1 {
            return Err(format!(
                "--output names one file, but {} --url were given",
                self.urls.len()
            ));
        }
        if !self.sha256.is_empty() && self.sha256.len() != self.urls.len() {
            return Err(format!(
                "{} --sha256 for {} --url: give one per URL",
                self.sha256.len(),
                self.urls.len()
            ));
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let watch = Stopwatch::start();
    // The demo's sandbox and temporary directory live until the end.
    let paths = [args.output_dir.as_deref(), args.output.as_deref()];
    let (urls, digests) = (&args.urls, &args.sha256);
    let (staging, jobs) = story::plan(urls, digests, paths, args.size, args.chunk_delay).await?;
    let client = reqwest::Client::builder().build()?;
    let options = |job: &story::Job| DownloadOptions {
        idle_timeout: args.timeout,
        min_rate: args.min_rate,
        // What is left of the run's deadline when this one starts.
        deadline: args.deadline.map(|d| d.saturating_sub(watch.elapsed())),
        sha256: job.sha256.clone(),
        force: args.force,
        retries: args.retries,
        max_size: Some(args.max_size.unwrap_or(args.size.unwrap_or(0).max(1 << 30))),
    };
    let outcomes = story::download_all(&client, &jobs, args.concurrency, options, &stop).await;
    drop(staging);
    let json = args.report.json;
    Ok(story::report(&jobs, &outcomes, watch.elapsed(), json))
}
