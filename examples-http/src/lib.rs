//! HTTP client patterns, ported from the asyncio cookbook (seed examples 1,
//! 2, 3 and 13).
//!
//! Each module is one pattern a reader can lift into their own code; each
//! binary in `src/bin/` is a thin driver that demonstrates it against the
//! in-process sandbox (`common::Sandbox`) or real URLs given by flag.
//!
//! | module | pattern | binary | seed |
//! |---|---|---|---|
//! | [`fetch`] | bounded fan-out, per-URL results in input order | `concurrent-fetch` | 1 |
//! | [`rate_limit`] | GCRA rate limiter: starts per second, FIFO, no polling | `rate-limited-client` | 2 |
//! | [`shared_limit`] | the same GCRA shared by many processes: one atomic Redis script | `rate-limited-client --shared-limit` | 2 |
//! | [`api`] | typed JSON client: limiter + in-flight cap + typed errors | `rate-limited-client` | 2 |
//! | [`download`] | streaming download: `.part`, fsync, verify, rename, resume | `streaming-download` | 3 |
//! | [`bench`](mod@bench) | closed-loop sweep and open-loop (coordinated omission) load | `benchmark` | 13 |
//!
//! [`demo`] holds demo support only (charts, progress bars, printed
//! stories), not patterns.
//!
//! ```text
//! cargo run --bin concurrent-fetch
//! cargo run --bin rate-limited-client
//! cargo run --bin streaming-download
//! cargo run --bin benchmark
//! cargo test -p examples-http
//! ```

pub mod api;
pub mod bench;
pub mod demo;
pub mod download;
pub mod fetch;
pub mod rate_limit;
pub mod shared_limit;
