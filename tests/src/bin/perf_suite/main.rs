//! The performance suite: every example at a fixed scale, one report.
//!
//! Builds the workspace in `--release`, runs each example's scale mode with
//! fixed workload sizes, reads the one-line `--json` summary each prints,
//! measures wall time and peak RSS *from outside* the process (`wait4(2)`
//! returns the child's `ru_maxrss`), and writes `results.json` and
//! `results.md` (plus the benchmark's SVG chart) beside a description of the
//! machine it ran on.
//!
//! Machines are noisy, so in full mode every workload runs three times (one
//! process each, `--repeat N` to change it) and the report quotes the median
//! of each figure; `results.json` keeps every run.
//!
//! ```text
//! scripts/bench.sh            # full sizes, minutes; results in target/bench/
//! scripts/bench.sh --quick    # tiny sizes, seconds: what CI runs so the suite cannot rot
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use common::{Example, Report};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod workloads;

use workloads::{Workload, workloads};

/// Runs every example's scale mode in --release and writes results.json
/// and results.md (with the machine description) to --out.
///
/// It lives in the e2e crate because it is the same kind of program as the
/// end-to-end tests: it runs the workspace's built binaries from outside,
/// as a user would, and reads only what they print. A Ctrl-C stops the
/// workload that is running (it gets the SIGINT and reports) and writes the
/// report of what ran.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Tiny workload sizes (seconds): the CI smoke run.
    #[arg(long)]
    quick: bool,
    /// Do not run `cargo build --release` first.
    #[arg(long)]
    no_build: bool,
    /// Run each workload N times and report medians (default 3, or 1 with --quick).
    #[arg(long, value_parser = common::args::count(1u32, 100))]
    repeat: Option<u32>,
    /// Where to write the report (default target/bench).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Run only the workloads whose name contains this.
    #[arg(long, value_name = "SUBSTRING")]
    only: Option<String>,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "perf-suite";
    const SEED: Option<u8> = None;
    const TOOL: bool = true;
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

fn main() -> ExitCode {
    common::driver::main(|args: Args, stop: CancellationToken| async move {
        // The suite waits on child processes with blocking calls (wait4):
        // run it on the blocking pool, with a flag the stop sets.
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        let watch = tokio::spawn(async move {
            stop.cancelled().await;
            flag.store(true, Ordering::SeqCst);
        });
        let outcome = tokio::task::spawn_blocking(move || run(&args, &stopped))
            .await
            .context("the suite panicked")?;
        watch.abort();
        outcome
    })
}

fn run(args: &Args, stopped: &AtomicBool) -> anyhow::Result<Report> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| e2e::workspace_root().join("target/bench"));
    let root = e2e::workspace_root();
    if !args.no_build {
        eprintln!("building the workspace in --release ...");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args(["build", "--release", "--workspace", "--bins"])
            .status()
            .context("run cargo build --release")?;
        if !status.success() {
            bail!("cargo build --release failed");
        }
    }
    // Where `cargo build --release` put the bins: CARGO_TARGET_DIR when it
    // is set (relative to the workspace, as cargo reads it), else target/.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    let bin_dir = target_dir.join("release");
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;

    let machine = machine();
    eprintln!(
        "machine: {} cores, {}, {}",
        machine["cores"], machine["cpu"], machine["os"]
    );

    let repeat = args.repeat.unwrap_or(if args.quick { 1 } else { 3 });
    let mut rows = Vec::new();
    let mut failures = 0;
    for workload in workloads(args.quick, &out) {
        if stopped.load(Ordering::SeqCst) {
            break;
        }
        if args
            .only
            .as_deref()
            .is_some_and(|s| !workload.name.contains(s))
        {
            continue;
        }
        eprintln!("==> {}: {}", workload.name, command_line(&workload));
        let row = match run_workload(&bin_dir, &workload, repeat, stopped) {
            Ok(row) => row,
            Err(err) => {
                // A workload whose service is absent is skipped, with the
                // reason in its row, and is not a failure of the suite.
                if err.to_string().starts_with("skipped:") {
                    eprintln!("    {err}");
                } else {
                    failures += 1;
                    eprintln!("    FAILED: {err:#}");
                }
                json!({
                    "name": workload.name,
                    "command": command_line(&workload),
                    "error": format!("{err:#}"),
                })
            }
        };
        if repeat > 1 && row.get("error").is_none() {
            eprintln!("    median: {}", row_figures(&row));
        }
        rows.push((workload, row));
    }

    let report = json!({
        "date": utc_date(),
        "mode": if args.quick { "quick" } else { "full" },
        "runs_per_workload": repeat,
        "machine": machine,
        "results": rows.iter().map(|(_, row)| row.clone()).collect::<Vec<_>>(),
    });
    let json_path = out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("write {}", json_path.display()))?;
    let md_path = out.join("results.md");
    std::fs::write(&md_path, markdown(&report, &rows))
        .with_context(|| format!("write {}", md_path.display()))?;
    if !args.output.json {
        println!("wrote {} and {}", md_path.display(), json_path.display());
    }
    let report = Report::ok()
        .figure("workloads", rows.len())
        .figure("failed", failures)
        .figure("results_json", json_path.display().to_string());
    Ok(report.fail_if((failures > 0).then(|| format!("{failures} workload(s) failed"))))
}

