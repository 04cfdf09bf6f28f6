//! A durable priority queue on PostgreSQL: the in-process queue of seed
//! Example 7 past one machine.
//!
//! ## The problem
//!
//! [`PriorityQueue`](crate::PriorityQueue) lives in one process's memory.
//! When that process dies (a deploy, an OOM kill, a crashed host) every
//! queued and in-flight task dies with it, and consumers on a second
//! machine cannot take work from it at all: its `Mutex` and `Notify` only
//! reach threads of the same process. The Python seed has the same limit
//! (`asyncio.PriorityQueue`). To survive a crashed worker and to spread
//! work over N machines, the queue has to live in something they all
//! share and that outlives them: here a PostgreSQL table, the design of
//! graphile-worker, Oban, river and apalis' postgres backend.
//!
//! ## How it works
//!
//! - **One row per task, one `state` column** (`queued`, `leased`, `done`,
//!   `dead`). Every state change is one `UPDATE` of that column, so
//!   `produced = done + dead + queued + leased` holds in the table at every
//!   instant, by construction; [`Store::counts`] reads all five with one
//!   query (one snapshot).
//! - **Claiming** is one statement: pick the best ready row in (priority,
//!   ageing, FIFO) order `FOR UPDATE SKIP LOCKED`, so concurrent consumers
//!   skip each other's candidate rows instead of queueing behind them, and
//!   turn it into a **lease**: `state = 'leased'`, `lease_until = now() +
//!   lease`, a fresh fencing token from a sequence, `attempts + 1`. With
//!   ageing, every full `aging` step a task waited counts as one level more
//!   urgent (as in the in-process queue); the id breaks ties (FIFO).
//! - **The lease is extended** every third of its length while the handler
//!   works. Every write a consumer makes about its task names the token
//!   (`WHERE id = $1 AND lease_token = $2 AND state = 'leased'`): a consumer
//!   whose lease was taken over cannot complete, fail or extend a task that
//!   is now someone else's. A consumer that cannot extend in time stops its
//!   handler *before* its lease runs out (its local deadline is measured from
//!   when it sent the last successful claim or extension, which is never
//!   later than the server's `now()` that started the lease), so no task is
//!   run by two consumers within a valid lease.
//! - **Redelivery.** A consumer killed with SIGKILL writes nothing: its
//!   lease expires and the claim query takes expired leases like queued
//!   rows. A task whose lease expired after its last allowed attempt goes to
//!   `dead` ("a poison task that kills its consumer every time").
//! - **Retries** with backoff ([`common::backoff::Backoff`], equal jitter):
//!   a failed attempt goes back to `queued` with `run_at = now() + delay`,
//!   and after `max_retries` retries to `dead` with the last error.
//! - **Wake-ups.** Producers `NOTIFY` the queue's channel; idle consumers
//!   `LISTEN` on one connection per process and also poll every
//!   `poll_interval`, which bounds the cost of a lost notification (they are
//!   not durable: one sent while the listener reconnects is gone) and picks
//!   up retries whose backoff ended and leases that expired.
//! - **`join()` across processes** ([`Store::join`]): wait until nothing is
//!   queued or leased, by polling [`Store::counts`].
//! - **Schema**: one idempotent script, run on start under an advisory lock
//!   (two processes starting together do not race `CREATE TABLE`). Every
//!   name is prefixed by the queue name, so queues (and tests) never collide.
//! - Connections are named with `application_name`
//!   (`pq:<queue>:<role>:<pid>`), visible in `pg_stat_activity`.
//!
//! ## What PostgreSQL guarantees, and what it does not
//!
//! It guarantees that a committed state change survives a crash, that
//! `SKIP LOCKED` hands one row to one claimer at a time, and that the
//! fencing token rejects writes from a consumer that lost its lease. It
//! does not make delivery exactly-once: **the semantics are at-least-once**.
//! A handler can finish its side effect and then lose its connection, or
//! be SIGKILLed, before `done` is committed; the task is then run again.
//! Make handlers idempotent:
//!
//! - key every side effect by the task id (an `INSERT ... ON CONFLICT
//!   (task_id) DO NOTHING` into the target table, an idempotency key on the
//!   payment API call);
//! - or do the side effect in the same database transaction that marks the
//!   task done (then it is exactly-once for effects inside PostgreSQL);
//! - never assume "first attempt" from `attempt == 1` alone.
//!
//! Neither does it guarantee strict global order: with N consumers, N tasks
//! run at once and finish in any order, and a retried task re-enters behind
//! its backoff. Clock: leases use the server's `now()` only, so consumers'
//! clocks do not matter, but a consumer paused longer than a lease (a GC
//! pause, a frozen VM) stops its handler only when it runs again.
//!
//! ## Failure modes
//!
//! | failure | what happens |
//! |---|---|
//! | consumer SIGKILLed mid-task | lease expires, task redelivered (attempt counts) |
//! | consumer's connection terminated | the pool reconnects; writes retried until the local lease deadline, then the lease expires and the task is redelivered |
//! | database down | consumers log, back off and retry; nothing is claimed; no task is lost |
//! | handler error or panic | retry with backoff, then `dead` with the last error |
//! | lost `NOTIFY` | the next poll (at most `poll_interval`) picks the work up |
//!
//! ## Hostile input and peers
//!
//! - The queue name becomes part of SQL identifiers, so it is checked
//!   ([`valid_queue_name`]: `[a-z][a-z0-9_]{0,31}`) before any SQL is built;
//!   every value (payloads, errors, durations) is a bound parameter.
//! - A handler that hangs cannot hold a task for ever: when its lease can
//!   no longer be extended it is dropped; one that panics (in the call or
//!   in its future) is a failed attempt. A task that kills its consumer
//!   every time ends `dead` after `max_retries + 1` leases, not in a loop.
//! - A stalled or unreachable server: the pool's acquire has a 10 s
//!   timeout, failed writes are retried with backoff for a bounded time,
//!   and nothing is claimed meanwhile.
//!
//! ## At larger scale
//!
//! This is the pattern to learn, and it carries real workloads of
//! thousands of tasks a second. For production use an engine that also
//! has scheduling, cron, unique jobs, observability and migrations:
//! apalis (Rust, postgres backend), graphile-worker (Node), river (Go) or
//! Oban (Elixir), all built on this `SKIP LOCKED` design. Past what one
//! PostgreSQL primary can write, or for streams with replay and consumer
//! groups, use a log: Kafka, NATS JetStream, or Redis Streams.
//!
//! ```text
//! cargo run --bin priority-queue -- --store postgres://postgres@127.0.0.1:5432/test --queue demo --role all
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p examples-queue --test durable -- --ignored
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::Context as _;
use common::backoff::{Backoff, Jitter};
use futures::FutureExt as _;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row as _};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest queue name: its prefixed names must fit PostgreSQL's
/// 63-byte identifiers, and `application_name` its 63 bytes.
pub const MAX_QUEUE_NAME: usize = 32;

