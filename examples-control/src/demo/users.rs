//! Demo support: the `semaphore-pool` users, and how they stop.
//!
//! [`run`] starts every user at once (as the seed does); each acquires a
//! resource, holds it for its own time, and gives it back. On the stop
//! signal it closes the pool, so every waiter gets `Closed` at once, and
//! gives the holders `drain_timeout` to finish; holders still running then
//! are cancelled (their tasks aborted, which drops their guards, so their
//! resources go back to the pool). Issue 15.22: the stop used to wait for
//! every holder, however long its hold, and ignore further signals; now it
//! is bounded, and the harness exits at once on a second signal.

use std::sync::Arc;
use std::time::Duration;

use common::{LatencySummary, Stopwatch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::timeline::{self, Span};
use crate::resource_pool::{PoolError, PoolStats, ResourcePool};

/// A pooled thing with an identity, so the timeline can show which is which.
#[derive(Debug)]
pub struct Resource {
    /// Its number (the timeline's row).
    pub id: usize,
    /// How many users have held it.
    pub uses: u64,
}

/// `size` resources numbered 0, 1, ...
pub fn resources(size: usize) -> Vec<Resource> {
    (0..size).map(|id| Resource { id, uses: 0 }).collect()
}

/// What happened to every user: `spans.len() + timed_out + refused +
/// cancelled` is the number of users.
#[derive(Debug, Default)]
pub struct UsersReport {
    /// One per user served: who held which resource when.
    pub spans: Vec<Span>,
    /// Users that gave up waiting (the acquire timeout).
    pub timed_out: usize,
    /// Users turned away because the pool closed (the stop).
    pub refused: usize,
    /// Holders cancelled when the drain timeout passed.
    pub cancelled: usize,
    /// Users whose task panicked (a bug; never expected).
    pub panicked: usize,
}

impl UsersReport {
    /// Why the run is not ok, if it is not: broken accounting (a bug),
    /// a resource lent twice at once (a bug), a closed pool that lent,
    /// or users that timed out, were cancelled or panicked.
    pub fn failure(
        &self,
        users: usize,
        stats: &PoolStats,
        late_acquire_worked: bool,
        drain_timeout: Duration,
    ) -> Option<String> {
        let Self {
            spans,
            timed_out,
            refused,
            cancelled,
            panicked,
        } = self;
        // Nothing lost: every user was served or told why not, and the pool
        // never lent more than it has nor lent one resource twice at once.
        let accounted = spans.len() + timed_out + refused + cancelled + panicked == users;
        if !accounted || stats.high_water > stats.size || stats.in_use != 0 {
            return Some(format!("accounting broken: {self:?} {stats:?}"));
        }
        if let Some((a, b)) = timeline::first_overlap(spans) {
            return Some(format!(
                "resource R{} held by users {} and {} at once",
                a.resource, a.user, b.user
            ));
        }
        if late_acquire_worked {
            return Some("acquire succeeded on a closed pool".to_owned());
        }
        (timed_out + cancelled + panicked > 0).then(|| {
            format!(
                "{timed_out} users timed out, {cancelled} holders cancelled after the \
                 {drain_timeout:?} drain timeout, {panicked} panicked"
            )
        })
    }

    /// The demo's closing lines: the timeline, the tally, the waits, and
    /// what a late acquire on the closed pool got.
    pub fn print(&self, users: usize, stats: &PoolStats, late: Option<PoolError>) {
        let Self {
            spans,
            timed_out,
            refused,
            cancelled,
            ..
        } = self;
        let size = stats.size;
        println!("\n{}", timeline::render(spans, size, 72));
        println!(
            "served {} of {users}, timed out {timed_out}, refused (closed) {refused}, \
             cancelled {cancelled}; high-water {}/{size}; in use now {}",
            spans.len(),
            stats.high_water,
            stats.in_use
        );
        println!(
            "wait for a resource:\n{}\n{}",
            LatencySummary::HEADER,
            stats.wait
        );
        if let Some(err) = late {
            println!("after close(): a late acquire fails at once: {err}");
        }
    }
}

/// Runs one user per entry of `holds` against `pool` until all are done,
/// or `stop` fires and the drain (`drain_timeout`) ends. `on_acquire` is
/// called with (user, resource, waited, in use) as each user gets one.
pub async fn run(
    pool: &ResourcePool<Resource>,
    holds: Vec<Duration>,
    stop: &CancellationToken,
    drain_timeout: Duration,
    on_acquire: impl Fn(usize, usize, Duration, usize) + Send + Sync + 'static,
) -> UsersReport {
    let clock = Arc::new(Stopwatch::start());
    let on_acquire = Arc::new(on_acquire);
    let mut tasks = JoinSet::new();
    for (user, hold) in holds.into_iter().enumerate() {
        let (pool, clock, on_acquire) = (pool.clone(), Arc::clone(&clock), Arc::clone(&on_acquire));
        tasks.spawn(async move {
            let mut resource = pool.acquire().await?;
            let start = clock.elapsed();
            resource.uses += 1;
            on_acquire(user, resource.id, resource.waited(), pool.in_use());
            tokio::time::sleep(hold).await; // "use" the resource
            let end = clock.elapsed();
            let span = Span {
                user,
                resource: resource.id,
                start,
                end,
            };
            drop(resource); // back on the shelf, then the permit is released
            Ok::<_, PoolError>(span)
        });
    }
    let mut report = UsersReport::default();
    // Armed when the stop fires: the end of the holders' grace period.
    let mut drain_ends: Option<tokio::time::Instant> = None;
    loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            // Once: the pool stays closed afterwards.
            () = stop.cancelled(), if !pool.is_closed() => {
                pool.close();
                // A parsed flag is at most 7 days (`common::args`); checked
                // anyway, as every `Instant + Duration` from outside is.
                let now = tokio::time::Instant::now();
                drain_ends = Some(now.checked_add(drain_timeout).unwrap_or(now));
                continue;
            }
            () = sleep_until(drain_ends) => {
                tracing::warn!(holders = tasks.len(), ?drain_timeout, "drain timed out; cancelling holders");
                tasks.abort_all();
                drain_ends = None; // once; the aborted tasks are joined below
                continue;
            }
        };
        let Some(joined) = joined else { break };
        match joined {
            Ok(Ok(span)) => report.spans.push(span),
            Ok(Err(PoolError::Timeout(_))) => report.timed_out += 1,
            Ok(Err(PoolError::Closed)) => report.refused += 1,
            Err(err) if err.is_cancelled() => report.cancelled += 1,
            Err(err) => {
                tracing::error!("user task panicked: {err}");
                report.panicked += 1;
            }
        }
    }
    report
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
