//! `ws-broadcast-server` and `ws-load` as a user
//! runs them, plus the browser page in headless Chromium (ignored unless
//! Chromium is installed: `.ci/chromium` installs it, `.ci/run` runs it),
//! and two instances on a Redis bus (ignored unless `REDIS_URL` is set).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use e2e::{exit, run, spawn};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(60);
/// A signal must end a run within this.
const PROMPT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    // Bound and released: good enough for a test on loopback.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + LIMIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server never listened");
        sleep(Duration::from_millis(20)).await;
    }
}

fn process_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[tokio::test]
async fn ws_broadcast_server_sends_1001_and_exits_130_on_sigterm() {
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
    let output = server.wait(PROMPT).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    assert!(
        output
            .stdout
            .contains("sent Close 1001 to 1 clients; all drained"),
        "{}",
        output.stdout
    );
}

#[tokio::test]
async fn ws_broadcast_server_prints_one_json_envelope_at_exit_on_sigint() {
    let port = free_port();
    let server = spawn(
        "ws-broadcast-server",
        &["--port", &port.to_string(), "--json"],
    )
    .unwrap();
    // --json keeps stdout for the summary: wait until the port answers.
    wait_until_listening(port).await;
    server.signal(libc::SIGINT).unwrap();
    let output = server.wait(PROMPT).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    let summary = output.json_envelope("ws-broadcast-server");
    assert_eq!(summary["seed"], 5);
    assert_eq!(summary["interrupted"], true);
    assert_eq!(summary["drain"]["drained"], true);
    assert!(summary["stats"]["accepted"].is_u64(), "{summary}");
    assert!(summary["stats"]["failed_upgrades"].is_u64(), "{summary}");
}

#[tokio::test]
async fn ws_broadcast_server_refuses_a_ping_interval_not_shorter_than_the_idle_timeout() {
    for (ping, idle) in [("5s", "1s"), ("5s", "5s")] {
        let args = ["--ping-interval", ping, "--idle-timeout", idle];
        let output = run("ws-broadcast-server", &args, LIMIT).await.unwrap();
        output.assert_clear_error(exit::USAGE, "--ping-interval");
    }
}

#[tokio::test]
async fn ws_broadcast_server_rejects_bad_values_as_usage_errors() {
    for args in [
        &["--tick-interval", "soon"][..],
        &["--tick-interval", "1e19s"],
        &["--tick-interval", "1e19"],
        &["--max-clients", "0"],
        &["--max-message", "18446744073709551615"],
        &["--lag-limit", "-1"],
        &["--drain-timeout", "NaN"],
        &["--bus", "http://127.0.0.1:6379"],
        &["--bus-prefix", "x"],
    ] {
        let output = run("ws-broadcast-server", args, LIMIT).await.unwrap();
        output.assert_code(exit::USAGE);
        assert!(
            !output.stderr.contains("panicked"),
            "{args:?}: {}",
            output.stderr
        );
    }
}

#[tokio::test]
async fn ws_broadcast_server_exits_1_when_its_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = run("ws-broadcast-server", &["--port", &port], LIMIT)
        .await
        .unwrap();
    output.assert_clear_error(exit::FAILED, "cannot listen");
}

