//! The broadcast server across instances: two hubs in one test process,
//! joined by a real Redis (`REDIS_URL`), each on its own loopback port.
//!
//! Every test uses its own key prefix and its own `CLIENT SETNAME`, so
//! tests never see each other's messages, and the fault test kills only
//! the connection it named.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use examples_ws::demo::bench::delete_prefix;
use examples_ws::message::ChatMessage;
use examples_ws::server::bus::{BusConfig, BusState};
use examples_ws::server::{self, Hub, ServerConfig};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const LIMIT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Instance {
    addr: SocketAddr,
    hub: Arc<Hub>,
    _stop: oneshot::Sender<()>,
}

fn unique(what: &str) -> String {
    format!(
        "ws-test-{what}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Deletes every key under the test's prefix when dropped, on a pass or a
/// failure, so the shared Redis keeps none of our `{prefix}:seq:{room}`
/// counters (in the server they are meant to outlive the process). On its
/// own thread and runtime: the test's runtime may be unwinding.
struct ForgetKeys {
    url: String,
    prefix: String,
}

impl Drop for ForgetKeys {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // Bounded: a cleanup must not turn a failed test into a hung one.
            runtime.block_on(async { timeout(LIMIT, delete_prefix(&url, &prefix)).await? })
        });
        if let Ok(Err(err)) = cleanup.join() {
            eprintln!("could not delete the test's keys {}:*: {err}", self.prefix);
        }
    }
}

fn forget_keys(url: &str, prefix: &str) -> ForgetKeys {
    ForgetKeys {
        url: url.to_owned(),
        prefix: prefix.to_owned(),
    }
}

fn bus(url: &str, prefix: &str, name: &str) -> BusConfig {
    let mut bus = BusConfig::new(url).unwrap();
    bus.prefix = prefix.to_owned();
    bus.client_name = name.to_owned();
    bus
}

async fn start(bus: BusConfig) -> Instance {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::new(ServerConfig {
        tick_interval: None,
        bus: Some(bus),
        ..ServerConfig::default()
    });
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, hub.clone(), async move {
        // Err = the test dropped the sender: stop as well.
        let _ = stopped.await;
    }));
    Instance {
        addr,
        hub,
        _stop: stop,
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

/// The next frame that is not a server notice.
async fn next_message(ws: &mut Ws) -> ChatMessage {
    loop {
        let message = next_chat(ws).await;
        if message.seq != 0 {
            return message;
        }
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let waited = timeout(LIMIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "never true: {what}");
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("set REDIS_URL, e.g. redis://127.0.0.1:6379")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set REDIS_URL"]
async fn needs_redis_two_instances_deliver_every_message_everywhere_in_one_order() {
    let url = redis_url();
    let prefix = unique("order");
    let _keys = forget_keys(&url, &prefix); // dropped last, after both hubs
    let a = start(bus(&url, &prefix, &unique("a"))).await;
    let b = start(bus(&url, &prefix, &unique("b"))).await;
    let mut clients = Vec::new();
    for (i, instance) in [&a, &b, &a, &b].into_iter().enumerate() {
        clients.push(join(instance.addr, &format!("/ws/room?name=c{i}")).await);
    }
    const EACH: usize = 25;
    // Every client sends at once, from its own task, and reads everything.
    let mut tasks = Vec::new();
    for (i, ws) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let sender = tokio::spawn(async move {
                for n in 0..EACH {
                    sink.send(Message::text(format!("{n}"))).await.unwrap();
                }
                sink
            });
            let mut seen = Vec::new();
            while seen.len() < 4 * EACH {
                let frame = timeout(LIMIT, stream.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                let Message::Text(text) = frame else { continue };
                let message: ChatMessage = serde_json::from_str(&text).unwrap();
                assert_ne!(message.seq, 0, "client {i} got a notice: {message:?}");
                seen.push((message.seq, message.from, message.text));
            }
            let _sink = sender.await.unwrap();
            seen
        }));
    }
    let mut orders = Vec::new();
    for task in tasks {
        orders.push(task.await.unwrap());
    }
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "the same order on every client");
    }
    let seqs: Vec<u64> = orders[0].iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=(4 * EACH) as u64).collect::<Vec<_>>(),
        "global seq, no gap, no duplicate"
    );
    for sender in 0..4 {
        let texts: Vec<&str> = orders[0]
            .iter()
            .filter(|(_, from, _)| *from == format!("c{sender}"))
            .map(|(_, _, text)| text.as_str())
            .collect();
        let sent: Vec<String> = (0..EACH).map(|n| n.to_string()).collect();
        assert_eq!(texts, sent, "sender c{sender}'s messages in the order sent");
    }
    for instance in [&a, &b] {
        let bus = instance.hub.stats().bus.unwrap();
        assert_eq!(bus.state, BusState::Up);
        assert_eq!(bus.published, 2 * EACH as u64);
        assert_eq!(bus.received, 4 * EACH as u64);
        assert_eq!((bus.refused, bus.invalid, bus.dropped), (0, 0, 0));
    }
    // The one channel's seq counter is the prefix's only key; then none.
    assert_eq!(delete_prefix(&url, &prefix).await.unwrap(), 1);
    assert_eq!(delete_prefix(&url, &prefix).await.unwrap(), 0);
}

