//! The supervisor loop: connect, serve the connection, back off, repeat.
//!
//! Two rules keep it from getting stuck (issue 15):
//!
//! - Every wait watches the stop token, including [`Supervisor::emit`] on a
//!   full event queue: a caller that stops reading events and calls
//!   `close()` (or drops the `Client`) still stops the task.
//! - While the event queue is full the socket is not read (that is the
//!   back-pressure), so a pong could not be seen either: the heartbeat
//!   *pauses* (no ping goes out, and a pending pong deadline is suspended
//!   and restarts in full when reading resumes). A slow consumer therefore
//!   never makes a healthy server look dead; a dead server is found at most
//!   `heartbeat + pong_timeout` after the consumer catches up.

use std::panic::AssertUnwindSafe;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{self, Duration, Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::{ClientConfig, Connect, Disconnect, Event, ReconnectSchedule};

type Sink<Io> = SplitSink<WebSocketStream<Io>, Message>;
type Source<Io> = SplitStream<WebSocketStream<Io>>;

/// How a connection's session ended.
enum SessionEnd {
    /// `close()` was called: stop for good.
    Stopped,
    /// The connection died: reconnect.
    Lost {
        /// Why it ended.
        reason: Disconnect,
        /// The server sent at least one text or binary frame on it.
        exchanged: bool,
    },
}

impl SessionEnd {
    fn lost(reason: Disconnect, exchanged: bool) -> Self {
        Self::Lost { reason, exchanged }
    }
}

/// Everything the supervisor task owns.
pub(super) struct Supervisor<C, H> {
    pub(super) connector: C,
    pub(super) config: ClientConfig,
    pub(super) schedule: ReconnectSchedule,
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
                    if !self.emit(Event::Connected { connection }).await {
                        // Stopped while the consumer was not reading: still
                        // leave politely.
                        let (mut sink, mut source) = ws.split();
                        close_handshake(&mut sink, &mut source, self.config.close_timeout).await;
                        break;
                    }
                    let started = Instant::now();
                    match self.session(ws, connection).await {
                        SessionEnd::Stopped => break,
                        SessionEnd::Lost { reason, exchanged } => {
                            // A connection that carried messages, or one that
                            // lasted, resets the schedule. One that is
                            // accepted then dropped with nothing said must
                            // not be retried at full speed forever; one that
                            // a server closes after every few messages is
                            // working, and must not use up the retries.
                            if exchanged || started.elapsed() >= self.config.healthy_after {
                                failures = 0;
                                self.schedule.reset();
                            }
                            tracing::info!(connection, %reason, "disconnected");
                            if !self.emit(Event::Disconnected { reason }).await {
                                break;
                            }
                        }
                    }
                }
                Ok(Err(err)) => {
                    let error = err.to_string();
                    if !self.emit(Event::ConnectFailed { error }).await {
                        break;
                    }
                }
                Err(_elapsed) => {
                    let error = format!("no handshake within {:?}", self.config.connect_timeout);
                    if !self.emit(Event::ConnectFailed { error }).await {
                        break;
                    }
                }
            }
            failures = failures.saturating_add(1);
            if self.config.max_attempts != 0 && failures > self.config.max_attempts {
                let attempts = self.config.max_attempts;
                tracing::debug!(attempts, "giving up"); // the GaveUp event reports it
                // Stopped or not, the task ends here.
                let _ = self.emit(Event::GaveUp { attempts }).await;
                break;
            }
            let delay = self.schedule.next_delay();
            let event = Event::Reconnecting {
                attempt: failures,
                delay,
            };
            if !self.emit(event).await {
                break;
            }
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

    /// Queues an event for the consumer; `false` if the client was stopped
    /// first. A full queue waits (back-pressure), but never past `stop`:
    /// otherwise a caller that stops reading and calls `close()` would wait
    /// for a task that waits for it.
    // &mut self: the future must be Send, and &Supervisor would need Sync.
    async fn emit(&mut self, event: Event) -> bool {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => false,
            // Err only if the caller dropped `Events`: nobody is listening,
            // and the client keeps working for senders all the same.
            _ = self.events.send(event) => true,
        }
    }

    /// Serves one connection: reader, writer and heartbeat in one loop.
    async fn session(&mut self, ws: WebSocketStream<C::Io>, connection: u64) -> SessionEnd {
        let (mut sink, mut source) = ws.split();
        // A dead peer must not block a write longer than it may hold a pong.
        let write_limit = self.config.pong_timeout;
        // The hook's frames (subscribe, auth) go before any queued message.
        // A panicking hook fails this connection, not the client: the
        // supervisor reports it and reconnects (and the hook runs again).
        let hook = std::panic::catch_unwind(AssertUnwindSafe(|| (self.on_connect)(connection)));
        let frames = match hook {
            Ok(frames) => frames,
            Err(panic) => {
                let reason = format!("on-connect hook panicked: {}", panic_message(&*panic));
                return SessionEnd::lost(Disconnect::Failed(reason), false);
            }
        };
        for text in frames {
            if let Err(reason) = write(&mut sink, Message::text(text), write_limit).await {
                return SessionEnd::lost(reason, false);
            }
        }
        // Text or binary frames seen on this connection.
        let mut exchanged = false;
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
        // True while the event queue is full: reading, and so the
        // heartbeat, is paused (see the module docs).
        let mut paused = false;
        loop {
            if let Some(text) = self.carry.take()
                && let Err(reason) =
                    write(&mut sink, Message::text(text.clone()), write_limit).await
            {
                self.carry = Some(text); // not written: retry it first
                return SessionEnd::lost(reason, exchanged);
            }
            let mut events_gone = self.events.is_closed();
            if permit.is_none() && !events_gone {
                match self.events.try_reserve() {
                    Ok(reserved) => permit = Some(reserved),
                    Err(mpsc::error::TrySendError::Full(())) => {}
                    Err(mpsc::error::TrySendError::Closed(())) => events_gone = true,
                }
            }
            let backpressured = permit.is_none() && !events_gone;
            if paused && !backpressured {
                // Reading resumes: an outstanding ping gets a full deadline,
                // as its pong may be queued behind the frames not yet read.
                pong_deadline = pong_deadline.map(|_| Instant::now() + self.config.pong_timeout);
            }
            paused = backpressured;
            tokio::select! {
                biased;
                () = self.stop.cancelled() => {
                    close_handshake(&mut sink, &mut source, self.config.close_timeout).await;
                    return SessionEnd::Stopped;
                }
                () = sleep_until_some(pong_deadline), if !backpressured => {
                    let reason = Disconnect::PongTimeout(self.config.pong_timeout);
                    return SessionEnd::lost(reason, exchanged);
                }
                _ = heartbeat.tick() => {
                    // One ping in flight at a time; its deadline is the test.
                    // None while paused: its pong could not be read.
                    if pong_deadline.is_none() && !backpressured {
                        let payload = connection.to_be_bytes().to_vec();
                        if let Err(reason) = write(&mut sink, Message::Ping(payload.into()), write_limit).await {
                            return SessionEnd::lost(reason, exchanged);
                        }
                        pong_deadline = Some(Instant::now() + self.config.pong_timeout);
                    }
                }
                reserved = self.events.reserve(), if backpressured => {
                    // Err = consumer gone; `events_gone` is true next turn.
                    permit = reserved.ok();
                }
                frame = source.next(), if permit.is_some() || events_gone => {
                    let event = match frame {
                        Some(Ok(Message::Text(text))) => {
                            exchanged = true;
                            Event::Message(text.to_string())
                        }
                        Some(Ok(Message::Binary(data))) => {
                            exchanged = true;
                            Event::Binary(data)
                        }
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
                            let reason = Disconnect::ServerClosed { code, reason };
                            return SessionEnd::lost(reason, exchanged);
                        }
                        Some(Err(err)) => {
                            return SessionEnd::lost(Disconnect::Failed(err.to_string()), exchanged);
                        }
                        None => {
                            let reason = Disconnect::Failed("connection closed".into());
                            return SessionEnd::lost(reason, exchanged);
                        }
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

/// The text of a panic payload (`panic!("...")` gives `&str` or `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Waits for the deadline, or forever when there is none.
pub(super) async fn sleep_until_some(deadline: Option<Instant>) {
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
