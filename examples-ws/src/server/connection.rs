//! One connection: a reader (in the upgrade task) and a writer task.
//!
//! The seed's `broadcast_to_channel` awaits `ws.send_str` for each client in
//! turn, so one client with a full TCP window stalls the broadcast for
//! everyone, the ticker included. Here nothing waits on a client except
//! that client's own writer task: publishing is a non-blocking push into the
//! channel's ring, and each writer drains the ring at its client's pace.
//!
//! The writer batches: after one message it takes whatever else is already
//! in the ring (up to [`MAX_BATCH`]) with `feed` (buffer, no syscall) and
//! then `flush`es once, so a client with a backlog costs one `write(2)` per
//! batch rather than one per message.
//!
//! Lag policy: a writer that falls more than the ring's capacity behind gets
//! `Lagged(n)`; the client is told with a notice (`"missed": n`), and once it
//! has missed more than `lag_limit` in total it is closed with 1008 (policy
//! violation). A writer that cannot write at all for `write_timeout` (the
//! client stopped reading) is dropped. Either way it is counted and logged,
//! never silently.
//!
//! With a bus, the reader does not publish into the local ring: it awaits
//! the bus's publish (one Redis round trip) before reading the client's
//! next frame, which keeps each sender's messages in order and
//! back-pressures a fast sender through its own TCP window. A refused
//! message is answered with a notice to that client only.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::{self, Duration, Instant};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;

use super::Hub;
use super::registry::{Subscription, notice};

/// Most frames written between two flushes.
pub(crate) const MAX_BATCH: usize = 256;
/// How long a closing connection waits for the client's Close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Close codes (RFC 6455, section 7.4.1).
pub(crate) mod code {
    /// The purpose is fulfilled (used for the idle timeout).
    pub(crate) const NORMAL: u16 = 1000;
    /// The server is going away: shutdown.
    pub(crate) const GOING_AWAY: u16 = 1001;
    /// The client broke the protocol.
    pub(crate) const PROTOCOL: u16 = 1002;
    /// A data type the server does not accept (binary frames).
    pub(crate) const UNSUPPORTED: u16 = 1003;
    /// Text that is not UTF-8.
    pub(crate) const INVALID_DATA: u16 = 1007;
    /// Policy violation: the client is too slow (the lag policy).
    pub(crate) const POLICY: u16 = 1008;
    /// The message is larger than `max_message_bytes`.
    pub(crate) const TOO_BIG: u16 = 1009;
}

/// A close the reader asks the writer to send.
type CloseRequest = (u16, String);

/// What the reader asks of the writer.
enum ToWriter {
    /// Send this Close frame and end.
    Close(CloseRequest),
    /// Send this server notice to this client only (e.g. "not delivered").
    Notice(String),
}

/// Requests queued for one writer at most. A notice that finds the queue
/// full is dropped (`try_send`: the client is already being told the same
/// thing); the one Close waits for a slot (`send`: the writer is taking
/// notices, or has ended and the send fails).
const WRITER_QUEUE: usize = 4;

/// Why the writer stopped.
enum WriterEnd {
    /// Send this Close frame.
    Close(u16, String),
    /// The reader is done (peer closed or vanished): flush any Close reply.
    PeerGone,
    /// The socket accepted nothing for `write_timeout`: just drop it.
    Stuck,
}

