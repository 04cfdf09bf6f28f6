//! Demo and benchmark support for the two binaries: **not a pattern**.
//!
//! The patterns are [`supervisor`](crate::supervisor) and
//! [`shutdown`](crate::shutdown) (with the [`jobs`](crate::jobs) service it
//! shuts down). What lives here only stages them:
//!
//! - [`background`]: the seed's three loops (and a warm-up) as supervised
//!   tasks, for `background-tasks`.
//! - [`bench`](mod@bench): what a tokio task costs (100,000 sleepers), the
//!   `background-tasks --bench` mode.
//! - [`load`]: the closed-loop load generator the `graceful-shutdown` demo
//!   and the tests drive the job service with.

pub mod background;
pub mod bench;
pub mod load;
