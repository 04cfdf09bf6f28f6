//! Past one machine: the broadcast server behind a load balancer, with
//! Redis pub/sub as the bus between instances (`--bus redis://HOST:PORT`).
//!
//! **The problem.** Seed Example 5 broadcasts to the sockets of one
//! process. Put two instances behind a load balancer and a client on
//! instance A never sees what a client on instance B sends: each
//! instance's `tokio::sync::broadcast` rings live in its own memory, and
//! nothing in-process can reach another machine. The in-process version
//! stops at one machine because its "fan-out engine" *is* that memory.
//!
//! **The design.** Each instance keeps its local fan-out exactly as before
//! (one ring per channel, one writer per client, the same lag policy, size
//! limits, connection caps and Close 1001 on shutdown), and Redis becomes
//! the one place where messages are ordered:
//!
//! - A client's message is *not* put into the local ring. The instance
//!   runs one atomic Lua script on Redis: `INCR {prefix}:seq:{channel}`
//!   (the channel's global `seq`), then `PUBLISH {prefix}:chan:{channel}`
//!   of the finished JSON frame. Scripts run one at a time, so the `seq`
//!   order is the publish order.
//! - Each instance SUBSCRIBEs to the Redis channels of the chat channels
//!   that have local clients (the registry is the wanted set: creating or
//!   removing a channel wakes the bus task, which reconciles), and puts
//!   only what comes back from Redis into its local rings, its own
//!   clients' messages included.
//! - So every client on every instance sees one order per channel, the
//!   order Redis published in; `seq` is global per channel (1, 2, 3, ...
//!   on every instance); each sender's messages stay in the order sent
//!   because a connection's reader awaits each publish before reading the
//!   next frame; and nothing is published twice (a failed publish is never
//!   retried, see below).
//! - A client's join waits (up to `join_wait`) until the instance's
//!   SUBSCRIBE for that channel is confirmed, so once a client is
//!   connected it receives everything published after, its own first
//!   message included.
//!
//! One Redis connection per instance carries both directions (RESP3:
//! subscriptions arrive as push frames on the same connection as the
//! scripts), named with `CLIENT SETNAME` so an operator (or a fault test)
//! can find it in `CLIENT LIST`.
//!
//! **What Redis pub/sub guarantees, and what it does not.** Pub/sub is
//! at-most-once: Redis keeps no copy of a message. A subscriber that is
//! disconnected, or not yet subscribed, when a message is published never
//! gets it, and there is no replay. Order is per publishing connection and
//! global for one Redis server (which is what we rely on).
//!
//! **Failure modes and the loss policy.**
//!
//! - *Bus down* (Redis restarted, the connection killed, a network cut):
//!   the bus task notices (a disconnection push or a failed heartbeat
//!   `PING`), tells every local channel with a server notice (`seq` 0),
//!   and reconnects with [`common::backoff::Backoff`] (full jitter, so
//!   many instances do not reconnect in lockstep); it then re-subscribes to
//!   every channel with local clients and sends a second notice. While it
//!   is down, a client's message is refused at once with a notice to that
//!   client ("not delivered"), and messages other instances published are
//!   lost for this instance's clients. Nothing is buffered for later:
//!   buffering is how a broadcast server runs out of memory in an outage.
//! - *A publish that times out* (`timeout`) may or may not have reached
//!   Redis. It is reported to the sender as possibly not delivered and not
//!   retried: a retry could publish it twice.
//! - *A slow instance*: pushes from Redis wait in a bounded queue
//!   ([`PUSH_QUEUE`]) for the bus task, which only moves them into rings
//!   (never waits on a client). If the queue is full the push is dropped
//!   and counted (`dropped` in `/stats`); Redis itself disconnects a
//!   subscriber whose output buffer passes `client-output-buffer-limit
//!   pubsub` (32 MiB by default), which is the same outage as above.
//! - *Hostile publishers on Redis*: anything that arrives on our channels
//!   is parsed as a [`ChatMessage`] for the channel it came on; anything
//!   else is dropped and counted (`invalid`), so no raw bytes reach a
//!   browser.
//! - `seq` keys expire `seq_ttl` after a channel's last message, so a
//!   channel idle that long starts again at 1.
//!
//! **At larger scale.** Reach for a log, not pub/sub, when a message must
//! survive a subscriber's outage: Redis Streams (`XADD`/`XREAD` with an id
//! to resume from), NATS JetStream, or Kafka, each of which lets a
//! reconnecting instance replay what it missed. Plain NATS core is the same
//! at-most-once trade as Redis pub/sub with more fan-out capacity.
//!
//! Hostile behaviours: an unbounded queue is impossible (the push queue is
//! bounded, the readers are back-pressured by the publish round trip),
//! every Redis wait has a timeout, and reconnects back off with jitter.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use common::backoff::Backoff;
use rand::SeedableRng;
use rand::rngs::StdRng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::registry::Registry;
use crate::message::{ChatMessage, now_ms};

