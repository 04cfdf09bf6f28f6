//! One rate limit shared by many processes: GCRA in an atomic Redis script.
//!
//! Ports seed Example 2 past one machine (issue 16). [`RateLimiter`] keeps
//! its schedule in a `Mutex` in one process; start three copies of a client
//! and each spends the whole budget on its own, three times the quota the
//! API gave you. Splitting the rate by hand (`rate / N`) breaks as soon as N
//! changes, a process restarts, or one is idle while the others are busy.
//! The budget has to live in one place every process can reach atomically.
//!
//! [`SharedLimiter`] keeps the same single number as the in-process limiter,
//! the theoretical arrival time `tat`, in one Redis key, and updates it with
//! one Lua script ([`SCRIPT`]) that Redis runs atomically:
//!
//! - **One clock.** The script reads the *server's* clock (`TIME`), so N
//!   processes share one schedule whatever their own clocks say; a client
//!   only ever sleeps for the relative wait the script returns.
//! - **Same algorithm, same burst.** Slots are `1 / rate` apart and may be
//!   up to `(burst - 1) / rate` ahead of `tat`, exactly as in
//!   [`RateLimiter::reserve`]; a caller reserves a slot in one round trip
//!   and sleeps until it, no polling.
//! - **The 429 pause is shared.** [`SharedLimiter::pause`] pushes the same
//!   key's `tat` to `now + wait + tolerance`, so one process's `Retry-After`
//!   slows every process down.
//! - **Idle keys vanish**: every write sets a TTL just past `tat`.
//!
//! ## What Redis guarantees, and what it does not
//!
//! A script runs atomically on one Redis server: no two decisions
//! interleave, so the budget is never double-spent. It does *not* survive a
//! failover to a replica that missed the last writes (the budget may be
//! briefly overspent), and a network hop adds its latency to each decision
//! (about 0.1 ms on loopback; see `rate-limited-client --bench`). The
//! schedule is in whole microseconds: rates up to 10,000/s are exact within
//! 0.5 %.
//!
//! ## Failure modes and the policy
//!
//! **Fail closed.** An unreachable Redis at start is an error (the binary
//! exits 1 with the cause). During a run, a decision that fails (Redis
//! down, a reply slower than [`DECISION_TIMEOUT`]) is a
//! [`SharedLimitError::Unavailable`] and that request is *not sent*: a
//! shared quota that each process spent on its own during an outage would
//! be the overspend this module exists to prevent. The connection manager
//! reconnects in the background, and the next decision uses the new
//! connection (named again with `CLIENT SETNAME`, so an operator can find
//! and `CLIENT KILL` it). A cancelled caller forfeits its slot, as
//! in-process: errors go towards fewer requests, never more.
//!
//! ## At larger scale
//!
//! One Redis key is one server's worth of decisions (tens of thousands a
//! second). Past that: a managed limiter (an API gateway, Envoy's global
//! rate limit service), Redis Cluster with one key per tenant, or
//! per-process token leases fetched in batches (fewer round trips, coarser
//! fairness). Crates: `governor` is in-process only; `redis-cell` is the
//! same GCRA as a Redis module.
//!
//! ```text
//! cargo run --bin rate-limited-client -- --shared-limit redis://127.0.0.1:6379 --limit-key demo
//! REDIS_URL=redis://127.0.0.1:6379 cargo test -p examples-http --test shared_limit -- --ignored needs_redis
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::rate_limit::{Limiter, MAX_PAUSE, RateLimitError, RateLimiter};

/// The GCRA decision, run atomically by Redis.
///
/// `KEYS[1]`: the limit's key. `ARGV`: interval and tolerance in µs, and a
/// pause in µs (0: reserve a slot). Returns the µs to wait for the slot.
pub const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local pause = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = 0
if pause > 0 then
  local paused = now + pause + tolerance
  if paused > tat then tat = paused end
else
  local slot = tat - tolerance
  if slot > now then wait = slot - now end
  tat = tat + interval
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return wait
"#;

/// How long one decision may take before it counts as Redis unavailable.
pub const DECISION_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the shared limiter could not decide.
#[derive(Debug, thiserror::Error)]
pub enum SharedLimitError {
    /// The rate or burst is invalid (as for the in-process limiter).
    #[error(transparent)]
    Invalid(#[from] RateLimitError),
    /// The rate is above what whole microseconds can express well.
    #[error("a shared rate must be at most {MAX_SHARED_RATE} per second, got {0}")]
    TooFast(f64),
    /// Redis could not be reached or did not answer in time: fail closed.
    #[error("Redis unavailable ({url}): {cause}")]
    Unavailable {
        /// The Redis URL, without credentials.
        url: String,
        /// What went wrong.
        cause: String,
    },
}

/// The fastest shared rate: 10,000 starts a second (100 µs apart).
pub const MAX_SHARED_RATE: f64 = 10_000.0;

/// A GCRA limiter whose schedule lives in one Redis key, shared by every
/// process that uses the same key. Cheap to share (`Arc`) between tasks.
#[derive(Clone)]
pub struct SharedLimiter {
    conn: ConnectionManager,
    script: redis::Script,
    key: String,
    client_name: String,
    url: String,
    interval_us: u64,
    tolerance_us: u64,
    // Set when a call failed: the manager may reconnect, and a new
    // connection has no name until we send CLIENT SETNAME again.
    rename: std::sync::Arc<AtomicBool>,
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("url", &self.url)
            .field("key", &self.key)
            .field("interval_us", &self.interval_us)
            .field("tolerance_us", &self.tolerance_us)
            .finish_non_exhaustive()
    }
}

