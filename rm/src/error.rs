//! The RM crate's one error type, [`RmError`], with the classifiers callers branch on
//! ([`RmError::is_lock_conflict`], [`RmError::is_retryable`]).

use seata_protocol::rpc::RpcError;
use seata_protocol::TransactionExceptionCode;
use thiserror::Error;

/// Everything that can go wrong in the RM: SQL recognition, images, undo logs, the TC link.
#[derive(Debug, Error)]
pub enum RmError {
    /// The statement cannot be made part of a global transaction. Nothing was executed.
    #[error("not supported in AT mode: {reason} (SQL: {sql}); docs/at-sql-support.md lists what AT mode accepts; rewrite it or run it outside the global transaction")]
    Unsupported {
        /// The statement as the application sent it.
        sql: String,
        /// Why it was refused.
        reason: String,
    },
    /// The SQL could not be parsed, so the proxy cannot tell what it changes. Nothing was executed.
    #[error("cannot parse SQL inside a global transaction: {message} (SQL: {sql}); fix the statement or run it outside the global transaction")]
    Parse {
        /// The statement as the application sent it.
        sql: String,
        /// The parser's message.
        message: String,
    },
    /// information_schema knows no such table.
    #[error(
        "table `{schema}`.`{table}` not found; check the table name and the connection's database"
    )]
    UnknownTable {
        /// The schema searched.
        schema: String,
        /// The table name as written.
        table: String,
    },
    /// AT mode identifies rows by primary key; this table has none.
    #[error("table `{table}` has no primary key; AT mode needs one to image and lock rows: add a primary key")]
    NoPrimaryKey {
        /// The table.
        table: String,
    },
    /// A value read from or written to MySQL did not fit the column's type.
    #[error("column `{column}`: {reason}")]
    Value {
        /// The column.
        column: String,
        /// What did not fit.
        reason: String,
    },
    /// The database driver failed.
    #[error("MySQL: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// The TC refused the branch's global row locks: another global transaction holds them.
    #[error("global lock conflict for {xid} on {lock_keys}: {message}; the rows are held by another global transaction, retry later")]
    LockConflict {
        /// The requesting global transaction.
        xid: String,
        /// The lock keys asked for.
        lock_keys: String,
        /// The TC's message.
        message: String,
    },
    /// The global locks stayed taken for every retry the policy allows.
    #[error("global lock wait timeout after {attempts} attempts on {lock_keys}; roll back the global transaction and retry later")]
    LockWaitTimeout {
        /// The lock keys that stayed locked.
        lock_keys: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The TC answered a request with a failure.
    #[error("TC refused {operation}: {code:?}: {message}")]
    TcRejected {
        /// The request, e.g. "branch register".
        operation: &'static str,
        /// Seata's exception code.
        code: TransactionExceptionCode,
        /// The TC's message.
        message: String,
    },
    /// The request to the TC did not produce an answer.
    #[error("TC request failed: {0}")]
    Rpc(#[from] RpcError),
    /// The global transaction this statement or call was part of never began (its
    /// GlobalBegin failed); nothing was done under it, and the launcher returns the reason.
    #[error("{0}; nothing was done under it")]
    NotBegun(#[from] seata_tm::context::NotBegun),
    /// Phase one could not finish: the local transaction was rolled back and the branch (if
    /// registered) reported `PhaseOne_Failed`.
    #[error(
        "phase one of branch {branch_id} in {xid} failed and was rolled back locally: {source}"
    )]
    PhaseOneFailed {
        /// The global transaction.
        xid: String,
        /// The branch id (0 when no branch was registered).
        branch_id: i64,
        /// The failure.
        #[source]
        source: Box<RmError>,
    },
    /// An undo log row could not be decoded or does not fit the table any more.
    #[error("undo log of branch {branch_id} in {xid} is unusable: {reason}; repair it by hand, the TC keeps retrying")]
    UndoLogCorrupt {
        /// The global transaction.
        xid: String,
        /// The branch.
        branch_id: i64,
        /// What is wrong.
        reason: String,
    },
    /// Rows changed by this branch were changed again by someone else after phase one, so
    /// undoing would destroy that change. Nothing was undone.
    #[error("dirty write on `{table}` rows {pks:?} (branch {branch_id} in {xid}): rows changed after phase one; reconcile them by hand")]
    DirtyWrite {
        /// The global transaction.
        xid: String,
        /// The branch.
        branch_id: i64,
        /// The table.
        table: String,
        /// Primary keys of the rows that differ (lock-key form).
        pks: Vec<String>,
    },
    /// An image did not match what the statement did (e.g. fewer inserted rows found than
    /// inserted), so the undo log would be wrong. The statement's changes are rolled back.
    #[error("image of `{table}` does not match the statement: {reason}")]
    ImageMismatch {
        /// The table.
        table: String,
        /// What did not match.
        reason: String,
    },
    /// Local transaction misuse, e.g. a second global transaction on an open local one.
    #[error("local transaction: {0}")]
    TxState(String),
    /// Phase two named a resource this RM does not manage.
    #[error("unknown resource `{0}`; register its data source with this AtResourceManager first")]
    UnknownResource(String),
    /// A TCC action's prepare failed (the branch is registered; the TM should roll back).
    #[error("prepare of TCC action `{action}` (branch {branch_id} in {xid}) failed: {source}; roll the global transaction back")]
    TccPrepare {
        /// The global transaction (empty outside one).
        xid: String,
        /// The branch (0 outside a global transaction).
        branch_id: i64,
        /// The action name.
        action: String,
        /// The action's error.
        #[source]
        source: crate::tcc::ActionError,
    },
    /// A TCC action's commit or rollback failed; the TC retries it.
    #[error("phase two of TCC action `{action}` (branch {branch_id} in {xid}) failed: {source}; the TC retries it")]
    TccPhaseTwo {
        /// The global transaction.
        xid: String,
        /// The branch.
        branch_id: i64,
        /// The action name.
        action: String,
        /// The action's error.
        #[source]
        source: crate::tcc::ActionError,
    },
    /// A TCC action's parameters are not a JSON object, or a parameter has another type.
    #[error("TCC action `{action}`: {reason}")]
    TccParams {
        /// The action name.
        action: String,
        /// What did not fit.
        reason: String,
    },
    /// The fence refused a prepare: its branch already has a fence row, written by a rollback
    /// that came first (suspension) or by an earlier prepare. Nothing ran.
    #[error("prepare of TCC action `{action}` (branch {branch_id} in {xid}) refused by the fence: the branch was already rolled back or prepared; roll the global transaction back")]
    FenceRefused {
        /// The global transaction.
        xid: String,
        /// The branch.
        branch_id: i64,
        /// The action name.
        action: String,
    },
    /// A component that needs a tokio runtime was created outside one.
    #[error("no tokio runtime: create the AT resource manager inside a tokio runtime")]
    NoRuntime,
}

