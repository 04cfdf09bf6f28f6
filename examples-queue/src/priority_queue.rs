//! A bounded multi-producer multi-consumer priority queue with `close()` and
//! a `join()` that cannot hang.
//!
//! Ports the queue of seed Example 7 (`asyncio.PriorityQueue`). The Python
//! version has three flaws this type removes:
//!
//! - **No order within a priority.** `heapq` is not stable and the seed's
//!   `Task` compares on priority alone, so two NORMAL tasks come out in any
//!   order. Here each priority has its own FIFO lane and every entry a
//!   sequence number: strict priority order, first-in-first-out within one.
//! - **`join()` never returns.** The seed never calls `task_done()`. Here
//!   [`pop`](PriorityQueue::pop) hands out a [`Claim`] whose [`Done`] guard
//!   marks the task finished when it is dropped: after success, after an
//!   error, and during a panic's unwinding. Finishing cannot be forgotten.
//! - **No way to stop.** Consumers poll a `running` flag through one-second
//!   `wait_for` timeouts. Here [`close`](PriorityQueue::close) rejects new
//!   pushes, lets consumers drain what is queued, and then `pop` returns
//!   `None` so their loops end by themselves.
//!
//! It also adds optional ageing (see [`PriorityQueue::with_aging`]) so a
//! steady stream of urgent work cannot starve low priorities for ever.
//!
//! ## Primitives, and how wake-ups cannot be lost
//!
//! The state lives under one `std::sync::Mutex`: every critical section is a
//! few `VecDeque` operations and never contains an `.await`, so a blocking
//! mutex is both correct and faster than `tokio::sync::Mutex`. Sleeping is
//! done on two `tokio::sync::Notify`s, `not_empty` (consumers) and
//! `not_full` (producers). The classic bug is a lost wake-up: a consumer
//! finds the queue empty, a producer pushes and notifies *nobody*, then the
//! consumer goes to sleep for ever. Three rules rule it out:
//!
//! 1. A task that must wait first creates its `Notified` future and calls
//!    `enable()`, which registers it with the `Notify`, and only *then*
//!    re-checks the state under the lock. Any notification sent after that
//!    check finds it registered.
//! 2. In the same critical section as that failed check it bumps a waiter
//!    count (`waiting_pushers` / `waiting_poppers`). Whoever changes the
//!    state reads the count under the same lock and, after unlocking, calls
//!    `notify_one` once per item moved (at most once per waiter). Nobody
//!    waiting means no notification at all, which keeps the uncontended fast
//!    path free of `Notify` traffic.
//! 3. A waiter that is cancelled after being picked by `notify_one` does not
//!    swallow the wake-up: tokio's `Notified` passes it on to the next waiter
//!    when dropped. Its count is decremented by a drop guard, also on cancel.
//!
//! `close()` uses `notify_waiters()`, which wakes every `Notified` created
//! before the call, enabled or not; anyone arriving later sees `closed`.
//! `join()` waits on a third `Notify` with the same enable-then-check rule.
//!
//! ## Hostile callers
//!
//! Memory is bounded by `capacity` (plus at most the tasks in flight, for
//! [`requeue`](PriorityQueue::requeue)); a consumer that panics while
//! holding a claim finishes it for `join()` as its `Done` drops; a caller
//! that drops `push`, `pop`, `push_many`, `pop_many` or `join` at any await
//! point leaves no stale waiter count and loses no item or wake-up (the
//! tests walk every await point with `common::testing::cancel_at_every_await`).
//!
//! ## In production
//!
//! tokio has no priority channel. For two or three fixed levels, one bounded
//! `mpsc` per level read with a `biased` `select!` is simpler; across
//! processes, use a broker with priorities (RabbitMQ, Redis sorted sets).
//! This type shows the whole mechanism in one file you can read top to bottom.
//!
//! ```text
//! cargo run --bin priority-queue
//! cargo test -p examples-queue --test priority_queue
//! ```

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::claim::Tracker;
pub use crate::claim::{Claim, Done};
pub use crate::lanes::Priority;
use crate::lanes::{Entry, Lanes};

/// `push` on a closed queue: the item comes back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the queue is closed")]
pub struct Closed<T>(pub T);

