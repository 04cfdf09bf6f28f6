//! Channels: one `tokio::sync::broadcast` each, created on first subscribe,
//! removed with their last subscriber, each with a supervised ticker.
//!
//! `broadcast` is a ring buffer of `capacity` messages shared by every
//! receiver: a send never waits for receivers (so a slow client cannot
//! stall the publisher), and a receiver that falls more than `capacity`
//! messages behind gets `RecvError::Lagged(n)` instead of silently losing
//! them. The payload is `Utf8Bytes` (reference-counted), so a message is
//! serialised once and shared by all 1,000 writers, not copied 1,000 times.
//!
//! With a bus (`--bus redis://...`, see `server/bus.rs`) the registry is
//! also the bus's list of wanted channels: creating or removing a channel
//! tells the bus task to SUBSCRIBE or UNSUBSCRIBE, and the bus task pushes
//! what Redis sends into the channel's ring with [`Channel::deliver`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bus::Bus;
use crate::message::{ChatMessage, SERVER_NAME, TICKER_NAME, now_ms};

/// One channel: its sender and its sequence counter.
#[derive(Debug)]
pub(crate) struct Channel {
    name: String,
    /// The sequence number and the send happen under this lock, so the ring
    /// holds messages in `seq` order even with many concurrent publishers.
    /// std Mutex: held for one serialisation and one non-blocking send, never
    /// across an `.await`.
    seq: Mutex<u64>,
    tx: broadcast::Sender<Utf8Bytes>,
    published: Arc<AtomicU64>,
}

impl Channel {
    /// Publishes `text` from `from`; returns its sequence number.
    pub(crate) fn publish(&self, from: &str, text: &str) -> u64 {
        // A poisoned lock means a panic mid-publish; the counter is still a
        // plain integer, so carrying on is safe.
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        let message = ChatMessage {
            channel: self.name.clone(),
            seq: *seq,
            from: from.to_owned(),
            text: text.to_owned(),
            ts: now_ms(),
            missed: None,
        };
        // Serialising plain structs of strings and integers cannot fail.
        let json = serde_json::to_string(&message).expect("ChatMessage serialises");
        // Err = no receivers right now; a message to an empty room is gone
        // by definition, not lost.
        let _ = self.tx.send(Utf8Bytes::from(json));
        self.published.fetch_add(1, Ordering::Relaxed);
        *seq
    }

    /// Puts a frame that came back from the bus into the ring, as it is:
    /// the bus assigned its `seq`, so every instance sends the same frame.
    pub(crate) fn deliver(&self, frame: Utf8Bytes) {
        // Err = no receivers right now (the last one just left).
        let _ = self.tx.send(frame);
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// A server notice (`seq` 0, from [`SERVER_NAME`]) to everyone here.
    pub(crate) fn notice(&self, text: &str) {
        let _ = self.tx.send(notice(self.name(), text, None));
    }

    /// The channel's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// A server notice frame: `seq` 0, not part of the channel's sequence.
pub(crate) fn notice(channel: &str, text: &str, missed: Option<u64>) -> Utf8Bytes {
    let notice = ChatMessage {
        channel: channel.to_owned(),
        seq: 0,
        from: SERVER_NAME.to_owned(),
        text: text.to_owned(),
        ts: now_ms(),
        missed,
    };
    // Plain strings and integers: serialisation cannot fail.
    serde_json::to_string(&notice)
        .expect("ChatMessage serialises")
        .into()
}

struct Entry {
    channel: Arc<Channel>,
    subscribers: usize,
    /// Stops this channel's ticker when the channel goes away.
    ticker: CancellationToken,
}

/// The map of live channels.
pub(crate) struct Registry {
    /// std Mutex: every critical section is a map lookup or insert.
    channels: Mutex<HashMap<String, Entry>>,
    max_channels: usize,
    capacity: usize,
    tick_interval: Option<Duration>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    published: Arc<AtomicU64>,
    /// The cross-instance bus, if any: told about every new or removed
    /// channel, and the path every publish takes.
    bus: Option<Arc<Bus>>,
}

/// Refused: a new channel would pass `max_channels`.
#[derive(Debug)]
pub(crate) struct TooManyChannels;

impl Registry {
    pub(crate) fn new(
        max_channels: usize,
        capacity: usize,
        tick_interval: Option<Duration>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        bus: Option<Arc<Bus>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            channels: Mutex::new(HashMap::new()),
            max_channels,
            capacity: capacity.max(1), // broadcast::channel(0) panics
            tick_interval,
            tracker,
            shutdown,
            published: Arc::default(),
            bus,
        })
    }

