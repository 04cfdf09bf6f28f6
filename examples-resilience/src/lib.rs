//! Resilience patterns: retry with backoff (seed Example 10) and the
//! circuit breaker (seed Example 14).
//!
//! Both wrap *any* async operation, so the same code protects an HTTP call,
//! a database query or a fake in a test:
//!
//! - [`retry`]: [`retry::Retry::run`] calls an `FnMut() -> impl Future<Output =
//!   Result<T, E>>` until it succeeds, a classifier says stop, the attempts
//!   run out or a deadline passes, sleeping an exponential, capped, jittered
//!   delay in between.
//! - [`breaker`]: [`breaker::CircuitBreaker::call`] fails fast while a
//!   service is failing and probes it, a few calls at a time, to find out
//!   when it is back.
//! - [`http`]: the operation both demos wrap (a GET against the sandbox's
//!   `/flaky` endpoint) and the classifiers that map HTTP errors to each
//!   pattern's question.
//! - [`demo`]: demo and benchmark support (the scenarios and the
//!   overhead measurements behind `--bench`); not a pattern.
//!
//! The two compose: retry *outside* the breaker, and treat
//! [`breaker::CircuitOpen`] as "retry after `retry_in`" or as final.
//!
//! ```text
//! cargo run --bin backoff-retry
//! cargo run --bin circuit-breaker
//! cargo test -p examples-resilience
//! ```

pub mod breaker;
pub mod demo;
pub mod http;
pub mod retry;
