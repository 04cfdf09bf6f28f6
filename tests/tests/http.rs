//! End-to-end runs of `concurrent-fetch`
//! (`examples-http`): each binary with no arguments, its `--json` line, and
//! bad input.

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
async fn concurrent_fetch_demo_reports_every_url_and_the_speedup() {
    let output = run("concurrent-fetch", &[], LIMIT).await.unwrap();
    output.assert_code(0);
    let out = &output.stdout;
    assert!(out.contains("15/17 succeeded"), "{out}");
    assert!(
        out.contains("503") && out.contains("error: body failed after 50000 bytes"),
        "{out}"
    );
    assert!(
        out.contains("sequential:") && out.contains("speedup:"),
        "{out}"
    );
}

#[tokio::test]
async fn concurrent_fetch_json_has_the_summary_keys() {
    let args = [
        "--count",
        "40",
        "--delay-ms",
        "50",
        "--concurrency",
        "20",
        "--json",
    ];
    let output = run("concurrent-fetch", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    let json = json_line(&output);
    assert_eq!(
        (
            json["urls"].as_u64(),
            json["ok"].as_u64(),
            json["failed"].as_u64()
        ),
        (Some(40), Some(40), Some(0))
    );
    assert!(json["speedup"].as_f64().unwrap() > 5.0, "{json}");
    assert_eq!(json["ideal_s"].as_f64(), Some(0.1));
}

#[tokio::test]
async fn concurrent_fetch_rejects_bad_input_in_one_line() {
    let malformed = run("concurrent-fetch", &["--url", "not a url"], LIMIT)
        .await
        .unwrap();
    assert_clear_error(&malformed, 1, "invalid URL");
    let zero = run("concurrent-fetch", &["--concurrency", "0"], LIMIT)
        .await
        .unwrap();
    assert_clear_error(&zero, 2, "--concurrency");
}
