//! `background-tasks`: the seed's background loops under a supervisor.
//!
//! ```text
//! cargo run --bin background-tasks                          # 6 s demo
//! cargo run --bin background-tasks -- --crash-after 2.5s    # a panic, restarted with backoff
//! cargo run --bin background-tasks -- --slow-stop 3s        # a flush that overruns: aborted, exit 1
//! cargo run --release --bin background-tasks -- --bench --count 100000 --json
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use common::args;
use common::driver::{Example, Report};
use examples_lifecycle::demo::background::{self, DemoOptions};
use examples_lifecycle::demo::bench::{self, BenchMode};
use examples_lifecycle::supervisor::{ExitReason, TaskState};
use tokio_util::sync::CancellationToken;

/// A data processor, a cleanup task, a heartbeat and a one-shot cache
/// warm-up run under a supervisor with restart policies, liveness and a
/// bounded stop. Exit 1 if a task had to be aborted at the stop deadline.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// How long to run before stopping (Ctrl-C/SIGTERM stops earlier).
    #[arg(long, default_value = "6s", value_parser = args::duration(Duration::from_millis(1), args::MAX_DURATION))]
    duration: Duration,
    /// Make every data-processor run panic this long after it starts.
    #[arg(long, value_parser = args::duration(Duration::from_millis(1), args::MAX_DURATION))]
    crash_after: Option<Duration>,
    /// Print a status report this often.
    #[arg(long, default_value = "2s", value_parser = args::duration(Duration::from_millis(10), args::MAX_DURATION))]
    status_every: Duration,
    /// Deadline for the tasks to stop once asked; overrunning tasks are aborted.
    #[arg(long, default_value = "2s", value_parser = args::duration(Duration::ZERO, args::MAX_DURATION))]
    drain_timeout: Duration,
    /// How long the cleanup task's final flush takes (above --drain-timeout: aborted).
    #[arg(long, default_value = "200ms", value_parser = args::duration(Duration::ZERO, args::MAX_DURATION))]
    slow_stop: Duration,
    /// Benchmark instead: --count concurrent tasks that each sleep --bench-sleep.
    #[arg(long, conflicts_with_all = ["duration", "crash_after", "status_every", "drain_timeout", "slow_stop"])]
    bench: bool,
    /// --bench: how many sleepers.
    #[arg(long, default_value = "100000", requires = "bench", value_parser = args::count(1usize, 10_000_000))]
    count: usize,
    /// --bench: how long each sleeper sleeps.
    #[arg(long, default_value = "1s", requires = "bench", value_parser = args::duration(Duration::ZERO, Duration::from_secs(3600)))]
    bench_sleep: Duration,
    /// --bench: spawned tasks, or plain futures in one task.
    #[arg(long, value_enum, default_value_t = BenchMode::Spawn, requires = "bench")]
    bench_mode: BenchMode,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "background-tasks";
    const SEED: Option<u8> = Some(11);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let story = !args.output.json;
    if args.bench {
        let Some(result) = bench::run(args.count, args.bench_sleep, args.bench_mode, &stop).await?
        else {
            return Ok(Report::ok()
                .figure("tasks", args.count)
                .figure("completed", false));
        };
        if story {
            println!("{result}");
        }
        return Ok(Report::ok().figures(&result).figure("completed", true));
    }
    let options = DemoOptions {
        crash_after: args.crash_after,
        slow_stop: args.slow_stop,
    };
    let timing = background::Timing {
        duration: args.duration,
        status_every: args.status_every,
        drain_timeout: args.drain_timeout,
    };
    let (report, why) = background::play(options, timing, story, &stop).await;
    let mut aborted = Vec::new();
    for task in &report.tasks {
        if let TaskState::Exited(reason) = &task.state {
            if story {
                println!("{}: exit reason: {reason}", task.name);
            }
            if *reason == ExitReason::Aborted {
                aborted.push(task.name.as_str());
            }
        }
    }
    let failure = (!aborted.is_empty()).then(|| {
        format!(
            "aborted at the stop deadline, work lost: {}",
            aborted.join(", ")
        )
    });
    Ok(Report::ok()
        .figures(report.to_json())
        .figure("stopped_because", why)
        .fail_if(failure))
}
