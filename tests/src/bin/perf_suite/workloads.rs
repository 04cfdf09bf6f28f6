//! The fixed workloads: which binary, which flags, which figures to show.
//!
//! Full sizes are the ones the example issues set as targets; quick sizes
//! exercise the same code paths in a second or two each, so CI catches a
//! scale flag or a JSON field that stopped working.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One run of one example's scale mode.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// Short name in the report.
    pub(crate) name: &'static str,
    /// The binary (a workspace bin name). Every benchmark is a binary's
    /// `--bench` or scale mode: the workspace has no `cargo bench` targets.
    pub(crate) bin: &'static str,
    /// A service the workload needs, as (name, port on 127.0.0.1); when it
    /// does not answer, the workload is skipped with a note.
    pub(crate) needs: Option<(&'static str, u16)>,
    /// Its arguments, `--json` included.
    pub(crate) args: Vec<String>,
    /// (label, JSON pointer into the summary) for the report's figures
    /// column. The first is the headline: with several runs, the run whose
    /// headline is the median is the one whose `artifact` is kept.
    pub(crate) figures: Vec<(&'static str, &'static str)>,
    /// The goal the issue set, for the reader to compare.
    pub(crate) target: &'static str,
    /// Killed past this.
    pub(crate) limit: Duration,
    /// A directory the run fills and the suite removes afterwards.
    pub(crate) cleanup: Option<PathBuf>,
    /// A file the run writes (the benchmark's chart). Each run's copy is
    /// kept as `<stem>-run<N>.<ext>`; the median run's stays at this path.
    pub(crate) artifact: Option<PathBuf>,
}

/// The services the scale-out workloads use (the same defaults as `.ci/run`).
const REDIS: &str = "redis://127.0.0.1:6379";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `full` at full size, `quick` in quick mode.
fn size(quick: bool, full: u64, small: u64) -> String {
    if quick { small } else { full }.to_string()
}

fn workload(
    name: &'static str,
    bin: &'static str,
    args: Vec<String>,
    figures: &[(&'static str, &'static str)],
    target: &'static str,
) -> Workload {
    Workload {
        name,
        bin,
        args,
        figures: figures.to_vec(),
        target,
        limit: Duration::from_secs(300),
        needs: None,
        cleanup: None,
        artifact: None,
    }
}

macro_rules! args {
    ($($arg:expr),* $(,)?) => { vec![$($arg.to_string()),*] };
}

