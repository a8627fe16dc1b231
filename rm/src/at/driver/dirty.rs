//! Reading and resolving dirty rollbacks (`model/dirty.rs`): the report is rebuilt from the
//! undo log, which a refused rollback keeps, and the rows now; an operator then either writes
//! the before images back anyway or accepts the current data by deleting the undo log. After
//! either, the TC's next rollback of the branch finds no undo log and succeeds.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::image_query::select_by_keys;
use super::resource::DataSource;
use super::rollback::{undo_with, UndoOutcome};
use crate::at::model::dirty::{dirty_rows, DirtyReport};
use crate::at::model::table_name::parse_table_name;
use crate::at::model::undo_json::serializer_of;
use crate::at::model::undo_log::{LogStatus, SqlType};
use crate::error::RmError;

/// How an operator settles a dirty rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirtyResolution {
    /// Write the before images back over the current rows (the change made outside the
    /// global lock is lost), then delete the undo log.
    RestoreBeforeImage,
    /// Keep the rows as they are now and delete the undo log (the branch's own change stays
    /// where the outside write did not overwrite it).
    AcceptCurrent,
}

/// The branch's dirty rows now; `None` when it has no normal undo log (already resolved,
/// never written, or finished).
pub(crate) async fn report(
    ds: &DataSource,
    xid: &str,
    branch_id: i64,
) -> Result<Option<DirtyReport>, RmError> {
    let mut conn = ds.pool.get_conn().await?;
    // The locking read needs a transaction; nothing is written in it.
    conn.query_drop("START TRANSACTION").await?;
    let result = rows(&mut conn, ds, xid, branch_id).await;
    conn.query_drop("ROLLBACK").await?;
    result
}

async fn rows(
    conn: &mut Conn,
    ds: &DataSource,
    xid: &str,
    branch_id: i64,
) -> Result<Option<DirtyReport>, RmError> {
    let logs = ds
        .undo_table
        .select_for_update(conn, xid, branch_id)
        .await?;
    let corrupt = |reason: String| RmError::UndoLogCorrupt {
        xid: xid.to_string(),
        branch_id,
        reason,
    };
    let mut report = DirtyReport {
        xid: xid.to_string(),
        branch_id,
        resource_id: ds.resource_id.clone(),
        rows: Vec::new(),
    };
    let mut found = false;
    for row in logs {
        if row.log_status != LogStatus::Normal as i32 || serializer_of(&row.context) != "jackson" {
            continue;
        }
        found = true;
        let log = ds.codec.decode(&row.rollback_info).map_err(corrupt)?;
        for item in log.sql_undo_logs.iter().rev() {
            let table = parse_table_name(&item.table_name)?;
            let schema = ds
                .schema_for(conn, table.schema.as_deref(), &table.table)
                .await?;
            let meta = ds.meta.get(conn, &schema, &table.table).await?;
            let undo_rows = match item.sql_type {
                SqlType::Insert => &item.after_image,
                SqlType::Update | SqlType::Delete => &item.before_image,
            };
            let keys = undo_rows.key_values(&meta)?;
            let all: Vec<String> = meta.columns.iter().map(|c| c.name.clone()).collect();
            let from = table.name.to_string();
            let current = select_by_keys(conn, &meta, &from, &all, &keys, false).await?;
            report.rows.extend(dirty_rows(item, &current));
        }
    }
    Ok(found.then_some(report))
}

/// Settles the branch's dirty rollback; `false` when it has no undo log left to settle.
pub(crate) async fn resolve(
    ds: &DataSource,
    xid: &str,
    branch_id: i64,
    how: DirtyResolution,
) -> Result<bool, RmError> {
    match how {
        DirtyResolution::RestoreBeforeImage => {
            let outcome = undo_with(ds, xid, branch_id, false).await?;
            Ok(outcome == UndoOutcome::Undone)
        }
        DirtyResolution::AcceptCurrent => {
            let mut conn = ds.pool.get_conn().await?;
            conn.query_drop("START TRANSACTION").await?;
            let found = ds
                .undo_table
                .select_for_update(&mut conn, xid, branch_id)
                .await?
                .iter()
                .any(|r| r.log_status == LogStatus::Normal as i32);
            if found {
                ds.undo_table.delete(&mut conn, xid, branch_id).await?;
            }
            conn.query_drop("COMMIT").await?;
            Ok(found)
        }
    }
}
