//! The job service's shutdown phases, over real loopback sockets (real time,
//! generous bounds: the paused clock and sockets do not mix).
//!
//! Equivalent mutants (cargo mutants on `src/shutdown.rs`):
//! - `if !http_drained { server.abort() }` -> `if http_drained`: the
//!   `AbortOnDrop` guard aborts axum's serve future when `serve_until`
//!   returns, moments later; intake is already closed, and the connection
//!   tasks are not its children, so nothing observable changes.
//!
//! No equivalent mutant is listed for `src/shutdown/listener.rs`: its
//! stream wrapper's delegation is unit-tested over in-memory streams, and
//! the backlog drain no longer has an arm for EINTR, which std's `accept`
//! retries itself.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use examples_lifecycle::demo::load::{self, LoadConfig};
use examples_lifecycle::jobs::{JobService, JobsConfig, Journal};
use examples_lifecycle::shutdown::{Phase, ShutdownReport, serve_until};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(30);

struct Harness {
    base: String,
    trigger: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<ShutdownReport>>,
    phases: Arc<Mutex<Vec<String>>>,
    refused_after_intake: Arc<Mutex<Option<bool>>>,
    counters: Arc<examples_lifecycle::jobs::Counters>,
    _dir: tempfile::TempDir,
    journal: std::path::PathBuf,
}

async fn start(config: JobsConfig, grace: Duration, stuck_job: bool) -> Harness {
    common::init_crypto();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let service = JobService::start(&config, Journal::open(&journal).await.unwrap());
    if stuck_job {
        assert_eq!(service.submit_stuck_job().unwrap(), 1);
    }
    let counters = service.counters();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, fired) = oneshot::channel::<()>();
    let phases = Arc::new(Mutex::new(Vec::new()));
    let refused_after_intake = Arc::new(Mutex::new(None));
    let (seen, refused) = (Arc::clone(&phases), Arc::clone(&refused_after_intake));
    let server = tokio::spawn(async move {
        let shutdown = async move {
            // Err: the test dropped the trigger; shut down as well.
            let _ = fired.await;
        };
        serve_until(listener, service, shutdown, grace, move |phase| {
            if let Phase::IntakeStopped(_) = phase {
                // The moment phase 1 reports, a new connection must be refused.
                let outcome = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5));
                let was_refused =
                    matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
                *refused.lock().unwrap() = Some(was_refused);
            }
            seen.lock().unwrap().push(phase.to_string());
        })
        .await
    });
    Harness {
        base: format!("http://{addr}"),
        trigger,
        server,
        phases,
        refused_after_intake,
        counters,
        _dir: dir,
        journal,
    }
}

