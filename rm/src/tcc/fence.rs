//! The TCC fence of Seata 1.5 (tcc-xa-saga.md §2.1): a `tcc_fence_log` row per branch, written
//! in the same MySQL local transaction as the action's business SQL, makes phase two idempotent,
//! turns a rollback without a prior prepare into a no-op ("null rollback") and refuses a
//! prepare that arrives after its rollback ("suspension", anti-hanging).
//!
//! | operation | fence row before | what happens |
//! |---|---|---|
//! | prepare | none | insert `Tried`, run prepare, commit both |
//! | prepare | any (a rollback came first, or a repeat) | refused, nothing runs |
//! | commit | `Tried` | `Tried → Committed`, run commit, commit both |
//! | commit | `Committed` | done, commit does not run again |
//! | commit | none / `Rollbacked` / `Suspended` | retryable failure (Seata's answer) |
//! | rollback | `Tried` | `Tried → Rollbacked`, run rollback, commit both |
//! | rollback | `Rollbacked` / `Suspended` | done, rollback does not run again |
//! | rollback | none | insert `Suspended`, done without running rollback |
//! | rollback | `Committed` | retryable failure (Seata's answer) |
//!
//! Unlike Seata, a refused prepare keeps the row that refused it (Seata queues it for deletion,
//! which would let a third prepare through); the age-based cleanup removes it.
//!
//! This module owns the table and its SQL; the dispatch of the phases is in `tcc/mod.rs`.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use tracing::{debug, warn};

use crate::error::RmError;

/// The fence table's DDL for MySQL/MariaDB (`tcc_fence_log`, Seata 1.5's layout). Also shipped
/// as `sql/tcc_fence_log.sql` in this crate.
pub const TCC_FENCE_LOG_DDL: &str = include_str!("../../sql/tcc_fence_log.sql");

/// The default table name (Seata's `seata.tcc.fence.log-table-name`).
pub const DEFAULT_FENCE_TABLE: &str = "tcc_fence_log";

/// MySQL's duplicate-key error.
const ER_DUP_ENTRY: u16 = 1062;

/// The status column of a fence row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceStatus {
    /// Prepare ran (1).
    Tried,
    /// Commit ran (2).
    Committed,
    /// Rollback ran (3).
    Rollbacked,
    /// A rollback came before any prepare (4): a later prepare is refused.
    Suspended,
}

impl FenceStatus {
    fn code(self) -> i64 {
        match self {
            FenceStatus::Tried => 1,
            FenceStatus::Committed => 2,
            FenceStatus::Rollbacked => 3,
            FenceStatus::Suspended => 4,
        }
    }

    fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => FenceStatus::Tried,
            2 => FenceStatus::Committed,
            3 => FenceStatus::Rollbacked,
            4 => FenceStatus::Suspended,
            _ => return None,
        })
    }
}

/// A fence over one MySQL database: the pool the fenced actions' business SQL runs on and the
/// fence table in that database. Cheap to clone; one fence may serve many actions.
#[derive(Debug, Clone)]
pub struct TccFence {
    pool: Pool,
    table: String,
}

impl TccFence {
    /// A fence on `pool`'s database, table `tcc_fence_log`.
    pub fn new(pool: Pool) -> Self {
        TccFence {
            pool,
            table: DEFAULT_FENCE_TABLE.into(),
        }
    }

