//! The statements on the `undo_log` table (at-mode.md 1, 2.6, 8, 9): phase one's insert (with
//! the COMMIT in the same round trip), rollback's locked read and delete, the defense row,
//! batch deletion after commit and age-based housekeeping.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::at::model::image_sql::quote;
use crate::at::model::literal::bytes_literal;
use crate::at::model::undo_log::{LogStatus, CONTEXT_JACKSON};
use crate::error::RmError;

/// One `undo_log` row as rollback reads it.
#[derive(Debug, Clone)]
pub struct UndoLogRow {
    /// `context`.
    pub context: String,
    /// `rollback_info`.
    pub rollback_info: Vec<u8>,
    /// `log_status`.
    pub log_status: i32,
}

/// The `undo_log` table's statements (at-mode.md 1). `table` is the configured name.
#[derive(Debug, Clone)]
pub struct UndoLogTable {
    quoted: String,
}

/// Largest undo log written in the same round trip as the COMMIT (as hex, twice its size).
const INLINE_LIMIT: usize = 1 << 20;

/// Rows per age-based delete, as Seata.
const AGE_DELETE_LIMIT: u64 = 3000;

impl UndoLogTable {
    /// Statements against the table named `name`.
    pub fn new(name: &str) -> Self {
        UndoLogTable {
            quoted: quote(name),
        }
    }

    /// Inserts one row (`log_created`/`log_modified` = `now()`).
    pub async fn insert(
        &self,
        conn: &mut Conn,
        xid: &str,
        branch_id: i64,
        rollback_info: &[u8],
        status: LogStatus,
    ) -> Result<(), RmError> {
        let sql = format!(
            "INSERT INTO {} (branch_id, xid, context, rollback_info, log_status, log_created, \
             log_modified) VALUES (?, ?, ?, ?, ?, now(), now())",
            self.quoted
        );
        conn.exec_drop(
            sql,
            (
                branch_id,
                xid,
                CONTEXT_JACKSON,
                rollback_info,
                status as i32,
            ),
        )
        .await?;
        Ok(())
    }

    /// Inserts one row and commits the local transaction. Up to [`INLINE_LIMIT`] bytes the
    /// two go in one round trip, values written as literals (the COMMIT runs only if the
    /// insert succeeded); larger logs are bound as parameters.
    pub async fn insert_and_commit(
        &self,
        conn: &mut Conn,
        xid: &str,
        branch_id: i64,
        rollback_info: &[u8],
        status: LogStatus,
    ) -> Result<(), RmError> {
        if rollback_info.len() > INLINE_LIMIT {
            self.insert(conn, xid, branch_id, rollback_info, status)
                .await?;
            conn.query_drop("COMMIT").await?;
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {} (branch_id, xid, context, rollback_info, log_status, log_created, \
             log_modified) VALUES ({branch_id}, {}, {}, {}, {}, now(), now());COMMIT",
            self.quoted,
            bytes_literal(xid.as_bytes()),
            bytes_literal(CONTEXT_JACKSON.as_bytes()),
            bytes_literal(rollback_info),
            status as i32,
        );
        conn.query_iter(sql).await?.drop_result().await?;
        Ok(())
    }

    /// The branch's rows, locked.
    pub async fn select_for_update(
        &self,
        conn: &mut Conn,
        xid: &str,
        branch_id: i64,
    ) -> Result<Vec<UndoLogRow>, RmError> {
        let sql = format!(
            "SELECT context, rollback_info, log_status FROM {} WHERE branch_id = ? AND xid = ? \
             FOR UPDATE",
            self.quoted
        );
        let rows: Vec<(String, Vec<u8>, i32)> = conn.exec(sql, (branch_id, xid)).await?;
        Ok(rows
            .into_iter()
            .map(|(context, rollback_info, log_status)| UndoLogRow {
                context,
                rollback_info,
                log_status,
            })
            .collect())
    }

    /// Deletes the branch's rows.
    pub async fn delete(&self, conn: &mut Conn, xid: &str, branch_id: i64) -> Result<(), RmError> {
        let sql = format!(
            "DELETE FROM {} WHERE branch_id = ? AND xid = ?",
            self.quoted
        );
        conn.exec_drop(sql, (branch_id, xid)).await?;
        Ok(())
    }

    /// Deletes many branches' rows at once. Like Seata this is the cross product of the two
    /// sets, which is harmless because `(xid, branch_id)` pairs are unique.
    pub async fn delete_batch(
        &self,
        conn: &mut Conn,
        branch_ids: &[i64],
        xids: &[String],
    ) -> Result<(), RmError> {
        if branch_ids.is_empty() || xids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "DELETE FROM {} WHERE branch_id IN ({}) AND xid IN ({})",
            self.quoted,
            vec!["?"; branch_ids.len()].join(","),
            vec!["?"; xids.len()].join(",")
        );
        let mut params: Vec<mysql_async::Value> = branch_ids
            .iter()
            .map(|b| mysql_async::Value::Int(*b))
            .collect();
        params.extend(xids.iter().map(|x| mysql_async::Value::from(x.as_str())));
        conn.exec_drop(sql, params).await?;
        Ok(())
    }

    /// Deletes rows created more than `save_days` days before today (the server's date, so
    /// truncated to the day as Seata's `java.sql.Date` parameter is), 3000 at a time.
    /// Returns how many rows went.
    pub async fn delete_older_than(&self, conn: &mut Conn, save_days: u32) -> Result<u64, RmError> {
        let sql = format!(
            "DELETE FROM {} WHERE log_created <= DATE_SUB(CURDATE(), INTERVAL ? DAY) LIMIT {}",
            self.quoted, AGE_DELETE_LIMIT
        );
        let mut total = 0;
        loop {
            conn.exec_drop(sql.as_str(), (save_days,)).await?;
            let n = conn.affected_rows();
            total += n;
            if n < AGE_DELETE_LIMIT {
                return Ok(total);
            }
        }
    }
}
