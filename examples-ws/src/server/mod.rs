//! A WebSocket broadcast server: rooms, fan-out, limits, graceful shutdown.
//!
//! Ports seed Example 5. What the aiohttp server gets wrong, and the fix:
//!
//! - It sends to each client in turn with `await ws.send_str(..)`, so one
//!   slow client delays every other client and the event source. Here each
//!   channel is a `tokio::sync::broadcast` ring and each connection has its
//!   own writer task (`server/connection.rs` explains the batching and lag policy).
//! - Its background tasks are bare `create_task`s; the per-connection one is
//!   cancelled, the global one may outlive the sockets. Here every task is
//!   spawned on a `TaskTracker` and stopped by a `CancellationToken`, and
//!   shutdown waits for them (bounded by `drain_timeout`).
//! - It has no limits: any size, any number of clients and channels, any
//!   channel name, no idle timeout, `0.0.0.0`. Here each is a flag, enforced
//!   before anything is buffered: 1009 for oversized messages, 503 past
//!   `max_clients` or `max_channels`, 400 for a bad name, pings and an idle
//!   timeout for dead peers, 1003 for binary frames.
//! - Its shutdown closes sockets with a bare `close()`. Here the server stops
//!   accepting, sends Close 1001 (going away) to every client, and drains.
//!
//! Routes: `GET /` (the browser chat page, `static/index.html`, compiled
//! in), `GET /stats` (JSON counters and RSS), `GET /ws/{channel}?name=ada`.
//!
//! Shutdown races: every connection holds a [`TaskTracker`] token from the
//! moment its upgrade is answered, not from the moment the upgraded socket
//! starts being served. axum's graceful shutdown considers a connection done
//! once hyper has handed the socket over, and the upgrade callback runs on
//! a task of its own after that; tracking only inside the callback would let
//! `tracker.wait()` return before the connection is tracked, and that
//! connection would be cut when the process exits, without its Close 1001.
//! `accepted` counts upgrades that completed; answered upgrades whose
//! handshake then failed are `failed_upgrades`.
//!
//! Across instances: `--bus redis://HOST:PORT` (see `server/bus.rs`) makes
//! Redis pub/sub the one order of every channel for every instance.
//!
//! Hostile behaviours: oversized frames (1009, bounded frame buffer), floods
//! of connections or channels (503 before the upgrade), bad names (400),
//! silent peers (pings, idle timeout), peers that stop reading (lag policy,
//! write timeout), binary frames (1003).
//!
//! Production: this is the shape of most axum chat/notification services;
//! `socketioxide` adds rooms, acks and reconnection on top of a similar
//! design; past one machine see `server/bus.rs`.
//!
//! ```text
//! cargo run --bin ws-broadcast-server          # open http://127.0.0.1:8080/
//! cargo test -p examples-ws --test server
//! ```

pub mod bus;
mod connection;
mod registry;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::bus::{Bus, BusConfig, BusStats};
use self::registry::Registry;
use crate::message::is_valid_name;

/// The browser page, compiled into the binary.
pub const INDEX_HTML: &str = include_str!("../../static/index.html");

/// Limits and timings of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once; the next upgrade gets 503.
    pub max_clients: usize,
    /// Channels alive at once; joining a new one past this gets 503.
    pub max_channels: usize,
    /// Largest message a client may send; larger ones get Close 1009.
    pub max_message_bytes: usize,
    /// Messages each channel's ring holds for its slowest reader.
    pub channel_capacity: usize,
    /// Total missed messages after which a lagging client is closed (1008).
    pub lag_limit: u64,
    /// Period of each channel's ticker; `None` disables tickers.
    pub tick_interval: Option<Duration>,
    /// Time between server pings.
    pub ping_interval: Duration,
    /// A client silent (not even a pong) this long is closed.
    pub idle_timeout: Duration,
    /// A client whose socket accepts nothing for this long is dropped.
    pub write_timeout: Duration,
    /// How long shutdown waits for connections to finish closing.
    pub drain_timeout: Duration,
    /// The cross-instance bus; `None` = this process is the whole server.
    pub bus: Option<BusConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_clients: 10_000,
            max_channels: 1_000,
            max_message_bytes: 64 * 1024,
            channel_capacity: 1_024,
            lag_limit: 1_024,
            tick_interval: Some(Duration::from_secs(5)),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            bus: None,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    failed_upgrades: AtomicU64,
    open: AtomicU64,
    rejected_full: AtomicU64,
    rejected_channels: AtomicU64,
    lag_notices: AtomicU64,
    lag_closes: AtomicU64,
    slow_closes: AtomicU64,
    idle_closes: AtomicU64,
    oversized: AtomicU64,
}

