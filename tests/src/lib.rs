//! A harness that runs the workspace's binaries the way a user would.
//!
//! The end-to-end tests in `tests/tests/` call the *built* binaries (not the
//! library functions behind them), with a timeout on every run, and look at
//! what a user sees: exit code, stdout, stderr. [`Running`] keeps a child
//! alive so a test can read its output line by line and send it SIGTERM.
//!
//! Binaries are found by asking `cargo metadata` for every `bin` target in
//! the workspace, so a new example is covered by the `--help` test the
//! moment it exists. Before the first run the harness calls `cargo test
//! --workspace --no-run` once (a no-op right after `cargo test`), so the
//! tests never run a stale binary, even under `cargo test -p e2e`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The workspace root (the folder with the virtual manifest).
pub fn workspace_root() -> &'static Path {
    // CARGO_MANIFEST_DIR is `<root>/tests`; its parent always exists.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

fn cargo() -> String {
    // `cargo test` sets CARGO for the processes it runs; fall back to PATH.
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// `target/<profile>`: where this test binary lives (it is in `deps/`).
fn profile_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        exe.parent() // deps
            .and_then(Path::parent) // debug | release | <profile>
            .expect("test binaries live in target/<profile>/deps")
            .to_path_buf()
    })
}

/// Builds every binary of the workspace, once per test process, into the
/// target directory of the running tests.
///
/// It runs `cargo test --workspace --no-run`, not `cargo build --bins`:
/// cargo resolves dependency features per invocation (and `cargo test`
/// includes dev-dependencies), so any other command picks a different
/// feature set and recompiles much of the dependency tree. This one matches
/// what `cargo test` just built, so right after it this is a no-op; it still
/// builds the bins, because each package's integration tests need them.
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        let target_dir = dir.parent().expect("target dir");
        let mut command = std::process::Command::new(cargo());
        command
            .current_dir(workspace_root())
            .args(["test", "--workspace", "--no-run"])
            .arg("--target-dir")
            .arg(target_dir);
        // target/debug holds the test profile's output; any other folder is
        // a named profile (`--release` puts tests in target/release).
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some("release") => {
                command.arg("--release");
            }
            Some(other) => {
                command.args(["--profile", other]);
            }
        }
        // `cargo test` runs this process with the package's own variables
        // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). Build scripts that
        // declare `rerun-if-env-changed` on them (ring's does) would see
        // them change and rebuild ring and everything above it, here and
        // again in the next plain `cargo test`. The child gets the
        // environment the user's cargo had.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_by_cargo_test = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .iter()
            .any(|prefix| key.starts_with(prefix));
            if set_by_cargo_test {
                command.env_remove(&*key);
            }
        }
        let output = command.output().expect("run cargo test --no-run");
        assert!(
            output.status.success(),
            "cargo test --workspace --no-run failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// Every `bin` target in the workspace, sorted, from `cargo metadata`.
fn bins() -> &'static BTreeSet<String> {
    static BINS: OnceLock<BTreeSet<String>> = OnceLock::new();
    BINS.get_or_init(|| {
        let output = std::process::Command::new(cargo())
            .current_dir(workspace_root())
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--offline",
            ])
            .output()
            .expect("run cargo metadata");
        assert!(output.status.success(), "cargo metadata failed");
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
        let mut bins = BTreeSet::new();
        for package in metadata["packages"].as_array().into_iter().flatten() {
            for target in package["targets"].as_array().into_iter().flatten() {
                let is_bin = target["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
                if let (true, Some(name)) = (is_bin, target["name"].as_str()) {
                    bins.insert(name.to_owned());
                }
            }
        }
        bins
    })
}

/// Every `bin` target in the workspace, sorted.
pub fn bin_names() -> Vec<&'static str> {
    bins().iter().map(String::as_str).collect()
}

