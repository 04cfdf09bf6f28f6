//! The binary's `--store` roles on the [`crate::durable`] queue,
//! and the store benchmark. Demo support, not a pattern.
//!
//! ```text
//! URL=postgres://postgres@127.0.0.1:5432/test
//! priority-queue --store $URL --queue jobs --role producer --count 1000
//! priority-queue --store $URL --queue jobs --role consumer --concurrency 4 --until-empty
//! priority-queue --store $URL --queue jobs --role status
//! priority-queue --store $URL --queue jobs --bench --count 2000
//! ```

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SimulatedWork;
use crate::durable::{self, Counts, Job, Options, Store};
use crate::processor::{self, Config, Handler as _, LEVELS, Task};

/// `--count`'s default: 400 tasks; 1,000,000 for the in-process `--bench`;
/// 2,000 for the store benchmark.
pub fn default_count(bench: bool, stored: bool) -> u64 {
    match (bench, stored) {
        (true, false) => 1_000_000,
        (true, true) => 2000,
        (false, _) => 400,
    }
}

/// What a `--store` process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Adds `--count` tasks and exits.
    Producer,
    /// Runs `--concurrency` consumers (until a stop, or `--until-empty`).
    Consumer,
    /// The demo: adds the tasks, then consumes until nothing is left.
    All,
    /// Prints the counts by state as one JSON line.
    Status,
}

/// The `--store` flags (flattened into the binary's arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreFlags {
    /// Keep the queue in PostgreSQL (postgres://user@host:port/db).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The queue's name in the store (prefix of its table).
    #[arg(long, default_value = "demo", requires = "store", value_parser = queue_name)]
    pub queue: String,
    /// What this process does with --store.
    #[arg(long, value_enum, default_value = "all", requires = "store")]
    pub role: Role,
    /// A consumer exits once nothing is queued or leased.
    #[arg(long, requires = "store")]
    pub until_empty: bool,
    /// How long a claimed task stays leased without an extension.
    #[arg(long, default_value = "5s", requires = "store",
          value_parser = common::args::duration(Duration::from_millis(300), Duration::from_secs(600)))]
    pub lease: Duration,
}

fn queue_name(text: &str) -> Result<String, String> {
    durable::valid_queue_name(text).map(|()| text.to_owned())
}

/// Everything a `--store` run needs.
struct StoreRun {
    url: String,
    flags: StoreFlags,
    /// `tasks` (to add), `consumers` (per process), `seed`.
    config: Config,
    options: Options,
    work: SimulatedWork,
    quiet: bool,
}

/// Runs one role (or the benchmark with `bench`) and reports its figures.
/// `config` gives the tasks to add, the consumers of this process, retries,
/// ageing, the drain timeout and the seed.
pub async fn run(
    flags: StoreFlags,
    config: Config,
    work: SimulatedWork,
    quiet: bool,
    bench: bool,
    stop: CancellationToken,
) -> anyhow::Result<common::Report> {
    let url = flags.store.clone().unwrap_or_default();
    let options = Options {
        lease: flags.lease,
        max_retries: config.max_retries,
        aging: config.aging,
        drain_timeout: config.drain_timeout,
        max_connections: u32::try_from(config.consumers).unwrap_or(1000) + 2,
        ..Options::default()
    };
    let run = StoreRun {
        url,
        flags,
        config,
        options,
        work,
        quiet,
    };
    if bench {
        return self::bench(run, stop).await;
    }
    let role = format!("{:?}", run.flags.role).to_lowercase();
    let store = Store::connect(&run.url, &run.flags.queue, &role, run.options.clone()).await?;
    let say = |line: String| {
        if !run.quiet {
            println!("{line}");
        }
    };
    let mut failure = None;
    let mut report = common::Report::ok()
        .figure("mode", "store")
        .figure("role", &role);
    let queue = &run.flags.queue;
    if matches!(run.flags.role, Role::Producer | Role::All) {
        let added = produce(&store, run.config.tasks, run.config.seed, &stop).await?;
        say(format!(
            "added {added} tasks to queue {queue} as {}",
            store.owner()
        ));
        report = report.figure("added", added);
    }
    if matches!(run.flags.role, Role::Consumer | Role::All) {
        let until_empty = run.flags.until_empty || run.flags.role == Role::All;
        let work = run.work.clone();
        let handler = move |job: Job| handle(work.clone(), job);
        let done =
            durable::consume(&store, run.config.consumers, until_empty, &stop, handler).await?;
        say(format!(
            "consumed as {}: completed {}, failed {} (retried {}, dead {}), lost leases {}, handed back {}, db errors {}",
            store.owner(),
            done.completed,
            done.failed,
            done.retried,
            done.dead_lettered,
            done.lost_leases,
            done.released,
            done.db_errors
        ));
        if done.dead_lettered > 0 {
            failure = Some(format!("{} tasks were dead-lettered", done.dead_lettered));
        }
        report = report.figure("consumed", done);
    }
    let counts = store.counts().await?;
    if run.quiet {
    } else if run.flags.role == Role::Status {
        println!("{}", serde_json::to_string(&counts)?);
    } else {
        say(format!(
            "queue {queue}: produced {} = done {} + dead {} + queued {} + leased {}",
            counts.produced, counts.done, counts.dead, counts.queued, counts.leased
        ));
    }
    if !counts.invariant_holds() {
        failure = Some(format!("the table's counts do not add up: {counts:?}"));
    }
    Ok(report.figures(counts).fail_if(failure))
}

