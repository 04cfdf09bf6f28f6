//! `ws-reconnecting-client` as a user runs it.

use std::time::Duration;

use e2e::run;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn one_error_line(stderr: &str) {
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn free_port() -> u16 {
    // Bound and released: good enough for a test on loopback.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn ws_reconnecting_client_demo_reconnects_and_gets_every_echo() {
    let output = run("ws-reconnecting-client", &[], LIMIT).await.unwrap();
    output.assert_code(0);
    let stdout = &output.stdout;
    for needle in [
        "connected (connection 1)",
        "disconnected:",
        "reconnecting in",
        "connected (connection 2)",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
    assert!(stdout.contains("done: 9 of 9 messages echoed"), "{stdout}");
}

#[tokio::test]
async fn ws_reconnecting_client_prints_one_json_summary() {
    let output = run("ws-reconnecting-client", &["--json", "--count", "4"], LIMIT)
        .await
        .unwrap();
    output.assert_code(0);
    assert_eq!(output.stdout.lines().count(), 1, "{}", output.stdout);
    let summary: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(
        (summary["sent"].as_u64(), summary["echoed"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(summary["unsent"], 0);
    for key in ["url", "resent", "connections", "reconnects", "elapsed_ms"] {
        assert!(summary.get(key).is_some(), "{key} missing: {summary}");
    }
    assert!(summary["reconnects"].as_u64().unwrap() >= 1, "{summary}");
}

#[tokio::test]
async fn ws_reconnecting_client_rejects_a_malformed_url_in_one_line() {
    let output = run("ws-reconnecting-client", &["--url", "not a url"], LIMIT)
        .await
        .unwrap();
    output.assert_code(1);
    one_error_line(&output.stderr);
    assert!(output.stderr.contains("bad --url"), "{}", output.stderr);
}

#[tokio::test]
async fn ws_reconnecting_client_gives_up_on_an_unreachable_server() {
    let url = format!("ws://127.0.0.1:{}/ws/x", free_port());
    let args = [
        "--url",
        &url,
        "--max-attempts",
        "2",
        "--initial-backoff",
        "10ms",
    ];
    let output = run("ws-reconnecting-client", &args, LIMIT).await.unwrap();
    output.assert_code(1);
    one_error_line(&output.stderr);
    assert!(
        output.stderr.contains("gave up after 2 reconnect attempts"),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn ws_reconnecting_client_refuses_zero_messages_as_usage() {
    let output = run("ws-reconnecting-client", &["--count", "0"], LIMIT)
        .await
        .unwrap();
    output.assert_code(2);
    assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
}
