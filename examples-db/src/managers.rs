//! Pool managers for real databases: SQLite (embedded) and PostgreSQL.
//!
//! Each opens *single* sqlx connections (`SqliteConnection`,
//! `PgConnection`) and leaves pooling to [`crate::pool::Pool`]; in an
//! application you would use `sqlx::Pool` instead (see the `pool` docs).
//! The health check is `Connection::ping`, one round trip: cheap next to a
//! query, and it catches a backend that died while the connection idled.
//!
//! [`run_on_database`] is the one place both binaries choose between them
//! from `--database-url`: SQLite in a temp dir by default, PostgreSQL for a
//! `postgres://` URL. The demo itself is a [`PoolDemo`], written once and
//! generic over the manager.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tempfile::TempDir;

use crate::pool::{Manager, Pool, PoolConfig};
use crate::store::{ItemStore, ItemsTable};

/// Opens connections to one SQLite database file, in WAL mode.
///
/// WAL lets readers run while one writer commits, which is what makes a
/// pool of SQLite connections useful at all; `busy_timeout` makes a second
/// writer wait for the lock instead of failing with `SQLITE_BUSY`.
///
/// Switching a file to WAL needs an exclusive lock and does not wait on
/// `busy_timeout`, so connections opened *concurrently* on a new file (the
/// pool's `fill()` does exactly that) would fail with "database is
/// locked". The mode is persistent, so it is set once, by the first
/// `create`, and every pooled connection opens the file as it is.
#[derive(Debug, Clone)]
pub struct SqliteManager {
    options: SqliteConnectOptions,
    /// Set once per manager (and its clones) before the first connection.
    wal_enabled: Arc<tokio::sync::OnceCell<()>>,
    path: PathBuf,
    /// Keeps a temporary database's directory alive as long as any clone.
    _temp_dir: Option<Arc<TempDir>>,
}

impl SqliteManager {
    /// A database file at `path` (created if missing).
    pub fn open(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            // NORMAL is durable across application crashes in WAL mode and
            // avoids an fsync per commit.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        Self {
            options,
            wal_enabled: Arc::default(),
            path,
            _temp_dir: None,
        }
    }

    /// A fresh database in a new temporary directory, deleted when the last
    /// clone of this manager (and so the pool) is dropped.
    pub fn temporary() -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("connection-pool-")
            .tempdir()?;
        let mut manager = Self::open(dir.path().join("demo.db"));
        manager._temp_dir = Some(Arc::new(dir));
        Ok(manager)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Manager for SqliteManager {
    type Connection = SqliteConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<SqliteConnection, sqlx::Error> {
        // Concurrent first creates wait here while one of them switches the
        // file to WAL; if that fails, the next create tries again.
        self.wal_enabled
            .get_or_try_init(|| async {
                let options = self.options.clone().journal_mode(SqliteJournalMode::Wal);
                SqliteConnection::connect_with(&options)
                    .await?
                    .close()
                    .await
            })
            .await?;
        SqliteConnection::connect_with(&self.options).await
    }

    async fn recycle(&self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        conn.ping().await
    }

    async fn close(&self, conn: SqliteConnection) {
        if let Err(err) = conn.close().await {
            tracing::debug!(error = %err, "closing a SQLite connection failed");
        }
    }
}

/// Opens connections to a PostgreSQL server from a `postgres://` URL.
#[derive(Debug, Clone)]
pub struct PgManager {
    options: PgConnectOptions,
}

impl PgManager {
    /// Parses `postgres://user@host:port/db?...` (no connection yet).
    pub fn from_url(url: &str) -> Result<Self, sqlx::Error> {
        Ok(Self {
            options: PgConnectOptions::from_str(url)?,
        })
    }
}

impl Manager for PgManager {
    type Connection = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options).await
    }

    async fn recycle(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        conn.ping().await
    }

    /// Sends `Terminate` so the server frees the backend at once.
    async fn close(&self, conn: PgConnection) {
        if let Err(err) = conn.close().await {
            tracing::debug!(error = %err, "closing a PostgreSQL connection failed");
        }
    }
}

/// The database a demo got, as its story and its JSON summary name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `"sqlite"` or `"postgres"`: the `backend` field of a `--json` summary.
    pub name: &'static str,
    /// For people: `SQLite file /tmp/.../demo.db (WAL)` or `PostgreSQL`.
    pub label: String,
}

/// A demo that runs on a pool of any [`Manager`] whose connections speak
/// [`ItemStore`]: the part of a binary that [`run_on_database`] calls.
///
/// Why a trait and not a closure: the demo must be generic over `M` (the
/// SQLite and PostgreSQL pools are different types), and a closure cannot
/// have a generic parameter of its own. A type with a generic method can.
pub trait PoolDemo {
    /// Runs the demo on `pool`, whose demo table is `table` (not created
    /// yet: creating, filling and, on PostgreSQL, dropping it is the demo's
    /// job).
    fn run<M>(
        self,
        pool: Pool<M>,
        table: ItemsTable,
        backend: Backend,
    ) -> impl Future<Output = anyhow::Result<()>>
    where
        M: Manager,
        M::Connection: ItemStore;
}

/// Builds the pool `database_url` asks for and runs `demo` on it.
///
/// - `None`: SQLite in a new temp dir (deleted with the pool), table
///   `items`. Nothing to install, so every binary runs with no arguments.
/// - `postgres://...` or `postgresql://...`: PostgreSQL, on a table of the
///   demo's own named `<table_prefix>_<pid>_<nanos>`, so that it never
///   touches user data and parallel runs never collide.
/// - Anything else is an error naming the URL (the binary prints it as one
///   `error:` line and exits 1), before any connection is opened.
pub async fn run_on_database(
    database_url: Option<&str>,
    config: PoolConfig,
    table_prefix: &str,
    demo: impl PoolDemo,
) -> anyhow::Result<()> {
    match database_url {
        None => {
            let manager = SqliteManager::temporary().context("create a temp dir for SQLite")?;
            let backend = Backend {
                name: "sqlite",
                label: format!("SQLite file {} (WAL)", manager.path().display()),
            };
            let table = ItemsTable::new("items")?;
            demo.run(Pool::new(manager, config)?, table, backend).await
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let manager = PgManager::from_url(url).context("invalid --database-url")?;
            let backend = Backend {
                name: "postgres",
                label: "PostgreSQL".to_owned(),
            };
            let table = ItemsTable::unique(table_prefix)?;
            demo.run(Pool::new(manager, config)?, table, backend).await
        }
        Some(url) => bail!("unsupported --database-url {url:?}: expected postgres://..."),
    }
}
