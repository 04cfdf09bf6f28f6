//! The sandbox: a local, deterministic stand-in for the internet.
//!
//! The Python cookbook fetches python.org and GitHub, so its examples fail
//! offline, change behaviour with the weather, and cannot be tested. Every
//! example here talks to this axum app instead, started in-process on an
//! ephemeral loopback port (or on its own with `cargo run --bin
//! sandbox-server`). Real targets stay one `--url` flag away.
//!
//! | endpoint | behaviour |
//! |---|---|
//! | `GET /health` | `{"status":"ok"}` |
//! | `GET /delay/{ms}` | small JSON after `ms`; `?jitter_ms=J&seed=S` adds a seeded 0..=J |
//! | `GET /bytes/{n}` | `n` deterministic bytes ([`pattern_byte`]); Content-Length, `Range` (206/416); `?chunk_size=`, `?chunk_delay_ms=`, `?fail_after=K` (cut the connection after K bytes), `?no_length=1` (chunked), `?ignore_range=1`; a strong ETag `"bytes-{n}"` and If-Range (`?no_etag=1` drops the ETag) |
//! | `GET /status/{code}` | answers with that status; `?retry_after=S` adds Retry-After |
//! | `GET /flaky` | `?fail_rate=&hang_rate=&hang_ms=&seed=&retry_after=`: seeded 500/503 and hung responses |
//! | `GET /api/users/{name}` | a GitHub-like user; the sandbox's own rate limit answers 429 + Retry-After; `?malformed=1` sends broken JSON |
//! | `GET /ws/echo` | WebSocket echo; `?drop_after=N` drops after N echoes (`&drop_mode=close` sends Close 1012 instead of cutting the TCP stream); `?ignore_pings=1` goes silent (a half-open peer) |
//! | `/hostile/{mode}` | a misbehaving server, one mode per path (below) |
//!
//! ## The hostile catalogue
//!
//! `/hostile/{mode}` answers the way a broken or malicious server would, so
//! every client can be tested against it (issue 14). It is served on the
//! same port by a raw writer (see [`hostile`] for how), one
//! request per connection. Every mode is bounded on the server side and
//! ends at [`Sandbox::shutdown`]. `?bytes=N` defaults to 1000.
//!
//! | mode | behaviour |
//! |---|---|
//! | `garbage-status` | `HTTP/1.1 two-hundred OKish`: a status line that is not HTTP, then close |
//! | `close-mid-headers` | a status line and half a header, then close |
//! | `slow-body` | 200, Content-Length N (`?bytes=N`, at most 86400), one byte per second |
//! | `short-body-close` | Content-Length N, only N/2 bytes, then close |
//! | `short-body-hang` | Content-Length N, only N/2 bytes, then the connection stays open silently |
//! | `endless-chunked` | 200 chunked; the body never ends |
//! | `endless-length` | 200 with Content-Length 1 PiB; the body never ends |
//! | `huge-headers` | one 1 MiB header (`X-Huge`), then a 2-byte body |
//! | `endless-headers` | a status line, then header lines forever |
//! | `gzip-bomb` | `Content-Encoding: gzip`, ~1 MiB on the wire inflating to 1 GiB of zeros (valid gzip) |
//! | `retry-after-max` | 429 with `Retry-After: 18446744073709551615` and a small JSON body; `?status=503` for 503 |
//! | `retry-after-huge` | the same with `Retry-After: 999999999` |
//! | `retry-after-past-date` | the same with `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` |
//! | `retry-after-garbage` | the same with `Retry-After: soon, maybe` |
//! | `retry-after-negative` | the same with `Retry-After: -5` |
//! | `redirect-loop` | 302 to itself, forever |
//! | `bad-range` | N bytes (`?bytes=N`, N >= 16); any satisfiable Range gets a 206 whose Content-Range starts 7 bytes off the requested start |
//! | `changing` | N bytes whose content ([`changing_byte`]) and ETag (`"v<k>"`) change on every request; Range honoured, If-Range that does not name the current ETag gives the full 200 |
//! | `no-length-cut` | 200 with neither Content-Length nor chunking: N bytes, then a clean close (HTTP/1.1 cannot tell this truncation from the end) |
//! | `hang` | reads the request, never answers (until the client closes) |
//!
//! A `/hostile/` request on a keep-alive connection that already served a
//! normal endpoint gets a `307` to itself with `Connection: close`, so a
//! redirect-following client meets the mode on a fresh connection. The
//! catalogue is served only by [`Sandbox::start`]/[`Sandbox::serve`], not by
//! the bare [`app`] router.
//!
//! "Deterministic" means: the same request sequence gets the same answers.
//! Seeded randomness comes from a counter per seed, so the n-th `/flaky`
//! request with `seed=7` always gets the same outcome.
//!
//! The sandbox is a test fixture, but it is still a server reading untrusted
//! input: sizes, delays and WebSocket messages are capped, and it binds
//! loopback unless told otherwise.

