//! `ws-broadcast-server`: seed Example 5 as an axum server with a browser page.
//!
//! ```text
//! cargo run --bin ws-broadcast-server                  # then open http://127.0.0.1:8080/
//! cargo run --bin ws-reconnecting-client -- --url ws://127.0.0.1:8080/ws/general
//! cargo run --bin ws-broadcast-server -- --port 8081 --bus redis://127.0.0.1:6379
//! ```
//!
//! The pattern is `examples_ws::server` (and `server::bus` past one
//! machine); the flags are `examples_ws::demo::flags::ServerFlags`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use common::{Example, Report, UsageError};
use examples_ws::demo::flags::ServerFlags;
use examples_ws::server::{self, Hub};
use tokio_util::sync::CancellationToken;

/// WebSocket broadcast server: channels at /ws/{channel}, a chat page at /,
/// counters at /stats. One writer task per client so a slow client stalls
/// nobody, a lag policy (notice, then Close 1008), size/connection/channel
/// limits, a supervised ticker per channel, and Close 1001 to every client on
/// Ctrl-C/SIGTERM (exit 130 after the drain; 1 if the drain timed out). With
/// --bus redis://HOST:PORT several instances share every channel through
/// Redis pub/sub, in one order. Runs until stopped; with --json it prints
/// nothing until then, and at exit one JSON line with the drain report and
/// the counters.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    server: ServerFlags,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "ws-broadcast-server";
    const SEED: Option<u8> = Some(5);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
    fn validate(&self) -> Result<(), String> {
        self.server.validate()
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let flags = &args.server;
    let config = flags
        .config()
        .map_err(|err| UsageError::new(err.to_string()))?;
    match examples_ws::demo::os::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(err) => tracing::warn!("cannot raise the open files limit: {err}"),
    }
    let drain_timeout = config.drain_timeout;
    let addr = SocketAddr::new(flags.host, flags.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let hub = Hub::new(config);
    let say = |line: String| args.output.say(line);
    // The harness installed the signal handlers: a SIGTERM right after this
    // banner is a clean stop.
    say(format!("listening on http://{local}"));
    say(format!("  open http://{local}/ in a browser to chat"));
    say(format!(
        "  WebSocket: ws://{local}/ws/{{channel}}?name=you   counters: http://{local}/stats"
    ));
    if let Some(url) = &flags.bus {
        say(format!("  bus: {url} (prefix {})", flags.bus_prefix));
    }
    say("Ctrl-C to stop".to_owned());
    let report = server::serve(listener, hub.clone(), stop.cancelled_owned())
        .await
        .context("server failed")?;
    let stats = hub.stats();
    let how = if report.drained {
        "all drained"
    } else {
        "drain timed out, rest cut"
    };
    say(format!(
        "shutdown: sent Close 1001 to {} clients; {how}",
        report.open_at_shutdown
    ));
    say(format!(
        "stopped after {} connections, {} messages published, {} lag notices, {} lag closes, {} slow drops",
        stats.accepted, stats.published, stats.lag_notices, stats.lag_closes, stats.slow_closes
    ));
    let failure = (!report.drained).then(|| format!("drain timed out after {drain_timeout:?}"));
    Ok(Report::ok()
        .figure("drain", report)
        .figure("stats", stats)
        .fail_if(failure))
}
