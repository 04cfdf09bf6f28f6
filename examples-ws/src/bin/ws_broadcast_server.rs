//! `ws-broadcast-server`: seed Example 5 as an axum server with a browser page.
//!
//! ```text
//! cargo run --bin ws-broadcast-server                  # then open http://127.0.0.1:8080/
//! cargo run --bin ws-reconnecting-client -- --url ws://127.0.0.1:8080/ws/general
//! ```

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::Parser;
use examples_ws::cli::{parse_duration, parse_positive_duration};
use examples_ws::server::{self, Hub, ServerConfig};

/// WebSocket broadcast server: channels at /ws/{channel}, a chat page at /,
/// counters at /stats. Ports seed Example 5 (WebSocket server with multiple
/// event sources): one writer task per client so a slow client stalls nobody,
/// a lag policy (notice, then Close 1008), size/connection/channel limits, a
/// supervised ticker per channel, and Close 1001 to every client on
/// Ctrl-C/SIGTERM. Runs until stopped; with --json it prints nothing until
/// then, and at exit one JSON line with the drain report and the counters.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind. Loopback by default; 0.0.0.0 exposes it deliberately.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Period of each channel's ticker event (the stand-in for Redis/Kafka); 0 disables.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    tick_interval: Duration,
    /// Connections served at once; more get HTTP 503.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_clients: u32,
    /// Channels alive at once; joining a new one past this gets HTTP 503.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_channels: u32,
    /// Largest message a client may send; larger gets Close 1009.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..=16_777_216))]
    max_message_bytes: u32,
    /// Messages each channel buffers for its slowest reader.
    #[arg(long, default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    channel_capacity: u32,
    /// Missed messages after which a lagging client is closed with 1008.
    #[arg(long, default_value_t = 1_024)]
    lag_limit: u64,
    /// Time between server pings.
    #[arg(long, default_value = "20s", value_parser = parse_positive_duration)]
    ping_interval: Duration,
    /// Close a client that sent nothing (not even a pong) for this long.
    #[arg(long, default_value = "60s", value_parser = parse_positive_duration)]
    idle_timeout: Duration,
    /// Drop a client whose socket accepts nothing for this long.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    write_timeout: Duration,
    /// How long shutdown waits for clients to close.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_timeout: Duration,
    #[command(flatten)]
    output: common::OutputArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    common::exit_code(run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.idle_timeout > args.ping_interval,
        "--idle-timeout must be longer than --ping-interval, or live clients time out"
    );
    match examples_ws::os::raise_open_files_limit() {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(err) => tracing::warn!("cannot raise the open files limit: {err}"),
    }
    let config = ServerConfig {
        max_clients: args.max_clients as usize,
        max_channels: args.max_channels as usize,
        max_message_bytes: args.max_message_bytes as usize,
        channel_capacity: args.channel_capacity as usize,
        lag_limit: args.lag_limit,
        tick_interval: (!args.tick_interval.is_zero()).then_some(args.tick_interval),
        ping_interval: args.ping_interval,
        idle_timeout: args.idle_timeout,
        write_timeout: args.write_timeout,
        drain_timeout: args.drain_timeout,
    };
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let hub = Hub::new(config);
    // Signal handlers before the banner: a SIGTERM right after "listening"
    // must start a graceful stop, not kill the process.
    let shutdown = common::shutdown_signal();
    if !args.output.json {
        println!("listening on http://{local}");
        println!("  open http://{local}/ in a browser to chat");
        println!(
            "  WebSocket: ws://{local}/ws/{{channel}}?name=you   counters: http://{local}/stats"
        );
        println!("Ctrl-C to stop");
    }
    let report = server::serve(listener, hub.clone(), shutdown)
        .await
        .context("server failed")?;
    let stats = hub.stats();
    if args.output.json {
        let summary = serde_json::json!({ "drain": report, "stats": stats });
        println!("{summary}");
    } else {
        println!(
            "shutdown: sent Close 1001 to {} clients; {}",
            report.open_at_shutdown,
            if report.drained {
                "all drained"
            } else {
                "drain timed out, rest cut"
            }
        );
        println!(
            "stopped after {} connections, {} messages published, {} lag notices, {} lag closes, {} slow drops",
            stats.accepted, stats.published, stats.lag_notices, stats.lag_closes, stats.slow_closes
        );
    }
    Ok(())
}
