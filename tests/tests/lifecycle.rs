//! `background-tasks` and `graceful-shutdown` as a user (or a process
//! manager sending SIGTERM) runs them.

use std::time::{Duration, Instant};

use e2e::{exit, run, spawn};

const LIMIT: Duration = Duration::from_secs(60);

fn assert_one_line_error(stderr: &str, starts_with: &str) {
    assert!(stderr.starts_with(starts_with), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The `http://127.0.0.1:PORT` in a "listening on ..." line.
fn base_url(line: &str) -> String {
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    url.to_owned()
}

// ---------------------------------------------------------------- background-tasks

#[tokio::test]
async fn background_tasks_restarts_a_panicking_task_and_reports_exit_reasons() {
    let args = [
        "--duration",
        "3s",
        "--crash-after",
        "1.2s",
        "--status-every",
        "1s",
    ];
    let output = run("background-tasks", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let out = &output.stdout;
    for needle in [
        "data-processor: panicked: data-processor: corrupt batch 1.2s into the run",
        "restarting in 500ms",
        "data-processor: run 2 started",
        "--- status at 1.", // the time it printed: 1.0s, or 1.1s when late on a loaded machine
        "cache-warmup: completed",
        "=== stopping (duration elapsed), drain timeout 2s ===",
        "data-processor: exit reason: stopped",
        "heartbeat: exit reason: stopped",
        "cache-warmup: exit reason: completed",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[tokio::test]
async fn background_tasks_aborts_a_task_that_overruns_the_stop_deadline_and_exits_1() {
    let args = [
        "--duration",
        "1s",
        "--slow-stop",
        "5s",
        "--drain-timeout",
        "300ms",
    ];
    let output = run("background-tasks", &args, LIMIT).await.unwrap();
    // An aborted flush is lost work: exit 1, naming the task.
    output.assert_code(exit::FAILED);
    assert!(
        output
            .stderr
            .contains("error: aborted at the stop deadline, work lost: cleanup"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stdout
            .contains("cleanup: exit reason: aborted after the stop deadline"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("heartbeat: exit reason: stopped"),
        "{}",
        output.stdout
    );
}

#[tokio::test]
async fn background_tasks_json_is_one_line_with_every_task() {
    let output = run("background-tasks", &["--duration", "1.5s", "--json"], LIMIT)
        .await
        .unwrap();
    output.assert_code(0);
    let summary = output.json_envelope("background-tasks");
    assert_eq!(summary["seed"], 11);
    assert_eq!(summary["stopped_because"], "duration elapsed");
    let tasks = summary["tasks"].as_array().unwrap();
    let names: Vec<_> = tasks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["data-processor", "cleanup", "heartbeat", "cache-warmup"]
    );
    assert_eq!(tasks[2]["exit"]["kind"], "stopped");
    assert!(tasks[2]["ticks"].as_u64().unwrap() >= 1, "{summary}");
}

#[tokio::test]
async fn background_tasks_spawn_bench_reports_wall_time_and_peak_memory() {
    let args = [
        "--bench",
        "--count",
        "2000",
        "--bench-sleep",
        "100ms",
        "--json",
    ];
    let output = run("background-tasks", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let result = output.json_envelope("background-tasks");
    assert_eq!(result["tasks"], 2000);
    assert_eq!(result["mode"], "spawn");
    assert_eq!(result["completed"], true);
    assert!(result["wall_ms"].as_f64().unwrap() >= 100.0, "{result}");
    assert!(result["peak_rss_bytes"].as_u64().unwrap() > 0, "{result}");
}

#[tokio::test]
async fn background_tasks_stops_cleanly_on_sigterm_with_130() {
    let mut app = spawn("background-tasks", &["--duration", "600s"]).unwrap();
    app.wait_for_line("started 4 supervised tasks", LIMIT)
        .await
        .unwrap();
    app.sigterm().unwrap();
    let output = app.wait(LIMIT).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    assert!(
        output.stdout.contains("stopping (signal received)"),
        "{}",
        output.stdout
    );
}

#[tokio::test]
async fn background_tasks_rejects_bad_durations() {
    for bad in [
        &["--duration", "0s"][..],
        &["--duration", "6"][..],
        &["--duration", "soon"][..],
        &["--crash-after", "0s"][..],
        &["--drain-timeout", "1e19s"][..],
        &["--count", "10"][..],
        &["--bench", "--crash-after", "1s"][..],
    ] {
        let output = run("background-tasks", bad, LIMIT).await.unwrap();
        output.assert_code(2);
        assert_one_line_error(&output.stderr, "error:");
    }
}

#[tokio::test]
async fn background_tasks_bench_stops_on_sigint_with_130() {
    let args = [
        "--bench",
        "--count",
        "1000",
        "--bench-sleep",
        "600s",
        "--json",
    ];
    let running = spawn("background-tasks", &args).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let signalled = Instant::now();
    running.signal(libc::SIGINT).unwrap();
    let output = running.wait(Duration::from_secs(10)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let summary = output.json_envelope("background-tasks");
    assert_eq!(summary["completed"], false);
}

// ---------------------------------------------------------------- graceful-shutdown

#[tokio::test]
async fn graceful_shutdown_demo_drains_under_load_and_exits_0() {
    let output = run("graceful-shutdown", &[], LIMIT).await.unwrap();
    output.assert_code(0);
    let out = &output.stdout;
    for needle in [
        "listening on http://127.0.0.1:",
        "phase 1 (stop intake): listener closed;",
        "phase 2 (drain):",
        "nothing left behind",
        "phase 3 (close resources): journal flushed and synced",
        "0 broken",
        "shutdown complete: every accepted request answered, every accepted job finished",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[tokio::test]
async fn graceful_shutdown_json_is_one_line_with_phases_and_load() {
    let output = run(
        "graceful-shutdown",
        &["--json", "--duration", "500ms"],
        LIMIT,
    )
    .await
    .unwrap();
    output.assert_code(0);
    let summary = output.json_envelope("graceful-shutdown");
    assert_eq!(summary["seed"], 15);
    assert!(summary["shutdown"]["grace_ms"].is_number(), "{summary}");
    assert!(
        summary["shutdown"]["drained"]["elapsed_ms"].is_number(),
        "{summary}"
    );
    assert_eq!(summary["shutdown"]["deadline_expired"], false);
    assert_eq!(summary["shutdown"]["intake"]["listener_closed"], true);
    assert_eq!(summary["load"]["broken"], 0);
    let completed = summary["load"]["completed"].as_u64().unwrap();
    assert!(completed > 0, "{summary}");
    assert_eq!(summary["shutdown"]["closed"]["journal_records"], completed);
    assert_eq!(
        summary["shutdown"]["closed"]["journal_error"],
        serde_json::Value::Null
    );
}

/// The main claim, against the built binary: SIGTERM under load,
/// every request already accepted gets its complete answer, no new
/// connection is served, exit 0 within the grace period.
#[tokio::test]
async fn graceful_shutdown_on_sigterm_answers_every_accepted_request_and_refuses_new_connections() {
    common::init_crypto();
    const IN_FLIGHT: u64 = 24;
    const WORK_MS: u64 = 2000;
    let grace = Duration::from_secs(20);
    let args = [
        "--serve",
        "--port",
        "0",
        "--concurrency",
        "8",
        "--drain-timeout",
        "20s",
    ];
    let mut server = spawn("graceful-shutdown", &args).unwrap();
    let base = base_url(&server.wait_for_line("listening on", LIMIT).await.unwrap());
    let addr = base.trim_start_matches("http://").to_owned();

    // 24 requests that each wait for a 2 s job; 8 workers need ~6 s. The
    // first wave ends 2 s after it starts: all 24 must be in flight, and the
    // signal handled, before then (400 ms jobs left too little room on a
    // loaded machine).
    let client = reqwest::Client::builder().timeout(LIMIT).build().unwrap();
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..IN_FLIGHT {
        let (client, url) = (client.clone(), format!("{base}/jobs?wait=true"));
        requests.spawn(async move {
            let job = serde_json::json!({ "work_ms": WORK_MS, "payload": format!("job {n}") });
            let response = client.post(url).json(&job).send().await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            anyhow::Ok((status, body))
        });
    }
    // Wait until the server has all of them in hand.
    let stats_url = format!("{base}/stats");
    let stats_client = reqwest::Client::new();
    tokio::time::timeout(LIMIT, async {
        loop {
            let stats: serde_json::Value = stats_client
                .get(&stats_url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if stats["requests_in_flight"] == IN_FLIGHT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("all requests in flight");
    drop(stats_client); // its idle keep-alive connection must not hold up the drain

    let signalled = Instant::now();
    server.sigterm().unwrap();
    server
        .wait_for_line("phase 1 (stop intake): listener closed", LIMIT)
        .await
        .unwrap();
    // Intake is stopped: a new connection is refused by the kernel, and an
    // HTTP request on a new connection gets no answer.
    let connect = tokio::net::TcpStream::connect(&addr).await;
    assert!(
        matches!(&connect, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{connect:?}"
    );
    let late = reqwest::Client::new().get(&stats_url).send().await;
    assert!(
        late.as_ref().is_err_and(reqwest::Error::is_connect),
        "{late:?}"
    );

    // Every request accepted before the signal got a complete, correct answer.
    let mut ids = Vec::new();
    while let Some(joined) = requests.join_next().await {
        let (status, body) = joined.unwrap().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["work_ms"], WORK_MS, "{body}");
        ids.push(body["id"].as_u64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=IN_FLIGHT).collect::<Vec<_>>());

    let output = server.wait(LIMIT).await.unwrap();
    let took = signalled.elapsed();
    // A clean stop by a signal: the documented 130.
    output.assert_code(exit::INTERRUPTED);
    assert!(took < grace, "exit took {took:?}, grace is {grace:?}");
    let out = &output.stdout;
    assert!(
        out.contains(&format!("{IN_FLIGHT} request(s) in flight")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "phase 2 (drain): {IN_FLIGHT} request(s) answered, {IN_FLIGHT} job(s) finished"
        )),
        "{out}"
    );
    assert!(out.contains("nothing left behind"), "{out}");
    assert!(
        out.contains(&format!(
            "phase 3 (close resources): journal flushed and synced, {IN_FLIGHT} record(s)"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn graceful_shutdown_exits_non_zero_when_a_stuck_worker_outlasts_the_grace_period() {
    let args = [
        "--serve",
        "--port",
        "0",
        "--stuck-job",
        "--drain-timeout",
        "1s",
    ];
    let mut server = spawn("graceful-shutdown", &args).unwrap();
    server.wait_for_line("listening on", LIMIT).await.unwrap();
    server.sigterm().unwrap();
    let output = server.wait(LIMIT).await.unwrap();
    output.assert_code(1);
    assert_one_line_error(
        &output
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect::<String>(),
        "error: drain timeout of 1s expired: 1 job(s) aborted in progress [1]",
    );
    assert!(
        output
            .stdout
            .contains("DEADLINE EXPIRED: aborted in progress [1]"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("phase 3 (close resources)"),
        "{}",
        output.stdout
    );
}

#[tokio::test]
async fn graceful_shutdown_exits_at_once_on_a_second_signal() {
    let args = [
        "--serve",
        "--port",
        "0",
        "--stuck-job",
        "--drain-timeout",
        "600s",
    ];
    let mut server = spawn("graceful-shutdown", &args).unwrap();
    server.wait_for_line("listening on", LIMIT).await.unwrap();
    server.sigterm().unwrap();
    server.wait_for_line("phase 1", LIMIT).await.unwrap();
    server.signal(libc::SIGINT).unwrap();
    // Far sooner than the 600 s grace period the drain would otherwise use.
    let output = server.wait(Duration::from_secs(10)).await.unwrap();
    output.assert_code(130);
    assert!(
        output.stderr.contains("second signal: exiting now"),
        "{}",
        output.stderr
    );
    assert!(!output.stdout.contains("phase 2"), "{}", output.stdout);
}

#[tokio::test]
async fn graceful_shutdown_rejects_bad_input_in_one_line() {
    for bad in [
        &["--concurrency", "0"][..],
        &["--drain-timeout", "0s"][..],
        &["--drain-timeout", "10"][..],
        &["--queue", "0"][..],
        &["--port", "65536"][..],
        &["--serve", "--clients", "4"][..],
    ] {
        let output = run("graceful-shutdown", bad, LIMIT).await.unwrap();
        output.assert_code(2);
        assert_one_line_error(&output.stderr, "error:");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = run("graceful-shutdown", &["--serve", "--port", &port], LIMIT)
        .await
        .unwrap();
    output.assert_code(1);
    assert_one_line_error(&output.stderr, "error: cannot listen on 127.0.0.1:");
    assert_eq!(
        output.stderr.trim_end().lines().count(),
        1,
        "{}",
        output.stderr
    );
}
