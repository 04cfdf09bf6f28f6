//! End-to-end runs of `streaming-download` and `benchmark` (`examples-http`):
//! each binary with no arguments, its `--json` line, and bad input.

use std::time::Duration;

use e2e::run;

const LIMIT: Duration = Duration::from_secs(60);

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
    let dir = tempfile_dir("json");
    let args = ["--size", "3000000", "--output-dir", dir.as_str(), "--json"];
    let output = run("streaming-download", &args, LIMIT).await.unwrap();
    let json = output.assert_code(0).json_envelope("streaming-download");
    assert_eq!(
        (json["downloaded"].as_u64(), json["total_bytes"].as_u64()),
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
        &[
            "--url",
            &url,
            "--output-dir",
            &dir,
            "--retries",
            "0",
            "--json",
        ],
        LIMIT,
    )
    .await
    .unwrap();
    refused.assert_clear_error(1, "1 of 1 downloads failed");
    assert_eq!(refused.json_envelope("streaming-download")["ok"], false);
    assert!(!std::path::Path::new(&dir).join("file.bin").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn streaming_download_saves_every_url_it_is_given() {
    let sandbox = common::Sandbox::start(common::SandboxConfig::default())
        .await
        .unwrap();
    let dir = tempfile_dir("three");
    let urls: Vec<String> = [1000, 2000, 3000]
        .iter()
        .map(|n| sandbox.url(&format!("/bytes/{n}")))
        .collect();
    let mut args = vec!["--output-dir", dir.as_str()];
    for url in &urls {
        args.extend(["--url", url.as_str()]);
    }
    let output = run("streaming-download", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    assert!(
        output.stdout.contains("3 of 3 downloaded"),
        "{}",
        output.stdout
    );
    for n in [1000usize, 2000, 3000] {
        let bytes = std::fs::read(std::path::Path::new(&dir).join(n.to_string())).unwrap();
        assert_eq!(bytes, common::sandbox::pattern(0, n));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn streaming_download_rejects_bad_values_before_fetching() {
    let hex = "a".repeat(64);
    let cases: &[&[&str]] = &[
        &[
            "--url",
            "http://127.0.0.1:1/a",
            "--url",
            "http://127.0.0.1:1/b",
            "--output",
            "/tmp/x",
        ],
        &["--url", "http://127.0.0.1:1/a", "--sha256", "zz"],
        &[
            "--url",
            "http://127.0.0.1:1/a",
            "--sha256",
            &hex,
            "--sha256",
            &hex,
        ],
        &["--sha256", &hex],
        &["--url", "ftp://127.0.0.1/a"],
        &["--timeout", "0s"],
        &["--concurrency", "0"],
        &["--size", "1e19"],
    ];
    for args in cases {
        let output = run("streaming-download", args, LIMIT).await.unwrap();
        output.assert_code(2);
        assert!(
            !output.stderr.contains("panicked"),
            "{args:?}: {}",
            output.stderr
        );
    }
}

#[tokio::test]
async fn streaming_download_never_replaces_a_device_node() {
    use std::os::unix::fs::FileTypeExt;
    let sandbox = common::Sandbox::start(common::SandboxConfig::default())
        .await
        .unwrap();
    let url = sandbox.url("/bytes/100");
    let args = ["--url", &url, "--output", "/dev/full", "--force"];
    let output = run("streaming-download", &args, LIMIT).await.unwrap();
    output.assert_clear_error(1, "1 of 1 downloads failed");
    assert!(
        output.stdout.contains("not a regular file"),
        "{}",
        output.stdout
    );
    assert!(
        std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

/// Waits until `path` exists and holds bytes.
async fn wait_for_bytes(path: &std::path::Path) {
    for _ in 0..600 {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never filled", path.display());
}

#[tokio::test]
async fn streaming_download_sigterm_keeps_the_part_and_a_second_process_is_refused() {
    let sandbox = common::Sandbox::start(common::SandboxConfig::default())
        .await
        .unwrap();
    let dir = tempfile_dir("sigterm");
    // 64 MiB at 64 KiB per 5 ms: about 5 s, long enough to interrupt.
    let url = sandbox.url("/bytes/67108864?chunk_delay_ms=5");
    let dest = std::path::Path::new(&dir).join("67108864");
    let args = ["--url", &url, "--output-dir", &dir];
    let running = e2e::spawn("streaming-download", &args).unwrap();
    let part = std::path::Path::new(&dir).join("67108864.part");
    wait_for_bytes(&part).await;
    // A second process for the same destination fails at once.
    let second = run("streaming-download", &args, LIMIT).await.unwrap();
    second.assert_clear_error(1, "1 of 1 downloads failed");
    assert!(
        second.stdout.contains("another download"),
        "{}",
        second.stdout
    );
    running.signal(libc::SIGTERM).unwrap();
    let output = running.wait(Duration::from_secs(10)).await.unwrap();
    output.assert_code(e2e::exit::INTERRUPTED);
    assert!(output.stdout.contains("kept in"), "{}", output.stdout);
    assert!(!dest.exists());
    assert!(std::fs::metadata(&part).unwrap().len() > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("e2e-http-{name}-{}", std::process::id()));
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
        "--count",
        "16",
        "--latency",
        "2ms",
        "--json",
        "--svg",
        &svg_arg,
    ];
    let output = run("benchmark", &args, LIMIT).await.unwrap();
    let json = output.assert_code(0).json_envelope("benchmark");
    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for key in [
        "concurrency",
        "throughput_per_s",
        "speedup",
        "ideal_speedup",
        "errors",
        "error_rate",
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
async fn benchmark_open_loop_reports_both_latencies_and_rejects_bad_values() {
    let args = [
        "--rate",
        "200",
        "--count",
        "40",
        "--latency",
        "2ms",
        "--json",
    ];
    let output = run("benchmark", &args, LIMIT).await.unwrap();
    let json = output.assert_code(0).json_envelope("benchmark");
    assert_eq!(json["mode"], "open-loop");
    assert_eq!(json["run"]["requests"].as_u64(), Some(40));
    assert!(
        json["run"]["response"]["p99_ms"].is_number()
            && json["run"]["service"]["p99_ms"].is_number()
    );
    let cases: &[&[&str]] = &[
        &["--rate", "0"],
        &["--rate", "1e-300"],
        &["--rate", "NaN"],
        &["--concurrency", "0"],
        &["--timeout", "1e19s"],
        &["--max-error-rate", "2"],
        &["--rate", "10", "--concurrency", "1,2"],
        &["--duration", "1s"],
        &["--url", "http://127.0.0.1:1/", "--latency", "5ms"],
    ];
    for args in cases {
        let output = run("benchmark", args, LIMIT).await.unwrap();
        output.assert_code(2);
        assert!(
            !output.stderr.contains("panicked"),
            "{args:?}: {}",
            output.stderr
        );
    }
}

#[tokio::test]
async fn benchmark_with_every_request_failing_exits_1_with_no_throughput() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/");
    for extra in [&[][..], &["--rate", "500"][..]] {
        let mut args = vec![
            "--url",
            url.as_str(),
            "--concurrency",
            "4",
            "--count",
            "32",
            "--json",
        ];
        args.extend_from_slice(extra);
        let output = run("benchmark", &args, LIMIT).await.unwrap();
        output.assert_clear_error(1, "error rate 100.0%");
        let json = output.json_envelope("benchmark");
        let ok = json["results"][0]["throughput_per_s"]
            .as_f64()
            .or(json["run"]["achieved_per_s"].as_f64());
        assert_eq!(ok, Some(0.0), "{json}");
    }
}

#[tokio::test]
async fn benchmark_stops_on_sigint_with_a_report_in_both_modes() {
    for args in [
        &["--count", "10000000", "--json"][..],
        &["--rate", "100", "--duration", "1h", "--json"][..],
    ] {
        let running = e2e::spawn("benchmark", args).unwrap();
        // The sweep prints nothing before its end: wait for the sandbox to answer.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        running.signal(libc::SIGINT).unwrap();
        let output = running.wait(Duration::from_secs(10)).await.unwrap();
        output.assert_code(e2e::exit::INTERRUPTED);
        let json = output.json_envelope("benchmark");
        assert_eq!(json["interrupted"], true, "{json}");
    }
}
