//! Demo and benchmark support for the `priority-queue` binary: what it
//! prints, its `--bench` races, its `--store` roles and the simulated work
//! they run. This is not a
//! pattern; the patterns are [`crate::priority_queue`],
//! [`crate::processor`] and [`crate::durable`].

pub mod bench;
pub mod store;
pub mod story;
pub mod work;

pub use work::SimulatedWork;
