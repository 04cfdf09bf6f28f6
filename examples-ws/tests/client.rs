//! Behaviour of the reconnecting client, under a paused clock.
//!
//! The client runs its real supervisor over in-memory pipes
//! (`tokio::io::duplex` + tungstenite's server role), so time only moves
//! when every task waits on a timer: delays and deadlines are exact, and the
//! tests take milliseconds. (Real sockets would let the paused clock jump
//! while the OS works; see DEPENDENCIES.md, pitfall 5.)

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use examples_ws::backoff::{Backoff, BackoffConfig};
use examples_ws::client::{Client, ClientConfig, Connect, Disconnect, Event, Events, SendError};
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
        backoff: BackoffConfig {
            initial: ms(100),
            max: Duration::from_secs(1),
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
    let mut expected = Backoff::new(config.backoff, config.seed);
    let (_client, mut events, _servers) = start(&[false; 10], config);
    let started = Instant::now();
    let mut total = Duration::ZERO;
    for attempt in 1..=6 {
        assert!(matches!(
            next(&mut events).await,
            Event::ConnectFailed { .. }
        ));
        let delay = expected.delay(attempt - 1);
        assert!(delay <= expected.ceiling(attempt - 1));
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