mod api;
mod bytes;
mod flaky;
pub mod hostile;
mod ws;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::bytes::{pattern, pattern_byte};
pub use self::hostile::{HOSTILE_MODES, changing_byte, gzip_bomb};

/// Longest delay any endpoint will sleep for (`/delay`, `hang_ms`, chunk delays).
pub const MAX_DELAY: Duration = Duration::from_secs(600);
/// Largest body `/bytes/{n}` serves: 64 GiB, streamed, never buffered.
pub const MAX_BYTES: u64 = 64 << 30;
/// Largest WebSocket message the echo endpoint accepts.
pub const MAX_WS_MESSAGE: usize = 1 << 20;
/// How long [`Sandbox::shutdown`] waits for open requests before aborting.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the sandbox is configured to do.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to bind; port 0 picks a free one. Default `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// The `/api/users` rate limit in requests per second; `None` disables it.
    pub api_rps: Option<f64>,
    /// How many `/api/users` requests may arrive back to back.
    pub api_burst: u32,
    /// Simulated processing time of each `/api/users` request.
    pub api_latency: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_rps: Some(10.0),
            api_burst: 10,
            api_latency: Duration::from_millis(20),
        }
    }
}

/// Request counters, readable while the sandbox runs.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    api_ok: AtomicU64,
    api_rate_limited: AtomicU64,
    flaky_failures: AtomicU64,
    ws_connections: AtomicU64,
}

/// A snapshot of the sandbox's counters, e.g. to prove a client sent no
/// request the server had to reject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SandboxStats {
    /// Every HTTP request routed (WebSocket upgrades included).
    pub requests: u64,
    /// `/api/users` requests answered (any status but 429).
    pub api_ok: u64,
    /// `/api/users` requests rejected with 429.
    pub api_rate_limited: u64,
    /// `/flaky` requests that failed or hung.
    pub flaky_failures: u64,
    /// WebSocket connections accepted.
    pub ws_connections: u64,
}

/// State shared by every handler.
#[derive(Debug)]
struct AppState {
    config: SandboxConfig,
    counters: Counters,
    api_limiter: api::ServerLimiter,
    flaky_sequences: flaky::Sequences,
    /// Cancelled on shutdown so sleeping handlers and open sockets end promptly.
    shutdown: CancellationToken,
    /// The catalogue's shared state.
    hostile: hostile::HostileState,
    /// Connection classifiers and hostile connections, awaited at shutdown.
    tasks: TaskTracker,
}

type SharedState = Arc<AppState>;

/// Builds the sandbox's router without serving it (tests can drive it with
/// `tower::ServiceExt::oneshot`; [`Sandbox::start`] serves it).
pub fn app(config: SandboxConfig) -> Router {
    app_with_state(new_state(config, CancellationToken::new()))
}

