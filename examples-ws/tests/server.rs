//! Behaviour of the broadcast server over real loopback sockets.
//!
//! Real time with generous timeouts (a paused clock would jump while the OS
//! moves bytes); assertions are on outcomes (what arrived, in which order,
//! which close code), never on durations.
//!
//! Mutation testing (cargo mutants on `src/server/mod.rs` and
//! `connection.rs`): no survivor is listed as equivalent. The two guards
//! whose only effect is a warning are pinned through
//! `common::testing::capture_logs`; two memory knobs that were written as
//! arithmetic (`4 * 1024`, `NOTICE_QUEUE + 1`) are plain constants now,
//! with the reasoning in docs/mutation.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use examples_ws::client::{Client, ClientConfig, Disconnect, Event, UrlConnector};
use examples_ws::message::ChatMessage;
use examples_ws::server::{self, DrainReport, Hub, ServerConfig};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const LIMIT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Running {
    addr: SocketAddr,
    hub: Arc<Hub>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<DrainReport>>,
}

async fn start(config: ServerConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(listener, config)
}

fn start_on(listener: TcpListener, config: ServerConfig) -> Running {
    let addr = listener.local_addr().unwrap();
    let hub = Hub::new(config);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, hub.clone(), async move {
        // Err = the test dropped the sender: stop as well.
        let _ = stopped.await;
    }));
    Running {
        addr,
        hub,
        stop,
        task,
    }
}

fn quiet() -> ServerConfig {
    ServerConfig {
        tick_interval: None,
        ..ServerConfig::default()
    }
}

async fn join(addr: SocketAddr, path: &str) -> Ws {
    let url = format!("ws://{addr}{path}");
    timeout(LIMIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap()
        .0
}

/// The next broadcast frame, skipping pings.
async fn next_chat(ws: &mut Ws) -> ChatMessage {
    loop {
        match timeout(LIMIT, ws.next())
            .await
            .expect("a frame within the limit")
        {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until a Close frame; returns its code.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match timeout(LIMIT, ws.next())
            .await
            .expect("a Close within the limit")
        {
            Some(Ok(Message::Close(frame))) => return frame.map_or(1005, |f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("expected a Close frame, got {other:?}"),
        }
    }
}

async fn status_of_upgrade(addr: SocketAddr, path: &str) -> u16 {
    match tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await {
        Err(WsError::Http(response)) => response.status().as_u16(),
        other => panic!(
            "expected an HTTP refusal, got {:?}",
            other.map(|_| "an upgrade")
        ),
    }
}

/// Waits until `check` holds, polling the hub's counters.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let waited = timeout(LIMIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never true: {what}");
}

#[tokio::test]
async fn every_client_on_a_channel_receives_every_broadcast_in_order() {
    let server = start(quiet()).await;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(join(server.addr, &format!("/ws/room?name=c{i}")).await);
    }
    for i in 1..=50 {
        clients[0]
            .send(Message::text(format!("message {i}")))
            .await
            .unwrap();
    }
    // The sender included: its echo is the broadcast, with the room's seq.
    for client in &mut clients {
        for i in 1..=50u64 {
            let message = next_chat(client).await;
            assert_eq!(
                (message.seq, message.from.as_str(), message.channel.as_str()),
                (i, "c0", "room")
            );
            assert_eq!(message.text, format!("message {i}"));
        }
    }
}

#[tokio::test]
async fn channels_are_isolated() {
    let server = start(quiet()).await;
    let mut a = join(server.addr, "/ws/a?name=alice").await;
    let mut b = join(server.addr, "/ws/b?name=bob").await;
    a.send(Message::text("for a only")).await.unwrap();
    assert_eq!(next_chat(&mut a).await.text, "for a only");
    b.send(Message::text("for b only")).await.unwrap();
    // b's first frame is its own message, seq 1 of channel b: a's never came.
    let first = next_chat(&mut b).await;
    assert_eq!(
        (first.channel.as_str(), first.seq, first.text.as_str()),
        ("b", 1, "for b only")
    );
}

#[tokio::test]
async fn an_oversized_message_gets_1009_and_the_server_keeps_serving() {
    let server = start(ServerConfig {
        max_message_bytes: 1_024,
        ..quiet()
    })
    .await;
    let mut big = join(server.addr, "/ws/room").await;
    big.send(Message::text("x".repeat(2_000))).await.unwrap();
    assert_eq!(close_code(&mut big).await, 1009);
    let mut binary = join(server.addr, "/ws/room").await;
    binary.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(close_code(&mut binary).await, 1003);
    let mut fine = join(server.addr, "/ws/room").await;
    fine.send(Message::text("x".repeat(1_000))).await.unwrap();
    assert_eq!(next_chat(&mut fine).await.text.len(), 1_000);
    assert_eq!(server.hub.stats().oversized, 1);
}

/// Upgrades a raw TCP connection; returns it just past the 101's headers,
/// so a test can send frames no well-behaved client library would.
async fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request(addr, path).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        timeout(LIMIT, tcp.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Reads the server's (unmasked) frames until a Close; returns its code,
/// 1005 for a Close without one.
async fn raw_close_code(tcp: &mut TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    loop {
        let mut header = [0u8; 2];
        timeout(LIMIT, tcp.read_exact(&mut header))
            .await
            .unwrap()
            .expect("a Close before EOF");
        let len = match header[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                tcp.read_exact(&mut ext).await.unwrap();
                usize::from(u16::from_be_bytes(ext))
            }
            127 => panic!("no server frame here is that large"),
            small => usize::from(small),
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        if header[0] & 0x0f == 0x8 {
            return match payload.get(..2) {
                Some(code) => u16::from_be_bytes([code[0], code[1]]),
                None => 1005,
            };
        }
    }
}

#[tokio::test]
async fn text_that_is_not_utf8_gets_1007() {
    use tokio::io::AsyncWriteExt;
    let server = start(quiet()).await;
    let mut tcp = raw_upgrade(server.addr, "/ws/room").await;
    // FIN + text, masked (with a zero key), two bytes that are not UTF-8.
    tcp.write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])
        .await
        .unwrap();
    assert_eq!(raw_close_code(&mut tcp).await, 1007);
}