/// Why [`PriorityQueue::try_push`] refused an item (which it hands back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TryPushError<T> {
    /// The queue holds `capacity` items.
    #[error("the queue is full")]
    Full(T),
    /// [`PriorityQueue::close`] was called.
    #[error("the queue is closed")]
    Closed(T),
}

/// A point-in-time view for monitors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Entries waiting at each priority level (index = priority).
    pub depths: Vec<usize>,
    /// Total entries waiting.
    pub queued: usize,
    /// Claimed but not yet finished.
    pub in_flight: usize,
    /// Producers asleep because the queue is full.
    pub waiting_producers: usize,
    /// Consumers asleep because the queue is empty.
    pub waiting_consumers: usize,
    /// Whether [`PriorityQueue::close`] was called.
    pub closed: bool,
}

/// A bounded MPMC priority queue; cheap to clone (all clones share it).
#[derive(Debug)]
pub struct PriorityQueue<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for PriorityQueue<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Debug)]
struct Shared<T> {
    /// std Mutex: no critical section awaits (see the module docs).
    state: Mutex<State<T>>,
    capacity: usize,
    aging: Option<Duration>,
    not_empty: Notify,
    not_full: Notify,
    tracker: Arc<Tracker>,
}

#[derive(Debug)]
struct State<T> {
    lanes: Lanes<T>,
    closed: bool,
    waiting_pushers: usize,
    waiting_poppers: usize,
}

/// Which side of the queue a task waits on.
#[derive(Debug, Clone, Copy)]
enum Side {
    Pushers,
    Poppers,
}

impl<T> PriorityQueue<T> {
    /// A queue holding at most `capacity` waiting items, strict priority.
    ///
    /// # Panics
    /// If `capacity` is 0 (nothing could ever be pushed).
    pub fn new(capacity: usize) -> Self {
        Self::build(capacity, None)
    }

    /// Like [`new`](Self::new), with ageing: every full `step` an item has
    /// waited counts as one priority level more urgent (down to 0), and ties
    /// go to the older item. With a 100 ms step a LOW (3) task outranks fresh
    /// URGENT (0) work after 300 ms, so its wait is bounded.
    ///
    /// # Panics
    /// If `capacity` is 0 or `step` is zero.
    pub fn with_aging(capacity: usize, step: Duration) -> Self {
        assert!(!step.is_zero(), "the ageing step must be positive");
        Self::build(capacity, Some(step))
    }

