//! Demo support for `concurrent-fetch`, **not a pattern**: the sandbox URL
//! sets and the printed story (table, timings, speedup) with its `--json`
//! figures. The pattern is [`crate::fetch`]: [`fan_out`](crate::fetch::fan_out)
//! and [`fetch_url`](crate::fetch::fetch_url).

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use common::{Report, Sandbox, SandboxConfig, Stopwatch};
use tokio_util::sync::CancellationToken;

use crate::fetch::{Concurrency, FetchResult, ROW_HEADER, fan_out_until};

/// The paths `--demo-failures` plants among the demo URLs, one per kind of
/// per-URL error: a 503, a body cut mid-way, a status line that is not
/// HTTP, an endless body (stopped by the body cap) and a redirect loop.
pub const PLANTED_FAILURES: [&str; 5] = [
    "/status/503",
    "/bytes/200000?fail_after=50000",
    "/hostile/garbage-status",
    "/hostile/endless-chunked",
    "/hostile/redirect-loop",
];

/// The latency of each scale-run URL when only `--count` is given.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(100);

/// The sandbox demo: the in-process sandbox (kept alive as long as this
/// value) and the URLs to fetch from it.
#[derive(Debug)]
pub struct Demo {
    /// The sandbox the URLs point at.
    pub sandbox: Sandbox,
    /// 15 varied latencies and a 100 kB body (all succeed), with
    /// [`PLANTED_FAILURES`] mixed in; or, for the scale run (`count` or
    /// `delay` given), `count` (default 20) identical `/delay` URLs.
    pub urls: Vec<String>,
    /// Every URL's latency, when they are all the same (the scale run).
    pub same_latency: Option<Duration>,
}

impl Demo {
    /// Starts the sandbox and builds the URL set (see [`Demo::urls`]).
    pub async fn start(
        count: Option<usize>,
        delay: Option<Duration>,
        failures: bool,
    ) -> anyhow::Result<Demo> {
        let sandbox = Sandbox::start(SandboxConfig::default())
            .await
            .context("start the sandbox")?;
        if count.is_some() || delay.is_some() {
            let latency = delay.unwrap_or(DEFAULT_DELAY);
            let url = sandbox.url(&format!("/delay/{}", latency.as_millis()));
            let urls = vec![url; count.unwrap_or(20)];
            return Ok(Demo {
                sandbox,
                urls,
                same_latency: Some(latency),
            });
        }
        let mut urls: Vec<String> = (0..15u64)
            .map(|i| sandbox.url(&format!("/delay/{}", 40 + (i * 37) % 160)))
            .collect();
        urls.push(sandbox.url("/bytes/100000"));
        if failures {
            for (i, path) in PLANTED_FAILURES.into_iter().enumerate() {
                urls.insert(2 + 3 * i, sandbox.url(path));
            }
        }
        Ok(Demo {
            sandbox,
            urls,
            same_latency: None,
        })
    }
}

/// What one batch did, for the story and the envelope.
#[derive(Debug)]
pub struct Summary<'a> {
    /// Every URL's row, in input order.
    pub rows: &'a [FetchResult],
    /// The bound the concurrent run used.
    pub limit: Concurrency,
    /// The sequential baseline's wall time, if it ran.
    pub sequential: Option<Duration>,
    /// The concurrent run's wall time.
    pub concurrent: Duration,
    /// Every URL's server latency, when they are all the same (the ideal
    /// wall time is then waves × latency).
    pub same_latency: Option<Duration>,
}

