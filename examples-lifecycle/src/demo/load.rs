//! A closed-loop load generator for the job service.
//!
//! Each client submits `?wait=true` jobs one after another until told to
//! stop or until the server stops answering. Every outcome is classified,
//! because the claim to check is exact: every request the server accepted
//! got a complete response. A client that meets a transport error stops:
//! after intake closes that is the expected end (connection refused).
//!
//! One case needs care. A client that reuses a keep-alive connection may
//! send its next request just as the server, stopping intake, closes that
//! idle connection; the server never read the request, the client sees the
//! connection close with no answer. That request was never accepted (it is
//! the HTTP/1.1 keep-alive race that clients answer by retrying idempotent
//! requests), so it is counted apart as `no_response`. The claim is checked
//! by counting on both sides: answers the server produced must equal answers
//! the clients received, to the request.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use common::{LatencyRecorder, LatencySummary, Report, Stopwatch};
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::jobs::{JobRequest, JobResult, Journal};
use crate::shutdown::ShutdownReport;

/// Load shape.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Concurrent clients, each with one request in flight at a time.
    pub clients: usize,
    /// Smallest and largest `work_ms` per job, drawn uniformly.
    pub work_ms: (u64, u64),
    /// Seed for the job sizes, so runs are repeatable.
    pub seed: u64,
}

/// What the clients saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// 200 with a well-formed job result for the job we sent.
    pub completed: u64,
    /// A complete non-200 answer (503 queue full, shutting down).
    pub refused_by_server: u64,
    /// No connection: the listener was closed (intake stopped).
    pub connection_refused: u64,
    /// Sent, but the connection closed with no answer at all.
    pub no_response: u64,
    /// An answer that started but was cut short or was not for our job.
    pub broken: u64,
    /// Latency of completed requests.
    pub latency: Option<LatencySummary>,
}

/// Runs the clients against `base` (`http://127.0.0.1:PORT`) until `stop`.
pub async fn run(
    base: &str,
    config: &LoadConfig,
    stop: CancellationToken,
) -> anyhow::Result<LoadReport> {
    common::init_crypto();
    let client = reqwest::Client::builder()
        // Longer than any drain: a request in flight must not time out
        // client-side while the server is finishing it.
        .timeout(Duration::from_secs(120))
        .build()?;
    let url = format!("{base}/jobs?wait=true");
    let mut clients = JoinSet::new();
    for index in 0..config.clients.max(1) {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed.wrapping_add(index as u64));
        let (low, high) = (config.work_ms.0, config.work_ms.1.max(config.work_ms.0));
        clients.spawn(async move {
            let mut report = LoadReport::default();
            let mut latency = LatencyRecorder::new();
            while !stop.is_cancelled() {
                let job = JobRequest {
                    work_ms: rng.random_range(low..=high),
                    payload: format!("client {index} job {}", report.sent),
                };
                report.sent += 1;
                let watch = Stopwatch::start();
                // Not raced against `stop`: a request once sent is seen through.
                match submit(&client, &url, &job).await {
                    Outcome::Completed => {
                        report.completed += 1;
                        latency.record(watch.elapsed());
                    }
                    Outcome::RefusedByServer(retry_after) => {
                        report.refused_by_server += 1;
                        // Honour Retry-After: hammering a full queue only
                        // makes it fuller. Cut short by `stop`.
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = tokio::time::sleep(retry_after) => {}
                        }
                    }
                    Outcome::ConnectionRefused => {
                        report.connection_refused += 1;
                        break;
                    }
                    Outcome::NoResponse(err) => {
                        tracing::info!(index, "no response: {err}");
                        report.no_response += 1;
                        break;
                    }
                    Outcome::Broken(err) => {
                        tracing::warn!(index, "response broken: {err}");
                        report.broken += 1;
                        break;
                    }
                }
            }
            (report, latency)
        });
    }
    let mut total = LoadReport::default();
    let mut latency = LatencyRecorder::new();
    while let Some(joined) = clients.join_next().await {
        let (report, recorded) = joined?;
        total.sent += report.sent;
        total.completed += report.completed;
        total.refused_by_server += report.refused_by_server;
        total.connection_refused += report.connection_refused;
        total.no_response += report.no_response;
        total.broken += report.broken;
        latency.merge(&recorded);
    }
    total.latency = (total.completed > 0).then(|| latency.summary());
    Ok(total)
}

enum Outcome {
    Completed,
    RefusedByServer(Duration),
    ConnectionRefused,
    NoResponse(String),
    Broken(String),
}

