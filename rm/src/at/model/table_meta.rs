//! Table metadata for AT mode: columns in order with their MySQL and JDBC types, the primary
//! key columns in key order, the auto-increment column. Read from information_schema and
//! cached per data source (the cache is per resource, so the key is `(schema, table)`). The
//! caller resolves a table without a schema (the connection's session knows its database).
//!
//! Seata caches for 900 s after write (at-mode.md 3.4); we do the same, so a DDL change is
//! picked up within 15 minutes, or at once after [`TableMetaCache::invalidate`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::value::{classify, Kind};
use crate::error::RmError;

/// How long a cached entry is trusted.
const META_TTL: Duration = Duration::from_secs(900);

/// One column.
#[derive(Debug, Clone)]
pub struct ColumnMeta {
    /// The column name as the database reports it.
    pub name: String,
    /// information_schema `DATA_TYPE`, lower-case (`int`, `varchar`, ...).
    pub data_type: String,
    /// information_schema `COLUMN_TYPE`, lower-case (`int(10) unsigned`, ...).
    pub column_type: String,
    /// The `java.sql.Types` code Connector/J reports for it.
    pub jdbc_type: i32,
    /// Whether the column is `AUTO_INCREMENT`.
    pub auto_increment: bool,
    pub(crate) kind: Kind,
}

/// One table.
#[derive(Debug, Clone)]
pub struct TableMeta {
    /// The schema (database) the table lives in.
    pub schema: String,
    /// The table name as the database reports it (no schema, no quotes): used in images and
    /// lock keys, as Seata uses the driver's name.
    pub name: String,
    /// All columns in `ORDINAL_POSITION` order.
    pub columns: Vec<ColumnMeta>,
    /// Primary key column names in key order.
    pub primary_keys: Vec<String>,
    /// Whether an UPDATE trigger exists (it may change rows beyond what the statement says).
    pub update_triggers: bool,
}

impl TableMeta {
    /// The column named `name` (MySQL column names are case-insensitive).
    pub fn column(&self, name: &str) -> Option<&ColumnMeta> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Whether `name` is a primary key column.
    pub fn is_primary_key(&self, name: &str) -> bool {
        self.primary_keys
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name))
    }

    /// The metadata of the primary key columns, in key order.
    pub fn primary_key_columns(&self) -> Vec<&ColumnMeta> {
        self.primary_keys
            .iter()
            .filter_map(|p| self.column(p))
            .collect()
    }

    /// The `AUTO_INCREMENT` column, if any.
    pub fn auto_increment_column(&self) -> Option<&ColumnMeta> {
        self.columns.iter().find(|c| c.auto_increment)
    }
}

/// Per-data-source cache of [`TableMeta`].
#[derive(Debug, Default)]
pub struct TableMetaCache {
    entries: DashMap<(String, String), (Instant, Arc<TableMeta>)>,
}

impl TableMetaCache {
    /// Metadata of `table` in `schema`, loading it on a miss with `conn`. A table without a
    /// primary key is an error: AT mode cannot use it.
    pub async fn get(
        &self,
        conn: &mut Conn,
        schema: &str,
        table: &str,
    ) -> Result<Arc<TableMeta>, RmError> {
        let key = (schema.to_string(), table.to_string());
        if let Some(e) = self.entries.get(&key) {
            if e.0.elapsed() < META_TTL {
                return Ok(e.1.clone());
            }
        }
        let meta = Arc::new(load(conn, schema, table).await?);
        self.entries.insert(key, (Instant::now(), meta.clone()));
        Ok(meta)
    }

    /// Forgets every cached table (call after DDL).
    pub fn invalidate(&self) {
        self.entries.clear();
    }
}

async fn load(conn: &mut Conn, schema: &str, table: &str) -> Result<TableMeta, RmError> {
    let cols: Vec<(String, String, String, String, String)> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, LOWER(DATA_TYPE), LOWER(COLUMN_TYPE), LOWER(EXTRA) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await?;
    let Some(real_name) = cols.first().map(|c| c.0.clone()) else {
        return Err(RmError::UnknownTable {
            schema: schema.to_string(),
            table: table.to_string(),
        });
    };
    let columns = cols
        .into_iter()
        .map(|(_, name, data_type, column_type, extra)| {
            let (kind, jdbc_type) = classify(&data_type, &column_type);
            ColumnMeta {
                name,
                data_type,
                column_type,
                jdbc_type,
                auto_increment: extra.contains("auto_increment"),
                kind,
            }
        })
        .collect();
    let primary_keys: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' \
             ORDER BY SEQ_IN_INDEX",
            (schema, table),
        )
        .await?;
    if primary_keys.is_empty() {
        return Err(RmError::NoPrimaryKey { table: real_name });
    }
    let update_triggers: Option<i64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? \
             AND EVENT_OBJECT_TABLE = ? AND EVENT_MANIPULATION = 'UPDATE'",
            (schema, &real_name),
        )
        .await?;
    Ok(TableMeta {
        schema: schema.to_string(),
        name: real_name,
        columns,
        primary_keys,
        update_triggers: update_triggers.unwrap_or(0) > 0,
    })
}
