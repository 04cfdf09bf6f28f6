//! `backoff-retry` and `circuit-breaker` as a user runs them: the default
//! demos, `--json`, `--bench` at a tiny size, Ctrl-C, hostile servers and
//! bad input.

use std::time::{Duration, Instant};

use e2e::{exit, run, spawn};

const LIMIT: Duration = Duration::from_secs(60);

fn assert_one_clean_error_line(stderr: &str) {
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn backoff_retry_demo_retries_gives_up_on_the_deadline_and_stops_on_404() {
    let output = run("backoff-retry", &[], LIMIT).await.unwrap();
    output.assert_code(0);
    let out = &output.stdout;
    for needle in [
        "== jitter strategies",
        "None          [100, 200, 400, 800, 1000, 1000]",
        "ok after 3 attempt(s)",
        // 1 s demanded with less than 1 s of the 1.5 s deadline left: the
        // loop gives up at once, naming the demand, instead of sleeping.
        "gave up (server demanded a wait of 1 s (Retry-After), longer than the",
        "gave up (not retryable) after 1 attempt(s)",
        "HTTP 404 Not Found",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[tokio::test]
async fn backoff_retry_json_is_one_line_with_every_run() {
    let output = run("backoff-retry", &["--json"], LIMIT).await.unwrap();
    output.assert_code(0);
    let summary = output.json_envelope("backoff-retry");
    assert_eq!(summary["seed"], 10);
    let runs = summary["runs"].as_array().unwrap();
    let outcomes: Vec<&str> = runs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["ok", "ok", "ok", "retry_after_too_long", "not_retryable"]
    );
    assert_eq!(
        summary["jitter_ms"]["none"],
        serde_json::json!([100, 200, 400, 800, 1000, 1000])
    );
    for key in ["attempts", "total_delay_ms", "elapsed_ms", "name"] {
        assert!(runs[0].get(key).is_some(), "no {key} in {}", runs[0]);
    }
}

#[tokio::test]
async fn circuit_breaker_demo_opens_spares_calls_and_closes_again() {
    let args = ["--phase", "600ms", "--concurrency", "4"];
    let output = run("circuit-breaker", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let out = &output.stdout;
    for needle in [
        "closed    -> open",
        "open      -> half-open",
        "half-open -> closed",
        "spared by the open circuit",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[tokio::test]
async fn circuit_breaker_json_reports_phases_transitions_and_metrics() {
    let args = ["--json", "--phase", "600ms", "--concurrency", "4"];
    let output = run("circuit-breaker", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let summary = output.json_envelope("circuit-breaker");
    assert_eq!(summary["seed"], 14);
    let phases = summary["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 4);
    // The healthy phase comes first, before any failure could open the circuit.
    assert_eq!(phases[0]["spared"], 0);
    let spared: u64 = phases.iter().map(|p| p["spared"].as_u64().unwrap()).sum();
    assert!(
        spared > 0,
        "the outage should have been spared some calls: {summary}"
    );
    assert_eq!(summary["metrics"]["rejected"].as_u64(), Some(spared));
    assert_eq!(summary["transitions"][0]["from"], "closed");
    assert_eq!(summary["transitions"][0]["to"], "open");
}

#[tokio::test]
async fn both_bench_modes_print_one_json_line_with_medians() {
    for (bin, variants) in [("backoff-retry", 2), ("circuit-breaker", 3)] {
        let output = run(bin, &["--bench", "--count", "2000", "--json"], LIMIT)
            .await
            .unwrap();
        output.assert_code(0);
        let summary = output.json_envelope(bin);
        assert_eq!(summary["rounds"].as_array().unwrap().len(), 3, "{bin}");
        let medians = summary["median"].as_array().unwrap();
        assert_eq!(medians.len(), variants, "{bin}");
        assert!(medians[0]["wrapped_ns"].as_f64().unwrap() > 0.0, "{bin}");
    }
}

#[tokio::test]
async fn bad_input_is_one_clear_line_and_a_non_zero_exit() {
    // Usage errors: clap, exit 2.
    for (bin, args) in [
        ("backoff-retry", &["--fail-rate", "1.5"][..]),
        ("backoff-retry", &["--unit", "0s"][..]),
        ("backoff-retry", &["--unit", "100"][..]),
        ("backoff-retry", &["--max-body", "18446744073709551615"][..]),
        ("backoff-retry", &["--bench", "--fail-rate", "0.5"][..]),
        ("backoff-retry", &["--count", "5000"][..]),
        ("circuit-breaker", &["--concurrency", "0"][..]),
        ("circuit-breaker", &["--phase", "5ms"][..]),
        ("circuit-breaker", &["--pace", "1e19s"][..]),
        ("circuit-breaker", &["--bench", "--concurrency", "4"][..]),
    ] {
        let output = run(bin, args, LIMIT).await.unwrap();
        output.assert_code(2);
        assert!(
            output.stderr.contains("error:"),
            "{bin} {args:?}: {}",
            output.stderr
        );
        assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
    }
    // Runtime errors: one line, exit 1.
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }; // dropped: nothing listens there any more
    for bin in ["backoff-retry", "circuit-breaker"] {
        for url in ["not a url", "ftp://example.invalid", unreachable.as_str()] {
            let output = run(bin, &["--url", url], LIMIT).await.unwrap();
            output.assert_code(1);
            assert_one_clean_error_line(&output.stderr);
        }
    }
}

/// Ctrl-C into the demo and into each `--bench` loop: a clean stop with a
/// report, exit 130, within a few seconds (the bench loops used to ignore
/// SIGINT and SIGTERM; backoff-retry used to exit 1).
#[tokio::test]
async fn sigint_stops_every_long_running_mode_with_130_and_a_report() {
    let modes: [(&str, &[&str], &str); 4] = [
        ("backoff-retry", &["--unit", "1s", "--json"], "GET"),
        ("circuit-breaker", &["--phase", "60s", "--json"], "callers"),
        (
            "backoff-retry",
            &["--bench", "--count", "1000000000", "--json"],
            "",
        ),
        (
            "circuit-breaker",
            &["--bench", "--count", "1000000000", "--json"],
            "",
        ),
    ];
    for (bin, args, _) in modes {
        let running = spawn(bin, args).unwrap();
        // Long enough to be inside the loop (the sandbox or the bench).
        tokio::time::sleep(Duration::from_millis(800)).await;
        let signalled = Instant::now();
        running.signal(libc::SIGINT).unwrap();
        let output = running.wait(Duration::from_secs(10)).await.unwrap();
        output.assert_code(exit::INTERRUPTED);
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "{bin} {args:?}"
        );
        let summary = output.json_envelope(bin);
        assert_eq!(summary["interrupted"], true, "{bin} {args:?}");
    }
}

/// Every request failing (the service always answers 500) exits 1.
#[tokio::test]
async fn all_work_failing_exits_1() {
    let output = run(
        "backoff-retry",
        &["--fail-rate", "1", "--unit", "1ms"],
        LIMIT,
    )
    .await
    .unwrap();
    output.assert_code(exit::FAILED);
    assert!(
        output.stderr.contains("error: gave up: seed config 1"),
        "{}",
        output.stderr
    );
    let output = run(
        "circuit-breaker",
        &["--url", "http://127.0.0.1:1", "--json"],
        LIMIT,
    )
    .await
    .unwrap();
    output.assert_code(exit::FAILED);
}
