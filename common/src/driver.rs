//! The driver harness every binary runs under: one `main`, one exit-code
//! policy, one JSON envelope.
//!
//! A binary declares its arguments with clap, says which example it is
//! ([`Example`]), and hands [`main`] an async `run(args, shutdown)`. The
//! harness does everything else, in this order:
//!
//! 1. Parses the command line. `--help` gains a first line naming the seed
//!    example; a rejected value or flag combination exits 2.
//! 2. Sets up logging (stderr) and the rustls crypto provider.
//! 3. Installs the SIGINT/SIGTERM handlers *before* `run` can announce
//!    readiness, so a signal right after a "listening on" banner is a clean
//!    stop, not a kill. The first signal cancels the [`CancellationToken`]
//!    handed to `run`; a second one exits at once.
//! 4. Runs `run` on a multi-threaded runtime and turns its outcome into the
//!    exit code and, under `--json`, exactly one line on stdout.
//!
//! ## Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | all work done |
//! | 1 | a unit of work failed, or a runtime error (including "every request failed", and a stop that lost work) |
//! | 2 | a usage error: a value the parser rejects, a conflicting flag, a failed cross-flag check ([`UsageError`]) |
//! | 130 | stopped by a signal after a clean stop and a printed report; also a second signal, which exits at once |
//!
//! ## The JSON envelope
//!
//! Under `--json`, stdout is exactly one line on success, failure and
//! interrupt (a usage error rejected by the parser prints nothing there):
//!
//! ```text
//! {"example":"concurrent-fetch","seed":1,"ok":true,"interrupted":false,"elapsed_s":1.04, ...figures}
//! ```
//!
//! `example` is the bin name, `seed` the seed example number (`null` for
//! the tools), `ok` whether all work was done, `interrupted` whether a
//! signal stopped the run, `elapsed_s` the wall time; then the example's
//! own [`Report::figures`], with units in key names (`_s`, `_ms`, `_per_s`,
//! `_bytes`). A run that ends in an error adds `"error"`.
//!
//! ```no_run
//! use clap::Parser;
//! use common::driver::{Example, Report};
//! use tokio_util::sync::CancellationToken;
//!
//! /// Counts to N.
//! #[derive(Parser)]
//! struct Args {
//!     #[arg(long, default_value = "3", value_parser = common::args::count(1u64, 100))]
//!     count: u64,
//!     #[command(flatten)]
//!     output: common::OutputArgs,
//! }
//!
//! impl Example for Args {
//!     const NAME: &'static str = "counter";
//!     const SEED: Option<u8> = None;
//!     fn output(&self) -> &common::OutputArgs { &self.output }
//! }
//!
//! async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
//!     let mut done = 0;
//!     while done < args.count && !stop.is_cancelled() {
//!         done += 1;
//!     }
//!     Ok(Report::new(done == args.count).figure("counted", done))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     common::driver::main(run)
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::OutputArgs;

/// Exit code: all work done.
pub const EXIT_OK: u8 = 0;
/// Exit code: a unit of work failed, or a runtime error.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: a usage error (rejected value or flag combination).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: stopped by a signal (a clean stop with a printed report, or a
/// second signal that exits at once).
pub const EXIT_INTERRUPTED: u8 = 130;

/// What a binary tells the harness about itself.
pub trait Example: clap::Parser + Send + 'static {
    /// The bin name, as in `cargo run --bin NAME`; the envelope's `example`.
    const NAME: &'static str;
    /// The seed example it ports (1-15), or the one a tool serves
    /// (`ws-load`: 5); `None` for the tools that serve them all.
    const SEED: Option<u8>;
    /// A tool (a load generator, the sandbox, the perf suite), not a port.
    const TOOL: bool = false;
    /// The shared output flags (`--json`, `--log-format`).
    fn output(&self) -> &OutputArgs;
    /// Cross-flag checks the parser cannot express. An `Err` is a usage
    /// error: one line on stderr, exit 2, before anything runs.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A usage error found after parsing (an empty URL list, a file of no
