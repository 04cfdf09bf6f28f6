//! Demo support for the two binaries, not a pattern: nothing here is meant
//! to be lifted into your code (the patterns are
//! [`crate::resource_pool`] and [`crate::bank`]).
//!
//! - [`users`]: the semaphore-pool demo's users, with a bounded drain on
//!   shutdown; [`timeline`] draws who held which resource when.
//! - [`bench`](mod@bench): `semaphore-pool --bench`, the pool beside a bare semaphore.
//! - [`bank_workload`]: one seeded workload for every bank design (the
//!   stress tests, the demo and `bank-account --bench`), and
//!   [`bank_story`], which runs and prints it per design.
//! - [`race_story`]: `bank-account --demo-race`, printed.

pub mod bank_story;
pub mod bank_workload;
pub mod bench;
pub mod race_story;
pub mod timeline;
pub mod users;
