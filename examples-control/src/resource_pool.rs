//! A resource pool where the permit *is* the resource.
//!
//! Ports seed Example 8 ("Semaphore for Resource Limiting"). The Python
//! version guards a counter with `asyncio.Semaphore(5)`: the semaphore says
//! "five users at a time", but there are no resource objects at all, only
//! the count. The moment real resources (connections, buffers, licences)
//! are added, something else must decide which user gets which one, and
//! that is where two users end up sharing an object. The bookkeeping
//! (`active_count`) lives beside the semaphore, where a forgotten
//! decrement drifts it. It also has no acquire timeout, no way to turn
//! waiters away at shutdown, and no record of how long anyone waited.
//!
//! Here the pool holds the resource objects themselves, and
//! [`ResourcePool::acquire`] returns a [`Pooled`] guard that owns one
//! specific resource *and* the semaphore permit for it. Two users can
//! never share a resource (the guard hands out `&mut T`, and the type
//! system does the rest), and dropping the guard returns the resource first and the
//! permit second, however the holder ends: normal return, `?`, panic or task
//! cancellation. On top of that:
//!
//! - **FIFO fairness**: `tokio::sync::Semaphore` queues waiters in arrival
//!   order and hands a released permit straight to the oldest waiter, so a
//!   newcomer's fast path cannot barge past someone already queued.
//! - **Acquire timeout**: `tokio::time::timeout` around the wait; a timed-out
//!   waiter is removed from the queue and counted in [`PoolStats::timeouts`].
//! - **Cancellation leaks nothing**: dropping an `acquire` future removes the
//!   waiter from the semaphore's queue; once the permit is granted, the rest
//!   of `acquire` is synchronous, so there is no await at which a granted
//!   permit could be lost.
//! - **`close()`** closes the semaphore: every waiter wakes at once with
//!   [`PoolError::Closed`], new callers fail fast, holders keep their
//!   resources until they drop them.
//! - **Observability**: wait-time percentiles, the high-water mark of
//!   concurrent holders, acquisitions, timeouts, current waiters.
//!
//! Hostile behaviour it defends against: **callers cancelled** while
//! queued or just granted (nothing leaks, see above); **holders that
//! panic** (the guard still returns the resource); **holders that never
//! let go** (waiters time out with a typed error; `close()` turns the rest
//! away; the `semaphore-pool` demo cancels holders after `--drain-timeout`
//! on shutdown); **absurd timeouts** (`tokio::time::timeout` saturates a
//! `Duration::MAX` deadline instead of overflowing).
//!
//! Primitives: `Arc<tokio::sync::Semaphore>` + `acquire_owned` (the permit
//! can travel into a spawned task), a `std::sync::Mutex` around the idle
//! list (never held across an `.await`), `tokio::time::timeout`.
//!
//! Production: for connections use your driver's pool (`sqlx::Pool`,
//! `deadpool`, `bb8`): they add health checks, recycling and creation on
//! demand. For a plain "at most N at once" limit with nothing to hand out,
//! a bare `tokio::sync::Semaphore` is enough. This module shows the
//! mechanism those pools share, in one page.
//!
//! ```text
//! cargo run --bin semaphore-pool                      # 20 users, 5 resources, a timeline
//! cargo run --release --bin semaphore-pool -- --bench # acquire+release per second
//! cargo test -p examples-control --test resource_pool
//! ```

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::{LatencyRecorder, LatencySummary};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Why an acquire failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// No resource came free within the acquire timeout.
    #[error("no resource free within {0:?}")]
    Timeout(Duration),
    /// The pool was closed, before or while the caller waited.
    #[error("pool is closed")]
    Closed,
}

/// A snapshot of the pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// Resources the pool was built with.
    pub size: usize,
    /// Resources handed out right now.
    pub in_use: usize,
    /// The most resources ever handed out at the same moment.
    pub high_water: usize,
    /// Callers queued for a resource right now.
    pub waiting: usize,
    /// Successful acquisitions so far.
    pub acquired: u64,
    /// Acquires that gave up after the timeout.
    pub timeouts: u64,
    /// Acquires refused because the pool was closed.
    pub rejected_closed: u64,
    /// How long successful acquires waited (zero on the fast path).
    pub wait: LatencySummary,
}

/// Everything the idle list's lock protects; all of it changes together.
#[derive(Debug)]
struct Shelf<T> {
    /// Resources not handed out. A stack: the most recently returned
    /// resource goes out next, which keeps a warm connection warm.
    idle: Vec<T>,
    in_use: usize,
    high_water: usize,
    waiting: usize,
    acquired: u64,
    timeouts: u64,
    rejected_closed: u64,
    waits: LatencyRecorder,
}

#[derive(Debug)]
struct Inner<T> {
    /// One permit per idle resource. Invariant: a granted permit always
    /// finds a resource on the shelf, because a resource goes back on the
    /// shelf *before* its permit is released (see `Pooled::drop`).
    permits: Arc<Semaphore>,
    /// std Mutex: every critical section is a few field updates with no
    /// `.await` inside, so a blocking lock is both correct and fastest.
    shelf: Mutex<Shelf<T>>,
    size: usize,
    timeout: Duration,
}

