//! `graceful-shutdown`: a job service that stops without losing work.
//!
//! ```text
//! cargo run --bin graceful-shutdown                          # demo under load
//! cargo run --bin graceful-shutdown -- --serve --port 8090   # Ctrl-C to drain, twice to force
//! cargo run --bin graceful-shutdown -- --serve --stuck-job --drain-timeout 2s   # expires: exit 1
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use common::args;
use common::driver::{Example, Report};
use examples_lifecycle::demo::load::{self, DemoLoad, LoadConfig};
use examples_lifecycle::jobs::{JobService, JobsConfig};
use examples_lifecycle::shutdown;
use tokio_util::sync::CancellationToken;

/// An axum job service with workers that, on Ctrl-C or SIGTERM, stops
/// intake (serving what the kernel already queued), drains in-flight
/// requests and queued jobs, and closes its journal, within
/// --drain-timeout (exit 1 if it expires; 130 after a clean stop). A second
/// signal exits at once. Without --serve it runs a demo: built-in clients
/// load it, then it shuts itself down mid-load (exit 0).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Serve until Ctrl-C/SIGTERM instead of running the built-in demo.
    #[arg(long, conflicts_with_all = ["clients", "duration"])]
    serve: bool,
    /// Address to bind (loopback by default; 0.0.0.0 exposes the service).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (printed as "listening on ...").
    #[arg(long, default_value = "0", value_parser = args::count(0u16, u16::MAX))]
    port: u16,
    /// Worker tasks: jobs run at once.
    #[arg(long, default_value = "4", value_parser = args::count(1usize, 1024))]
    concurrency: usize,
    /// Queue capacity; a full queue answers 503 + Retry-After.
    #[arg(long, default_value = "64", value_parser = args::count(1usize, 1_000_000))]
    queue: usize,
    /// Deadline for stopping intake and draining; past it, work is aborted, exit 1.
    #[arg(long, default_value = "10s", value_parser = args::duration(Duration::from_millis(1), args::MAX_DURATION))]
    drain_timeout: Duration,
    /// Largest work_ms a job may ask for.
    #[arg(long, default_value = "30s", value_parser = args::duration(Duration::ZERO, Duration::from_secs(3600)))]
    max_work: Duration,
    /// Enqueue one job whose downstream never answers (shows the deadline).
    #[arg(long)]
    stuck_job: bool,
    /// Journal file (JSON lines, appended); default: a temp file removed at exit.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Demo: concurrent load clients.
    #[arg(long, default_value = "16", value_parser = args::count(1usize, 1024))]
    clients: usize,
    /// Demo: how long to load the service before shutting it down.
    #[arg(long, default_value = "1.5s", value_parser = args::duration(Duration::from_millis(1), Duration::from_secs(3600)))]
    duration: Duration,
    /// Demo: seed for job sizes (50-250 ms each).
    #[arg(long, default_value = "15", value_parser = args::count(0u64, u64::MAX))]
    seed: u64,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "graceful-shutdown";
    const SEED: Option<u8> = Some(15);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let json = args.output.json;
    // Kept alive until the end of run(): dropping it deletes a temp journal.
    let (_temp, journal_path, journal) = load::open_journal(args.journal.clone()).await?;
    let config = JobsConfig {
        workers: args.concurrency,
        queue_capacity: args.queue,
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
    // Stdout in story mode (scripts and tests wait for this line).
    let journal_path = journal_path.display();
    args.output
        .say(format!("listening on {base} (journal {journal_path})"));

    // Demo: clients load the service, and we "send ourselves a signal" mid-load.
    let shutdown = stop.child_token();
    let load = (!args.serve).then(|| {
        let config = LoadConfig {
            clients: args.clients,
            work_ms: (50, 250),
            seed: args.seed,
        };
        DemoLoad::start(&base, config, args.duration, shutdown.clone())
    });
    let on_phase = |phase: &shutdown::Phase| args.output.say(phase);
    let report = shutdown::serve_until(
        listener,
        service,
        shutdown.cancelled_owned(),
        args.drain_timeout,
        on_phase,
    )
    .await?;
    load::outcome(report, load, !json).await
}