/// MySQL error codes that mean "try the same thing again".
const MYSQL_RETRYABLE: [u16; 2] = [
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
];

impl RmError {
    /// True when the TC refused a lock because another global transaction holds it.
    pub fn is_lock_conflict(&self) -> bool {
        match self {
            RmError::LockConflict { .. } => true,
            RmError::TcRejected { code, .. } => *code == TransactionExceptionCode::LockKeyConflict,
            RmError::PhaseOneFailed { source, .. } => source.is_lock_conflict(),
            _ => false,
        }
    }

    /// True when the same operation may succeed later without anything being fixed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RmError::LockConflict { .. } | RmError::LockWaitTimeout { .. } | RmError::Rpc(_) => {
                true
            }
            RmError::TcRejected { code, .. } => matches!(
                code,
                TransactionExceptionCode::LockKeyConflict | TransactionExceptionCode::Io
            ),
            RmError::Mysql(e) => match e {
                mysql_async::Error::Server(s) => MYSQL_RETRYABLE.contains(&s.code),
                mysql_async::Error::Io(_) => true,
                _ => false,
            },
            RmError::PhaseOneFailed { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The MySQL server error code, if this is a server error.
    pub fn mysql_code(&self) -> Option<u16> {
        match self {
            RmError::Mysql(mysql_async::Error::Server(s)) => Some(s.code),
            _ => None,
        }
    }

    pub(crate) fn unsupported(sql: &str, reason: impl Into<String>) -> Self {
        RmError::Unsupported {
            sql: sql.to_string(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_lock_conflicts() {
        let e = RmError::LockConflict {
            xid: "x".into(),
            lock_keys: "t:1".into(),
            message: "held".into(),
        };
        assert!(e.is_lock_conflict());
        assert!(e.is_retryable());
        let wrapped = RmError::PhaseOneFailed {
            xid: "x".into(),
            branch_id: 0,
            source: Box::new(e),
        };
        assert!(wrapped.is_lock_conflict());
        assert!(!RmError::unsupported("x", "y").is_retryable());
    }
}
