//! Behaviour of the reconnecting client, under a paused clock.
//!
//! The client runs its real supervisor over in-memory pipes
//! (`tokio::io::duplex` + tungstenite's server role), so time only moves
//! when every task waits on a timer: delays and deadlines are exact, and the
//! tests take milliseconds. (Real sockets would let the paused clock jump
//! while the OS works; see DEPENDENCIES.md, pitfall 5.)
//!
//! Equivalent mutant (cargo mutants on `src/client/session.rs`):
//! - `permit.is_none() && !events_gone` -> `||` before `try_reserve`: with a
//!   permit already held, a second reservation replaces it (the first is
//!   dropped and its slot released), so at most one slot is ever held and
//!   reading goes on exactly as before.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use common::backoff::Backoff;
use examples_ws::client::{
    Client, ClientConfig, Connect, Delivered, DeliveryConfig, DeliveryError, Disconnect, Event,
    Events, ReconnectSchedule, SendError,
};
use futures::StreamExt;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio::time::{self, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type ServerSide = WebSocketStream<DuplexStream>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Connection attempts follow a script (`false` = refused); the server half
/// of each accepted connection is handed to the test.
struct Scripted {
    script: VecDeque<bool>,
    servers: mpsc::Sender<ServerSide>,
}

impl Connect for Scripted {
    type Io = DuplexStream;

    async fn connect(&mut self) -> Result<WebSocketStream<DuplexStream>, WsError> {
        if !self.script.pop_front().unwrap_or(true) {
            return Err(WsError::Io(io::ErrorKind::ConnectionRefused.into()));
        }
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        // The test keeps the receiver for as long as the client runs.
        self.servers
            .send(server)
            .await
            .expect("test holds the receiver");
        Ok(WebSocketStream::from_raw_socket(client, Role::Client, None).await)
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        heartbeat: Duration::from_secs(30),
        pong_timeout: Duration::from_secs(5),
        backoff: Backoff {
            base: ms(100),
            max_delay: Duration::from_secs(1),
            ..Backoff::default()
        },
        healthy_after: Duration::from_secs(5),
        seed: 9,
        ..ClientConfig::default()
    }
}

fn start(script: &[bool], config: ClientConfig) -> (Client, Events, mpsc::Receiver<ServerSide>) {
    let (servers_tx, servers) = mpsc::channel(8);
    let connector = Scripted {
        script: script.iter().copied().collect(),
        servers: servers_tx,
    };
    let (client, events) = Client::spawn(connector, config, |n| vec![format!("hello {n}")]);
    (client, events, servers)
}

async fn next(events: &mut Events) -> Event {
    events.recv().await.expect("the client is still running")
}

/// Reads text frames from the server side, skipping control frames.
async fn read_texts(server: &mut ServerSide, count: usize) -> Vec<String> {
    let mut texts = Vec::new();
    while texts.len() < count {
        match server.next().await {
            Some(Ok(Message::Text(text))) => texts.push(text.to_string()),
            Some(Ok(_)) => {}
            other => panic!("server side ended early: {other:?}"),
        }
    }
    texts
}

#[tokio::test(start_paused = true)]
async fn reconnect_delays_follow_the_capped_jittered_schedule() {
    let config = ClientConfig {
        max_attempts: 6,
        ..config()
    };
    let mut expected = ReconnectSchedule::new(config.backoff, config.seed);
    let config_backoff = config.backoff;
    let (_client, mut events, _servers) = start(&[false; 10], config);
    let started = Instant::now();
    let mut total = Duration::ZERO;
    for attempt in 1..=6 {
        assert!(matches!(
            next(&mut events).await,
            Event::ConnectFailed { .. }
        ));
        let delay = expected.next_delay();
        assert!(delay <= config_backoff.exponential(attempt - 1));
        assert_eq!(
            next(&mut events).await,
            Event::Reconnecting { attempt, delay }
        );
        total += delay;
    }
    assert!(matches!(
        next(&mut events).await,
        Event::ConnectFailed { .. }
    ));
    assert_eq!(next(&mut events).await, Event::GaveUp { attempts: 6 });
    assert_eq!(events.recv().await, None, "the task ends after giving up");
    // The only waiting was the backoff itself: exactly the sum of the delays.
    assert_eq!(started.elapsed(), total);
}

/// The first `hangs` attempts never finish their handshake; then `inner`.
struct HangsFirst {
    hangs: u32,
    inner: Scripted,
}

impl Connect for HangsFirst {
    type Io = DuplexStream;

    async fn connect(&mut self) -> Result<WebSocketStream<DuplexStream>, WsError> {
        if self.hangs > 0 {
            self.hangs -= 1;
            std::future::pending::<()>().await;
        }
        self.inner.connect().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_handshake_that_never_finishes_times_out_and_is_retried() {
    let config = ClientConfig {
        connect_timeout: Duration::from_secs(2),
        ..config()
    };
    let (servers_tx, mut servers) = mpsc::channel(8);
    let connector = HangsFirst {
        hangs: 2,
        inner: Scripted {
            script: VecDeque::new(),
            servers: servers_tx,
        },
    };
    let (client, mut events) = Client::spawn(connector, config, |n| vec![format!("hello {n}")]);
    for attempt in 1..=2 {
        match next(&mut events).await {
            Event::ConnectFailed { error } => {
                assert_eq!(error, "no handshake within 2s");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(next(&mut events).await, Event::Reconnecting { attempt: a, .. } if a == attempt)
        );
    }
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    let mut server = servers.recv().await.unwrap();
    assert_eq!(read_texts(&mut server, 1).await, ["hello 1"]);
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn connection_refused_at_start_is_retried_not_fatal() {
    let (client, mut events, mut servers) = start(&[false, false, true], config());
    for attempt in 1..=2 {
        assert!(matches!(
            next(&mut events).await,
            Event::ConnectFailed { .. }
        ));
        assert!(
            matches!(next(&mut events).await, Event::Reconnecting { attempt: a, .. } if a == attempt)
        );
    }
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    client.send("after two refusals").unwrap();
    let mut server = servers.recv().await.unwrap();
    assert_eq!(
        read_texts(&mut server, 2).await,
        ["hello 1", "after two refusals"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_that_stops_answering_pings_is_detected_within_the_deadline() {
    let config = ClientConfig {
        heartbeat: Duration::from_secs(1),
        pong_timeout: Duration::from_secs(2),
        ..config()
    };
    let (_client, mut events, mut servers) = start(&[true], config);
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    let started = Instant::now();
    // Held, never read: tungstenite answers pings only when it reads, so
    // this is a half-open peer.
    let _silent = servers.recv().await.unwrap();
    let event = next(&mut events).await;
    assert_eq!(
        event,
        Event::Disconnected {
            reason: Disconnect::PongTimeout(Duration::from_secs(2))
        }
    );
    // First ping after 1 s, its deadline 2 s later: dead at exactly 3 s.
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_server_that_answers_pings_stays_connected() {
    let config = ClientConfig {
        heartbeat: Duration::from_secs(1),
        pong_timeout: Duration::from_secs(2),
        ..config()
    };
    let (_client, mut events, mut servers) = start(&[true], config);
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    let mut server = servers.recv().await.unwrap();
    // Reading makes tungstenite send the pongs.
    tokio::spawn(async move { while let Some(Ok(_)) = server.next().await {} });
    let quiet = time::timeout(Duration::from_secs(60), events.recv()).await;
    assert!(quiet.is_err(), "60 pings answered, yet: {quiet:?}");
}

#[tokio::test(start_paused = true)]
async fn backoff_resets_after_a_healthy_period_only() {
    let (_client, mut events, mut servers) = start(&[true; 4], config());
    let mut attempts = Vec::new();
    for lifetime in [ms(0), ms(10), Duration::from_secs(6)] {
        assert!(matches!(next(&mut events).await, Event::Connected { .. }));
        let server = servers.recv().await.unwrap();
        time::sleep(lifetime).await;
        drop(server); // the connection ends after `lifetime`
        assert!(matches!(
            next(&mut events).await,
            Event::Disconnected {
                reason: Disconnect::Failed(_)
            }
        ));
        match next(&mut events).await {
            Event::Reconnecting { attempt, .. } => attempts.push(attempt),
            other => panic!("expected Reconnecting, got {other:?}"),
        }
    }
    // Two short-lived connections climb the schedule; one that lasted longer
    // than healthy_after (5 s) starts it over.
    assert_eq!(attempts, [1, 2, 1]);
}

#[tokio::test(start_paused = true)]
async fn outbox_messages_sent_while_offline_arrive_after_reconnect_in_order() {
    let config = ClientConfig {
        outbox_capacity: 5,
        ..config()
    };
    let (client, mut events, mut servers) = start(&[true, true], config);
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    drop(servers.recv().await.unwrap());
    assert!(matches!(
        next(&mut events).await,
        Event::Disconnected { .. }
    ));
    assert!(matches!(
        next(&mut events).await,
        Event::Reconnecting { attempt: 1, .. }
    ));
    // Offline now (backing off): five fit, the sixth comes back to us.
    for i in 1..=5 {
        client.send(format!("m{i}")).unwrap();
    }
    assert_eq!(
        client.send("m6"),
        Err(SendError::OutboxFull {
            message: "m6".into(),
            capacity: 5
        })
    );
    assert_eq!(next(&mut events).await, Event::Connected { connection: 2 });
    let mut server = servers.recv().await.unwrap();
    // The on-connect hook first (re-subscribe), then the outbox in order.
    assert_eq!(
        read_texts(&mut server, 6).await,
        ["hello 2", "m1", "m2", "m3", "m4", "m5"]
    );
}

#[tokio::test(start_paused = true)]
async fn close_sends_a_close_frame_and_returns_promptly() {
    let (client, mut events, mut servers) = start(&[true], config());
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    let mut server = servers.recv().await.unwrap();
    let seen = tokio::spawn(async move {
        loop {
            match server.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("no Close frame: {other:?}"),
            }
        }
    });
    let started = Instant::now();
    assert_eq!(client.close().await, Vec::<String>::new());
    // The server's automatic Close reply ends the wait at once.
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(seen.await.unwrap(), Some(1000));
    assert_eq!(
        events.recv().await,
        None,
        "the event stream ends with the client"
    );
}

#[tokio::test(start_paused = true)]
async fn close_is_bounded_when_the_server_never_replies() {
    let config = ClientConfig {
        close_timeout: Duration::from_secs(2),
        ..config()
    };
    let (client, mut events, mut servers) = start(&[true], config);
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    let _silent = servers.recv().await.unwrap();
    let started = Instant::now();
    client.close().await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn close_while_offline_hands_back_unsent_messages_in_order() {
    let (client, mut events, _servers) = start(&[false; 10], config());
    assert!(matches!(
        next(&mut events).await,
        Event::ConnectFailed { .. }
    ));
    for text in ["a", "b", "c"] {
        client.send(text).unwrap();
    }
    let outbox = client.outbox();
    let started = Instant::now();
    assert_eq!(client.close().await, ["a", "b", "c"]);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no waiting out the backoff"
    );
    assert_eq!(outbox.send("late"), Err(SendError::Stopped("late".into())));
}

// ---- issue 15 ----

/// 15.1: a full event queue that nobody reads must not keep `close()`
/// waiting: the supervisor's `emit` watches the stop token.
#[tokio::test(start_paused = true)]
async fn close_returns_even_when_nobody_reads_a_full_event_queue() {
    let config = ClientConfig {
        event_capacity: 1,
        ..config()
    };
    // Refused forever: ConnectFailed and Reconnecting events pile up.
    let (client, events, _servers) = start(&[false; 1000], config);
    // Let the queue fill (the supervisor blocks in emit).
    time::sleep(Duration::from_secs(5)).await;
    let closed = time::timeout(Duration::from_secs(60), client.close()).await;
    assert_eq!(closed, Ok(Vec::new()), "close() hung on a full event queue");
    drop(events);
}

/// 15.1: dropping the `Client` ends its task even when the event queue is
/// full: the outbox is closed (sends are refused) soon after.
#[tokio::test(start_paused = true)]
async fn dropping_the_client_ends_its_task_even_with_a_full_event_queue() {
    let config = ClientConfig {
        event_capacity: 1,
        ..config()
    };
    let (client, _events, _servers) = start(&[false; 1000], config);
    time::sleep(Duration::from_secs(5)).await;
    let outbox = client.outbox();
    drop(client);
    let ended = time::timeout(Duration::from_secs(60), async {
        loop {
            match outbox.send("probe") {
                Err(SendError::Stopped(_)) => return,
                _ => time::sleep(ms(10)).await,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the task outlived its dropped Client");
}

/// 15.2: a consumer that is slow to read events must not make a healthy,
/// ping-answering server look dead: while the event queue is full the
/// heartbeat pauses (no ping goes out and a pending pong deadline is
/// suspended), because the socket is not being read.
#[tokio::test(start_paused = true)]
async fn a_slow_event_consumer_does_not_cause_a_false_pong_timeout() {
    let config = ClientConfig {
        heartbeat: Duration::from_secs(1),
        pong_timeout: Duration::from_secs(2),
        event_capacity: 1,
        ..config()
    };
    // The consumer is busy for 30 s: 10 heartbeat periods.
    a_busy_consumer_keeps_a_healthy_server(config, Duration::ZERO, Duration::from_secs(30)).await;
}

/// Connects, has the server send five news frames `news_after` the
/// connection (and only then read, which answers the client's pings),
/// keeps the consumer away for `busy`, then checks that every frame
/// arrived and that the connection stays up for a minute more.
async fn a_busy_consumer_keeps_a_healthy_server(
    config: ClientConfig,
    news_after: Duration,
    busy: Duration,
) {
    let (_client, mut events, mut servers) = start(&[true; 4], config);
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    let server = servers.recv().await.unwrap();
    let (mut server_tx, mut server_rx) = server.split();
    tokio::spawn(async move {
        use futures::SinkExt;
        time::sleep(news_after).await;
        for i in 0..5 {
            server_tx
                .send(Message::text(format!("news {i}")))
                .await
                .unwrap();
        }
        // Reading makes tungstenite answer the client's pings; the write
        // half stays alive, so the connection stays up.
        while let Some(Ok(_)) = server_rx.next().await {}
        std::future::pending::<()>().await;
    });
    time::sleep(busy).await;
    for i in 0..5 {
        assert_eq!(next(&mut events).await, Event::Message(format!("news {i}")));
    }
    let quiet = time::timeout(Duration::from_secs(60), events.recv()).await;
    assert!(quiet.is_err(), "a healthy server was dropped: {quiet:?}");
}

/// A server that keeps talking but never answers a ping is still dead:
/// frames that arrive (and are read at once) do not extend a pong deadline.
#[tokio::test(start_paused = true)]
async fn a_chatty_server_that_never_answers_pings_is_still_detected() {
    let config = ClientConfig {
        heartbeat: Duration::from_secs(3),
        pong_timeout: Duration::from_secs(2),
        ..config()
    };
    let (_client, mut events, mut servers) = start(&[true], config);
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    let server = servers.recv().await.unwrap();
    // Writes a frame a second and never reads, so no pong is ever sent.
    let (mut server_tx, _server_rx) = server.split();
    tokio::spawn(async move {
        use futures::SinkExt;
        for i in 0.. {
            if server_tx
                .send(Message::text(format!("tick {i}")))
                .await
                .is_err()
            {
                return;
            }
            time::sleep(Duration::from_secs(1)).await;
        }
    });
    let started = Instant::now();
    let reason = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never found dead"
        );
        match time::timeout(Duration::from_secs(60), events.recv()).await {
            Ok(Some(Event::Message(_))) => {}
            Ok(Some(Event::Disconnected { reason })) => break reason,
            other => panic!("never found dead: {other:?}"),
        }
    };
    assert_eq!(reason, Disconnect::PongTimeout(Duration::from_secs(2)));
    // The ping at 3 s, its deadline at 5 s.
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

/// 15.2, the other half: a ping already in flight when the consumer stalls
/// gets a full deadline when reading resumes, because its pong may be
/// queued behind the frames not yet read.
#[tokio::test(start_paused = true)]
async fn a_pong_queued_behind_unread_frames_is_waited_for_in_full() {
    let config = ClientConfig {
        // A heartbeat longer than the pong timeout: nothing but the resume
        // itself may renew the suspended deadline.
        heartbeat: Duration::from_secs(3),
        pong_timeout: Duration::from_secs(1),
        event_capacity: 1,
        ..config()
    };
    // The client's first ping goes out at 3 s. Only after it is sent do
    // the news follow, and only then is the ping read (and its pong
    // queued): the pong arrives behind five frames. The consumer is busy
    // until long after the ping's first deadline (4 s), and comes back
    // between two heartbeat ticks (30 s and 33 s).
    a_busy_consumer_keeps_a_healthy_server(config, ms(3500), ms(31_500)).await;
}

/// 15.4: clients built with the default config draw different jitter, so
/// five of them against a refusing peer do not reconnect in lockstep.
#[tokio::test(start_paused = true)]
async fn five_default_clients_against_a_refusing_peer_spread_out() {
    let mut schedules = Vec::new();
    for _ in 0..5 {
        let config = ClientConfig {
            max_attempts: 5,
            ..ClientConfig::default()
        };
        let (_client, mut events, _servers) = start(&[false; 10], config);
        let mut delays = Vec::new();
        while let Some(event) = events.recv().await {
            if let Event::Reconnecting { delay, .. } = event {
                delays.push(delay);
            }
        }
        assert_eq!(delays.len(), 5);
        schedules.push(delays);
    }
    for (i, a) in schedules.iter().enumerate() {
        for b in &schedules[i + 1..] {
            assert_ne!(a, b, "two clients share a reconnect schedule");
        }
    }
    // The third reconnect happens at the sum of the first three delays.
    let thirds: Vec<Duration> = schedules.iter().map(|d| d[..3].iter().sum()).collect();
    let spread = thirds
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*thirds.iter().min().unwrap());
    assert!(
        spread > ms(15),
        "third reconnects within {spread:?}: {thirds:?}"
    );
}

// ---- peers that behave: echo servers on in-memory pipes ----

/// How the peer behind one connection behaves.
#[derive(Debug, Clone, Copy)]
enum Peer {
    /// The connect fails.
    Refuse,
    /// Echoes every text frame.
    Echo,
    /// Echoes N text frames, then sends Close 1012 (a normal close).
    EchoThenClose(usize),
    /// Echoes N text frames, then neither reads nor writes: half-open.
    EchoThenSilent(usize),
    /// Reads N text frames, echoes N - 1, and drops the TCP stream.
    SwallowThenDrop(usize),
}

/// Text frames every peer received, in order.
type Received = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

struct Peers {
    script: VecDeque<Peer>,
    then: Peer,
    received: Received,
}

impl Connect for Peers {
    type Io = DuplexStream;

    async fn connect(&mut self) -> Result<WebSocketStream<DuplexStream>, WsError> {
        let peer = self.script.pop_front().unwrap_or(self.then);
        if let Peer::Refuse = peer {
            return Err(WsError::Io(io::ErrorKind::ConnectionRefused.into()));
        }
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve(peer, server, self.received.clone()));
        Ok(WebSocketStream::from_raw_socket(client, Role::Client, None).await)
    }
}

async fn serve(peer: Peer, io: DuplexStream, received: Received) {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let mut count = 0;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue; // reading answers pings
        };
        received.lock().unwrap().push(text.to_string());
        count += 1;
        if let Peer::SwallowThenDrop(n) = peer
            && count >= n
        {
            return;
        }
        if ws.send(Message::Text(text)).await.is_err() {
            return;
        }
        match peer {
            Peer::EchoThenClose(n) if count >= n => {
                let frame = CloseFrame {
                    code: CloseCode::Restart,
                    reason: "every few messages".into(),
                };
                // The client may be gone already; the test checks delivery.
                let _ = ws.close(Some(frame)).await;
                return;
            }
            Peer::EchoThenSilent(n) if count >= n => std::future::pending::<()>().await,
            _ => {}
        }
    }
}

fn start_peers(script: &[Peer], then: Peer, config: ClientConfig) -> (Client, Events, Received) {
    let received = Received::default();
    let connector = Peers {
        script: script.iter().copied().collect(),
        then,
        received: received.clone(),
    };
    let (client, events) = Client::spawn(connector, config, |n| vec![format!("hello {n}")]);
    (client, events, received)
}

async fn deliver(
    client: &Client,
    events: &mut Events,
    text: &str,
    config: &DeliveryConfig,
) -> Result<Delivered, DeliveryError> {
    client
        .deliver(events, text, config, |reply| reply == text, |_| {})
        .await
}

/// Delivery timings for the tests' `config()` (30 s heartbeat + 5 s).
fn delivery() -> DeliveryConfig {
    DeliveryConfig {
        reply_timeout: Duration::from_secs(60),
        ..DeliveryConfig::default()
    }
}

fn copies(received: &Received, text: &str) -> usize {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|t| *t == text)
        .count()
}

/// 15.3: with default timings, a peer that goes silent mid-run is found by
/// the heartbeat before the reply deadline, reconnected to, and the run
/// finishes.
#[tokio::test(start_paused = true)]
async fn with_default_timings_a_silent_peer_is_reconnected_to_and_the_run_finishes() {
    // "hello 1", m1, m2 echoed; then silence.
    let (client, mut events, received) = start_peers(
        &[Peer::EchoThenSilent(3)],
        Peer::Echo,
        ClientConfig::default(),
    );
    let delivery = DeliveryConfig::default();
    let started = Instant::now();
    let mut resent = Vec::new();
    for i in 1..=5 {
        let text = format!("m{i}");
        match deliver(&client, &mut events, &text, &delivery).await {
            Ok(done) => resent.push(done.resent),
            Err(err) => panic!("{text}: {err}"),
        }
    }
    assert_eq!(events.connection(), Some(2), "one reconnect");
    // m3 went into the silence (never read) and again after the reconnect.
    assert_eq!(resent, [0, 0, 1, 0, 0]);
    assert_eq!(copies(&received, "m3"), 1);
    // Ping at 5 s, no pong by 10 s, reconnect (<= 100 ms), re-send at + 1 s.
    let elapsed = started.elapsed();
    assert!(
        elapsed > Duration::from_secs(11) && elapsed < Duration::from_secs(12),
        "{elapsed:?}"
    );
}

/// 15.3: a reply timeout that does not exceed heartbeat + pong timeout
/// would race the heartbeat; it is refused up front.
#[tokio::test(start_paused = true)]
async fn a_reply_timeout_within_the_heartbeat_window_is_refused() {
    let (client, mut events, _received) = start_peers(&[], Peer::Echo, ClientConfig::default());
    let delivery = DeliveryConfig {
        reply_timeout: Duration::from_secs(10),
        ..DeliveryConfig::default()
    };
    assert_eq!(
        deliver(&client, &mut events, "m", &delivery).await,
        Err(DeliveryError::ReplyTimeoutTooShort {
            reply_timeout: Duration::from_secs(10),
            heartbeat_window: Duration::from_secs(10),
        })
    );
}

/// 15.5: a message queued while offline is sent once, by the first
/// connection, not re-queued during the outage.
#[tokio::test(start_paused = true)]
async fn a_message_queued_during_an_outage_reaches_the_peer_once() {
    let config = ClientConfig {
        backoff: Backoff {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            jitter: common::backoff::Jitter::None,
            ..Backoff::default()
        },
        ..config()
    };
    // Six refusals one second apart: a 6 s outage.
    let (client, mut events, received) = start_peers(&[Peer::Refuse; 6], Peer::Echo, config);
    let delivery = delivery();
    let started = Instant::now();
    let done = deliver(&client, &mut events, "m1", &delivery).await;
    assert_eq!(done, Ok(Delivered { resent: 0 }));
    assert_eq!(started.elapsed(), Duration::from_secs(6));
    assert_eq!(copies(&received, "m1"), 1);
}

/// 15.5: a message lost with its connection is sent again after the
/// reconnect, once.
#[tokio::test(start_paused = true)]
async fn a_message_lost_with_its_connection_is_resent_after_the_reconnect() {
    // Reads "hello 1" and m1, echoes only the greeting, then drops.
    let (client, mut events, received) =
        start_peers(&[Peer::SwallowThenDrop(2)], Peer::Echo, config());
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    let done = deliver(&client, &mut events, "m1", &delivery()).await;
    assert_eq!(done, Ok(Delivered { resent: 1 }));
    assert_eq!(copies(&received, "m1"), 2);
}

/// 15.6: a server that closes normally after every 3 messages is working:
/// connections that carried messages reset the failure count, so all 40
/// arrive with the binary's default of 10 retries.
#[tokio::test(start_paused = true)]
async fn short_connections_that_exchanged_messages_do_not_use_up_the_retries() {
    let config = ClientConfig {
        max_attempts: 10,
        healthy_after: Duration::from_secs(10),
        ..config()
    };
    let (client, mut events, _received) = start_peers(&[], Peer::EchoThenClose(3), config);
    let delivery = delivery();
    for i in 1..=40 {
        let text = format!("m{i}");
        let outcome = deliver(&client, &mut events, &text, &delivery).await;
        assert!(outcome.is_ok(), "{text}: {outcome:?}");
    }
}

/// A connection that carried nothing still counts as a failure: a server
/// that accepts and drops at once is given up on.
#[tokio::test(start_paused = true)]
async fn connections_that_carried_nothing_still_use_up_the_retries() {
    let config = ClientConfig {
        max_attempts: 3,
        ..config()
    };
    // Reads the greeting and drops without a word back.
    let (client, mut events, _received) = start_peers(&[], Peer::SwallowThenDrop(1), config);
    let outcome = deliver(&client, &mut events, "m", &delivery()).await;
    assert!(
        matches!(&outcome, Err(DeliveryError::GaveUp { attempts: 3, last_error }) if last_error.contains("without closing handshake")),
        "{outcome:?}"
    );
}

/// A peer that is never reached: the give-up error says why, from the
/// last failed connect.
#[tokio::test(start_paused = true)]
async fn giving_up_on_a_peer_never_reached_reports_the_connect_error() {
    let config = ClientConfig {
        max_attempts: 2,
        ..config()
    };
    let (client, mut events, _received) = start_peers(&[], Peer::Refuse, config);
    let outcome = deliver(&client, &mut events, "m", &delivery()).await;
    assert!(
        matches!(&outcome, Err(DeliveryError::GaveUp { attempts: 2, last_error }) if last_error.to_lowercase().contains("refused")),
        "{outcome:?}"
    );
}

// ---- panics, URLs, cancellation ----

/// A panic in the on-connect hook fails that connection, is reported, and
/// the client reconnects (the hook runs again) and keeps working.
#[tokio::test(start_paused = true)]
async fn a_panicking_on_connect_hook_fails_one_connection_not_the_client() {
    let received = Received::default();
    let connector = Peers {
        script: VecDeque::new(),
        then: Peer::Echo,
        received: received.clone(),
    };
    let (client, mut events) = Client::spawn(connector, config(), |n| {
        assert!(n != 1, "hook bug on connection {n}");
        vec![format!("hello {n}")]
    });
    assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
    match next(&mut events).await {
        Event::Disconnected {
            reason: Disconnect::Failed(reason),
        } => assert!(
            reason.contains("on-connect hook panicked: hook bug on connection 1"),
            "{reason}"
        ),
        other => panic!("expected the hook's failure, got {other:?}"),
    }
    assert!(matches!(
        next(&mut events).await,
        Event::Reconnecting { attempt: 1, .. }
    ));
    assert_eq!(next(&mut events).await, Event::Connected { connection: 2 });
    let done = deliver(&client, &mut events, "after the panic", &delivery()).await;
    assert_eq!(done, Ok(Delivered { resent: 0 }));
    assert_eq!(client.close().await, Vec::<String>::new());
}

/// A panic in `deliver`'s callbacks unwinds to the caller; the client and
/// its events stay usable.
#[tokio::test(start_paused = true)]
async fn a_panic_in_a_delivery_callback_leaves_the_client_usable() {
    use futures::FutureExt;
    use std::panic::AssertUnwindSafe;
    let (client, mut events, _received) = start_peers(&[], Peer::Echo, config());
    let delivery = delivery();
    let observe_panics = client.deliver(
        &mut events,
        "a",
        &delivery,
        |r| r == "a",
        |_| panic!("observer bug"),
    );
    assert!(
        AssertUnwindSafe(observe_panics)
            .catch_unwind()
            .await
            .is_err()
    );
    let check_panics = client.deliver(&mut events, "b", &delivery, |_| panic!("check bug"), |_| {});
    assert!(AssertUnwindSafe(check_panics).catch_unwind().await.is_err());
    let done = deliver(&client, &mut events, "c", &delivery).await;
    assert!(done.is_ok(), "{done:?}");
}

/// 15.8: only ws:// and wss:// URLs make a connector.
#[test]
fn only_websocket_urls_make_a_connector() {
    use examples_ws::client::UrlConnector;
    for good in ["ws://127.0.0.1:1/x", "wss://example.invalid/"] {
        assert!(UrlConnector::new(good).is_ok(), "{good}");
    }
    for bad in [
        "http://127.0.0.1:1/x",
        "https://x/",
        "ftp://x/",
        "not a url",
        "",
    ] {
        assert!(UrlConnector::new(bad).is_err(), "{bad}");
    }
}

/// `close()` dropped at any await point: the task still ends (sends are
/// refused, the event stream ends) and the peer still gets its Close.
#[tokio::test(start_paused = true)]
async fn close_cancelled_at_every_await_still_stops_the_client() {
    use common::testing::cancel_at_every_await;
    type Left = (
        examples_ws::client::Outbox,
        Events,
        mpsc::Receiver<ServerSide>,
    );
    let left: std::sync::Arc<std::sync::Mutex<Option<Left>>> = Default::default();
    let polls = cancel_at_every_await(
        |_| {
            let left = left.clone();
            async move {
                let (client, mut events, servers) = start(&[true], config());
                assert_eq!(next(&mut events).await, Event::Connected { connection: 1 });
                *left.lock().unwrap() = Some((client.outbox(), events, servers));
                client.close().await
            }
        },
        async |n| {
            let Some((outbox, mut events, mut servers)) = left.lock().unwrap().take() else {
                return; // dropped before the client was up
            };
            let mut server = servers.recv().await.expect("connected once");
            let close = time::timeout(Duration::from_secs(60), async {
                loop {
                    match server.next().await {
                        Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                        Some(Ok(_)) => {}
                        other => panic!("n={n}: no Close frame: {other:?}"),
                    }
                }
            });
            assert_eq!(close.await, Ok(Some(1000)), "n={n}");
            let ended = time::timeout(Duration::from_secs(60), async {
                while events.recv().await.is_some() {}
            });
            assert!(ended.await.is_ok(), "n={n}: the task outlived close()");
            assert_eq!(
                outbox.send("x"),
                Err(SendError::Stopped("x".into())),
                "n={n}"
            );
        },
    )
    .await;
    assert!(polls >= 2, "close() has await points: {polls}");
}

/// `deliver()` dropped at any await point leaves the client working: the
/// next delivery on the same client and events succeeds.
#[tokio::test(start_paused = true)]
async fn deliver_cancelled_at_every_await_leaves_the_client_working() {
    use common::testing::cancel_at_every_await;
    // Drops each connection after 2 texts, so deliveries cross reconnects.
    let (client, events, received) = start_peers(&[], Peer::EchoThenClose(2), config());
    let shared = std::sync::Arc::new(tokio::sync::Mutex::new((client, events)));
    let polls = cancel_at_every_await(
        |n| {
            let shared = shared.clone();
            async move {
                let mut guard = shared.lock().await;
                let (client, events) = &mut *guard;
                let text = format!("cancelled {n}");
                deliver(client, events, &text, &delivery()).await
            }
        },
        async |n| {
            let mut guard = shared.lock().await;
            let (client, events) = &mut *guard;
            let text = format!("probe {n}");
            let done = deliver(client, events, &text, &delivery()).await;
            assert!(done.is_ok(), "n={n}: {done:?}");
            assert!(copies(&received, &text) >= 1);
        },
    )
    .await;
    assert!(polls >= 2, "{polls}");
}

/// `Events::recv()` dropped at any await point loses no event and keeps
/// the connection state right.
#[tokio::test(start_paused = true)]
async fn events_recv_cancelled_at_every_await_loses_nothing() {
    use common::testing::cancel_at_every_await;
    let (_client, events, _received) = start_peers(&[Peer::Refuse], Peer::Echo, config());
    let events = std::sync::Arc::new(tokio::sync::Mutex::new(events));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let polls = cancel_at_every_await(
        |_| {
            let (events, seen) = (events.clone(), seen.clone());
            async move {
                let mut events = events.lock().await;
                // Wait for the Connected that follows one refusal.
                while let Some(event) = events.recv().await {
                    let connected = matches!(event, Event::Connected { .. });
                    seen.lock().unwrap().push(event);
                    if connected {
                        return;
                    }
                }
            }
        },
        async |_| {},
    )
    .await;
    assert!(polls >= 2, "{polls}");
    let seen = seen.lock().unwrap().clone();
    assert!(matches!(seen[0], Event::ConnectFailed { .. }), "{seen:?}");
    assert!(
        matches!(seen[1], Event::Reconnecting { attempt: 1, .. }),
        "{seen:?}"
    );
    assert_eq!(seen[2], Event::Connected { connection: 1 });
    assert_eq!(seen.len(), 3, "each event once: {seen:?}");
    assert_eq!(events.lock().await.connection(), Some(1));
}

#[test]
fn a_reset_schedule_starts_over_from_the_first_delay() {
    let backoff = Backoff {
        base: ms(100),
        factor: 2.0,
        max_delay: ms(1000),
        jitter: common::backoff::Jitter::None,
    };
    let mut schedule = ReconnectSchedule::new(backoff, 1);
    let climbed: Vec<_> = (0..3).map(|_| schedule.next_delay()).collect();
    assert_eq!(climbed, [ms(100), ms(200), ms(400)]);
    schedule.reset();
    assert_eq!(schedule.next_delay(), ms(100), "after a healthy connection");
}

#[test]
fn events_read_as_one_line_each() {
    let cases = [
        (
            Event::Connected { connection: 2 },
            "connected (connection 2)",
        ),
        (Event::Message("hi".into()), "  <- hi"),
        (Event::Binary(vec![0u8; 3].into()), "  <- 3 bytes"),
        (
            Event::ConnectFailed {
                error: "refused".into(),
            },
            "connect failed: refused",
        ),
        (
            Event::Reconnecting {
                attempt: 1,
                delay: ms(84),
            },
            "reconnecting in 84 ms (attempt 1)",
        ),
        (
            Event::GaveUp { attempts: 4 },
            "gave up after 4 reconnect attempts",
        ),
    ];
    for (event, line) in cases {
        assert_eq!(event.to_string(), line);
    }
    let gone = Event::Disconnected {
        reason: Disconnect::Failed("reset".into()),
    };
    assert!(gone.to_string().starts_with("disconnected: "), "{gone}");
}

#[tokio::test(start_paused = true)]
async fn events_are_a_stream_that_tracks_the_connection() {
    let (_client, mut events, _servers) = start(&[true], config());
    // Through `Stream::next`, as a `select!` loop or a combinator reads it.
    let first = time::timeout(ms(1000), events.next()).await.unwrap();
    assert_eq!(first, Some(Event::Connected { connection: 1 }));
    assert_eq!(events.connection(), Some(1));
}

/// A connector that panics: a bug in the transport, not a network fault.
struct Panicking;

impl Connect for Panicking {
    type Io = DuplexStream;

    async fn connect(&mut self) -> Result<WebSocketStream<DuplexStream>, WsError> {
        panic!("connector bug");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_client_task_reaches_the_caller_of_close() {
    use futures::FutureExt as _;
    let (client, _events) = Client::spawn(Panicking, config(), |_| Vec::new());
    time::sleep(ms(10)).await; // the task runs, and panics
    let closed = std::panic::AssertUnwindSafe(client.close())
        .catch_unwind()
        .await;
    let panic = closed.expect_err("the panic is surfaced, not hidden");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"connector bug"));
}