impl<T> Inner<T> {
    fn shelf(&self) -> std::sync::MutexGuard<'_, Shelf<T>> {
        // Poisoning would mean a panic inside one of our short critical
        // sections, each of which leaves the shelf consistent at every
        // step; recovering the data is therefore safe.
        self.shelf.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fixed set of resources handed out one guard at a time. Cheap to clone
/// (all clones share the same pool).
#[derive(Debug)]
pub struct ResourcePool<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for ResourcePool<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> ResourcePool<T> {
    /// A pool of `resources` whose [`acquire`](Self::acquire) waits at most
    /// `timeout`. An empty pool is allowed; every acquire then times out.
    pub fn new(resources: Vec<T>, timeout: Duration) -> Self {
        let size = resources.len();
        let shelf = Shelf {
            idle: resources,
            in_use: 0,
            high_water: 0,
            waiting: 0,
            acquired: 0,
            timeouts: 0,
            rejected_closed: 0,
            waits: LatencyRecorder::new(),
        };
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(size)),
                shelf: Mutex::new(shelf),
                size,
                timeout,
            }),
        }
    }

    /// Takes a resource, waiting up to the pool's timeout.
    pub async fn acquire(&self) -> Result<Pooled<T>, PoolError> {
        self.acquire_within(self.inner.timeout).await
    }

    /// Takes a resource, waiting up to `timeout` (FIFO among waiters).
    pub async fn acquire_within(&self, timeout: Duration) -> Result<Pooled<T>, PoolError> {
        let permits = &self.inner.permits;
        // Fast path, no clock read and no timer: a free permit. It cannot
        // jump the queue: tokio hands released permits to queued waiters
        // directly, so a permit is only "free" when nobody is waiting.
        if let Ok(permit) = Arc::clone(permits).try_acquire_owned() {
            return Ok(self.take(permit, Duration::ZERO));
        }
        if permits.is_closed() {
            self.inner.shelf().rejected_closed += 1;
            return Err(PoolError::Closed);
        }
        // Slow path: queue up. Counted as waiting until this function
        // returns *or is cancelled*, hence the guard rather than a decrement.
        let started = Instant::now();
        let _waiting = WaitingGuard::enter(&self.inner);
        match tokio::time::timeout(timeout, Arc::clone(permits).acquire_owned()).await {
            // From here to the return there is no `.await`: a permit that
            // was granted cannot be dropped on the floor by cancellation.
            Ok(Ok(permit)) => Ok(self.take(permit, started.elapsed())),
            // acquire_owned fails only when the semaphore is closed.
            Ok(Err(_closed)) => {
                self.inner.shelf().rejected_closed += 1;
                Err(PoolError::Closed)
            }
            // Dropping the acquire future (inside timeout) left the queue.
            Err(_elapsed) => {
                self.inner.shelf().timeouts += 1;
                Err(PoolError::Timeout(timeout))
            }
        }
    }

    /// Moves one resource off the shelf into a guard with its permit.
    fn take(&self, permit: OwnedSemaphorePermit, waited: Duration) -> Pooled<T> {
        let mut shelf = self.inner.shelf();
        // Invariant above: permits never outnumber idle resources.
        let resource = shelf.idle.pop().expect("a granted permit has a resource");
        shelf.in_use += 1;
        shelf.high_water = shelf.high_water.max(shelf.in_use);
        shelf.acquired += 1;
        shelf.waits.record(waited);
        drop(shelf);
        Pooled {
            resource: Some(resource),
            pool: Arc::clone(&self.inner),
            _permit: permit,
            waited,
        }
    }

    /// Turns every current and future waiter away with [`PoolError::Closed`].
    /// Resources already handed out stay with their holders until dropped.
    pub fn close(&self) {
        self.inner.permits.close();
    }

    /// True once [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.permits.is_closed()
    }

    /// Resources on the shelf right now.
    pub fn idle(&self) -> usize {
        self.inner.shelf().idle.len()
    }

    /// Resources handed out right now.
    pub fn in_use(&self) -> usize {
        self.inner.shelf().in_use
    }

    /// The pool's counters and wait-time summary.
    pub fn stats(&self) -> PoolStats {
        let shelf = self.inner.shelf();
        PoolStats {
            size: self.inner.size,
            in_use: shelf.in_use,
            high_water: shelf.high_water,
            waiting: shelf.waiting,
            acquired: shelf.acquired,
            timeouts: shelf.timeouts,
            rejected_closed: shelf.rejected_closed,
            wait: shelf.waits.summary(),
        }
    }
}

/// Counts a caller as waiting for exactly as long as it exists.
struct WaitingGuard<'a, T>(&'a Inner<T>);

impl<'a, T> WaitingGuard<'a, T> {
    fn enter(inner: &'a Inner<T>) -> Self {
        inner.shelf().waiting += 1;
        Self(inner)
    }
}

impl<T> Drop for WaitingGuard<'_, T> {
    fn drop(&mut self) {
        self.0.shelf().waiting -= 1;
    }
}

/// One resource on loan from a [`ResourcePool`]; derefs to it. Dropping the
/// guard puts the resource back and only then releases the permit.
#[derive(Debug)]
pub struct Pooled<T> {
    /// `Some` from creation until `drop` moves it back to the shelf.
    resource: Option<T>,
    pool: Arc<Inner<T>>,
    /// Released when the guard's fields drop, which Rust does *after*
    /// `Drop::drop` has run: the resource is back before the permit is.
    _permit: OwnedSemaphorePermit,
    waited: Duration,
}

impl<T> Pooled<T> {
    /// How long this acquire waited in the queue (zero on the fast path).
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl<T> Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Only `drop` empties the option, and nothing can deref after it.
        self.resource.as_ref().expect("resource present until drop")
    }
}

impl<T> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        // As in `deref`.
        self.resource.as_mut().expect("resource present until drop")
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        let mut shelf = self.pool.shelf();
        if let Some(resource) = self.resource.take() {
            shelf.idle.push(resource);
        }
        shelf.in_use -= 1;
        // The permit is released after this body, when `_permit` drops.
    }
}
