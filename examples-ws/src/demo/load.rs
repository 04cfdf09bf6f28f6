//! Load generators for the broadcast server: fan-out and idle connections.
//!
//! Demo support, not a pattern: the performance bullets of the WebSocket
//! issue. Run
//! against a server in another process (`ws-load` starts one for you) so
//! the figures include the real syscalls and scheduling between them.
//!
//! - [`fanout`]: `clients` subscribers join one channel (spread round-robin
//!   over one or more server instances), one publisher on the first
//!   instance sends `messages` as fast as it can, and every subscriber
//!   counts what it gets (and checks `seq` order). The figure is deliveries
//!   per second from the first publish to the last delivery. Against
//!   instances joined by a bus, that is deliveries across instances.
//! - [`idle`]: opens `connections` sockets that only answer pings, then
//!   reads the server's RSS from `/stats`.
//!
//! The subscribers do not parse JSON: at a million frames per second that
//! would measure serde, not the server. They look for the publisher's name
//! and read the `seq` digits in place.
//!
//! ```text
//! cargo run --release --bin ws-load -- --clients 1000 --count 1000 --runs 3
//! cargo run --release --bin ws-load -- --idle 5000
//! ```

use std::time::Duration;

use anyhow::{Context, bail};
use common::{LatencyRecorder, LatencySummary};
use futures::{SinkExt, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::server::ServerStats;

/// The publisher's name; subscribers count frames that carry it.
const PUBLISHER: &str = "ws-load";
/// Handshakes in flight at once (a burst of 5,000 SYNs overflows the
/// listen backlog and costs one-second SYN retries).
const CONNECT_CONCURRENCY: usize = 128;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A fan-out run.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// `ws://host:port` of each server instance (at least one); the
    /// publisher uses the first, subscribers are spread over all.
    pub base_urls: Vec<String>,
    /// Subscribers on the channel.
    pub clients: usize,
    /// Messages the publisher sends.
    pub messages: usize,
    /// Size of each message's text.
    pub payload_bytes: usize,
    /// Give up on a run after this long.
    pub timeout: Duration,
}

/// What one fan-out run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// Subscribers.
    pub clients: usize,
    /// Messages published.
    pub messages: usize,
    /// Frames from the publisher that subscribers received.
    pub deliveries: u64,
    /// Messages subscribers were told they missed (lag notices).
    pub missed: u64,
    /// Deliveries whose `seq` was not the previous one + 1.
    pub out_of_order: u64,
    /// First publish to last delivery, in ms.
    pub elapsed_ms: f64,
    /// `deliveries / elapsed`.
    pub deliveries_per_s: f64,
    /// Per subscriber: first publish to its last delivery.
    pub completion: LatencySummary,
}

/// Runs one fan-out measurement.
pub async fn fanout(config: &FanoutConfig) -> anyhow::Result<FanoutReport> {
    let channel = format!("bench-{}-{}", std::process::id(), crate::message::now_ms());
    let urls: Vec<String> = config
        .base_urls
        .iter()
        .map(|base| format!("{base}/ws/{channel}"))
        .collect();
    let url = urls.first().context("no server URL")?.clone();
    let mut subscribers = Vec::with_capacity(config.clients);
    for (i, url) in urls.iter().enumerate() {
        // Round-robin: instance i gets every n-th client.
        let share = config.clients / urls.len() + usize::from(i < config.clients % urls.len());
        subscribers.extend(connect_many(url, share).await?);
    }
    let expected = config.messages as u64;
    let mut readers = JoinSet::new();
    for socket in subscribers {
        readers.spawn(count_deliveries(socket, expected));
    }
    let (publisher, _) = tokio_tungstenite::connect_async(format!("{url}?name={PUBLISHER}"))
        .await
        .context("publisher cannot connect")?;
    let (mut sink, mut echoes) = publisher.split();
    // The publisher is subscribed too; it must read, or the lag policy
    // would (rightly) close it.
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = echoes.next().await {} });
    let padding = "x".repeat(config.payload_bytes.saturating_sub(12));
    let started = Instant::now();
    for i in 0..config.messages {
        // feed: buffer without a syscall per frame; one flush at the end.
        sink.feed(Message::text(format!("{i} {padding}"))).await?;
    }
    sink.flush().await?;

    let mut report = FanoutReport {
        clients: config.clients,
        messages: config.messages,
        deliveries: 0,
        missed: 0,
        out_of_order: 0,
        elapsed_ms: 0.0,
        deliveries_per_s: 0.0,
        completion: LatencyRecorder::new().summary(),
    };
    let mut completion = LatencyRecorder::new();
    let mut last = started;
    let deadline = started + config.timeout;
    while let Some(joined) = tokio::time::timeout_at(deadline, readers.join_next())
        .await
        .context("fan-out did not complete in time")?
    {
        let tally = joined.context("subscriber task failed")??;
        report.deliveries += tally.delivered;
        report.missed += tally.missed;
        report.out_of_order += tally.out_of_order;
        completion.record(tally.finished.saturating_duration_since(started));
        last = last.max(tally.finished);
    }
    // Best effort: a clean Close for the server's sake.
    let _ = sink.close().await;
    drain.abort();
    let elapsed = last.saturating_duration_since(started);
    report.elapsed_ms = elapsed.as_secs_f64() * 1e3;
    report.deliveries_per_s = report.deliveries as f64 / elapsed.as_secs_f64().max(1e-9);
    report.completion = completion.summary();
    Ok(report)
}