/// Checks a queue name: 1 to 32 of `a-z`, `0-9`, `_`, starting with a
/// letter (it becomes part of table, sequence and channel names).
pub fn valid_queue_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a queue name: 1 to {MAX_QUEUE_NAME} of a-z, 0-9 and _, starting with a letter"
        ))
    }
}

/// The longest lease [`Store::connect`] accepts. A lease meets the
/// consumer's clock (`claim + lease`) and PostgreSQL's intervals; a day is
/// far past any handler that should hold one task.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// Settings of a [`Store`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a claim is valid without an extension: more than zero, at
    /// most [`MAX_LEASE`] ([`Store::connect`] refuses anything else).
    pub lease: Duration,
    /// Retries after the first attempt (stored per task by the producer).
    pub max_retries: u32,
    /// Delay before retry n (the first retry is n = 0).
    pub backoff: Backoff,
    /// Ageing step, if any: every full step waited is one level more urgent.
    pub aging: Option<Duration>,
    /// How often idle consumers look for work without a notification.
    pub poll_interval: Duration,
    /// How long a stopping consumer lets handlers finish before it hands
    /// their tasks back.
    pub drain_timeout: Duration,
    /// Connections in this process's pool.
    pub max_connections: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(5),
            max_retries: 3,
            backoff: Backoff {
                base: Duration::from_millis(100),
                factor: 2.0,
                max_delay: Duration::from_secs(10),
                jitter: Jitter::Equal,
            },
            aging: None,
            poll_interval: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(10),
            max_connections: 8,
        }
    }
}

/// The table's counts by state, from one query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every task ever pushed (rows in the table).
    pub produced: u64,
    /// Handled successfully.
    pub done: u64,
    /// Given up on, with the last error.
    pub dead: u64,
    /// Waiting (some perhaps behind a retry backoff).
    pub queued: u64,
    /// Claimed, lease valid or expired but not yet re-claimed.
    pub leased: u64,
}