/// What a reader would type to repeat a workload by hand (paths inside
/// the workspace relative to its root, where the command runs).
fn command_line(workload: &Workload) -> String {
    let root = format!("{}/", e2e::workspace_root().display());
    format!("{} {}", workload.bin, workload.args.join(" "))
        .trim_end()
        .replace(&root, "")
}

/// Runs a workload `repeat` times, one process each, and returns every run
/// plus the median of each figure, of the wall time and of the peak RSS.
fn run_workload(
    bin_dir: &Path,
    workload: &Workload,
    repeat: u32,
    stopped: &AtomicBool,
) -> anyhow::Result<Value> {
    if let Some((service, port)) = workload.needs
        && std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2),
        )
        .is_err()
    {
        bail!("skipped: needs {service} on 127.0.0.1:{port}");
    }
    let path = bin_dir.join(workload.bin);
    let mut runs = Vec::new();
    for i in 1..=repeat {
        let outcome = measure(&path, workload, stopped);
        if let Some(dir) = &workload.cleanup {
            // Best effort: a leftover directory is only disk (or RAM) space.
            let _ = std::fs::remove_dir_all(dir);
        }
        let run = outcome.with_context(|| format!("run {i} of {repeat}"))?;
        let figures = workload
            .figures
            .iter()
            .filter_map(|(label, pointer)| {
                let value = run["summary"].pointer(pointer)?.as_f64()?;
                Some(json!([label, value]))
            })
            .collect::<Vec<_>>();
        let run = json!({
            "wall_s": run["wall_s"],
            "peak_rss_mib": run["peak_rss_mib"],
            "figures": figures,
            "summary": run["summary"],
        });
        eprintln!("    run {i}: {}", row_figures(&run));
        if let Some(path) = &workload.artifact {
            std::fs::rename(path, run_copy(path, i))
                .with_context(|| format!("keep {} of run {i}", path.display()))?;
        }
        runs.push(run);
    }
    if let Some(path) = &workload.artifact {
        // The artifact that goes with the figures: the run whose headline
        // (first figure) is the median; the lower middle for an even count.
        let mut order: Vec<usize> = (0..runs.len()).collect();
        let headline = |i: &usize| runs[*i]["figures"][0][1].as_f64().unwrap_or(0.0);
        order.sort_by(|a, b| headline(a).total_cmp(&headline(b)));
        let median_run = order[(order.len() - 1) / 2] + 1;
        std::fs::copy(run_copy(path, median_run as u32), path)
            .with_context(|| format!("copy run {median_run}'s {}", path.display()))?;
    }
    let median_of = |get: &dyn Fn(&Value) -> Option<f64>| median(runs.iter().filter_map(get));
    let figures = workload
        .figures
        .iter()
        .enumerate()
        .filter_map(|(i, (label, _))| {
            // A figure a run lacks (an older binary, an optional field) is skipped.
            let value = median_of(&|run| run["figures"].get(i)?.get(1)?.as_f64())?;
            Some(json!([label, value]))
        })
        .collect::<Vec<_>>();
    Ok(json!({
        "name": workload.name,
        "command": command_line(workload),
        "wall_s": median_of(&|run| run["wall_s"].as_f64()),
        "peak_rss_mib": median_of(&|run| run["peak_rss_mib"].as_f64()),
        "figures": figures,
        "runs": runs,
    }))
}

