//! The exit convention every binary shares.
//!
//! A user-caused failure (bad URL, unreachable host, malformed input) prints
//! one line, `error: <what failed>: <cause>: <cause>`, and exits 1. Usage
//! errors exit 2, which clap does on its own. Nothing a user can cause
//! should end in a panic or a backtrace.
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! async fn run() -> anyhow::Result<()> { Ok(()) }
//!
//! #[tokio::main]
//! async fn main() -> ExitCode {
//!     common::exit_code(run().await)
//! }
//! ```

use std::process::ExitCode;

/// Turns the result of a binary's `run()` into its exit code, printing an
/// error as one line with its whole cause chain (`{err:#}`) on stderr.
///
/// Returning `anyhow::Result` from `main` directly would print `Error:` with
/// a multi-line `Caused by:` list in Debug format; this keeps it to the one
/// line a user (or a script grepping stderr) expects.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
