//! The client's command-line flags: the cross-flag rules at their
//! boundaries, and every flag reaching the configuration it names.

use std::time::Duration;

use clap::Parser;
use examples_ws::client::flags::ClientFlags;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    flags: ClientFlags,
}

fn flags(args: &[&str]) -> ClientFlags {
    let argv = std::iter::once("client").chain(args.iter().copied());
    Cli::try_parse_from(argv).expect("parses").flags
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_reply_timeout_must_exceed_heartbeat_plus_pong_timeout() {
    let at = |reply: &str| {
        flags(&[
            "--heartbeat",
            "5s",
            "--pong-timeout",
            "4s",
            "--reply-timeout",
            reply,
        ])
    };
    let err = at("9s").validate().expect_err("equal to the window");
    assert!(
        err.contains("--reply-timeout 9s") && err.contains("(9s)"),
        "{err}"
    );
    assert!(at("8s").validate().is_err(), "below the window");
    assert_eq!(at("9001ms").validate(), Ok(()), "just above it");
    assert_eq!(flags(&[]).validate(), Ok(()), "the defaults agree");
}

#[test]
fn the_first_backoff_may_not_exceed_the_cap() {
    let at = |initial: &str| flags(&["--initial-backoff", initial, "--max-backoff", "2s"]);
    assert_eq!(at("2s").validate(), Ok(()), "equal is fine");
    assert_eq!(at("1s").validate(), Ok(()));
    let err = at("2001ms").validate().expect_err("above the cap");
    assert!(err.contains("--initial-backoff"), "{err}");
}

#[test]
fn every_flag_reaches_the_configuration() {
    let f = flags(&[
        "--heartbeat",
        "3s",
        "--pong-timeout",
        "2s",
        "--reply-timeout",
        "30s",
        "--resend-after",
        "1500ms",
        "--retries",
        "7",
        "--initial-backoff",
        "50ms",
        "--max-backoff",
        "4s",
        "--healthy-after",
        "20s",
        "--outbox",
        "9",
        "--seed",
        "42",
    ]);
    let config = f.client_config();
    assert_eq!(
        (config.heartbeat, config.pong_timeout),
        (ms(3000), ms(2000))
    );
    assert_eq!(
        (config.backoff.base, config.backoff.max_delay),
        (ms(50), ms(4000))
    );
    assert_eq!(config.healthy_after, ms(20_000));
    assert_eq!(
        (config.max_attempts, config.outbox_capacity, config.seed),
        (7, 9, 42)
    );
    let delivery = f.delivery_config();
    assert_eq!(
        (delivery.reply_timeout, delivery.resend_after),
        (ms(30_000), ms(1500))
    );
}

#[test]
fn without_seed_each_client_draws_its_own() {
    let seeds: std::collections::HashSet<u64> =
        (0..8).map(|_| flags(&[]).client_config().seed).collect();
    assert!(seeds.len() > 1, "eight clients, one seed: {seeds:?}");
}
