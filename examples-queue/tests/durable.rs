//! The durable queue against a real PostgreSQL (`DATABASE_URL`). Every test
//! uses its own queue name (its own tables) and names its connections
//! `pq:<queue>:...`, and only ever terminates connections of its own queue.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p examples-queue --test durable -- --ignored needs_postgres
//! ```

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use examples_queue::durable::{self, Counts, Job, Options, Store};
use rand::RngExt as _;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);

fn url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL is set for needs_postgres tests")
}

/// A fresh queue name, and the guard that removes the queue's tables if
/// the test fails (a passing test drops them itself, and checks it did).
fn queue(tag: &str) -> (String, DropIfFailed) {
    let name = format!("pqt_{tag}_{}", rand::rng().random_range(0..u32::MAX));
    (name.clone(), DropIfFailed(name))
}

/// On a panic (a failed assertion), drops the test's queue and its fault
/// objects, so a failing run leaves no `pqt_` tables on the shared server.
/// On its own thread and runtime: the test's runtime is unwinding.
struct DropIfFailed(String);

impl Drop for DropIfFailed {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let name = self.0.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // Bounded: a cleanup must not turn a failed test into a hung one.
            let cleanup = async {
                let store = Store::connect(&url(), &name, "cleanup", Options::default()).await?;
                store.drop_queue().await?;
                let faults = format!(
                    "DROP FUNCTION IF EXISTS {name}_refuse() CASCADE; \
                     DROP SEQUENCE IF EXISTS {name}_faults;"
                );
                // AssertSqlSafe: our own generated name, no other input.
                sqlx::raw_sql(sqlx::AssertSqlSafe(faults))
                    .execute(&side_pool(&format!("pq:{name}:cleanup")).await)
                    .await?;
                anyhow::Ok(())
            };
            runtime.block_on(async { timeout(LIMIT, cleanup).await? })
        });
        if let Ok(Err(err)) = cleanup.join() {
            eprintln!("could not drop the failed test's queue {}: {err}", self.0);
        }
    }
}

fn fast() -> Options {
    Options {
        lease: Duration::from_millis(600),
        max_retries: 2,
        poll_interval: Duration::from_millis(50),
        drain_timeout: Duration::from_millis(200),
        backoff: common::backoff::Backoff {
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..Options::default().backoff
        },
        ..Options::default()
    }
}

/// One connection beside the store's, named `application_name` (so a
/// test's own checks and faults show apart in `pg_stat_activity`).
async fn side_pool(application_name: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            PgConnectOptions::from_str(&url())
                .unwrap()
                .application_name(application_name),
        )
        .await
        .unwrap()
}

async fn push(store: &Store, n: i64) {
    let tasks: Vec<(i16, serde_json::Value)> = (0..n)
        .map(|i| ((i % 4) as i16, json!({ "n": i })))
        .collect();
    assert_eq!(store.push_many(&tasks).await.unwrap(), n as u64);
}

/// Two consumers (separate pools, as in two processes) never hold the same
/// task at once, even when handlers outlive several lease lengths (the
/// lease is extended); every task is done exactly once here (no crash), and
/// the table's counts add up at every sampled instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn two_consumers_never_hold_the_same_task_needs_postgres() {
    let (name, _cleanup) = queue("two");
    let a = Store::connect(&url(), &name, "a", fast()).await.unwrap();
    let b = Store::connect(&url(), &name, "b", fast()).await.unwrap();
    push(&a, 120).await;
    let held = Arc::new(Mutex::new(HashSet::new()));
    let runs = Arc::new(Mutex::new(HashMap::<i64, u32>::new()));
    let overlaps = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let (held, runs, overlaps) = (held.clone(), runs.clone(), overlaps.clone());
        move |job: Job| {
            let (held, runs, overlaps) = (held.clone(), runs.clone(), overlaps.clone());
            async move {
                if !held.lock().unwrap().insert(job.id) {
                    overlaps.lock().unwrap().push(job.id);
                }
                *runs.lock().unwrap().entry(job.id).or_default() += 1;
                // Every 30th task takes 2.5 leases: it must be extended.
                let work = if job.id % 30 == 0 { 1500 } else { 3 };
                tokio::time::sleep(Duration::from_millis(work)).await;
                held.lock().unwrap().remove(&job.id);
                Ok(())
            }
        }
    };
    let stop = CancellationToken::new();
    let sampler = tokio::spawn({
        let a = a.clone();
        async move {
            let mut samples = Vec::new();
            for _ in 0..40 {
                samples.push(a.counts().await.unwrap());
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            samples
        }
    });
    let (ra, rb) = timeout(LIMIT, async {
        tokio::join!(
            durable::consume(&a, 3, true, &stop, handler.clone()),
            durable::consume(&b, 3, true, &stop, handler),
        )
    })
    .await
    .unwrap();
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(overlaps.lock().unwrap().is_empty(), "{overlaps:?}");
    assert_eq!(ra.completed + rb.completed, 120, "{ra:?} {rb:?}");
    assert!(
        ra.completed > 0 && rb.completed > 0,
        "both worked: {ra:?} {rb:?}"
    );
    assert_eq!(ra.lost_leases + rb.lost_leases, 0);
    assert!(runs.lock().unwrap().values().all(|&n| n == 1));
    for sample in sampler.await.unwrap() {
        assert!(sample.invariant_holds(), "{sample:?}");
        assert_eq!(sample.produced, 120);
    }
    let counts = a.counts().await.unwrap();
    let expected = Counts {
        produced: 120,
        done: 120,
        ..Counts::default()
    };
    assert_eq!(counts, expected);
    a.drop_queue().await.unwrap();
}

