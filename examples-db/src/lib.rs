//! Database patterns: a connection pool and a read-through cache.
//!
//! - [`pool`]: a generic async connection pool (seed Example 6) with an RAII
//!   guard, FIFO waiters, overflow, health checks and drift-free stats.
//! - [`cache`]: a TTL + LRU cache with single-flight loads (seed Example 12).
//!
//! [`demo`] is demo support, not a pattern: the SQLite/PostgreSQL managers
//! and the demo table both binaries use, their workload, and the
//! benchmarks behind `--bench`.
//!
//! ```text
//! cargo run --bin connection-pool
//! cargo run --bin async-cache
//! cargo run --release --bin connection-pool -- --bench   # beside deadpool
//! cargo run --release --bin async-cache -- --bench
//! cargo test -p examples-db
//! ```

pub mod cache;
pub mod demo;
pub mod pool;
