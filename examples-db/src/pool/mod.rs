//! A generic async connection pool: how `sqlx::Pool`, deadpool and bb8 work.
//!
//! Ports seed Example 6. The Python `AsyncConnectionPool` hands out
//! dictionaries that pretend to be connections, and its bookkeeping breaks
//! under the first exception or cancellation: `in_use` is a plain counter
//! bumped in `acquire` and lowered in `release`, so a task cancelled between
//! the two (or a `release` that finds `connected == False`) leaks a slot
//! forever; overflow connections are `put` back into the queue and never
//! closed, so the pool only grows; a waiter blocks on `queue.get()` with no
//! timeout; and `close()` ignores connections still in use.
//!
//! This pool fixes each of those with one tokio idea apiece:
//!
//! - **A `tokio::sync::Semaphore` with `size + max_overflow` permits** caps
//!   the connections alive at once. tokio's semaphore is fair, so waiters are
//!   served in FIFO order, and dropping an `acquire()` future (a timeout, an
//!   aborted task) removes the waiter cleanly.
//! - **An RAII guard**, [`PooledConnection`], owns the connection and the
//!   permit. Its `Drop` returns both, so release happens on every path:
//!   normal return, `?`, panic, cancellation. There is no `release()` to
//!   forget.
//! - **Stats that cannot drift**: `idle` and `in_use` change together, under
//!   one std `Mutex`, only in code that cannot be interrupted by an `.await`;
//!   every connection is wrapped so that dropping it, wherever that happens,
//!   counts it as closed. See [`stats`].
//! - **A health check on checkout** ([`Manager::recycle`]): a connection that
//!   broke while idle (server restart, killed backend) is discarded and
//!   replaced before anyone sees it.
//! - **Overflow shrinks back**: a connection returned while `size` are
//!   already idle is closed, not kept.
//! - **`close(deadline)`** refuses new acquires, closes idle connections and
//!   waits, bounded, for the ones in use.
//!
//! Primitives: `Semaphore` (FIFO admission), std `Mutex<VecDeque>` (the idle
//! list; never held across an `.await`), `Notify` (wakes `close()` as guards
//! return), `time::Sleep` (the acquire deadline, armed only when an acquire
//! has to wait), atomics (counters).
//!
//! # Which pool should you use?
//!
//! - **`sqlx::Pool`** when you use sqlx: it is this design plus statement
//!   caches, connection lifetimes, idle reaping and `before_acquire` hooks.
//! - **deadpool** for anything else with a `Manager` (redis, lapin, your own
//!   clients): small, fast, runtime-agnostic; the closest to this module.
//! - **bb8** if you want r2d2's API in async form (min-idle reaping, a
//!   connection customizer, `ErrorSink`).
//!
//! This one is shown because the mechanism is the lesson: ~500 lines of code
//! (plus comments) you can read in one sitting, benchmarked beside deadpool
//! (`connection-pool --bench`, code in `demo/bench.rs`).
//!
//! # Hostile behaviour it defends against
//!
//! - **A database that hangs** on connect or on a health check: the
//!   acquire timeout bounds permit, check and connect together.
//! - **A backend killed while idle**: the checkout health check discards
//!   it and opens a replacement; the caller never sees it.
//! - **Callers cancelled anywhere** (timeouts, aborted tasks) and
//!   **holders that panic**: the guard returns the slot on every path, and
//!   a connection whose state is unknown (mid-check, or held by a panicking
//!   task) is closed, never reused.
//! - **Holders that never give a connection back**: `close(deadline)`
//!   stops waiting at the deadline and reports how many were still out.
//! - **A close racing a checkout**: a `get()` still inside its health check
//!   when `close()` runs is refused, so a closed pool never lends.
//! - **Absurd durations** (`Duration::MAX` as a timeout or deadline):
//!   every `Instant + Duration` is checked and saturates at about 30 years.
//!
//! ```text
//! cargo run --bin connection-pool                       # SQLite in a temp dir
//! cargo run --bin connection-pool -- --database-url postgres://postgres@127.0.0.1:5432/test
//! cargo test -p examples-db --test pool --test cancellation --test pool_sql
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p examples-db -- --ignored needs_postgres
//! cargo run --release --bin connection-pool -- --bench   # beside deadpool
//! ```

mod guard;
pub mod stats;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::time::{self, Instant};

pub use guard::PooledConnection;
pub use stats::PoolStats;