/// Serves one upgraded socket until either side ends it.
pub(crate) async fn serve_socket(
    socket: WebSocket,
    subscription: Subscription,
    from: String,
    hub: Arc<Hub>,
    _permit: OwnedSemaphorePermit, // held for the connection's lifetime: the cap
) {
    hub.counters.open.fetch_add(1, Ordering::Relaxed);
    let channel = subscription.channel.clone();
    tracing::debug!(channel = channel.name(), from, "client joined");
    let (sink, mut stream) = socket.split();
    let (to_writer, close_rx) = mpsc::channel::<ToWriter>(WRITER_QUEUE);
    let writer_done = CancellationToken::new();
    // The writer owns the subscription: dropping it (when the writer ends)
    // leaves the channel.
    let writer = hub.tracker.spawn(write_loop(
        sink,
        subscription,
        close_rx,
        hub.clone(),
        writer_done.clone(),
    ));

    // The reader: publish the client's text, enforce the idle timeout.
    let request = loop {
        let frame = tokio::select! {
            biased;
            // The writer closed the connection (shutdown, lag policy).
            () = writer_done.cancelled() => break None,
            frame = time::timeout(hub.config.idle_timeout, stream.next()) => frame,
        };
        match frame {
            Err(_elapsed) => {
                hub.counters.idle_closes.fetch_add(1, Ordering::Relaxed);
                break Some((code::NORMAL, "idle timeout".to_owned()));
            }
            Ok(None | Some(Ok(Message::Close(_)))) => break None,
            Ok(Some(Ok(Message::Text(text)))) => match &hub.bus {
                None => {
                    channel.publish(&from, text.as_str());
                }
                Some(bus) => {
                    let published = tokio::select! {
                        () = writer_done.cancelled() => break None,
                        published = bus.publish(channel.name(), &from, text.as_str()) => published,
                    };
                    if let Err(err) = published {
                        // Full = notices already queued; this one adds nothing.
                        let _ = to_writer.try_send(ToWriter::Notice(err.to_string()));
                    }
                }
            },
            Ok(Some(Ok(Message::Binary(_)))) => {
                break Some((
                    code::UNSUPPORTED,
                    "binary frames are not supported".to_owned(),
                ));
            }
            // Any frame (pongs included) resets the idle timeout; tungstenite
            // answers pings on its own.
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Err(err))) => break close_for(err, &hub),
        }
    };
    if let Some(request) = request {
        tracing::debug!(
            channel = channel.name(),
            from,
            code = request.0,
            reason = request.1,
            "closing"
        );
        // Err = the writer already ended; the connection is closing anyway.
        let _ = to_writer.send(ToWriter::Close(request)).await;
    }
    drop(to_writer); // tells a still-running writer that the reader is done
    // Read until the client's Close reply (or a short grace): closing a
    // socket with unread input makes the kernel send RST, which can destroy
    // our Close frame before the client reads it.
    let _ = time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    // The writer ends within write_timeout; a panic in it is a bug to log.
    if let Err(err) = writer.await {
        tracing::error!("connection writer failed: {err}");
    }
    hub.counters.open.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(channel = channel.name(), from, "client left");
}

/// Maps a read error to the close it deserves; `None` = the peer is gone.
fn close_for(err: axum::Error, hub: &Hub) -> Option<CloseRequest> {
    // axum wraps the tungstenite error; it is the same tungstenite crate as
    // ours (see DEPENDENCIES.md, pitfall 7), so the downcast works.
    let inner = err.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => {
            hub.counters.oversized.fetch_add(1, Ordering::Relaxed);
            let limit = hub.config.max_message_bytes;
            Some((code::TOO_BIG, format!("message larger than {limit} bytes")))
        }
        Some(tungstenite::Error::Utf8(_)) => {
            Some((code::INVALID_DATA, "text is not UTF-8".to_owned()))
        }
        Some(tungstenite::Error::Protocol(err)) => Some((code::PROTOCOL, err.to_string())),
        _ => None,
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut subscription: Subscription,
    mut close_rx: mpsc::Receiver<ToWriter>,
    hub: Arc<Hub>,
    done: CancellationToken,
) {
    let limit = hub.config.write_timeout;
    match pump(&mut sink, &mut subscription, &mut close_rx, &hub).await {
        WriterEnd::Close(code, reason) => {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            // Best effort: a client that cannot take a Close is leaving anyway.
            let _ = time::timeout(limit, sink.send(Message::Close(Some(frame)))).await;
        }
        WriterEnd::PeerGone => {
            // Flushes the Close reply tungstenite queued, if any; errors
            // only mean the peer is already gone.
            let _ = time::timeout(limit, sink.close()).await;
        }
        WriterEnd::Stuck => {
            hub.counters.slow_closes.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                channel = subscription.channel.name(),
                "client stopped reading; dropped"
            );
        }
    }
    done.cancel();
}