/// Adds `count` tasks with seeded random levels in batches of 500.
async fn produce(
    store: &Store,
    count: u64,
    seed: u64,
    stop: &CancellationToken,
) -> anyhow::Result<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut added = 0;
    while added < count && !stop.is_cancelled() {
        let size = (count - added).min(500);
        let batch: Vec<(i16, serde_json::Value)> = (added..added + size)
            .map(|id| {
                let level = rng.random_range(0..LEVELS.len() as u8);
                let task = Task {
                    id,
                    producer: 0,
                    level,
                    failures: 0,
                };
                (i16::from(level), json!(task))
            })
            .collect();
        added += store.push_many(&batch).await?;
    }
    Ok(added)
}

/// The simulated work on a stored task (attempt n sees n - 1 failures).
async fn handle(work: SimulatedWork, job: Job) -> anyhow::Result<()> {
    let mut task: Task =
        serde_json::from_value(job.payload).context("a task payload that is not a Task")?;
    task.failures = job.attempt.saturating_sub(1);
    work.handle(&task).await
}

/// Tasks/s of 4 consumers in 2 processes on the store, beside the
/// in-process queue's figure for the same tasks and handler, measured now.
async fn bench(run: StoreRun, stop: CancellationToken) -> anyhow::Result<common::Report> {
    let (tasks, seed) = (run.config.tasks, run.config.seed);
    let config = Config {
        producers: 1,
        consumers: 4,
        tasks,
        capacity: 1024,
        aging: None,
        max_retries: 0,
        batch: 1,
        seed,
        monitor_interval: None,
        drain_timeout: Duration::from_secs(10),
    };
    let work = SimulatedWork {
        processing: Duration::ZERO..=Duration::ZERO,
        error_rate: 0.0,
        seed,
    };
    let local = processor::run(
        config,
        work,
        |_: &processor::Snapshot| {},
        stop.clone().cancelled_owned(),
    )
    .await?;
    let in_process = local.counts.completed as f64 / local.elapsed.as_secs_f64().max(1e-9);

    let queue = format!("{}_bench", run.flags.queue);
    let store = Store::connect(&run.url, &queue, "bench", run.options.clone()).await?;
    store.drop_queue().await?;
    let store = Store::connect(&run.url, &queue, "bench", run.options.clone()).await?;
    produce(&store, tasks, seed, &stop).await?;
    let exe = std::env::current_exe().context("cannot find this binary to start consumers")?;
    let started = Instant::now();
    let mut children = Vec::new();
    for _ in 0..2 {
        let child = tokio::process::Command::new(&exe)
            .args([
                "--store",
                &run.url,
                "--queue",
                &queue,
                "--role",
                "consumer",
                "--until-empty",
            ])
            .args([
                "--concurrency",
                "2",
                "--processing",
                "0ms",
                "--error-rate",
                "0",
                "--json",
            ])
            .stdout(Stdio::null())
            .kill_on_drop(true) // a stop drops them: no consumer outlives the bench
            .spawn()
            .context("cannot start a consumer process")?;
        children.push(child);
    }
    for child in &mut children {
        tokio::select! {
            () = stop.cancelled() => return Ok(common::Report::ok().figure("mode", "store-bench")),
            status = child.wait() => anyhow::ensure!(status?.success(), "a consumer process failed"),
        }
    }
    let elapsed = started.elapsed();
    let counts: Counts = store.counts().await?;
    store.drop_queue().await?;
    let on_store = counts.done as f64 / elapsed.as_secs_f64().max(1e-9);
    if !run.quiet {
        println!("{tasks} tasks, no processing time, 4 consumers each:");
        println!("  in-process queue (1 process):       {in_process:>10.0} tasks/s");
        println!("  PostgreSQL queue (2 processes x 2): {on_store:>10.0} tasks/s");
    }
    let failure = (counts.done != tasks).then(|| format!("{} of {tasks} tasks done", counts.done));
    Ok(common::Report::ok()
        .figures(json!({
            "mode": "store-bench",
            "tasks": tasks,
            "in_process_tasks_per_s": in_process.round(),
            "store_tasks_per_s": on_store.round(),
            "store_processes": 2,
            "store_consumers": 4,
            "store_elapsed_s": elapsed.as_secs_f64(),
        }))
        .fail_if(failure))
}