    /// A fence with another table name (letters, digits and `_` only, as it is written into
    /// the SQL as an identifier).
    pub fn with_table(pool: Pool, table: &str) -> Result<Self, RmError> {
        let valid = !table.is_empty()
            && table.len() <= 64
            && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(RmError::TxState(format!(
                "fence table name `{table}` is not a plain identifier; use letters, digits and _"
            )));
        }
        Ok(TccFence {
            pool,
            table: table.into(),
        })
    }

    /// The pool whose connections the fenced actions get.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Creates the fence table if it does not exist.
    pub async fn create_table(&self) -> Result<(), RmError> {
        let ddl = TCC_FENCE_LOG_DDL.replace("`tcc_fence_log`", &format!("`{}`", self.table));
        let mut conn = self.pool.get_conn().await?;
        conn.query_drop(ddl).await?;
        Ok(())
    }

    /// The fence row's status, if there is one (for diagnostics and tests).
    pub async fn status(&self, xid: &str, branch_id: i64) -> Result<Option<FenceStatus>, RmError> {
        let mut conn = self.pool.get_conn().await?;
        let sql = format!(
            "SELECT status FROM `{}` WHERE xid = ? AND branch_id = ?",
            self.table
        );
        let code: Option<i64> = conn.exec_first(sql, (xid, branch_id)).await?;
        Ok(code.and_then(FenceStatus::from_code))
    }

    /// Deletes finished rows (committed, rollbacked, suspended) last changed more than `age`
    /// ago; `Tried` rows are kept as their branch is still undecided. Returns the count.
    pub async fn delete_older_than(&self, age: Duration) -> Result<u64, RmError> {
        let mut conn = self.pool.get_conn().await?;
        let sql = format!(
            "DELETE FROM `{}` WHERE gmt_modified < NOW(3) - INTERVAL ? SECOND AND status IN (2, 3, 4)",
            self.table
        );
        conn.exec_drop(sql, (age.as_secs(),)).await?;
        Ok(conn.affected_rows())
    }

    /// Starts a task that runs [`delete_older_than`](Self::delete_older_than)`(age)` every
    /// `period` (Seata: `seata.tcc.fence.clean-period`, default one day for `age`). The task
    /// stops when the returned guard is dropped.
    pub fn spawn_cleaner(&self, period: Duration, age: Duration) -> Result<FenceCleaner, RmError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| RmError::NoRuntime)?;
        let fence = self.clone();
        let task = handle.spawn(async move {
            let mut tick = tokio::time::interval(period.max(Duration::from_millis(1)));
            loop {
                tick.tick().await;
                match fence.delete_older_than(age).await {
                    Ok(n) => debug!(deleted = n, table = %fence.table, "fence rows cleaned"),
                    Err(e) => warn!(error = %e, table = %fence.table, "fence cleanup failed"),
                }
            }
        });
        Ok(FenceCleaner { task })
    }

    /// A connection with a local transaction open, for one fenced phase.
    pub(crate) async fn begin(&self) -> Result<Conn, RmError> {
        let mut conn = self.pool.get_conn().await?;
        conn.query_drop("START TRANSACTION").await?;
        Ok(conn)
    }

    /// Inserts the row in `status`. `Ok(false)` when a row for the branch already exists.
    pub(crate) async fn insert(
        &self,
        conn: &mut Conn,
        xid: &str,
        branch_id: i64,
        action: &str,
        status: FenceStatus,
    ) -> Result<bool, RmError> {
        let sql = format!(
            "INSERT INTO `{}` (xid, branch_id, action_name, status, gmt_create, gmt_modified) \
             VALUES (?, ?, ?, ?, NOW(3), NOW(3))",
            self.table
        );
        match conn
            .exec_drop(sql, (xid, branch_id, action, status.code()))
            .await
        {
            Ok(()) => Ok(true),
            Err(mysql_async::Error::Server(e)) if e.code == ER_DUP_ENTRY => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the row and locks it until the local transaction ends. An unknown status code is
    /// an error (someone else wrote the table).
    pub(crate) async fn lock(
        &self,
        conn: &mut Conn,
        xid: &str,
        branch_id: i64,
    ) -> Result<Option<FenceStatus>, RmError> {
        let sql = format!(
            "SELECT status FROM `{}` WHERE xid = ? AND branch_id = ? FOR UPDATE",
            self.table
        );
        let code: Option<i64> = conn.exec_first(sql, (xid, branch_id)).await?;
        match code {
            None => Ok(None),
            Some(c) => FenceStatus::from_code(c).map(Some).ok_or_else(|| {
                RmError::TxState(format!(
                    "fence row of branch {branch_id} in {xid} has unknown status {c}; fix it by hand"
                ))
            }),
        }
    }

    /// `Tried → to`; `Ok(false)` when the row was not `Tried` any more.
    pub(crate) async fn finish(
        &self,
        conn: &mut Conn,
        xid: &str,
        branch_id: i64,
        to: FenceStatus,
    ) -> Result<bool, RmError> {
        let sql = format!(
            "UPDATE `{}` SET status = ?, gmt_modified = NOW(3) \
             WHERE xid = ? AND branch_id = ? AND status = ?",
            self.table
        );
        conn.exec_drop(sql, (to.code(), xid, branch_id, FenceStatus::Tried.code()))
            .await?;
        Ok(conn.affected_rows() == 1)
    }
}

/// Ends the local transaction of a fenced phase: commit when `ok`, else roll back. A failed
/// rollback only loses what was not committed anyway, so it is logged.
pub(crate) async fn end_local(mut conn: Conn, ok: bool) -> Result<(), RmError> {
    if ok {
        conn.query_drop("COMMIT").await?;
    } else if let Err(e) = conn.query_drop("ROLLBACK").await {
        warn!(error = %e, "fence local rollback failed; the session is reset by the pool");
    }
    Ok(())
}

/// The periodic fence cleanup started by [`TccFence::spawn_cleaner`]; dropping it stops it.
#[derive(Debug)]
pub struct FenceCleaner {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FenceCleaner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_seatas() {
        for s in [
            FenceStatus::Tried,
            FenceStatus::Committed,
            FenceStatus::Rollbacked,
            FenceStatus::Suspended,
        ] {
            assert_eq!(FenceStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(FenceStatus::Suspended.code(), 4);
        assert_eq!(FenceStatus::from_code(0), None);
    }

    #[test]
    fn ddl_has_seatas_columns_and_keys() {
        for part in [
            "`xid`          VARCHAR(128) NOT NULL",
            "`branch_id`    BIGINT       NOT NULL",
            "PRIMARY KEY (`xid`, `branch_id`)",
            "KEY `idx_gmt_modified` (`gmt_modified`)",
            "KEY `idx_status` (`status`)",
        ] {
            assert!(TCC_FENCE_LOG_DDL.contains(part), "{part}");
        }
    }

    #[tokio::test]
    async fn table_names_must_be_identifiers() {
        let pool = || Pool::new("mysql://root@127.0.0.1:1/x");
        assert!(TccFence::with_table(pool(), "my_fence").is_ok());
        assert!(TccFence::with_table(pool(), "x`; DROP").is_err());
        assert!(TccFence::with_table(pool(), "").is_err());
    }
}
