//! `sandbox-server` as a user runs it: serves, then stops on SIGTERM.

use std::time::Duration;

use e2e::{run, spawn};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn sandbox_server_serves_and_exits_130_on_sigterm() {
    common::init_crypto();
    // Port 0: the OS picks a free port; the server prints the address.
    let mut server = spawn("sandbox-server", &["--port", "0"]).unwrap();
    let line = server.wait_for_line("listening on", LIMIT).await.unwrap();
    let base = line.rsplit(' ').next().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");

    let health: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    server.sigterm().unwrap();
    let output = server.wait(LIMIT).await.unwrap();
    output.assert_code(e2e::exit::INTERRUPTED);
    assert!(
        output.stdout.contains("stopped after 1 requests"),
        "{}",
        output.stdout
    );
}

#[tokio::test]
async fn sandbox_server_reports_a_taken_port_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = run("sandbox-server", &["--port", &port], LIMIT)
        .await
        .unwrap();
    output.assert_code(1);
    assert!(
        output.stderr.starts_with("error: cannot listen on"),
        "{}",
        output.stderr
    );
    assert_eq!(
        output.stderr.trim_end().lines().count(),
        1,
        "{}",
        output.stderr
    );
}
