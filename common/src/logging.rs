//! Logging: one call sets up `tracing-subscriber` for a binary.
//!
//! Stories meant for a reader go to stdout with `println!`; diagnostics go
//! through `tracing` to stderr, so piping a binary's output (or its `--json`
//! summary) never mixes the two. The level comes from `RUST_LOG`
//! (`RUST_LOG=debug`, `RUST_LOG=examples_http=trace,info`), default `info`.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Compact human-readable lines.
    #[default]
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

/// Sets up the global `tracing` subscriber, writing to stderr.
///
/// Safe to call more than once (tests do): later calls leave the first
/// subscriber in place.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    // try_init fails only if a global subscriber is already set; the first
    // one wins and that is fine.
    let _ = match format {
        LogFormat::Text => builder.compact().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
