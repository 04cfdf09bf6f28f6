//! The command-line flags of the two server-side binaries, and how they
//! become a [`ServerConfig`]: demo support, kept out of the drivers so each
//! stays a short story. Every value goes through a `common::args` parser
//! with a stated range, so no flag can panic a binary.

use std::net::IpAddr;
use std::time::Duration;

use common::args;

use crate::server::ServerConfig;
use crate::server::bus::{BusConfig, BusUrlError};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The flags of `ws-broadcast-server` (flattened into its `Args`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerFlags {
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind. Loopback by default; 0.0.0.0 exposes it deliberately.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Period of each channel's ticker event (the stand-in for Redis/Kafka); 0s disables.
    #[arg(long, default_value = "5s", value_parser = args::duration(Duration::ZERO, DAY))]
    pub tick_interval: Duration,
    /// Connections served at once; more get HTTP 503.
    #[arg(long, default_value = "10000", value_parser = args::count(1usize, 1_000_000))]
    pub max_clients: usize,
    /// Channels alive at once; joining a new one past this gets HTTP 503.
    #[arg(long, default_value = "1000", value_parser = args::count(1usize, 1_000_000))]
    pub max_channels: usize,
    /// Largest message a client may send; larger gets Close 1009.
    #[arg(long, default_value = "64KiB", value_parser = args::bytes(1, 16 * 1024 * 1024))]
    pub max_message: u64,
    /// Messages each channel buffers for its slowest reader.
    #[arg(long, default_value = "1024", value_parser = args::count(1usize, 1_048_576))]
    pub channel_capacity: usize,
    /// Missed messages after which a lagging client is closed with 1008.
    #[arg(long, default_value = "1024", value_parser = args::count(0u64, 1_000_000_000))]
    pub lag_limit: u64,
    /// Time between server pings (must be shorter than --idle-timeout).
    #[arg(long, default_value = "20s", value_parser = args::duration(Duration::from_millis(10), DAY))]
    pub ping_interval: Duration,
    /// Close a client that sent nothing (not even a pong) for this long.
    #[arg(long, default_value = "60s", value_parser = args::duration(Duration::from_millis(10), DAY))]
    pub idle_timeout: Duration,
    /// Drop a client whose socket accepts nothing for this long.
    #[arg(long, default_value = "10s", value_parser = args::duration(Duration::from_millis(1), DAY))]
    pub write_timeout: Duration,
    /// How long shutdown waits for clients to close.
    #[arg(long, default_value = "5s", value_parser = args::duration(Duration::ZERO, Duration::from_secs(3600)))]
    pub drain_timeout: Duration,
    /// Join other instances through Redis pub/sub: redis://HOST:PORT.
    #[arg(long)]
    pub bus: Option<String>,
    /// Prefix of the bus's Redis keys and channels (one per deployment).
    #[arg(long, default_value = "ws-broadcast", requires = "bus")]
    pub bus_prefix: String,
    /// CLIENT SETNAME of the bus connection (default ws-broadcast-server-PID).
    #[arg(long, requires = "bus")]
    pub bus_name: Option<String>,
}

/// The flags of `ws-load` (flattened into its `Args`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadFlags {
    /// Base URL of a running server, e.g. ws://127.0.0.1:8080; repeat it to
    /// spread the clients over several instances.
    #[arg(long, conflicts_with = "bus")]
    pub url: Vec<String>,
    /// Subscribers on the channel (receivers, not work in flight).
    #[arg(long, default_value = "100", value_parser = args::count(1usize, 60_000))]
    pub clients: usize,
    /// Messages the publisher sends per run.
    #[arg(long, default_value = "100", value_parser = args::count(1usize, 10_000_000))]
    pub count: usize,
    /// Size of each message's text.
    #[arg(long, default_value = "64", value_parser = args::bytes(1, 65_536))]
    pub payload: u64,
    /// Fan-out runs; medians are reported.
    #[arg(long, default_value = "1", value_parser = args::count(1u32, 100))]
    pub runs: u32,
    /// Instead of fan-out: hold this many idle connections and report RSS.
    #[arg(long, value_parser = args::count(1usize, 60_000), conflicts_with_all = ["bus", "runs", "count"])]
    pub idle: Option<usize>,
    /// How long to hold the idle connections before measuring.
    #[arg(long, default_value = "2s", requires = "idle", value_parser = args::duration(Duration::ZERO, Duration::from_secs(3600)))]
    pub duration: Duration,
    /// Give up on a fan-out run after this long.
    #[arg(long, default_value = "60s", value_parser = args::duration(Duration::from_millis(1), Duration::from_secs(3600)))]
    pub timeout: Duration,
    /// Start the instances joined by this Redis bus (redis://HOST:PORT).
    #[arg(long, value_parser = bus_url)]
    pub bus: Option<String>,
    /// Server instances to start with --bus.
    #[arg(long, default_value = "2", requires = "bus", value_parser = args::count(1usize, 8))]
    pub instances: usize,
}

/// A `--bus` value the servers will accept (the same check as theirs), so
/// a bad one is a usage error before any server starts.
fn bus_url(url: &str) -> Result<String, BusUrlError> {
    BusConfig::new(url).map(|_| url.to_owned())
}

impl ServerFlags {
    /// Cross-flag checks (a usage error, exit 2).
    pub fn validate(&self) -> Result<(), String> {
        if self.ping_interval >= self.idle_timeout {
            return Err(
                "--ping-interval must be shorter than --idle-timeout, or live clients time out"
                    .into(),
            );
        }
        Ok(())
    }

    /// The server's configuration; a bad `--bus` URL is a usage error.
    pub fn config(&self) -> Result<ServerConfig, BusUrlError> {
        let bus = match &self.bus {
            None => None,
            Some(url) => {
                let mut bus = BusConfig::new(url)?;
                bus.prefix.clone_from(&self.bus_prefix);
                if let Some(name) = &self.bus_name {
                    bus.client_name.clone_from(name);
                }
                Some(bus)
            }
        };
        Ok(ServerConfig {
            max_clients: self.max_clients,
            max_channels: self.max_channels,
            max_message_bytes: usize::try_from(self.max_message).unwrap_or(usize::MAX),
            channel_capacity: self.channel_capacity,
            lag_limit: self.lag_limit,
            tick_interval: (!self.tick_interval.is_zero()).then_some(self.tick_interval),
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            drain_timeout: self.drain_timeout,
            bus,
        })
    }
}
