//! What every binary's command line shares: the output flags and the exit
//! convention.
//!
//! [`OutputArgs`] holds the two flags every example takes, `--json` and
//! `--log-format`; a binary embeds it with `#[command(flatten)]` instead of
//! declaring them again.
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

use crate::LogFormat;

/// The output flags every example binary takes: `--json` and `--log-format`.
///
/// Flatten it into a binary's clap `Args`, then set up logging from it:
///
/// ```
/// use clap::Parser;
///
/// /// A demo binary.
/// #[derive(Parser)]
/// struct Args {
///     /// How many things to do.
///     #[arg(long, default_value_t = 10)]
///     count: u32,
///     #[command(flatten)]
///     output: common::OutputArgs,
/// }
///
/// let args = Args::parse_from(["demo", "--json", "--log-format", "json"]);
/// common::init_logging(args.output.log_format);
/// assert!(args.output.json);
/// ```
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print one JSON summary line on stdout instead of the human-readable
    /// story or table.
    ///
    /// Logs go to stderr either way, so stdout stays one parseable line for
    /// scripts and tests.
    #[arg(long)]
    pub json: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl OutputArgs {
    /// One line of the human story: on stdout, or under `--json` (where
    /// stdout is the envelope alone) in the log on stderr.
    pub fn say(&self, line: impl std::fmt::Display) {
        if self.json {
            tracing::info!("{line}");
        } else {
            println!("{line}");
        }
    }
}

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
