//! `ws-load`: fan-out and idle-connection benchmarks for `ws-broadcast-server`.
//!
//! ```text
//! cargo run --release --bin ws-load -- --clients 1000 --messages 1000 --runs 3
//! cargo run --release --bin ws-load -- --idle 5000
//! ```

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use common::LatencySummary;
use examples_ws::cli::parse_duration;
use examples_ws::load::{self, FanoutConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Load generator for ws-broadcast-server (the performance part of the
/// WebSocket examples, seeds 4 and 5). Fan-out: --clients subscribers on one
/// channel, one publisher sends --messages as fast as it can; reports
/// deliveries/s (median of --runs). --idle N instead holds N idle connections
/// and reports the server's RSS. Without --url it starts ws-broadcast-server
/// (next to this binary) as a separate process on a free port.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Base URL of a running server, e.g. ws://127.0.0.1:8080.
    #[arg(long)]
    url: Option<String>,
    /// Subscribers on the channel.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    clients: u32,
    /// Messages the publisher sends per run.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    messages: u32,
    /// Bytes of text in each message.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    payload_bytes: u32,
    /// Fan-out runs; medians are reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Instead of fan-out: hold this many idle connections and report RSS.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60_000))]
    idle: Option<u32>,
    /// How long to hold idle connections before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    hold: Duration,
    /// Give up on a fan-out run after this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    output: common::OutputArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    common::exit_code(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Err(err) = examples_ws::os::raise_open_files_limit() {
        tracing::warn!("cannot raise the open files limit: {err}");
    }
    let (base_url, mut server) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_owned(), None),
        None => {
            let (url, child) = start_server().await?;
            (url, Some(child))
        }
    };
    let server_pid = server.as_ref().and_then(Child::id);
    let result = measure(&args, &base_url, server_pid).await;
    if let Some(child) = server.as_mut() {
        stop_server(child).await;
    }
    result
}

async fn measure(args: &Args, base_url: &str, server_pid: Option<u32>) -> anyhow::Result<()> {
    if let Some(connections) = args.idle {
        let report = load::idle(base_url, connections as usize, args.hold).await?;
        // The server's own figure is its current RSS; when we started the
        // server we can also read its *peak* from outside the process.
        let server_peak_mb = server_pid.and_then(peak_rss_mb);
        if args.output.json {
            let mut json = serde_json::to_value(&report)?;
            json["server_peak_rss_mb"] = serde_json::json!(server_peak_mb);
            println!("{json}");
        } else {
            println!(
                "{} idle connections (server saw {}): server RSS {:.1} MB (was {:.1} MB), {:.1} KiB per connection; connected in {:.0} ms",
                report.connections,
                report.server_open,
                report.server_rss_mb,
                report.server_rss_before_mb,
                report.per_connection_kib,
                report.connect_ms
            );
        }
        return Ok(());
    }
    let config = FanoutConfig {
        base_url: base_url.to_owned(),
        clients: args.clients as usize,
        messages: args.messages as usize,
        payload_bytes: args.payload_bytes as usize,
        timeout: args.timeout,
    };
    if !args.output.json {
        println!(
            "fan-out: {} clients x {} messages of {} bytes, server {base_url}",
            args.clients, args.messages, args.payload_bytes
        );
        println!(
            "  run  {:>10} {:>14} {:>7} {:>6}   per-client completion: {}",
            "elapsed",
            "deliveries/s",
            "missed",
            "order",
            LatencySummary::HEADER
        );
    }
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let report = load::fanout(&config).await?;
        let expected = u64::from(args.clients) * u64::from(args.messages);
        if report.deliveries + report.missed != expected {
            bail!(
                "run {run}: {} deliveries + {} missed != {expected}",
                report.deliveries,
                report.missed
            );
        }
        if !args.output.json {
            println!(
                "  {run:>3}  {:>8.1}ms {:>14.0} {:>7} {:>6}   {}",
                report.elapsed_ms,
                report.deliveries_per_sec,
                report.missed,
                report.out_of_order,
                report.completion
            );
        }
        runs.push(report);
    }
    let medians = load::medians(&runs);
    if args.output.json {
        println!(
            "{}",
            serde_json::json!({ "clients": args.clients, "messages": args.messages, "runs": runs, "median": medians })
        );
    } else {
        println!(
            "median of {}: {:.1} ms for {} deliveries = {:.0} deliveries/s",
            runs.len(),
            medians.elapsed_ms,
            u64::from(args.clients) * u64::from(args.messages),
            medians.deliveries_per_sec
        );
    }
    Ok(())
}

/// Starts `ws-broadcast-server` (a sibling of this executable) on a free
/// port and returns its ws:// base URL.
async fn start_server() -> anyhow::Result<(String, Child)> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let server: PathBuf = exe.with_file_name(format!(
        "ws-broadcast-server{}",
        std::env::consts::EXE_SUFFIX
    ));
    if !server.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p examples-ws) or pass --url",
            server.display()
        );
    }
    let mut child = Command::new(&server)
        .args([
            "--port",
            "0",
            "--tick-interval",
            "0",
            "--max-clients",
            "60000",
            "--max-channels",
            "10000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", server.display()))?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                return Ok(addr.to_owned());
            }
        }
        bail!("server exited before listening")
    })
    .await
    .context("server did not start within 30 s")??;
    // Keep reading its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((format!("ws://{line}"), child))
}

/// Peak resident set size (VmHWM) of another process, from /proc, in MiB
/// (the unit of the report's other `*_rss_mb` fields).
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// SIGTERM (graceful: Close 1001 to everyone), then wait.
async fn stop_server(child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|pid| libc::pid_t::try_from(pid).ok()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        // Best effort: kill_on_drop backs this up.
        let _ = child.start_kill();
    }
}
