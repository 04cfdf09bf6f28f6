//! Concurrency control: limiting and protecting shared things.
//!
//! Two patterns from the asyncio cookbook, ported to tokio and made right:
//!
//! - [`resource_pool`] (seed Example 8, bin `semaphore-pool`): a pool whose
//!   permit *is* the resource. `acquire` hands out a guard owning one
//!   specific resource, FIFO among waiters, with a timeout, `close()`, wait
//!   statistics and a high-water mark.
//! - [`bank`] (seed Example 9, bin `bank-account`): shared state behind a
//!   lock, three ways (std `Mutex`, tokio `Mutex` with an await under it,
//!   an actor), in integer cents with a typed `InsufficientFunds`, lock
//!   ordering for transfers, a transaction log that is checked against the
//!   balances, and a demonstration of the race you get when check and act
//!   are split by an `.await`.
//!
//! [`demo`] is demo support, not a pattern: the bank workload both the
//! stress tests and `bank-account` run, the semaphore-pool users and
//! timeline, and the benchmarks behind `--bench`.
//!
//! ```text
//! cargo run --bin semaphore-pool
//! cargo run --bin bank-account -- --demo-race
//! cargo test -p examples-control
//! ```

pub mod bank;
pub mod demo;
pub mod resource_pool;
