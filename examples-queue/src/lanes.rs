//! The storage behind [`PriorityQueue`](crate::priority_queue::PriorityQueue):
//! one FIFO lane per priority level, and the rule that picks the next entry.
//!
//! Why lanes and not a `BinaryHeap`? A heap orders by (priority, sequence
//! number) just as well, but *ageing* changes an entry's effective priority
//! while it waits, which would silently break the heap invariant. Lanes sidestep
//! that: every entry in one lane has the same base priority and ages at the same
//! rate, so the lane stays in arrival order for ever and only the *head* of each
//! lane can be the next pick. Choosing the next entry is a scan of at most one
//! head per priority level in use (four in the demo), and push and pop are O(1)
//! `VecDeque` operations instead of O(log n) heap sifts.
//!
//! Everything here runs under the queue's mutex; nothing in this file awaits.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// A priority level: lower is more urgent (0 is the most urgent), as in the
/// seed's `Priority` enum (`URGENT = 0` ... `LOW = 3`).
pub type Priority = u8;

/// One queued item with the facts the ordering rule and the reports need.
#[derive(Debug)]
pub(crate) struct Entry<T> {
    pub(crate) item: T,
    pub(crate) priority: Priority,
    /// Global arrival order: FIFO within a lane, and the tie-break between
    /// lanes whose heads have aged to the same effective priority.
    pub(crate) seq: u64,
    /// When the entry was queued (tokio clock, so paused tests are exact).
    pub(crate) enqueued_at: Instant,
}

/// All queued entries, split by priority level.
#[derive(Debug)]
pub(crate) struct Lanes<T> {
    /// `lanes[p]` holds the entries of priority `p`, oldest first. Grown on
    /// demand up to the highest priority ever pushed (at most 256 lanes).
    lanes: Vec<VecDeque<Entry<T>>>,
    len: usize,
    next_seq: u64,
}

impl<T> Lanes<T> {
    pub(crate) fn new() -> Self {
        Self {
            lanes: Vec::new(),
            len: 0,
            next_seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `item` to the back of its priority's lane with the next
    /// sequence number.
    pub(crate) fn push(&mut self, priority: Priority, item: T, now: Instant) {
        let lane = usize::from(priority);
        if self.lanes.len() <= lane {
            self.lanes.resize_with(lane + 1, VecDeque::new);
        }
        let seq = self.next_seq;
        // u64 sequence numbers cannot wrap: at a billion pushes a second
        // that takes over 500 years.
        self.next_seq += 1;
        self.lanes[lane].push_back(Entry {
            item,
            priority,
            seq,
            enqueued_at: now,
        });
        self.len += 1;
    }

    /// Removes and returns the entry to serve next, if any.
    ///
    /// Without ageing: the head of the most urgent non-empty lane. With an
    /// ageing `step`: every full `step` an entry has waited lowers its
    /// effective priority by one level (never below 0), and the smallest
    /// (effective priority, sequence number) among the lane heads wins, so
    /// an old LOW entry eventually outranks a stream of fresh URGENT ones.
    pub(crate) fn pop(&mut self, aging: Option<Duration>) -> Option<Entry<T>> {
        if self.len == 0 {
            return None;
        }
        let lane = match aging {
            None => self.lanes.iter().position(|lane| !lane.is_empty())?,
            Some(step) => {
                // Read the clock once per pick, not once per lane.
                let now = Instant::now();
                self.lanes
                    .iter()
                    .enumerate()
                    .filter_map(|(index, lane)| {
                        let head = lane.front()?;
                        Some((effective_priority(head, now, step), head.seq, index))
                    })
                    .min()?
                    .2
            }
        };
        self.len -= 1;
        self.lanes[lane].pop_front()
    }

    /// How many entries wait at each priority level (index = priority).
    pub(crate) fn depths(&self) -> Vec<usize> {
        self.lanes.iter().map(VecDeque::len).collect()
    }
}

/// `priority - floor(waited / step)`, saturating at 0 (most urgent).
fn effective_priority<T>(entry: &Entry<T>, now: Instant, step: Duration) -> u128 {
    let waited = now.saturating_duration_since(entry.enqueued_at);
    // `step` is non-zero: the queue's constructor rejects a zero step.
    let promoted = waited.as_nanos() / step.as_nanos();
    u128::from(entry.priority).saturating_sub(promoted)
}
