//! Demo support for `benchmark`: the printed tables and the error verdict.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use common::{LatencySummary, Report, Sandbox, SandboxConfig};
use reqwest::Url;

use crate::bench::{ErrorKinds, OpenLoopRun, SweepConfig, SweepPoint, error_rate};

/// The run's target: `url`, or else an in-process sandbox answering after
/// `latency` plus up to `jitter` (seeded), or `/health` at zero latency;
/// with the [`Outcome`] that reports against it.
pub async fn target(
    url: Option<Url>,
    latency: Duration,
    jitter: Duration,
    max_error_rate: f64,
    story: bool,
) -> anyhow::Result<(Option<Sandbox>, Url, Outcome)> {
    if let Some(url) = url {
        let outcome = Outcome::new(url.to_string(), max_error_rate, story);
        return Ok((None, url, outcome));
    }
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let (ms, jitter) = (latency.as_millis(), jitter.as_millis());
    let path = match ms {
        0 => "/health".to_owned(),
        ms => format!("/delay/{ms}?jitter_ms={jitter}&seed=13"),
    };
    let url = Url::parse(&sandbox.url(&path))?;
    let target = format!("in-process sandbox, {ms} ms + 0..={jitter} ms jitter");
    Ok((
        Some(sandbox),
        url,
        Outcome::new(target, max_error_rate, story),
    ))
}

/// What a run is reported against: the target's description, the body
/// bytes counter the operation adds to, the error budget, and whether to
/// print the human story (not under `--json`).
pub struct Outcome {
    /// The target, in words (a URL or the sandbox's latency).
    pub target: String,
    /// Body bytes read by every request, shared with [`crate::bench::http_get`].
    pub body_bytes: Arc<AtomicU64>,
    /// Above this error rate, the run fails (exit 1).
    pub max_error_rate: f64,
    /// Print the tables.
    pub story: bool,
}

impl Outcome {
    /// Reports against `target`, failing past `max_error_rate`.
    pub fn new(target: String, max_error_rate: f64, story: bool) -> Self {
        let body_bytes = Arc::default();
        Self {
            target,
            body_bytes,
            max_error_rate,
            story,
        }
    }

    /// Writes the sweep's SVG chart (throughput and p99 vs concurrency).
    pub fn write_chart(&self, path: &Path, points: &[SweepPoint]) -> anyhow::Result<()> {
        let svg = super::chart::sweep_svg(points, &format!("HTTP benchmark: {}", self.target));
        std::fs::write(path, svg).with_context(|| format!("write {}", path.display()))
    }

    /// The sweep's figures for the envelope, failed when errors pass the
    /// budget; printed first as a table.
    pub fn sweep(self, config: &SweepConfig, points: Vec<SweepPoint>) -> Report {
        if self.story {
            print_sweep(&self.target, config, &points);
        }
        let (requests, kinds) = sweep_errors(&points);
        let failure = verdict(requests, &kinds, self.max_error_rate);
        Report::ok()
            .figures(serde_json::json!({"mode": "sweep", "target": self.target,
            "count_per_run": config.requests, "runs": config.rounds, "requests": requests,
            "errors": kinds.total(), "error_rate": error_rate(kinds.total(), requests),
            "error_kinds": kinds, "body_bytes": self.body_bytes.load(Ordering::Relaxed),
            "results": points}))
            .fail_if(failure)
    }

    /// The open loop's figures for the envelope (`cap` requests in flight
    /// at most), failed when errors pass the budget; printed first.
    pub fn open_loop(self, cap: usize, run: OpenLoopRun) -> Report {
        if self.story {
            print_open_loop(&self.target, cap, &run);
        }
        let failure = verdict(run.requests, &run.error_kinds, self.max_error_rate);
        Report::ok()
            .figures(
                serde_json::json!({"mode": "open-loop", "target": self.target,
            "concurrency": cap, "body_bytes": self.body_bytes.load(Ordering::Relaxed), "run": run}),
            )
            .fail_if(failure)
    }
}

/// Prints the sweep table.
fn print_sweep(target: &str, config: &SweepConfig, points: &[SweepPoint]) {
    println!(
        "target: {target}; {} requests x {} runs per setting, after {} warm-up\n",
        config.requests, config.rounds, config.warmup
    );
    println!(
        "{:>6} {:>11} {:>8} {:>6} {:>7}{}",
        "conc",
        "ok req/s",
        "speedup",
        "ideal",
        "errors",
        LatencySummary::HEADER
    );
    for p in points {
        println!(
            "{:>6} {:>11.1} {:>7.2}x {:>5.0}x {:>7}{}",
            p.concurrency, p.throughput_per_s, p.speedup, p.ideal_speedup, p.errors, p.latency
        );
    }
}

/// Prints the open-loop result.
fn print_open_loop(target: &str, max_in_flight: usize, run: &OpenLoopRun) {
    println!(
        "open loop: {} requests at {} req/s, at most {max_in_flight} in flight ({target})",
        run.requests, run.rate_per_s
    );
    println!(
        "achieved {:.1} ok req/s, {} errors, {} requests sent late (> 1 ms)\n",
        run.achieved_per_s, run.errors, run.late_starts
    );
    println!("{:<28}{}", "latency measured from", LatencySummary::HEADER);
    println!("{:<28}{}", "intended start (response)", run.response);
    println!("{:<28}{}", "actual send (service)", run.service);
    println!(
        "\nA closed-loop tool reports the second row; users arriving on schedule see the first."
    );
}

/// Errors over all sweep points, by kind.
pub fn sweep_errors(points: &[SweepPoint]) -> (u64, ErrorKinds) {
    let requests = points.iter().map(|p| p.requests).sum();
    let mut kinds = ErrorKinds::default();
    for p in points {
        for (kind, n) in &p.error_kinds.0 {
            *kinds.0.entry(kind.clone()).or_default() += n;
        }
    }
    (requests, kinds)
}

/// The failure line when the error rate passes `max`, else None.
pub fn verdict(requests: u64, kinds: &ErrorKinds, max: f64) -> Option<String> {
    let errors = kinds.total();
    let rate = error_rate(errors, requests);
    (rate > max).then(|| {
        let kinds: Vec<String> = kinds.0.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(
            "error rate {:.1}% ({errors} of {requests}: {}) is above --max-error-rate {max}",
            rate * 100.0,
            kinds.join(", ")
        )
    })
}