/// `dir/chart.svg` -> `dir/chart-run2.svg`.
fn run_copy(path: &Path, run: u32) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-run{run}.{}", ext.to_string_lossy()),
        None => format!("{stem}-run{run}"),
    };
    path.with_file_name(name)
}

/// The median; the mean of the two middle values for an even count.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// Runs one process of a workload; wall time and peak RSS come from `wait4`.
fn measure(path: &Path, workload: &Workload, stopped: &AtomicBool) -> anyhow::Result<Value> {
    let mut child = Command::new(path)
        .args(&workload.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {}", path.display()))?;
    let pid = child.id();
    let started = Instant::now();
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().context("stdout piped")?;
    let mut stderr = child.stderr.take().context("stderr piped")?;
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        // A read error only truncates what we parse; the exit status decides.
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        // As above: a truncated stderr only shortens an error message.
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // A watchdog kills a run that overstays its limit.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let limit = workload.limit;
    // It also passes a stop on: the child gets one SIGINT, stops cleanly
    // and reports (exit 130).
    let stopped_now = || stopped.load(Ordering::SeqCst);
    let watchdog = std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            let deadline = Instant::now() + limit;
            let mut interrupted = false;
            loop {
                match done_rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return false,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                }
                if stopped_now() && !interrupted {
                    interrupted = true;
                    // SAFETY: kill(2) has no memory-safety preconditions; the
                    // child is not reaped until wait4 returns, so the pid is ours.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
                }
                if Instant::now() >= deadline {
                    // SAFETY: as above.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    return true;
                }
            }
        });
        let reaped = wait4(pid);
        // The watchdog may have returned already; then nobody listens.
        let _ = done_tx.send(());
        (reaped, handle.join().unwrap_or(false))
    });
    let (reaped, killed) = watchdog;
    let (status, rusage) = reaped?;
    let wall = started.elapsed();
    // Keep `child` alive until here: dropping a std Child never kills or waits.
    drop(child);
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    if killed {
        bail!("killed after {limit:?}");
    }
    if stopped.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let last = stderr.lines().last().unwrap_or("").to_owned();
        bail!("exit status {status}: {last}");
    }
    let summary = stdout
        .lines()
        .rev()
        .find_map(|line| {
            serde_json::from_str::<Value>(line.trim())
                .ok()
                .filter(Value::is_object)
        })
        .context("no JSON summary line on stdout")?;
    Ok(json!({
        "wall_s": (wall.as_secs_f64() * 1000.0).round() / 1000.0,
        // Linux reports ru_maxrss in KiB.
        "peak_rss_mib": (rusage.ru_maxrss as f64 / 1024.0 * 10.0).round() / 10.0,
        "summary": summary,
    }))
}

