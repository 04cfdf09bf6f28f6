//! The pool on real databases: SQLite always, PostgreSQL when
//! `DATABASE_URL` is set (`.ci/run` sets it when the server answers):
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p examples-db --test pool_sql -- --ignored needs_postgres
//! ```
//!
//! Real sockets and threads, so real time with generous bounds.

use std::time::Duration;

use std::str::FromStr;

use examples_db::demo::db::{self, DbManager, PgManager, SqliteManager};
use examples_db::demo::store::{ItemStore, ItemsTable};
use examples_db::pool::{CloseReport, Manager, Pool, PoolConfig};
use sqlx::Connection;

/// What our PostgreSQL connections call themselves (`pg_stat_activity`),
/// so a shared server can tell them apart.
const APP: &str = "examples-db-pool-sql-test";

const ROWS: i64 = 500;
const TASKS: usize = 16;
const QUERIES: usize = 20;

fn config(size: usize, max_overflow: usize) -> PoolConfig {
    PoolConfig {
        size,
        max_overflow,
        acquire_timeout: Duration::from_secs(20),
    }
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the PostgreSQL tests")
}

/// `close()` takes the idle connections at once; waits (bounded) for that.
async fn wait_until_close_started<M: Manager>(pool: &Pool<M>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while pool.stats().idle != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "close never started"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// TASKS workers x QUERIES (read + write) through the pool; then checks
/// every write landed and the pool is back at rest.
async fn run_workload<M>(pool: &Pool<M>, table: &ItemsTable)
where
    M: Manager,
    M::Connection: ItemStore,
{
    pool.get()
        .await
        .expect("a connection")
        .create_items(table, ROWS)
        .await
        .expect("seeded");
    let workers: Vec<_> = (0..TASKS)
        .map(|worker| {
            let (pool, table) = (pool.clone(), table.clone());
            tokio::spawn(async move {
                for q in 0..QUERIES {
                    let id = ((worker * QUERIES + q) as i64 % ROWS) + 1;
                    let mut conn = pool.get().await.expect("a connection");
                    let item = conn
                        .fetch_item(&table, id)
                        .await
                        .expect("query")
                        .expect("row exists");
                    assert_eq!(item.name, format!("item-{id}"));
                    conn.record_view(&table, id).await.expect("update");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker finished");
    }
    let mut conn = pool.get().await.expect("a connection");
    let mut views = 0;
    for id in 1..=ROWS {
        views += conn
            .fetch_item(table, id)
            .await
            .expect("query")
            .expect("row")
            .views;
    }
    assert_eq!(views, (TASKS * QUERIES) as i64, "every write landed once");
    drop(conn);
    let stats = pool.stats();
    let max = pool.config().size + pool.config().max_overflow;
    assert_eq!((stats.in_use, stats.waiting), (0, 0), "{stats:?}");
    assert!(
        stats.idle <= pool.config().size && stats.created as usize >= stats.idle,
        "{stats:?}"
    );
    assert!(stats.created - stats.closed <= max as u64, "{stats:?}");
}

/// The embedded default: a WAL-mode SQLite file shared by pooled connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_pool_serves_concurrent_readers_and_writers() {
    let manager = SqliteManager::temporary().expect("temp dir");
    let path = manager.path().to_owned();
    let pool = Pool::new(manager, config(3, 2)).expect("valid config");
    pool.fill().await.expect("connections open");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *pool.get().await.expect("a connection"))
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let table = ItemsTable::new("items").expect("valid name");
    run_workload(&pool, &table).await;
    let report = pool.close(Duration::from_secs(10)).await;
    assert_eq!(report.still_in_use, 0);
    let stats = pool.stats();
    assert_eq!(
        stats.created, stats.closed,
        "every connection closed: {stats:?}"
    );
    assert!(path.exists(), "the file lives as long as the pool");
}

/// `close` waits for a connection in use (here one mid-transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_sqlite_pool_waits_for_the_connection_in_use() {
    let pool =
        Pool::new(SqliteManager::temporary().expect("temp dir"), config(2, 0)).expect("config");
    pool.fill().await.expect("connections open");
    let mut held = pool.get().await.expect("a connection");
    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close(Duration::from_secs(20)).await }
    });
    wait_until_close_started(&pool).await;
    // Real work while close() waits for us.
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *held)
        .await
        .expect("query");
    assert_eq!(one, 1);
    assert!(!closing.is_finished());
    drop(held);
    let report = closing.await.expect("close finished");
    assert_eq!(
        report,
        CloseReport {
            closed_idle: 1,
            still_in_use: 0
        }
    );
    assert!(pool.get().await.is_err(), "closed pools refuse acquires");
}

/// A wrong database location fails at `fill`, with the cause.
#[tokio::test]
async fn an_unopenable_sqlite_path_fails_fill_with_the_cause() {
    let pool = Pool::new(
        SqliteManager::open("/nonexistent-dir/x/demo.db"),
        config(1, 0),
    )
    .expect("config");
    let err = pool.fill().await.expect_err("cannot open");
    let chain = format!("{:#}", anyhow::Error::new(err));
    assert!(chain.contains("cannot open a connection"), "{chain}");
}