/// The writer's loop; returns how the connection should end.
async fn pump(
    sink: &mut SplitSink<WebSocket, Message>,
    subscription: &mut Subscription,
    close_rx: &mut mpsc::Receiver<ToWriter>,
    hub: &Hub,
) -> WriterEnd {
    let period = hub.config.ping_interval;
    let mut ping = time::interval_at(Instant::now() + period, period);
    let mut missed_total = 0u64;
    loop {
        tokio::select! {
            biased;
            () = hub.shutdown.cancelled() => {
                return WriterEnd::Close(code::GOING_AWAY, "server shutting down".to_owned());
            }
            request = close_rx.recv() => match request {
                Some(ToWriter::Close((code, reason))) => return WriterEnd::Close(code, reason),
                Some(ToWriter::Notice(text)) => {
                    let frame = notice(subscription.channel.name(), &text, None);
                    if let Err(end) = write(sink, Message::Text(frame), hub, true).await {
                        return end;
                    }
                }
                None => return WriterEnd::PeerGone,
            },
            _ = ping.tick() => {
                // The pong (or any frame) resets the reader's idle timeout.
                if let Err(end) = write(sink, Message::Ping(Default::default()), hub, true).await {
                    return end;
                }
            }
            first = subscription.rx.recv() => {
                let mut next = Some(first);
                let mut batched = 0;
                while let Some(received) = next.take() {
                    let frame = match received {
                        Ok(text) => Message::Text(text),
                        Err(RecvError::Lagged(missed)) => {
                            missed_total += missed;
                            if missed_total > hub.config.lag_limit {
                                hub.counters.lag_closes.fetch_add(1, Ordering::Relaxed);
                                let reason = format!("too slow: missed {missed_total} messages");
                                return WriterEnd::Close(code::POLICY, reason);
                            }
                            hub.counters.lag_notices.fetch_add(1, Ordering::Relaxed);
                            let text = format!("you fell behind and missed {missed} messages");
                            Message::Text(notice(subscription.channel.name(), &text, Some(missed)))
                        }
                        // The subscription holds the channel (and its sender)
                        // alive, so the ring cannot close under us.
                        Err(RecvError::Closed) => return WriterEnd::PeerGone,
                    };
                    if let Err(end) = write(sink, frame, hub, false).await {
                        return end;
                    }
                    batched += 1;
                    if batched < MAX_BATCH {
                        next = match subscription.rx.try_recv() {
                            Ok(text) => Some(Ok(text)),
                            Err(TryRecvError::Empty) => None,
                            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                        };
                    }
                }
                if let Err(end) = flush(sink, hub).await {
                    return end;
                }
            }
        }
    }
}

/// `feed` (buffer only) or `send` (buffer + flush), within `write_timeout`.
async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    frame: Message,
    hub: &Hub,
    and_flush: bool,
) -> Result<(), WriterEnd> {
    let limit = hub.config.write_timeout;
    let result = if and_flush {
        time::timeout(limit, sink.send(frame)).await
    } else {
        time::timeout(limit, sink.feed(frame)).await
    };
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriterEnd::PeerGone),
        Err(_elapsed) => Err(WriterEnd::Stuck),
    }
}

async fn flush(sink: &mut SplitSink<WebSocket, Message>, hub: &Hub) -> Result<(), WriterEnd> {
    match time::timeout(hub.config.write_timeout, sink.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriterEnd::PeerGone),
        Err(_elapsed) => Err(WriterEnd::Stuck),
    }
}
