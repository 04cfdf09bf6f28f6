//! Queue examples: a bounded MPMC priority queue, the producer/consumer
//! pipeline of seed Example 7 built on it, and the same queue made durable
//! on PostgreSQL.
//!
//! - [`priority_queue`]: the queue (strict priority, FIFO within a priority,
//!   bounded, `close()` and drain, a `join()` that a panicking consumer cannot
//!   hang, optional ageing).
//! - [`processor`]: producers, consumers and a monitor around it, with
//!   retries, a dead-letter list and the "nothing lost" invariant.
//! - [`durable`]: past one machine: the queue in a PostgreSQL table, claimed
//!   with `FOR UPDATE SKIP LOCKED` under a lease, at-least-once.
//! - [`demo`]: demo and benchmark support for the binary (the story it
//!   prints, the `--bench` races, the `--store` roles). Not a pattern.
//!
//! ```text
//! cargo run --bin priority-queue
//! cargo run --release --bin priority-queue -- --bench
//! cargo test -p examples-queue
//! ```

mod claim;
pub mod demo;
pub mod durable;
mod lanes;
pub mod priority_queue;
pub mod processor;

pub use priority_queue::{Claim, Closed, Done, Priority, PriorityQueue, QueueStats, TryPushError};