impl Counts {
    /// `produced == done + dead + queued + leased`.
    pub fn invariant_holds(&self) -> bool {
        self.produced == self.done + self.dead + self.queued + self.leased
    }

    /// Nothing queued or leased: what [`Store::join`] waits for.
    pub fn idle(&self) -> bool {
        self.queued == 0 && self.leased == 0
    }
}

/// One claimed task, as the handler sees it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The row id (unique per queue: key idempotent side effects by it).
    pub id: i64,
    /// Lower is more urgent.
    pub priority: i16,
    /// What the producer stored.
    pub payload: serde_json::Value,
    /// 1 for the first attempt; redeliveries after a crash count too.
    pub attempt: u32,
}

/// A claim: the job and the fencing token every write about it names.
#[derive(Debug, Clone)]
struct Lease {
    job: Job,
    token: i64,
}

/// The SQL of one queue, built once from its validated name.
#[derive(Debug)]
struct Sql {
    schema: String,
    channel: String,
    insert: String,
    claim: String,
    claim_aged: String,
    extend: String,
    complete: String,
    fail: String,
    release: String,
    counts: String,
    drop: String,
}

impl Sql {
    fn new(queue: &str) -> Self {
        let t = format!("{queue}_tasks");
        // Strict priority: the partial index (priority, id) serves the
        // ORDER BY. Ageing sorts every ready row by its aged priority
        // (O(queued) per claim): the price of a priority that changes as
        // rows wait. $1: the ageing step in seconds.
        let order = "greatest(priority - floor(extract(epoch FROM now() - enqueued_at) / $1::float8), 0), id";
        let strict = "priority, id";
        // Expired leases: back to queued (claimable from the next claim
        // on), or dead after the last allowed attempt.
        let expired = format!(
            "WITH requeued AS (
                 UPDATE {t} SET state = 'queued', run_at = now(), lease_until = NULL, lease_token = NULL
                 WHERE state = 'leased' AND lease_until < now() AND attempts <= max_retries
             ),
             reaped AS (
                 UPDATE {t} SET state = 'dead', finished_at = now(), lease_until = NULL, lease_token = NULL,
                     last_error = 'lease expired in attempt ' || attempts || ' (consumer died?); last error: '
                         || coalesce(last_error, 'none')
                 WHERE state = 'leased' AND lease_until < now() AND attempts > max_retries
             ),"
        );
        let take = |lease: &str, owner: &str| {
            format!(
                "UPDATE {t} AS t SET state = 'leased', attempts = t.attempts + 1,
                     lease_until = now() + make_interval(secs => {lease}::float8),
                     lease_owner = {owner}, lease_token = nextval('{queue}_lease_seq')
                 FROM next WHERE t.id = next.id
                 RETURNING t.id, t.priority, t.payload::text AS payload, t.attempts, t.lease_token"
            )
        };
        let (take_aged, take_strict) = (take("$2", "$3"), take("$1", "$2"));
        Self {
            schema: format!(
                "BEGIN;
                 SET LOCAL client_min_messages = warning;
                 SELECT pg_advisory_xact_lock(hashtext('examples-queue:{t}'));
                 CREATE TABLE IF NOT EXISTS {t} (
                     id bigserial PRIMARY KEY,
                     priority smallint NOT NULL,
                     payload jsonb NOT NULL,
                     state text NOT NULL DEFAULT 'queued'
                         CHECK (state IN ('queued', 'leased', 'done', 'dead')),
                     attempts integer NOT NULL DEFAULT 0,
                     max_retries integer NOT NULL,
                     enqueued_at timestamptz NOT NULL DEFAULT now(),
                     run_at timestamptz NOT NULL DEFAULT now(),
                     lease_until timestamptz,
                     lease_owner text,
                     lease_token bigint,
                     last_error text,
                     finished_at timestamptz
                 );
                 CREATE SEQUENCE IF NOT EXISTS {queue}_lease_seq;
                 CREATE INDEX IF NOT EXISTS {queue}_ready ON {t} (priority, id) WHERE state = 'queued';
                 CREATE INDEX IF NOT EXISTS {queue}_leases ON {t} (lease_until) WHERE state = 'leased';
                 COMMIT;"
            ),
            channel: format!("{queue}_ready"),
            insert: format!(
                "INSERT INTO {t} (priority, payload, max_retries)
                 SELECT p, v::jsonb, r FROM unnest($1::smallint[], $2::text[], $3::integer[]) AS u(p, v, r)"
            ),
            claim_aged: format!(
                "{expired}
                 next AS (
                     SELECT id FROM {t} WHERE state = 'queued' AND run_at <= now()
                     ORDER BY {order} LIMIT 1 FOR UPDATE SKIP LOCKED
                 )
                 {take_aged}"
            ),
            claim: format!(
                "{expired}
                 next AS (
                     SELECT id FROM {t} WHERE state = 'queued' AND run_at <= now()
                     ORDER BY {strict} LIMIT 1 FOR UPDATE SKIP LOCKED
                 )
                 {take_strict}"
            ),
            extend: format!(
                "UPDATE {t} SET lease_until = now() + make_interval(secs => $3::float8)
                 WHERE id = $1 AND lease_token = $2 AND state = 'leased'"
            ),
            complete: format!(
                "UPDATE {t} SET state = 'done', finished_at = now(), lease_until = NULL, lease_token = NULL
                 WHERE id = $1 AND lease_token = $2 AND state = 'leased'"
            ),
            fail: format!(
                "UPDATE {t} SET last_error = $3, lease_until = NULL, lease_token = NULL,
                     state = CASE WHEN attempts > max_retries THEN 'dead' ELSE 'queued' END,
                     finished_at = CASE WHEN attempts > max_retries THEN now() END,
                     run_at = now() + make_interval(secs => $4::float8)
                 WHERE id = $1 AND lease_token = $2 AND state = 'leased'
                 RETURNING state"
            ),
            release: format!(
                "UPDATE {t} SET state = 'queued', attempts = attempts - 1, run_at = now(),
                     lease_until = NULL, lease_token = NULL
                 WHERE id = $1 AND lease_token = $2 AND state = 'leased'"
            ),
            counts: format!(
                "SELECT count(*) AS produced,
                     count(*) FILTER (WHERE state = 'done') AS done,
                     count(*) FILTER (WHERE state = 'dead') AS dead,
                     count(*) FILTER (WHERE state = 'queued') AS queued,
                     count(*) FILTER (WHERE state = 'leased') AS leased
                 FROM {t}"
            ),
            drop: format!("DROP TABLE IF EXISTS {t}; DROP SEQUENCE IF EXISTS {queue}_lease_seq;"),
        }
    }
}

