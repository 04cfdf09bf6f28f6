//! Shared set-up for every example in the workspace.
//!
//! Each example crate depends on this one for the few things every binary
//! does the same way, so that the example itself can stay about its pattern:
//!
//! - [`logging`]: one call sets up `tracing` (honours `RUST_LOG`, default
//!   `info`; optional JSON lines).
//! - [`timing`]: a [`Stopwatch`] and
//!   [`timed`] on `tokio::time::Instant` (exact under a paused
//!   test clock), and an hdrhistogram-backed [`LatencySummary`].
//! - [`shutdown`]: a future that resolves on Ctrl-C or SIGTERM.
//! - [`init_crypto`]: installs the rustls crypto provider once per process.
//! - [`driver`]: the harness every binary runs under: parsing, logging,
//!   signal handlers before readiness, the exit-code policy (0 / 1 / 2 /
//!   130) and the one-line `--json` envelope.
//! - [`args`]: typed, bounded flag parsers (durations with units, rates,
//!   counts, sizes), so no flag value can panic a binary.
//! - [`cli`]: the flags every binary shares ([`OutputArgs`]: `--json`,
//!   `--log-format`).
//! - [`backoff`]: the one exponential-backoff schedule (with jitter) that
//!   retries, reconnects and restarts share.
//! - [`retry_after`]: parses a server's `Retry-After` with checked
//!   arithmetic and clamps it.
//! - [`testing`]: [`testing::cancel_at_every_await`], the systematic
//!   drop-at-every-await-point check every pattern's tests use.
//! - [`sandbox`]: a local, deterministic stand-in for the internet services
//!   the examples talk to, started in-process on `127.0.0.1:0`.
//!
//! ```text
//! cargo run --bin sandbox-server          # the sandbox on its own, port 8088
//! cargo test -p common
//! ```

pub mod args;
pub mod backoff;
pub mod cli;
pub mod driver;
pub mod logging;
pub mod retry_after;
pub mod sandbox;
pub mod shutdown;
pub mod testing;
pub mod timing;

pub use cli::{OutputArgs, exit_code};
pub use driver::{Example, Report, UsageError};
pub use logging::{LogFormat, init_logging};
pub use sandbox::{Sandbox, SandboxConfig};
pub use shutdown::{StopSignals, shutdown_signal, shutdown_token};
pub use timing::{LatencyRecorder, LatencySummary, Stopwatch, timed};

/// Installs rustls' `ring` crypto provider as the process default.
///
/// reqwest is built with `rustls-no-provider` and tokio-tungstenite with
/// rustls, so no provider is chosen at compile time: building a
/// `reqwest::Client` (even for plain `http://`) or opening `wss://` panics
/// until one is installed. Call this first in every binary and in every test
/// that builds a client. Calling it again is harmless.
pub fn init_crypto() {
    // Err means a provider is already installed (by an earlier call or by
    // another test in the same process): exactly the state we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
