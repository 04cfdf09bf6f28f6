//! End-to-end runs of `rate-limited-client` (`examples-http`): the demo, its
//! `--json` line, and bad input.

use std::time::Duration;

use e2e::{Output, run};

const LIMIT: Duration = Duration::from_secs(60);

fn json_line(output: &Output) -> serde_json::Value {
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "--json prints one line:\n{}", output.stdout);
    serde_json::from_str(lines[0]).expect("--json line parses")
}

/// A usage or input error: exit code `code`, one `error:` line first, no panic.
fn assert_clear_error(output: &Output, code: i32, needle: &str) {
    output.assert_code(code);
    let first = output.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error:") && first.contains(needle),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
    if code == 1 {
        assert_eq!(
            output.stderr.trim_end().lines().count(),
            1,
            "{}",
            output.stderr
        );
    }
}

#[tokio::test]
async fn rate_limited_client_demo_shows_zero_429s_and_typed_errors() {
    let output = run("rate-limited-client", &[], LIMIT).await.unwrap();
    output.assert_code(0);
    let out = &output.stdout;
    assert!(out.contains("429 responses: 0"), "{out}");
    assert!(
        out.contains("the sandbox rejected 0 requests with 429"),
        "{out}"
    );
    assert!(
        out.contains("HTTP 404: Not Found") && out.contains("bad JSON"),
        "{out}"
    );
}

#[tokio::test]
async fn rate_limited_client_without_the_limiter_is_refused_with_429s() {
    let limited = json_line(
        run("rate-limited-client", &["--json"], LIMIT)
            .await
            .unwrap()
            .assert_code(0),
    );
    let unlimited = json_line(
        run("rate-limited-client", &["--no-limit", "--json"], LIMIT)
            .await
            .unwrap()
            .assert_code(0),
    );
    assert_eq!(limited["server_429"].as_u64(), Some(0), "{limited}");
    assert_eq!(limited["ok"].as_u64(), Some(38), "{limited}");
    assert!(unlimited["server_429"].as_u64().unwrap() > 0, "{unlimited}");
    assert!(unlimited["ok"].as_u64().unwrap() < 38, "{unlimited}");
    let rate = limited["sustained_rps"].as_f64().unwrap();
    assert!((rate - 20.0).abs() < 2.0, "{limited}");
    // The error field is the same deviation, in percent; without a limiter
    // there is no configured rate to deviate from.
    let error = limited["rate_error_pct"].as_f64().unwrap();
    assert!(
        (error - 100.0 * (rate - 20.0) / 20.0).abs() < 1e-9,
        "{limited}"
    );
    assert!(unlimited["rate_error_pct"].is_null(), "{unlimited}");
}

#[tokio::test]
async fn rate_limited_client_refuses_a_rate_of_zero_or_less() {
    for rps in ["--rps=0", "--rps=-1", "--rps=abc", "--rps=inf"] {
        let output = run("rate-limited-client", &[rps], LIMIT).await.unwrap();
        assert_clear_error(&output, 2, "--rps");
    }
}