/// Claims follow (priority, FIFO) with one consumer; with ageing an old
/// low-priority task overtakes newer urgent ones.
#[tokio::test]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn claims_follow_priority_then_fifo_and_ageing_needs_postgres() {
    let (name, _cleanup) = queue("order");
    let store = Store::connect(&url(), &name, "order", fast())
        .await
        .unwrap();
    let tasks: Vec<(i16, serde_json::Value)> = [(3, 0), (1, 1), (2, 2), (0, 3), (1, 4), (0, 5)]
        .into_iter()
        .map(|(p, n)| (p, json!(n)))
        .collect();
    store.push_many(&tasks).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let stop = CancellationToken::new();
    let handler = move |job: Job| {
        sink.lock()
            .unwrap()
            .push(job.payload.as_i64().unwrap_or(-1));
        async { Ok(()) }
    };
    durable::consume(&store, 1, true, &stop, handler)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [3, 5, 1, 4, 2, 0]);
    store.drop_queue().await.unwrap();

    // Ageing: one level per 100 ms; the LOW task waited 400 ms.
    let aged = Options {
        aging: Some(Duration::from_millis(100)),
        ..fast()
    };
    let store = Store::connect(&url(), &name, "aged", aged).await.unwrap();
    store.push_many(&[(3, json!("low"))]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    store.push_many(&[(0, json!("urgent"))]).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let handler = move |job: Job| {
        sink.lock().unwrap().push(job.payload.to_string());
        async { Ok(()) }
    };
    durable::consume(&store, 1, true, &stop, handler)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), ["\"low\"", "\"urgent\""]);
    store.drop_queue().await.unwrap();
}

/// A task that always fails (by error or panic, also before its future)
/// is attempted max_retries + 1 times, then is dead with its last error.
#[tokio::test]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn failing_tasks_are_retried_then_dead_with_the_last_error_needs_postgres() {
    let (name, _cleanup) = queue("dead");
    let store = Store::connect(&url(), &name, "dead", fast()).await.unwrap();
    push(&store, 9).await;
    let stop = CancellationToken::new();
    let handler = |job: Job| {
        let n = job.payload["n"].as_i64().unwrap_or(0);
        assert!(n % 3 != 1, "early panic on {n}");
        async move {
            match n % 3 {
                0 => Ok(()),
                _ => anyhow::bail!("attempt {} of {n} failed", job.attempt),
            }
        }
    };
    let report = timeout(LIMIT, durable::consume(&store, 2, true, &stop, handler))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.completed, 3);
    assert_eq!(report.dead_lettered, 6);
    assert_eq!(report.failed, 6 * 3);
    assert_eq!(report.retried, 6 * 2);
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (counts.done, counts.dead, counts.queued, counts.leased),
        (3, 6, 0, 0)
    );
    let pool = side_pool(&format!("check-{name}")).await;
    let table = format!("{name}_tasks");
    let rows: Vec<(i32, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT attempts, last_error FROM {table} WHERE state = 'dead' ORDER BY id"
    )))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 6);
    for (attempts, error) in rows {
        assert_eq!(attempts, 3);
        assert!(
            error.starts_with("handler panicked: early panic on")
                || error.starts_with("attempt 3 of"),
            "{error}"
        );
    }
    store.drop_queue().await.unwrap();
}