/// URLs): return it from `run` (`Err(UsageError::new(..).into())`) and the
/// harness exits 2 instead of 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl UsageError {
    /// A usage error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What `run` reports when it returns normally: whether all work was done,
/// and the figures for the JSON envelope.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// All work done (`true`), or some unit of work failed (`false`, exit 1).
    pub ok: bool,
    /// The example's own figures, after the envelope's keys.
    pub figures: Map<String, Value>,
    /// Why the run is not ok, printed on stderr (and as `"error"` in the
    /// envelope) when `ok` is false.
    pub failure: Option<String>,
}

impl Report {
    /// A report whose `ok` is given.
    pub fn new(ok: bool) -> Self {
        Self {
            ok,
            ..Self::default()
        }
    }

    /// All work done.
    pub fn ok() -> Self {
        Self::new(true)
    }

    /// Some work failed, for this reason (one line).
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            ok: false,
            failure: Some(reason.into()),
            ..Self::default()
        }
    }

    /// Adds one figure (a key with its unit in the name).
    pub fn figure(mut self, key: &str, value: impl serde::Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.figures.insert(key.to_owned(), value);
        self
    }

    /// Adds every entry of a JSON object (anything else is stored under
    /// `"figures"`).
    pub fn figures(mut self, value: impl serde::Serialize) -> Self {
        match serde_json::to_value(value) {
            Ok(Value::Object(map)) => self.figures.extend(map),
            Ok(other) => {
                self.figures.insert("figures".to_owned(), other);
            }
            Err(err) => {
                self.figures
                    .insert("figures_error".to_owned(), Value::String(err.to_string()));
            }
        }
        self
    }

    /// Marks the report failed (keeping its figures) when `failure` is Some.
    pub fn fail_if(mut self, failure: Option<String>) -> Self {
        if let Some(reason) = failure {
            self.ok = false;
            self.failure = Some(reason);
        }
        self
    }
}

/// The envelope's fixed keys, in order, then the figures.
fn envelope(
    name: &str,
    seed: Option<u8>,
    ok: bool,
    interrupted: bool,
    elapsed_s: f64,
    figures: &Map<String, Value>,
    error: Option<&str>,
) -> String {
    // Built by hand so the envelope keys come first in a fixed order
    // (serde_json's Map is sorted without the `preserve_order` feature).
    let mut line = serde_json::json!({ "example": name })
        .to_string()
        .trim_end_matches('}')
        .to_owned();
    let mut push = |key: &str, value: &Value| {
        line.push(',');
        line.push_str(&Value::String(key.to_owned()).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    };
    push("seed", &serde_json::json!(seed));
    push("ok", &Value::Bool(ok));
    push("interrupted", &Value::Bool(interrupted));
    push("elapsed_s", &serde_json::json!(elapsed_s));
    if let Some(error) = error {
        push("error", &Value::String(error.to_owned()));
    }
    for (key, value) in figures {
        if !matches!(
            key.as_str(),
            "example" | "seed" | "ok" | "interrupted" | "elapsed_s" | "error"
        ) {
            push(key, value);
        }
    }
    line.push('}');
    line
}

/// Parses the command line for `A`, with the seed line at the top of
/// `--help`. Exits 0 for `--help`/`--version` and 2 for a usage error.
pub fn parse<A: Example>() -> A {
    parse_from::<A, _, _>(std::env::args_os())
}

/// [`parse`] from given arguments (the first is the program name).
pub fn parse_from<A, I, T>(args: I) -> A
where
    A: Example,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match try_parse_from::<A, I, T>(args) {
        Ok(args) => args,
        Err(err) => err.exit(),
    }
}

/// The command clap builds for `A`, with the harness's first help line.
pub fn command<A: Example>() -> clap::Command {
    let first = match (A::SEED, A::TOOL) {
        (Some(seed), false) => format!(
            "{}: ports seed Example {seed} of the asyncio cookbook",
            A::NAME
        ),
        (Some(seed), true) => format!(
            "{}: a tool for seed Example {seed} of the asyncio cookbook's tokio port",
            A::NAME
        ),
        (None, _) => format!("{}: a tool of the asyncio cookbook's tokio port", A::NAME),
    };
    A::command().name(A::NAME).before_help(first)
}

