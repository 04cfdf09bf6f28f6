//! `backoff-retry` and `circuit-breaker` as a user runs them: the default
//! demos, `--json`, `--bench` at a tiny size, and bad input.

use std::time::Duration;

use e2e::run;

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
        "gave up (deadline exceeded) after 2 attempt(s)",
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
    assert_eq!(output.stdout.lines().count(), 1, "{}", output.stdout);
    let summary: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    let runs = summary["runs"].as_array().unwrap();
    let outcomes: Vec<&str> = runs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["ok", "ok", "ok", "deadline_exceeded", "not_retryable"]
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
    let args = ["--phase-ms", "600", "--workers", "4"];
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
    let args = ["--json", "--phase-ms", "600", "--workers", "4"];
    let output = run("circuit-breaker", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    assert_eq!(output.stdout.lines().count(), 1, "{}", output.stdout);
    let summary: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
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
        let output = run(bin, &["--bench", "--bench-calls", "2000", "--json"], LIMIT)
            .await
            .unwrap();
        output.assert_code(0);
        let summary: serde_json::Value = serde_json::from_str(output.stdout.trim()).unwrap();
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
        ("backoff-retry", &["--unit-ms", "0"][..]),
        ("circuit-breaker", &["--workers", "0"][..]),
        ("circuit-breaker", &["--phase-ms", "5"][..]),
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