/// Kills, with `CLIENT KILL ID`, only the connections named `name`.
async fn kill_client_named(url: &str, name: &str) -> usize {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ids: Vec<String> = list
        .lines()
        .filter(|line| line.split(' ').any(|field| field == format!("name={name}")))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect();
    for id in &ids {
        let _: () = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set REDIS_URL"]
async fn needs_redis_a_killed_bus_connection_reconnects_resubscribes_and_tells_clients() {
    let url = redis_url();
    let prefix = unique("kill");
    let _keys = forget_keys(&url, &prefix); // dropped last, after both hubs
    let a_name = unique("victim");
    let a = start(bus(&url, &prefix, &a_name)).await;
    let b = start(bus(&url, &prefix, &unique("other"))).await;
    let mut on_a = join(a.addr, "/ws/room?name=on-a").await;
    let mut on_b = join(b.addr, "/ws/room?name=on-b").await;
    on_b.send(Message::text("before")).await.unwrap();
    assert_eq!(next_message(&mut on_a).await.text, "before");
    assert_eq!(next_message(&mut on_b).await.text, "before");

    assert_eq!(kill_client_named(&url, &a_name).await, 1, "our connection");
    // Told it is down, then that it is back.
    let down = next_chat(&mut on_a).await;
    assert!(
        down.seq == 0 && down.text.contains("bus is down"),
        "{down:?}"
    );
    let back = next_chat(&mut on_a).await;
    assert!(
        back.seq == 0 && back.text.contains("bus is back"),
        "{back:?}"
    );
    eventually("re-subscribed", || {
        a.hub
            .stats()
            .bus
            .is_some_and(|bus| bus.state == BusState::Up && bus.subscribed_channels == 1)
    })
    .await;
    // Both directions work again.
    on_b.send(Message::text("after")).await.unwrap();
    assert_eq!(next_message(&mut on_a).await.text, "after");
    on_a.send(Message::text("from a")).await.unwrap();
    let seen_on_b = loop {
        let message = next_message(&mut on_b).await;
        if message.text != "after" {
            break message;
        }
    };
    assert_eq!(
        (seen_on_b.from.as_str(), seen_on_b.text.as_str()),
        ("on-a", "from a")
    );
    let stats = a.hub.stats().bus.unwrap();
    assert_eq!((stats.connects, stats.disconnects), (2, 1), "{stats:?}");
    // The other instance never noticed.
    assert_eq!(b.hub.stats().bus.unwrap().disconnects, 0);
}

// No Redis needed: nothing listens on port 1.
#[tokio::test]
async fn with_the_bus_down_a_message_is_refused_with_a_notice_and_the_client_stays() {
    let (logs, _capture) = common::testing::capture_logs();
    let mut config = bus("redis://127.0.0.1:1", &unique("down"), &unique("down"));
    config.join_wait = Duration::from_millis(200);
    let instance = start(config).await;
    eventually("bus down", || {
        instance
            .hub
            .stats()
            .bus
            .is_some_and(|bus| bus.state == BusState::Down)
    })
    .await;
    let mut ws = join(instance.addr, "/ws/room?name=alone").await;
    ws.send(Message::text("lost?")).await.unwrap();
    let notice = next_chat(&mut ws).await;
    assert_eq!(
        (notice.seq, notice.from.as_str()),
        (0, examples_ws::message::SERVER_NAME)
    );
    assert!(notice.text.contains("not delivered"), "{notice:?}");
    let stats = instance.hub.stats();
    assert_eq!(stats.bus.unwrap().refused, 1);
    assert_eq!(stats.published, 0, "nothing buffered, nothing delivered");
    assert_eq!(stats.open, 1, "the client keeps its connection");
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("bus subscription not confirmed; joining anyway"),
        "the join says it went ahead unconfirmed: {text}"
    );
}

#[test]
fn only_redis_urls_are_accepted_for_the_bus() {
    assert!(BusConfig::new("redis://127.0.0.1:6379").is_ok());
    for bad in ["http://127.0.0.1:6379", "rediss://x:1", "", "redis://"] {
        assert!(BusConfig::new(bad).is_err(), "{bad}");
    }
}
