//! End to end: the `priority-queue` binary (examples-queue) as a user runs it.

use std::time::Duration;

use e2e::{exit, run, spawn};

const LIMIT: Duration = Duration::from_secs(60);
const BIN: &str = "priority-queue";

/// No arguments: the seed's demo runs, the monitor prints, and the final
/// report shows every task accounted for.
#[tokio::test]
async fn the_demo_runs_and_accounts_for_every_task() {
    let output = run(BIN, &[], LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let out = &output.stdout;
    assert!(
        out.contains("3 producers, 5 consumers, 400 tasks, capacity 50"),
        "{out}"
    );
    assert!(out.contains("depth urgent/high/norm/low"), "{out}");
    assert!(
        out.contains(
            "produced 400 = completed 400 + dead-lettered 0 + queued 0 + in flight 0: holds"
        ),
        "{out}"
    );
    assert!(out.contains("queue wait by priority"), "{out}");
}

/// `--json` prints the one-line envelope with consistent counts; dead
/// letters are failed units of work, so the run exits 1 and says so.
#[tokio::test]
async fn json_is_one_envelope_line_with_consistent_counts() {
    let args = [
        "--json",
        "--count",
        "300",
        "--error-rate",
        "0.5",
        "--retries",
        "1",
        "--processing",
        "0ms-2ms",
        "--aging",
    ];
    let output = run(BIN, &args, LIMIT).await.unwrap();
    output.assert_code(exit::FAILED);
    let summary = output.json_envelope(BIN);
    let count = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {summary}"))
    };
    assert_eq!(summary["seed"], 7);
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["mode"], "run");
    assert_eq!(summary["invariant_holds"], true);
    assert_eq!(count("produced"), 300);
    assert_eq!(count("completed") + count("dead_lettered"), 300);
    assert!(count("dead_lettered") > 0, "{summary}");
    assert_eq!(
        summary["dead_letters"].as_array().unwrap().len() as u64,
        count("dead_lettered")
    );
    assert!(summary["tasks_per_s"].as_f64().unwrap() > 0.0);
    for level in ["urgent", "high", "normal", "low"] {
        assert!(
            summary["wait_by_level"][level]["p99_ms"].is_number(),
            "{summary}"
        );
    }
    assert!(
        output.stderr.contains("were dead-lettered"),
        "{}",
        output.stderr
    );

    let clean = run(
        BIN,
        &["--json", "--count", "50", "--error-rate", "0"],
        LIMIT,
    )
    .await
    .unwrap();
    clean.assert_code(exit::OK);
    assert_eq!(clean.json_envelope(BIN)["ok"], true);
}

/// Every task failing every attempt exits 1.
#[tokio::test]
async fn all_work_failing_exits_1() {
    let args = [
        "--count",
        "20",
        "--error-rate",
        "1",
        "--retries",
        "0",
        "--processing",
        "0ms",
    ];
    let output = run(BIN, &args, LIMIT).await.unwrap();
    output.assert_code(exit::FAILED);
    assert!(
        output.stderr.contains("20 of 20 tasks were dead-lettered"),
        "{}",
        output.stderr
    );
}

/// `--bench --json` races the four contenders and reports medians.
#[tokio::test]
async fn bench_reports_every_contender() {
    let args = ["--bench", "--json", "--count", "20000", "--runs", "1"];
    let output = run(BIN, &args, LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let summary = output.json_envelope(BIN);
    assert_eq!(summary["mode"], "bench");
    assert_eq!(summary["shape"]["tasks"], 20000);
    let results = summary["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["contender"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "priority-queue",
            "priority-queue-batched",
            "mpsc",
            "mpsc-batched"
        ]
    );
    assert!(
        results
            .iter()
            .all(|r| r["median_tasks_per_s"].as_f64().unwrap() > 0.0)
    );
}

/// Bad input is a one-line usage error (exit 2), never a panic.
#[tokio::test]
async fn bad_input_is_a_clear_error() {
    let cases: [&[&str]; 12] = [
        &["--error-rate", "1.5"],
        &["--error-rate", "NaN"],
        &["--processing", "20ms-5ms"],
        &["--processing", "5"],
        &["--capacity", "0"],
        &["--concurrency", "0"],
        &["--count", "18446744073709551615"],
        &["--aging", "0s"],
        &["--drain-timeout", "1e19s"],
        &["--monitor", "-1s"],
        &["--queue", "x"],
        &[
            "--store",
            "postgres://127.0.0.1/test",
            "--queue",
            "Bad-Name",
        ],
    ];
    for args in cases {
        let output = run(BIN, args, LIMIT).await.unwrap();
        output.assert_code(exit::USAGE);
        let first = output.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error:"), "{args:?}: {}", output.stderr);
        assert!(
            !output.stderr.contains("panicked"),
            "{args:?}: {}",
            output.stderr
        );
    }
    let args = [
        "--bench",
        "--capacity",
        "8",
        "--batch",
        "16",
        "--count",
        "100",
    ];
    run(BIN, &args, LIMIT)
        .await
        .unwrap()
        .assert_clear_error(exit::USAGE, "--batch (16) must not exceed --capacity (8)");
}

