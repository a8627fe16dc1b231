//! Multi-table UPDATE and DELETE (`UPDATE a JOIN b ON ... SET ...`, `DELETE a, b FROM a JOIN
//! b ...`): one image per written table, taken through the statement's own FROM clause and
//! WHERE condition, so the rows imaged are the rows the statement reaches:
//!
//! - before: `SELECT q.pk, q.<set columns> FROM <from> WHERE <cond> FOR UPDATE` per target
//!   (all columns for a DELETE), one row per key (a join may reach a row several times);
//! - after (UPDATE): the target's rows read by key, as for a single-table UPDATE.
//!
//! Each target becomes an ordinary UPDATE or DELETE undo item on its own table, which a Java
//! Seata 1.2 RM undoes as it would a single-table statement.

use std::collections::HashSet;
use std::sync::Arc;

use mysql_async::Value;

use super::image::TableRecords;
use super::image_sql::quote;
use super::statement::{JoinedKind, JoinedStmt};
use super::table_meta::TableMeta;
use super::undo_log::SqlType;
use crate::error::RmError;

/// One written table of a multi-table statement.
#[derive(Debug)]
pub(crate) struct JoinedTarget {
    pub(crate) meta: Arc<TableMeta>,
    /// The table as the statement names it (undo logs keep that spelling).
    pub(crate) table_name: String,
    /// The image columns: the key and the SET columns (UPDATE) or all columns (DELETE).
    pub(crate) columns: Vec<String>,
    /// The before-image query.
    pub(crate) select: String,
}

/// What a multi-table statement needs before it runs.
#[derive(Debug)]
pub(crate) struct JoinedPlan {
    pub(crate) sql_type: SqlType,
    pub(crate) targets: Vec<JoinedTarget>,
    /// Parameters of every before-image query.
    pub(crate) params: Vec<Value>,
}

/// Builds the plan; `metas` holds the metadata of `stmt.tables`, in the same order.
pub(crate) fn plan(
    sql: &str,
    stmt: &JoinedStmt,
    metas: &[Arc<TableMeta>],
) -> Result<JoinedPlan, RmError> {
    let mut targets: Vec<(String, Vec<String>)> = stmt.targets.clone();
    for column in &stmt.unqualified {
        let owners: Vec<&str> = stmt
            .tables
            .iter()
            .zip(metas)
            .filter(|(_, m)| m.column(column).is_some())
            .map(|(t, _)| t.qualifier())
            .collect();
        let [owner] = owners.as_slice() else {
            return Err(RmError::unsupported(
                sql,
                format!(
                    "SET column `{column}` belongs to {} tables of the statement; qualify it \
                     (`table.{column}`)",
                    owners.len()
                ),
            ));
        };
        match targets.iter_mut().find(|(q, _)| q == owner) {
            Some((_, cols)) => cols.push(column.clone()),
            None => targets.push((owner.to_string(), vec![column.clone()])),
        }
    }
    let condition = stmt
        .selection
        .as_ref()
        .map(|w| format!(" WHERE {w}"))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(targets.len());
    for (qualifier, set_columns) in targets {
        let Some((table, meta)) = stmt
            .tables
            .iter()
            .zip(metas)
            .find(|(t, _)| t.qualifier() == qualifier)
        else {
            return Err(RmError::unsupported(
                sql,
                format!("`{qualifier}` names no table of the statement"),
            ));
        };
        let columns = match stmt.kind {
            JoinedKind::Delete => meta.columns.iter().map(|c| c.name.clone()).collect(),
            JoinedKind::Update => {
                let mut columns = meta.primary_keys.clone();
                for c in &set_columns {
                    if meta.is_primary_key(c) {
                        return Err(RmError::unsupported(
                            sql,
                            format!(
                                "UPDATE of primary key column `{qualifier}.{c}`; delete and \
                                 insert the row instead"
                            ),
                        ));
                    }
                    let col = meta.column(c).ok_or_else(|| RmError::Value {
                        column: c.clone(),
                        reason: format!("no such column in `{}`", meta.name),
                    })?;
                    if !columns.iter().any(|x| x.eq_ignore_ascii_case(&col.name)) {
                        columns.push(col.name.clone());
                    }
                }
                columns
            }
        };
        let q = quote(&qualifier);
        let list = columns
            .iter()
            .map(|c| format!("{q}.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(JoinedTarget {
            meta: meta.clone(),
            table_name: table.name.to_string(),
            select: format!("SELECT {list} FROM {}{condition} FOR UPDATE", stmt.from),
            columns,
        });
    }
    Ok(JoinedPlan {
        sql_type: match stmt.kind {
            JoinedKind::Update => SqlType::Update,
            JoinedKind::Delete => SqlType::Delete,
        },
        targets: out,
        params: stmt.params.clone(),
    })
}

/// Keeps the first row of each key (a join reaches a row once per matching partner).
pub(crate) fn dedupe(mut image: TableRecords) -> TableRecords {
    let mut seen = HashSet::new();
    image.rows.retain(|r| seen.insert(r.key_text()));
    image
}
