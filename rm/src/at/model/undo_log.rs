//! The undo log model: a branch's [`BranchUndoLog`] holds one [`SqlUndoLog`] per statement,
//! each with its before and after image (at-mode.md 2.2), and the `undo_log` table's schema and
//! constants (at-mode.md 1, 2.6). The Jackson encoding is in `undo_json.rs`; the statements on
//! the table are the driver's (`driver/undo_log_table.rs`).

use super::image::TableRecords;

/// Seata 1.2's `undo_log` table for MySQL (at-mode.md 1). Every database an AT resource writes
/// to needs it; create it with this statement (or Seata's own script, which is the same).
pub const UNDO_LOG_DDL: &str = "CREATE TABLE undo_log (
    id BIGINT(20) NOT NULL AUTO_INCREMENT,
    branch_id BIGINT(20) NOT NULL,
    xid VARCHAR(100) NOT NULL,
    context VARCHAR(128) NOT NULL,
    rollback_info LONGBLOB NOT NULL,
    log_status INT(11) NOT NULL,
    log_created DATETIME NOT NULL,
    log_modified DATETIME NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY ux_undo_log (xid, branch_id)
) ENGINE = InnoDB AUTO_INCREMENT = 1 DEFAULT CHARSET = utf8";

/// The `context` column Seata 1.2 writes.
pub const CONTEXT_JACKSON: &str = "serializer=jackson";
/// `rollback_info` of the "global finished" defense row: Jackson's default content.
pub const DEFENSE_ROLLBACK_INFO: &[u8] = b"{}";

/// `undo_log.log_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStatus {
    /// 0: written by phase one.
    Normal = 0,
    /// 1: the defense row written by a rollback that found no undo log.
    GlobalFinished = 1,
}

/// The kind of statement an undo item reverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// Undone by deleting the after image's rows.
    Insert,
    /// Undone by writing the before image back.
    Update,
    /// Undone by inserting the before image's rows.
    Delete,
}

impl SqlType {
    /// The Java enum name (`SQLUndoLog.sqlType`).
    pub fn name(self) -> &'static str {
        match self {
            SqlType::Insert => "INSERT",
            SqlType::Update => "UPDATE",
            SqlType::Delete => "DELETE",
        }
    }
}

/// One statement's undo item.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlUndoLog {
    /// The statement kind.
    pub sql_type: SqlType,
    /// The table name as written in the SQL (may carry a schema and back-quotes).
    pub table_name: String,
    /// Rows before the statement (empty for INSERT).
    pub before_image: TableRecords,
    /// Rows after the statement (empty for DELETE).
    pub after_image: TableRecords,
}

/// All undo items of one branch (one local transaction), in execution order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BranchUndoLog {
    /// The global transaction.
    pub xid: String,
    /// The branch.
    pub branch_id: i64,
    /// The statements' undo items.
    pub sql_undo_logs: Vec<SqlUndoLog>,
}
