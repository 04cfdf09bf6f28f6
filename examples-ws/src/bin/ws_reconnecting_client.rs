//! `ws-reconnecting-client`: seed Example 4 with a pong deadline, jittered
//! backoff, a bounded outbox and events as a stream.
//!
//! ```text
//! cargo run --bin ws-reconnecting-client                       # sandbox echo that drops every 3 messages
//! cargo run --bin ws-reconnecting-client -- --url ws://127.0.0.1:8080/ws/general --count 5
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use common::{Sandbox, SandboxConfig, Stopwatch};
use examples_ws::backoff::BackoffConfig;
use examples_ws::cli::{parse_duration, parse_positive_duration};
use examples_ws::client::{Client, ClientConfig, Event, Events, UrlConnector};
use tokio::time::Instant;

/// WebSocket client that stays connected: sends --count messages, each
/// waiting for its echo, and re-sends any message a dropped connection lost.
/// Ports seed Example 4 (WebSocket client with reconnection): pings with a
/// pong deadline (the seed never checks pongs), capped full-jitter backoff
/// that resets only after a healthy period, a bounded outbox, and Close on
/// Ctrl-C. Without --url it talks to an in-process echo server that drops
/// the connection every --drop-after messages.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// ws:// or wss:// URL; default: the in-process sandbox echo.
    #[arg(long)]
    url: Option<String>,
    /// The sandbox echo drops the connection after this many echoes (no --url only).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    drop_after: u64,
    /// Messages to send.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Wait at most this long for each message's echo.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    reply_timeout: Duration,
    /// Re-send a message not echoed this long after (re)connecting.
    #[arg(long, default_value = "1s", value_parser = parse_positive_duration)]
    resend_after: Duration,
    /// Time between pings.
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration)]
    heartbeat: Duration,
    /// A ping unanswered this long means the connection is dead.
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration)]
    pong_timeout: Duration,
    /// Reconnect attempts after consecutive failures before giving up (0 = forever).
    #[arg(long, default_value_t = 10)]
    max_attempts: u32,
    /// Upper bound of the first reconnect delay (full jitter below it).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    initial_backoff: Duration,
    /// Cap on any reconnect delay.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    max_backoff: Duration,
    /// A connection up this long resets the backoff.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    healthy_after: Duration,
    /// Messages kept while offline before send() refuses.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    outbox: u32,
    /// Seed of the backoff jitter.
    #[arg(long, default_value_t = 4)]
    seed: u64,
    #[command(flatten)]
    output: common::OutputArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging(args.output.log_format);
    common::exit_code(run(args).await)
}

#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    url: String,
    sent: u32,
    echoed: u32,
    resent: u32,
    connections: u64,
    reconnects: u32,
    unsent: usize,
    interrupted: bool,
    elapsed_ms: f64,
}