/// Terminating this queue's backends (and only them) while consumers work
/// costs retries, not tasks: every task ends done, nothing queued or leased.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn terminated_backends_recover_needs_postgres() {
    let (name, _cleanup) = queue("term");
    let store = Store::connect(&url(), &name, "consumer", fast())
        .await
        .unwrap();
    push(&store, 300).await;
    let killer = side_pool(&format!("killer-{name}")).await;
    let pattern = format!("pq:{name}:%");
    let kills = tokio::spawn(async move {
        let mut killed = 0;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let n: i64 = sqlx::query_scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name LIKE $1 AND pid <> pg_backend_pid()",
            )
            .bind(&pattern)
            .fetch_one(&killer)
            .await
            .unwrap();
            killed += n;
        }
        killed
    });
    let stop = CancellationToken::new();
    let handler = |_job: Job| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(())
    };
    let report = timeout(LIMIT, durable::consume(&store, 4, true, &stop, handler))
        .await
        .unwrap()
        .unwrap();
    let killed = kills.await.unwrap();
    assert!(killed > 0, "the test terminated none of its backends");
    let counts = timeout(LIMIT, store.join(&stop))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (counts.produced, counts.done, counts.queued, counts.leased),
        (300, 300, 0, 0),
        "{report:?}"
    );
    store.drop_queue().await.unwrap();
}

/// A stop hands running tasks back (queued again, the attempt not counted)
/// once the drain timeout passes; a later consumer finishes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn a_stop_hands_unfinished_tasks_back_needs_postgres() {
    let (name, _cleanup) = queue("stop");
    let store = Store::connect(&url(), &name, "stop", fast()).await.unwrap();
    push(&store, 2).await;
    let stop = CancellationToken::new();
    let started = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = {
        let started = started.clone();
        move |_job: Job| {
            started.add_permits(1);
            async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        }
    };
    let consumer = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move { durable::consume(&store, 2, false, &stop, handler).await }
    });
    let _two = timeout(LIMIT, started.acquire_many(2))
        .await
        .unwrap()
        .unwrap();
    stop.cancel();
    let report = timeout(LIMIT, consumer).await.unwrap().unwrap().unwrap();
    assert_eq!(report.released, 2, "{report:?}");
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.queued, counts.leased), (2, 0));
    let again = CancellationToken::new();
    let report = durable::consume(&store, 2, true, &again, |job: Job| async move {
        anyhow::ensure!(job.attempt == 1, "the handed-back attempt was counted");
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(report.completed, 2, "{report:?}");
    store.drop_queue().await.unwrap();
}

/// push_many and join dropped at every await point, and consume dropped at
/// many moments: the table's counts always add up, a push is all or
/// nothing, and a consumer started afterwards finishes every task (the
/// dropped consumers' leases expire and are redelivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn cancelled_operations_keep_the_counts_needs_postgres() {
    let (name, _cleanup) = queue("cancel");
    let options = Options {
        lease: Duration::from_millis(300),
        ..fast()
    };
    let store = Store::connect(&url(), &name, "cancel", options)
        .await
        .unwrap();
    let tasks: Vec<(i16, serde_json::Value)> = (0..5).map(|i| (1, json!(i))).collect();
    let pushed = Arc::new(Mutex::new(0u64));
    common::testing::cancel_at_every_await(
        |_| {
            let (store, tasks, pushed) = (store.clone(), tasks.clone(), pushed.clone());
            async move {
                let added = store.push_many(&tasks).await.unwrap();
                *pushed.lock().unwrap() += added;
            }
        },
        async |n| {
            let counts = store.counts().await.unwrap();
            assert!(counts.invariant_holds(), "{counts:?}");
            assert_eq!(
                counts.produced % 5,
                0,
                "a push was split (n = {n}): {counts:?}"
            );
        },
    )
    .await;
    let produced = store.counts().await.unwrap().produced;
    assert!(produced >= *pushed.lock().unwrap() && produced >= 5);

    // join on a busy queue, given up 30 ms later: dropped anywhere, no effect.
    common::testing::cancel_at_every_await(
        |_| {
            let (store, give_up) = (store.clone(), CancellationToken::new());
            let timer = give_up.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                timer.cancel();
            });
            async move { store.join(&give_up).await.unwrap() }
        },
        async |_| assert_eq!(store.counts().await.unwrap().produced, produced),
    )
    .await;
    let stop = CancellationToken::new();
    for ms in [1, 3, 7, 15, 30, 60, 120] {
        let consume = durable::consume(&store, 2, true, &stop, |_job: Job| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        });
        let _ = timeout(Duration::from_millis(ms), consume).await; // dropped mid-way on purpose
        let counts = store.counts().await.unwrap();
        assert!(counts.invariant_holds(), "{counts:?}");
        assert_eq!(counts.produced, produced);
    }
    let report = timeout(
        LIMIT,
        durable::consume(&store, 2, true, &stop, |_job: Job| async { Ok(()) }),
    )
    .await
    .unwrap()
    .unwrap();
    let counts = store.join(&stop).await.unwrap().unwrap();
    assert_eq!((counts.done, counts.dead), (produced, 0), "{report:?}");
    store.drop_queue().await.unwrap();
}

