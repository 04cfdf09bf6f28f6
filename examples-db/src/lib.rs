//! Database patterns: a connection pool and a read-through cache.
//!
//! - [`pool`]: a generic async connection pool (seed Example 6) with an RAII
//!   guard, FIFO waiters, overflow, health checks and drift-free stats.
//! - [`managers`]: pool managers for real SQLite and PostgreSQL connections
//!   (sqlx single connections, not `sqlx::Pool`), and
//!   [`run_on_database`](managers::run_on_database), which picks one from
//!   `--database-url` for both binaries.
//! - [`store`]: the demo table both binaries query.
//! - [`cache`]: a TTL + LRU cache with single-flight loads (seed Example 12).
//! - [`workload`]: the concurrent read/write workload the demos run.
//!
//! ```text
//! cargo run --bin connection-pool
//! cargo run --bin async-cache
//! cargo test -p examples-db
//! ```

pub mod cache;
pub mod managers;
pub mod pool;
pub mod store;
pub mod workload;
