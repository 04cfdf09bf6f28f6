//! End-to-end runs of `concurrent-fetch` (`examples-http`): the demo, its
//! `--json` envelope, the exit codes (0 all fetched, 1 a URL failed, 2 bad
//! input, 130 interrupted) and bad input.

use std::time::Duration;

use e2e::{exit, run, spawn};

const LIMIT: Duration = Duration::from_secs(60);
const BIN: &str = "concurrent-fetch";

#[tokio::test]
async fn concurrent_fetch_demo_fetches_every_url_and_exits_0() {
    let output = run(BIN, &[], LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let out = &output.stdout;
    assert!(out.contains("16/16 succeeded"), "{out}");
    assert!(
        out.contains("sequential:") && out.contains("speedup:"),
        "{out}"
    );
}

#[tokio::test]
async fn concurrent_fetch_planted_failures_are_reported_per_url_and_exit_1() {
    let output = run(BIN, &["--demo-failures", "--no-sequential"], LIMIT)
        .await
        .unwrap();
    output.assert_clear_error(exit::FAILED, "5 of 21 URLs failed");
    let out = &output.stdout;
    assert!(out.contains("16/21 succeeded"), "{out}");
    for needle in [
        "error: body failed after 50000 bytes",
        "invalid HTTP status-code",
        "exceeds the 16777216-byte cap",
        "too many redirects",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    assert!(out.lines().any(|l| l.contains(" 503 ")), "{out}");
}

#[tokio::test]
async fn concurrent_fetch_json_is_one_envelope_line() {
    let args = [
        "--count",
        "40",
        "--delay",
        "50ms",
        "--concurrency",
        "20",
        "--json",
    ];
    let output = run(BIN, &args, LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let json = output.json_envelope(BIN);
    assert_eq!(json["seed"], 1);
    assert_eq!(json["ok"], true);
    assert_eq!(json["interrupted"], false);
    assert_eq!(
        (
            json["urls"].as_u64(),
            json["succeeded"].as_u64(),
            json["failed"].as_u64()
        ),
        (Some(40), Some(40), Some(0))
    );
    // Ideal 20x; > 5 left 300 ms of room for a debug binary on a loaded
    // machine. > 3 still tells concurrency from a sequential run.
    assert!(json["speedup"].as_f64().unwrap() > 3.0, "{json}");
    assert_eq!(json["ideal_s"].as_f64(), Some(0.1));
    assert_eq!(json["concurrency"].as_u64(), Some(20));
    assert!(json["concurrent_s"].as_f64().unwrap() > 0.09, "{json}");
    assert!(json["sequential_s"].as_f64().unwrap() > 1.9, "{json}");
}

#[tokio::test]
async fn concurrent_fetch_with_every_url_failing_exits_1() {
    // A port that was free a moment ago: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/nothing");
    let output = run(BIN, &["--url", &url, "--url", &url, "--json"], LIMIT)
        .await
        .unwrap();
    output.assert_clear_error(exit::FAILED, "2 of 2 URLs failed");
    let json = output.json_envelope(BIN);
    assert_eq!(json["ok"], false);
    assert_eq!(json["failed"], 2);
    assert_eq!(json["error"], "2 of 2 URLs failed");
}

#[tokio::test]
async fn concurrent_fetch_sigint_stops_with_130_and_a_report() {
    let args = ["--count", "50", "--delay", "1s", "--concurrency", "1"];
    let mut running = spawn(BIN, &args).unwrap();
    running
        .wait_for_line("fetching 50 URLs", LIMIT)
        .await
        .unwrap();
    running.signal(libc::SIGINT).unwrap();
    let output = running.wait(Duration::from_secs(5)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    assert!(
        output
            .stdout
            .contains("interrupted during the sequential run: 0 of 50 URLs done"),
        "{}",
        output.stdout
    );
}

#[tokio::test]
async fn concurrent_fetch_sigint_under_json_prints_one_interrupted_envelope() {
    let args = [
        "--count",
        "50",
        "--delay",
        "2s",
        "--concurrency",
        "10",
        "--no-sequential",
        "--json",
    ];
    let running = spawn(BIN, &args).unwrap();
    // Under --json nothing is printed to wait for; the harness installs its
    // handlers before anything else, far sooner than this.
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.signal(libc::SIGINT).unwrap();
    let output = running.wait(Duration::from_secs(5)).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    let json = output.json_envelope(BIN);
    assert_eq!(json["interrupted"], true);
    assert_eq!(json["phase"], "concurrent");
    assert_eq!(json["urls"], 50);
    assert_eq!(json["completed"], 0);
    assert_eq!(json["cancelled"], 50);
}

#[tokio::test]
async fn concurrent_fetch_rejects_bad_input_with_exit_2() {
    // Files unique to this process (no tempfile in this crate).
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let empty = dir.join(format!("concurrent-fetch-empty-{pid}.txt"));
    std::fs::write(&empty, "# nothing here\n\n").unwrap();
    let malformed_file = dir.join(format!("concurrent-fetch-bad-{pid}.txt"));
    std::fs::write(&malformed_file, "https://example.com\nnot a url\n").unwrap();
    let paths = [empty.clone(), malformed_file.clone()];
    let (empty, malformed_file) = (
        empty.to_str().unwrap().to_owned(),
        malformed_file.to_str().unwrap().to_owned(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--url", "not a url"], "invalid URL"),
        (vec!["--url", "ftp://example.com/x"], "not http or https"),
        (vec!["--urls-file", "/dev/null"], "no URL"),
        (vec!["--urls-file", &empty], "no URL"),
        (vec!["--urls-file", &malformed_file], "invalid URL"),
        (vec!["--urls-file", "/nonexistent/urls.txt"], "--urls-file"),
        (
            vec!["--url", "http://127.0.0.1:1/", "--count", "5"],
            "--count",
        ),
        (
            vec!["--url", "http://127.0.0.1:1/", "--delay", "1s"],
            "--delay",
        ),
        (vec!["--demo-failures", "--count", "5"], "--count"),
        (vec!["--unbounded", "--concurrency", "5"], "--concurrency"),
        (vec!["--concurrency", "0"], "--concurrency"),
        (vec!["--concurrency", "10001"], "--concurrency"),
        (vec!["--count", "0"], "--count"),
        (vec!["--timeout", "0s"], "--timeout"),
        (vec!["--timeout", "100"], "--timeout"),
        (vec!["--delay", "1e19s"], "--delay"),
        (vec!["--max-body", "0"], "--max-body"),
        (vec!["--max-body", "18446744073709551615"], "--max-body"),
        (vec!["--delay-ms", "5"], "--delay-ms"),
    ];
    for (args, needle) in cases {
        let output = run(BIN, &args, LIMIT).await.unwrap();
        output.assert_clear_error(exit::USAGE, needle);
        assert!(output.stdout.is_empty(), "{args:?}: {}", output.stdout);
    }
    for path in paths {
        // Best effort: a leftover file in the temp dir is harmless.
        let _removed = std::fs::remove_file(path);
    }
}