/// One worker and a queue of 8: the shape most cases here need.
fn one_worker(max_work: Duration) -> JobsConfig {
    JobsConfig {
        workers: 1,
        queue_capacity: 8,
        max_work,
    }
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(LIMIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition reached in time");
}

#[tokio::test]
async fn shutdown_under_load_answers_every_accepted_request_and_finishes_every_job() {
    let config = JobsConfig {
        workers: 3,
        queue_capacity: 16,
        max_work: Duration::from_secs(5),
    };
    let harness = start(config, Duration::from_secs(20), false).await;
    let stop_clients = CancellationToken::new();
    let load_config = LoadConfig {
        clients: 12,
        work_ms: (20, 120),
        seed: 7,
    };
    let base = harness.base.clone();
    let stop = stop_clients.clone();
    let load = tokio::spawn(async move { load::run(&base, &load_config, stop).await });

    // Under load: jobs finishing, and requests waiting on the queue.
    let counters = Arc::clone(&harness.counters);
    wait_until(|| {
        counters.jobs_finished.load(Ordering::Relaxed) >= 20
            && counters.requests_in_flight.load(Ordering::Relaxed) >= 6
    })
    .await;
    harness.trigger.send(()).unwrap();
    let report = tokio::time::timeout(LIMIT, harness.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    stop_clients.cancel();
    let seen = tokio::time::timeout(LIMIT, load)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    assert!(!report.deadline_expired, "{report:?}");
    assert_eq!(
        *harness.refused_after_intake.lock().unwrap(),
        Some(true),
        "a new connection was accepted after phase 1"
    );
    assert!(report.intake.requests_in_flight >= 1, "{report:?}");
    // Every request the server answered reached a client, complete.
    assert_eq!(seen.broken, 0, "{seen:?}");
    assert_eq!(
        seen.completed + seen.refused_by_server,
        report.drained.requests_answered_total
    );
    assert_eq!(
        seen.refused_by_server, 0,
        "12 clients, one request each, never overflow a queue of 16: {seen:?}"
    );
    // Every accepted job finished and was journaled.
    let accepted = harness.counters.jobs_accepted.load(Ordering::Relaxed);
    assert_eq!(
        harness.counters.jobs_finished.load(Ordering::Relaxed),
        accepted
    );
    assert_eq!(report.closed.journal_records, accepted);
    assert_eq!(report.closed.journal_error, None);
    let lines = std::fs::read_to_string(&harness.journal)
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(lines, accepted);
    assert_eq!(seen.completed, accepted);
    // Every client ended by finding intake stopped (refused, or its idle
    // keep-alive connection closed unread), none by hanging.
    assert_eq!(seen.connection_refused + seen.no_response, 12, "{seen:?}");
    let phases = harness.phases.lock().unwrap();
    assert_eq!(phases.len(), 3, "{phases:?}");
    assert!(phases[1].ends_with("nothing left behind"), "{phases:?}");
}

#[tokio::test]
async fn a_stuck_job_makes_the_deadline_expire_and_unfinished_jobs_are_reported() {
    // One worker, holding a job that never ends; a second job waits behind it.
    let config = one_worker(Duration::from_secs(5));
    let harness = start(config, Duration::from_millis(500), true).await;
    let client = reqwest::Client::new();
    let url = format!("{}/jobs?wait=true", harness.base);
    let waiting = tokio::spawn(async move {
        let response = client
            .post(url)
            .json(&serde_json::json!({"work_ms": 10}))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    });
    let counters = Arc::clone(&harness.counters);
    wait_until(|| counters.requests_in_flight.load(Ordering::Relaxed) == 1).await;

    harness.trigger.send(()).unwrap();
    let report = tokio::time::timeout(LIMIT, harness.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(report.deadline_expired);
    assert_eq!(report.drained.unfinished.in_progress, [1]);
    assert_eq!(report.drained.unfinished.queued, [2]);
    assert_eq!(report.closed.journal_records, 0);
    assert_eq!(report.closed.journal_error, None);
    let error = report.deadline_error().unwrap();
    assert!(
        error.starts_with("drain timeout of 500ms expired: 1 job(s) aborted in progress [1]"),
        "{error}"
    );
    // The client waiting on the abandoned job still gets a complete answer.
    let (status, body) = tokio::time::timeout(LIMIT, waiting).await.unwrap().unwrap();
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "job abandoned during shutdown");
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let config = JobsConfig {
        workers: 1,
        queue_capacity: 1,
        max_work: Duration::from_secs(5),
    };
    // The stuck job occupies the only worker; one more fills the queue.
    let harness = start(config, Duration::from_millis(200), true).await;
    let client = reqwest::Client::new();
    let url = format!("{}/jobs", harness.base);
    let job = serde_json::json!({"work_ms": 10});
    let counters = Arc::clone(&harness.counters);
    wait_until(|| {
        counters.jobs_accepted.load(Ordering::Relaxed) == 1
            && counters.jobs_finished.load(Ordering::Relaxed) == 0
    })
    .await;
    // The worker may not have taken the stuck job yet; submit until refused.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client.post(&url).json(&job).send().await.unwrap();
        statuses.push((
            response.status().as_u16(),
            response.headers().get("retry-after").cloned(),
        ));
    }
    assert!(
        statuses.iter().any(|(status, _)| *status == 202),
        "{statuses:?}"
    );
    let refused = statuses
        .iter()
        .find(|(status, _)| *status == 503)
        .expect("a full queue refuses");
    assert_eq!(refused.1.as_ref().unwrap(), "1");
    let too_big = client
        .post(&url)
        .json(&serde_json::json!({"work_ms": 60_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status().as_u16(), 422);
    drop(harness.trigger);
    let report = tokio::time::timeout(LIMIT, harness.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(report.deadline_expired);
}

/// Issue 15.19: connections the kernel accepted before the signal, with
/// their request already sent, sit in the listen backlog. Closing the
/// listener would reset them; they are drained and served instead.
#[tokio::test]
async fn backlog_connections_with_a_request_sent_are_served_not_reset() {
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    const BACKLOG: usize = 8;
    let config = JobsConfig {
        workers: 2,
        queue_capacity: 16,
        max_work: Duration::from_secs(5),
    };
    let harness = start(config, Duration::from_secs(20), false).await;
    let ok = reqwest::get(format!("{}/health", harness.base))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let addr = harness.base.trim_start_matches("http://").to_owned();
    // Blocking calls on this (current-thread) runtime: the server task
    // cannot run, so these connections stay in the kernel's backlog.
    let body = r#"{"work_ms":20,"payload":"backlog"}"#;
    let request = format!(
        "POST /jobs?wait=true HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let streams: Vec<std::net::TcpStream> = (0..BACKLOG)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            stream
        })
        .collect();
    harness.trigger.send(()).unwrap();
    let mut answers = Vec::new();
    for stream in streams {
        stream.set_nonblocking(true).unwrap();
        let mut stream = tokio::net::TcpStream::from_std(stream).unwrap();
        let mut response = Vec::new();
        let read = tokio::time::timeout(LIMIT, stream.read_to_end(&mut response))
            .await
            .unwrap();
        answers.push(match read {
            Ok(_) => String::from_utf8_lossy(&response)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
            Err(err) => format!("error: {err}"),
        });
    }
    let report = tokio::time::timeout(LIMIT, harness.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answers, vec!["HTTP/1.1 200 OK"; BACKLOG], "{report:?}");
    assert!(!report.deadline_expired, "{report:?}");
    check_backlog_report(&report, BACKLOG as u64);
}

fn check_backlog_report(report: &ShutdownReport, backlog: u64) {
    assert_eq!(
        report.intake.connections_from_backlog, backlog,
        "{report:?}"
    );
    assert_eq!(report.drained.requests_answered, backlog, "{report:?}");
    assert_eq!(report.drained.jobs_finished, backlog, "{report:?}");
    assert_eq!(report.closed.journal_records, backlog, "{report:?}");
}

/// Issue 15.20: a submission racing `close_queue` is either refused or
/// lands before the workers can exit; none may land after they exit,
/// unrun and unreported. Hammered from three tasks, many rounds: after the
/// workers exit, every accepted job must have finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_job_lands_after_the_workers_exit() {
    use examples_lifecycle::jobs::JobRequest;
    use examples_lifecycle::shutdown::Drain;
    for round in 0..300 {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.jsonl")).await.unwrap();
        let config = JobsConfig {
            workers: 2,
            queue_capacity: 16,
            max_work: Duration::ZERO,
        };
        let service = Arc::new(JobService::start(&config, journal));
        let counters = service.counters();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let submitters: Vec<_> = (0..3)
            .map(|_| {
                let (service, done) = (Arc::clone(&service), Arc::clone(&done));
                tokio::spawn(async move {
                    // Refusals (full, closed) are expected: keep racing.
                    while !done.load(Ordering::SeqCst) {
                        // Err: refused; the race is the point, not the answer.
                        let _ = service.submit(JobRequest::default());
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        service.close_queue();
        // Let the submitters race the workers' exit a little longer.
        tokio::task::yield_now().await;
        done.store(true, Ordering::SeqCst);
        for submitter in submitters {
            submitter.await.unwrap();
        }
        let mut service = Arc::try_unwrap(service).unwrap();
        service.finish_work().await;
        let accepted = counters.jobs_accepted.load(Ordering::SeqCst);
        let finished = counters.jobs_finished.load(Ordering::SeqCst);
        let unfinished = service.abort_work().await;
        assert_eq!(
            (accepted, &unfinished.queued),
            (finished, &Vec::new()),
            "round {round}: a job landed after the workers exited"
        );
    }
}

/// `serve_until` dropped before its shutdown (its caller was cancelled)
/// must not leave a detached server accepting connections.
#[tokio::test]
async fn dropping_serve_until_stops_the_server() {
    let config = JobsConfig {
        workers: 1,
        queue_capacity: 4,
        max_work: Duration::from_secs(1),
    };
    let harness = start(config, Duration::from_secs(5), false).await;
    let ok = reqwest::get(format!("{}/health", harness.base))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    harness.server.abort();
    // Err: cancelled, as asked.
    let _ = harness.server.await;
    let addr = harness.base.trim_start_matches("http://").to_owned();
    let connect = tokio::net::TcpStream::connect(&addr).await;
    assert!(
        matches!(&connect, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{connect:?}"
    );
}

/// The service's own handles: `submit` gives each job its own id (the stuck
/// job included) and counts it; `connections()` is the very counter set
/// that `stats()` (and so `/stats`) reads, not a copy.
#[tokio::test]
async fn submit_numbers_jobs_and_connections_is_what_stats_reads() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("journal.jsonl"))
        .await
        .unwrap();
    let config = one_worker(Duration::from_secs(5));
    let mut service = JobService::start(&config, journal);
    let request = examples_lifecycle::jobs::JobRequest {
        work_ms: 0,
        payload: "x".into(),
    };
    let ids = [
        service.submit(request.clone()).unwrap(),
        service.submit_stuck_job().unwrap(),
        service.submit(request).unwrap(),
    ];
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(service.stats().jobs_accepted, 3);
    service
        .connections()
        .accepted
        .fetch_add(5, Ordering::Relaxed);
    service.connections().open.fetch_add(2, Ordering::Relaxed);
    let stats = service.stats();
    assert_eq!((stats.connections_accepted, stats.connections_open), (5, 2));
    // Job 1 finishes; the stuck job 2 holds the one worker; 3 waits.
    // (A plain count of what waits: the queue's capacity minus its room.)
    wait_until(|| {
        let stats = service.stats();
        stats.jobs_finished == 1 && stats.jobs_queued == 1
    })
    .await;
    service.close_queue();
    let unfinished = service.abort_workers().await;
    assert_eq!(
        (unfinished.in_progress, unfinished.queued),
        (vec![2], vec![3])
    );
}

/// A waited job answers with its result: the payload's FNV-1a digest (the
/// published test vectors), and `/stats` counts the connection it came on.
#[tokio::test]
async fn a_waited_job_answers_with_its_digest_and_stats_count_its_connection() {
    let config = one_worker(Duration::from_secs(5));
    let harness = start(config, Duration::from_secs(20), false).await;
    let client = reqwest::Client::new();
    let url = format!("{}/jobs?wait=true", harness.base);
    for (payload, digest) in [
        ("", "cbf29ce484222325"),
        ("a", "af63dc4c8601ec8c"),
        ("foobar", "85944171f73967e8"),
    ] {
        let result: examples_lifecycle::jobs::JobResult = client
            .post(&url)
            .json(&serde_json::json!({"work_ms": 1, "payload": payload}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(result.digest, digest, "payload {payload:?}");
    }
    let stats: serde_json::Value = client
        .get(format!("{}/stats", harness.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // One pooled keep-alive connection carried every request.
    assert!(
        stats["connections_accepted"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(stats["connections_open"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(
        stats["requests_in_flight"], 0,
        "every request was answered: {stats}"
    );
    assert_eq!(stats["requests_answered"], 3, "{stats}");
    // The body cap is 64 KiB: 60,000 bytes of payload pass, 70,000 do not.
    for (size, status) in [(60_000, 200), (70_000, 413)] {
        let response = client
            .post(&url)
            .json(&serde_json::json!({"work_ms": 1, "payload": "x".repeat(size)}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            status,
            "payload of {size} bytes"
        );
    }
    harness.trigger.send(()).unwrap();
    let report = timeout_report(harness.server).await;
    assert_eq!(report.closed.journal_records, 4);
    // Everything was answered before the shutdown: the drain's own figures
    // are zero, the totals are not.
    assert_eq!(
        (
            report.drained.requests_answered,
            report.drained.jobs_finished
        ),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(report.drained.requests_answered_total, 5, "{report:?}");
    assert!(!report.deadline_expired, "{report:?}");
}

/// A grace of `Duration::MAX` means "no deadline" (a century), not "now"
/// and not an overflow: a job that takes a while still finishes.
#[tokio::test]
async fn a_grace_of_duration_max_waits_for_the_work() {
    let config = one_worker(Duration::from_secs(5));
    let harness = start(config, Duration::MAX, false).await;
    let client = reqwest::Client::new();
    let url = format!("{}/jobs?wait=true", harness.base);
    let waiting = tokio::spawn(async move {
        let response = client
            .post(url)
            .json(&serde_json::json!({"work_ms": 300}))
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    });
    let counters = Arc::clone(&harness.counters);
    wait_until(|| counters.requests_in_flight.load(Ordering::Relaxed) == 1).await;
    harness.trigger.send(()).unwrap();
    let report = timeout_report(harness.server).await;
    assert!(!report.deadline_expired, "{report:?}");
    assert_eq!(report.drained.jobs_finished, 1, "{report:?}");
    assert_eq!(
        tokio::time::timeout(LIMIT, waiting).await.unwrap().unwrap(),
        200
    );
}

/// A request whose body never finishes arriving keeps the HTTP drain from
/// ending, with the workers idle and nothing unfinished: the deadline
/// still expires, and the report says so.
#[tokio::test]
async fn a_request_that_never_finishes_arriving_makes_the_deadline_expire() {
    use tokio::io::AsyncWriteExt;
    let config = one_worker(Duration::from_secs(5));
    let harness = start(config, Duration::from_millis(500), false).await;
    let addr = harness.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            b"POST /jobs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"work",
        )
        .await
        .unwrap();
    let counters = Arc::clone(&harness.counters);
    wait_until(|| counters.requests_in_flight.load(Ordering::Relaxed) == 1).await;
    harness.trigger.send(()).unwrap();
    let report = timeout_report(harness.server).await;
    assert!(report.drained.unfinished.is_empty(), "{report:?}");
    assert_eq!(report.drained.connections_abandoned, 1, "{report:?}");
    assert!(report.deadline_expired, "{report:?}");
    drop(stream);
}

#[test]
fn unfinished_is_empty_only_with_nothing_in_progress_and_nothing_queued() {
    use examples_lifecycle::shutdown::Unfinished;
    let with = |in_progress: Vec<u64>, queued: Vec<u64>| Unfinished {
        in_progress,
        queued,
    };
    assert!(with(vec![], vec![]).is_empty());
    assert!(!with(vec![1], vec![]).is_empty());
    assert!(!with(vec![], vec![2]).is_empty());
    assert!(!with(vec![1], vec![2]).is_empty());
}

async fn timeout_report(
    server: tokio::task::JoinHandle<anyhow::Result<ShutdownReport>>,
) -> ShutdownReport {
    tokio::time::timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// A service whose work takes two years to finish, on the paused clock.
struct SlowToFinish;

impl examples_lifecycle::shutdown::Drain for SlowToFinish {
    fn router(&self) -> axum::Router {
        axum::Router::new()
    }
    fn connections(&self) -> Arc<examples_lifecycle::shutdown::ConnectionCounters> {
        Arc::default()
    }
    fn work(&self) -> examples_lifecycle::shutdown::WorkStats {
        examples_lifecycle::shutdown::WorkStats::default()
    }
    fn stop_work_intake(&mut self) {}
    fn finish_work(&mut self) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(Duration::from_secs(2 * 365 * 24 * 3600))
    }
    fn abort_work(
        &mut self,
    ) -> impl Future<Output = examples_lifecycle::shutdown::Unfinished> + Send {
        std::future::ready(examples_lifecycle::shutdown::Unfinished::default())
    }
    async fn close(self) -> anyhow::Result<u64> {
        Ok(0)
    }
}

/// "No deadline" is a century, not a year or a day: work that takes two
/// (paused-clock) years under a `Duration::MAX` grace is waited for.
#[tokio::test(start_paused = true)]
async fn no_deadline_outlasts_two_years_of_work() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let report = serve_until(
        listener,
        SlowToFinish,
        std::future::ready(()),
        Duration::MAX,
        |_| {},
    )
    .await
    .unwrap();
    assert!(!report.deadline_expired, "{report:?}");
    assert!(report.drained.elapsed >= Duration::from_secs(2 * 365 * 24 * 3600));
}

/// `work_ms` may be exactly `max_work`, not a millisecond more.
#[tokio::test]
async fn work_up_to_max_work_is_accepted_and_beyond_it_refused() {
    let config = one_worker(Duration::from_millis(20));
    let harness = start(config, Duration::from_secs(20), false).await;
    let client = reqwest::Client::new();
    let url = format!("{}/jobs?wait=true", harness.base);
    for (work_ms, status) in [(20, 200), (21, 422)] {
        let response = client
            .post(&url)
            .json(&serde_json::json!({"work_ms": work_ms}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "work_ms {work_ms}");
    }
}

/// The listener on its own: counts what it accepts, learns of the first
/// read, and forgets a connection when it is dropped, read or not.
#[tokio::test]
async fn the_intake_listener_counts_opens_first_reads_and_closes() {
    use axum::serve::Listener as _;
    use examples_lifecycle::shutdown::{ConnectionCounters, IntakeListener};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let counters = Arc::new(ConnectionCounters::default());
    let (stop, closed) = (CancellationToken::new(), CancellationToken::new());
    let mut listener = IntakeListener::new(socket, Arc::clone(&counters), stop, closed.clone());

    let mut talker = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut served, _) = listener.accept().await;
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (unread, _) = listener.accept().await;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!((load(&counters.accepted), load(&counters.open)), (2, 2));

    talker.write_all(b"x").await.unwrap();
    let mut byte = [0u8; 1];
    served.read_exact(&mut byte).await.unwrap();
    // Writes pass through, plain and vectored.
    served.write_all(b"pong").await.unwrap();
    let parts = [std::io::IoSlice::new(b"ab"), std::io::IoSlice::new(b"cd")];
    let mut written = 0;
    while written < 4 {
        let n = served.write_vectored(&parts).await.unwrap();
        assert!(n > 0);
        written += n;
        if written < 4 {
            // Short vectored write (never seen on loopback): finish plainly.
            served.write_all(&b"abcd"[written..]).await.unwrap();
            written = 4;
        }
    }
    served.flush().await.unwrap();
    let mut echoed = [0u8; 8];
    talker.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"pongabcd");
    // One read, one silent: the silent one is what first_reads reports.
    assert_eq!(counters.first_reads(Duration::from_millis(200)).await, 1);
    // Dropped unread, it is neither open nor waited for any more.
    drop(unread);
    assert_eq!(load(&counters.open), 1);
    assert_eq!(counters.first_reads(LIMIT).await, 0, "nothing left unread");
    // Shutdown sends the FIN: the peer reads EOF.
    assert!(
        tokio::io::AsyncWrite::is_write_vectored(&served),
        "a TcpStream's vectored writes shine through"
    );
    served.shutdown().await.unwrap();
    let eof = tokio::time::timeout(LIMIT, talker.read(&mut byte))
        .await
        .unwrap();
    assert_eq!(eof.unwrap(), 0);
    drop(served);
    assert_eq!(load(&counters.open), 0);

    // Dropping the listener closes its socket and says so.
    assert!(!closed.is_cancelled());
    drop(listener);
    assert!(closed.is_cancelled());
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the port still accepts after the drop");
}

/// The drain's line names whatever was left behind, each kind on its own,
/// and its JSON gives the elapsed time in milliseconds.
#[test]
fn the_drain_line_names_anything_left_behind_and_its_json_is_in_ms() {
    use examples_lifecycle::shutdown::{Drained, Unfinished};
    let drained = |in_progress: Vec<u64>, queued: Vec<u64>, abandoned: u64| Drained {
        elapsed: Duration::from_millis(1_500),
        requests_answered: 4,
        requests_answered_total: 9,
        jobs_finished: 3,
        connections_abandoned: abandoned,
        connections_closed_unread: 0,
        unfinished: Unfinished {
            in_progress,
            queued,
        },
    };
    let line = |d: Drained| Phase::Drained(d).to_string();
    assert_eq!(
        line(drained(vec![], vec![], 0)),
        "phase 2 (drain): 4 request(s) answered, 3 job(s) finished in 1.50s; nothing left behind"
    );
    for (left, what) in [
        (drained(vec![7], vec![], 0), "aborted in progress [7]"),
        (drained(vec![], vec![8], 0), "never started [8]"),
        (drained(vec![], vec![], 2), "2 connection(s) abandoned"),
    ] {
        let text = line(left);
        assert!(
            text.contains("DEADLINE EXPIRED") && text.contains(what),
            "{text}"
        );
    }
    let json = serde_json::to_value(drained(vec![], vec![], 0)).unwrap();
    assert_eq!(json["elapsed_ms"], 1_500.0);
}
