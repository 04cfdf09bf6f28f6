//! `ws-reconnecting-client`: seed Example 4; the pattern is `examples_ws::client`.
//! ```text
//! cargo run --bin ws-reconnecting-client                       # sandbox echo that drops every 3 messages
//! cargo run --bin ws-reconnecting-client -- --url ws://127.0.0.1:8080/ws/general --count 5
//! ```

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use common::{Example, Report, Sandbox, SandboxConfig, UsageError, args};
use examples_ws::client::flags::ClientFlags;
use examples_ws::client::{Client, Event, UrlConnector};
use tokio_util::sync::CancellationToken;

/// WebSocket client that stays connected: sends --count messages, each
/// waiting for its echo, and re-sends one a dropped connection lost (after
/// the reconnect, never while offline). Pings carry a pong deadline (the
/// seed never checks pongs), reconnects use capped full-jitter backoff
/// seeded from OS entropy unless --seed is given, and Ctrl-C sends Close.
/// Without --url it talks to an in-process echo server that drops the
/// connection every --drop-after messages.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// ws:// or wss:// URL; default: the in-process sandbox echo.
    #[arg(long)]
    url: Option<String>,
    /// The sandbox echo drops the connection after this many echoes.
    #[arg(long, default_value = "3", value_parser = args::count(1u64, 1_000_000), conflicts_with = "url")]
    drop_after: u64,
    /// Messages to send.
    #[arg(long, default_value = "9", value_parser = args::count(1u32, 100_000))]
    count: u32,
    #[command(flatten)]
    client: ClientFlags,
    #[command(flatten)]
    output: common::OutputArgs,
}

impl Example for Args {
    const NAME: &'static str = "ws-reconnecting-client";
    const SEED: Option<u8> = Some(4);
    fn output(&self) -> &common::OutputArgs {
        &self.output
    }
    fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.url {
            UrlConnector::new(url).map_err(|err| format!("bad --url {url:?}: {err}"))?;
        }
        self.client.validate()
    }
}

fn main() -> ExitCode {
    common::driver::main(run)
}

async fn run(args: Args, stop: CancellationToken) -> anyhow::Result<Report> {
    let sandbox = match args.url {
        Some(_) => None,
        None => Some(Sandbox::start(SandboxConfig::default()).await?),
    };
    let url = match &sandbox {
        Some(sandbox) => sandbox.ws_url(&format!("/ws/echo?drop_after={}", args.drop_after)),
        None => args.url.clone().unwrap_or_default(),
    };
    let connector = UrlConnector::new(&url)
        .map_err(|err| UsageError::new(format!("bad --url {url:?}: {err}")))?;
    let config = args.client.client_config();
    let jitter_seed = config.seed;
    // The on-connect hook, where a client re-subscribes: here it greets.
    let (client, mut events) = Client::spawn(connector, config, |n| {
        vec![format!("hello from connection {n}")]
    });
    let say = |line: &dyn std::fmt::Display| {
        if !args.output.json {
            println!("{line}")
        }
    };
    say(&format_args!("talking to {url}"));
    let delivery = args.client.delivery_config();
    let (mut echoed, mut resent, mut connections, mut reconnects) = (0u32, 0u32, 0u64, 0u32);
    let mut failure = None;
    for i in 1..=args.count {
        let tag = format!("[{i}/{}]", args.count);
        let text = format!("{tag} hello from ws-reconnecting-client");
        let mut observe = |event: &Event| {
            match event {
                Event::Connected { connection } => connections = *connection,
                Event::Reconnecting { .. } => reconnects += 1,
                Event::Message(reply) if reply.starts_with('[') && !reply.contains(&tag) => {
                    return say(&format_args!("{event}   (late duplicate, ignored)"));
                }
                _ => {}
            }
            say(event);
        };
        let outcome = tokio::select! {
            outcome = client.deliver(&mut events, &text, &delivery, |reply| reply.contains(&tag), &mut observe) => outcome,
            () = stop.cancelled() => break,
        };
        match outcome {
            Ok(done) => (echoed, resent) = (echoed + 1, resent + done.resent),
            Err(err) => {
                failure = Some(format!("message {i} of {} not echoed: {err}", args.count));
                break;
            }
        }
    }
    let unsent = client.close().await.len();
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await.context("sandbox failed")?;
    }
    if stop.is_cancelled() {
        say(&"interrupted: sent Close and stopped");
    }
    say(&format_args!(
        "done: {echoed} of {} messages echoed over {connections} connections ({reconnects} reconnects, {resent} re-sent, {unsent} unsent)",
        args.count
    ));
    let figures = serde_json::json!({
        "url": url, "count": args.count, "echoed": echoed, "resent": resent,
        "connections": connections, "reconnects": reconnects, "unsent": unsent, "jitter_seed": jitter_seed,
    });
    Ok(Report::ok().figures(figures).fail_if(failure))
}