/// A store names its connections `pq:<queue>:<role>:<pid>` (they show in
/// `pg_stat_activity`) and keeps its options; a push wakes an idle
/// consumer through NOTIFY (its poll would take an hour); `drop_queue`
/// removes the table and the sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn a_push_wakes_an_idle_consumer_and_drop_queue_removes_the_queue_needs_postgres() {
    let (name, _cleanup) = queue("wake");
    let hour = Duration::from_secs(3600);
    let options = Options {
        poll_interval: hour,
        ..fast()
    };
    let store = Store::connect(&url(), &name, "wake", options)
        .await
        .unwrap();
    let owner = format!("pq:{name}:wake:{}", std::process::id());
    assert_eq!(store.owner(), owner);
    assert_eq!(store.options().poll_interval, hour);
    let check = side_pool(&format!("check-{name}")).await;
    let named: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&owner)
            .fetch_one(&check)
            .await
            .unwrap();
    assert!(named >= 1, "no connection named {owner}");

    // Unbounded but bounded by the test: it carries the two pushes' payloads.
    let (seen, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let consumer = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let handler = move |job: Job| {
                let seen = seen.clone();
                async move {
                    // Fails only once the test has stopped listening (failed).
                    _ = seen.send(job.payload);
                    Ok(())
                }
            };
            durable::consume(&store, 1, false, &stop, handler).await
        }
    });
    let wait = Duration::from_secs(20);
    for n in 1..=2 {
        store.push_many(&[(0, json!(n))]).await.unwrap();
        let got = timeout(wait, handled.recv()).await;
        assert_eq!(got.ok().flatten(), Some(json!(n)), "push {n} woke no one");
        // Long enough for the consumer's next claim to find nothing, so
        // the next push can only reach it as a notification.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.cancel();
    let report = timeout(LIMIT, consumer).await.unwrap().unwrap().unwrap();
    assert_eq!(report.completed, 2, "{report:?}");

    store.drop_queue().await.unwrap();
    let left: (bool, bool) =
        sqlx::query_as("SELECT to_regclass($1) IS NULL, to_regclass($2) IS NULL")
            .bind(format!("{name}_tasks"))
            .bind(format!("{name}_lease_seq"))
            .fetch_one(&check)
            .await
            .unwrap();
    assert_eq!(
        left,
        (true, true),
        "drop_queue left the table or the sequence"
    );
}

/// A write of an outcome that fails is retried while the lease is young,
/// not given up to lease expiry: the first two `done` writes are refused by
/// a trigger (a real database error), the third commits, and the task is
/// done in its first attempt, its handler run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn a_failed_outcome_write_is_retried_in_the_same_attempt_needs_postgres() {
    let (name, _cleanup) = queue("rewrite");
    let store = Store::connect(&url(), &name, "rewrite", fast())
        .await
        .unwrap();
    let pool = side_pool(&format!("fault-{name}")).await;
    // A sequence, not a table: nextval survives the failed statement's
    // rollback, so the trigger refuses exactly the first two writes.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SEQUENCE {name}_faults;
         CREATE FUNCTION {name}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF nextval('{name}_faults') <= 2 THEN
                 RAISE EXCEPTION 'injected fault: done refused';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER {name}_refuse BEFORE UPDATE ON {name}_tasks
             FOR EACH ROW WHEN (NEW.state = 'done') EXECUTE FUNCTION {name}_refuse();"
    )))
    .execute(&pool)
    .await
    .unwrap();
    push(&store, 1).await;
    let runs = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let runs = runs.clone();
        move |job: Job| {
            runs.lock().unwrap().push(job.attempt);
            async { Ok(()) }
        }
    };
    let stop = CancellationToken::new();
    let report = timeout(LIMIT, durable::consume(&store, 1, true, &stop, handler))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*runs.lock().unwrap(), [1], "{report:?}");
    assert_eq!(
        (report.completed, report.db_errors, report.lost_leases),
        (1, 2, 0)
    );
    let attempts: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT attempts FROM {name}_tasks WHERE state = 'done'"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1);
    store.drop_queue().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP FUNCTION {name}_refuse(); DROP SEQUENCE {name}_faults;"
    )))
    .execute(&pool)
    .await
    .unwrap();
}
