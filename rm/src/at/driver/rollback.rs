//! Phase-two rollback of one AT branch (at-mode.md 7): in one local transaction on a plain
//! connection, lock the branch's undo log rows, check that the rows still look as phase one
//! left them, apply the compensating statements in reverse order and delete the undo log.
//!
//! No undo log means phase one has not committed (or never will): a "global finished"
//! defense row is written so that a late phase one fails on the unique key instead of
//! committing changes nobody will undo.
//!
//! Deviations from Seata 1.2: a dirty write is reported as its own error (the caller answers
//! `PhaseTwo_RollbackFailed_Unretryable`, as Seata 1.6 does) instead of retrying forever; the
//! current rows are read `FOR UPDATE` so nobody can change them between check and undo.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tracing::{debug, error, info, warn};

use super::image_query::select_by_keys;
use super::resource::DataSource;
use crate::at::model::compensation::compensation;
use crate::at::model::image::diff;
use crate::at::model::table_name::parse_table_name;
use crate::at::model::undo_json::serializer_of;
use crate::at::model::undo_log::{LogStatus, SqlType, SqlUndoLog, DEFENSE_ROLLBACK_INFO};
use crate::error::RmError;

/// MySQL's duplicate-key error: the defense insert met a phase-one row committed meanwhile.
const ER_DUP_ENTRY: u16 = 1062;
/// Attempts after such a collision (the next attempt finds the phase-one row).
const MAX_ATTEMPTS: u32 = 3;

/// How a rollback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UndoOutcome {
    /// The undo log was applied and deleted.
    Undone,
    /// No undo log: the defense row was written.
    DefenseWritten,
    /// The row found was not a normal undo log (already finished): nothing to do.
    Ignored,
}

/// Rolls back branch `branch_id` of `xid` on `ds`, checking for dirty writes when the
/// configuration asks for it.
pub(crate) async fn undo(
    ds: &DataSource,
    xid: &str,
    branch_id: i64,
) -> Result<UndoOutcome, RmError> {
    undo_with(ds, xid, branch_id, ds.config.data_validation).await
}

/// [`undo`], with the dirty-write check on or off (off: an operator chose to write the before
/// images back over whatever is there now).
pub(crate) async fn undo_with(
    ds: &DataSource,
    xid: &str,
    branch_id: i64,
    validate: bool,
) -> Result<UndoOutcome, RmError> {
    let mut conn = ds.pool.get_conn().await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        conn.query_drop("START TRANSACTION").await?;
        match undo_once(&mut conn, ds, xid, branch_id, validate).await {
            Ok(outcome) => {
                conn.query_drop("COMMIT").await?;
                return Ok(outcome);
            }
            Err(e) => {
                if let Err(re) = conn.query_drop("ROLLBACK").await {
                    warn!(error = %re, "rollback of the undo transaction failed");
                }
                if e.mysql_code() == Some(ER_DUP_ENTRY) && attempt < MAX_ATTEMPTS {
                    debug!(xid, branch_id, "phase one committed meanwhile; undoing it");
                    continue;
                }
                return Err(e);
            }
        }
    }
}

async fn undo_once(
    conn: &mut Conn,
    ds: &DataSource,
    xid: &str,
    branch_id: i64,
    validate: bool,
) -> Result<UndoOutcome, RmError> {
    let rows = ds
        .undo_table
        .select_for_update(conn, xid, branch_id)
        .await?;
    if rows.is_empty() {
        ds.undo_table
            .insert(
                conn,
                xid,
                branch_id,
                DEFENSE_ROLLBACK_INFO,
                LogStatus::GlobalFinished,
            )
            .await?;
        return Ok(UndoOutcome::DefenseWritten);
    }
    let corrupt = |reason: String| RmError::UndoLogCorrupt {
        xid: xid.to_string(),
        branch_id,
        reason,
    };
    for row in &rows {
        if row.log_status != LogStatus::Normal as i32 {
            info!(
                xid,
                branch_id,
                status = row.log_status,
                "undo log already finished; ignoring"
            );
            return Ok(UndoOutcome::Ignored);
        }
        let serializer = serializer_of(&row.context);
        if serializer != "jackson" {
            return Err(corrupt(format!(
                "serializer `{serializer}` is not supported"
            )));
        }
        let log = ds.codec.decode(&row.rollback_info).map_err(corrupt)?;
        for item in log.sql_undo_logs.iter().rev() {
            undo_item(conn, ds, xid, branch_id, item, validate).await?;
        }
    }
    ds.undo_table.delete(conn, xid, branch_id).await?;
    Ok(UndoOutcome::Undone)
}

async fn undo_item(
    conn: &mut Conn,
    ds: &DataSource,
    xid: &str,
    branch_id: i64,
    item: &SqlUndoLog,
    validate: bool,
) -> Result<(), RmError> {
    let table = parse_table_name(&item.table_name)?;
    let schema = ds
        .schema_for(conn, table.schema.as_deref(), &table.table)
        .await?;
    let meta = ds.meta.get(conn, &schema, &table.table).await?;
    let from = table.name.to_string();
    let undo_rows = match item.sql_type {
        SqlType::Insert => &item.after_image,
        SqlType::Update | SqlType::Delete => &item.before_image,
    };
    if undo_rows.is_empty() {
        return Err(RmError::UndoLogCorrupt {
            xid: xid.to_string(),
            branch_id,
            reason: format!(
                "empty image for a {:?} on {}",
                item.sql_type, item.table_name
            ),
        });
    }
    if validate {
        if diff(&item.before_image, &item.after_image).is_empty() {
            debug!(table = %meta.name, "images equal; nothing to undo");
            return Ok(());
        }
        let keys = undo_rows.key_values(&meta)?;
        let all: Vec<String> = meta.columns.iter().map(|c| c.name.clone()).collect();
        let current = select_by_keys(conn, &meta, &from, &all, &keys, true).await?;
        let changed = diff(&item.after_image, &current);
        if !changed.is_empty() {
            if diff(&item.before_image, &current).is_empty() {
                debug!(table = %meta.name, "rows already hold the before image");
                return Ok(());
            }
            error!(xid, branch_id, table = %meta.name, rows = ?changed, "dirty write: rows changed after phase one");
            return Err(RmError::DirtyWrite {
                xid: xid.to_string(),
                branch_id,
                table: meta.name.clone(),
                pks: changed,
            });
        }
    }
    for row in &undo_rows.rows {
        let (sql, params) = compensation(item.sql_type, &meta, &from, row)?;
        debug!(sql, "undo statement");
        conn.exec_drop(sql, params).await?;
    }
    Ok(())
}
