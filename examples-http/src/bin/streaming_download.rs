//! `streaming-download`: verified, resumable downloads with progress bars (seed Example 3).
//!
//! ```text
//! cargo run --bin streaming-download
//! cargo run --release --bin streaming-download -- --size 1073741824 --chunk-delay-ms 0
//! cargo run --bin streaming-download -- --url https://example.com/file.iso --sha256 <hex> --output-dir /tmp
//! ```

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use common::{Sandbox, SandboxConfig, Stopwatch};
use examples_http::download::{DownloadOptions, download, file_name_for, hex, part_path};
use examples_http::fetch::{Concurrency, fan_out, parse_http_url};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use sha2::{Digest, Sha256};

/// Downloads files by streaming them to DEST.part, fsyncing, verifying the
/// length (and --sha256), then renaming into place; resumes an existing
/// .part with a Range request. Several URLs download concurrently with a
/// progress bar each (hidden when stderr is not a terminal). Ports seed
/// Example 3. With no --url it downloads from an in-process sandbox, slowed
/// so the bars are visible, into a temporary directory.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// A URL to download (repeatable). Replaces the sandbox demo.
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    /// Directory for the files (default: current directory; a temporary one for the demo).
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Exact destination path (only with a single --url).
    #[arg(long, conflicts_with = "output_dir")]
    output: Option<PathBuf>,
    /// Expected SHA-256 (hex) of the file (only with a single --url).
    #[arg(long)]
    sha256: Option<String>,
    /// Replace existing destination files.
    #[arg(long)]
    force: bool,
    /// Downloads at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Longest wait for headers or for any one chunk, in ms.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: u64,
    /// Resume attempts after a dropped connection or stall.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Sandbox only: download one file of this many bytes (a benchmark).
    #[arg(long)]
    size: Option<u64>,
    /// Sandbox only: pause between 64 KiB chunks, in ms (default 15, 0 with --size).
    #[arg(long)]
    chunk_delay_ms: Option<u64>,
    // `report`, not `output`: that name is the `--output` path above.
    #[command(flatten)]
    report: common::OutputArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.report.log_format);
    common::init_crypto();
    let outcome = tokio::select! {
        result = run(args) => result,
        () = common::shutdown_signal() => {
            println!("interrupted: partial downloads are kept as .part files and resume on the next run");
            Ok(())
        }
    };
    common::exit_code(outcome)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if (args.output.is_some() || args.sha256.is_some()) && args.urls.len() != 1 {
        bail!("--output and --sha256 need exactly one --url");
    }
    let mut urls = Vec::new();
    for url in &args.urls {
        urls.push(parse_http_url(url).map_err(anyhow::Error::msg)?);
    }
    // The demo: a sandbox, a temporary directory, and expected digests
    // computed locally from the sandbox's known byte pattern.
    let mut sandbox = None;
    let mut temp = None;
    let mut digests = vec![args.sha256.clone()];
    if urls.is_empty() {
        let server = Sandbox::start(SandboxConfig::default())
            .await
            .context("start the sandbox")?;
        let delay = args
            .chunk_delay_ms
            .unwrap_or(if args.size.is_some() { 0 } else { 15 });
        let sizes: Vec<(u64, &str)> = match args.size {
            Some(size) => vec![(size, "")],
            None => vec![
                (8 << 20, ""),
                (3 << 20, "&chunk_size=32768"),
                (2 << 20, "&no_length=1"),
            ],
        };
        digests.clear();
        for (size, extra) in sizes {
            let url = server.url(&format!("/bytes/{size}?chunk_delay_ms={delay}{extra}"));
            urls.push(parse_http_url(&url).map_err(anyhow::Error::msg)?);
            // Hashing a huge benchmark file twice would measure sha2, not I/O.
            digests.push((size <= 64 << 20).then(|| pattern_sha256(size)));
        }
        sandbox = Some(server);
        temp = Some(tempfile::tempdir().context("create a temporary directory")?);
    }
    let dir = match (&args.output_dir, &temp) {
        (Some(dir), _) => dir.clone(),
        (None, Some(temp)) => temp.path().to_path_buf(),
        (None, None) => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let mut jobs = Vec::new();
    let mut names = HashSet::new();
    for (url, sha256) in urls.into_iter().zip(digests) {
        let dest = match &args.output {
            Some(path) => path.clone(),
            None => dir.join(file_name_for(&url)),
        };
        if !names.insert(dest.clone()) {
            bail!(
                "two URLs would both be saved as {}; use separate runs or --output",
                dest.display()
            );
        }
        jobs.push((url, dest, sha256));
    }

    // Bars only on a terminal: piped or logged stderr gets no control codes.
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let multi = MultiProgress::with_draw_target(target);
    let client = reqwest::Client::builder()
        .build()
        .context("build the HTTP client")?;
    let watch = Stopwatch::start();
    let limit = Concurrency::Bounded(
        std::num::NonZeroUsize::new(args.concurrency as usize).context("concurrency")?,
    );
    let results = fan_out(jobs.clone(), limit, |(url, dest, sha256)| {
        let (client, multi) = (&client, &multi);
        let options = DownloadOptions {
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
            sha256,
            force: args.force,
            retries: args.retries,
        };
        async move {
            let bar = multi.add(ProgressBar::new(0).with_message(file_name_for(&url)));
            let watch = Stopwatch::start();
            let result = download(client, &url, &dest, &options, &bar).await;
            bar.finish();
            (result, watch.elapsed())
        }
    })
    .await;
    let elapsed = watch.elapsed();
    drop(sandbox);

    let mut total = 0;
    let mut failed = 0;
    let mut rows = Vec::new();
    for ((url, dest, _), (result, took)) in jobs.iter().zip(&results) {
        let mb_s = |bytes: u64| bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9);
        match result {
            Ok(done) => {
                total += done.bytes;
                if !args.report.json {
                    let check = done
                        .sha256
                        .as_ref()
                        .map_or("length checked", |_| "length + sha256 checked");
                    println!(
                        "ok   {} ({} bytes, {:.1} MB/s, {check}{})",
                        dest.display(),
                        done.bytes,
                        mb_s(done.bytes - done.resumed_from),
                        if done.resumed_from > 0 {
                            format!(", resumed at {}", done.resumed_from)
                        } else {
                            String::new()
                        }
                    );
                }
                rows.push(serde_json::json!({"url": url.as_str(), "path": dest, "bytes": done.bytes,
                    "resumed_from": done.resumed_from, "seconds": took.as_secs_f64(), "sha256": done.sha256}));
            }
            Err(err) => {
                failed += 1;
                if !args.report.json {
                    println!(
                        "err  {url}: {err} (nothing at {}; partial data, if any, in {})",
                        dest.display(),
                        part_path(dest).display()
                    );
                }
                rows.push(serde_json::json!({"url": url.as_str(), "path": dest, "error": err.to_string()}));
            }
        }
    }
    let rate = total as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9);
    let rss = peak_rss_bytes();
    if args.report.json {
        let summary = serde_json::json!({"files": rows, "ok": jobs.len() - failed, "failed": failed,
            "bytes": total, "elapsed_s": elapsed.as_secs_f64(), "mb_per_s": rate, "peak_rss_bytes": rss});
        println!("{summary}");
    } else {
        print!(
            "\n{} of {} downloaded, {total} bytes in {:.2} s ({rate:.1} MB/s)",
            jobs.len() - failed,
            jobs.len(),
            elapsed.as_secs_f64()
        );
        match rss {
            Some(rss) => println!(", peak RSS {:.1} MiB", rss as f64 / (1 << 20) as f64),
            None => println!(),
        }
    }
    if failed > 0 {
        bail!("{failed} of {} downloads failed", jobs.len());
    }
    Ok(())
}

/// SHA-256 of the sandbox's `/bytes/{size}` body, computed locally.
fn pattern_sha256(size: u64) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(1 << 20);
        hasher.update(common::sandbox::pattern(offset, len as usize));
        offset += len;
    }
    hex(&hasher.finalize())
}

/// Peak resident set size (VmHWM) from /proc, on Linux.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