use stats::{Counters, Tracked, WaitTimes};

/// Creates and checks the connections a [`Pool`] manages.
///
/// Implement it for your client type; the pool does the rest. The same shape
/// as deadpool's `Manager`, so moving to deadpool later is mechanical.
pub trait Manager: Send + Sync + 'static {
    /// The pooled thing (a `sqlx::SqliteConnection`, a client, ...).
    type Connection: Send + 'static;
    /// What creating or checking a connection can fail with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection.
    fn create(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// Checks an idle connection before it is handed out (a ping). An error
    /// discards the connection; the pool then tries the next idle one or
    /// opens a new one, so the caller never sees a dead connection.
    fn recycle(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Closes a connection gracefully (a `Terminate` message for
    /// PostgreSQL). Used by [`Pool::close`]; the default just drops it.
    fn close(&self, conn: Self::Connection) -> impl Future<Output = ()> + Send {
        drop(conn);
        std::future::ready(())
    }
}

/// How big the pool is and how long an acquire may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections kept open (idle or in use).
    pub size: usize,
    /// Extra connections opened under load and closed when returned while
    /// `size` are already idle.
    pub max_overflow: usize,
    /// The longest [`Pool::get`] waits (for a permit, a health check and a
    /// new connection together) before [`PoolError::Timeout`].
    pub acquire_timeout: Duration,
}

impl Default for PoolConfig {
    /// The seed's numbers: 5 connections plus 3 overflow; a 5 s timeout.
    fn default() -> Self {
        Self {
            size: 5,
            max_overflow: 3,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Why [`Pool::get`] returned no connection. Callers `match` on it: a
/// timeout is back-pressure (shed load, answer 503), `Connect` is an outage.
#[derive(Debug, thiserror::Error)]
pub enum PoolError<E: std::error::Error + 'static> {
    /// No connection became available within the acquire timeout.
    #[error("timed out after {waited:?} waiting for a pooled connection")]
    Timeout {
        /// How long the caller waited.
        waited: Duration,
    },
    /// [`Pool::close`] was called.
    #[error("the pool is closed")]
    Closed,
    /// Opening a new connection failed.
    #[error("cannot open a connection")]
    Connect(#[source] E),
}

/// A [`PoolConfig`] that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid pool configuration: {0}")]
pub struct ConfigError(&'static str);

/// What [`Pool::close`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CloseReport {
    /// Idle connections closed at once.
    pub closed_idle: usize,
    /// Connections still checked out when the deadline passed (0 = clean).
    pub still_in_use: usize,
}

/// A pool of connections made by `M`. Cheap to clone (an `Arc`): clones
/// share the same connections.
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// What an acquire that has to wait carries: when it started, its deadline
/// timer, and its place in the `waiting` count (released on drop, so a
/// cancelled acquire stops counting too).
struct SlowPath<'a> {
    started: Instant,
    // Boxed so `get()` can create it lazily inside `poll_fn` (a `Sleep` is
    // !Unpin); one allocation, only for acquires that really wait.
    timer: Pin<Box<time::Sleep>>,
    _waiting: stats::WaitingGuard<'a>,
}

impl<'a> SlowPath<'a> {
    fn start<M: Manager>(shared: &'a Shared<M>) -> Self {
        let started = Instant::now();
        Self {
            started,
            timer: Box::pin(time::sleep_until(after(
                started,
                shared.config.acquire_timeout,
            ))),
            _waiting: shared.counters.waiting(),
        }
    }
}

/// About 30 years: what "no deadline" means (tokio's own far future).
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + wait`, checked: a wait too long for the clock (a caller's
/// `Duration::MAX`) becomes [`FAR_FUTURE`] instead of a panic.
fn after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait).unwrap_or(now + FAR_FUTURE)
}

/// Everything the pool handles and the guards share.
struct Shared<M: Manager> {
    manager: M,
    config: PoolConfig,
    /// One permit per connection that may exist: `size + max_overflow`.
    permits: Semaphore,
    /// std Mutex: every critical section is a few pointer moves, and none
    /// contains an `.await` (a tokio Mutex would cost more for nothing).
    state: Mutex<State<M::Connection>>,
    /// In their own `Arc` because every live connection points at them
    /// (pointing at `Shared` would be a cycle through `idle`).
    counters: Arc<Counters>,
    wait_times: WaitTimes,
    /// Woken whenever a guard comes back to a closed pool.
    returned: Notify,
}

/// The part of the pool that changes together.
struct State<C> {
    /// Healthy connections nobody holds, oldest first.
    idle: VecDeque<Tracked<C>>,
    /// Guards alive (including one whose connection is being health-checked).
    in_use: usize,
    /// Set by `close()`: returned connections are dropped, not kept.
    closed: bool,
}

impl<M: Manager> Shared<M> {
    fn state(&self) -> MutexGuard<'_, State<M::Connection>> {
        // Poisoning needs a panic inside a critical section; ours only move
        // values between a VecDeque and counters, so the data is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<M: Manager> Pool<M> {
    /// A pool that opens connections on demand (see [`Pool::fill`]).
    pub fn new(manager: M, config: PoolConfig) -> Result<Self, ConfigError> {
        let max = config
            .size
            .checked_add(config.max_overflow)
            .ok_or(ConfigError("size + max_overflow overflows"))?;
        if max == 0 {
            return Err(ConfigError("size + max_overflow must be at least 1"));
        }
        if max > Semaphore::MAX_PERMITS {
            return Err(ConfigError("size + max_overflow is too large"));
        }
        if config.acquire_timeout.is_zero() {
            return Err(ConfigError("acquire_timeout must be positive"));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                manager,
                config,
                permits: Semaphore::new(max),
                state: Mutex::new(State {
                    idle: VecDeque::with_capacity(config.size),
                    in_use: 0,
                    closed: false,
                }),
                counters: Arc::default(),
                wait_times: WaitTimes::new(),
                returned: Notify::new(),
            }),
        })
    }

    /// Opens connections until `size` exist (the seed's `init()`). Call it
    /// at start-up so a wrong database URL fails there, not on the first
    /// request. It checks out `size` connections at once through the normal
    /// path and returns them, so it obeys every limit [`Pool::get`] does.
    pub async fn fill(&self) -> Result<(), PoolError<M::Error>> {
        let checkouts = (0..self.shared.config.size).map(|_| self.get());
        let guards = futures::future::try_join_all(checkouts).await?;
        // Dropping them returns all `size` to the idle list.
        drop(guards);
        Ok(())
    }

    /// Checks out a connection, waiting (FIFO) up to the acquire timeout.
    ///
    /// Cancel-safe: dropping the future at any point leaves no trace in the
    /// pool except, at worst, a connection that was mid-health-check being
    /// closed (its protocol state is unknown, so it must not be reused).
    pub async fn get(&self) -> Result<PooledConnection<M>, PoolError<M::Error>> {
        let mut checkout = pin!(self.checkout());
        // The acquire timeout, armed lazily: `time::timeout` would build its
        // timer (and read the clock) on every call, yet most acquires in a
        // healthy service finish on their first poll and need none. So we
        // poll the checkout first, and only when it is Pending (we are
        // queued, or connecting) start the clock, count ourselves as
        // waiting, and arm the timer. Each later poll tries the checkout
        // before the timer, as `time::timeout` does.
        let mut slow: Option<SlowPath<'_>> = None;
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = checkout.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            let slow = slow.get_or_insert_with(|| SlowPath::start(&self.shared));
            // Ready(()) = the deadline passed with the checkout still pending.
            slow.timer.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match (outcome, slow) {
            (Some(Ok(conn)), None) => {
                self.shared.wait_times.record_immediate();
                Ok(conn)
            }
            (Some(Ok(conn)), Some(slow)) => {
                self.shared.wait_times.record(slow.started.elapsed());
                Ok(conn)
            }
            (Some(Err(err)), _) => Err(err),
            (None, slow) => {
                self.shared
                    .counters
                    .timeouts
                    .fetch_add(1, Ordering::Relaxed);
                // `None` is only produced by the timer, which exists only
                // on the slow path.
                let started = slow.expect("a timeout implies the slow path").started;
                Err(PoolError::Timeout {
                    waited: started.elapsed(),
                })
            }
        }
    }

    /// The acquire itself, without the timeout.
    async fn checkout(&self) -> Result<PooledConnection<M>, PoolError<M::Error>> {
        let shared = &self.shared;
        // Fails only once `close()` has closed the semaphore.
        let permit = shared
            .permits
            .acquire()
            .await
            .map_err(|_closed| PoolError::Closed)?;
        loop {
            // Pop and count as in use in one critical section, so a stats
            // snapshot never sees the connection in both places or neither.
            let popped = {
                let mut state = shared.state();
                if state.closed {
                    return Err(PoolError::Closed);
                }
                let popped = state.idle.pop_front();
                if popped.is_some() {
                    state.in_use += 1;
                }
                popped
            };
            let Some(conn) = popped else { break };
            // The guard exists *before* the health check: if we are
            // cancelled mid-check, its Drop discards the connection and
            // lowers `in_use`. It is not yet reusable and holds no permit
            // (the borrowed `permit` still does).
            let mut guard = PooledConnection::checking(Arc::clone(shared), conn);
            match shared.manager.recycle(guard.connection_mut()).await {
                Ok(()) => {
                    // `close()` may have run while we were checking (it
                    // cannot take this connection: it is not idle). Look
                    // again before handing it out: the unarmed guard then
                    // closes the connection, lowers `in_use` and wakes
                    // `close()`, so a closed pool never lends (issue 15.16).
                    if shared.state().closed {
                        drop(guard);
                        return Err(PoolError::Closed);
                    }
                    // From here the guard gives the permit back on Drop.
                    permit.forget();
                    guard.arm();
                    return Ok(guard);
                }
                Err(err) => {
                    shared
                        .counters
                        .health_check_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %err, "pooled connection failed its health check; replacing it");
                    // Not armed, so dropping closes the connection; we keep
                    // our permit and try the next idle one.
                    drop(guard);
                }
            }
        }
        // No idle connection: we hold a permit, so opening one stays within
        // `size + max_overflow`. If creation fails or we are cancelled, the
        // borrowed permit is released by its own Drop.
        let conn = self.create().await?;
        let admitted = {
            let mut state = shared.state();
            if !state.closed {
                state.in_use += 1;
            }
            !state.closed
        };
        if !admitted {
            return Err(PoolError::Closed); // `conn` drops here: counted closed
        }
        // No `.await` between `in_use += 1` and the guard: nothing can
        // cancel us in between, so the count and the guard stay paired.
        let mut guard = PooledConnection::checking(Arc::clone(shared), conn);
        permit.forget();
        guard.arm();
        Ok(guard)
    }

    /// Opens one connection and wraps it so its end is always counted.
    async fn create(&self) -> Result<Tracked<M::Connection>, PoolError<M::Error>> {
        let conn = self
            .shared
            .manager
            .create()
            .await
            .map_err(PoolError::Connect)?;
        Ok(Tracked::new(conn, &self.shared.counters))
    }

    /// A consistent snapshot of the pool's numbers.
    pub fn stats(&self) -> PoolStats {
        let shared = &self.shared;
        let (idle, in_use) = {
            let state = shared.state();
            (state.idle.len(), state.in_use)
        };
        shared
            .counters
            .snapshot(shared.config, idle, in_use, shared.wait_times.summary())
    }

    /// The manager (for its own settings or counters).
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> PoolConfig {
        self.shared.config
    }

    /// Refuses new acquires (waiters get [`PoolError::Closed`]), closes idle
    /// connections through [`Manager::close`], and waits up to `deadline`
    /// for checked-out connections to come back (they are closed as they
    /// do). The pool stays closed; later acquires fail at once.
    pub async fn close(&self, deadline: Duration) -> CloseReport {
        let deadline = after(Instant::now(), deadline);
        let idle = {
            let mut state = self.shared.state();
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        // Wakes every queued acquire with an error.
        self.shared.permits.close();
        let closed_idle = idle.len();
        for conn in idle {
            let conn = conn.into_inner();
            if time::timeout_at(deadline, self.shared.manager.close(conn))
                .await
                .is_err()
            {
                tracing::warn!("closing an idle connection overran the close deadline");
            }
        }
        loop {
            // Register interest *before* checking, so a guard returning
            // between the check and the await still wakes us.
            let mut returned = pin!(self.shared.returned.notified());
            returned.as_mut().enable();
            let in_use = self.shared.state().in_use;
            if in_use == 0 {
                return CloseReport {
                    closed_idle,
                    still_in_use: 0,
                };
            }
            if time::timeout_at(deadline, returned).await.is_err() {
                tracing::warn!(in_use, "close deadline passed with connections in use");
                return CloseReport {
                    closed_idle,
                    still_in_use: self.shared.state().in_use,
                };
            }
        }
    }
}
