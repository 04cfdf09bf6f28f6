//! The client's knobs as command-line flags: typed, bounded, checked.
//!
//! Flatten [`ClientFlags`] into a binary's clap arguments to get every
//! timing of [`ClientConfig`] and [`DeliveryConfig`] as a flag with a unit
//! (`--heartbeat 5s`), a range (nothing above
//! [`common::args::MAX_DURATION`], so no `Instant + Duration` can overflow
//! and `--heartbeat 1e19` is a usage error, not a panic), and the one rule
//! the pattern needs across flags: the reply timeout must exceed heartbeat
//! plus pong timeout (see [`super::delivery`]). The timing defaults
//! (heartbeat, pong timeout, reply timeout, re-send) are the library's
//! ([`ClientConfig::default`], [`DeliveryConfig::default`]), so "default
//! timings" mean the same thing in a test and on the command line; the
//! demo retries 10 times (the library: forever).

use std::time::Duration;

use common::args::{self, MAX_DURATION, show_duration};
use common::backoff::Backoff;

use super::{ClientConfig, DeliveryConfig};

const MS: Duration = Duration::from_millis(1);

/// The client's flags (flatten into a binary's `Args`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientFlags {
    /// Give up on a reply after this long connected (restarts on every
    /// connect); must exceed --heartbeat + --pong-timeout.
    #[arg(long, default_value = "15s", value_parser = args::duration(MS, MAX_DURATION))]
    pub reply_timeout: Duration,
    /// After a reconnect, wait this long for a lost message's reply before
    /// sending it again.
    #[arg(long, default_value = "1s", value_parser = args::duration(MS, MAX_DURATION))]
    pub resend_after: Duration,
    /// Time between pings.
    #[arg(long, default_value = "5s", value_parser = args::duration(MS, MAX_DURATION))]
    pub heartbeat: Duration,
    /// A ping unanswered this long means the connection is dead.
    #[arg(long, default_value = "5s", value_parser = args::duration(MS, MAX_DURATION))]
    pub pong_timeout: Duration,
    /// Reconnects after consecutive failures before giving up (0 = forever;
    /// a connection that carried messages resets the count).
    #[arg(long, visible_alias = "max-attempts", default_value = "10",
          value_parser = args::count(0u32, 1_000_000))]
    pub retries: u32,
    /// Upper bound of the first reconnect delay (full jitter below it).
    #[arg(long, default_value = "100ms", value_parser = args::duration(MS, MAX_DURATION))]
    pub initial_backoff: Duration,
    /// Cap on any reconnect delay.
    #[arg(long, default_value = "5s", value_parser = args::duration(MS, MAX_DURATION))]
    pub max_backoff: Duration,
    /// A connection up this long (or one that got a message) resets the backoff.
    #[arg(long, default_value = "10s",
          value_parser = args::duration(Duration::ZERO, MAX_DURATION))]
    pub healthy_after: Duration,
    /// Messages kept while offline before sending refuses.
    #[arg(long, default_value = "64", value_parser = args::count(1usize, 100_000))]
    pub outbox: usize,
    /// Seed of the backoff jitter (default: drawn from OS entropy, so
    /// clients started together spread out).
    #[arg(long, value_parser = args::count(0u64, u64::MAX))]
    pub seed: Option<u64>,
}

impl ClientFlags {
    /// The cross-flag checks; an `Err` is a usage error (exit 2).
    pub fn validate(&self) -> Result<(), String> {
        // Each is at most MAX_DURATION (7 days): the sum cannot overflow.
        let window = self.heartbeat + self.pong_timeout;
        if self.reply_timeout <= window {
            return Err(format!(
                "--reply-timeout {} must exceed --heartbeat + --pong-timeout ({}), \
                 so that a silent peer is reconnected to, not given up on",
                show_duration(self.reply_timeout),
                show_duration(window)
            ));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(format!(
                "--initial-backoff {} exceeds --max-backoff {}",
                show_duration(self.initial_backoff),
                show_duration(self.max_backoff)
            ));
        }
        Ok(())
    }

    /// The client's configuration; the jitter seed is drawn from OS entropy
    /// unless `--seed` was given.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig {
            heartbeat: self.heartbeat,
            pong_timeout: self.pong_timeout,
            backoff: Backoff {
                base: self.initial_backoff,
                max_delay: self.max_backoff,
                ..Backoff::default()
            },
            healthy_after: self.healthy_after,
            max_attempts: self.retries,
            outbox_capacity: self.outbox,
            ..ClientConfig::default()
        };
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        config
    }

    /// The delivery timings.
    pub fn delivery_config(&self) -> DeliveryConfig {
        DeliveryConfig {
            resend_after: self.resend_after,
            reply_timeout: self.reply_timeout,
        }
    }
}