/// The path of a built workspace binary (the workspace is built on first use).
pub fn bin_path(name: &str) -> PathBuf {
    assert!(
        bins().contains(name),
        "no binary named {name} in the workspace"
    );
    ensure_built();
    let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "no binary {name} at {}", path.display());
    path
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` if a signal ended the process.
    pub code: Option<i32>,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Output {
    fn new(status: ExitStatus, stdout: String, stderr: String) -> Self {
        Self {
            code: status.code(),
            stdout,
            stderr,
        }
    }

    /// Panics with the whole output unless the exit code is `expected`.
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(expected),
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The one `--json` line, parsed, with the shared envelope checked:
    /// stdout must be exactly one line with `example` (= `name`), `seed`,
    /// `ok`, `interrupted` and `elapsed_s` first, in that order.
    pub fn json_envelope(&self, name: &str) -> serde_json::Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "--json prints exactly one line:\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        let line = lines[0];
        let prefix = format!("{{\"example\":\"{name}\",\"seed\":");
        assert!(
            line.starts_with(&prefix),
            "envelope must open with {prefix}: {line}"
        );
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("--json line does not parse ({err}): {line}"));
        let keys: Vec<&str> = value
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for key in ["example", "seed", "ok", "interrupted", "elapsed_s"] {
            assert!(keys.contains(&key), "envelope lacks {key}: {line}");
        }
        let order: Vec<usize> = ["\"seed\":", "\"ok\":", "\"interrupted\":", "\"elapsed_s\":"]
            .iter()
            .map(|k| line.find(k).unwrap_or(usize::MAX))
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "envelope key order: {line}"
        );
        assert!(
            value["ok"].is_boolean() && value["interrupted"].is_boolean(),
            "{line}"
        );
        assert!(value["elapsed_s"].is_number(), "{line}");
        value
    }

    /// A usage or input error: exit code `code`, one `error:` line first
    /// that contains `needle`, and no panic.
    pub fn assert_clear_error(&self, code: i32, needle: &str) -> &Self {
        self.assert_code(code);
        let first = self.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error:") && first.contains(needle),
            "expected an error line containing {needle:?}:\n{}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }
}

/// The documented exit codes (README, `common::driver`).
pub mod exit {
    /// All work done.
    pub const OK: i32 = 0;
    /// A unit of work failed, or a runtime error.
    pub const FAILED: i32 = 1;
    /// A usage error.
    pub const USAGE: i32 = 2;
    /// Stopped by a signal after a clean stop and a printed report.
    pub const INTERRUPTED: i32 = 130;
}

fn command(name: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin_path(name));
    cmd.args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // If a test panics or times out, dropping the child kills it: no
        // orphaned servers left holding ports.
        .kill_on_drop(true);
    cmd
}

/// Runs a binary to completion; fails if it takes longer than `limit`.
pub async fn run(name: &str, args: &[&str], limit: Duration) -> anyhow::Result<Output> {
    let child = command(name, args)
        .spawn()
        .with_context(|| format!("spawn {name}"))?;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(output) => {
            let output = output.with_context(|| format!("wait for {name}"))?;
            Ok(Output::new(
                output.status,
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ))
        }
        // The future owned the child; dropping it killed the process.
        Err(_) => bail!("{name} {args:?} did not finish within {limit:?}"),
    }
}

/// A binary that keeps running while the test talks to it.
#[derive(Debug)]
pub struct Running {
    name: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stdout_seen: String,
    stderr_task: tokio::task::JoinHandle<String>,
}

/// Starts a binary and returns at once.
pub fn spawn(name: &str, args: &[&str]) -> anyhow::Result<Running> {
    let mut child = command(name, args)
        .spawn()
        .with_context(|| format!("spawn {name}"))?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let stderr = child.stderr.take().context("stderr is piped")?;
    Ok(Running {
        name: name.to_owned(),
        child,
        stdout: BufReader::new(stdout).lines(),
        stdout_seen: String::new(),
        // Drain stderr concurrently so a chatty child never blocks on a full pipe.
        stderr_task: tokio::spawn(read_all(stderr)),
    })
}

async fn read_all(mut reader: impl AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    // A read error just ends the capture; the test judges what was read.
    let _ = reader.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Running {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        // id() is None only after the child was reaped, which only
        // `wait` (consuming self) does.
        self.child.id().expect("child not yet reaped")
    }

    /// Reads stdout until a line contains `needle`; returns that line.
    pub async fn wait_for_line(&mut self, needle: &str, limit: Duration) -> anyhow::Result<String> {
        let found = tokio::time::timeout(limit, async {
            while let Some(line) = self.stdout.next_line().await? {
                self.stdout_seen.push_str(&line);
                self.stdout_seen.push('\n');
                if line.contains(needle) {
                    return Ok(Some(line));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        match found {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!(
                "{} closed stdout before printing {needle:?}; stdout so far:\n{}",
                self.name,
                self.stdout_seen
            ),
            Ok(Err(err)) => Err(err).context("read stdout"),
            Err(_) => bail!(
                "{} did not print {needle:?} within {limit:?}; stdout so far:\n{}",
                self.name,
                self.stdout_seen
            ),
        }
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGINT`) to the child, once
    /// the child has a handler for it (see [`catches`]), or after 10 s.
    ///
    /// A signal that lands before the binary installs its handlers takes
    /// the default action and kills it, so a test that slept a fixed time
    /// "to let it start" flaked on a loaded machine. The wait blocks this
    /// thread, polling every 2 ms; it is over within milliseconds of exec.
    #[cfg(unix)]
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid fits pid_t")?;
        let started = std::time::Instant::now();
        while catches(self.pid(), signal) == Some(false)
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own child, which is not yet reaped, so it cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    /// Sends SIGTERM, as a process manager would.
    #[cfg(unix)]
    pub fn sigterm(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Waits for the child to exit; fails (and kills it) after `limit`.
    pub async fn wait(mut self, limit: Duration) -> anyhow::Result<Output> {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.context("wait")?,
            Err(_) => {
                // Best effort: the test fails either way; kill_on_drop backs it up.
                let _ = self.child.start_kill();
                bail!("{} did not exit within {limit:?}", self.name);
            }
        };
        let mut stdout = std::mem::take(&mut self.stdout_seen);
        while let Ok(Some(line)) = self.stdout.next_line().await {
            stdout.push_str(&line);
            stdout.push('\n');
        }
        let stderr = self.stderr_task.await.unwrap_or_default();
        Ok(Output::new(status, stdout, stderr))
    }
}

/// Whether process `pid` has a handler installed for `signal`, from the
/// `SigCgt` mask in `/proc/<pid>/status` (bit `signal - 1`). `None` when
/// that cannot be told: no such process, an exited one (a zombie catches
/// nothing), or no `/proc` (not Linux).
#[cfg(unix)]
pub fn catches(pid: u32, signal: libc::c_int) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
    };
    if field("State:")?.starts_with('Z') {
        return None;
    }
    let mask = u64::from_str_radix(field("SigCgt:")?, 16).ok()?;
    let bit = u32::try_from(signal).ok()?.checked_sub(1)?;
    Some(mask.checked_shr(bit)? & 1 == 1)
}
