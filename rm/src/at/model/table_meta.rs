//! Table metadata for AT mode: columns in order with their MySQL and JDBC types, the primary
//! key columns in key order, the unique keys, the auto-increment column. Reading it from
//! information_schema and caching it is the driver's (`driver/meta_cache.rs`).

use super::column_type::Kind;

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
    /// The other unique indexes, each its column names in index order (`INSERT ... ON
    /// DUPLICATE KEY UPDATE`, `INSERT IGNORE` and `REPLACE` collide on any of them).
    pub unique_keys: Vec<Vec<String>>,
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
