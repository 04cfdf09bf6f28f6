//! End to end: the `priority-queue` binary (examples-queue) as a user runs it.

use std::time::Duration;

use e2e::{run, spawn};

const LIMIT: Duration = Duration::from_secs(60);
const BIN: &str = "priority-queue";

/// No arguments: the seed's demo runs, the monitor prints, and the final
/// report shows the invariant holding.
#[tokio::test]
async fn the_demo_runs_and_accounts_for_every_task() {
    let output = run(BIN, &[], LIMIT).await.unwrap();
    output.assert_code(0);
    let out = &output.stdout;
    assert!(
        out.contains("3 producers, 5 consumers, 400 tasks, capacity 50"),
        "{out}"
    );
    assert!(out.contains("depth urgent/high/norm/low"), "{out}");
    assert!(out.contains("produced 400 = completed "), "{out}");
    assert!(
        out.contains(": holds (left queued 0, in flight 0)"),
        "{out}"
    );
    assert!(out.contains("queue wait by priority"), "{out}");
}

/// `--json` prints one parseable line with consistent counts.
#[tokio::test]
async fn json_summary_is_one_consistent_line() {
    let args = [
        "--json",
        "--tasks",
        "300",
        "--error-rate",
        "0.5",
        "--max-retries",
        "1",
        "--processing-ms",
        "0-2",
        "--aging",
    ];
    let output = run(BIN, &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", output.stdout);
    let summary: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let count = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {summary}"))
    };
    assert_eq!(summary["mode"], "run");
    assert_eq!(summary["invariant_holds"], true);
    assert_eq!(count("produced"), 300);
    assert_eq!(count("completed") + count("dead_lettered"), 300);
    assert!(count("dead_lettered") > 0, "{summary}");
    assert_eq!(
        summary["dead_letters"].as_array().unwrap().len() as u64,
        count("dead_lettered")
    );
    for level in ["urgent", "high", "normal", "low"] {
        assert!(
            summary["wait_by_level"][level]["p99_ms"].is_number(),
            "{summary}"
        );
    }
}

/// `--bench --json` races the four contenders and reports medians.
#[tokio::test]
async fn bench_reports_every_contender() {
    let args = ["--bench", "--json", "--tasks", "20000", "--runs", "1"];
    let output = run(BIN, &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let summary: serde_json::Value = serde_json::from_str(output.stdout.trim()).unwrap();
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
            .all(|r| r["median_tasks_per_sec"].as_f64().unwrap() > 0.0)
    );
}

/// Bad input is a one-line usage error (exit 2), never a panic.
#[tokio::test]
async fn bad_input_is_a_clear_error() {
    let cases: [&[&str]; 5] = [
        &["--error-rate", "1.5"],
        &["--processing-ms", "20-5"],
        &["--capacity", "0"],
        &["--consumers", "0"],
        &["--aging", "0"],
    ];
    for args in cases {
        let output = run(BIN, args, LIMIT).await.unwrap();
        output.assert_code(2);
        let first = output.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: invalid value"),
            "{args:?}: {}",
            output.stderr
        );
        assert!(
            !output.stderr.contains("panicked"),
            "{args:?}: {}",
            output.stderr
        );
    }
    let output = run(
        BIN,
        &[
            "--bench",
            "--capacity",
            "8",
            "--batch",
            "16",
            "--tasks",
            "100",
        ],
        LIMIT,
    )
    .await
    .unwrap();
    output.assert_code(1);
    assert_eq!(
        output.stderr.trim(),
        "error: batch (16) must not exceed capacity (8)"
    );
}

/// SIGTERM mid-run: producers stop, accepted tasks drain, exit 0 with the
/// invariant holding.
#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let args = [
        "--tasks",
        "1000000",
        "--processing-ms",
        "1-3",
        "--monitor-ms",
        "100",
    ];
    let mut child = spawn(BIN, &args).unwrap();
    // The table header, then the first monitor row (the signal handler is
    // installed by then).
    child.wait_for_line("wait p99", LIMIT).await.unwrap();
    child.wait_for_line(" ms", LIMIT).await.unwrap();
    child.sigterm().unwrap();
    let output = child.wait(LIMIT).await.unwrap();
    output.assert_code(0);
    assert!(
        output
            .stdout
            .contains("Interrupted: production stopped early"),
        "{}",
        output.stdout
    );
    assert!(
        output
            .stdout
            .contains(": holds (left queued 0, in flight 0)"),
        "{}",
        output.stdout
    );
}
