//! Demo support for the two binaries, not a pattern: nothing here is meant
//! to be lifted into your code (the patterns are [`crate::pool`] and
//! [`crate::cache`]).
//!
//! - [`db`]: SQLite and PostgreSQL managers, one [`db::DbManager`] over
//!   both, and [`db::open`], which picks one from `--database-url`.
//! - [`store`]: the demo table and its queries.
//! - [`workload`]: the concurrent read/write workload the demos run.
//! - [`story`]: the summaries they print.
//! - [`bench`](mod@bench): `connection-pool --bench` (ours beside deadpool) and
//!   `async-cache --bench` (hits per second).

pub mod bench;
pub mod db;
pub mod store;
pub mod story;
pub mod workload;
