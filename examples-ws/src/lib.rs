//! WebSocket patterns: a client that stays connected, a broadcast server
//! that a slow client cannot stall, and a load generator for both.
//!
//! Ports seed Examples 4 and 5 (see each module for what changes and why).
//!
//! - [`client`]: supervisor task with heartbeat + pong deadline, jittered
//!   reconnect, bounded outbox, events as a stream, and at-least-once
//!   [`client::Client::deliver`].
//! - [`server`]: axum server with one `broadcast` channel per room, one
//!   writer task per connection, a lag policy, limits, graceful shutdown,
//!   and a browser page at `/`; with `--bus redis://...` ([`server::bus`])
//!   several instances share every channel through Redis pub/sub.
//! - [`message`]: the JSON the server sends.
//! - [`demo`]: demo and benchmark support, not a pattern: the `ws-load`
//!   load generator and OS helpers.
//!
//! ```text
//! cargo run --bin ws-reconnecting-client
//! cargo run --bin ws-broadcast-server          # then open http://127.0.0.1:8080/
//! cargo run --release --bin ws-load -- --clients 1000 --count 1000
//! cargo test -p examples-ws
//! ```

pub mod client;
pub mod demo;
pub mod message;
pub mod server;
