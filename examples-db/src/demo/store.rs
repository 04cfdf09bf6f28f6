//! Demo support: the demo table, `items(id, name, price_cents, views)`.
//!
//! Both binaries run the same SQL on SQLite and PostgreSQL: the statements
//! use only syntax the two share (`$1` placeholders, `WITH RECURSIVE`,
//! `CAST`, `||`). The table name is a parameter so parallel runs and tests
//! against one PostgreSQL database never collide; since an identifier cannot
//! be a bind parameter, it is validated here and spliced in once.

use std::future::Future;
use std::sync::Arc;

use sqlx::{AssertSqlSafe, PgConnection, SqliteConnection};

/// One row of the demo table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// Primary key, 1..=rows.
    pub id: i64,
    /// `item-<id>`.
    pub name: String,
    /// A deterministic price derived from the id.
    pub price_cents: i64,
    /// Bumped by [`ItemStore::record_view`].
    pub views: i64,
}

/// A validated table name and the statements that use it.
#[derive(Debug, Clone)]
pub struct ItemsTable {
    name: String,
    create: Arc<str>,
    seed: Arc<str>,
    fetch: Arc<str>,
    record_view: Arc<str>,
    drop: Arc<str>,
}

/// A table name that is not a plain lower-case identifier.
#[derive(Debug, thiserror::Error)]
#[error("invalid table name {0:?}: use 1-63 characters of a-z, 0-9, _ (not starting with a digit)")]
pub struct InvalidTableName(String);

impl ItemsTable {
    /// Validates `name` (`[a-z_][a-z0-9_]{0,62}`) and prepares the SQL.
    pub fn new(name: &str) -> Result<Self, InvalidTableName> {
        let valid = (1..=63).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(InvalidTableName(name.to_owned()));
        }
        let sql = |template: &str| Arc::<str>::from(template.replace("{t}", name));
        Ok(Self {
            name: name.to_owned(),
            create: sql(
                "CREATE TABLE {t} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, \
                 price_cents BIGINT NOT NULL, views BIGINT NOT NULL DEFAULT 0)",
            ),
            seed: sql(
                "WITH RECURSIVE seq(n) AS (SELECT CAST(1 AS BIGINT) UNION ALL \
                 SELECT n + 1 FROM seq WHERE n < $1) \
                 INSERT INTO {t} (id, name, price_cents, views) \
                 SELECT n, 'item-' || n, (n * 7919) % 10000, 0 FROM seq",
            ),
            fetch: sql("SELECT id, name, price_cents, views FROM {t} WHERE id = $1"),
            record_view: sql("UPDATE {t} SET views = views + 1 WHERE id = $1"),
            drop: sql("DROP TABLE IF EXISTS {t}"),
        })
    }

    /// A name unique to this process and moment, prefixed `prefix`.
    pub fn unique(prefix: &str) -> Result<Self, InvalidTableName> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self::new(&format!("{prefix}_{}_{nanos}", std::process::id()))
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The queries the demos run, on any connection type that has them.
pub trait ItemStore: Send {
    /// Creates the table and inserts `rows` items (ids 1..=rows).
    fn create_items(
        &mut self,
        table: &ItemsTable,
        rows: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// One item by id.
    fn fetch_item(
        &mut self,
        table: &ItemsTable,
        id: i64,
    ) -> impl Future<Output = sqlx::Result<Option<Item>>> + Send;
    /// Adds one to an item's view count (a write).
    fn record_view(
        &mut self,
        table: &ItemsTable,
        id: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// Drops the table.
    fn drop_items(&mut self, table: &ItemsTable) -> impl Future<Output = sqlx::Result<()>> + Send;
}

/// The same bodies for both connection types: sqlx's generic executor
/// bounds would say it once, but are far harder to read than this.
macro_rules! impl_item_store {
    ($conn:ty) => {
        impl ItemStore for $conn {
            async fn create_items(&mut self, table: &ItemsTable, rows: i64) -> sqlx::Result<()> {
                // AssertSqlSafe: the only dynamic part is the table name,
                // validated as a plain identifier in `ItemsTable::new`.
                sqlx::query(AssertSqlSafe(Arc::clone(&table.create)))
                    .execute(&mut *self)
                    .await?;
                sqlx::query(AssertSqlSafe(Arc::clone(&table.seed)))
                    .bind(rows)
                    .execute(&mut *self)
                    .await?;
                Ok(())
            }

            async fn fetch_item(
                &mut self,
                table: &ItemsTable,
                id: i64,
            ) -> sqlx::Result<Option<Item>> {
                // AssertSqlSafe: validated table name; the id is bound.
                let row: Option<(i64, String, i64, i64)> =
                    sqlx::query_as(AssertSqlSafe(Arc::clone(&table.fetch)))
                        .bind(id)
                        .fetch_optional(&mut *self)
                        .await?;
                Ok(row.map(|(id, name, price_cents, views)| Item {
                    id,
                    name,
                    price_cents,
                    views,
                }))
            }

            async fn record_view(&mut self, table: &ItemsTable, id: i64) -> sqlx::Result<()> {
                // AssertSqlSafe: validated table name; the id is bound.
                sqlx::query(AssertSqlSafe(Arc::clone(&table.record_view)))
                    .bind(id)
                    .execute(&mut *self)
                    .await?;
                Ok(())
            }

            async fn drop_items(&mut self, table: &ItemsTable) -> sqlx::Result<()> {
                // AssertSqlSafe: validated table name, no other input.
                sqlx::query(AssertSqlSafe(Arc::clone(&table.drop)))
                    .execute(&mut *self)
                    .await?;
                Ok(())
            }
        }
    };
}

impl_item_store!(SqliteConnection);
impl_item_store!(PgConnection);