impl Summary<'_> {
    /// Prints the table and timings (unless `json`) and returns the
    /// report: failed (exit 1) if any URL failed.
    pub fn report(&self, json: bool) -> Report {
        let urls = self.rows.len();
        let succeeded = self.rows.iter().filter(|r| r.is_success()).count();
        let failed = urls - succeeded;
        let (waves, mode) = match self.limit {
            Concurrency::Unbounded => (1, "unbounded".to_owned()),
            Concurrency::Bounded(c) => (urls.div_ceil(c.get()), format!("concurrency {c}")),
        };
        let ideal = self
            .same_latency
            .map(|d| d * u32::try_from(waves).unwrap_or(u32::MAX));
        let speedup = self
            .sequential
            .map(|s| s.as_secs_f64() / self.concurrent.as_secs_f64());
        if !json {
            self.print(succeeded, &mode, waves, ideal, speedup);
        }
        let concurrency = match self.limit {
            Concurrency::Unbounded => None,
            Concurrency::Bounded(c) => Some(c.get()),
        };
        Report::ok()
            .figures(serde_json::json!({
                "urls": urls, "succeeded": succeeded, "failed": failed,
                "concurrency": concurrency,
                "sequential_s": self.sequential.map(|d| d.as_secs_f64()),
                "concurrent_s": self.concurrent.as_secs_f64(),
                "ideal_s": ideal.map(|d| d.as_secs_f64()),
                "speedup": speedup,
            }))
            .fail_if((failed > 0).then(|| format!("{failed} of {urls} URLs failed")))
    }

    fn print(
        &self,
        succeeded: usize,
        mode: &str,
        waves: usize,
        ideal: Option<Duration>,
        speedup: Option<f64>,
    ) {
        const SHOWN: usize = 30;
        println!("{:>4}  {ROW_HEADER}", "#");
        for (i, row) in self.rows.iter().enumerate().take(SHOWN) {
            println!("{i:>4}  {row}");
        }
        if self.rows.len() > SHOWN {
            println!("  ... {} more rows", self.rows.len() - SHOWN);
        }
        println!(
            "\n{succeeded}/{} succeeded; failures are reported per URL, never fatal to the batch",
            self.rows.len()
        );
        if let Some(sequential) = self.sequential {
            println!("sequential: {:.3} s", sequential.as_secs_f64());
        }
        print!(
            "concurrent ({mode}): {:.3} s",
            self.concurrent.as_secs_f64()
        );
        match ideal {
            Some(ideal) => println!(
                " (ideal {:.3} s = {waves} waves x latency)",
                ideal.as_secs_f64()
            ),
            None => println!(),
        }
        if let Some(speedup) = speedup {
            println!("speedup: {speedup:.2}x");
        }
    }
}

/// One run of the demo: the optional sequential baseline, then the
/// bounded concurrent run, each stopped by the first signal.
#[derive(Debug)]
pub struct Batch<'a> {
    /// The URLs, in the order their rows are printed.
    pub urls: &'a [String],
    /// The bound of the concurrent run.
    pub limit: Concurrency,
    /// Run the sequential baseline first.
    pub sequential: bool,
    /// Every URL's latency when they are all the same (see [`Demo`]).
    pub same_latency: Option<Duration>,
    /// The harness's stop token.
    pub stop: &'a CancellationToken,
    /// `--json`: print nothing on stdout.
    pub json: bool,
}

impl Batch<'_> {
    /// Runs both phases with `fetch` and returns the report (printing the
    /// story unless `json`): ok, failed if any URL failed, or interrupted.
    pub async fn run<F, Fut>(self, fetch: F) -> Report
    where
        F: FnMut(String) -> Fut + Copy,
        Fut: Future<Output = FetchResult>,
    {
        let mut sequential = None;
        if self.sequential {
            match self
                .phase("sequential", Concurrency::SEQUENTIAL, fetch)
                .await
            {
                Ok((_, elapsed)) => sequential = Some(elapsed),
                Err(interrupted) => return interrupted,
            }
        }
        let (rows, concurrent) = match self.phase("concurrent", self.limit, fetch).await {
            Ok(done) => done,
            Err(interrupted) => return interrupted,
        };
        let summary = Summary {
            rows: &rows,
            limit: self.limit,
            sequential,
            concurrent,
            same_latency: self.same_latency,
        };
        summary.report(self.json)
    }

    /// One timed phase: the rows and the wall time, or the interrupted
    /// report.
    async fn phase<F, Fut>(
        &self,
        name: &str,
        limit: Concurrency,
        fetch: F,
    ) -> Result<(Vec<FetchResult>, Duration), Report>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = FetchResult>,
    {
        let watch = Stopwatch::start();
        let slots = fan_out_until(self.urls.to_vec(), limit, self.stop.cancelled(), fetch).await;
        if self.stop.is_cancelled() {
            return Err(interrupted(name, &slots, self.json));
        }
        Ok((slots.into_iter().flatten().collect(), watch.elapsed()))
    }
}

/// The report of a run stopped by a signal during `phase`: the URLs done
/// and those cancelled in flight or never started. Fetches are reads, so
/// the stop loses nothing: the report is ok (the harness exits 130).
pub fn interrupted(phase: &str, slots: &[Option<FetchResult>], json: bool) -> Report {
    let done = slots.iter().flatten().count();
    let left = slots.len() - done;
    if !json {
        println!(
            "interrupted during the {phase} run: {done} of {} URLs done, {left} cancelled or not started",
            slots.len()
        );
    }
    Report::ok()
        .figure("phase", phase)
        .figure("urls", slots.len())
        .figure("completed", done)
        .figure("cancelled", left)
}
