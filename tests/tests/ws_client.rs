//! `ws-reconnecting-client` as a user runs it.

use std::time::Duration;

use e2e::{exit, run, spawn};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;

const BIN: &str = "ws-reconnecting-client";
const LIMIT: Duration = Duration::from_secs(60);

/// Nothing listens on port 1 (privileged, unassigned on loopback), so a
/// connect is refused; a port bound and released could be taken meanwhile.
fn unreachable_url() -> String {
    "ws://127.0.0.1:1/ws/x".to_owned()
}

#[tokio::test]
async fn ws_reconnecting_client_demo_reconnects_and_gets_every_echo() {
    let output = run(BIN, &[], LIMIT).await.unwrap();
    output.assert_code(exit::OK);
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
async fn ws_reconnecting_client_prints_one_json_envelope() {
    let output = run(BIN, &["--json", "--count", "4"], LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let summary = output.json_envelope(BIN);
    assert_eq!(summary["seed"], 4);
    assert_eq!(summary["ok"], true);
    assert_eq!(
        (summary["count"].as_u64(), summary["echoed"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(summary["unsent"], 0);
    for key in ["url", "resent", "connections", "reconnects", "jitter_seed"] {
        assert!(summary.get(key).is_some(), "{key} missing: {summary}");
    }
    assert!(summary["reconnects"].as_u64().unwrap() >= 1, "{summary}");
}

/// 15.6: the demo echo drops every 3 messages; those short connections
/// carried messages, so they do not use up the 10 retries.
#[tokio::test]
async fn ws_reconnecting_client_delivers_40_messages_over_short_connections() {
    let output = run(BIN, &["--json", "--count", "40"], LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let summary = output.json_envelope(BIN);
    assert_eq!(summary["echoed"], 40, "{summary}");
    assert!(summary["connections"].as_u64().unwrap() >= 10, "{summary}");
}

/// 15.8 and 13: a URL that is not ws(s) is a usage error, before any work.
#[tokio::test]
async fn ws_reconnecting_client_rejects_bad_urls_as_usage() {
    for url in ["not a url", "http://127.0.0.1:1/x", ""] {
        let output = run(BIN, &["--url", url], LIMIT).await.unwrap();
        output.assert_clear_error(exit::USAGE, "bad --url");
        assert!(output.stdout.is_empty(), "{url:?}: {}", output.stdout);
    }
}

/// 15.7 and 13: an unreachable server exits 1 with the same one-line
/// message every run, and `--json` prints the envelope on failure too.
#[tokio::test]
async fn ws_reconnecting_client_unreachable_server_fails_the_same_way_every_time() {
    let url = unreachable_url();
    let args = ["--url", &url, "--retries", "2", "--initial-backoff", "10ms"];
    let mut messages = Vec::new();
    for _ in 0..2 {
        let output = run(BIN, &args, LIMIT).await.unwrap();
        output.assert_clear_error(
            exit::FAILED,
            "message 1 of 9 not echoed: gave up after 2 reconnect attempts",
        );
        assert_eq!(
            output.stderr.trim_end().lines().count(),
            1,
            "{}",
            output.stderr
        );
        messages.push(output.stderr.clone());
    }
    assert_eq!(messages[0], messages[1]);
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let output = run(BIN, &json_args, LIMIT).await.unwrap();
    output.assert_code(exit::FAILED);
    let envelope = output.json_envelope(BIN);
    assert_eq!(envelope["ok"], false);
    assert_eq!(envelope["echoed"], 0);
    let error = envelope["error"].as_str().unwrap_or_default();
    assert_eq!(format!("error: {error}\n"), messages[0]);
}

/// 13: hostile flag values are usage errors, never a panic or a hang.
#[tokio::test]
async fn ws_reconnecting_client_refuses_bad_values_as_usage() {
    let durations = [
        "--heartbeat",
        "--pong-timeout",
        "--reply-timeout",
        "--resend-after",
    ];
    for flag in durations
        .into_iter()
        .chain(["--initial-backoff", "--max-backoff"])
    {
        for value in [
            "1e19",
            "1e19s",
            "-1s",
            "NaN",
            "inf",
            "0",
            "18446744073709551615",
        ] {
            let output = run(BIN, &[flag, value], LIMIT).await.unwrap();
            output.assert_code(exit::USAGE);
            assert!(
                !output.stderr.contains("panicked"),
                "{flag} {value}: {}",
                output.stderr
            );
        }
    }
    for (flag, value) in [
        ("--count", "0"),
        ("--count", "18446744073709551615"),
        ("--retries", "-1"),
        ("--outbox", "0"),
        ("--seed", "-1"),
        ("--drop-after", "0"),
    ] {
        let output = run(BIN, &[flag, value], LIMIT).await.unwrap();
        output.assert_code(exit::USAGE);
    }
    // Cross-flag: the reply timeout must outlast the heartbeat's verdict.
    let output = run(BIN, &["--reply-timeout", "10s"], LIMIT).await.unwrap();
    output.assert_clear_error(exit::USAGE, "--reply-timeout 10s must exceed");
    // --drop-after configures the sandbox, which --url replaces.
    let output = run(
        BIN,
        &["--url", "ws://127.0.0.1:1/", "--drop-after", "2"],
        LIMIT,
    )
    .await
    .unwrap();
    output.assert_code(exit::USAGE);
}

/// 13: Ctrl-C while connected and while offline: a clean stop, exit 130.
#[tokio::test]
async fn ws_reconnecting_client_stops_on_sigint_with_130() {
    let url = unreachable_url();
    let offline = ["--url", url.as_str(), "--retries", "0"];
    for (args, line) in [
        (&["--count", "100000"][..], "connected (connection 1)"),
        (&offline[..], "connect failed"),
    ] {
        let mut running = spawn(BIN, args).unwrap();
        running.wait_for_line(line, LIMIT).await.unwrap();
        running.signal(libc::SIGINT).unwrap();
        let output = running.wait(Duration::from_secs(10)).await.unwrap();
        output.assert_code(exit::INTERRUPTED);
        assert!(
            output
                .stdout
                .contains("interrupted: sent Close and stopped"),
            "{}",
            output.stdout
        );
    }
}

/// 15.3: with the default timings, a peer that goes silent is found by the
/// heartbeat (5 s + 5 s), reconnected to, and the run finishes; the reply
/// timeout (15 s) never races it. Real time: about 11 s.
#[tokio::test]
async fn ws_reconnecting_client_reconnects_to_a_silent_peer_with_default_timings() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        for connection in 1.. {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            if connection == 1 {
                // Half-open: never read (so never pong), never write.
                held.push(ws);
                continue;
            }
            tokio::spawn(async move {
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_text() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(held);
    });
    let output = run(BIN, &["--url", &url, "--count", "3", "--json"], LIMIT)
        .await
        .unwrap();
    server.abort();
    output.assert_code(exit::OK);
    let summary = output.json_envelope(BIN);
    assert_eq!(
        (summary["echoed"].as_u64(), summary["connections"].as_u64()),
        (Some(3), Some(2)),
        "{summary}"
    );
}
