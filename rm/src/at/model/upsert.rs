//! INSERT kinds that may meet rows already there: `INSERT IGNORE`, `INSERT ... ON DUPLICATE
//! KEY UPDATE` and `REPLACE`. The rows a statement may collide with are the ones sharing a
//! value of the primary key or of any unique key with one of its VALUES rows, so:
//!
//! 1. before: every such row, whole, locked (`SELECT * ... WHERE <identities> FOR UPDATE`);
//! 2. the statement;
//! 3. after: the same identities again plus the before rows' keys, whole, unlocked;
//! 4. the two images, matched by primary key, give the undo items: a row only after was
//!    inserted (INSERT item), a row only before was deleted by REPLACE (DELETE item), a row in
//!    both that changed was updated (UPDATE item with whole rows).
//!
//! Only Seata 1.2's three item kinds are written, so a Java 1.2 RM undoes them correctly. The
//! items are ordered DELETE, UPDATE, INSERT: undo runs in reverse, so inserted rows go first
//! and free their key values before deleted rows come back.
//!
//! MySQL's affected-row count is checked against what the images say (1 per inserted row, 2
//! per updated row, 0 for IGNORE's skipped ones): a row another transaction inserted between
//! the before image and the statement (READ COMMITTED takes no gap locks) would otherwise be
//! taken for ours and deleted at rollback.

use std::collections::HashSet;
use std::sync::Arc;

use mysql_async::Value;

use super::image::{Row, TableRecords};
use super::image_sql::quote;
use super::lock_key;
use super::statement::{Cell, InsertStmt, OnConflict};
use super::table_meta::TableMeta;
use super::undo_log::{SqlType, SqlUndoLog};
use super::value::FieldValue;
use crate::error::RmError;

/// One way a VALUES row can collide: all columns of one unique index (or the primary key)
/// with the row's values for them.
pub(crate) type Identity = Vec<(String, FieldValue)>;

/// What an upsert-like INSERT needs before it runs.
#[derive(Debug)]
pub(crate) struct UpsertPlan {
    pub(crate) kind: OnConflict,
    pub(crate) meta: Arc<TableMeta>,
    /// The table as the statement names it (undo logs keep that spelling).
    pub(crate) table_name: String,
    /// Every identity of every row, duplicates removed.
    pub(crate) identities: Vec<Identity>,
}

/// Builds the plan, refusing rows whose collisions cannot be known before the statement runs.
pub(crate) fn plan(
    sql: &str,
    ins: &InsertStmt,
    meta: Arc<TableMeta>,
) -> Result<UpsertPlan, RmError> {
    let construct = ins.on_conflict.construct();
    let columns: Vec<String> = if ins.columns.is_empty() {
        meta.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        ins.columns.clone()
    };
    let mut indexes: Vec<(bool, &[String])> = vec![(true, meta.primary_keys.as_slice())];
    indexes.extend(meta.unique_keys.iter().map(|k| (false, k.as_slice())));
    let mut identities: Vec<Identity> = Vec::new();
    let mut seen = HashSet::new();
    for row in &ins.rows {
        if row.len() != columns.len() {
            return Err(RmError::unsupported(
                sql,
                "a VALUES row whose length differs from the column list",
            ));
        }
        let mut found = false;
        for (primary, index) in &indexes {
            if let Some(id) = identity(sql, construct, &meta, &columns, row, index, *primary)? {
                found = true;
                if seen.insert(format!("{id:?}")) {
                    identities.push(id);
                }
            }
        }
        if !found {
            return Err(RmError::unsupported(
                sql,
                format!(
                    "{construct} of a row with a generated key and no unique key value: the row \
                     it writes could not be found again; give the key explicitly"
                ),
            ));
        }
    }
    Ok(UpsertPlan {
        kind: ins.on_conflict,
        table_name: ins.table.name.to_string(),
        meta,
        identities,
    })
}

/// The row's values for `index`; `None` when the row cannot collide on it (a NULL in a unique
/// key, a generated primary key).
fn identity(
    sql: &str,
    construct: &str,
    meta: &TableMeta,
    columns: &[String],
    row: &[Cell],
    index: &[String],
    primary: bool,
) -> Result<Option<Identity>, RmError> {
    let mut id = Vec::with_capacity(index.len());
    for name in index {
        let col = meta.column(name).ok_or_else(|| RmError::Value {
            column: name.clone(),
            reason: format!("no such column in `{}`", meta.name),
        })?;
        let cell = columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .and_then(|p| row.get(p));
        let value = match cell {
            Some(Cell::Value(Value::Int(0) | Value::UInt(0))) if primary && col.auto_increment => {
                return Ok(None)
            }
            Some(Cell::Value(v)) => FieldValue::from_mysql(v.clone(), col)?,
            // NULL never equals anything in a unique index; a NULL or absent AUTO_INCREMENT key
            // is a fresh one.
            Some(Cell::Null) if !primary || col.auto_increment => return Ok(None),
            None | Some(Cell::Default) if primary && col.auto_increment => return Ok(None),
            Some(Cell::Expr(e)) => {
                return Err(RmError::unsupported(
                    sql,
                    format!(
                        "{construct} with key column `{name}` from expression `{e}`; pass the \
                         value as a literal or parameter"
                    ),
                ))
            }
            _ => {
                return Err(RmError::unsupported(
                    sql,
                    format!(
                        "{construct} without a value for key column `{name}` (its default \
                         could collide); give it explicitly"
                    ),
                ))
            }
        };
        id.push((col.name.clone(), value));
    }
    Ok(Some(id))
}