async fn submit(client: &reqwest::Client, url: &str, job: &JobRequest) -> Outcome {
    let response = match client.post(url).json(job).send().await {
        Ok(response) => response,
        Err(err) if err.is_connect() => return Outcome::ConnectionRefused,
        Err(err) => return Outcome::NoResponse(format!("{err:#}")),
    };
    let status = response.status();
    // Through the shared parser, capped: a server must not be able to
    // park a client for long.
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| {
            common::retry_after::parse_bytes(value.as_bytes(), std::time::SystemTime::now())
        })
        .map_or(Duration::from_secs(1), |wait| {
            wait.min(Duration::from_secs(10))
        });
    // Reading the whole body is what makes the response "complete".
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(err) => return Outcome::Broken(format!("body: {err:#}")),
    };
    if !status.is_success() {
        return Outcome::RefusedByServer(retry_after);
    }
    match serde_json::from_slice::<JobResult>(&body) {
        Ok(result) if result.work_ms == job.work_ms => Outcome::Completed,
        Ok(result) => Outcome::Broken(format!("answer for another job: {result:?}")),
        Err(err) => Outcome::Broken(format!("malformed result: {err}")),
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "load: {} sent, {} complete responses, {} refused by the server, {} connection(s) refused after intake stopped, {} broken",
            self.sent, self.completed, self.refused_by_server, self.connection_refused, self.broken
        )?;
        if let Some(latency) = &self.latency {
            write!(f, "\n{}\n{latency}", LatencySummary::HEADER)?;
        }
        Ok(())
    }
}

/// The demo's journal: `path`, or else a file in a new temp dir, which
/// the caller keeps alive until the end (dropping it deletes the journal;
/// a forced exit on a second signal leaves it, in the temp dir).
pub async fn open_journal(
    path: Option<PathBuf>,
) -> anyhow::Result<(tempfile::TempDir, PathBuf, Journal)> {
    let temp = tempfile::tempdir().context("create a temp dir for the journal")?;
    let path = path.unwrap_or_else(|| temp.path().join("journal.jsonl"));
    let journal = Journal::open(&path)
        .await
        .with_context(|| format!("open journal {}", path.display()))?;
    Ok((temp, path, journal))
}

/// The run's envelope: the shutdown report and, after the demo's clients
/// stop, what they saw; failed as [`failure`] says. Printed when `story`.
pub async fn outcome(
    report: ShutdownReport,
    load: Option<DemoLoad>,
    story: bool,
) -> anyhow::Result<Report> {
    let seen = match load {
        Some(load) => Some(load.finish().await?),
        None => None,
    };
    if let (Some(seen), true) = (&seen, story) {
        println!("{seen}");
    }
    let failure = failure(&report, seen.as_ref());
    if failure.is_none() && story {
        println!("shutdown complete: every accepted request answered, every accepted job finished");
    }
    Ok(Report::ok()
        .figure("shutdown", &report)
        .figure("load", &seen)
        .fail_if(failure))
}

/// Why the demo run failed, if it did: the drain deadline expired, the
/// journal did not close, or a client saw an accepted request broken.
pub fn failure(report: &ShutdownReport, seen: Option<&LoadReport>) -> Option<String> {
    report
        .deadline_error()
        .or_else(|| {
            let error = report.closed.journal_error.as_ref()?;
            Some(format!(
                "closing resources failed, results may be lost: {error}"
            ))
        })
        .or_else(|| {
            let seen = seen.filter(|s| s.broken > 0)?;
            Some(format!(
                "{} request(s) broken: an accepted request lost its response",
                seen.broken
            ))
        })
}

/// The demo's load: clients running, and a timer that starts the shutdown.
#[derive(Debug)]
pub struct DemoLoad {
    clients: tokio::task::JoinHandle<anyhow::Result<LoadReport>>,
    stop_clients: CancellationToken,
}

impl DemoLoad {
    /// Starts the clients against `base` and cancels `shutdown` after
    /// `load_for` (the demo "sends itself a signal" mid-load).
    pub fn start(
        base: &str,
        config: LoadConfig,
        load_for: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let stop_clients = CancellationToken::new();
        // Detached on purpose: it only cancels a token, then ends.
        drop(tokio::spawn(async move {
            tokio::time::sleep(load_for).await;
            shutdown.cancel();
        }));
        let (base, stop) = (base.to_owned(), stop_clients.clone());
        let clients = tokio::spawn(async move { run(&base, &config, stop).await });
        Self {
            clients,
            stop_clients,
        }
    }

    /// Stops the clients (each sees its current request through) and
    /// returns what they saw.
    pub async fn finish(self) -> anyhow::Result<LoadReport> {
        self.stop_clients.cancel();
        self.clients.await?
    }
}