/// One queue in one database, shared by the tasks of a process; cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    sql: Arc<Sql>,
    options: Arc<Options>,
    owner: Arc<str>,
}

/// What the consumers of one process did ([`consume`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConsumeReport {
    /// Attempts whose handler succeeded and whose `done` was committed.
    pub completed: u64,
    /// Attempts that failed (error or panic) and were recorded.
    pub failed: u64,
    /// Of those, put back for a retry.
    pub retried: u64,
    /// Of those, moved to `dead`.
    pub dead_lettered: u64,
    /// Leases lost before the outcome could be written (the task is or will
    /// be redelivered: at-least-once).
    pub lost_leases: u64,
    /// Tasks handed back unfinished at a stop (their attempt not counted).
    pub released: u64,
    /// Database errors survived (each retried or left to lease expiry).
    pub db_errors: u64,
}

#[derive(Debug, Default)]
struct Tally {
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    lost_leases: AtomicU64,
    released: AtomicU64,
    db_errors: AtomicU64,
}

impl Tally {
    fn read(&self) -> ConsumeReport {
        ConsumeReport {
            completed: self.completed.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retried: self.retried.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            lost_leases: self.lost_leases.load(Relaxed),
            released: self.released.load(Relaxed),
            db_errors: self.db_errors.load(Relaxed),
        }
    }
}

impl Store {
    /// Connects to `url` as `pq:<queue>:<role>:<pid>` and creates the
    /// queue's schema if needed. `queue` must pass [`valid_queue_name`],
    /// and `options.lease` be within (0, [`MAX_LEASE`]]; either is a
    /// [`common::UsageError`], found before any connection is made.
    pub async fn connect(
        url: &str,
        queue: &str,
        role: &str,
        options: Options,
    ) -> anyhow::Result<Self> {
        valid_queue_name(queue).map_err(common::UsageError::new)?;
        check_lease(options.lease)?;
        let owner = format!("pq:{queue}:{role}:{}", std::process::id());
        let connect = PgConnectOptions::from_str(url)
            .map_err(|err| common::UsageError::new(format!("invalid PostgreSQL URL: {err}")))?
            .application_name(&owner);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await
            .with_context(|| format!("cannot connect to the store for queue {queue}"))?;
        let sql = Sql::new(queue);
        // AssertSqlSafe: the only dynamic part is the validated queue name.
        sqlx::raw_sql(AssertSqlSafe(sql.schema.clone()))
            .execute(&pool)
            .await
            .context("cannot create the queue's schema")?;
        Ok(Self {
            pool,
            sql: Arc::new(sql),
            options: Arc::new(options),
            owner: owner.into(),
        })
    }