/// `(a = ? AND b = ?) OR (c = ?) ...` over `identities` and their parameters.
pub(crate) fn identity_condition(
    meta: &TableMeta,
    identities: &[Identity],
) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let parts: Vec<String> = identities
        .iter()
        .map(|id| {
            let eqs: Vec<String> = id
                .iter()
                .map(|(c, v)| {
                    let year = meta.column(c).is_some_and(|m| m.data_type == "year");
                    params.push(v.to_mysql(year));
                    format!("{} = ?", quote(c))
                })
                .collect();
            format!("({})", eqs.join(" AND "))
        })
        .collect();
    (parts.join(" OR "), params)
}

/// The after-image identities: the statement's own plus the before rows' primary keys (an
/// updated row may have moved its unique values).
pub(crate) fn after_identities(
    p: &UpsertPlan,
    before: &TableRecords,
) -> Result<Vec<Identity>, RmError> {
    let mut ids = p.identities.clone();
    for row in &before.rows {
        let pk = row
            .primary_key(&p.meta)
            .ok_or_else(|| RmError::ImageMismatch {
                table: p.meta.name.clone(),
                reason: "a before-image row lacks a primary key column".into(),
            })?;
        ids.push(
            pk.into_iter()
                .map(|f| (f.name.clone(), f.value.clone()))
                .collect(),
        );
    }
    Ok(ids)
}

/// What the images say the statement did.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The undo items, DELETE then UPDATE then INSERT (see the module docs).
    pub(crate) items: Vec<SqlUndoLog>,
    /// The lock key of every row written, if any.
    pub(crate) lock_key: Option<String>,
}

/// Compares the images and checks MySQL's affected-row count against them.
pub(crate) fn outcome(
    p: &UpsertPlan,
    before: TableRecords,
    after: TableRecords,
    affected: u64,
) -> Result<Outcome, RmError> {
    let key = |r: &Row| r.key_text();
    let mut deleted = TableRecords::empty(&p.meta);
    let mut updated_before = TableRecords::empty(&p.meta);
    let mut updated_after = TableRecords::empty(&p.meta);
    let mut inserted = TableRecords::empty(&p.meta);
    let mut unchanged = 0u64;
    for b in &before.rows {
        match after.rows.iter().find(|a| key(a) == key(b)) {
            None => deleted.rows.push(b.clone()),
            Some(a) if a == b => unchanged += 1,
            Some(a) => {
                updated_before.rows.push(b.clone());
                updated_after.rows.push(a.clone());
            }
        }
    }
    for a in &after.rows {
        if !before.rows.iter().any(|b| key(b) == key(a)) {
            inserted.rows.push(a.clone());
        }
    }
    let (ins, upd, del) = (
        inserted.rows.len() as u64,
        updated_after.rows.len() as u64,
        deleted.rows.len() as u64,
    );
    // CLIENT_FOUND_ROWS makes an unchanged duplicate count 1 instead of 0.
    let consistent = match p.kind {
        OnConflict::Ignore => upd == 0 && del == 0 && affected == ins,
        OnConflict::UpdateDuplicate => {
            del == 0 && (ins + 2 * upd..=ins + 2 * upd + unchanged).contains(&affected)
        }
        // Each VALUES row counts 1, plus 1 per row it deleted (an in-place replacement counts
        // 2); the images alone cannot tell rows replaced by identical ones, so only a count
        // below what they show is a contradiction.
        OnConflict::Replace | OnConflict::Error => affected >= ins + del + upd,
    };
    if !consistent {
        return Err(RmError::ImageMismatch {
            table: p.meta.name.clone(),
            reason: format!(
                "{} affected {affected} rows, but the images show {ins} inserted, {upd} \
                 updated and {del} deleted (a concurrent insert of the same key?); roll back \
                 and retry",
                p.kind.construct()
            ),
        });
    }
    let mut lock_rows = Vec::new();
    let mut items = Vec::new();
    let empty = TableRecords::empty(&p.meta);
    for (sql_type, before_image, after_image) in [
        (SqlType::Delete, deleted, empty.clone()),
        (SqlType::Update, updated_before, updated_after),
        (SqlType::Insert, empty.clone(), inserted),
    ] {
        let rows = if sql_type == SqlType::Delete {
            &before_image
        } else {
            &after_image
        };
        if rows.is_empty() {
            continue;
        }
        if let Some(k) = lock_key::build(&p.meta, rows)? {
            lock_rows.push(k);
        }
        items.push(SqlUndoLog {
            sql_type,
            table_name: p.table_name.clone(),
            before_image,
            after_image,
        });
    }
    Ok(Outcome {
        items,
        lock_key: lock_key::merge(&lock_rows),
    })
}