    fn build(capacity: usize, aging: Option<Duration>) -> Self {
        assert!(capacity > 0, "a queue needs a capacity of at least 1");
        let state = State {
            lanes: Lanes::new(),
            closed: false,
            waiting_pushers: 0,
            waiting_poppers: 0,
        };
        let shared = Shared {
            state: Mutex::new(state),
            capacity,
            aging,
            not_empty: Notify::new(),
            not_full: Notify::new(),
            tracker: Arc::default(),
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Adds `item`, waiting while the queue is full. Fails only once the queue
    /// is closed. Cancel-safe: dropped while waiting, the item was not queued.
    pub async fn push(&self, priority: Priority, item: T) -> Result<(), Closed<T>> {
        let mut slot = Some(item);
        self.shared
            .wait(Side::Pushers, |state| {
                // The slot is refilled before any `None` return, so it is full here.
                let item = slot.take().expect("item present until pushed");
                match self.shared.insert(state, priority, item) {
                    Ok(()) => Some((Ok(()), 1)),
                    Err(TryPushError::Closed(item)) => Some((Err(Closed(item)), 0)),
                    Err(TryPushError::Full(item)) => {
                        slot = Some(item);
                        None
                    }
                }
            })
            .await
    }

    /// Adds `item` if there is room now; never waits.
    pub fn try_push(&self, priority: Priority, item: T) -> Result<(), TryPushError<T>> {
        let (result, wakeups) = {
            let mut state = self.shared.lock();
            let result = self.shared.insert(&mut state, priority, item);
            let moved = usize::from(result.is_ok());
            (result, Shared::wakeups(&state, Side::Poppers, moved))
        };
        self.shared.wake(Side::Poppers, wakeups);
        result
    }

    /// Adds every item, in order, under as few lock acquisitions as room
    /// allows (a batch costs one lock, not one per item), waiting whenever
    /// the queue is full. On close, the items not yet queued come back.
    pub async fn push_many(
        &self,
        items: Vec<(Priority, T)>,
    ) -> Result<(), Closed<Vec<(Priority, T)>>> {
        let mut rest = items.into_iter().peekable();
        while rest.peek().is_some() {
            let pushed = self
                .shared
                .wait(Side::Pushers, |state| {
                    if state.closed {
                        return Some((false, 0));
                    }
                    let mut moved = 0;
                    // One clock read per batch: the items arrive together.
                    let now = Instant::now();
                    while state.lanes.len() < self.shared.capacity {
                        let Some((priority, item)) = rest.next() else {
                            break;
                        };
                        self.shared.admit(state, priority, item, now);
                        moved += 1;
                    }
                    (moved > 0).then_some((true, moved))
                })
                .await;
            if !pushed {
                return Err(Closed(rest.collect()));
            }
        }
        Ok(())
    }

    /// Takes the most urgent item (oldest first within a priority), waiting
    /// while the queue is empty. `None` once the queue is closed *and*
    /// drained. Cancel-safe: dropped while waiting, nothing was taken.
    pub async fn pop(&self) -> Option<Claim<T>> {
        self.shared
            .wait(Side::Poppers, |state| {
                match state.lanes.pop(self.shared.aging) {
                    Some(entry) => Some((Some(self.shared.claim(entry)), 1)),
                    None if state.closed => Some((None, 0)),
                    None => None,
                }
            })
            .await
    }

    /// Takes up to `max` items in priority order into `out` under one lock,
    /// waiting while the queue is empty; returns how many (0 = closed and
    /// drained). Batches trade precision for throughput: an urgent item
    /// pushed while this consumer works through its batch waits for another.
    pub async fn pop_many(&self, max: usize, out: &mut Vec<Claim<T>>) -> usize {
        // A batch of 0 would be indistinguishable from "closed and drained".
        let max = max.max(1);
        self.shared
            .wait(Side::Poppers, |state| {
                let before = out.len();
                while out.len() - before < max {
                    let Some(entry) = state.lanes.pop(self.shared.aging) else {
                        break;
                    };
                    out.push(self.shared.claim(entry));
                }
                let taken = out.len() - before;
                (taken > 0 || state.closed).then_some((taken, taken))
            })
            .await
    }

    /// Puts a claimed task back (at the back of its priority's lane) for
    /// another attempt, still counted as unfinished so `join()` keeps waiting.
    ///
    /// Never waits and works after `close()`: the task was already accepted,
    /// and a consumer blocked on a full queue could deadlock with producers.
    /// The queue may then briefly exceed `capacity`, by at most the number of
    /// tasks in flight, so memory stays bounded.
    pub fn requeue(&self, mut claim: Claim<T>) {
        // Disarm the guard: the unfinished count moves with the task.
        claim.done.tracker = None;
        let now = Instant::now();
        let wakeups = {
            let mut state = self.shared.lock();
            state.lanes.push(claim.priority, claim.item, now);
            Shared::wakeups(&state, Side::Poppers, 1)
        };
        self.shared.wake(Side::Poppers, wakeups);
    }

    /// Rejects further pushes and wakes every waiter. Consumers drain what is
    /// queued, then `pop` returns `None`; waiting producers get `Closed`.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.not_empty.notify_waiters();
        self.shared.not_full.notify_waiters();
    }

    /// Waits until every task pushed has been claimed and its [`Done`]
    /// dropped (Python's `Queue.join()`). Returns at once on an idle queue.
    pub async fn join(&self) {
        let tracker = &self.shared.tracker;
        loop {
            let mut idle = pin!(tracker.idle.notified());
            // Enable before the check: a Done dropped after it wakes us.
            idle.as_mut().enable();
            if tracker.unfinished.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// The most items that can wait in the queue.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Depth per priority, in flight and waiters, for a monitor.
    pub fn stats(&self) -> QueueStats {
        let state = self.shared.lock();
        let queued = state.lanes.len();
        let unfinished = self.shared.tracker.unfinished.load(Ordering::Acquire);
        QueueStats {
            depths: state.lanes.depths(),
            queued,
            // Requeued tasks are counted in both for a moment: saturate.
            in_flight: unfinished.saturating_sub(queued),
            waiting_producers: state.waiting_pushers,
            waiting_consumers: state.waiting_poppers,
            closed: state.closed,
        }
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No critical section can panic half-way (they only move entries
        // between VecDeques), so a poisoned lock still guards valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts if open and not full (the caller holds the lock).
    fn insert(
        &self,
        state: &mut State<T>,
        priority: Priority,
        item: T,
    ) -> Result<(), TryPushError<T>> {
        if state.closed {
            return Err(TryPushError::Closed(item));
        }
        if state.lanes.len() >= self.capacity {
            return Err(TryPushError::Full(item));
        }
        self.admit(state, priority, item, Instant::now());
        Ok(())
    }

    fn admit(&self, state: &mut State<T>, priority: Priority, item: T, now: Instant) {
        // Counted before it becomes visible (both under the lock), so no
        // consumer can finish it first and let the count touch 0 early.
        self.tracker.unfinished.fetch_add(1, Ordering::Relaxed);
        state.lanes.push(priority, item, now);
    }

    fn claim(&self, entry: Entry<T>) -> Claim<T> {
        Claim {
            item: entry.item,
            priority: entry.priority,
            seq: entry.seq,
            enqueued_at: entry.enqueued_at,
            done: Done {
                tracker: Some(Arc::clone(&self.tracker)),
            },
        }
    }

    /// How many of the `moved` items' wake-ups to send to `side`: one per
    /// item, but never more than the sleepers counted there (read under the
    /// same lock as the change, so nobody who registered is missed).
    fn wakeups(state: &State<T>, side: Side, moved: usize) -> usize {
        match side {
            Side::Pushers => moved.min(state.waiting_pushers),
            Side::Poppers => moved.min(state.waiting_poppers),
        }
    }

    /// Sends `count` wake-ups to `side`, after the lock is released so the
    /// woken task does not immediately block on it.
    fn wake(&self, side: Side, count: usize) {
        let notify = match side {
            Side::Pushers => &self.not_full,
            Side::Poppers => &self.not_empty,
        };
        for _ in 0..count {
            notify.notify_one();
        }
    }

    /// Runs `attempt` under the lock until it returns `Some((result, moved))`,
    /// sleeping on `side` in between; then wakes up to `moved` tasks on the
    /// other side (a push wakes consumers, a pop wakes producers).
    async fn wait<R>(
        &self,
        side: Side,
        mut attempt: impl FnMut(&mut State<T>) -> Option<(R, usize)>,
    ) -> R {
        let (notify, other) = match side {
            Side::Pushers => (&self.not_full, Side::Poppers),
            Side::Poppers => (&self.not_empty, Side::Pushers),
        };
        // Fast path: no registration with the Notify (enable() takes its lock).
        let first = {
            let mut state = self.lock();
            attempt(&mut state).map(|(result, moved)| (result, Self::wakeups(&state, other, moved)))
        };
        if let Some((result, wakeups)) = first {
            self.wake(other, wakeups);
            return result;
        }
        loop {
            let mut notified = pin!(notify.notified());
            notified.as_mut().enable(); // rule 1: register, then check
            let outcome = {
                let mut state = self.lock();
                match attempt(&mut state) {
                    Some((result, moved)) => Some((result, Self::wakeups(&state, other, moved))),
                    None => {
                        *waiting(&mut state, side) += 1; // rule 2
                        None
                    }
                }
            };
            if let Some((result, wakeups)) = outcome {
                self.wake(other, wakeups);
                return result;
            }
            // rule 3: the count is undone even if this future is dropped here.
            let _asleep = Asleep { shared: self, side };
            notified.await;
        }
    }
}

fn waiting<T>(state: &mut State<T>, side: Side) -> &mut usize {
    match side {
        Side::Pushers => &mut state.waiting_pushers,
        Side::Poppers => &mut state.waiting_poppers,
    }
}

/// Decrements a waiter count when its sleeper wakes or is cancelled.
struct Asleep<'a, T> {
    shared: &'a Shared<T>,
    side: Side,
}

impl<T> Drop for Asleep<'_, T> {
    fn drop(&mut self) {
        *waiting(&mut self.shared.lock(), self.side) -= 1;
    }
}
