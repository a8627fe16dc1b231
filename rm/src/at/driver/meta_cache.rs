//! The per-data-source cache of [`TableMeta`], read from information_schema. The cache is
//! per resource, so its key is `(schema, table)`; the caller resolves a table written without
//! a schema (the connection's MySQL session knows its database).
//!
//! Seata caches for 900 s after write (at-mode.md 3.4); we do the same, so a DDL change is
//! picked up within 15 minutes, or at once after [`TableMetaCache::invalidate`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::at::model::column_type::classify;
use crate::at::model::table_meta::{ColumnMeta, TableMeta};
use crate::error::RmError;

/// How long a cached entry is trusted.
const META_TTL: Duration = Duration::from_secs(900);

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
    let unique_rows: Vec<(String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             AND INDEX_NAME <> 'PRIMARY' ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (schema, table),
        )
        .await?;
    let mut unique_keys: Vec<(String, Vec<String>)> = Vec::new();
    for (index, column) in unique_rows {
        match unique_keys.last_mut() {
            Some((name, cols)) if *name == index => cols.push(column),
            _ => unique_keys.push((index, vec![column])),
        }
    }
    let unique_keys = unique_keys.into_iter().map(|(_, cols)| cols).collect();
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
        unique_keys,
        update_triggers: update_triggers.unwrap_or(0) > 0,
    })
}
