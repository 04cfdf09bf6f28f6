//! The sandbox on its own: a local stand-in for the internet services the
//! examples talk to (see `common::sandbox` for every endpoint).
//!
//! Run it in one terminal and point examples at it from another:
//!
//! ```text
//! cargo run --bin sandbox-server
//! cargo run --bin concurrent-fetch -- --url http://127.0.0.1:8088/delay/100
//! ```

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use common::{Example, Report, Sandbox, SandboxConfig, args};
use tokio_util::sync::CancellationToken;

/// A deterministic local HTTP and WebSocket server for the examples and
/// their tests. Part of the tokio port of the asyncio cookbook (it stands in
/// for python.org, GitHub and the echo servers the seed examples call).
/// Runs until Ctrl-C or SIGTERM.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8088)]
    port: u16,
    /// Address to bind. Loopback by default; use 0.0.0.0 only deliberately.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The `/api/users` rate limit in requests per second, from 0.001 to
    /// 1,000,000 (0 disables it).
    #[arg(long, default_value = "10", value_parser = api_rate)]
    api_rate: f64,
    /// How many `/api/users` requests may arrive back to back.
    #[arg(long, default_value = "10", value_parser = args::count(1u32, 1_000_000))]
    api_burst: u32,
    /// Simulated processing time of each `/api/users` request.
    #[arg(long, default_value = "20ms", value_parser = args::duration(Duration::ZERO, Duration::from_secs(60)))]
    api_latency: Duration,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "sandbox-server";
    const SEED: Option<u8> = None;
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
}

/// 0 (off) or a rate the limiter can schedule: 0.001 to 1,000,000 per second.
fn api_rate(text: &str) -> Result<f64, String> {
    if text.trim() == "0" {
        return Ok(0.0);
    }
    args::rate(0.001, 1e6)(text).map_err(|e| format!("{e} (or 0 to disable the limit)"))
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let config = SandboxConfig {
        addr: SocketAddr::new(args.host, args.port),
        api_rps: (args.api_rate > 0.0).then_some(args.api_rate),
        api_burst: args.api_burst,
        api_latency: args.api_latency,
    };
    // The harness installed the signal handlers before this line, so a
    // SIGTERM right after the banner is a clean stop.
    let sandbox = Sandbox::start(config)
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let quiet = args.output.json;
    let say = |line: String| {
        if !quiet {
            println!("{line}");
        }
    };
    say(format!("sandbox listening on http://{}", sandbox.addr()));
    for (path, what) in [
        ("/health", "liveness"),
        ("/delay/{ms}", "JSON after ms (?jitter_ms=&seed=)"),
        (
            "/bytes/{n}",
            "n deterministic bytes, Range (?chunk_delay_ms=&fail_after=&no_length=1)",
        ),
        ("/status/{code}", "that status (?retry_after=)"),
        (
            "/flaky",
            "seeded 500/503/hangs (?fail_rate=&hang_rate=&seed=)",
        ),
        (
            "/api/users/{name}",
            "GitHub-like user, rate limited (429 + Retry-After)",
        ),
    ] {
        say(format!("  GET {:<40} {what}", sandbox.url(path)));
    }
    say(format!(
        "  GET {:<40} WebSocket echo (?drop_after=N&ignore_pings=1)",
        sandbox.ws_url("/ws/echo")
    ));
    say("hostile catalogue (a misbehaving server; one request per connection):".to_owned());
    for (mode, what) in common::sandbox::HOSTILE_MODES {
        let url = sandbox.url(&format!("/hostile/{mode}"));
        say(format!("  GET {url:<40} {}", what.replace('`', "")));
    }
    say("Ctrl-C to stop".to_owned());

    stop.cancelled().await;
    let stats = sandbox.stats();
    sandbox.shutdown().await.context("sandbox server failed")?;
    say(format!("stopped after {} requests", stats.requests));
    Ok(Report::ok().figure("requests", stats.requests))
}