async fn run(args: Args) -> anyhow::Result<()> {
    common::init_crypto(); // wss:// needs the rustls provider
    let sandbox = match args.url {
        Some(_) => None,
        None => Some(
            Sandbox::start(SandboxConfig::default())
                .await
                .context("cannot start the sandbox")?,
        ),
    };
    let url = match (&args.url, &sandbox) {
        (Some(url), _) => url.clone(),
        (None, Some(sandbox)) => {
            sandbox.ws_url(&format!("/ws/echo?drop_after={}", args.drop_after))
        }
        (None, None) => unreachable!("a sandbox is started when --url is absent"),
    };
    let connector = UrlConnector::new(&url).with_context(|| format!("bad --url {url:?}"))?;
    let config = ClientConfig {
        heartbeat: args.heartbeat,
        pong_timeout: args.pong_timeout,
        backoff: BackoffConfig {
            initial: args.initial_backoff,
            max: args.max_backoff,
        },
        healthy_after: args.healthy_after,
        max_attempts: args.max_attempts,
        outbox_capacity: args.outbox as usize,
        seed: args.seed,
        ..ClientConfig::default()
    };
    // The on-connect hook: what a real client would use to re-subscribe or
    // re-authenticate. Here it greets, so each new connection is visible.
    let (client, mut events) = Client::spawn(connector, config, |n| {
        vec![format!("hello from connection {n}")]
    });
    let story = !args.output.json;
    let mut summary = Summary {
        url: url.clone(),
        ..Summary::default()
    };
    if story {
        println!("talking to {url}");
    }
    let watch = Stopwatch::start();
    let outcome = tokio::select! {
        outcome = exchange(&client, &mut events, &args, &mut summary, story) => outcome,
        () = common::shutdown_signal() => { summary.interrupted = true; Ok(()) }
    };
    let unsent = client.close().await;
    summary.unsent = unsent.len();
    summary.elapsed_ms = watch.elapsed().as_secs_f64() * 1e3;
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await.context("sandbox failed")?;
    }
    outcome?;
    if story {
        if summary.interrupted {
            println!("interrupted: sent Close and stopped");
        }
        println!(
            "done: {} of {} messages echoed over {} connections ({} reconnects, {} re-sent, {} unsent) in {:.0} ms",
            summary.echoed,
            args.count,
            summary.connections,
            summary.reconnects,
            summary.resent,
            summary.unsent,
            summary.elapsed_ms
        );
    } else {
        println!("{}", serde_json::to_string(&summary)?);
    }
    Ok(())
}

/// Sends each message and waits for its echo. The client keeps a message
/// that was queued but not written and sends it on the next connection, but
/// one written just before the connection died is gone; so a message with no
/// echo within --resend-after of (re)connecting is queued again
/// (at-least-once; a late duplicate echo is shown and ignored).
async fn exchange(
    client: &Client,
    events: &mut Events,
    args: &Args,
    summary: &mut Summary,
    story: bool,
) -> anyhow::Result<()> {
    for i in 1..=args.count {
        let tag = format!("[{i}/{}]", args.count);
        let text = format!("{tag} hello from ws-reconnecting-client");
        client.send(text.clone()).context("cannot queue")?;
        summary.sent += 1;
        let give_up_at = Instant::now() + args.reply_timeout;
        let mut resend_at = Instant::now() + args.resend_after;
        loop {
            let event = match tokio::time::timeout_at(resend_at.min(give_up_at), events.recv())
                .await
            {
                Ok(event) => event.context("client stopped unexpectedly")?,
                Err(_) if Instant::now() >= give_up_at => {
                    bail!("no echo of message {i} within {:?}", args.reply_timeout)
                }
                Err(_) => {
                    if story {
                        println!(
                            "no echo of message {i} yet: it was lost with the old connection; sending again"
                        );
                    }
                    client.send(text.clone()).context("cannot queue")?;
                    summary.resent += 1;
                    resend_at = Instant::now() + args.resend_after;
                    continue;
                }
            };
            match event {
                Event::Message(reply) if reply.contains(&tag) => {
                    summary.echoed += 1;
                    if story {
                        println!("  <- {reply}");
                    }
                    break;
                }
                Event::Message(reply) if story => {
                    let note = if reply.starts_with('[') {
                        "   (late duplicate, ignored)"
                    } else {
                        ""
                    };
                    println!("  <- {reply}{note}");
                }
                Event::Connected { connection } => {
                    summary.connections = connection;
                    resend_at = Instant::now() + args.resend_after;
                    if story {
                        println!("connected (connection {connection})");
                    }
                }
                Event::Disconnected { reason } => {
                    // Wait for the reconnect before judging what was lost.
                    resend_at = give_up_at;
                    if story {
                        println!("disconnected: {reason}");
                    }
                }
                Event::Reconnecting { attempt, delay } => {
                    summary.reconnects += 1;
                    if story {
                        println!(
                            "reconnecting in {} ms (attempt {attempt})",
                            delay.as_millis()
                        );
                    }
                }
                Event::ConnectFailed { error } if story => println!("connect failed: {error}"),
                Event::GaveUp { attempts } => bail!("gave up after {attempts} reconnect attempts"),
                _ => {}
            }
        }
    }
    Ok(())
}
