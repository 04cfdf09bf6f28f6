//! Pool statistics that cannot drift.
//!
//! The seed's `in_use` is `+= 1` in one method and `-= 1` in another; any
//! exception or cancellation in between skews it for good. Here each number
//! is tied to something that cannot be skipped:
//!
//! - `idle` is the idle list's length, and `in_use` moves with it under the
//!   same lock, raised and lowered only by code with no `.await` inside
//!   (the checkout's critical section and the guard's `Drop`).
//! - `waiting` is held by a drop guard inside the acquire future, so a
//!   timed-out or aborted acquire lowers it too.
//! - `closed` is counted by the connection wrapper's (`Tracked`) `Drop`: a connection cannot end
//!   without being counted, wherever it is dropped. So at any quiet moment
//!   `created - closed == idle + in_use`, which the storm test asserts.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::LatencySummary;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::PoolConfig;

/// A point-in-time view of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Connections kept open.
    pub size: usize,
    /// Extra connections allowed under load.
    pub max_overflow: usize,
    /// Healthy connections waiting to be checked out.
    pub idle: usize,
    /// Connections checked out (including one being health-checked).
    pub in_use: usize,
    /// Acquires queued for a permit or a new connection.
    pub waiting: usize,
    /// Connections ever opened.
    pub created: u64,
    /// Connections ever closed (overflow returned, failed check, pool closed).
    pub closed: u64,
    /// Acquires that hit the acquire timeout.
    pub timeouts: u64,
    /// Idle connections that failed their checkout health check.
    pub health_check_failures: u64,
    /// Time from `get()` to a usable connection, over successful acquires.
    pub wait: LatencySummary,
}

impl std::fmt::Display for PoolStats {
    /// One line for live progress output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "idle {:>3}  in use {:>3}/{}+{}  waiting {:>3}  created {:>4}  closed {:>4}  timeouts {}  wait p99 {:.3} ms",
            self.idle,
            self.in_use,
            self.size,
            self.max_overflow,
            self.waiting,
            self.created,
            self.closed,
            self.timeouts,
            self.wait.p99.as_secs_f64() * 1e3,
        )
    }
}

/// The monotonic counters, plus the live `waiting` gauge.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) created: AtomicU64,
    pub(super) closed: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) health_check_failures: AtomicU64,
    waiting: AtomicUsize,
}

impl Counters {
    /// Counts one waiter until the returned guard drops.
    pub(super) fn waiting(&self) -> WaitingGuard<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        WaitingGuard(&self.waiting)
    }

    pub(super) fn snapshot(
        &self,
        config: PoolConfig,
        idle: usize,
        in_use: usize,
        wait: LatencySummary,
    ) -> PoolStats {
        // Relaxed is enough: each counter is exact on its own, and the
        // pool's structural numbers (idle, in_use) come from one lock.
        PoolStats {
            size: config.size,
            max_overflow: config.max_overflow,
            idle,
            in_use,
            waiting: self.waiting.load(Ordering::Relaxed),
            created: self.created.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            health_check_failures: self.health_check_failures.load(Ordering::Relaxed),
            wait,
        }
    }
}

/// Lowers `waiting` when the acquire future finishes or is dropped.
pub(super) struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A live connection. Creating one counts `created`; dropping it (or taking
/// it out with [`Tracked::into_inner`] to close it) counts `closed`.
pub(super) struct Tracked<C> {
    /// `Some` until `into_inner`, which consumes `self`.
    conn: Option<C>,
    counters: Arc<Counters>,
}

impl<C> Tracked<C> {
    pub(super) fn new(conn: C, counters: &Arc<Counters>) -> Self {
        counters.created.fetch_add(1, Ordering::Relaxed);
        Self {
            conn: Some(conn),
            counters: Arc::clone(counters),
        }
    }

    /// Hands the connection over for a graceful close; counted as closed.
    pub(super) fn into_inner(mut self) -> C {
        // `conn` is Some until this method, which consumes self.
        let conn = self.conn.take().expect("tracked connection present");
        self.counters.closed.fetch_add(1, Ordering::Relaxed);
        conn
    }

    pub(super) fn get(&self) -> &C {
        // As in `into_inner`: only None after it consumed self.
        self.conn.as_ref().expect("tracked connection present")
    }

    pub(super) fn get_mut(&mut self) -> &mut C {
        // As in `into_inner`: only None after it consumed self.
        self.conn.as_mut().expect("tracked connection present")
    }
}

impl<C> Drop for Tracked<C> {
    fn drop(&mut self) {
        if self.conn.is_some() {
            self.counters.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Acquire wait times. Immediate acquires (the fast path) only bump an
/// atomic; waits that took the slow path go into an HDR histogram.
pub(super) struct WaitTimes {
    immediate: AtomicU64,
    /// std Mutex: recording is a few adds, never across an `.await`.
    waited: Mutex<Histogram<u64>>,
}

/// The longest wait tracked exactly (longer ones are clamped): one hour.
const MAX_WAIT_NANOS: u64 = 3_600 * 1_000_000_000;

impl WaitTimes {
    pub(super) fn new() -> Self {
        Self {
            immediate: AtomicU64::new(0),
            // Constant bounds hdrhistogram accepts (low >= 1, high >= 2 low).
            waited: Mutex::new(
                Histogram::new_with_bounds(1, MAX_WAIT_NANOS, 3).expect("valid histogram bounds"),
            ),
        }
    }

    pub(super) fn record_immediate(&self) {
        self.immediate.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn record(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        // A poisoned histogram is still a valid histogram.
        let mut histogram = self.waited.lock().unwrap_or_else(PoisonError::into_inner);
        histogram.saturating_record(nanos.clamp(1, MAX_WAIT_NANOS));
    }

    /// Percentiles over every successful acquire, immediate ones as 0.
    pub(super) fn summary(&self) -> LatencySummary {
        let mut all = self
            .waited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        all.saturating_record_n(0, self.immediate.load(Ordering::Relaxed));
        if all.is_empty() {
            return LatencySummary::default();
        }
        let nanos = |v: u64| Duration::from_nanos(all.median_equivalent(v));
        LatencySummary {
            count: all.len(),
            mean: Duration::from_nanos(all.mean().round() as u64),
            p50: nanos(all.value_at_quantile(0.50)),
            p90: nanos(all.value_at_quantile(0.90)),
            p99: nanos(all.value_at_quantile(0.99)),
            max: nanos(all.max()),
        }
    }
}
