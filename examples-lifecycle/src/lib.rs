//! Lifecycle patterns: supervising background tasks, and shutting a service
//! down without losing work.
//!
//! Ports seed Examples 11 and 15. Both seeds manage task lifetimes by hand
//! (`create_task` into a list, `cancel()` everything, `gather` the results)
//! and neither notices a task that dies early, bounds how long a shutdown
//! may take, or knows what work was lost. The modules here do:
//!
//! - [`supervisor`]: named tasks with restart policies, a panic noticed the
//!   moment it happens, liveness in a status report, and a stop with a
//!   deadline that reports why each task ended (`background-tasks`).
//! - [`jobs`]: an axum job service with a bounded queue, workers and a
//!   journal, built to be shut down (`graceful-shutdown`).
//! - [`shutdown`]: the three shutdown phases (stop intake, drain, close
//!   resources) under a grace deadline, with the listen backlog drained so
//!   no connection the kernel accepted is reset.
//! - [`demo`]: demo and benchmark support (the seed's loops, the spawn
//!   benchmark, the load generator); not a pattern.
//!
//! ```text
//! cargo run --bin background-tasks -- --crash-after 2.5s
//! cargo run --bin graceful-shutdown
//! cargo test -p examples-lifecycle
//! ```

pub mod demo;
pub mod jobs;
pub mod shutdown;
pub mod supervisor;