#[tokio::test]
async fn ws_load_fans_out_to_every_client_against_a_separate_server() {
    let args = ["--clients", "20", "--count", "30", "--runs", "2", "--json"];
    let output = run("ws-load", &args, LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let summary = output.json_envelope("ws-load");
    for report in summary["runs"].as_array().unwrap() {
        assert_eq!(report["deliveries"], 600, "{report}");
        assert_eq!(report["out_of_order"], 0, "{report}");
    }
    assert_eq!(summary["runs_left"], 0, "{summary}");
    assert!(
        summary["median"]["deliveries_per_s"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
}

#[tokio::test]
async fn ws_load_holds_idle_connections_and_reads_the_server_rss() {
    let args = ["--idle", "50", "--duration", "200ms", "--json"];
    let output = run("ws-load", &args, LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    let report = output.json_envelope("ws-load");
    assert_eq!(report["server_open"], 50, "{report}");
    assert!(report["server_rss_bytes"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["server_peak_rss_bytes"].as_u64().unwrap() > 0,
        "{report}"
    );
}

#[tokio::test]
async fn ws_load_rejects_bad_values_as_usage_errors() {
    for args in [
        &["--timeout", "1e19"][..],
        &["--timeout", "1e19s"],
        &["--clients", "0"],
        &["--count", "18446744073709551615"],
        &["--payload", "NaN"],
        &["--duration", "1s"],
        &["--instances", "2"],
        &["--idle", "5", "--count", "5"],
        &[
            "--url",
            "ws://127.0.0.1:1",
            "--bus",
            "redis://127.0.0.1:6379",
        ],
    ] {
        let output = run("ws-load", args, LIMIT).await.unwrap();
        output.assert_code(exit::USAGE);
        assert!(
            !output.stderr.contains("panicked"),
            "{args:?}: {}",
            output.stderr
        );
    }
}

#[tokio::test]
async fn ws_load_exits_1_when_no_server_answers() {
    let url = "ws://127.0.0.1:1"; // nothing listens on port 1
    let output = run("ws-load", &["--url", url, "--json"], LIMIT)
        .await
        .unwrap();
    output.assert_code(exit::FAILED);
    let envelope = output.json_envelope("ws-load");
    assert_eq!(envelope["ok"], false);
}

/// A `--bus` that is not a redis:// URL is a usage error, caught before any
/// server starts (it used to start them, and exit 1 when they refused it).
#[tokio::test]
async fn ws_load_rejects_a_non_redis_bus_with_exit_2() {
    for bus in ["http://127.0.0.1:6379", "redis://[oops"] {
        let output = run("ws-load", &["--bus", bus], LIMIT).await.unwrap();
        output.assert_clear_error(exit::USAGE, "--bus must be a redis://HOST:PORT URL");
        assert!(
            !output.stdout.contains("started ws-broadcast-server"),
            "{}",
            output.stdout
        );
    }
}

/// Starts a long fan-out, signals it, and checks it exits 130 promptly and
/// stopped the server it started.
async fn ws_load_stops_its_server_on(signal: libc::c_int) {
    let args = ["--clients", "5", "--count", "10000000", "--timeout", "1h"];
    let mut load = spawn("ws-load", &args).unwrap();
    let line = load
        .wait_for_line("started ws-broadcast-server pid", LIMIT)
        .await
        .unwrap();
    let pid: u32 = line
        .split_whitespace()
        .nth(3)
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!(process_exists(pid));
    load.wait_for_line("per-client completion", LIMIT)
        .await
        .unwrap();
    load.signal(signal).unwrap();
    let output = load.wait(PROMPT).await.unwrap();
    output.assert_code(exit::INTERRUPTED);
    assert!(
        !process_exists(pid),
        "ws-load left its server {pid} running"
    );
}

#[tokio::test]
async fn ws_load_stopped_by_sigterm_exits_130_and_stops_its_server() {
    ws_load_stops_its_server_on(libc::SIGTERM).await;
}

#[tokio::test]
async fn ws_load_stopped_by_sigint_exits_130_and_stops_its_server() {
    ws_load_stops_its_server_on(libc::SIGINT).await;
}

#[tokio::test]
async fn ws_load_idle_mode_stops_on_sigint() {
    let args = ["--idle", "10", "--duration", "1h"];
    let mut load = spawn("ws-load", &args).unwrap();
    load.wait_for_line("started ws-broadcast-server pid", LIMIT)
        .await
        .unwrap();
    sleep(Duration::from_millis(500)).await;
    load.signal(libc::SIGINT).unwrap();
    load.wait(PROMPT)
        .await
        .unwrap()
        .assert_code(exit::INTERRUPTED);
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("set REDIS_URL, e.g. redis://127.0.0.1:6379")
}

/// The keys under `prefix` (SCAN, not KEYS: the server is shared).
async fn keys_under(url: &str, prefix: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (mut cursor, mut found) = (0u64, Vec::new());
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        found.extend(keys);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// Deletes the keys under `prefix`.
async fn forget(url: &str, prefix: &str) {
    let keys = keys_under(url, prefix).await;
    if !keys.is_empty() {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
#[ignore = "needs Redis: set REDIS_URL"]
async fn needs_redis_ws_load_fans_out_across_two_bus_instances() {
    let url = redis_url();
    let args = [
        "--bus",
        &url,
        "--instances",
        "2",
        "--clients",
        "20",
        "--count",
        "30",
        "--json",
    ];
    let load = spawn("ws-load", &args).unwrap();
    let pid = load.pid();
    let output = load.wait(LIMIT).await.unwrap();
    output.assert_code(exit::OK);
    // Its throwaway prefix (`ws-load-{pid}-{ms}`) is gone with it.
    let left = keys_under(&url, &format!("ws-load-{pid}-")).await;
    assert_eq!(left, Vec::<String>::new(), "ws-load left its keys behind");
    let summary = output.json_envelope("ws-load");
    assert_eq!(summary["instances"], 2, "{summary}");
    let run = &summary["runs"][0];
    assert_eq!(
        (&run["deliveries"], &run["missed"], &run["out_of_order"]),
        (&json!(600), &json!(0), &json!(0)),
        "{summary}"
    );
    assert!(
        summary["one_instance"]["deliveries_per_s"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{summary}"
    );
}

#[tokio::test]
#[ignore = "needs Redis: set REDIS_URL"]
async fn needs_redis_two_server_processes_share_a_channel_in_one_order() {
    let url = redis_url();
    // Unique per run (a pid alone repeats across containers), and deleted
    // at the end: the seqs below must start at 1.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("e2e-{}-{nanos}", std::process::id());
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let args = [
            "--port",
            "0",
            "--tick-interval",
            "0s",
            "--bus",
            &url,
            "--bus-prefix",
            &prefix,
        ];
        let mut server = spawn("ws-broadcast-server", &args).unwrap();
        let line = server.wait_for_line("listening on", LIMIT).await.unwrap();
        addrs.push(line.rsplit("http://").next().unwrap().to_owned());
        servers.push(server);
    }
    let mut clients = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/room?name=c{i}"))
            .await
            .unwrap();
        clients.push(ws);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        for n in 0..10 {
            client
                .send(Message::text(format!("{i}-{n}")))
                .await
                .unwrap();
        }
    }
    let mut orders = Vec::new();
    for client in &mut clients {
        let mut seen = Vec::new();
        while seen.len() < 20 {
            let frame = timeout(LIMIT, client.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let Ok(text) = frame.to_text() else { continue };
            let message: Value = serde_json::from_str(text).unwrap();
            if message["seq"] != 0 {
                seen.push((
                    message["seq"].as_u64().unwrap(),
                    message["text"].to_string(),
                ));
            }
        }
        orders.push(seen);
    }
    assert_eq!(orders[0], orders[1], "one order on both instances");
    let seqs: Vec<u64> = orders[0].iter().map(|(seq, _)| *seq).collect();
    for server in servers {
        server.sigterm().unwrap();
        server
            .wait(PROMPT)
            .await
            .unwrap()
            .assert_code(exit::INTERRUPTED);
    }
    forget(&url, &format!("{prefix}:")).await;
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
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

/// A minimal Chrome DevTools Protocol client: one command at a time; the
/// page's console errors and exceptions are collected from the events.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
    errors: Vec<String>,
}

impl Cdp {
    fn collect(&mut self, event: &Value) {
        let params = &event["params"];
        let error = match event["method"].as_str() {
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                Some(params["entry"]["text"].to_string())
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                Some(params["args"].to_string())
            }
            Some("Runtime.exceptionThrown") => Some(params["exceptionDetails"].to_string()),
            _ => None,
        };
        self.errors.extend(error);
    }

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
            }
            self.collect(&reply); // an event (or another reply)
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

/// The next chat frame from `from` on a Rust client.
async fn next_from(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    from: &str,
) -> Value {
    loop {
        let frame = timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap();
        let Ok(text) = frame.to_text() else { continue };
        let message: Value = serde_json::from_str(text).unwrap();
        if message["from"] == from {
            return message;
        }
    }
}

#[tokio::test]
#[ignore = "needs Chromium: .ci/chromium installs it"]
async fn needs_chromium_the_chat_page_works_on_a_phone_with_clear_errors() {
    let mut server = spawn(
        "ws-broadcast-server",
        &[
            "--port",
            "0",
            "--tick-interval",
            "0s",
            "--max-message",
            "1KiB",
        ],
    )
    .unwrap();
    let line = server.wait_for_line("listening on", LIMIT).await.unwrap();
    let addr = line.rsplit("http://").next().unwrap().to_owned();

    let (_browser, devtools) = launch_chromium().await;
    let (ws, _) = tokio_tungstenite::connect_async(devtools).await.unwrap();
    let mut cdp = Cdp {
        ws,
        next_id: 0,
        errors: Vec::new(),
    };
    let target = cdp
        .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
        .await;
    let attached = cdp
        .call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await;
    let session = attached["sessionId"].as_str().unwrap().to_owned();
    let s = Some(session.as_str());
    for method in ["Runtime.enable", "Log.enable", "Page.enable"] {
        cdp.call(s, method, json!({})).await;
    }
    // A phone: 390 CSS pixels wide.
    let phone = json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true });
    cdp.call(s, "Emulation.setDeviceMetricsOverride", phone)
        .await;
    let page = format!("http://{addr}/?channel=e2e&name=browser");
    cdp.call(s, "Page.navigate", json!({ "url": page })).await;
    let state = "document.body && document.body.dataset.state";
    cdp.wait_for(&session, state, |v| v == "open").await;
    let width = "document.documentElement.scrollWidth";
    assert_eq!(cdp.eval(&session, width).await, 390, "the page fits 390 px");

    // The channel pattern compiles under the v flag and rejects a bad name.
    let validity = "(() => { const c = document.querySelector('#join input[name=channel]'); \
                    const old = c.value; c.value = 'bad name'; const bad = c.checkValidity(); \
                    c.value = 'ok-1.x_y'; const good = c.checkValidity(); c.value = old; \
                    return [bad, good]; })()";
    assert_eq!(cdp.eval(&session, validity).await, json!([false, true]));

    // Rust -> server -> page, a long word included: still 390 px wide.
    let (mut rust, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/e2e?name=rust"))
        .await
        .unwrap();
    let nonce = format!("hello from rust {}", std::process::id());
    rust.send(Message::text(nonce.clone())).await.unwrap();
    rust.send(Message::text("w".repeat(400))).await.unwrap();
    let log = "document.getElementById('log').innerText";
    let shown = cdp
        .wait_for(&session, log, |v| {
            v.as_str().is_some_and(|t| t.contains("wwwwwwwwww"))
        })
        .await;
    assert!(
        shown.as_str().unwrap().contains(&format!("rust: {nonce}")),
        "{shown}"
    );
    assert_eq!(cdp.eval(&session, width).await, 390, "a long word wraps");

    // Page -> server -> Rust, through the page's own form.
    let submit = |text: &str| {
        format!(
            "(() => {{ const f = document.getElementById('send'); f.text.value = {}; \
             f.requestSubmit(); return f.text.value; }})()",
            json!(text)
        )
    };
    assert_eq!(
        cdp.eval(&session, &submit("hello from the browser")).await,
        ""
    );
    let from_browser = next_from(&mut rust, "browser").await;
    assert_eq!(from_browser["text"], "hello from the browser");
    assert_eq!(from_browser["channel"], "e2e");

    // Over the server's byte limit (400 "€" = 1,200 UTF-8 bytes > 1 KiB):
    // refused on the page, text kept, connection kept.
    let euros = "€".repeat(400);
    assert_eq!(
        cdp.eval(&session, &submit(&euros)).await,
        json!(euros),
        "text kept"
    );
    let problem = cdp
        .eval(
            &session,
            "document.getElementById('send-problem').textContent",
        )
        .await;
    let problem = problem.as_str().unwrap();
    assert!(
        problem.contains("1200 bytes") && problem.contains("1024"),
        "{problem}"
    );
    assert_eq!(cdp.eval(&session, state).await, "open");
    assert_eq!(cdp.eval(&session, &submit("after the long one")).await, "");
    assert_eq!(
        next_from(&mut rust, "browser").await["text"],
        "after the long one"
    );

    // A bad channel name typed in: explained on the page, nothing sent.
    let attempts = "window.connectAttempts";
    let before = cdp.eval(&session, attempts).await;
    let join = |channel: &str| {
        format!(
            "(() => {{ const f = document.getElementById('join'); f.channel.value = {}; \
             f.requestSubmit(); return true; }})()",
            json!(channel)
        )
    };
    cdp.eval(&session, &join("bad name")).await;
    let why = cdp
        .eval(
            &session,
            "document.getElementById('join-problem').textContent",
        )
        .await;
    assert!(why.as_str().unwrap().contains("Channel names are"), "{why}");
    assert_eq!(cdp.eval(&session, attempts).await, before, "nothing sent");
    assert_eq!(cdp.eval(&session, state).await, "open", "still connected");

    // Switching channel clears the log and marks the switch.
    cdp.eval(&session, &join("other")).await;
    cdp.wait_for(
        &session,
        "document.getElementById('status').textContent",
        |v| v == "connected to other",
    )
    .await;
    let items =
        "[...document.querySelectorAll('#log li')].map(li => li.className + ':' + li.textContent)";
    assert_eq!(
        cdp.eval(&session, items).await,
        json!(["marker:channel other"])
    );

    // No console error or exception so far (the v-flag pattern error would
    // be one, logged at load).
    assert_eq!(cdp.errors, Vec::<String>::new());

    // A name the server refuses (the page's own check bypassed): a clear
    // message and no endless retry on the 4xx.
    let bypass = "(() => { document.getElementById('join').channel.value = 'bad name'; \
                  connect(); return window.connectAttempts; })()";
    let attempted = cdp.eval(&session, bypass).await.as_u64().unwrap();
    cdp.wait_for(&session, state, |v| v == "refused").await;
    let why = cdp
        .eval(
            &session,
            "document.getElementById('join-problem').textContent",
        )
        .await;
    assert!(
        why.as_str().unwrap().contains("refused")
            && why.as_str().unwrap().contains("channel names"),
        "{why}"
    );
    sleep(Duration::from_secs(3)).await;
    assert_eq!(
        cdp.eval(&session, attempts).await,
        attempted,
        "no retry after a 4xx"
    );

    // Close codes in words: back to a good channel, then stop the server.
    cdp.eval(&session, &join("e2e")).await;
    cdp.wait_for(&session, state, |v| v == "open").await;
    server.sigterm().unwrap();
    // The status line shows the reason only until the first reconnect
    // attempt (a few hundred ms, random); the log keeps it.
    let marker =
        "[...document.querySelectorAll('#log li.marker')].map(li => li.textContent).join('\\n')";
    let closed = cdp
        .wait_for(&session, marker, |v| {
            v.as_str().is_some_and(|t| t.contains("disconnected:"))
        })
        .await;
    let closed = closed.as_str().unwrap();
    assert!(
        closed.contains("disconnected: the server is shutting down"),
        "{closed}"
    );
    assert!(
        !closed.contains("1001"),
        "close codes are in words: {closed}"
    );
    server
        .wait(PROMPT)
        .await
        .unwrap()
        .assert_code(exit::INTERRUPTED);
    // Best effort: the Browser guard kills it anyway.
    let _ = timeout(
        Duration::from_secs(5),
        cdp.call(None, "Browser.close", json!({})),
    )
    .await;
}
