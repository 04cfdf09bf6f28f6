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
use common::{LogFormat, Sandbox, SandboxConfig};

/// A deterministic local HTTP and WebSocket server for the examples and
/// their tests. Part of the tokio port of the asyncio cookbook (it stands in
/// for python.org, GitHub and the echo servers the seed examples call).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8088)]
    port: u16,
    /// Address to bind. Loopback by default; use 0.0.0.0 only deliberately.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The `/api/users` rate limit in requests per second (0 disables it).
    #[arg(long, default_value_t = 10.0)]
    api_rps: f64,
    /// How many `/api/users` requests may arrive back to back.
    #[arg(long, default_value_t = 10)]
    api_burst: u32,
    /// Simulated processing time of each `/api/users` request, in ms.
    #[arg(long, default_value_t = 20)]
    api_latency_ms: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.log_format);
    common::exit_code(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !(args.api_rps >= 0.0 && args.api_rps.is_finite()) {
        anyhow::bail!("--api-rps must be a finite number >= 0");
    }
    let config = SandboxConfig {
        addr: SocketAddr::new(args.host, args.port),
        api_rps: (args.api_rps > 0.0).then_some(args.api_rps),
        api_burst: args.api_burst,
        api_latency: Duration::from_millis(args.api_latency_ms),
    };
    // Handlers first, so a SIGTERM right after the banner is a clean stop.
    let shutdown = common::shutdown_signal();
    let sandbox = Sandbox::start(config)
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;

    println!("sandbox listening on http://{}", sandbox.addr());
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
        println!("  GET {:<40} {what}", sandbox.url(path));
    }
    println!(
        "  GET {:<40} WebSocket echo (?drop_after=N&ignore_pings=1)",
        sandbox.ws_url("/ws/echo")
    );
    println!("Ctrl-C to stop");

    shutdown.await;
    let stats = sandbox.stats();
    sandbox.shutdown().await.context("sandbox server failed")?;
    println!("stopped after {} requests", stats.requests);
    Ok(())
}