/// SIGINT mid-run: producers stop, accepted tasks drain, the report is
/// printed and the exit code is 130.
#[tokio::test]
async fn sigint_drains_and_exits_130() {
    let args = [
        "--count",
        "1000000",
        "--processing",
        "1ms-3ms",
        "--monitor",
        "100ms",
    ];
    let mut child = spawn(BIN, &args).unwrap();
    child.wait_for_line("wait p99", LIMIT).await.unwrap();
    child.wait_for_line(" ms", LIMIT).await.unwrap();
    child.signal(libc::SIGINT).unwrap();
    let output = child.wait(Duration::from_secs(10)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    assert!(
        output
            .stdout
            .contains("Interrupted: production stopped early"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("+ queued 0 + in flight 0: holds"),
        "{}",
        output.stdout
    );
}

/// A stop whose drain times out lost work: exit 1, and the tasks the
/// aborted consumers held are still counted (in flight).
#[tokio::test]
async fn a_stop_that_loses_work_exits_1_and_counts_it() {
    let args = [
        "--count",
        "100",
        "--processing",
        "30s",
        "--drain-timeout",
        "200ms",
        "--monitor",
        "100ms",
    ];
    let mut child = spawn(BIN, &args).unwrap();
    // The first monitor row: consumers took their tasks long before.
    child.wait_for_line("wait p99", LIMIT).await.unwrap();
    child.wait_for_line(" ms", LIMIT).await.unwrap();
    child.signal(libc::SIGINT).unwrap();
    let output = child.wait(Duration::from_secs(10)).await.unwrap();
    output.assert_code(exit::FAILED);
    assert!(
        output
            .stdout
            .contains("+ in flight 5: holds, with work left"),
        "{}",
        output.stdout
    );
    assert!(
        output.stderr.contains("the stop lost work"),
        "{}",
        output.stderr
    );
}

/// A second signal during a long drain exits at once (130), instead of
/// waiting out the drain timeout (issue 15 item 12).
#[tokio::test]
async fn a_second_signal_during_the_drain_exits_at_once() {
    let args = [
        "--count",
        "100",
        "--processing",
        "30s",
        "--drain-timeout",
        "60s",
        "--monitor",
        "100ms",
    ];
    let mut child = spawn(BIN, &args).unwrap();
    child.wait_for_line("wait p99", LIMIT).await.unwrap();
    child.wait_for_line(" ms", LIMIT).await.unwrap();
    child.signal(libc::SIGINT).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.signal(libc::SIGINT).unwrap();
    let output = child.wait(Duration::from_secs(5)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
}

/// SIGINT into the benchmark stops it promptly with 130.
#[tokio::test]
async fn sigint_stops_the_bench() {
    let args = ["--bench", "--count", "100000000", "--runs", "50"];
    let mut child = spawn(BIN, &args).unwrap();
    child.wait_for_line("contender", LIMIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.signal(libc::SIGINT).unwrap();
    child
        .wait(Duration::from_secs(5))
        .await
        .unwrap()
        .assert_code(exit::INTERRUPTED);
}

// ---- the durable queue on PostgreSQL (issue 16 section 3) ----

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL is set for needs_postgres tests")
}

fn queue_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("e2e_{tag}_{}_{nanos}", std::process::id())
}

/// `--role status --json`: the envelope with the counts by state.
async fn status(url: &str, queue: &str) -> serde_json::Value {
    let output = run(
        BIN,
        &[
            "--store", url, "--queue", queue, "--role", "status", "--json",
        ],
        LIMIT,
    )
    .await
    .unwrap();
    output.assert_code(exit::OK);
    let status = output.json_envelope(BIN);
    let n = |k: &str| {
        status[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {status}"))
    };
    assert_eq!(
        n("produced"),
        n("done") + n("dead") + n("queued") + n("leased"),
        "{status}"
    );
    status
}

/// A producer process and two consumer processes share one queue; then a
/// consumer is SIGKILLed mid-task, another runs with `--until-empty`, and
/// `--role status` shows done + dead = produced with nothing queued or
/// leased: the killed consumer's task was redelivered after its lease.
#[tokio::test]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn processes_share_the_queue_and_a_killed_consumer_loses_nothing_needs_postgres() {
    let url = database_url();
    let queue = queue_name("kill");
    let store = ["--store", url.as_str(), "--queue", queue.as_str()];
    let with = |extra: &[&'static str]| -> Vec<String> {
        store.iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    let args = with(&["--role", "producer", "--count", "60", "--json"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(BIN, &args, LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    assert_eq!(output.json_envelope(BIN)["added"], 60);

    // Two consumer processes at once, until nothing is left.
    let consumer = with(&[
        "--role",
        "consumer",
        "--until-empty",
        "--concurrency",
        "3",
        "--processing",
        "1ms-5ms",
        "--error-rate",
        "0",
        "--json",
    ]);
    let consumer: Vec<&str> = consumer.iter().map(String::as_str).collect();
    let (a, b) = tokio::join!(run(BIN, &consumer, LIMIT), run(BIN, &consumer, LIMIT));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.assert_code(exit::OK);
    b.assert_code(exit::OK);
    let done = |o: &e2e::Output| {
        o.json_envelope(BIN)["consumed"]["completed"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(done(&a) + done(&b), 60);
    assert_eq!(status(&url, &queue).await["done"], 60);

    // More work, a slow consumer SIGKILLed while it holds leases.
    let args = with(&["--role", "producer", "--count", "10"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(BIN, &args, LIMIT).await.unwrap().assert_code(exit::OK);
    let slow = with(&[
        "--role",
        "consumer",
        "--concurrency",
        "2",
        "--processing",
        "20s",
        "--lease",
        "1s",
    ]);
    let slow: Vec<&str> = slow.iter().map(String::as_str).collect();
    let victim = spawn(BIN, &slow).unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while status(&url, &queue).await["leased"] != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow consumer never leased 2 tasks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    victim.signal(libc::SIGKILL).unwrap();
    let killed = victim.wait(LIMIT).await.unwrap();
    assert_eq!(killed.code, None, "killed by the signal");
    assert_eq!(
        status(&url, &queue).await["leased"],
        2,
        "the dead consumer's leases remain"
    );

    let rescue = with(&[
        "--role",
        "consumer",
        "--until-empty",
        "--concurrency",
        "2",
        "--processing",
        "1ms",
        "--error-rate",
        "0",
        "--json",
    ]);
    let rescue: Vec<&str> = rescue.iter().map(String::as_str).collect();
    let output = run(BIN, &rescue, LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    assert_eq!(output.json_envelope(BIN)["consumed"]["completed"], 10);
    let last = status(&url, &queue).await;
    assert_eq!(
        (
            &last["produced"],
            &last["done"],
            &last["dead"],
            &last["queued"],
            &last["leased"]
        ),
        (&70.into(), &70.into(), &0.into(), &0.into(), &0.into()),
        "{last}"
    );
}

/// SIGINT into a consumer that is waiting for work: exit 130 promptly.
#[tokio::test]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn sigint_stops_a_consumer_with_130_needs_postgres() {
    let url = database_url();
    let queue = queue_name("int");
    let child = spawn(
        BIN,
        &[
            "--store", &url, "--queue", &queue, "--role", "consumer", "--json",
        ],
    )
    .unwrap();
    // Up and idle (connected, listening, polling) well before this.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status(&url, &queue).await["produced"], 0);
    child.signal(libc::SIGINT).unwrap();
    let output = child.wait(Duration::from_secs(5)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    assert_eq!(output.json_envelope(BIN)["interrupted"], true);
}

/// The store benchmark: 4 consumers in 2 processes beside the in-process
/// figure, through the envelope.
#[tokio::test]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn the_store_bench_reports_both_figures_needs_postgres() {
    let url = database_url();
    let queue = queue_name("bench");
    let output = run(
        BIN,
        &[
            "--bench", "--store", &url, "--queue", &queue, "--count", "300", "--json",
        ],
        LIMIT,
    )
    .await
    .unwrap();
    output.assert_code(exit::OK);
    let summary = output.json_envelope(BIN);
    assert_eq!(summary["mode"], "store-bench");
    assert!(
        summary["store_tasks_per_s"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert!(
        summary["in_process_tasks_per_s"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert_eq!(summary["store_processes"], 2);
    assert_eq!(summary["store_consumers"], 4);
}