fn new_state(config: SandboxConfig, shutdown: CancellationToken) -> SharedState {
    Arc::new(AppState {
        api_limiter: api::ServerLimiter::new(config.api_rps, config.api_burst),
        config,
        counters: Counters::default(),
        flaky_sequences: flaky::Sequences::default(),
        shutdown,
        hostile: hostile::HostileState::default(),
        tasks: TaskTracker::new(),
    })
}

fn app_with_state(state: SharedState) -> Router {
    let counting = state.clone();
    Router::new()
        .route("/health", get(health))
        .route("/delay/{ms}", get(bytes::delay))
        .route("/bytes/{n}", get(bytes::bytes))
        .route("/status/{code}", get(bytes::status))
        .route("/flaky", get(flaky::flaky))
        .route("/api/users/{name}", get(api::user))
        .route("/ws/echo", get(ws::echo))
        .route(
            "/hostile/{*rest}",
            axum::routing::any(hostile::reused_connection),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counting.counters.requests.fetch_add(1, Ordering::Relaxed);
                next.run(req)
            },
        ))
        .with_state(state)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// A running sandbox. Dropping it stops the server (without waiting);
/// [`Sandbox::shutdown`] stops it and waits for open requests to finish.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    state: SharedState,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl Sandbox {
    /// Binds `config.addr` and serves the sandbox on a background task.
    pub async fn start(config: SandboxConfig) -> io::Result<Sandbox> {
        let listener = TcpListener::bind(config.addr).await?;
        Self::serve(listener, config)
    }

    /// Serves the sandbox on an already bound listener.
    pub fn serve(listener: TcpListener, config: SandboxConfig) -> io::Result<Sandbox> {
        let addr = listener.local_addr()?;
        let state = new_state(config, CancellationToken::new());
        let router = app_with_state(state.clone());
        let stop = state.shutdown.clone().cancelled_owned();
        let listener = hostile::SplitListener::new(listener, state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        });
        Ok(Sandbox {
            addr,
            state,
            server: Some(server),
        })
    }

    /// The address the sandbox listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://<addr><path>`; `path` starts with `/`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The counters so far.
    pub fn stats(&self) -> SandboxStats {
        let c = &self.state.counters;
        SandboxStats {
            requests: c.requests.load(Ordering::Relaxed),
            api_ok: c.api_ok.load(Ordering::Relaxed),
            api_rate_limited: c.api_rate_limited.load(Ordering::Relaxed),
            flaky_failures: c.flaky_failures.load(Ordering::Relaxed),
            ws_connections: c.ws_connections.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, ends sleeping handlers and WebSocket sessions, and
    /// waits up to 5 s for open requests; returns the server's own error, if
    /// it had one.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.state.shutdown.cancel();
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        let served = tokio::time::timeout_at(deadline, &mut server).await;
        // Hostile connections and classifiers watch the same token.
        self.state.tasks.close();
        if tokio::time::timeout_at(deadline, self.state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("sandbox hostile connections outlived the drain");
        }
        match served {
            Ok(Ok(result)) => result,
            Ok(Err(join_err)) => Err(io::Error::other(join_err)),
            Err(_elapsed) => {
                server.abort();
                tracing::warn!("sandbox drain timed out after {DRAIN_TIMEOUT:?}; aborted");
                Ok(())
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Cancelling makes axum's graceful shutdown begin; the server task
        // ends on its own once open requests (all cancellable) finish.
        self.state.shutdown.cancel();
    }
}

/// Sleeps for `duration`, or until the sandbox shuts down; returns false if
/// cut short, so a handler can answer 503 instead of holding shutdown up.
async fn sleep_or_shutdown(state: &AppState, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = state.shutdown.cancelled() => false,
    }
}

/// SplitMix64: a tiny, well-mixed, seedable generator. Enough for
/// deterministic test traffic; not for anything that needs unpredictability.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform float in [0, 1) from 53 random bits.
fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// One JSON error body for every 4xx the sandbox returns itself.
fn bad_request(message: impl Into<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "message": message.into() })),
    )
        .into_response()
}