/// A snapshot of the server's counters (also served at `GET /stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStats {
    /// WebSocket connections whose upgrade completed, since start.
    pub accepted: u64,
    /// Upgrades answered with 101 whose handshake then failed.
    #[serde(default)]
    pub failed_upgrades: u64,
    /// Connections open now.
    pub open: u64,
    /// Upgrades refused with 503 because of `max_clients`.
    pub rejected_full: u64,
    /// Upgrades refused with 503 because of `max_channels`.
    pub rejected_channels: u64,
    /// Channels alive now.
    pub channels: u64,
    /// Messages published (clients and tickers).
    pub published: u64,
    /// Lag notices sent to clients that fell behind.
    pub lag_notices: u64,
    /// Clients closed with 1008 by the lag policy.
    pub lag_closes: u64,
    /// Clients dropped because their socket took nothing for `write_timeout`.
    pub slow_closes: u64,
    /// Clients closed by the idle timeout.
    pub idle_closes: u64,
    /// Messages refused with 1009.
    pub oversized: u64,
    /// Resident set size of the server process, if known.
    pub rss_bytes: Option<u64>,
    /// The bus's state and counters, when `--bus` is set.
    #[serde(default)]
    pub bus: Option<BusStats>,
}

/// The server's shared state: config, channels, counters, tasks.
#[derive(Debug)]
pub struct Hub {
    config: ServerConfig,
    registry: Arc<Registry>,
    /// One permit per open connection: `try_acquire` is the connection cap.
    connections: Arc<Semaphore>,
    /// Every connection, writer and ticker task; shutdown waits on it.
    tracker: TaskTracker,
    /// Cancelled once on shutdown; every writer and ticker listens.
    shutdown: CancellationToken,
    counters: Counters,
    next_guest: AtomicU64,
    bus: Option<Arc<Bus>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("channels", &self.len())
            .finish()
    }
}

impl Hub {
    /// A hub with no channels yet.
    pub fn new(config: ServerConfig) -> Arc<Hub> {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let bus = config.bus.clone().map(Bus::new);
        Arc::new(Hub {
            registry: Registry::new(
                config.max_channels,
                config.channel_capacity,
                config.tick_interval,
                tracker.clone(),
                shutdown.clone(),
                bus.clone(),
            ),
            bus,
            connections: Arc::new(Semaphore::new(config.max_clients)),
            tracker,
            shutdown,
            counters: Counters::default(),
            next_guest: AtomicU64::new(1),
            config,
        })
    }

    /// The axum router (tests can drive it without a socket).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/stats", get(stats))
            .route("/ws/{channel}", get(join))
            .with_state(self.clone())
    }

    /// The counters now.
    pub fn stats(&self) -> ServerStats {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServerStats {
            accepted: load(&c.accepted),
            failed_upgrades: load(&c.failed_upgrades),
            open: load(&c.open),
            rejected_full: load(&c.rejected_full),
            rejected_channels: load(&c.rejected_channels),
            channels: self.registry.len() as u64,
            published: self.registry.published(),
            lag_notices: load(&c.lag_notices),
            lag_closes: load(&c.lag_closes),
            slow_closes: load(&c.slow_closes),
            idle_closes: load(&c.idle_closes),
            oversized: load(&c.oversized),
            rss_bytes: crate::demo::os::rss_bytes(),
            bus: self.bus.as_ref().map(|bus| bus.stats()),
        }
    }

    /// Tells every connection to close with 1001, and every ticker and the
    /// bus task to stop, without waiting. [`serve`] does this when its
    /// shutdown future resolves; an owner that drops `serve` early (or
    /// drives the router itself) calls it.
    pub fn shutdown_now(&self) {
        self.shutdown.cancel();
    }

    /// Publishes `text` on `channel` as `from` if the channel exists (has
    /// subscribers); returns its sequence number. For in-process sources:
    /// it puts the message into this instance's ring directly, so with a
    /// bus it reaches this instance's clients only.
    pub fn publish(&self, channel: &str, from: &str, text: &str) -> Option<u64> {
        Some(self.registry.get(channel)?.publish(from, text))
    }
}

/// What [`serve`] reports after shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DrainReport {
    /// Connections open when shutdown began.
    pub open_at_shutdown: u64,
    /// True if every connection and task finished within `drain_timeout`.
    pub drained: bool,
}

