//! `graceful-shutdown`: a job service that stops without losing work.
//!
//! ```text
//! cargo run --bin graceful-shutdown                          # demo under load
//! cargo run --bin graceful-shutdown -- --serve --port 8090   # Ctrl-C to drain, twice to force
//! cargo run --bin graceful-shutdown -- --serve --stuck-job --grace 2   # deadline expires: exit 1
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use examples_lifecycle::jobs::{JobService, JobsConfig, Journal};
use examples_lifecycle::load::{self, LoadConfig};
use examples_lifecycle::{parse_duration, parse_positive_duration, shutdown};
use tokio_util::sync::CancellationToken;

/// Ports seed Example 15 (graceful shutdown): an axum job service with
/// workers that, on Ctrl-C or SIGTERM, stops intake, drains in-flight
/// requests and queued jobs, and closes its journal, within --grace (exit 1
/// if it expires). A second signal exits at once. Without --serve it runs a
/// demo: built-in clients load it, then it shuts itself down mid-load.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Serve until Ctrl-C/SIGTERM instead of running the built-in demo.
    #[arg(long)]
    serve: bool,
    /// Address to bind (loopback by default; 0.0.0.0 exposes the service).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (printed as "listening on ...").
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Worker tasks.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: u16,
    /// Queue capacity; a full queue answers 503 + Retry-After.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    queue: u32,
    /// Deadline for stopping intake and draining; past it, work is aborted, exit 1.
    #[arg(long, default_value = "10", value_parser = parse_positive_duration)]
    grace: Duration,
    /// Largest work_ms a job may ask for.
    #[arg(long, default_value = "30", value_parser = parse_duration)]
    max_work: Duration,
    /// Enqueue one job whose downstream never answers (shows the deadline).
    #[arg(long)]
    stuck_job: bool,
    /// Journal file (JSON lines, appended); default: a temp file removed at exit.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Demo: concurrent clients.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    clients: u16,
    /// Demo: how long to load the service before shutting it down.
    #[arg(long, default_value = "1.5", value_parser = parse_positive_duration)]
    load_for: Duration,
    /// Demo: seed for job sizes (50-250 ms each).
    #[arg(long, default_value_t = 15)]
    seed: u64,
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
    // Kept alive until the end of run(): dropping it deletes the temp journal.
    let temp = tempfile::tempdir().context("create a temp dir for the journal")?;
    let journal_path = args
        .journal
        .clone()
        .unwrap_or_else(|| temp.path().join("journal.jsonl"));
    let journal = Journal::open(&journal_path)
        .await
        .with_context(|| format!("open journal {}", journal_path.display()))?;
    let config = JobsConfig {
        workers: usize::from(args.workers),
        queue_capacity: args.queue as usize,
        max_work: args.max_work,
    };
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let base = format!("http://{}", listener.local_addr().context("local address")?);
    let service = JobService::start(&config, journal);
    if args.stuck_job {
        let id = service.submit_stuck_job()?;
        tracing::warn!(job = id, "--stuck-job: job {id} will never finish");
    }
    // The first signal cancels `shutdown`; a second exits at once.
    let shutdown = CancellationToken::new();
    // A forced exit skips destructors, so remove the temp journal by hand.
    let temp_dir = temp.path().to_owned();
    let remove_temp = move || {
        // Best effort on the way out; a leftover temp dir is harmless.
        let _ = std::fs::remove_dir_all(temp_dir);
    };
    shutdown::spawn_signal_watcher(shutdown.clone(), remove_temp)
        .context("install signal handlers")?;
    // Stdout in story mode (scripts and tests look for this line); with
    // --json stdout carries only the summary, so the address goes to the log.
    if args.output.json {
        tracing::info!("listening on {base} (journal {})", journal_path.display());
    } else {
        println!("listening on {base} (journal {})", journal_path.display());
    }

    // Demo: clients load the service, and we "send ourselves a signal" mid-load.
    let load = (!args.serve).then(|| {
        let stop_clients = CancellationToken::new();
        let config = LoadConfig {
            clients: usize::from(args.clients),
            work_ms: (50, 250),
            seed: args.seed,
        };
        let (base, trigger, stop) = (base.clone(), shutdown.clone(), stop_clients.clone());
        let load_for = args.load_for;
        let task = tokio::spawn(async move { load::run(&base, &config, stop).await });
        tokio::spawn(async move {
            tokio::time::sleep(load_for).await;
            trigger.cancel();
        });
        (task, stop_clients)
    });

    let json = args.output.json;
    let report = shutdown::serve_until(
        listener,
        service,
        shutdown.cancelled_owned(),
        args.grace,
        |phase| {
            if !json {
                println!("{phase}");
            }
            tracing::info!("{phase}");
        },
    )
    .await?;

    let mut load_report = None;
    if let Some((task, stop_clients)) = load {
        stop_clients.cancel();
        let seen = task.await.context("load generator")??;
        if !json {
            println!(
                "load: {} sent, {} complete responses, {} refused by the server, {} connection(s) refused after intake stopped, {} broken",
                seen.sent,
                seen.completed,
                seen.refused_by_server,
                seen.connection_refused,
                seen.broken
            );
            if let Some(latency) = &seen.latency {
                println!("{}\n{latency}", common::LatencySummary::HEADER);
            }
        }
        load_report = Some(seen);
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "shutdown": report, "load": load_report })
        );
    }
    if let Some(error) = report.deadline_error() {
        bail!(error);
    }
    if let Some(error) = &report.closed.journal_error {
        bail!("closing resources failed, results may be lost: {error}");
    }
    if let Some(seen) = load_report
        && seen.broken > 0
    {
        bail!(
            "{} request(s) broken: an accepted request lost its response",
            seen.broken
        );
    }
    if !json {
        println!("shutdown complete: every accepted request answered, every accepted job finished");
    }
    Ok(())
}