/// Push frames (messages from Redis) queued for the bus task at most.
pub const PUSH_QUEUE: usize = 4_096;
/// Time between heartbeat `PING`s on the bus connection.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Assigns the channel's next `seq` and publishes the frame, atomically:
/// `ARGV[1] .. seq .. ARGV[2]` is the JSON frame with its `seq` filled in.
/// Lua numbers are doubles, so `seq` is exact up to 2^53.
const PUBLISH_SCRIPT: &str = r"
local seq = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[1] .. seq .. ARGV[2])
return seq
";

/// How to reach the bus and how to behave on it.
#[derive(Debug, Clone)]
pub struct BusConfig {
    client: redis::Client,
    /// Prefix of every key and Redis channel (`{prefix}:seq:{channel}`,
    /// `{prefix}:chan:{channel}`), so instances of one deployment share a
    /// namespace and tests never collide.
    pub prefix: String,
    /// `CLIENT SETNAME` of this instance's bus connection.
    pub client_name: String,
    /// Bound on every Redis round trip (connect, publish, subscribe, ping).
    pub timeout: Duration,
    /// Reconnect schedule after the bus connection is lost.
    pub backoff: Backoff,
    /// How long a join waits for the instance's SUBSCRIBE to be confirmed.
    pub join_wait: Duration,
    /// A channel's `seq` key expires this long after its last message.
    pub seq_ttl: Duration,
}

/// A `--bus` value that is not a usable `redis://` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--bus must be a redis://HOST:PORT URL: {0}")]
pub struct BusUrlError(String);

impl BusConfig {
    /// A bus on `url` (`redis://HOST:PORT`, optionally `/DB`), with
    /// defaults: prefix `ws-broadcast`, name `ws-broadcast-server-PID`,
    /// 2 s timeout, backoff 100 ms doubling to 5 s, 5 s join wait, 1 day TTL.
    pub fn new(url: &str) -> Result<Self, BusUrlError> {
        if !url.starts_with("redis://") {
            return Err(BusUrlError(format!("{url:?} (only redis://, no TLS)")));
        }
        let info = url
            .into_connection_info()
            .map_err(|err| BusUrlError(format!("{url:?}: {err}")))?;
        // RESP3: subscriptions and scripts share one connection.
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|err| BusUrlError(format!("{url:?}: {err}")))?;
        Ok(Self {
            client,
            prefix: "ws-broadcast".to_owned(),
            client_name: format!("ws-broadcast-server-{}", std::process::id()),
            timeout: Duration::from_secs(2),
            backoff: Backoff {
                base: Duration::from_millis(100),
                max_delay: Duration::from_secs(5),
                ..Backoff::default()
            },
            join_wait: Duration::from_secs(5),
            seq_ttl: Duration::from_secs(24 * 3600),
        })
    }
}

/// Where the bus connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusState {
    /// Not connected yet (start-up).
    Connecting,
    /// Connected and subscribed.
    Up,
    /// Lost; reconnecting with backoff.
    Down,
}

/// The bus's counters (in `/stats` under `"bus"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusStats {
    /// The connection's state now.
    pub state: BusState,
    /// Redis channels this instance is subscribed to now.
    pub subscribed_channels: u64,
    /// Messages this instance published to Redis.
    pub published: u64,
    /// Messages that came back from Redis and were put into local rings.
    pub received: u64,
    /// Client messages refused (bus down, Redis error or timeout).
    pub refused: u64,
    /// Frames on our channels that were not a valid message: dropped.
    pub invalid: u64,
    /// Pushes dropped because the bus task's queue was full.
    pub dropped: u64,
    /// Successful (re)connections.
    pub connects: u64,
    /// Connections lost.
    pub disconnects: u64,
}

