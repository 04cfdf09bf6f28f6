//! `background-tasks`: the seed's background loops under a supervisor.
//!
//! ```text
//! cargo run --bin background-tasks                      # 6 s demo
//! cargo run --bin background-tasks -- --crash-after 2.5 # a panic, restarted with backoff
//! cargo run --bin background-tasks -- --slow-stop 3     # a flush that overruns: aborted
//! cargo run --release --bin background-tasks -- --spawn-bench 100000 --json
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples_lifecycle::background::{self, DemoOptions};
use examples_lifecycle::spawn_bench::{self, BenchMode};
use examples_lifecycle::supervisor::{Event, StatusReport, Supervisor, TaskState};
use examples_lifecycle::{parse_duration, parse_positive_duration, shutdown};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Ports seed Example 11 (application with background tasks): a data
/// processor, a cleanup task, a heartbeat and a one-shot cache warm-up run
/// under a supervisor with restart policies, liveness and a bounded stop.
/// Durations are seconds (`2`, `0.5`) or take a unit (`1.5s`, `250ms`).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// How long to run before stopping (Ctrl-C/SIGTERM stops earlier).
    #[arg(long, default_value = "6", value_parser = parse_positive_duration)]
    duration: Duration,
    /// Make every data-processor run panic this long after it starts.
    #[arg(long, value_parser = parse_positive_duration)]
    crash_after: Option<Duration>,
    /// Print a status report this often.
    #[arg(long, default_value = "2", value_parser = parse_positive_duration)]
    status_every: Duration,
    /// Deadline for the tasks to stop once asked; overrunning tasks are aborted.
    #[arg(long, default_value = "2", value_parser = parse_duration)]
    grace: Duration,
    /// How long the cleanup task's final flush takes (above --grace: aborted).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    slow_stop: Duration,
    /// Benchmark instead: N concurrent tasks that each sleep --bench-sleep.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    spawn_bench: Option<u32>,
    /// How long each benchmark task sleeps.
    #[arg(long, default_value = "1", value_parser = parse_duration)]
    bench_sleep: Duration,
    /// Benchmark mode: spawned tasks, or plain futures in one task.
    #[arg(long, value_enum, default_value_t = BenchMode::Spawn)]
    bench_mode: BenchMode,
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
    if let Some(tasks) = args.spawn_bench {
        let result = spawn_bench::run(tasks as usize, args.bench_sleep, args.bench_mode).await?;
        if args.output.json {
            println!("{}", serde_json::to_string(&result).context("encode JSON")?);
        } else {
            let rss = result.peak_rss_kib.map_or("n/a".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            });
            println!(
                "{} sleepers of {:?} ({:?} mode): spawned in {:.1} ms, all done in {:.1} ms, peak RSS {rss}",
                result.tasks, args.bench_sleep, result.mode, result.spawn_ms, result.wall_ms
            );
        }
        return Ok(());
    }

    let story = !args.output.json;
    let options = DemoOptions {
        crash_after: args.crash_after,
        slow_stop: args.slow_stop,
    };
    // Signal handlers are registered before anything is printed, so a
    // SIGTERM sent as soon as the first line appears is never missed. A
    // second signal exits at once (the stop has a deadline anyway).
    let shutdown = CancellationToken::new();
    shutdown::spawn_signal_watcher(shutdown.clone(), || {}).context("install signal handlers")?;
    let started = Instant::now();
    let (supervisor, mut events) = Supervisor::start(background::demo_tasks(options));
    if story {
        println!("=== started 4 supervised tasks for {:?} ===", args.duration);
    }
    let mut status = tokio::time::interval_at(started + args.status_every, args.status_every);
    let stop_at = tokio::time::sleep(args.duration);
    tokio::pin!(stop_at);
    let why = loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if story => print_event(started, &event),
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "event stream lagged"),
                // Closed only once the supervisor is gone, which needs stop().
                Err(RecvError::Closed) => break "supervisor ended",
            },
            _ = status.tick(), if story => println!("--- status at {:.1}s ---\n{}", started.elapsed().as_secs_f64(), supervisor.status()),
            () = &mut stop_at => break "duration elapsed",
            () = shutdown.cancelled() => break "signal received",
        }
    };
    if story {
        println!("=== stopping ({why}), grace {:?} ===", args.grace);
    }
    let report = supervisor.stop(args.grace).await;
    while let Ok(event) = events.try_recv() {
        if story {
            print_event(started, &event);
        }
    }
    print_final(&report, story, why);
    Ok(())
}

fn print_event(started: Instant, event: &Event) {
    let at = started.elapsed().as_secs_f64();
    match event {
        Event::Started { task, run } => println!("[{at:6.2}s] {task}: run {run} started"),
        Event::Exited {
            task,
            reason,
            restart_in: Some(delay),
        } => {
            println!("[{at:6.2}s] {task}: {reason}; restarting in {delay:?}");
        }
        Event::Exited {
            task,
            reason,
            restart_in: None,
        } => println!("[{at:6.2}s] {task}: {reason}"),
    }
}

fn print_final(report: &StatusReport, story: bool, why: &str) {
    if story {
        println!("=== final report ===\n{report}");
        for task in &report.tasks {
            if let TaskState::Exited(reason) = &task.state {
                println!("{}: exit reason: {reason}", task.name);
            }
        }
    } else {
        let mut summary = report.to_json();
        summary["stopped_because"] = why.into();
        println!("{summary}");
    }
}