    /// The connection name of this process (`application_name`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The settings this store was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Adds tasks (priority, payload) in one statement and wakes idle
    /// consumers; returns how many were added.
    pub async fn push_many(&self, tasks: &[(i16, serde_json::Value)]) -> anyhow::Result<u64> {
        let priorities: Vec<i16> = tasks.iter().map(|(p, _)| *p).collect();
        // As text, cast to jsonb in SQL (sqlx is built without its json feature).
        let payloads: Vec<String> = tasks.iter().map(|(_, v)| v.to_string()).collect();
        let retries = i32::try_from(self.options.max_retries).unwrap_or(i32::MAX);
        let max_retries = vec![retries; tasks.len()];
        // AssertSqlSafe: validated queue name; every value is bound.
        let added = sqlx::query(AssertSqlSafe(self.sql.insert.clone()))
            .bind(priorities)
            .bind(payloads)
            .bind(max_retries)
            .execute(&self.pool)
            .await
            .context("cannot add tasks")?
            .rows_affected();
        self.notify().await?;
        Ok(added)
    }

    async fn notify(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(&self.sql.channel)
            .execute(&self.pool)
            .await
            .context("cannot notify consumers")?;
        Ok(())
    }

    /// The counts by state, from one query (one snapshot).
    pub async fn counts(&self) -> anyhow::Result<Counts> {
        // AssertSqlSafe: validated queue name, no other input.
        let row = sqlx::query(AssertSqlSafe(self.sql.counts.clone()))
            .fetch_one(&self.pool)
            .await
            .context("cannot count the queue's tasks")?;
        let get = |name: &str| -> anyhow::Result<u64> {
            let n: i64 = row.try_get(name)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(Counts {
            produced: get("produced")?,
            done: get("done")?,
            dead: get("dead")?,
            queued: get("queued")?,
            leased: get("leased")?,
        })
    }

    /// Waits until nothing is queued or leased, in any process (the
    /// cross-process `join()`), polling every `poll_interval / 5`; returns
    /// the counts then, or `None` if `stop` fired first.
    pub async fn join(&self, stop: &CancellationToken) -> anyhow::Result<Option<Counts>> {
        loop {
            let counts = self.counts().await?;
            if counts.idle() {
                return Ok(Some(counts));
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(self.options.poll_interval / 5) => {}
            }
        }
    }

    /// Drops the queue's table and sequence (tests clean up with it).
    pub async fn drop_queue(&self) -> anyhow::Result<()> {
        // AssertSqlSafe: validated queue name, no other input.
        sqlx::raw_sql(AssertSqlSafe(self.sql.drop.clone()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Claims the best ready task, if any (see the module docs).
    async fn claim(&self) -> anyhow::Result<Option<Lease>> {
        // AssertSqlSafe: validated queue name; every value is bound.
        let query = match self.options.aging {
            Some(step) => {
                sqlx::query(AssertSqlSafe(self.sql.claim_aged.clone())).bind(step.as_secs_f64())
            }
            None => sqlx::query(AssertSqlSafe(self.sql.claim.clone())),
        };
        let row = query
            .bind(self.options.lease.as_secs_f64())
            .bind(&*self.owner)
            .fetch_optional(&self.pool)
            .await
            .context("cannot claim a task")?;
        let Some(row) = row else { return Ok(None) };
        let attempts: i32 = row.try_get("attempts")?;
        let payload: String = row.try_get("payload")?;
        Ok(Some(Lease {
            job: Job {
                id: row.try_get("id")?,
                priority: row.try_get("priority")?,
                payload: serde_json::from_str(&payload)
                    .context("a stored payload that is not JSON")?,
                attempt: u32::try_from(attempts).unwrap_or(0),
            },
            token: row.try_get("lease_token")?,
        }))
    }

    /// Runs one fenced write about `lease`; `Ok(false)` if the lease is no
    /// longer ours.
    async fn fenced(&self, sql: &str, lease: &Lease, extra: Option<f64>) -> anyhow::Result<bool> {
        // AssertSqlSafe: validated queue name; every value is bound.
        let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()))
            .bind(lease.job.id)
            .bind(lease.token);
        if let Some(extra) = extra {
            query = query.bind(extra);
        }
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Records a failed attempt; `Some(dead)` if recorded, `None` if the
    /// lease was lost.
    async fn fail(&self, lease: &Lease, error: &str) -> anyhow::Result<Option<bool>> {
        let retry = lease.job.attempt.saturating_sub(1);
        let delay = self
            .options
            .backoff
            .delays(rand::rng())
            .nth(usize::try_from(retry).unwrap_or(usize::MAX))
            .unwrap_or(self.options.backoff.max_delay);
        // AssertSqlSafe: validated queue name; every value is bound.
        let state: Option<String> = sqlx::query_scalar(AssertSqlSafe(self.sql.fail.clone()))
            .bind(lease.job.id)
            .bind(lease.token)
            .bind(error)
            .bind(delay.as_secs_f64())
            .fetch_optional(&self.pool)
            .await?;
        Ok(state.map(|state| state == "dead"))
    }
}

/// How an attempt ended, before its outcome is written.
enum Ended {
    Handled(Result<(), String>),
    /// The lease could not be extended in time, or was taken over.
    LeaseLost,
    /// A stop, and the drain timeout passed.
    Stopped,
}

/// Runs `concurrency` consumers in this process until `stop`, or with
/// `until_empty` until nothing is queued or leased anywhere. Each claims a
/// task, runs `handler` on it while extending its lease, and records the
/// outcome (see the module docs). On `stop` no new task is claimed; running
/// handlers get `drain_timeout`, then their tasks are handed back.
pub async fn consume<F, Fut>(
    store: &Store,
    concurrency: usize,
    until_empty: bool,
    stop: &CancellationToken,
    handler: F,
) -> anyhow::Result<ConsumeReport>
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let wake = Arc::new(Notify::new());
    let tally = Arc::new(Tally::default());
    let handler = Arc::new(handler);
    let done = CancellationToken::new();
    let mut listener = PgListener::connect_with(&store.pool)
        .await
        .context("cannot listen for new tasks")?;
    listener.listen(&store.sql.channel).await?;
    let listen_task = tokio::spawn({
        let (wake, done) = (Arc::clone(&wake), done.clone());
        async move {
            loop {
                tokio::select! {
                    () = done.cancelled() => return,
                    received = listener.recv() => match received {
                        Ok(_) => wake.notify_waiters(),
                        Err(err) => {
                            // Reconnects on the next recv; polling covers the gap.
                            tracing::warn!("notification listener: {err:#}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    },
                }
            }
        }
    });
    let _stop_listener = done.clone().drop_guard();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        workers.spawn(worker(
            store.clone(),
            Arc::clone(&handler),
            Arc::clone(&wake),
            Arc::clone(&tally),
            until_empty,
            stop.clone(),
        ));
    }
    let mut outcome = Ok(());
    while let Some(joined) = workers.join_next().await {
        if let Err(err) = joined {
            outcome = Err(anyhow::anyhow!("a consumer task failed: {err}"));
        }
    }
    done.cancel();
    // The listener task only loops on recv: it ends at `done`.
    let _ = listen_task.await; // a JoinError here (a panic in recv) loses nothing
    outcome.map(|()| tally.read())
}

async fn worker<F, Fut>(
    store: Store,
    handler: Arc<F>,
    wake: Arc<Notify>,
    tally: Arc<Tally>,
    until_empty: bool,
    stop: CancellationToken,
) where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let options = Arc::clone(&store.options);
    let mut errors = 0u32;
    while !stop.is_cancelled() {
        // Registered before the claim, so a NOTIFY during it is not missed.
        let mut notified = pin!(wake.notified());
        notified.as_mut().enable();
        let claimed_at = Instant::now();
        let lease = match store.claim().await {
            Ok(lease) => {
                errors = 0;
                lease
            }
            Err(err) => {
                tally.db_errors.fetch_add(1, Relaxed);
                let delay = options.backoff.exponential(errors);
                errors = errors.saturating_add(1);
                tracing::warn!("claim failed, retrying in {delay:?}: {err:#}");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let Some(lease) = lease else {
            if until_empty {
                match store.counts().await {
                    Ok(counts) if counts.idle() => return,
                    Ok(_) => {}
                    Err(err) => {
                        tally.db_errors.fetch_add(1, Relaxed);
                        tracing::warn!("count failed: {err:#}");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = &mut notified => {}
                () = tokio::time::sleep(options.poll_interval) => {}
            }
            continue;
        };
        let ended = attempt(&store, &*handler, &lease, claimed_at, &stop).await;
        record(&store, &tally, &lease, ended, claimed_at).await;
    }
}

/// Runs the handler on one lease while extending it; ends on the handler's
/// outcome, a lost lease, or a stop past the drain timeout.
async fn attempt<F, Fut>(
    store: &Store,
    handler: &F,
    lease: &Lease,
    claimed_at: Instant,
    stop: &CancellationToken,
) -> Ended
where
    F: Fn(Job) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let length = store.options.lease;
    // Both catches: `handler` may panic before returning its future.
    let work = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(lease.job.clone()))) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().left_future(),
        Err(panic) => std::future::ready(Err(panic)).right_future(),
    };
    let extender = async {
        let mut deadline = claimed_at + length;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                () = tokio::time::sleep(length / 3) => {}
            }
            let sent = Instant::now();
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                extended = store.fenced(&store.sql.extend, lease, Some(length.as_secs_f64())) => match extended {
                    Ok(true) => deadline = sent + length,
                    Ok(false) => return,
                    Err(err) => tracing::warn!(task = lease.job.id, "lease extension failed: {err:#}"),
                },
            }
        }
    };
    let drained = async {
        stop.cancelled().await;
        tokio::time::sleep(store.options.drain_timeout).await;
    };
    tokio::select! {
        outcome = work => Ended::Handled(match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(format!("{err:#}")),
            Err(panic) => Err(format!("handler panicked: {}", crate::processor::panic_message(panic.as_ref()))),
        }),
        () = extender => Ended::LeaseLost,
        () = drained => Ended::Stopped,
    }
}

