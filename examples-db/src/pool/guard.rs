//! The checked-out connection: an RAII guard that always finds its way home.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::stats::Tracked;
use super::{Manager, Shared};

/// A connection checked out of a [`Pool`](super::Pool). Use it as the
/// connection itself (`Deref`/`DerefMut`); drop it to give it back.
///
/// The Python seed needs `async with pool.connection()` plus a `finally`
/// to release, and still leaks on `CancelledError` raised between acquire
/// and `try`. Here there is no window: `Drop` runs on return, on `?`, on
/// panic (the connection is then closed, since its state is unknown) and
/// when the task holding it is cancelled or aborted.
pub struct PooledConnection<M: Manager> {
    shared: Arc<Shared<M>>,
    /// `Some` for the whole life of the guard; taken only in `Drop`.
    conn: Option<Tracked<M::Connection>>,
    /// Healthy and handed out: may go back to the idle list.
    reusable: bool,
    /// Owns one semaphore permit (a forgotten `SemaphorePermit`), given
    /// back in `Drop`. False while the checkout still holds its own permit.
    holds_permit: bool,
}

impl<M: Manager> PooledConnection<M> {
    /// A guard for a connection being health-checked: already counted in
    /// `in_use` by the caller, not yet reusable, no permit of its own.
    pub(super) fn checking(shared: Arc<Shared<M>>, conn: Tracked<M::Connection>) -> Self {
        Self {
            shared,
            conn: Some(conn),
            reusable: false,
            holds_permit: false,
        }
    }

    /// The checkout succeeded: the guard now owns the permit and may
    /// return its connection to the idle list.
    pub(super) fn arm(&mut self) {
        self.reusable = true;
        self.holds_permit = true;
    }

    pub(super) fn connection_mut(&mut self) -> &mut M::Connection {
        self
    }

    /// Closes this connection instead of returning it, for when you know it
    /// is broken (a protocol error, a transaction you cannot roll back).
    /// The slot is freed; the pool opens a fresh connection when needed.
    pub fn discard(mut self) {
        self.reusable = false;
        // Drop does the rest.
    }
}

impl<M: Manager> Deref for PooledConnection<M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        // `conn` is only taken in Drop, after which no method can run.
        self.conn
            .as_ref()
            .expect("connection present until drop")
            .get()
    }
}

impl<M: Manager> DerefMut for PooledConnection<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        // As in `deref`: `conn` is only taken in Drop.
        self.conn
            .as_mut()
            .expect("connection present until drop")
            .get_mut()
    }
}

impl<M: Manager> Drop for PooledConnection<M> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        // A holder that panicked may have left a transaction half done.
        let keep = self.reusable && !std::thread::panicking();
        let (surplus, pool_closed) = {
            let mut state = self.shared.state();
            // Same critical section as the push: `in_use` and `idle` move
            // together, so no snapshot counts this connection twice.
            state.in_use -= 1;
            let room = state.idle.len() < self.shared.config.size;
            if keep && room && !state.closed {
                state.idle.push_back(conn);
                (None, false)
            } else {
                // Overflow (size already idle), broken, or pool closed.
                (Some(conn), state.closed)
            }
        };
        // Closing a connection can take a moment (SQLite joins its worker
        // thread): do it outside the lock.
        drop(surplus);
        // Only now free the slot: a waiter woken by this permit finds the
        // connection we just pushed instead of opening a new one.
        if self.holds_permit {
            self.shared.permits.add_permits(1);
        }
        if pool_closed {
            self.shared.returned.notify_waiters();
        }
    }
}

impl<M: Manager> fmt::Debug for PooledConnection<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("reusable", &self.reusable)
            .finish_non_exhaustive()
    }
}