struct Tally {
    delivered: u64,
    missed: u64,
    out_of_order: u64,
    finished: Instant,
}

async fn count_deliveries(mut socket: Socket, expected: u64) -> anyhow::Result<Tally> {
    let marker = format!("\"from\":\"{PUBLISHER}\"");
    let mut tally = Tally {
        delivered: 0,
        missed: 0,
        out_of_order: 0,
        finished: Instant::now(),
    };
    let mut last_seq = None;
    while tally.delivered + tally.missed < expected {
        let text = match socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => bail!("server closed a subscriber: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err).context("subscriber read failed"),
            None => bail!("server ended a subscriber's stream"),
        };
        if let Some(missed) = number_after(&text, "\"missed\":") {
            tally.missed += missed;
        } else if text.contains(&marker) {
            let seq = number_after(&text, "\"seq\":");
            if last_seq.is_some() && seq != last_seq.map(|s| s + 1) {
                tally.out_of_order += 1;
            }
            last_seq = seq;
            tally.delivered += 1;
        }
    }
    tally.finished = Instant::now();
    // Best effort: the run is measured; a clean Close is a courtesy.
    let _ = socket.close(None).await;
    Ok(tally)
}

/// The unsigned integer right after `key` in `text`, if any.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Opens `count` connections, `CONNECT_CONCURRENCY` at a time.
async fn connect_many(url: &str, count: usize) -> anyhow::Result<Vec<Socket>> {
    // 8 KiB read buffers: the default 128 KiB times 5,000 is 640 MB of
    // address space in the *load generator*.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    futures::stream::iter(0..count)
        .map(|i| async move {
            tokio_tungstenite::connect_async_with_config(url, Some(config), true)
                .await
                .map(|(socket, _)| socket)
                .with_context(|| format!("connection {i} to {url} failed"))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await
}

/// What the idle run measured.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Connections held open.
    pub connections: usize,
    /// Connections the server reported open.
    pub server_open: u64,
    /// Server RSS before connecting.
    pub server_rss_before_bytes: u64,
    /// Server RSS with every connection open.
    pub server_rss_bytes: u64,
    /// `(after - before) / connections`.
    pub per_connection_bytes: u64,
    /// Time to open them all, in ms.
    pub connect_ms: f64,
}

/// Opens `connections` idle sockets, holds them for `hold`, reads the
/// server's `/stats` with them open, and closes them.
pub async fn idle(
    base_url: &str,
    connections: usize,
    hold: Duration,
) -> anyhow::Result<IdleReport> {
    let before = server_stats(base_url).await?;
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(connections);
    // 100 connections per channel: idle clients spread over rooms, as in life.
    for chunk in 0..connections.div_ceil(100) {
        let n = (connections - chunk * 100).min(100);
        let url = format!("{base_url}/ws/idle-{}-{chunk}", std::process::id());
        sockets.extend(connect_many(&url, n).await?);
    }
    let connect_ms = started.elapsed().as_secs_f64() * 1e3;
    // Readers only so that pings get their pongs (tungstenite replies on read).
    let mut readers = JoinSet::new();
    for mut socket in sockets {
        readers.spawn(async move { while let Some(Ok(_)) = socket.next().await {} });
    }
    tokio::time::sleep(hold).await;
    let during = server_stats(base_url).await?;
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    let growth = during
        .rss_bytes
        .unwrap_or(0)
        .saturating_sub(before.rss_bytes.unwrap_or(0));
    Ok(IdleReport {
        connections,
        server_open: during.open,
        server_rss_before_bytes: before.rss_bytes.unwrap_or(0),
        server_rss_bytes: during.rss_bytes.unwrap_or(0),
        per_connection_bytes: growth / connections.max(1) as u64,
        connect_ms,
    })
}

/// `GET /stats` over a bare HTTP/1.1 request (the only HTTP this needs).
pub async fn server_stats(base_url: &str) -> anyhow::Result<ServerStats> {
    let uri: Uri = base_url.parse().context("bad server URL")?;
    let authority = uri
        .authority()
        .context("server URL has no host:port")?
        .as_str();
    let mut stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot reach {authority}"))?;
    let request = format!("GET /stats HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    // Bounded: /stats is a few hundred bytes.
    stream.take(64 * 1024).read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed /stats response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "/stats answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    serde_json::from_str(body).context("/stats is not the expected JSON")
}

/// Medians of repeated fan-out runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Medians {
    /// Median elapsed ms.
    pub elapsed_ms: f64,
    /// Median deliveries per second.
    pub deliveries_per_s: f64,
}

/// The medians of `runs` (empty input gives zeros).
pub fn medians(runs: &[FanoutReport]) -> Medians {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    Medians {
        elapsed_ms: median(runs.iter().map(|r| r.elapsed_ms).collect()),
        deliveries_per_s: median(runs.iter().map(|r| r.deliveries_per_s).collect()),
    }
}