/// Every workload, at full or quick size; files (the SVG chart, downloads)
/// go under `out`.
pub(crate) fn workloads(quick: bool, out: &Path) -> Vec<Workload> {
    let q = |full, small| size(quick, full, small);
    let svg = out.join("benchmark-sweep.svg");
    // The download lands in RAM when /dev/shm exists: the workload measures
    // the HTTP-to-file pipeline, and the final fsync on a disk would
    // otherwise measure the disk (about 300 MB/s on the development VM).
    let shm = Path::new("/dev/shm");
    let downloads = if shm.is_dir() {
        shm.join("perf-suite-downloads")
    } else {
        out.join("downloads")
    };
    vec![
        workload(
            "concurrent-fetch, bounded",
            "concurrent-fetch",
            args![
                "--count",
                q(1000, 50),
                "--delay",
                "100ms",
                "--concurrency",
                100,
                "--no-sequential",
                "--json"
            ],
            &[
                ("wall", "/concurrent_s"),
                ("ideal", "/ideal_s"),
                ("ok", "/succeeded"),
            ],
            "within 1.10x of 1.0 s",
        ),
        workload(
            "concurrent-fetch, unbounded",
            "concurrent-fetch",
            args![
                "--count",
                q(1000, 50),
                "--delay",
                "100ms",
                "--unbounded",
                "--no-sequential",
                "--json"
            ],
            &[("wall", "/concurrent_s"), ("ok", "/succeeded")],
            "within 0.15 s",
        ),
        Workload {
            artifact: Some(svg.clone()),
            ..workload(
                "benchmark sweep, zero latency",
                "benchmark",
                args![
                    "--latency",
                    "0s",
                    "--jitter",
                    "0s",
                    "--concurrency",
                    "1,4,16,64,256",
                    "--count",
                    q(50_000, 500),
                    "--warmup",
                    q(1000, 50),
                    "--svg",
                    svg.display(),
                    "--json"
                ],
                &[
                    ("c=64 rps", "/results/3/throughput_per_s"),
                    ("c=64 p50 ms", "/results/3/latency/p50_ms"),
                    ("c=64 p99 ms", "/results/3/latency/p99_ms"),
                    ("c=1 rps", "/results/0/throughput_per_s"),
                    ("c=256 rps", "/results/4/throughput_per_s"),
                ],
                ">= 30,000 rps at 64 in flight",
            )
        },
        Workload {
            cleanup: Some(downloads.clone()),
            ..workload(
                "streaming-download, 1 GiB",
                "streaming-download",
                args![
                    "--size",
                    q(1 << 30, 4 << 20),
                    "--output-dir",
                    downloads.display(),
                    "--force",
                    "--json"
                ],
                &[("MB/s", "/mb_per_s"), ("bytes", "/total_bytes")],
                ">= 800 MB/s, RSS < 50 MB",
            )
        },
        workload(
            "rate-limited-client, 200 rps x 10 s",
            "rate-limited-client",
            args![
                "--rate",
                200,
                "--burst",
                5,
                "--count",
                q(2000, 100),
                "--concurrency",
                20,
                "--json"
            ],
            &[
                ("achieved rps", "/sustained_per_s"),
                ("rate error %", "/rate_error_pct"),
                ("429s", "/server_429"),
                ("errors", "/errors"),
            ],
            "within 1% of 200, zero 429s (the 2 errors are the demo's planted bad login and broken body)",
        ),
        workload(
            "ws-broadcast fan-out, 1,000 clients x 1,000 messages",
            "ws-load",
            args![
                "--clients",
                q(1000, 20),
                "--count",
                q(1000, 20),
                "--runs",
                q(3, 1),
                "--json"
            ],
            &[
                ("deliveries/s", "/median/deliveries_per_s"),
                ("ms", "/median/elapsed_ms"),
            ],
            "1,000,000 deliveries within 1 s",
        ),
        workload(
            "ws-broadcast, 5,000 idle connections",
            "ws-load",
            args!["--idle", q(5000, 50), "--duration", "1s", "--json"],
            &[
                ("server RSS bytes", "/server_rss_bytes"),
                (
                    "server peak RSS bytes (read from outside)",
                    "/server_peak_rss_bytes",
                ),
                ("bytes/conn", "/per_connection_bytes"),
            ],
            "server RSS < 200 MB",
        ),
        workload(
            "connection-pool acquire+release vs deadpool",
            "connection-pool",
            if quick {
                args!["--bench", "--count", 20_000, "--runs", 1, "--json"]
            } else {
                args!["--bench", "--json"]
            },
            &[
                ("1 task ours/s", "/cases/0/ours_per_s"),
                ("deadpool/s", "/cases/0/deadpool_per_s"),
                ("64 tasks ours/s", "/cases/1/ours_per_s"),
                ("deadpool/s", "/cases/1/deadpool_per_s"),
            ],
            "ours >= 0.8x deadpool",
        ),
        workload(
            "async-cache hits",
            "async-cache",
            if quick {
                args!["--bench", "--count", 20_000, "--runs", 1, "--json"]
            } else {
                args!["--bench", "--json"]
            },
            &[
                ("1 task hits/s", "/cases/0/hits_per_s"),
                ("2 tasks", "/cases/1/hits_per_s"),
                ("64 tasks", "/cases/2/hits_per_s"),
            ],
            ">= 5 M hits/s from one task",
        ),
        workload(
            "priority-queue vs mpsc, 3 producers x 5 consumers",
            "priority-queue",
            args![
                "--bench",
                "--count",
                q(1_000_000, 20_000),
                "--runs",
                q(3, 1),
                "--json"
            ],
            &[
                ("queue tasks/s", "/results/0/median_tasks_per_s"),
                ("queue batched", "/results/1/median_tasks_per_s"),
                ("mpsc", "/results/2/median_tasks_per_s"),
                ("mpsc batched", "/results/3/median_tasks_per_s"),
            ],
            ">= 1,000,000 tasks/s",
        ),
        workload(
            "bank-account, 100 tasks x 10,000 ops",
            "bank-account",
            args![
                "--bench",
                "--concurrency",
                100,
                "--count",
                q(1_000_000, 10_000),
                "--runs",
                q(3, 1),
                "--json"
            ],
            &[
                ("std Mutex ops/s", "/designs/0/ops_per_s"),
                ("tokio Mutex", "/designs/1/ops_per_s"),
                ("actor", "/designs/2/ops_per_s"),
            ],
            "std >= 10 M/s, tokio >= 2 M/s",
        ),
        workload(
            "semaphore-pool acquire+release",
            "semaphore-pool",
            args![
                "--bench",
                "--count",
                q(5_000_000, 10_000),
                "--runs",
                q(3, 1),
                "--json"
            ],
            &[
                ("pool/s", "/pool_per_s"),
                ("bare semaphore/s", "/semaphore_per_s"),
            ],
            ">= 5 M/s",
        ),
        workload(
            "circuit-breaker overhead, closed",
            "circuit-breaker",
            args!["--bench", "--count", q(2_000_000, 2000), "--json"],
            &[
                ("1 task ns", "/median/0/overhead_ns"),
                ("2 tasks ns", "/median/1/overhead_ns"),
                ("64 tasks ns", "/median/2/overhead_ns"),
            ],
            "< 200 ns single task",
        ),
        workload(
            "backoff-retry overhead, happy path",
            "backoff-retry",
            args!["--bench", "--count", q(2_000_000, 2000), "--json"],
            &[
                ("ns", "/median/0/overhead_ns"),
                ("with deadline ns", "/median/1/overhead_ns"),
            ],
            "< 100 ns",
        ),
        workload(
            "100,000 tasks each sleeping 1 s",
            "background-tasks",
            args![
                "--bench",
                "--count",
                q(100_000, 1000),
                "--bench-sleep",
                "1s",
                "--json"
            ],
            &[
                ("wall ms", "/wall_ms"),
                ("spawn ms", "/spawn_ms"),
                ("VmHWM bytes", "/peak_rss_bytes"),
            ],
            "within 1.2 s, < 50 MiB (Python: 2.6 s, 169 MiB)",
        ),
        Workload {
            needs: Some(("Redis", 6379)),
            ..workload(
                "ws-broadcast fan-out across 2 instances on a Redis bus",
                "ws-load",
                args![
                    "--bus",
                    REDIS,
                    "--instances",
                    2,
                    "--clients",
                    q(1000, 20),
                    "--count",
                    q(1000, 20),
                    "--runs",
                    q(3, 1),
                    "--json"
                ],
                &[
                    ("2 instances deliveries/s", "/median/deliveries_per_s"),
                    ("1 instance deliveries/s", "/one_instance/deliveries_per_s"),
                ],
                "every message to every client, in one order (figures: the cost of the bus)",
            )
        },
        Workload {
            needs: Some(("Redis", 6379)),
            ..workload(
                "shared rate limit decisions on Redis",
                "rate-limited-client",
                args![
                    "--bench",
                    "--shared-limit",
                    REDIS,
                    "--duration",
                    if quick { "500ms" } else { "3s" },
                    "--json"
                ],
                &[
                    ("Redis decisions/s", "/shared_decisions_per_s"),
                    ("Redis p99 ms", "/shared_p99_decision_ms"),
                    ("in-process decisions/s", "/local_decisions_per_s"),
                ],
                "one atomic script per decision, on the server's clock",
            )
        },
        Workload {
            needs: Some(("PostgreSQL", 5432)),
            ..workload(
                "durable priority queue on PostgreSQL, 4 consumers in 2 processes",
                "priority-queue",
                args![
                    "--bench",
                    "--store",
                    POSTGRES,
                    "--count",
                    q(2000, 100),
                    "--json"
                ],
                &[
                    ("store tasks/s", "/store_tasks_per_s"),
                    ("in-process tasks/s", "/in_process_tasks_per_s"),
                ],
                "at-least-once with leases (figures: the cost of durability)",
            )
        },
    ]
}
