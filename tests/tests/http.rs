//! End-to-end runs of the HTTP examples (`examples-http`): each binary with
//! no arguments, its `--json` line, and bad input.

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

#[tokio::test]
async fn streaming_download_demo_verifies_every_file() {
    let output = run("streaming-download", &[], LIMIT).await.unwrap();
    output.assert_code(0);
    let out = &output.stdout;
    assert!(out.contains("3 of 3 downloaded"), "{out}");
    assert_eq!(out.matches("length + sha256 checked").count(), 3, "{out}");
}

#[tokio::test]
async fn streaming_download_json_and_failures() {
    let dir = tempfile_dir();
    let args = ["--size", "3000000", "--output-dir", dir.as_str(), "--json"];
    let json = json_line(
        run("streaming-download", &args, LIMIT)
            .await
            .unwrap()
            .assert_code(0),
    );
    assert_eq!(
        (json["ok"].as_u64(), json["bytes"].as_u64()),
        (Some(1), Some(3_000_000)),
        "{json}"
    );
    assert!(json["mb_per_s"].as_f64().unwrap() > 0.0);
    // The same file again: refused without --force, nothing overwritten.
    let again = run("streaming-download", &args[..4], LIMIT).await.unwrap();
    again.assert_code(1);
    assert!(
        again.stdout.contains("already exists (use --force"),
        "{}",
        again.stdout
    );
    // An unreachable host: reported, exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/file.bin");
    let refused = run(
        "streaming-download",
        &["--url", &url, "--output-dir", &dir, "--retries", "0"],
        LIMIT,
    )
    .await
    .unwrap();
    assert_clear_error(&refused, 1, "1 of 1 downloads failed");
    assert!(!std::path::Path::new(&dir).join("file.bin").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("e2e-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.to_string_lossy().into_owned()
}

#[tokio::test]
async fn benchmark_demo_prints_the_sweep_table() {
    let output = run("benchmark", &[], LIMIT).await.unwrap();
    output.assert_code(0);
    let rows: Vec<&str> = output
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric))
        .collect();
    assert_eq!(rows.len(), 4, "{}", output.stdout);
    assert!(
        output.stdout.contains("speedup") && output.stdout.contains("p99 ms"),
        "{}",
        output.stdout
    );
}

#[tokio::test]
async fn benchmark_json_and_svg_cover_every_setting() {
    let svg = std::env::temp_dir().join(format!("e2e-sweep-{}.svg", std::process::id()));
    let svg_arg = svg.to_string_lossy().into_owned();
    let args = [
        "--concurrency",
        "1,4",
        "--requests",
        "16",
        "--latency-ms",
        "2",
        "--json",
        "--svg",
        &svg_arg,
    ];
    let json = json_line(run("benchmark", &args, LIMIT).await.unwrap().assert_code(0));
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for key in [
        "concurrency",
        "throughput_rps",
        "speedup",
        "ideal_speedup",
        "errors",
        "latency",
    ] {
        assert!(results[0].get(key).is_some(), "{key} missing: {json}");
    }
    assert!(results[1]["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("<polyline"));
    std::fs::remove_file(&svg).unwrap();
}

#[tokio::test]
async fn benchmark_open_loop_reports_both_latencies_and_rejects_a_bad_rate() {
    let args = [
        "--rate",
        "200",
        "--requests",
        "40",
        "--latency-ms",
        "2",
        "--json",
    ];
    let json = json_line(run("benchmark", &args, LIMIT).await.unwrap().assert_code(0));
    assert_eq!(json["mode"], "open-loop");
    assert_eq!(json["run"]["requests"].as_u64(), Some(40));
    assert!(
        json["run"]["response"]["p99_ms"].is_number()
            && json["run"]["service"]["p99_ms"].is_number()
    );
    let bad = run("benchmark", &["--rate", "0"], LIMIT).await.unwrap();
    assert_clear_error(&bad, 1, "--rate");
    let zero = run("benchmark", &["--concurrency", "0"], LIMIT)
        .await
        .unwrap();
    assert_clear_error(&zero, 2, "--concurrency");
}
