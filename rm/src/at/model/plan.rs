//! A statement's plan: everything that can refuse it (metadata, key columns, INSERT key
//! sources) decided before it runs, from its recognized shape and its table's metadata; and
//! what the before phase found ([`Prepared`]), needed again after it runs.
//!
//! INSERT keys: explicit values come from the statement; generated ones are numbered from
//! `LAST_INSERT_ID()` by `@@auto_increment_increment` for every row of a multi-row insert
//! (Seata 1.2 images only the first row).

use std::sync::Arc;

use mysql_async::Value;

use super::column_type::Kind;
use super::image::{Row, TableRecords};
use super::int_set::IntSet;
use super::lock_key;
use super::statement::{Cell, Filter, InsertStmt, Recognized, TableRef};
use super::table_meta::TableMeta;
use super::undo_log::SqlType;
use super::value::FieldValue;
use crate::error::RmError;

/// The table a DML statement writes, whose metadata [`plan`] needs.
pub(crate) fn target(rec: &Recognized) -> Option<&TableRef> {
    match rec {
        Recognized::Insert(i) => Some(&i.table),
        Recognized::Update(u) => Some(&u.table),
        Recognized::Delete(d) => Some(&d.table),
        _ => None,
    }
}

/// Where one row's value for one primary key column comes from.
#[derive(Debug)]
pub(crate) enum KeySource {
    Explicit(FieldValue),
    Generated,
}

/// What a statement needs before anything runs: its table, image columns and rows.
pub(crate) struct Plan<'r> {
    pub(crate) sql_type: SqlType,
    pub(crate) meta: Arc<TableMeta>,
    pub(crate) table: &'r TableRef,
    /// The image columns: the key and the SET columns for an UPDATE (at-mode.md 3.4), all
    /// columns otherwise.
    pub(crate) columns: Vec<String>,
    /// UPDATE/DELETE: the rows the statement touches.
    pub(crate) filter: Option<&'r Filter>,
    /// UPDATE: the SET columns.
    pub(crate) set_columns: &'r [String],
    /// UPDATE: the SETs as integer changes, when every one is.
    pub(crate) int_sets: Option<&'r [IntSet]>,
    /// INSERT only: per row, per primary key column (key order).
    pub(crate) insert_keys: Vec<Vec<KeySource>>,
}

impl Plan<'_> {
    pub(crate) fn into_prepared(
        self,
        before: TableRecords,
        after_guess: Option<TableRecords>,
    ) -> Prepared {
        Prepared {
            sql_type: self.sql_type,
            meta: self.meta,
            table_name: self.table.name.to_string(),
            columns: self.columns,
            before,
            insert_keys: self.insert_keys,
            after_guess,
        }
    }
}

/// What the statement's before phase found, needed again after it runs.
pub(crate) struct Prepared {
    pub(crate) sql_type: SqlType,
    pub(crate) meta: Arc<TableMeta>,
    /// The table as the statement names it (undo logs keep that spelling).
    pub(crate) table_name: String,
    pub(crate) columns: Vec<String>,
    pub(crate) before: TableRecords,
    pub(crate) insert_keys: Vec<Vec<KeySource>>,
    /// UPDATE: the rows its own filter selected again after it ran, in the same round trip.
    /// Taken as the after image only when they carry exactly the before image's keys.
    pub(crate) after_guess: Option<TableRecords>,
}

/// Everything that can refuse the statement, checked before anything runs.
pub(crate) fn plan<'r>(
    sql: &str,
    rec: &'r Recognized,
    meta: Arc<TableMeta>,
) -> Result<Plan<'r>, RmError> {
    let (sql_type, table, filter, set_columns): (_, _, _, &[String]) = match rec {
        Recognized::Insert(i) => (SqlType::Insert, &i.table, None, &[]),
        Recognized::Update(u) => (SqlType::Update, &u.table, Some(&u.filter), &u.columns),
        Recognized::Delete(d) => (SqlType::Delete, &d.table, Some(&d.filter), &[]),
        _ => return Err(RmError::unsupported(sql, "not a DML statement")),
    };
    let int_sets = match rec {
        Recognized::Update(u) => u.int_sets.as_deref(),
        _ => None,
    };
    let columns = if sql_type == SqlType::Update {
        let mut columns = meta.primary_keys.clone();
        for c in set_columns {
            if meta.is_primary_key(c) {
                return Err(RmError::unsupported(
                    sql,
                    format!(
                        "UPDATE of primary key column `{c}`; delete and insert the row instead"
                    ),
                ));
            }
            let col = meta.column(c).ok_or_else(|| RmError::Value {
                column: c.clone(),
                reason: format!("no such column in `{}`", meta.name),
            })?;
            columns.push(col.name.clone());
        }
        columns
    } else {
        meta.columns.iter().map(|c| c.name.clone()).collect()
    };
    let insert_keys = match rec {
        Recognized::Insert(i) => insert_keys(sql, &meta, i)?,
        _ => Vec::new(),
    };
    Ok(Plan {
        sql_type,
        meta,
        table,
        columns,
        filter,
        set_columns,
        int_sets,
        insert_keys,
    })
}