impl SharedLimiter {
    /// Connects to Redis at `url` and shares `rate` starts per second
    /// (`burst` at once when idle) under `key` with every other process
    /// that uses it. The connection is named `client_name` (`CLIENT
    /// SETNAME`). Fails closed: an unreachable Redis is an error here.
    pub async fn connect(
        url: &str,
        key: &str,
        client_name: &str,
        rate: f64,
        burst: u32,
    ) -> Result<Self, SharedLimitError> {
        // The in-process limiter validates rate and burst the same way.
        let local = RateLimiter::new(rate, burst)?;
        if rate > MAX_SHARED_RATE {
            return Err(SharedLimitError::TooFast(rate));
        }
        let shown = redact(url);
        let unavailable = |cause: String| SharedLimitError::Unavailable {
            url: shown.clone(),
            cause,
        };
        let client = redis::Client::open(url).map_err(|e| unavailable(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DECISION_TIMEOUT))
            .set_response_timeout(Some(DECISION_TIMEOUT))
            // Reconnect attempts are bounded; a decision fails closed meanwhile.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            DECISION_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| unavailable(format!("no connection within {DECISION_TIMEOUT:?}")))?
        .map_err(|e| unavailable(e.to_string()))?;
        let limiter = Self {
            conn,
            script: redis::Script::new(SCRIPT),
            key: key.to_owned(),
            client_name: client_name.to_owned(),
            url: shown,
            // Whole microseconds, at least 1 (MAX_SHARED_RATE keeps them >= 100).
            interval_us: micros(local.interval()).max(1),
            tolerance_us: micros(local.tolerance()),
            rename: std::sync::Arc::new(AtomicBool::new(true)),
        };
        // Name the connection now, and prove Redis answers before any work.
        limiter.name_connection().await?;
        Ok(limiter)
    }

    /// The key holding the shared schedule.
    pub fn key(&self) -> &str {
        &self.key
    }

    async fn name_connection(&self) -> Result<(), SharedLimitError> {
        let mut conn = self.conn.clone();
        let named: redis::RedisResult<()> = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.client_name)
            .query_async(&mut conn)
            .await;
        named.map_err(|e| self.unavailable(e.to_string()))?;
        self.rename.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn unavailable(&self, cause: String) -> SharedLimitError {
        self.rename.store(true, Ordering::Relaxed);
        SharedLimitError::Unavailable {
            url: self.url.clone(),
            cause,
        }
    }

    /// One atomic decision: reserve a slot (`pause_us == 0`) or push the
    /// schedule back. Returns the wait Redis computed for the slot.
    async fn decide(&self, pause_us: u64) -> Result<Duration, SharedLimitError> {
        if self.rename.load(Ordering::Relaxed) {
            self.name_connection().await?;
        }
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(&self.key);
        invocation
            .arg(self.interval_us)
            .arg(self.tolerance_us)
            .arg(pause_us);
        let reply =
            tokio::time::timeout(DECISION_TIMEOUT, invocation.invoke_async::<u64>(&mut conn)).await;
        match reply {
            Ok(Ok(wait_us)) => Ok(Duration::from_micros(wait_us)),
            Ok(Err(err)) => Err(self.unavailable(err.to_string())),
            Err(_) => Err(self.unavailable(format!("no reply within {DECISION_TIMEOUT:?}"))),
        }
    }

    /// Reserves the next shared slot and returns how long to wait for it,
    /// without waiting (one round trip).
    pub async fn reserve(&self) -> Result<Duration, SharedLimitError> {
        self.decide(0).await
    }
}

impl Limiter for SharedLimiter {
    type Error = SharedLimitError;

    async fn acquire_slot(&self) -> Result<(), SharedLimitError> {
        // The wait comes from our own script, bounded by one pause
        // (<= MAX_PAUSE) plus the queue ahead; clamped anyway, since it
        // crossed the network.
        let wait = self.reserve().await?.min(MAX_PAUSE);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    async fn pause(&self, wait: Duration) -> Result<(), SharedLimitError> {
        // At least 1 µs: 0 means "reserve" to the script.
        self.decide(micros(wait.min(MAX_PAUSE)).max(1))
            .await
            .map(drop)
    }
}

fn micros(d: Duration) -> u64 {
    // Bounded by MAX_PAUSE (7 days = 6e11 µs), far below u64::MAX.
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The URL without a password, for messages.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for cannot-be-a-base URLs, which have no password.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