/// Writes an attempt's outcome, retrying database errors while the lease
/// may still be valid (after that the lease expires and the task is
/// redelivered, so giving up loses nothing).
async fn record(store: &Store, tally: &Tally, lease: &Lease, ended: Ended, claimed_at: Instant) {
    let give_up = give_up_at(claimed_at, store.options.lease);
    let mut tries = 0u32;
    loop {
        let written = match &ended {
            Ended::LeaseLost => {
                tally.lost_leases.fetch_add(1, Relaxed);
                return;
            }
            Ended::Handled(Ok(())) => store
                .fenced(&store.sql.complete, lease, None)
                .await
                .map(|ours| ours.then_some(&tally.completed)),
            Ended::Handled(Err(error)) => store.fail(lease, error).await.map(|dead| {
                dead.map(|dead| {
                    tally.failed.fetch_add(1, Relaxed);
                    if dead {
                        &tally.dead_lettered
                    } else {
                        &tally.retried
                    }
                })
            }),
            Ended::Stopped => store
                .fenced(&store.sql.release, lease, None)
                .await
                .map(|ours| ours.then_some(&tally.released)),
        };
        match written {
            Ok(Some(counter)) => {
                counter.fetch_add(1, Relaxed);
                return;
            }
            Ok(None) => {
                tally.lost_leases.fetch_add(1, Relaxed);
                return;
            }
            Err(err) => {
                tally.db_errors.fetch_add(1, Relaxed);
                let delay = store.options.backoff.exponential(tries);
                tries = tries.saturating_add(1);
                if !retry_in_time(Instant::now(), delay, give_up) {
                    tracing::warn!(
                        task = lease.job.id,
                        "giving the outcome up to lease expiry: {err:#}"
                    );
                    return;
                }
                tracing::warn!(
                    task = lease.job.id,
                    "outcome not written, retrying: {err:#}"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A lease [`Store::connect`] accepts: more than zero, at most
/// [`MAX_LEASE`].
fn check_lease(lease: Duration) -> Result<(), common::UsageError> {
    if lease.is_zero() || lease > MAX_LEASE {
        return Err(common::UsageError::new(format!(
            "a lease must be more than 0 and at most {MAX_LEASE:?}, got {lease:?}"
        )));
    }
    Ok(())
}

/// When [`record`] stops retrying an outcome write: three lease lengths
/// after the claim, well after the lease expired (the lease is bounded by
/// [`MAX_LEASE`], so this fits an `Instant`).
fn give_up_at(claimed_at: Instant, lease: Duration) -> Instant {
    claimed_at + lease.saturating_mul(3)
}

/// A retry `delay` from `now` still starts by `give_up` (a delay past any
/// `Instant` does not).
fn retry_in_time(now: Instant, delay: Duration, give_up: Instant) -> bool {
    now.checked_add(delay).is_some_and(|at| at <= give_up)
}

#[cfg(test)]
mod tests {
    //! What needs no database; the rest (`Store::owner`, `notify`,
    //! `drop_queue`, everything `consume` does) is in `tests/durable.rs`,
    //! against PostgreSQL: give `cargo mutants` `--test durable`,
    //! `DATABASE_URL` and `-- -- --include-ignored`, or those survive.

    use super::*;

    #[test]
    fn a_queue_name_is_1_to_32_of_a_z_0_9_and_underscore_starting_with_a_letter() {
        let longest = "q".repeat(MAX_QUEUE_NAME);
        for good in ["a", "jobs", "a_1", "z9_", longest.as_str()] {
            assert_eq!(valid_queue_name(good), Ok(()), "{good:?}");
        }
        let too_long = "q".repeat(MAX_QUEUE_NAME + 1);
        for bad in [
            "",
            too_long.as_str(),
            "1jobs",
            "_jobs",
            "Jobs",
            "jobs-a",
            "jobs;drop",
            "jöbs",
        ] {
            let error = valid_queue_name(bad).unwrap_err();
            assert!(error.contains("is not a queue name"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_counts_invariant_adds_every_state() {
        let counts = Counts {
            produced: 10,
            done: 4,
            dead: 3,
            queued: 2,
            leased: 1,
        };
        assert!(counts.invariant_holds());
        assert!(!counts.idle());
        for broken in [
            Counts { done: 5, ..counts },
            Counts { dead: 2, ..counts },
            Counts {
                queued: 0,
                ..counts
            },
            Counts {
                leased: 0,
                ..counts
            },
        ] {
            assert!(!broken.invariant_holds(), "{broken:?}");
        }
        let idle = Counts {
            produced: 7,
            done: 7,
            ..Counts::default()
        };
        assert!(idle.idle() && idle.invariant_holds());
        assert!(!Counts { queued: 1, ..idle }.idle());
        assert!(!Counts { leased: 1, ..idle }.idle());
    }

    #[test]
    fn an_outcome_write_is_retried_until_three_leases_after_the_claim() {
        let claimed = Instant::now();
        let give_up = give_up_at(claimed, Duration::from_secs(2));
        assert_eq!(give_up, claimed + Duration::from_secs(6));
        let at = |ms: u64| claimed + Duration::from_millis(ms);
        // A retry that would start exactly at the deadline is still made.
        assert!(retry_in_time(
            at(5_900),
            Duration::from_millis(100),
            give_up
        ));
        assert!(retry_in_time(
            at(1_000),
            Duration::from_millis(100),
            give_up
        ));
        assert!(!retry_in_time(
            at(5_901),
            Duration::from_millis(100),
            give_up
        ));
        assert!(!retry_in_time(at(7_000), Duration::ZERO, give_up));
        assert!(!retry_in_time(at(0), Duration::MAX, give_up));
    }

    #[test]
    fn a_lease_is_more_than_zero_and_at_most_a_day() {
        for lease in [Duration::from_nanos(1), Duration::from_secs(24 * 3600)] {
            assert_eq!(check_lease(lease), Ok(()), "{lease:?}");
        }
        let day = Duration::from_secs(24 * 3600);
        for lease in [Duration::ZERO, day + Duration::from_nanos(1), Duration::MAX] {
            assert!(check_lease(lease).is_err(), "{lease:?}");
        }
    }

    #[tokio::test]
    async fn a_lease_of_zero_or_past_the_maximum_is_refused_before_connecting() {
        // Port 1: a connection attempt would fail with another error.
        let url = "postgres://postgres@127.0.0.1:1/test";
        for lease in [
            Duration::ZERO,
            MAX_LEASE + Duration::from_millis(1),
            Duration::MAX,
        ] {
            let options = Options {
                lease,
                ..Options::default()
            };
            let error = Store::connect(url, "jobs", "test", options)
                .await
                .unwrap_err();
            let usage = error.downcast_ref::<common::UsageError>();
            assert!(
                usage.is_some_and(|u| u.to_string().contains("a lease must be")),
                "{lease:?}: {error:#}"
            );
        }
        let bad_name = Store::connect(url, "Jobs", "test", Options::default())
            .await
            .unwrap_err();
        assert!(
            bad_name.downcast_ref::<common::UsageError>().is_some(),
            "{bad_name:#}"
        );
    }
}