#[tokio::test]
async fn a_frame_that_breaks_the_protocol_gets_1002() {
    use tokio::io::AsyncWriteExt;
    let server = start(quiet()).await;
    let mut tcp = raw_upgrade(server.addr, "/ws/room").await;
    // A client frame must be masked (RFC 6455, 5.1): this one is not.
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    assert_eq!(raw_close_code(&mut tcp).await, 1002);
}

/// The keep-alive ping is due one `ping_interval` after the join, not at
/// once: a client's first frame here is the message, not a ping.
#[tokio::test]
async fn the_first_ping_waits_one_ping_interval() {
    let server = start(ServerConfig {
        ping_interval: Duration::from_secs(600),
        ..quiet()
    })
    .await;
    let mut reader = join(server.addr, "/ws/room").await;
    let mut writer = join(server.addr, "/ws/room").await;
    eventually("2 open", || server.hub.stats().open == 2).await;
    writer.send(Message::text("first")).await.unwrap();
    match timeout(LIMIT, reader.next()).await.unwrap() {
        Some(Ok(Message::Text(text))) => assert!(text.contains("first"), "{text}"),
        other => panic!("expected the message first, got {other:?}"),
    }
}

#[tokio::test]
async fn limits_are_checked_before_the_upgrade() {
    let server = start(ServerConfig {
        max_clients: 2,
        max_channels: 1,
        ..quiet()
    })
    .await;
    assert_eq!(status_of_upgrade(server.addr, "/ws/bad%20name").await, 400);
    assert_eq!(
        status_of_upgrade(server.addr, "/ws/room?name=%3Cscript%3E").await,
        400
    );
    let _one = join(server.addr, "/ws/room").await;
    assert_eq!(
        status_of_upgrade(server.addr, "/ws/other").await,
        503,
        "max_channels"
    );
    let _two = join(server.addr, "/ws/room").await;
    assert_eq!(
        status_of_upgrade(server.addr, "/ws/room").await,
        503,
        "max_clients"
    );
    let stats = server.hub.stats();
    assert_eq!(
        (stats.open, stats.rejected_full, stats.rejected_channels),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_delay_the_others_and_is_closed_by_the_lag_policy() {
    let config = ServerConfig {
        channel_capacity: 16,
        lag_limit: 32,
        write_timeout: LIMIT,
        ..quiet()
    };
    let server = start(config).await;
    // Connected, subscribed, and then not read from until the end.
    let mut stalled = join(server.addr, "/ws/room?name=stalled").await;
    // Three clients that read as fast as they can, each in its own task.
    const COUNT: u64 = 600;
    let mut fast = Vec::new();
    for i in 0..3 {
        let mut ws = join(server.addr, &format!("/ws/room?name=fast{i}")).await;
        fast.push(tokio::spawn(async move {
            for seq in 1..=COUNT {
                assert_eq!(next_chat(&mut ws).await.seq, seq);
            }
            ws
        }));
    }
    let mut publisher = join(server.addr, "/ws/room?name=publisher").await;
    // 600 x 16 KiB = 9.6 MB: far more than the kernel buffers between the
    // server and the stalled client can hold, so its writer blocks.
    let payload = "x".repeat(16 * 1024);
    let started = std::time::Instant::now();
    for _ in 1..=COUNT {
        publisher
            .send(Message::text(payload.clone()))
            .await
            .unwrap();
        // Paced by its own echo, so the fast readers keep up with the ring.
        next_chat(&mut publisher).await;
    }
    let mut done = Vec::new();
    for reader in fast {
        done.push(
            reader
                .await
                .expect("every fast client got every message in order"),
        );
    }
    let took = started.elapsed();
    // The stalled client is still connected with all this unread: nobody
    // waited for it.
    assert_eq!(server.hub.stats().open, 5);
    assert_eq!(server.hub.stats().lag_closes, 0);
    eprintln!("3 fast clients got {COUNT} x 16 KiB in {took:?} beside a stalled client");
    // When it finally reads, its writer finds it missed far more than
    // lag_limit and closes it with 1008, after whatever was already buffered.
    assert_eq!(close_code(&mut stalled).await, 1008);
    assert_eq!(server.hub.stats().lag_closes, 1);
}

#[tokio::test]
async fn a_client_that_falls_behind_is_told_how_many_messages_it_missed() {
    let config = ServerConfig {
        channel_capacity: 4,
        lag_limit: 1_000_000,
        ..quiet()
    };
    let server = start(config).await;
    let mut slow = join(server.addr, "/ws/room?name=slow").await;
    // 2,000 x 16 KiB straight from a second connection: the slow client is
    // not reading, so its writer blocks and the 4-slot ring overflows.
    let publisher = join(server.addr, "/ws/room?name=publisher").await;
    let payload = "x".repeat(16 * 1024);
    let drain = {
        let (mut sink, mut stream) = publisher.split();
        let sender = tokio::spawn(async move {
            for _ in 0..2_000 {
                sink.send(Message::text(payload.clone())).await.unwrap();
            }
            sink
        });
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        (sender, reader)
    };
    let _sink = drain.0.await.unwrap();
    let (mut seen, mut missed, mut last_seq) = (0u64, 0u64, 0u64);
    while seen + missed < 2_000 {
        let message = next_chat(&mut slow).await;
        match message.missed {
            Some(n) => missed += n,
            None => {
                assert!(message.seq > last_seq, "order kept across a gap");
                last_seq = message.seq;
                seen += 1;
            }
        }
    }
    assert!(missed > 0, "the ring overflowed");
    assert_eq!(
        seen + missed,
        2_000,
        "every message either arrived or was reported missed"
    );
    assert!(server.hub.stats().lag_notices > 0);
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let config = ServerConfig {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(300),
        ..quiet()
    };
    let server = start(config).await;
    // Not reading means tungstenite never sends our pongs: silent.
    let mut silent = join(server.addr, "/ws/room").await;
    eventually("idle timeout fired", || server.hub.stats().idle_closes == 1).await;
    // Read now, while the server waits (briefly) for our Close reply.
    assert_eq!(close_code(&mut silent).await, 1000);
    eventually("connection gone", || server.hub.stats().open == 0).await;
}

#[tokio::test]
async fn each_channel_has_a_ticker_that_stops_with_the_channel() {
    let config = ServerConfig {
        tick_interval: Some(Duration::from_millis(50)),
        ..ServerConfig::default()
    };
    let server = start(config).await;
    let mut ws = join(server.addr, "/ws/news").await;
    let tick = next_chat(&mut ws).await;
    assert_eq!(
        (tick.from.as_str(), tick.text.as_str(), tick.seq),
        ("ticker", "tick 1", 1)
    );
    assert_eq!(server.hub.stats().channels, 1);
    ws.close(None).await.unwrap();
    eventually("channel removed", || server.hub.stats().channels == 0).await;
}

#[tokio::test]
async fn shutdown_sends_1001_to_every_client_and_drains() {
    let (logs, _capture) = common::testing::capture_logs();
    let config = ServerConfig {
        tick_interval: Some(Duration::from_millis(20)),
        ..ServerConfig::default()
    };
    let server = start(config).await;
    let mut clients = Vec::new();
    for channel in ["a", "a", "b"] {
        clients.push(join(server.addr, &format!("/ws/{channel}")).await);
    }
    eventually("3 open", || server.hub.stats().open == 3).await;
    server.stop.send(()).unwrap();
    for client in &mut clients {
        assert_eq!(close_code(client).await, 1001);
    }
    let report = timeout(LIMIT, server.task).await.unwrap().unwrap().unwrap();
    assert_eq!(
        report,
        DrainReport {
            open_at_shutdown: 3,
            drained: true
        }
    );
    assert_eq!(server.hub.stats().open, 0);
    assert!(!logs.text().contains("drain timed out"), "{}", logs.text());
}

#[tokio::test]
async fn a_drain_that_times_out_is_reported_and_logged_with_the_connections_cut() {
    let (logs, _capture) = common::testing::capture_logs();
    // Zero: the one connection cannot have finished by the first look.
    let config = ServerConfig {
        drain_timeout: Duration::ZERO,
        ..quiet()
    };
    let server = start(config).await;
    let _ws = join(server.addr, "/ws/a").await;
    eventually("1 open", || server.hub.stats().open == 1).await;
    server.stop.send(()).unwrap();
    let report = timeout(LIMIT, server.task).await.unwrap().unwrap().unwrap();
    assert_eq!(
        report,
        DrainReport {
            open_at_shutdown: 1,
            drained: false
        }
    );
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("drain timed out after 0ns; 1 connections cut"),
        "{text}"
    );
}

#[tokio::test]
async fn the_page_and_the_stats_are_served_over_http() {
    common::init_crypto();
    let server = start(quiet()).await;
    let page = reqwest::get(format!("http://{}/", server.addr))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>ws-broadcast-server</title>") && html.contains("new WebSocket("));
    let stats: serde_json::Value = reqwest::get(format!("http://{}/stats", server.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["open"], 0);
    assert!(stats["rss_bytes"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn the_reconnecting_client_survives_a_server_restart() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = start_on(listener, quiet());
    let url = format!("ws://{addr}/ws/room?name=rc");
    let config = ClientConfig {
        healthy_after: Duration::from_secs(60),
        ..ClientConfig::default()
    };
    // The hook re-announces on every connection, as a re-subscribe would.
    let (client, mut events) = Client::spawn(UrlConnector::new(&url).unwrap(), config, |n| {
        vec![format!("joined, connection {n}")]
    });
    let next_text = async |events: &mut examples_ws::client::Events| loop {
        match timeout(LIMIT, events.recv()).await.unwrap().unwrap() {
            Event::Message(text) => return serde_json::from_str::<ChatMessage>(&text).unwrap(),
            Event::GaveUp { .. } => panic!("gave up"),
            _ => {}
        }
    };
    assert_eq!(next_text(&mut events).await.text, "joined, connection 1");
    client.send("before restart").unwrap();
    assert_eq!(next_text(&mut events).await.text, "before restart");

    // Shut the server down: the client sees 1001 and starts backing off.
    server.stop.send(()).unwrap();
    timeout(LIMIT, server.task).await.unwrap().unwrap().unwrap();
    loop {
        match timeout(LIMIT, events.recv()).await.unwrap().unwrap() {
            Event::Disconnected { reason } => {
                assert!(
                    matches!(reason, Disconnect::ServerClosed { code: 1001, .. }),
                    "{reason:?}"
                );
                break;
            }
            Event::Message(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    client.send("while the server was down").unwrap();

    // Same port, new server: the client reconnects by itself, re-runs the
    // hook, then delivers what was queued while offline.
    let restarted = start_on(TcpListener::bind(addr).await.unwrap(), quiet());
    let first = next_text(&mut events).await;
    assert_eq!(
        (first.seq, first.text.as_str()),
        (1, "joined, connection 2")
    );
    assert_eq!(
        next_text(&mut events).await.text,
        "while the server was down"
    );
    assert_eq!(client.close().await, Vec::<String>::new());
    drop(restarted);
}

/// A raw upgrade request, as a client would send it.
fn upgrade_request(addr: SocketAddr, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

// Issue 15.21: a connection must be tracked from its 101 on. Before the fix
// the upgraded socket was tracked only inside the upgrade callback, which
// runs on its own task after axum already counts the HTTP connection as
// done; shutdown's `tracker.wait()` could return first, and that connection
// was then served after `serve` returned (in the binary: cut at exit, with
// no Close 1001).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_is_served_after_serve_returns() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Not reproduced on the old code in 200 rounds (the window is the few
    // microseconds between hyper handing the socket over and the callback's
    // first poll), so this is a guard; the fix makes it impossible by
    // construction: the token is taken before the 101 is written.
    for round in 0..50 {
        let server = start(quiet()).await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(upgrade_request(server.addr, "/ws/room").as_bytes())
            .await
            .unwrap();
        // Stop while the upgrade is in flight: right after the request, or
        // after its response line started to arrive.
        if round % 2 == 1 {
            let mut byte = [0u8; 1];
            tcp.read_exact(&mut byte).await.unwrap();
        }
        server.stop.send(()).unwrap();
        drop(tcp); // EOF: the server need not wait for a Close reply
        let report = timeout(LIMIT, server.task).await.unwrap().unwrap().unwrap();
        let accepted_at_return = server.hub.stats().accepted;
        let open_at_return = server.hub.stats().open;
        // Give a late connection task time to show itself.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let stats = server.hub.stats();
        assert!(report.drained, "round {round}");
        assert_eq!(open_at_return, 0, "round {round}: open when serve returned");
        assert_eq!(
            stats.accepted, accepted_at_return,
            "round {round}: a connection started after serve returned"
        );
    }
}

// Issue 15.21: `accepted` counts upgrades that completed, not answered
// handshakes: a client that resets the connection instead of completing
// the handshake is `failed_upgrades`, or never counted if the server saw
// the reset before it answered.
#[tokio::test]
async fn accepted_does_not_count_failed_handshakes() {
    use tokio::io::AsyncWriteExt;
    let server = start(quiet()).await;
    const TRIES: u64 = 100;
    for _ in 0..TRIES {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut tcp = tcp.into_std().unwrap();
        std::io::Write::write_all(
            &mut tcp,
            upgrade_request(server.addr, "/ws/room").as_bytes(),
        )
        .unwrap();
        // RST instead of FIN: the server's 101 or its first read fails.
        let mut tcp = TcpStream::from_std(tcp).unwrap();
        tcp.set_zero_linger().unwrap();
        let _ = tcp.shutdown().await; // Err = already reset; either way gone
        drop(tcp);
    }
    eventually("every attempt settled", || server.hub.stats().open == 0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = server.hub.stats();
    assert!(stats.failed_upgrades > 0, "no handshake failed: {stats:?}");
    assert!(stats.accepted + stats.failed_upgrades <= TRIES, "{stats:?}");
    // A reset right behind the request rarely lets an upgrade complete;
    // the old count (in the handler) counted every answered handshake:
    // 50 of 100 here, every one of which failed.
    assert!(stats.accepted <= TRIES / 10, "{stats:?}");
    // A good client after all that is accepted and counted exactly once.
    let before = stats.accepted;
    let mut ws = join(server.addr, "/ws/room?name=good").await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_chat(&mut ws).await.text, "hi");
    assert_eq!(server.hub.stats().accepted, before + 1);
}

// Issue 15 (systematic): `serve` dropped at every await point, with one
// client connected, leaves nothing behind: the port is free again, and once
// the shutdown token is cancelled (as the hub's owner would on drop) the
// client is closed and the hub's counters come back to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_dropped_at_every_await_leaves_no_connection_or_listener_behind() {
    use common::testing::cancel_at_every_await;
    type Served = Arc<std::sync::Mutex<Option<(SocketAddr, Arc<Hub>)>>>;
    let state: Served = Arc::default();
    let polls = cancel_at_every_await(
        |n| {
            let state = state.clone();
            // Boxed: a server and a client in one future are large.
            Box::pin(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let hub = Hub::new(quiet());
                *state.lock().unwrap() = Some((addr, hub.clone()));
                let (go, stop) = oneshot::channel::<()>();
                let serving = server::serve(listener, hub.clone(), async move {
                    let _ = stop.await; // Err = dropped: stop as well
                });
                let client = async move {
                    let mut ws = join(addr, "/ws/room").await;
                    ws.send(Message::text("hi")).await.unwrap();
                    assert_eq!(next_chat(&mut ws).await.text, "hi");
                    // Later rounds also walk through the shutdown.
                    if n > 0 {
                        go.send(()).unwrap();
                    }
                    close_code(&mut ws).await
                };
                let (report, code) = tokio::join!(serving, client);
                assert_eq!(code, 1001);
                assert!(report.unwrap().drained);
            })
        },
        async |_n| {
            let Some((addr, hub)) = state.lock().unwrap().take() else {
                return;
            };
            // The listener went with the future.
            drop(TcpListener::bind(addr).await.expect("port released"));
            // Connections are the hub's, not the future's: they stop with
            // its token.
            hub.shutdown_now();
            eventually("connections closed", || hub.stats().open == 0).await;
            eventually("channels gone", || hub.stats().channels == 0).await;
        },
    )
    .await;
    assert!(polls > 1);
}

/// An in-process source publishes through the hub: to a channel that has
/// subscribers, with the next sequence number; to any other, nothing.
#[tokio::test]
async fn the_hub_publishes_in_process_messages_with_their_sequence() {
    let server = start(quiet()).await;
    let mut ws = join(server.addr, "/ws/news").await;
    eventually("1 open", || server.hub.stats().open == 1).await;
    assert_eq!(server.hub.publish("nowhere", "app", "lost"), None);
    let first = server
        .hub
        .publish("news", "app", "one")
        .expect("news exists");
    let second = server
        .hub
        .publish("news", "app", "two")
        .expect("news exists");
    assert_eq!(second, first + 1);
    for (seq, text) in [(first, "one"), (second, "two")] {
        let message = next_chat(&mut ws).await;
        assert_eq!((message.seq, message.from.as_str()), (seq, "app"));
        assert_eq!(message.text, text);
    }
    assert!(
        format!("{:?}", server.hub).contains("Registry { channels: 1 }"),
        "{:?}",
        server.hub
    );
}

/// `shutdown_now` closes every client with 1001 without `serve`'s own
/// shutdown future (an owner that drives the router itself needs it).
#[tokio::test]
async fn shutdown_now_closes_every_client_with_1001() {
    let server = start(quiet()).await;
    let mut ws = join(server.addr, "/ws/a").await;
    eventually("1 open", || server.hub.stats().open == 1).await;
    server.hub.shutdown_now();
    assert_eq!(close_code(&mut ws).await, 1001);
    eventually("0 open", || server.hub.stats().open == 0).await;
}

/// A plain HTTP request to a WebSocket URL (what the chat page sends to
/// learn why a handshake failed) is told the truth: 426 while there is
/// room, 503 "server full" once every connection slot is taken.
#[tokio::test]
async fn a_plain_request_learns_whether_the_server_is_full() {
    let server = start(ServerConfig {
        max_clients: 1,
        ..quiet()
    })
    .await;
    common::init_crypto();
    let url = format!("http://{}/ws/room", server.addr);
    let plain = || async {
        let response = reqwest::get(&url).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(plain().await.0, 426, "room for one");
    let _one = join(server.addr, "/ws/room").await;
    eventually("1 open", || server.hub.stats().open == 1).await;
    assert_eq!(plain().await, (503, "server full".to_owned()));
}
