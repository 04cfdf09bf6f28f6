//! The flags of `rate-limited-client`, each through a bounded parser
//! (demo support: the binary's command line, kept here so its driver stays
//! a page).

use std::time::Duration;

use clap::Parser;
use common::args::{self, MAX_DURATION};
use common::{Example, SandboxConfig};

/// `--bench` runs this long unless `--duration` says otherwise.
pub const BENCH_DURATION: Duration = Duration::from_secs(3);
const MS: Duration = Duration::from_millis(1);

/// Fetches many users from a GitHub-like JSON API at a fixed rate (GCRA
/// limiter: --rate, --burst) with a separate in-flight cap, typed results
/// and Retry-After handling (clamped, never past --timeout). With no --url
/// it talks to an in-process sandbox whose own limit answers 429 to clients
/// that go too fast (25% above --rate by default), so the limited run shows
/// zero 429s and --no-limit shows what happens without the limiter.
/// --shared-limit shares one budget between processes through Redis.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// Requests started per second (fractional allowed, e.g. 0.5); with
    /// --shared-limit, the rate shared by every process on the key.
    #[arg(long, default_value = "20", value_parser = args::rate(0.001, 100_000.0))]
    pub rate: f64,
    /// Requests that may start back to back when the limiter is idle.
    #[arg(long, default_value = "5", value_parser = args::count(1u32, 10_000))]
    pub burst: u32,
    /// Most requests in flight at once (independent of the rate).
    #[arg(long, default_value = "10", value_parser = args::count(1usize, 10_000))]
    pub concurrency: usize,
    /// Turn the rate limiter off (the in-flight cap stays).
    #[arg(long, conflicts_with = "shared_limit")]
    pub no_limit: bool,
    /// Users to fetch, comma separated (default: --count generated names).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["count", "duration"])]
    pub users: Vec<String>,
    /// How many generated users to fetch.
    #[arg(long, default_value = "40", value_parser = args::count(1usize, 1_000_000))]
    pub count: usize,
    /// Keep fetching generated users for this long instead of --count
    /// (with --bench: how long each limiter is measured, default 3s).
    #[arg(long, conflicts_with = "count", value_parser = args::duration(MS, MAX_DURATION))]
    pub duration: Option<Duration>,
    /// A real API instead of the sandbox (e.g. `https://api.github.com`).
    #[arg(long)]
    pub url: Option<String>,
    /// Sandbox only: its own limit in requests per second (default 1.25 x --rate).
    #[arg(long, conflicts_with = "url", value_parser = args::rate(0.001, 1_000_000.0))]
    pub server_rate: Option<f64>,
    /// Sandbox only: its own burst (default 2 x --burst).
    #[arg(long, conflicts_with = "url", value_parser = args::count(1u32, 1_000_000))]
    pub server_burst: Option<u32>,
    /// The most one call may take: every attempt, Retry-After wait and
    /// later slot wait included, from its first start.
    #[arg(long, default_value = "10s", value_parser = args::duration(MS, MAX_DURATION))]
    pub timeout: Duration,
    /// Retries after a 429 (each waits Retry-After and pauses the limiter).
    #[arg(long, default_value = "2", value_parser = args::count(0u32, 100))]
    pub retries: u32,
    /// The longest Retry-After honoured; longer demands are clamped to it.
    #[arg(long, default_value = "60s", value_parser = args::duration(Duration::ZERO, Duration::from_secs(3600)))]
    pub max_retry_after: Duration,
    /// The largest response body read.
    #[arg(long, default_value = "1MiB", value_parser = args::bytes(1, 1 << 30))]
    pub max_body: u64,
    /// Share the rate limit with every process using the same --limit-key
    /// through this Redis (`redis://HOST:PORT`). Fails closed: no Redis, no
    /// requests.
    #[arg(long, value_name = "URL", value_parser = redis_url)]
    pub shared_limit: Option<String>,
    /// The Redis key holding the shared schedule.
    #[arg(long, default_value = "rate-limited-client", requires = "shared_limit", value_parser = limit_key)]
    pub limit_key: String,
    /// Benchmark mode: limiter decisions/s and latency, in-process and
    /// (with --shared-limit) through Redis.
    #[arg(long, conflicts_with_all = ["url", "users", "no_limit", "server_rate", "server_burst"])]
    pub bench: bool,
    // The shared output flags (--json, --log-format); a `//` comment so
    // clap does not take it as help text.
    #[allow(missing_docs)]
    #[command(flatten)]
    pub output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "rate-limited-client";
    const SEED: Option<u8> = Some(2);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
    fn validate(&self) -> Result<(), String> {
        use crate::shared_limit::MAX_SHARED_RATE;
        if self.shared_limit.is_some() && self.rate > MAX_SHARED_RATE {
            return Err(format!(
                "--rate {} is above {MAX_SHARED_RATE}, the fastest --shared-limit rate",
                self.rate
            ));
        }
        Ok(())
    }
}

impl Args {
    /// The sandbox's own limit: 25% above the client's, twice its burst.
    pub fn sandbox_config(&self) -> SandboxConfig {
        SandboxConfig {
            api_rps: Some(self.server_rate.unwrap_or(self.rate * 1.25)),
            api_burst: self.server_burst.unwrap_or(self.burst.saturating_mul(2)),
            ..SandboxConfig::default()
        }
    }
}

fn redis_url(text: &str) -> Result<String, String> {
    match text.split_once("://") {
        Some(("redis", rest)) if !rest.is_empty() => Ok(text.to_owned()),
        _ => Err(format!("{text:?} is not a redis://HOST:PORT URL")),
    }
}

fn limit_key(text: &str) -> Result<String, String> {
    let ok = (1..=200).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_owned())
        .ok_or_else(|| format!("{text:?}: a key is 1 to 200 printable ASCII characters"))
}
