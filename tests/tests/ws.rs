//! `ws-broadcast-server` and `ws-load` as a user
//! runs them, plus the browser page in headless Chromium (ignored unless
//! Chromium is installed: `.ci/chromium` installs it, `.ci/run` runs it).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use e2e::{run, spawn};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

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
async fn ws_broadcast_server_sends_1001_and_exits_0_on_sigterm() {
    let mut server = spawn("ws-broadcast-server", &["--port", "0"]).unwrap();
    let line = server.wait_for_line("listening on", LIMIT).await.unwrap();
    let addr = line.rsplit("http://").next().unwrap().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/general?name=e2e"))
        .await
        .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    let echo: Value = serde_json::from_str(echo.to_text().unwrap()).unwrap();
    assert_eq!(
        (
            echo["from"].as_str(),
            echo["text"].as_str(),
            echo["seq"].as_u64()
        ),
        (Some("e2e"), Some("hi"), Some(1))
    );

    server.sigterm().unwrap();
    let code = loop {
        match timeout(LIMIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("no Close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1001));
    let output = server.wait(LIMIT).await.unwrap();
    output.assert_code(0);
    assert!(
        output
            .stdout
            .contains("sent Close 1001 to 1 clients; all drained"),
        "{}",
        output.stdout
    );
}

#[tokio::test]
async fn ws_broadcast_server_prints_one_json_summary_at_exit() {
    let port = free_port().to_string();
    let server = spawn("ws-broadcast-server", &["--port", &port, "--json"]).unwrap();
    // --json keeps stdout for the summary: wait until the port answers.
    let deadline = Instant::now() + LIMIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server never listened");
        sleep(Duration::from_millis(20)).await;
    }
    server.sigterm().unwrap();
    let output = server.wait(LIMIT).await.unwrap();
    output.assert_code(0);
    assert_eq!(output.stdout.lines().count(), 1, "{}", output.stdout);
    let summary: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(summary["drain"]["drained"], true);
    assert!(summary["stats"]["accepted"].is_u64(), "{summary}");
}

#[tokio::test]
async fn ws_broadcast_server_refuses_an_idle_timeout_shorter_than_the_ping() {
    let args = [
        "--port",
        "0",
        "--idle-timeout",
        "1s",
        "--ping-interval",
        "5s",
    ];
    let output = run("ws-broadcast-server", &args, LIMIT).await.unwrap();
    output.assert_code(1);
    one_error_line(&output.stderr);
}

#[tokio::test]
async fn ws_broadcast_server_rejects_a_malformed_duration_as_usage() {
    let output = run("ws-broadcast-server", &["--tick-interval", "soon"], LIMIT)
        .await
        .unwrap();
    output.assert_code(2);
    assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
}

#[tokio::test]
async fn ws_load_fans_out_to_every_client_against_a_separate_server() {
    let args = [
        "--clients",
        "20",
        "--messages",
        "30",
        "--runs",
        "2",
        "--json",
    ];
    let output = run("ws-load", &args, LIMIT).await.unwrap();
    output.assert_code(0);
    assert_eq!(output.stdout.lines().count(), 1, "{}", output.stdout);
    let summary: Value = serde_json::from_str(&output.stdout).unwrap();
    for report in summary["runs"].as_array().unwrap() {
        assert_eq!(report["deliveries"], 600, "{report}");
        assert_eq!(report["out_of_order"], 0, "{report}");
    }
    assert!(
        summary["median"]["deliveries_per_sec"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
}

#[tokio::test]
async fn ws_load_holds_idle_connections_and_reads_the_server_rss() {
    let output = run(
        "ws-load",
        &["--idle", "50", "--hold", "200ms", "--json"],
        LIMIT,
    )
    .await
    .unwrap();
    output.assert_code(0);
    let report: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(report["server_open"], 50, "{report}");
    assert!(report["server_rss_mb"].as_f64().unwrap() > 0.0, "{report}");
}

// ---- the browser page, in headless Chromium over the DevTools protocol ----

const CHROMIUM: &str = "/usr/bin/chromium";

/// Headless Chromium with its own profile directory; killed and cleaned up
/// on drop.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: kill_on_drop would also do it; the profile is scratch.
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Starts Chromium and returns it with its DevTools WebSocket URL.
async fn launch_chromium() -> (Browser, String) {
    let profile = std::env::temp_dir().join(format!("ws-e2e-chromium-{}", std::process::id()));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = timeout(LIMIT, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("chromium exited without a DevTools URL");
    })
    .await
    .expect("chromium printed its DevTools URL");
    // Keep draining stderr so Chromium never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    (Browser { child, profile }, url)
}

/// A minimal Chrome DevTools Protocol client: one command at a time.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Cdp {
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        loop {
            let frame = timeout(LIMIT, self.ws.next())
                .await
                .expect("CDP answers")
                .unwrap()
                .unwrap();
            let Ok(text) = frame.to_text() else { continue };
            let reply: Value = serde_json::from_str(text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            } // events and other replies are not ours
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    async fn eval(&mut self, session: &str, expression: &str) -> Value {
        let params = json!({ "expression": expression, "returnByValue": true });
        self.call(Some(session), "Runtime.evaluate", params).await["result"]["value"].clone()
    }

    /// Polls `expression` until `done` accepts its value.
    async fn wait_for(
        &mut self,
        session: &str,
        expression: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            let value = self.eval(session, expression).await;
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "page never satisfied {expression}: last {value}"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
#[ignore = "needs Chromium: .ci/chromium installs it"]
async fn the_browser_page_shows_a_message_sent_by_a_rust_client_and_sends_one_back() {
    let mut server = spawn(
        "ws-broadcast-server",
        &["--port", "0", "--tick-interval", "0"],
    )
    .unwrap();
    let line = server.wait_for_line("listening on", LIMIT).await.unwrap();
    let addr = line.rsplit("http://").next().unwrap().to_owned();

    let (_browser, devtools) = launch_chromium().await;
    let (ws, _) = tokio_tungstenite::connect_async(devtools).await.unwrap();
    let mut cdp = Cdp { ws, next_id: 0 };
    let page = format!("http://{addr}/?channel=e2e&name=browser");
    let target = cdp
        .call(None, "Target.createTarget", json!({ "url": page }))
        .await;
    let attached = cdp
        .call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await;
    let session = attached["sessionId"].as_str().unwrap().to_owned();
    cdp.wait_for(
        &session,
        "document.body && document.body.dataset.state",
        |v| v == "open",
    )
    .await;

    // Rust -> server -> page.
    let (mut rust, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/e2e?name=rust"))
        .await
        .unwrap();
    let nonce = format!("hello from rust {}", std::process::id());
    rust.send(Message::text(nonce.clone())).await.unwrap();
    let log = cdp
        .wait_for(&session, "document.getElementById('log').innerText", |v| {
            v.as_str().is_some_and(|text| text.contains(&nonce))
        })
        .await;
    assert!(
        log.as_str().unwrap().contains(&format!("rust: {nonce}")),
        "{log}"
    );

    // Page -> server -> Rust, through the page's own form.
    let submit = "(() => { const f = document.getElementById('send'); \
                  f.text.value = 'hello from the browser'; f.requestSubmit(); return true; })()";
    assert_eq!(cdp.eval(&session, submit).await, true);
    let from_browser = loop {
        let frame = timeout(LIMIT, rust.next()).await.unwrap().unwrap().unwrap();
        let Ok(text) = frame.to_text() else { continue };
        let message: Value = serde_json::from_str(text).unwrap();
        if message["from"] == "browser" {
            break message;
        }
    };
    assert_eq!(from_browser["text"], "hello from the browser");
    assert_eq!(from_browser["channel"], "e2e");

    // Best effort: the Browser guard kills it anyway.
    let _ = timeout(
        Duration::from_secs(5),
        cdp.call(None, "Browser.close", json!({})),
    )
    .await;
    server.sigterm().unwrap();
    server.wait(LIMIT).await.unwrap().assert_code(0);
}
