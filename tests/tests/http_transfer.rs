//! End-to-end runs of `streaming-download` and `benchmark` (`examples-http`):
//! each binary with no arguments, its `--json` line, and bad input.

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
