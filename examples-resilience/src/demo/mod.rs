//! Demo and benchmark support for the two binaries: **not a pattern**.
//!
//! The patterns are [`retry`](crate::retry) and [`breaker`](crate::breaker);
//! what lives here only stages them: the scenarios the demos play against
//! the sandbox, and the overhead measurements behind `--bench`.

pub mod bench;
pub mod breaker_story;
pub mod retry_story;