/// Parses and validates; the error is clap's, with the right exit code.
pub fn try_parse_from<A, I, T>(args: I) -> Result<A, clap::Error>
where
    A: Example,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = command::<A>();
    let mut matches = command.try_get_matches_from_mut(args)?;
    let parsed = A::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))?;
    parsed
        .validate()
        .map_err(|message| command.error(clap::error::ErrorKind::ArgumentConflict, message))?;
    Ok(parsed)
}

/// Runs a binary: parse, set up, install signal handlers, `run`, report.
/// Returns the exit code for `main` to return.
pub fn main<A, F, Fut>(run: F) -> ExitCode
where
    A: Example,
    F: FnOnce(A, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<Report>>,
{
    let args = parse::<A>();
    crate::init_logging(args.output().log_format);
    crate::init_crypto();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = runtime.block_on(run_with(args, run));
    // Do not wait for tasks that ignore the stop (a blocked reader, a
    // detached timer): the report is out, the process is done.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// The harness inside the runtime; returns the exit code. Public so a test
/// can run a binary's `run` exactly as `main` does, with its own token.
pub async fn run_with<A, F, Fut>(args: A, run: F) -> u8
where
    A: Example,
    F: FnOnce(A, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<Report>>,
{
    let started = Instant::now();
    let json = args.output().json;
    let stop = CancellationToken::new();
    install_signals(stop.clone(), json, started, A::NAME, A::SEED);
    let outcome = run(args, stop.clone()).await;
    let interrupted = stop.is_cancelled();
    let elapsed_s = started.elapsed().as_secs_f64();
    let (code, line) = match outcome {
        Ok(report) => {
            let code = match (report.ok, interrupted) {
                (true, false) => EXIT_OK,
                (true, true) => EXIT_INTERRUPTED,
                (false, _) => EXIT_FAILED,
            };
            if let Some(reason) = report.failure.as_deref().filter(|_| !report.ok) {
                eprintln!("error: {reason}");
            }
            let line = envelope(
                A::NAME,
                A::SEED,
                report.ok && !interrupted,
                interrupted,
                elapsed_s,
                &report.figures,
                report.failure.as_deref().filter(|_| !report.ok),
            );
            (code, line)
        }
        Err(err) => {
            let message = format!("{err:#}");
            let code = if err.downcast_ref::<UsageError>().is_some() {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
            eprintln!("error: {message}");
            let line = envelope(
                A::NAME,
                A::SEED,
                false,
                interrupted,
                elapsed_s,
                &Map::new(),
                Some(&message),
            );
            (code, line)
        }
    };
    if json {
        println!("{line}");
    }
    code
}

/// First signal: cancel `stop`. Second: print the envelope (under
/// `--json`) and exit 130 at once.
fn install_signals(
    stop: CancellationToken,
    json: bool,
    started: Instant,
    name: &'static str,
    seed: Option<u8>,
) {
    // The handlers are registered now, synchronously, so no signal after
    // this line is missed; and one stream serves both signals, so a second
    // that arrived with the first (a SIGTERM, then a Ctrl-C before the
    // SIGTERM was noticed) is the next `recv`, not lost.
    let mut signals = crate::StopSignals::listen();
    drop(tokio::spawn(async move {
        let first = signals.recv().await;
        tracing::info!("{first} received, shutting down");
        stop.cancel();
        signals.recv().await;
        eprintln!("second signal: exiting now without waiting for work in flight");
        if json {
            let line = envelope(
                name,
                seed,
                false,
                true,
                started.elapsed().as_secs_f64(),
                &Map::from_iter([("forced".to_owned(), Value::Bool(true))]),
                Some("stopped by a second signal"),
            );
            println!("{line}");
        }
        std::process::exit(i32::from(EXIT_INTERRUPTED));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Does things.
    #[derive(Parser, Debug)]
    struct Args {
        #[arg(long, default_value = "1", value_parser = crate::args::count(1u32, 10))]
        count: u32,
        #[arg(long)]
        a: bool,
        #[arg(long)]
        b: bool,
        #[command(flatten)]
        output: OutputArgs,
    }

    impl Example for Args {
        const NAME: &'static str = "thing";
        const SEED: Option<u8> = Some(7);
        fn output(&self) -> &OutputArgs {
            &self.output
        }
        fn validate(&self) -> Result<(), String> {
            if self.a && self.b {
                return Err("--a and --b do not go together".into());
            }
            Ok(())
        }
    }

    #[test]
    fn help_names_the_seed_first() {
        let help = command::<Args>().render_help().to_string();
        let first = help.lines().next().unwrap_or_default();
        assert_eq!(first, "thing: ports seed Example 7 of the asyncio cookbook");
    }

    #[test]
    fn rejected_values_and_cross_flag_checks_are_usage_errors() {
        let err = try_parse_from::<Args, _, _>(["thing", "--count", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = try_parse_from::<Args, _, _>(["thing", "--a", "--b"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("do not go together"));
        assert!(try_parse_from::<Args, _, _>(["thing", "--a"]).is_ok());
    }

    #[test]
    fn envelope_keys_come_first_and_figures_cannot_shadow_them() {
        let figures = Map::from_iter([
            ("ok".to_owned(), Value::Bool(true)),
            ("requests".to_owned(), Value::from(3)),
        ]);
        let line = envelope("thing", Some(7), false, true, 1.5, &figures, Some("boom"));
        assert_eq!(
            line,
            r#"{"example":"thing","seed":7,"ok":false,"interrupted":true,"elapsed_s":1.5,"error":"boom","requests":3}"#
        );
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["ok"], Value::Bool(false));
        let tool = envelope("tool", None, true, false, 0.0, &Map::new(), None);
        assert_eq!(
            tool,
            r#"{"example":"tool","seed":null,"ok":true,"interrupted":false,"elapsed_s":0.0}"#
        );
    }

    fn args(json: bool) -> Args {
        let mut argv = vec!["thing"];
        if json {
            argv.push("--json");
        }
        try_parse_from::<Args, _, _>(argv).unwrap()
    }

    #[tokio::test]
    async fn exit_codes_follow_the_policy() {
        assert_eq!(
            run_with(args(false), |_, _| async { Ok(Report::ok()) }).await,
            EXIT_OK
        );
        assert_eq!(
            run_with(args(false), |_, _| async {
                Ok(Report::failed("1 of 3 failed"))
            })
            .await,
            EXIT_FAILED
        );
        assert_eq!(
            run_with(args(false), |_, _| async { anyhow::bail!("no route") }).await,
            EXIT_FAILED
        );
        assert_eq!(
            run_with(args(false), |_, _| async {
                Err(anyhow::Error::new(UsageError::new("no URLs in the file")))
            })
            .await,
            EXIT_USAGE
        );
        // A usage error keeps its code under added context.
        assert_eq!(
            run_with(args(false), |_, _| async {
                Err(anyhow::Error::new(UsageError::new("empty")).context("read the URL file"))
            })
            .await,
            EXIT_USAGE
        );
        // A run that notices the stop and reports cleanly.
        assert_eq!(
            run_with(args(true), |_, stop: CancellationToken| async move {
                stop.cancel();
                Ok(Report::ok())
            })
            .await,
            EXIT_INTERRUPTED
        );
        // A stop that lost work is a failure, not a clean interrupt.
        assert_eq!(
            run_with(args(true), |_, stop: CancellationToken| async move {
                stop.cancel();
                Ok(Report::failed("2 jobs abandoned"))
            })
            .await,
            EXIT_FAILED
        );
    }

    #[test]
    fn report_builders_keep_figures() {
        let report = Report::ok()
            .figure("a_s", 1.0)
            .figures(serde_json::json!({"b": 2}))
            .fail_if(Some("late".into()));
        assert!(!report.ok);
        assert_eq!(report.failure.as_deref(), Some("late"));
        assert_eq!(report.figures.len(), 2);
        let kept = Report::ok().fail_if(None);
        assert!(kept.ok);
    }
}