    /// Joins `name`, creating it (and its ticker) if needed.
    pub(crate) fn subscribe(self: &Arc<Self>, name: &str) -> Result<Subscription, TooManyChannels> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if !channels.contains_key(name) {
            if channels.len() >= self.max_channels {
                return Err(TooManyChannels);
            }
            let (tx, _) = broadcast::channel(self.capacity);
            let channel = Arc::new(Channel {
                name: name.to_owned(),
                seq: Mutex::new(0),
                tx,
                published: self.published.clone(),
            });
            let ticker = self.shutdown.child_token();
            if let Some(period) = self.tick_interval {
                // Supervised, not fire-and-forget: the tracker lets shutdown
                // wait for it, and the token stops it with its channel.
                self.tracker.spawn(tick(
                    channel.clone(),
                    self.bus.clone(),
                    period,
                    ticker.clone(),
                ));
            }
            channels.insert(
                name.to_owned(),
                Entry {
                    channel,
                    subscribers: 0,
                    ticker,
                },
            );
            if let Some(bus) = &self.bus {
                bus.wanted_changed();
            }
        }
        // Just inserted or already present.
        let entry = channels.get_mut(name).expect("entry exists");
        entry.subscribers += 1;
        Ok(Subscription {
            rx: entry.channel.tx.subscribe(),
            channel: entry.channel.clone(),
            registry: self.clone(),
        })
    }

    /// The channel `name`, if it has subscribers.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<Channel>> {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.get(name).map(|entry| entry.channel.clone())
    }

    /// The names of the live channels (the bus subscribes to these).
    pub(crate) fn names(&self) -> Vec<String> {
        let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.keys().cloned().collect()
    }

    /// Sends a server notice to every live channel (bus down, bus back).
    pub(crate) fn notice_all(&self, text: &str) {
        let channels: Vec<Arc<Channel>> = {
            let channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            channels.values().map(|e| e.channel.clone()).collect()
        };
        for channel in channels {
            channel.notice(text);
        }
    }

    /// Live channels.
    pub(crate) fn len(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Messages published on all channels since start.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    fn unsubscribe(&self, name: &str) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = channels.get_mut(name) {
            entry.subscribers -= 1;
            if entry.subscribers == 0 {
                entry.ticker.cancel();
                channels.remove(name);
                tracing::debug!(channel = name, "channel removed: no subscribers");
                if let Some(bus) = &self.bus {
                    bus.wanted_changed();
                }
            }
        }
    }
}

/// Membership of one connection in one channel; leaving is `Drop`, so no
/// exit path (error, panic, shutdown) can forget it.
pub(crate) struct Subscription {
    pub(crate) rx: broadcast::Receiver<Utf8Bytes>,
    pub(crate) channel: Arc<Channel>,
    registry: Arc<Registry>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.registry.unsubscribe(self.channel.name());
    }
}

