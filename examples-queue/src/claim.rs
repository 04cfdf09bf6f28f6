//! Claims and the `join()` bookkeeping of the
//! [`PriorityQueue`](crate::PriorityQueue): Python's `task_done()` as a drop
//! guard.
//!
//! The queue counts tasks that were pushed and not yet finished in one
//! atomic. `pop` hands each task out inside a [`Claim`] whose [`Done`] guard
//! decrements that count when dropped; the drop that brings it to zero wakes
//! every `join()`. Because `Drop` runs on every exit path (a normal return,
//! `?`, and the unwinding of a panic), a consumer cannot forget to finish a
//! task, which is exactly the bug that makes the seed's `join()` hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::lanes::Priority;

/// A task taken from the queue. Its [`Done`] guard marks it finished for
/// [`PriorityQueue::join`](crate::PriorityQueue::join) when dropped, so keep the claim (or at least
/// `done`) alive until the work is over.
#[derive(Debug)]
pub struct Claim<T> {
    /// The task itself.
    pub item: T,
    /// The priority it was pushed with.
    pub priority: Priority,
    /// Its global arrival number (smaller = pushed earlier).
    pub seq: u64,
    /// When it was pushed (tokio clock): `enqueued_at.elapsed()` at pop time
    /// is its queue wait.
    pub enqueued_at: Instant,
    /// Marks the task finished when dropped.
    pub done: Done,
}

/// Counts tasks pushed but not yet finished, for `join()`.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pub(crate) unfinished: AtomicUsize,
    pub(crate) idle: Notify,
}

/// The "task done" guard of one claimed task: dropping it (normally, on an
/// early `return`/`?`, or while a panic unwinds) is Python's `task_done()`.
#[derive(Debug)]
pub struct Done {
    /// `None` once the claim was handed back by [`PriorityQueue::requeue`](crate::PriorityQueue::requeue).
    pub(crate) tracker: Option<Arc<Tracker>>,
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(tracker) = self.tracker.take() {
            // AcqRel: the finished work happens-before a join() that sees 0.
            if tracker.unfinished.fetch_sub(1, Ordering::AcqRel) == 1 {
                tracker.idle.notify_waiters();
            }
        }
    }
}