/// The lock key of an INSERT whose rows all carry explicit integer keys, known before it runs.
pub(crate) fn inserted_key(meta: &TableMeta, keys: &[Vec<KeySource>]) -> Option<String> {
    let pk_cols = meta.primary_key_columns();
    let ints = pk_cols
        .iter()
        .all(|c| matches!(c.kind, Kind::Int | Kind::Long | Kind::BigInteger));
    if !ints || keys.is_empty() {
        return None;
    }
    let rows = keys
        .iter()
        .map(|row| {
            let parts = row
                .iter()
                .map(|k| match k {
                    KeySource::Explicit(v) => Some(v.lock_key_text()),
                    KeySource::Generated => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some(parts.join("_"))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(lock_key::format(&meta.name, rows))
}

/// Whether two images hold the same rows by key (in any order).
pub(crate) fn same_keys(a: &TableRecords, b: &TableRecords) -> bool {
    let keys = |t: &TableRecords| {
        let mut k: Vec<String> = t.rows.iter().map(Row::key_text).collect();
        k.sort_unstable();
        k
    };
    a.rows.len() == b.rows.len() && keys(a) == keys(b)
}

/// Where each inserted row's key comes from, decided before the INSERT runs.
fn insert_keys(
    sql: &str,
    meta: &TableMeta,
    ins: &InsertStmt,
) -> Result<Vec<Vec<KeySource>>, RmError> {
    let columns: Vec<String> = if ins.columns.is_empty() {
        meta.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        ins.columns.clone()
    };
    let pk_cols = meta.primary_key_columns();
    let positions: Vec<Option<usize>> = pk_cols
        .iter()
        .map(|pk| {
            columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(&pk.name))
        })
        .collect();
    let mut out = Vec::with_capacity(ins.rows.len());
    for row in &ins.rows {
        if row.len() != columns.len() {
            return Err(RmError::unsupported(
                sql,
                "a VALUES row whose length differs from the column list",
            ));
        }
        let mut key = Vec::with_capacity(pk_cols.len());
        for (pk, pos) in pk_cols.iter().zip(&positions) {
            let cell = pos.and_then(|p| row.get(p));
            let src = match cell {
                // 0 on an AUTO_INCREMENT column also asks for a new id (without
                // NO_AUTO_VALUE_ON_ZERO, MySQL's default).
                Some(Cell::Value(Value::Int(0) | Value::UInt(0))) if pk.auto_increment => {
                    KeySource::Generated
                }
                Some(Cell::Value(v)) => KeySource::Explicit(FieldValue::from_mysql(v.clone(), pk)?),
                None | Some(Cell::Null | Cell::Default) if pk.auto_increment => KeySource::Generated,
                None | Some(Cell::Null | Cell::Default) => {
                    return Err(RmError::unsupported(
                        sql,
                        format!("no value for primary key column `{}`", pk.name),
                    ))
                }
                Some(Cell::Expr(e)) => {
                    return Err(RmError::unsupported(
                        sql,
                        format!("primary key `{}` from expression `{e}`; pass the value as a literal or parameter", pk.name),
                    ))
                }
            };
            key.push(src);
        }
        out.push(key);
    }
    // LAST_INSERT_ID() numbers only the generated rows, so rows with explicit ids between
    // them would shift the sequence.
    let generated = out
        .iter()
        .filter(|k| k.iter().any(|s| matches!(s, KeySource::Generated)))
        .count();
    if generated != 0 && generated != out.len() {
        return Err(RmError::unsupported(
            sql,
            "a multi-row INSERT mixing explicit and generated AUTO_INCREMENT keys",
        ));
    }
    Ok(out)
}