/// The same workload on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn a_postgres_pool_serves_concurrent_readers_and_writers_needs_postgres() {
    let pool = Pool::new(
        PgManager::from_url(&database_url(), APP).expect("url"),
        config(4, 4),
    )
    .expect("config");
    pool.fill().await.expect("connections open");
    let table = ItemsTable::unique("pool_test").expect("valid name");
    run_workload(&pool, &table).await;
    pool.get()
        .await
        .expect("a connection")
        .drop_items(&table)
        .await
        .expect("dropped");
    let report = pool.close(Duration::from_secs(10)).await;
    assert_eq!(report.still_in_use, 0);
}

/// A backend killed with `pg_terminate_backend` while its connection sat
/// idle in the pool fails the checkout health check and is replaced: the
/// caller gets a working connection to a new backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn a_postgres_backend_killed_while_idle_is_replaced_on_checkout_needs_postgres() {
    let url = database_url();
    let pool =
        Pool::new(PgManager::from_url(&url, APP).expect("url"), config(1, 0)).expect("config");
    let old_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *pool.get().await.expect("a connection"))
        .await
        .expect("pid");
    assert_eq!(pool.stats().idle, 1);

    let admin_options = sqlx::postgres::PgConnectOptions::from_str(&url)
        .expect("url")
        .application_name("examples-db-pool-sql-admin");
    let mut admin = sqlx::PgConnection::connect_with(&admin_options)
        .await
        .expect("admin connection");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(old_pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(killed);
    // Wait (bounded) until the server has really gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(old_pid)
                .fetch_one(&mut admin)
                .await
                .expect("pg_stat_activity");
        if !alive {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backend {old_pid} still alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut conn = pool.get().await.expect("a replacement connection");
    let new_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
        .expect("pid");
    assert_ne!(new_pid, old_pid);
    drop(conn);
    let stats = pool.stats();
    assert_eq!(
        (
            stats.health_check_failures,
            stats.created,
            stats.closed,
            stats.idle
        ),
        (1, 2, 1, 1),
        "{stats:?}"
    );
    admin.close().await.expect("admin closed");
    pool.close(Duration::from_secs(10)).await;
}

/// `close` on PostgreSQL: idle connections get a graceful `Terminate`,
/// the one in use is waited for, and the server sees them all go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn closing_a_postgres_pool_waits_for_the_connection_in_use_needs_postgres() {
    let pool = Pool::new(
        PgManager::from_url(&database_url(), APP).expect("url"),
        config(3, 0),
    )
    .expect("config");
    pool.fill().await.expect("connections open");
    let held = pool.get().await.expect("a connection");
    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close(Duration::from_secs(20)).await }
    });
    wait_until_close_started(&pool).await;
    assert!(
        !closing.is_finished(),
        "close waits for the held connection"
    );
    drop(held);
    let report = closing.await.expect("close finished");
    assert_eq!(
        report,
        CloseReport {
            closed_idle: 2,
            still_in_use: 0
        }
    );
    let stats = pool.stats();
    assert_eq!((stats.created, stats.closed), (3, 3), "{stats:?}");
}

/// The demos' one code path: `DbManager` (either backend behind one enum)
/// serves the same workload on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_manager_serves_the_workload_on_sqlite() {
    let database = db::open(None, config(2, 2), "unused", APP).expect("opened");
    assert_eq!(database.backend, "sqlite");
    assert!(matches!(database.pool.manager(), DbManager::Sqlite(_)));
    database.pool.fill().await.expect("connections open");
    run_workload(&database.pool, &database.table).await;
    database
        .drop_table()
        .await
        .expect("nothing to drop on SQLite");
    assert_eq!(
        database
            .pool
            .close(Duration::from_secs(10))
            .await
            .still_in_use,
        0
    );
}

/// `--database-url` accepts PostgreSQL URLs only (anything else is a
/// usage error before a connection is tried).
#[test]
fn the_database_url_parser_accepts_postgres_urls_only() {
    assert!(db::database_url("postgres://postgres@127.0.0.1:5432/test").is_ok());
    assert!(db::database_url("postgresql://u@h/db").is_ok());
    for bad in ["mysql://x", "", "sqlite://x.db", "http://x"] {
        let err = db::database_url(bad).expect_err(bad);
        assert!(err.contains("unsupported database URL"), "{err}");
    }
}

/// The same code path on PostgreSQL, with its connections named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set DATABASE_URL"]
async fn the_demo_manager_serves_the_workload_on_postgres_with_named_connections_needs_postgres() {
    let url = database_url();
    let database = db::open(Some(&url), config(2, 2), "pool_sql_demo", APP).expect("opened");
    assert_eq!(database.backend, "postgres");
    database.pool.fill().await.expect("connections open");
    let mut conn = database.pool.get().await.expect("a connection");
    let db::DbConnection::Postgres(pg) = &mut *conn else {
        panic!("a PostgreSQL connection");
    };
    let name: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(pg)
        .await
        .expect("setting");
    drop(conn);
    assert_eq!(name, APP);
    run_workload(&database.pool, &database.table).await;
    database.drop_table().await.expect("dropped");
    assert_eq!(
        database
            .pool
            .close(Duration::from_secs(10))
            .await
            .still_in_use,
        0
    );
}
