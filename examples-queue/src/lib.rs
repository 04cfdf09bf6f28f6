//! Queue examples: a bounded MPMC priority queue and the producer/consumer
//! pipeline of seed Example 7 built on it.
//!
//! - [`priority_queue`]: the queue (strict priority, FIFO within a priority,
//!   bounded, `close()` and drain, a `join()` that a panicking consumer cannot
//!   hang, optional ageing).
//! - [`processor`]: producers, consumers and a monitor around it, with
//!   retries, a dead-letter list and the "nothing lost" invariant.
//! - [`bench`](mod@bench): the throughput comparison with a plain `tokio::sync::mpsc`.
//!
//! ```text
//! cargo run --bin priority-queue
//! cargo run --release --bin priority-queue -- --bench
//! cargo test -p examples-queue
//! ```

pub mod bench;
mod claim;
mod lanes;
pub mod priority_queue;
pub mod processor;

pub use priority_queue::{Claim, Closed, Done, Priority, PriorityQueue, QueueStats, TryPushError};
