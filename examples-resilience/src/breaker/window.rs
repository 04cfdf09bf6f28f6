//! A time-based sliding window of call outcomes, in fixed buckets.
//!
//! "Failure rate over the last 10 s" could keep every call's timestamp, but
//! that is unbounded memory under load. Instead the window is cut into
//! [`BUCKETS`] buckets (1 s each for a 10 s window); a call increments the
//! bucket of its instant, and a bucket older than the window is reset when
//! its slot is reused. Memory is fixed, recording is O(1), reading the
//! totals is O(BUCKETS), and the window slides in steps of one bucket:
//! the usual trade (Resilience4j, Hystrix) of precision for constant cost.

use std::time::Duration;

use tokio::time::Instant;

/// Buckets per window: the window slides in steps of `window / BUCKETS`.
pub(crate) const BUCKETS: usize = 10;

/// Calls and failures seen in one bucket of time.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket of time (counted from the window's epoch) this holds;
    /// `None` for a slot never used since the last clear.
    index: Option<u64>,
    calls: u32,
    failures: u32,
}

/// Outcome counts over the last `window` of time.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    epoch: Instant,
    bucket_nanos: u128,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    /// An empty window spanning `window` (at least `BUCKETS` nanoseconds).
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        Self {
            epoch: now,
            bucket_nanos: (window.as_nanos() / BUCKETS as u128).max(1),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// The bucket of time `now` falls in.
    fn index(&self, now: Instant) -> u64 {
        // saturating_duration_since: an instant before the epoch (cannot
        // happen with a monotonic clock) lands in bucket 0, not a panic.
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos / self.bucket_nanos).unwrap_or(u64::MAX)
    }

    /// Counts one call at `now`.
    pub(crate) fn record(&mut self, now: Instant, failed: bool) {
        let index = self.index(now);
        let bucket = &mut self.buckets[(index % BUCKETS as u64) as usize];
        // Callers read the clock before taking the breaker's lock, so a
        // call can arrive with an instant a hair older than the last one:
        // it is counted in the newer bucket rather than wiping it.
        if bucket.index.is_none_or(|i| i < index) {
            // The slot is empty or holds a bucket from a previous lap.
            *bucket = Bucket {
                index: Some(index),
                calls: 0,
                failures: 0,
            };
        }
        bucket.calls = bucket.calls.saturating_add(1);
        bucket.failures = bucket.failures.saturating_add(u32::from(failed));
    }

    /// `(calls, failures)` over the window ending at `now`.
    pub(crate) fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.index(now);
        self.buckets
            .iter()
            // checked_sub: a bucket "newer" than `now` (see record) is current.
            .filter(|b| {
                b.index.is_some_and(|i| {
                    current
                        .checked_sub(i)
                        .is_none_or(|age| age < BUCKETS as u64)
                })
            })
            .fold((0u32, 0u32), |(calls, failures), b| {
                (
                    calls.saturating_add(b.calls),
                    failures.saturating_add(b.failures),
                )
            })
    }

    /// Forgets everything (the breaker closed: a fresh start).
    pub(crate) fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn counts_calls_inside_the_window_and_forgets_older_ones() {
        let t0 = Instant::now();
        let mut window = Window::new(1000 * MS, t0);
        window.record(t0, true);
        window.record(t0 + 150 * MS, false);
        window.record(t0 + 950 * MS, true);
        assert_eq!(window.totals(t0 + 950 * MS), (3, 2));
        // At 1.05 s the bucket [0, 100 ms) has left the window.
        assert_eq!(window.totals(t0 + 1050 * MS), (2, 1));
        // At 2 s nothing recorded is younger than the window.
        assert_eq!(window.totals(t0 + 2000 * MS), (0, 0));
    }

    #[test]
    fn a_reused_slot_starts_from_zero() {
        let t0 = Instant::now();
        let mut window = Window::new(1000 * MS, t0);
        window.record(t0, true);
        // Same slot (index 10 % 10 == 0), one lap later.
        window.record(t0 + 1000 * MS, false);
        assert_eq!(window.totals(t0 + 1000 * MS), (1, 0));
    }
}