/// Serves `hub` on `listener` until `shutdown` resolves, then stops
/// accepting, closes every client with 1001 and waits up to
/// `drain_timeout` for them.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<DrainReport> {
    let token = hub.shutdown.clone();
    if let Some(bus) = &hub.bus {
        // Supervised like every task: stopped by the token, awaited below.
        hub.tracker
            .spawn(bus.clone().run(hub.registry.clone(), token.clone()));
    }
    let open_at_shutdown = Arc::new(AtomicU64::new(0));
    // axum stops accepting when this future resolves; the token then tells
    // every writer to send 1001 and every ticker to stop.
    let stop = {
        let (hub, open_at_shutdown) = (hub.clone(), open_at_shutdown.clone());
        async move {
            shutdown.await;
            let open = hub.counters.open.load(Ordering::Relaxed);
            open_at_shutdown.store(open, Ordering::Relaxed);
            token.cancel();
        }
    };
    axum::serve(listener, hub.router())
        .with_graceful_shutdown(stop)
        .await?;
    let open_at_shutdown = open_at_shutdown.load(Ordering::Relaxed);
    // Upgraded connections are not axum's to wait for: they are ours.
    hub.tracker.close();
    let drained = tokio::time::timeout(hub.config.drain_timeout, hub.tracker.wait())
        .await
        .is_ok();
    if !drained {
        tracing::warn!(
            "drain timed out after {:?}; {} connections cut",
            hub.config.drain_timeout,
            hub.counters.open.load(Ordering::Relaxed)
        );
    }
    Ok(DrainReport {
        open_at_shutdown,
        drained,
    })
}

/// The chat page, told the server's message limit (it checks the UTF-8
/// length before sending, so an over-limit message never costs the socket).
async fn page(State(hub): State<Arc<Hub>>) -> Html<String> {
    let limit = hub.config.max_message_bytes.to_string();
    Html(INDEX_HTML.replace("__MAX_MESSAGE_BYTES__", &limit))
}

async fn stats(State(hub): State<Arc<Hub>>) -> axum::Json<ServerStats> {
    axum::Json(hub.stats())
}

#[derive(Debug, Deserialize)]
struct JoinQuery {
    name: Option<String>,
}

/// Each socket's read buffer, 4 KiB: tungstenite's default is 128 KiB, and
/// 5,000 idle clients need far less (the buffer grows as a frame needs,
/// and a read is never smaller than a frame header). A memory knob with no
/// effect on what arrives: its figure is the perf suite's RSS of 5,000 idle
/// connections.
const READ_BUFFER: usize = 4096;

/// `GET /ws/{channel}`: checks every limit before upgrading. A plain GET
/// (no upgrade) gets the same refusals, or 426 if it would be accepted:
/// that is how the browser page learns why a handshake failed (a browser
/// never shows a WebSocket's HTTP status).
async fn join(
    State(hub): State<Arc<Hub>>,
    Path(channel): Path<String>,
    Query(query): Query<JoinQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !is_valid_name(&channel) {
        let why = "channel names are 1-64 characters of a-z A-Z 0-9 - _ .";
        return (StatusCode::BAD_REQUEST, why).into_response();
    }
    let from = match query.name {
        Some(name) if is_valid_name(&name) => name,
        Some(_) => {
            let why = "names are 1-64 characters of a-z A-Z 0-9 - _ .";
            return (StatusCode::BAD_REQUEST, why).into_response();
        }
        None => format!("guest-{}", hub.next_guest.fetch_add(1, Ordering::Relaxed)),
    };
    if hub.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server shutting down").into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(_) if hub.connections.available_permits() == 0 => {
            return (StatusCode::SERVICE_UNAVAILABLE, "server full").into_response();
        }
        Err(_) => {
            let why = "this is a WebSocket endpoint; the channel and name are acceptable";
            return (StatusCode::UPGRADE_REQUIRED, why).into_response();
        }
    };
    // The permit travels into the connection task and is released when it
    // ends, so the cap counts live connections, not handshakes.
    let Ok(permit) = hub.connections.clone().try_acquire_owned() else {
        hub.counters.rejected_full.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "server full").into_response();
    };
    // Subscribing before the upgrade means the client misses nothing sent
    // after its handshake response (the axum chat example's lesson).
    let Ok(subscription) = hub.registry.subscribe(&channel) else {
        hub.counters
            .rejected_channels
            .fetch_add(1, Ordering::Relaxed);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many channels").into_response();
    };
    // Tracked from here, before the 101 goes out: see the module docs.
    // Dropped with the upgrade callback if the handshake fails.
    let tracked = hub.tracker.token();
    if let Some(bus) = &hub.bus
        && !bus.wait_subscribed(&channel).await
    {
        tracing::warn!(channel, "bus subscription not confirmed; joining anyway");
    }
    let max = hub.config.max_message_bytes;
    let failed = hub.clone();
    upgrade
        .max_message_size(max)
        // A frame may be larger than a message (so an oversized message is
        // read whole and answered cleanly with 1009) but stays bounded.
        .max_frame_size(max.saturating_mul(4))
        .read_buffer_size(READ_BUFFER)
        .on_failed_upgrade(move |err| {
            failed
                .counters
                .failed_upgrades
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("upgrade failed: {err}");
        })
        .on_upgrade(move |socket| async move {
            let _tracked = tracked; // held until the connection is done
            hub.counters.accepted.fetch_add(1, Ordering::Relaxed);
            connection::serve_socket(socket, subscription, from, hub, permit).await;
        })
}
