//! At-least-once delivery on top of the reconnecting client: send a
//! request, wait for its reply, send it again after a reconnect.
//!
//! Ports the delivery half of seed Example 4. The Python client's `send()`
//! drops a message while offline and never learns whether one written just
//! before a disconnect arrived. [`Client::send`] fixes the first (a bounded
//! outbox), but a frame can still die in the kernel's buffers with the
//! connection. [`Client::deliver`] closes that gap for any request with a
//! recognisable reply (an echo, an ack, a response id): it is the client's
//! delivery guarantee, and it lives here rather than in each application.
//!
//! The rules, each one a bug it fixes (issue 15):
//!
//! - **Re-send only after a (re)connect.** A message can only be lost with a
//!   connection, so only a `Connected` event for a *later* connection than
//!   the one that carried it arms a re-send. While offline nothing is
//!   re-queued (an earlier version re-queued every second, and one message
//!   reached the peer 6 times after a 5.5 s outage). The re-send waits
//!   [`DeliveryConfig::resend_after`] first, because the events we read
//!   lag the supervisor: the message may in fact have gone out on the new
//!   connection from the outbox, and its reply be on its way.
//! - **The reply deadline runs only while connected**, restarts on every
//!   connect, and must be longer than `heartbeat + pong_timeout`
//!   ([`DeliveryError::ReplyTimeoutTooShort`] otherwise). A silent peer is
//!   then always found by the heartbeat first, the client reconnects and
//!   the message is re-sent; with equal timings the two verdicts raced and
//!   a silent peer ended the run instead of being reconnected to.
//! - Offline time is bounded by the client itself: after
//!   [`ClientConfig::max_attempts`](super::ClientConfig::max_attempts)
//!   failed reconnects it gives up, and so does the delivery
//!   ([`DeliveryError::GaveUp`]). With `max_attempts = 0` a delivery waits
//!   for a connection as long as its caller does: select it against your
//!   stop signal (dropping the future is safe, see below).
//!
//! At least once means duplicates are possible (the reply to the first copy
//! was lost, or the lag above): make the request idempotent or de-duplicate
//! by id at the receiver, and expect a late duplicate reply.
//!
//! Cancel-safe: dropping a `deliver` future leaves the client and its
//! events usable; the message stays queued (it may still be sent once).
//! Panics in `is_reply` or `observe` unwind through `deliver` into the
//! caller, like a panic in any code the caller runs; the client is
//! untouched by them.
//!
//! Production: a protocol with acknowledgements (MQTT QoS 1, STOMP receipts,
//! AMQP confirms) does this for you; reach for one before growing this.

use std::time::Duration;

use tokio::time::Instant;

use super::{Client, Event, Events, SendError};

/// Timings of [`Client::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// After a reconnect, wait this long for the reply before sending again.
    pub resend_after: Duration,
    /// Give up on a reply after this long connected (restarts on every
    /// connect). Must exceed the client's `heartbeat + pong_timeout`.
    pub reply_timeout: Duration,
}

impl Default for DeliveryConfig {
    /// 1 s and 15 s: above the default client's 5 s + 5 s heartbeat window.
    fn default() -> Self {
        Self {
            resend_after: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(15),
        }
    }
}

/// A delivered request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// How many extra copies were sent.
    pub resent: u32,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The outbox refused the message (full, or the client stopped).
    #[error("cannot queue: {0}")]
    Send(#[from] SendError),
    /// Connected, heartbeat fine, and still no reply.
    #[error("no reply within {0:?} on a live connection")]
    NoReply(Duration),
    /// The client stopped reconnecting.
    #[error("gave up after {attempts} reconnect attempts (last error: {last_error})")]
    GaveUp {
        /// The client's `max_attempts`.
        attempts: u32,
        /// The last connect error or disconnect reason seen.
        last_error: String,
    },
    /// The client was closed, or its task ended.
    #[error("client stopped")]
    Stopped,
    /// The reply deadline would race the heartbeat's verdict.
    #[error(
        "reply timeout {reply_timeout:?} must exceed heartbeat + pong timeout ({heartbeat_window:?})"
    )]
    ReplyTimeoutTooShort {
        /// The configured reply timeout.
        reply_timeout: Duration,
        /// The client's `heartbeat + pong_timeout`.
        heartbeat_window: Duration,
    },
}

impl Client {
    /// Sends `text` and waits for the event message for which
    /// `is_reply(message)` is true, re-sending after reconnects (see the
    /// module docs). `observe` sees every event read meanwhile, the reply
    /// included, e.g. to tell the story or count reconnects.
    ///
    /// Events that belong to other requests are consumed too (and shown to
    /// `observe`): run one delivery at a time per [`Events`].
    pub async fn deliver<R, O>(
        &self,
        events: &mut Events,
        text: &str,
        config: &DeliveryConfig,
        mut is_reply: R,
        mut observe: O,
    ) -> Result<Delivered, DeliveryError>
    where
        R: FnMut(&str) -> bool,
        O: FnMut(&Event),
    {
        if config.reply_timeout <= self.heartbeat_window {
            return Err(DeliveryError::ReplyTimeoutTooShort {
                reply_timeout: config.reply_timeout,
                heartbeat_window: self.heartbeat_window,
            });
        }
        self.send(text)?;
        let mut resent = 0u32;
        // The connection expected to carry the latest copy: the current one,
        // or (offline) the next one, which takes it from the outbox.
        let mut carrier = events.connection();
        // checked_add: a library caller's duration is not bounded by a flag
        // parser; an overflow means "never".
        let deadline = |d: Duration| Instant::now().checked_add(d);
        let mut reply_by = carrier.and_then(|_| deadline(config.reply_timeout));
        let mut resend_at: Option<Instant> = None;
        let mut last_error = String::from("none");
        loop {
            let wake = match (reply_by, resend_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let event = tokio::select! {
                event = events.recv() => event,
                () = super::session::sleep_until_some(wake) => {
                    if reply_by.is_some_and(|at| Instant::now() >= at) {
                        return Err(DeliveryError::NoReply(config.reply_timeout));
                    }
                    // The reconnect's grace is over and no reply came.
                    tracing::debug!(text, "re-sending after a reconnect");
                    self.send(text)?;
                    resent += 1;
                    resend_at = None;
                    carrier = events.connection();
                    continue;
                }
            };
            let Some(event) = event else {
                return Err(DeliveryError::Stopped);
            };
            observe(&event);
            match event {
                Event::Message(reply) if is_reply(&reply) => return Ok(Delivered { resent }),
                Event::Connected { connection } => {
                    reply_by = deadline(config.reply_timeout);
                    // `carrier` came from the events read before this one,
                    // so this connect is a later connection than it
                    // (`Events::connection` never runs ahead of the events).
                    match carrier {
                        None => carrier = Some(connection),
                        Some(_) => resend_at = deadline(config.resend_after),
                    }
                }
                Event::Disconnected { reason } => {
                    // Offline: no deadline and no re-send until a connect.
                    (reply_by, resend_at) = (None, None);
                    last_error = reason.to_string();
                }
                Event::ConnectFailed { error } => last_error = error,
                Event::GaveUp { attempts } => {
                    return Err(DeliveryError::GaveUp {
                        attempts,
                        last_error,
                    });
                }
                _ => {}
            }
        }
    }
}