/// Why a publish did not happen (or may not have).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// No bus connection right now: refused, nothing sent.
    #[error("the bus is down; message not delivered")]
    Down,
    /// Redis answered with an error: not published.
    #[error("the bus refused the message: {0}")]
    Redis(String),
    /// No answer within the timeout: it may or may not have been published.
    #[error("the bus did not answer in time; message may not have been delivered")]
    Timeout,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    refused: AtomicU64,
    invalid: AtomicU64,
    dropped: Arc<AtomicU64>,
    connects: AtomicU64,
    disconnects: AtomicU64,
}

/// One instance's end of the bus.
pub(crate) struct Bus {
    config: BusConfig,
    script: redis::Script,
    /// The live connection (a cheap clone per publish), `None` while down.
    conn: Mutex<Option<MultiplexedConnection>>,
    state: AtomicU8,
    /// The registry's wanted set changed (a channel came or went).
    wanted: Notify,
    /// The chat channels whose SUBSCRIBE Redis confirmed.
    subscribed: watch::Sender<HashSet<String>>,
    counters: Counters,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus").field("stats", &self.stats()).finish()
    }
}

impl Bus {
    pub(crate) fn new(config: BusConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            script: redis::Script::new(PUBLISH_SCRIPT),
            conn: Mutex::new(None),
            state: AtomicU8::new(BusState::Connecting as u8),
            wanted: Notify::new(),
            subscribed: watch::Sender::new(HashSet::new()),
            counters: Counters::default(),
        })
    }

    pub(crate) fn stats(&self) -> BusStats {
        let c = &self.counters;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        BusStats {
            state: self.state(),
            subscribed_channels: self.subscribed.borrow().len() as u64,
            published: load(&c.published),
            received: load(&c.received),
            refused: load(&c.refused),
            invalid: load(&c.invalid),
            dropped: load(&c.dropped),
            connects: load(&c.connects),
            disconnects: load(&c.disconnects),
        }
    }

    fn state(&self) -> BusState {
        match self.state.load(Ordering::Relaxed) {
            0 => BusState::Connecting,
            1 => BusState::Up,
            _ => BusState::Down,
        }
    }

    fn set_state(&self, state: BusState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// The registry's channels changed: reconcile the subscriptions.
    pub(crate) fn wanted_changed(&self) {
        // notify_one keeps a permit if the task is busy: changes coalesce.
        self.wanted.notify_one();
    }

    fn channel_key(&self, channel: &str) -> String {
        format!("{}:chan:{channel}", self.config.prefix)
    }

    /// Waits until this instance's SUBSCRIBE to `channel` is confirmed, up
    /// to `join_wait`; false at once while the bus is down.
    pub(crate) async fn wait_subscribed(&self, channel: &str) -> bool {
        if self.state() == BusState::Down {
            return false;
        }
        let mut subscribed = self.subscribed.subscribe();
        let confirmed = subscribed.wait_for(|set| set.contains(channel));
        matches!(timeout(self.config.join_wait, confirmed).await, Ok(Ok(_)))
    }

    /// Publishes through Redis; the frame reaches local clients only when
    /// it comes back. Returns the global `seq`. Never retried.
    pub(crate) async fn publish(
        &self,
        channel: &str,
        from: &str,
        text: &str,
    ) -> Result<u64, BusError> {
        let result = self.try_publish(channel, from, text).await;
        let counter = match result {
            Ok(_) => &self.counters.published,
            Err(_) => &self.counters.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn try_publish(&self, channel: &str, from: &str, text: &str) -> Result<u64, BusError> {
        let Some(mut conn) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Err(BusError::Down);
        };
        let frame = ChatMessage {
            channel: channel.to_owned(),
            seq: 0,
            from: from.to_owned(),
            text: text.to_owned(),
            ts: now_ms(),
            missed: None,
        };
        // Plain strings and integers: serialisation cannot fail.
        let json = serde_json::to_string(&frame).expect("ChatMessage serialises");
        // `channel` comes first and is a validated name (no quotes), so the
        // first `"seq":0` is the field; the script splices the real seq in.
        let marker = "\"seq\":";
        let split = json.find(marker).map_or(0, |at| at + marker.len());
        let (head, tail) = (&json[..split], &json[split + 1..]);
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(format!("{}:seq:{channel}", self.config.prefix))
            .key(self.channel_key(channel))
            .arg(head)
            .arg(tail)
            .arg(self.config.seq_ttl.as_secs().max(1));
        match timeout(
            self.config.timeout,
            invocation.invoke_async::<u64>(&mut conn),
        )
        .await
        {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(err)) => Err(BusError::Redis(err.to_string())),
            Err(_elapsed) => Err(BusError::Timeout),
        }
    }

    async fn connect(
        &self,
    ) -> redis::RedisResult<(MultiplexedConnection, mpsc::Receiver<PushInfo>)> {
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        let dropped = self.counters.dropped.clone();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.timeout))
            .set_response_timeout(Some(self.config.timeout))
            // Called on the connection's task: must not block, so try_send.
            .set_push_sender(move |push: PushInfo| {
                tx.try_send(push).inspect_err(|_| {
                    dropped.fetch_add(1, Ordering::Relaxed);
                })
            });
        let mut conn = self
            .config
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.config.client_name)
            .query_async::<()>(&mut conn)
            .await?;
        Ok((conn, rx))
    }

    /// The bus task: connect, subscribe, move pushes into rings, and on any
    /// loss notify, back off, reconnect and re-subscribe; until `stop`.
    pub(crate) async fn run(self: Arc<Self>, registry: Arc<Registry>, stop: CancellationToken) {
        let new_delays = || {
            self.config
                .backoff
                .delays(StdRng::seed_from_u64(rand::random()))
        };
        let mut delays = new_delays();
        let mut was_up = false;
        loop {
            let connected = tokio::select! {
                () = stop.cancelled() => return,
                connected = timeout(self.config.timeout.saturating_mul(2), self.connect()) => connected,
            };
            match connected {
                Ok(Ok((conn, pushes))) => {
                    self.counters.connects.fetch_add(1, Ordering::Relaxed);
                    *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
                    self.set_state(BusState::Up);
                    tracing::info!(name = self.config.client_name, "bus connected");
                    if was_up {
                        registry.notice_all(
                            "the bus is back: messages sent while it was down were lost",
                        );
                    }
                    was_up = true;
                    delays = new_delays();
                    let why = self.serve_connection(conn, pushes, &registry, &stop).await;
                    *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    self.subscribed.send_replace(HashSet::new());
                    if stop.is_cancelled() {
                        return;
                    }
                    self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("bus connection lost: {why}; reconnecting");
                    registry
                        .notice_all("the bus is down: messages are not delivered until it is back");
                }
                Ok(Err(err)) => tracing::warn!("bus connect failed: {err}"),
                Err(_elapsed) => tracing::warn!("bus connect timed out"),
            }
            self.set_state(BusState::Down);
            let delay = delays.next().unwrap_or(self.config.backoff.max_delay);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Serves one connection until it fails; returns why.
    async fn serve_connection(
        &self,
        mut conn: MultiplexedConnection,
        mut pushes: mpsc::Receiver<PushInfo>,
        registry: &Registry,
        stop: &CancellationToken,
    ) -> String {
        let mut subscribed = HashSet::new();
        if let Err(why) = self.reconcile(&mut conn, &mut subscribed, registry).await {
            return why;
        }
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return "stopped".to_owned(),
                push = pushes.recv() => match push {
                    None => return "connection dropped".to_owned(),
                    Some(push) if push.kind == PushKind::Disconnection => {
                        return "disconnected".to_owned();
                    }
                    Some(push) => self.on_push(push, registry),
                },
                () = self.wanted.notified() => {
                    if let Err(why) = self.reconcile(&mut conn, &mut subscribed, registry).await {
                        return why;
                    }
                }
                _ = heartbeat.tick() => {
                    let command = redis::cmd("PING");
                    let ping = command.query_async::<()>(&mut conn);
                    match timeout(self.config.timeout, ping).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => return format!("heartbeat failed: {err}"),
                        Err(_elapsed) => return "heartbeat timed out".to_owned(),
                    }
                }
            }
        }
    }

    /// Subscribes to the registry's channels we lack, unsubscribes from the
    /// ones it no longer has.
    async fn reconcile(
        &self,
        conn: &mut MultiplexedConnection,
        subscribed: &mut HashSet<String>,
        registry: &Registry,
    ) -> Result<(), String> {
        let wanted: HashSet<String> = registry.names().into_iter().collect();
        let add: Vec<String> = wanted.difference(subscribed).cloned().collect();
        let remove: Vec<String> = subscribed.difference(&wanted).cloned().collect();
        let keys = |names: &[String]| {
            names
                .iter()
                .map(|n| self.channel_key(n))
                .collect::<Vec<_>>()
        };
        if !add.is_empty() {
            match timeout(self.config.timeout, conn.subscribe(keys(&add))).await {
                Ok(Ok(())) => subscribed.extend(add),
                Ok(Err(err)) => return Err(format!("SUBSCRIBE failed: {err}")),
                Err(_elapsed) => return Err("SUBSCRIBE timed out".to_owned()),
            }
        }
        if !remove.is_empty() {
            match timeout(self.config.timeout, conn.unsubscribe(keys(&remove))).await {
                Ok(Ok(())) => {
                    for name in &remove {
                        subscribed.remove(name);
                    }
                }
                Ok(Err(err)) => return Err(format!("UNSUBSCRIBE failed: {err}")),
                Err(_elapsed) => return Err("UNSUBSCRIBE timed out".to_owned()),
            }
        }
        self.subscribed.send_replace(subscribed.clone());
        Ok(())
    }

    /// One push from Redis: a message on one of our channels goes into
    /// that channel's ring if it is a valid frame for it.
    fn on_push(&self, push: PushInfo, registry: &Registry) {
        let Some(message) = redis::Msg::from_push_info(push) else {
            return; // (un)subscribe confirmations and other pushes
        };
        let prefix = format!("{}:chan:", self.config.prefix);
        let Some(channel) = message.get_channel_name().strip_prefix(&prefix) else {
            return;
        };
        let valid = std::str::from_utf8(message.get_payload_bytes())
            .ok()
            .filter(|text| {
                serde_json::from_str::<ChatMessage>(text).is_ok_and(|m| m.channel == channel)
            });
        let Some(text) = valid else {
            self.counters.invalid.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(local) = registry.get(channel) {
            local.deliver(Utf8Bytes::from(text.to_owned()));
            self.counters.received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    //! What needs no Redis: the state a bus starts in and the join wait.
    //! The rest is in `tests/bus.rs`, against a real Redis.
    //!
    //! Equivalent mutant: `serve_connection`'s first heartbeat at
    //! `now - HEARTBEAT` instead of `now + HEARTBEAT` only sends one extra
    //! PING on a connection whose SUBSCRIBE has just answered.

    use super::*;

    fn bus() -> Arc<Bus> {
        let mut config = BusConfig::new("redis://127.0.0.1:1").unwrap();
        config.join_wait = Duration::from_secs(5);
        Bus::new(config)
    }

    #[test]
    fn a_new_bus_is_connecting_and_its_debug_shows_its_stats() {
        let bus = bus();
        assert_eq!(bus.stats().state, BusState::Connecting);
        let debug = format!("{bus:?}");
        assert!(
            debug.starts_with("Bus { stats: BusStats { state: Connecting"),
            "{debug}"
        );
        bus.set_state(BusState::Up);
        assert_eq!(bus.stats().state, BusState::Up);
        bus.set_state(BusState::Down);
        assert_eq!(bus.stats().state, BusState::Down);
    }

    #[tokio::test(start_paused = true)]
    async fn a_join_waits_for_its_subscribe_while_connecting_and_not_while_down() {
        let bus = bus();
        // Connecting, never confirmed: false after the whole join wait.
        let started = tokio::time::Instant::now();
        assert!(!bus.wait_subscribed("lobby").await);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // Confirmed part way through the wait: true then, not at its end.
        let confirm = {
            let bus = bus.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bus.subscribed.send_modify(|set| {
                    set.insert("lobby".to_owned());
                });
            }
        };
        let started = tokio::time::Instant::now();
        let (joined, ()) = tokio::join!(bus.wait_subscribed("lobby"), confirm);
        assert!(joined);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // Down: false at once, even for a channel that was confirmed.
        bus.set_state(BusState::Down);
        let started = tokio::time::Instant::now();
        assert!(!bus.wait_subscribed("lobby").await);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
