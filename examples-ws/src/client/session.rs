//! The supervisor loop: connect, serve the connection, back off, repeat.

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{self, Duration, Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::{ClientConfig, Connect, Disconnect, Event};
use crate::backoff::Backoff;

type Sink<Io> = SplitSink<WebSocketStream<Io>, Message>;
type Source<Io> = SplitStream<WebSocketStream<Io>>;

/// How a connection's session ended.
enum SessionEnd {
    /// `close()` was called: stop for good.
    Stopped,
    /// The connection died: reconnect.
    Lost(Disconnect),
}

/// Everything the supervisor task owns.
pub(super) struct Supervisor<C, H> {
    pub(super) connector: C,
    pub(super) config: ClientConfig,
    pub(super) backoff: Backoff,
    pub(super) on_connect: H,
    pub(super) outbox: mpsc::Receiver<String>,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) stop: CancellationToken,
    /// A message taken from the outbox but not yet written: it goes first on
    /// the next connection, so order survives a reconnect.
    pub(super) carry: Option<String>,
}

impl<C, H> Supervisor<C, H>
where
    C: Connect,
    H: FnMut(u64) -> Vec<String> + Send + 'static,
{
    /// Runs until `close()` or `max_attempts`; returns the unsent messages.
    pub(super) async fn run(mut self) -> Vec<String> {
        // Retries since the last healthy connection; drives the backoff.
        let mut failures: u32 = 0;
        let mut connection: u64 = 0;
        loop {
            let connected = tokio::select! {
                // `biased`: check the stop signal first, every time.
                biased;
                () = self.stop.cancelled() => break,
                result = time::timeout(self.config.connect_timeout, self.connector.connect()) => result,
            };
            match connected {
                Ok(Ok(ws)) => {
                    connection += 1;
                    self.emit(Event::Connected { connection }).await;
                    let started = Instant::now();
                    match self.session(ws, connection).await {
                        SessionEnd::Stopped => break,
                        SessionEnd::Lost(reason) => {
                            // Only a connection that lasted resets the
                            // schedule: one that is accepted then dropped at
                            // once must not be retried at full speed forever.
                            if started.elapsed() >= self.config.healthy_after {
                                failures = 0;
                            }
                            tracing::info!(connection, %reason, "disconnected");
                            self.emit(Event::Disconnected { reason }).await;
                        }
                    }
                }
                Ok(Err(err)) => {
                    self.emit(Event::ConnectFailed {
                        error: err.to_string(),
                    })
                    .await;
                }
                Err(_elapsed) => {
                    let error = format!("no handshake within {:?}", self.config.connect_timeout);
                    self.emit(Event::ConnectFailed { error }).await;
                }
            }
            failures = failures.saturating_add(1);
            if self.config.max_attempts != 0 && failures > self.config.max_attempts {
                let attempts = self.config.max_attempts;
                tracing::debug!(attempts, "giving up"); // the GaveUp event reports it
                self.emit(Event::GaveUp { attempts }).await;
                break;
            }
            let delay = self.backoff.delay(failures - 1);
            self.emit(Event::Reconnecting {
                attempt: failures,
                delay,
            })
            .await;
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                () = time::sleep(delay) => {}
            }
        }
        // Nothing is lost silently: whatever was never written goes back to
        // the caller of close(). Closing first refuses new sends.
        self.outbox.close();
        let mut unsent: Vec<String> = self.carry.take().into_iter().collect();
        while let Ok(text) = self.outbox.try_recv() {
            unsent.push(text);
        }
        unsent
    }

    // &mut self: the future must be Send, and &Supervisor would need Sync.
    async fn emit(&mut self, event: Event) {
        // Err only if the caller dropped `Events`: nobody is listening, and
        // the client keeps working for senders all the same.
        let _ = self.events.send(event).await;
    }

    /// Serves one connection: reader, writer and heartbeat in one loop.
    async fn session(&mut self, ws: WebSocketStream<C::Io>, connection: u64) -> SessionEnd {
        let (mut sink, mut source) = ws.split();
        // A dead peer must not block a write longer than it may hold a pong.
        let write_limit = self.config.pong_timeout;
        // The hook's frames (subscribe, auth) go before any queued message.
        for text in (self.on_connect)(connection) {
            if let Err(reason) = write(&mut sink, Message::text(text), write_limit).await {
                return SessionEnd::Lost(reason);
            }
        }
        let beat = self.config.heartbeat;
        // The first ping one period from now, not immediately.
        let mut heartbeat = time::interval_at(Instant::now() + beat, beat);
        // After a stall, ping once and carry on; no burst of catch-up pings.
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pong_deadline: Option<Instant> = None;
        // A reserved slot in the events queue. The reader only reads when it
        // holds one, so a slow consumer pauses reading (TCP pushes back on
        // the server) instead of growing a queue without bound.
        let mut permit = None;
        loop {
            if let Some(text) = self.carry.take()
                && let Err(reason) =
                    write(&mut sink, Message::text(text.clone()), write_limit).await
            {
                self.carry = Some(text); // not written: retry it first
                return SessionEnd::Lost(reason);
            }
            let events_gone = self.events.is_closed();
            tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    close_handshake(&mut sink, &mut source, self.config.close_timeout).await;
                    return SessionEnd::Stopped;
                }
                () = sleep_until_some(pong_deadline) => {
                    return SessionEnd::Lost(Disconnect::PongTimeout(self.config.pong_timeout));
                }
                _ = heartbeat.tick() => {
                    // One ping in flight at a time; its deadline is the test.
                    if pong_deadline.is_none() {
                        let payload = connection.to_be_bytes().to_vec();
                        if let Err(reason) = write(&mut sink, Message::Ping(payload.into()), write_limit).await {
                            return SessionEnd::Lost(reason);
                        }
                        pong_deadline = Some(Instant::now() + self.config.pong_timeout);
                    }
                }
                reserved = self.events.reserve(), if permit.is_none() && !events_gone => {
                    // Err = consumer gone; `events_gone` is true next turn.
                    permit = reserved.ok();
                }
                frame = source.next(), if permit.is_some() || events_gone => {
                    let event = match frame {
                        Some(Ok(Message::Text(text))) => Event::Message(text.to_string()),
                        Some(Ok(Message::Binary(data))) => Event::Binary(data),
                        Some(Ok(Message::Pong(_))) => {
                            pong_deadline = None;
                            continue;
                        }
                        // tungstenite queues the pong to a ping itself.
                        Some(Ok(Message::Ping(_) | Message::Frame(_))) => continue,
                        Some(Ok(Message::Close(frame))) => {
                            // tungstenite queued our Close reply; flush it.
                            // Best effort: the connection is over either way.
                            let _ = time::timeout(self.config.close_timeout, sink.close()).await;
                            let (code, reason) = frame.map_or((1005, String::new()), |f| {
                                (u16::from(f.code), f.reason.to_string())
                            });
                            return SessionEnd::Lost(Disconnect::ServerClosed { code, reason });
                        }
                        Some(Err(err)) => return SessionEnd::Lost(Disconnect::Failed(err.to_string())),
                        None => return SessionEnd::Lost(Disconnect::Failed("connection closed".into())),
                    };
                    // No permit = consumer gone: nobody to deliver to.
                    if let Some(permit) = permit.take() {
                        permit.send(event);
                    }
                }
                text = self.outbox.recv(), if self.carry.is_none() => {
                    // None only when every sender is gone, which means the
                    // Client was dropped and `stop` fires on the next turn.
                    self.carry = text;
                }
            }
        }
    }
}

/// Waits for the deadline, or forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Writes and flushes one frame within `limit`.
async fn write<Io>(sink: &mut Sink<Io>, message: Message, limit: Duration) -> Result<(), Disconnect>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match time::timeout(limit, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(Disconnect::Failed(err.to_string())),
        Err(_elapsed) => Err(Disconnect::WriteTimeout(limit)),
    }
}

/// Sends Close 1000 and waits (bounded) for the server's Close reply, which
/// ends the stream. A dead server costs `limit`, not forever.
async fn close_handshake<Io>(sink: &mut Sink<Io>, source: &mut Source<Io>, limit: Duration)
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "client closing".into(),
    };
    // Both steps are best effort: we are leaving whatever the peer does.
    let _ = time::timeout(limit, async {
        if sink.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(_)) = source.next().await {}
        }
    })
    .await;
}