/// `wait4(2)`: reaps the child and returns its status and resource usage.
fn wait4(pid: u32) -> anyhow::Result<(libc::c_int, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; an all-zero value is valid.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live, writable locals of the right type.
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut rusage) };
        if rc >= 0 {
            return Ok((status, rusage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
}

/// `label value` for each of a row's figures, comma-separated.
fn figures_text(row: &Value) -> String {
    if let Some(err) = row.get("error") {
        return format!("error: {}", err.as_str().unwrap_or_default());
    }
    row["figures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pair| {
            let label = pair[0].as_str().unwrap_or_default();
            format!("{label} {}", fmt_value(&pair[1]))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A run's or a row's figures, wall time and peak RSS, for the progress log.
fn row_figures(row: &Value) -> String {
    if row.get("error").is_some() {
        return figures_text(row);
    }
    format!(
        "{}, wall {} s, peak RSS {} MiB",
        figures_text(row),
        fixed(&row["wall_s"], 3),
        fixed(&row["peak_rss_mib"], 1)
    )
}

/// Numbers as a reader scans them: `11.13 M`, `73643`, `0.830`.
fn fmt_value(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.abs() >= 1e6 => format!("{:.2} M", f / 1e6),
        Some(f) if f.abs() >= 100.0 || f.fract() == 0.0 => format!("{f:.0}"),
        Some(f) if f.abs() >= 10.0 => format!("{f:.1}"),
        Some(f) => format!("{f:.3}"),
        None => v.to_string(),
    }
}

/// A number with `digits` decimals (seconds to the ms, MiB to 0.1).
fn fixed(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map(|f| format!("{f:.digits$}"))
        .unwrap_or_default()
}

fn markdown(report: &Value, rows: &[(Workload, Value)]) -> String {
    let m = &report["machine"];
    let runs = report["runs_per_workload"].as_u64().unwrap_or(1);
    let mut md = format!(
        "Measured {} ({} mode{}) on {} cores, {}, {}, {}.\n\n",
        report["date"].as_str().unwrap_or_default(),
        report["mode"].as_str().unwrap_or_default(),
        if runs > 1 {
            format!(", median of {runs} runs")
        } else {
            String::new()
        },
        m["cores"],
        m["cpu"].as_str().unwrap_or_default(),
        m["os"].as_str().unwrap_or_default(),
        m["rustc"].as_str().unwrap_or_default(),
    );
    md.push_str("| workload | figures | wall s | peak RSS MiB | target | command |\n|---|---|---|---|---|---|\n");
    for (workload, row) in rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | `{}` |\n",
            workload.name,
            figures_text(row),
            fixed(&row["wall_s"], 3),
            fixed(&row["peak_rss_mib"], 1),
            workload.target,
            command_line(workload),
        ));
    }
    md
}

/// Cores, CPU model, OS and compiler: the context every figure needs.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| std::env::consts::OS.into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut m = BTreeMap::new();
    m.insert("cores", json!(cores));
    m.insert("cpu", json!(cpu));
    m.insert("os", json!(format!("{os}, Linux {kernel}")));
    m.insert("rustc", json!(rustc));
    json!(m)
}

/// Today's UTC date, from the system clock (no date crate needed).
fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn numbers_print_the_way_the_report_shows_them() {
        assert_eq!(fmt_value(&json!(11_127_822.0)), "11.13 M");
        assert_eq!(fmt_value(&json!(73_643.4)), "73643");
        assert_eq!(fmt_value(&json!(1000)), "1000");
        assert_eq!(fmt_value(&json!(53.27)), "53.3");
        assert_eq!(fmt_value(&json!(0.8304)), "0.830");
        assert_eq!(fixed(&json!(12.84), 1), "12.8");
    }

    #[test]
    fn each_run_keeps_its_own_copy_of_an_artifact() {
        let path = Path::new("/out/benchmark-sweep.svg");
        assert_eq!(
            run_copy(path, 2),
            Path::new("/out/benchmark-sweep-run2.svg")
        );
        assert_eq!(
            run_copy(Path::new("/out/log"), 1),
            Path::new("/out/log-run1")
        );
    }

    #[test]
    fn commands_are_what_a_reader_types() {
        let all = workloads(true, &e2e::workspace_root().join("target/bench"));
        let pool = all
            .iter()
            .find(|w| w.bin == "connection-pool")
            .expect("the pool bench");
        assert_eq!(
            command_line(pool),
            "connection-pool --bench --count 20000 --runs 1 --json"
        );
        // Every workload runs a binary of the workspace.
        let bins = e2e::bin_names();
        for workload in &all {
            assert!(bins.contains(&workload.bin), "{}", workload.bin);
        }
        let sweep = all
            .iter()
            .find(|w| w.bin == "benchmark")
            .expect("the sweep");
        let line = command_line(sweep);
        assert!(line.starts_with("benchmark --latency 0s"), "{line}");
        assert!(
            line.contains("--svg target/bench/benchmark-sweep.svg"),
            "{line}"
        );
    }

    #[test]
    fn a_failed_row_shows_its_error_instead_of_figures() {
        let row = json!({ "error": "exit status 1: error: boom" });
        assert_eq!(row_figures(&row), "error: exit status 1: error: boom");
        let row = json!({
            "figures": [["rps", 1234.5], ["p99 ms", 1.5]],
            "wall_s": 2.0,
            "peak_rss_mib": 10.0,
        });
        assert_eq!(
            row_figures(&row),
            "rps 1234, p99 ms 1.500, wall 2.000 s, peak RSS 10.0 MiB"
        );
    }
}