/// The external event source of a channel (standing in for Redis or Kafka).
/// With a bus, ticks go through it like any message (each instance ticks).
async fn tick(
    channel: Arc<Channel>,
    bus: Option<Arc<Bus>>,
    period: Duration,
    stop: CancellationToken,
) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut count = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = interval.tick() => {
                count += 1;
                let text = format!("tick {count}");
                match &bus {
                    None => {
                        channel.publish(TICKER_NAME, &text);
                    }
                    // A tick lost to a bus outage is just a missed tick.
                    Some(bus) => {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            _ = bus.publish(channel.name(), TICKER_NAME, &text) => {}
                        }
                    }
                }
            }
        }
    }
}

// The bus path (`deliver`, `names`, `notice_all`) is otherwise exercised only
// by the Redis tests (`tests/bus.rs`, ignored without a server), so the
// registry's own contract is pinned here, with no network at all.
#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    fn registry(tick_interval: Option<Duration>) -> Arc<Registry> {
        Registry::new(
            8,
            16,
            tick_interval,
            TaskTracker::new(),
            CancellationToken::new(),
            None,
        )
    }

    fn parse(frame: &Utf8Bytes) -> ChatMessage {
        serde_json::from_str(frame.as_str()).unwrap()
    }

    #[test]
    fn deliver_puts_the_frame_in_the_ring_as_it_is_and_counts_it() {
        let registry = registry(None);
        let mut sub = registry.subscribe("room").unwrap();
        let frame =
            Utf8Bytes::from_static(r#"{"channel":"room","seq":7,"from":"a","text":"x","ts":1}"#);
        sub.channel.deliver(frame.clone());
        assert_eq!(sub.rx.try_recv().unwrap(), frame);
        assert_eq!(registry.published(), 1);
        sub.channel.publish("b", "y");
        assert_eq!(registry.published(), 2, "publish and deliver both count");
    }

    #[test]
    fn a_notice_is_seq_0_from_the_server_and_is_not_counted_as_published() {
        let registry = registry(None);
        let mut sub = registry.subscribe("room").unwrap();
        sub.channel.notice("bus down");
        let notice = parse(&sub.rx.try_recv().unwrap());
        assert_eq!(
            (
                notice.channel.as_str(),
                notice.seq,
                notice.from.as_str(),
                notice.text.as_str()
            ),
            ("room", 0, SERVER_NAME, "bus down")
        );
        assert_eq!(registry.published(), 0);
    }

    #[test]
    fn get_and_names_see_exactly_the_channels_with_subscribers() {
        let registry = registry(None);
        assert!(registry.get("a").is_none());
        let a = registry.subscribe("a").unwrap();
        let b = registry.subscribe("b").unwrap();
        assert_eq!(registry.get("a").unwrap().name(), "a");
        let mut names = registry.names();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        drop(a);
        assert!(registry.get("a").is_none(), "gone with its last subscriber");
        assert_eq!(registry.names(), ["b"]);
        drop(b);
        assert!(registry.names().is_empty());
    }

    #[test]
    fn notice_all_reaches_every_live_channel() {
        let registry = registry(None);
        let mut a = registry.subscribe("a").unwrap();
        let mut b = registry.subscribe("b").unwrap();
        registry.notice_all("bus back");
        for (sub, name) in [(&mut a, "a"), (&mut b, "b")] {
            let notice = parse(&sub.rx.try_recv().unwrap());
            assert_eq!(
                (notice.channel.as_str(), notice.text.as_str()),
                (name, "bus back")
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_tick_comes_one_period_after_the_channel_opens() {
        let period = Duration::from_secs(10);
        let registry = registry(Some(period));
        let mut sub = registry.subscribe("room").unwrap();
        tokio::time::sleep(period / 2).await;
        assert_eq!(
            sub.rx.try_recv(),
            Err(TryRecvError::Empty),
            "no tick at once"
        );
        let tick = tokio::time::timeout(period, sub.rx.recv())
            .await
            .unwrap()
            .unwrap();
        let tick = parse(&tick);
        assert_eq!(
            (tick.from.as_str(), tick.text.as_str(), tick.seq),
            (TICKER_NAME, "tick 1", 1)
        );
    }
}
