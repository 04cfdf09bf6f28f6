//! Demo and benchmark support for the `priority-queue` binary: what it
//! prints, its `--bench` races and its `--store` roles. This is not a
//! pattern; the patterns are [`crate::priority_queue`],
//! [`crate::processor`] and [`crate::durable`].

pub mod bench;
pub mod store;
pub mod story;
