//! The `ws-load` runs: server processes it starts and stops, and the
//! fan-out and idle measurements put together for the JSON envelope.
//!
//! Demo support, not a pattern. Without `--url`, `ws-load` starts
//! `ws-broadcast-server` (a sibling of its own executable) as child
//! processes on free ports: one plain instance, or with `--bus` and
//! `--instances N`, N instances joined by Redis, plus one plain instance
//! for the one-instance figure beside it. Every child is killed when its
//! [`ServerProcess`] is dropped (`kill_on_drop`) and is stopped with SIGTERM
//! (Close 1001 to every client) on every normal path, the stop by a signal
//! included, so a `ws-load` killed with SIGTERM leaves no server running.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use common::{LatencySummary, Report};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::flags::LoadFlags;
use super::load::{self, FanoutConfig, FanoutReport, IdleReport, Medians};

/// A `ws-broadcast-server` child process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Its `ws://host:port` base URL.
    pub url: String,
}

impl ServerProcess {
    /// Starts `ws-broadcast-server` on a free port, with `--bus URL` and a
    /// key prefix if given, and waits for its "listening on" line.
    pub async fn start(bus: Option<(&str, &str)>) -> anyhow::Result<Self> {
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
        let mut command = Command::new(&server);
        command.args([
            "--port",
            "0",
            "--tick-interval",
            "0s",
            "--max-clients",
            "60000",
            "--max-channels",
            "10000",
        ]);
        if let Some((url, prefix)) = bus {
            command.args(["--bus", url, "--bus-prefix", prefix]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", server.display()))?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
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
        Ok(Self {
            child,
            url: format!("ws://{addr}"),
        })
    }

    /// Its process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM (graceful: Close 1001 to everyone), then wait up to 10 s;
    /// killed after that.
    pub async fn stop(mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.pid().and_then(|pid| libc::pid_t::try_from(pid).ok()) {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is
            // our unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            // Best effort: kill_on_drop backs this up.
            let _ = self.child.start_kill();
        }
    }
}

/// Stops every server (in order) and passes `result` through.
pub async fn stop_all<T>(servers: Vec<ServerProcess>, result: T) -> T {
    for server in servers {
        server.stop().await;
    }
    result
}

/// Peak resident set size (VmHWM) of another process, from /proc.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// What a fan-out benchmark reports (the envelope's figures).
#[derive(Debug, Clone, Serialize)]
pub struct FanoutSummary {
    /// Server instances the subscribers were spread over.
    pub instances: usize,
    /// Subscribers.
    pub clients: usize,
    /// Messages per run.
    pub count: usize,
    /// Every run that finished.
    pub runs: Vec<FanoutReport>,
    /// Medians over `runs`.
    pub median: Medians,
    /// With `--instances N` (N > 1): the same runs against one plain
    /// instance, measured in the same invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_instance: Option<Medians>,
    /// Runs not done because of a stop.
    pub runs_left: u32,
}

/// Runs `runs` fan-out measurements (stopping early on `stop`), calling
/// `each` after every run; checks every delivery is accounted for.
pub async fn fanout_runs(
    config: &FanoutConfig,
    runs: u32,
    stop: &CancellationToken,
    mut each: impl FnMut(u32, &FanoutReport),
) -> anyhow::Result<(Vec<FanoutReport>, u32)> {
    let expected = config.clients as u64 * config.messages as u64;
    let mut reports = Vec::new();
    for run in 1..=runs {
        let report = tokio::select! {
            () = stop.cancelled() => return Ok((reports, runs - run + 1)),
            report = load::fanout(config) => report?,
        };
        if report.deliveries + report.missed != expected {
            bail!(
                "run {run}: {} deliveries + {} missed != {expected}",
                report.deliveries,
                report.missed
            );
        }
        each(run, &report);
        reports.push(report);
    }
    Ok((reports, 0))
}

/// Holds idle connections (stopping early on `stop`); `None` if stopped.
pub async fn idle_run(
    base_url: &str,
    connections: usize,
    hold: Duration,
    stop: &CancellationToken,
) -> anyhow::Result<Option<IdleReport>> {
    tokio::select! {
        () = stop.cancelled() => Ok(None),
        report = load::idle(base_url, connections, hold) => report.map(Some),
    }
}

/// Starts `n` servers (on the bus if given); dropped ones are killed.
async fn start_servers(bus: Option<(&str, &str)>, n: usize) -> anyhow::Result<Vec<ServerProcess>> {
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(ServerProcess::start(bus).await?);
    }
    Ok(servers)
}

/// The whole `ws-load` run for `flags`: starts the servers it needs (unless
/// `--url`), measures, stops them on every path, and returns the report.
/// `say` prints a line of the human story (the driver mutes it for --json).
///
/// On the bus, the servers share a throwaway key prefix
/// (`ws-load-{pid}-{ms}`); its keys are deleted once they have stopped.
pub async fn run(
    flags: &LoadFlags,
    stop: &CancellationToken,
    say: &dyn Fn(String),
) -> anyhow::Result<Report> {
    let prefix = format!(
        "ws-load-{}-{}",
        std::process::id(),
        crate::message::now_ms()
    );
    let report = measure(flags, &prefix, stop, say).await;
    if let Some(url) = flags.bus.as_deref() {
        forget_prefix(url, &prefix).await;
    }
    report
}

/// Deletes every key under `prefix` (`{prefix}:*`) and returns how many
/// there were. SCAN + DEL: the server may be shared, and KEYS would block
/// it. Unbounded in time: the caller sets the deadline. The bus tests use
/// it to leave nothing behind.
pub async fn delete_prefix(url: &str, prefix: &str) -> anyhow::Result<usize> {
    let pattern = format!("{prefix}:*");
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let (mut cursor, mut deleted) = (0u64, 0);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
            deleted += keys.len();
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// [`delete_prefix`] for the end of a run: best effort, bounded; a failure
/// is a warning, and the `seq` keys expire by themselves a day later.
async fn forget_prefix(url: &str, prefix: &str) {
    const LIMIT: Duration = Duration::from_secs(5);
    match tokio::time::timeout(LIMIT, delete_prefix(url, prefix)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => tracing::warn!(%prefix, "could not delete the run's bus keys: {err:#}"),
        Err(_) => tracing::warn!(%prefix, "deleting the run's bus keys took over {LIMIT:?}"),
    }
}

async fn measure(
    flags: &LoadFlags,
    prefix: &str,
    stop: &CancellationToken,
    say: &dyn Fn(String),
) -> anyhow::Result<Report> {
    let bus = flags.bus.as_deref().map(|url| (url, prefix));
    let servers = if flags.url.is_empty() {
        let n = if bus.is_some() { flags.instances } else { 1 };
        start_servers(bus, n).await?
    } else {
        Vec::new()
    };
    let mut urls: Vec<String> = flags
        .url
        .iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    for server in &servers {
        say(format!(
            "started ws-broadcast-server pid {} at {}",
            server.pid().unwrap_or(0),
            server.url
        ));
        urls.push(server.url.clone());
    }
    if let Some(connections) = flags.idle {
        let pid = servers.first().and_then(ServerProcess::pid);
        let report = idle_run(&urls[0], connections, flags.duration, stop).await;
        let peak = pid.and_then(peak_rss_bytes);
        let Some(report) = stop_all(servers, report).await? else {
            return Ok(Report::ok()
                .figure("connections", connections)
                .figure("measured", false));
        };
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        say(format!(
            "{} idle connections (server saw {}): server RSS {:.1} MiB (was {:.1} MiB), {:.1} KiB per connection; connected in {:.0} ms",
            report.connections,
            report.server_open,
            mib(report.server_rss_bytes),
            mib(report.server_rss_before_bytes),
            report.per_connection_bytes as f64 / 1024.0,
            report.connect_ms
        ));
        return Ok(Report::ok()
            .figures(&report)
            .figure("server_peak_rss_bytes", peak));
    }
    let result = fanout_bench(flags, urls, bus.is_some(), stop, say).await;
    let summary = stop_all(servers, result).await?;
    Ok(Report::ok().figures(&summary))
}

async fn fanout_bench(
    flags: &LoadFlags,
    urls: Vec<String>,
    on_bus: bool,
    stop: &CancellationToken,
    say: &dyn Fn(String),
) -> anyhow::Result<FanoutSummary> {
    let config = |base_urls: Vec<String>| FanoutConfig {
        base_urls,
        clients: flags.clients,
        messages: flags.count,
        payload_bytes: usize::try_from(flags.payload).unwrap_or(usize::MAX),
        timeout: flags.timeout,
    };
    let print = |run: u32, r: &FanoutReport| {
        say(format!(
            "  {run:>3}  {:>8.1}ms {:>14.0} {:>7} {:>6}   {}",
            r.elapsed_ms, r.deliveries_per_s, r.missed, r.out_of_order, r.completion
        ));
    };
    let header = || {
        say(format!(
            "  run  {:>10} {:>14} {:>7} {:>6}   per-client completion: {}",
            "elapsed",
            "deliveries/s",
            "missed",
            "order",
            LatencySummary::HEADER
        ));
    };
    let mut one_instance = None;
    if on_bus && urls.len() > 1 {
        say("one plain instance first (no bus), for comparison:".to_owned());
        header();
        let plain = start_servers(None, 1).await?;
        let plain_urls = plain.iter().map(|s| s.url.clone()).collect();
        let runs = fanout_runs(&config(plain_urls), flags.runs, stop, print).await;
        let (runs, _) = stop_all(plain, runs).await?;
        one_instance = Some(load::medians(&runs));
    }
    say(format!(
        "fan-out: {} clients x {} messages of {} bytes over {} instance(s)",
        flags.clients,
        flags.count,
        flags.payload,
        urls.len()
    ));
    header();
    let (runs, runs_left) = fanout_runs(&config(urls.clone()), flags.runs, stop, print).await?;
    let median = load::medians(&runs);
    say(format!(
        "median of {}: {:.1} ms = {:.0} deliveries/s",
        runs.len(),
        median.elapsed_ms,
        median.deliveries_per_s
    ));
    if let Some(one) = &one_instance {
        say(format!(
            "one plain instance: {:.0} deliveries/s",
            one.deliveries_per_s
        ));
    }
    Ok(FanoutSummary {
        instances: urls.len(),
        clients: flags.clients,
        count: flags.count,
        runs,
        median,
        one_instance,
        runs_left,
    })
}
