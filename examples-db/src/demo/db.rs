//! Demo support: pool managers for real databases, SQLite (embedded) and
//! PostgreSQL, and the one code path both binaries open them through.
//!
//! Each manager opens *single* sqlx connections (`SqliteConnection`,
//! `PgConnection`) and leaves pooling to [`crate::pool::Pool`]; in an
//! application you would use `sqlx::Pool` instead (see the `pool` docs).
//! The health check is `Connection::ping`, one round trip: cheap next to a
//! query, and it catches a backend that died while the connection idled.
//!
//! [`DbManager`] is either one, chosen at run time from `--database-url`
//! ([`open`]): SQLite in a temp dir by default, PostgreSQL for a
//! `postgres://` URL. Its connection, [`DbConnection`], speaks the demo's
//! queries ([`ItemStore`]) on both, so each demo is one plain function
//! over `Pool<DbManager>`: no generic demo trait, no code per backend.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tempfile::TempDir;

use super::store::{Item, ItemStore, ItemsTable};
use super::workload::LookupError;
use crate::pool::{Manager, Pool, PoolConfig};

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
    /// Parses `postgres://user@host:port/db?...` (no connection yet). The
    /// connections are named `application_name` (shown in
    /// `pg_stat_activity`, so a shared server can tell whose they are)
    /// unless the URL names them itself.
    pub fn from_url(url: &str, application_name: &str) -> Result<Self, sqlx::Error> {
        let mut options = PgConnectOptions::from_str(url)?;
        if options.get_application_name().is_none() {
            options = options.application_name(application_name);
        }
        Ok(Self { options })
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

/// A connection of either backend: what a [`DbManager`] pool hands out.
#[derive(Debug)]
pub enum DbConnection {
    /// An embedded SQLite connection.
    Sqlite(SqliteConnection),
    /// A PostgreSQL connection.
    Postgres(PgConnection),
}

/// Either manager, chosen at run time: one pool type for both backends.
#[derive(Debug, Clone)]
pub enum DbManager {
    /// SQLite (the embedded default).
    Sqlite(SqliteManager),
    /// PostgreSQL (`--database-url postgres://...`).
    Postgres(PgManager),
}

impl Manager for DbManager {
    type Connection = DbConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<DbConnection, sqlx::Error> {
        match self {
            Self::Sqlite(m) => m.create().await.map(DbConnection::Sqlite),
            Self::Postgres(m) => m.create().await.map(DbConnection::Postgres),
        }
    }

    async fn recycle(&self, conn: &mut DbConnection) -> Result<(), sqlx::Error> {
        match conn {
            DbConnection::Sqlite(c) => c.ping().await,
            DbConnection::Postgres(c) => c.ping().await,
        }
    }

    async fn close(&self, conn: DbConnection) {
        let closed = match conn {
            DbConnection::Sqlite(c) => c.close().await,
            DbConnection::Postgres(c) => c.close().await,
        };
        if let Err(err) = closed {
            tracing::debug!(error = %err, "closing a connection failed");
        }
    }
}

impl ItemStore for DbConnection {
    async fn create_items(&mut self, table: &ItemsTable, rows: i64) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(c) => c.create_items(table, rows).await,
            Self::Postgres(c) => c.create_items(table, rows).await,
        }
    }

    async fn fetch_item(&mut self, table: &ItemsTable, id: i64) -> sqlx::Result<Option<Item>> {
        match self {
            Self::Sqlite(c) => c.fetch_item(table, id).await,
            Self::Postgres(c) => c.fetch_item(table, id).await,
        }
    }

    async fn record_view(&mut self, table: &ItemsTable, id: i64) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(c) => c.record_view(table, id).await,
            Self::Postgres(c) => c.record_view(table, id).await,
        }
    }

    async fn drop_items(&mut self, table: &ItemsTable) -> sqlx::Result<()> {
        match self {
            Self::Sqlite(c) => c.drop_items(table).await,
            Self::Postgres(c) => c.drop_items(table).await,
        }
    }
}

/// The clap value parser for `--database-url`: a `postgres://` or
/// `postgresql://` URL (anything else is a usage error, exit 2).
pub fn database_url(text: &str) -> Result<String, String> {
    let scheme_ok = text.starts_with("postgres://") || text.starts_with("postgresql://");
    if !scheme_ok {
        return Err(format!(
            "unsupported database URL {text:?}: expected postgres://user@host:port/db \
             (leave it out for the embedded SQLite)"
        ));
    }
    PgConnectOptions::from_str(text).map_err(|err| format!("invalid PostgreSQL URL: {err}"))?;
    Ok(text.to_owned())
}

/// A demo's database: the pool, its table, and which backend it is.
pub struct Database {
    /// The pattern, over either backend.
    pub pool: Pool<DbManager>,
    /// The demo table (not created yet).
    pub table: ItemsTable,
    /// `"sqlite"` or `"postgres"`: the `backend` figure of `--json`.
    pub backend: &'static str,
    /// For people: `SQLite file /tmp/.../demo.db (WAL)` or `PostgreSQL`.
    pub label: String,
}

/// Builds the pool `database_url` asks for (no connection opened yet).
///
/// - `None`: SQLite in a new temp dir (deleted with the pool), table
///   `items`. Nothing to install, so every binary runs with no arguments.
/// - `postgres://...`: PostgreSQL, on a table of the demo's own named
///   `<table_prefix>_<pid>_<nanos>`, so that it never touches user data
///   and parallel runs never collide; connections are named
///   `application_name`. [`Database::drop_table`] removes it.
pub fn open(
    database_url: Option<&str>,
    config: PoolConfig,
    table_prefix: &str,
    application_name: &str,
) -> anyhow::Result<Database> {
    let (manager, table, backend, label) = match database_url {
        None => {
            let manager = SqliteManager::temporary().context("create a temp dir for SQLite")?;
            let label = format!("SQLite file {} (WAL)", manager.path().display());
            let table = ItemsTable::new("items")?;
            (DbManager::Sqlite(manager), table, "sqlite", label)
        }
        Some(url) => {
            let manager =
                PgManager::from_url(url, application_name).context("invalid --database-url")?;
            let table = ItemsTable::unique(table_prefix)?;
            (
                DbManager::Postgres(manager),
                table,
                "postgres",
                "PostgreSQL".to_owned(),
            )
        }
    };
    Ok(Database {
        pool: Pool::new(manager, config)?,
        table,
        backend,
        label,
    })
}

impl Database {
    /// Opens the pool's connections, then creates and fills the table.
    pub async fn prepare(&self, rows: i64) -> anyhow::Result<()> {
        self.pool
            .fill()
            .await
            .context("open the pool's connections")?;
        self.pool
            .get()
            .await?
            .create_items(&self.table, rows)
            .await
            .context("create the demo table")
    }

    /// One row through the pool: the cache demo's loader (a typed error,
    /// so the cache can hand it to every caller waiting on the load).
    pub async fn load_item(&self, id: i64) -> Result<Arc<Item>, LookupError<sqlx::Error>> {
        super::workload::lookup(&self.pool, &self.table, id)
            .await
            .map(Arc::new)
    }

    /// Drops a PostgreSQL demo table (a SQLite temp dir goes with the pool).
    pub async fn drop_table(&self) -> anyhow::Result<()> {
        if matches!(self.pool.manager(), DbManager::Postgres(_)) {
            self.pool
                .get()
                .await?
                .drop_items(&self.table)
                .await
                .context("drop the demo table")?;
        }
        Ok(())
    }
}
