//! [`TcError`]: every way a coordinator request can fail, and the one mapping to Seata's
//! `(ResultCode, TransactionExceptionCode)` response header ([`TcError::to_result`]).

use seata_protocol::{GlobalStatus, TransactionExceptionCode, TxResult};
use thiserror::Error;

use crate::lock::{LockError, LockKeyError};
use crate::session::state::Event;
use crate::store::StoreError;

/// A failed coordinator operation.
#[derive(Debug, Error)]
pub enum TcError {
    /// The XID does not end in `:<transaction id>`.
    #[error("xid {xid:?} is not `ip:port:transactionId`; pass the xid returned by GlobalBegin")]
    InvalidXid {
        /// The XID as received.
        xid: String,
    },
    /// No session with this XID: never begun here, or already finished.
    #[error("global transaction {xid} does not exist (it may have finished); begin a new one")]
    GlobalNotExist {
        /// The XID asked for.
        xid: String,
    },
    /// The session no longer accepts branches: commit, rollback or timeout has started.
    #[error("global transaction {xid} is no longer active (status {status}); branch register rejected, roll back the local transaction")]
    GlobalNotActive {
        /// The XID.
        xid: String,
        /// Its status now.
        status: GlobalStatus,
    },
    /// The session exists but its status does not allow the operation.
    #[error("global transaction {xid} is {status}; {operation} is only allowed in Begin")]
    GlobalStatusInvalid {
        /// The XID.
        xid: String,
        /// Its status now.
        status: GlobalStatus,
        /// What was attempted.
        operation: &'static str,
    },
    /// The branch id is not part of the session.
    #[error("branch {branch_id} of {xid} does not exist (it may have finished phase two)")]
    BranchNotExist {
        /// The XID.
        xid: String,
        /// The branch asked for.
        branch_id: i64,
    },
    /// A row of the branch's lock key is held by another global transaction.
    #[error("branch register for {xid} rejected: lock conflict on {table}:{pk} held by {holder_xid}; retry later")]
    LockConflict {
        /// The XID that asked.
        xid: String,
        /// Table of the contended row.
        table: String,
        /// Primary key of the contended row.
        pk: String,
        /// XID (or transaction id) of the holder.
        holder_xid: String,
    },
    /// The lock key does not parse.
    #[error("branch register for {xid} rejected: {source}")]
    MalformedLockKey {
        /// The XID.
        xid: String,
        /// What is wrong.
        source: LockKeyError,
    },
    /// The lock store failed (shared-database locks).
    #[error("lock store failed for {xid}: {source}; retry later")]
    LockStore {
        /// The XID.
        xid: String,
        /// The store's error.
        source: StoreError,
    },
    /// The session store failed while recording `op`; the change was not made.
    #[error("could not record {op} for {xid}: {source}; retry later")]
    Store {
        /// What was being recorded.
        op: StoreOp,
        /// The XID (empty at begin before one exists, or at recovery).
        xid: String,
        /// The store's error.
        source: StoreError,
    },
    /// A socket or file operation of the server failed.
    #[error("I/O failed: {0}; check the listen address, file descriptors and disk")]
    Io(#[source] std::io::Error),
    /// A state transition that the lifecycle forbids (a coordinator bug or a corrupt store).
    #[error("global transaction {xid}: {event:?} is not allowed in status {from}")]
    IllegalTransition {
        /// The XID.
        xid: String,
        /// Status before.
        from: GlobalStatus,
        /// What happened.
        event: Event,
    },
}

/// Which store write failed; decides the exception code Seata would send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Recording a new global transaction.
    AddGlobal,
    /// Recording a new branch.
    AddBranch,
    /// Recording a branch report.
    UpdateBranch,
    /// Recording a global status change or removal.
    WriteGlobal,
    /// Reading sessions back (start-up or shared-store lookup).
    Read,
}

impl std::fmt::Display for StoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreOp::AddGlobal => "global begin",
            StoreOp::AddBranch => "branch register",
            StoreOp::UpdateBranch => "branch report",
            StoreOp::WriteGlobal => "global status",
            StoreOp::Read => "session read",
        })
    }
}

impl TcError {
    /// Seata's exception code for this error.
    pub fn code(&self) -> TransactionExceptionCode {
        use TransactionExceptionCode as C;
        match self {
            TcError::InvalidXid { .. } | TcError::GlobalNotExist { .. } => {
                C::GlobalTransactionNotExist
            }
            TcError::GlobalNotActive { .. } => C::GlobalTransactionNotActive,
            TcError::GlobalStatusInvalid { .. } | TcError::IllegalTransition { .. } => {
                C::GlobalTransactionStatusInvalid
            }
            TcError::BranchNotExist { .. } => C::BranchTransactionNotExist,
            TcError::LockConflict { .. } => C::LockKeyConflict,
            TcError::MalformedLockKey { .. } => C::BranchRegisterFailed,
            TcError::LockStore { .. } => C::FailedStore,
            TcError::Io(_) => C::Io,
            TcError::Store { op, .. } => match op {
                StoreOp::AddGlobal => C::BeginFailed,
                StoreOp::AddBranch => C::FailedToAddBranch,
                StoreOp::UpdateBranch => C::BranchReportFailed,
                StoreOp::WriteGlobal => C::FailedWriteSession,
                StoreOp::Read => C::FailedStore,
            },
        }
    }

    /// The response header for this error: Failed, the code, and Seata's
    /// `TransactionException[<message>]` text.
    pub fn to_result(&self) -> TxResult {
        TxResult::failed(self.code(), format!("TransactionException[{self}]"))
    }

    /// Wraps an I/O error of the server (accept, bind, local address).
    pub fn io(e: std::io::Error) -> Self {
        TcError::Io(e)
    }

    /// True for a lock conflict: the RM should back off and retry the register.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self, TcError::LockConflict { .. })
    }

    /// Builds the error for a failed lock acquisition.
    pub(crate) fn from_lock(
        xid: &str,
        e: LockError,
        holder_xid: impl FnOnce(i64) -> String,
    ) -> Self {
        match e {
            LockError::Conflict {
                table,
                pk,
                holder_transaction_id,
                ..
            } => TcError::LockConflict {
                xid: xid.to_owned(),
                table,
                pk,
                holder_xid: holder_xid(holder_transaction_id),
            },
            LockError::Malformed(source) => TcError::MalformedLockKey {
                xid: xid.to_owned(),
                source,
            },
            LockError::Store(source) => TcError::LockStore {
                xid: xid.to_owned(),
                source,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seata_protocol::ResultCode;

    #[test]
    fn lock_conflict_maps_to_seata_code_and_message() {
        let e = TcError::LockConflict {
            xid: "1.2.3.4:8091:7".into(),
            table: "t".into(),
            pk: "1".into(),
            holder_xid: "1.2.3.4:8091:5".into(),
        };
        let r = e.to_result();
        assert_eq!(r.result_code, ResultCode::Failed);
        assert_eq!(
            r.transaction_exception_code,
            TransactionExceptionCode::LockKeyConflict
        );
        assert!(r
            .msg
            .starts_with("TransactionException[branch register for 1.2.3.4:8091:7"));
        assert!(r.msg.contains("held by 1.2.3.4:8091:5; retry later"));
        assert!(r.msg.ends_with(']'));
        assert!(e.is_lock_conflict());
    }

    #[test]
    fn store_failures_map_by_operation() {
        let e = |op| TcError::Store {
            op,
            xid: String::new(),
            source: StoreError::Backend("down".into()),
        };
        assert_eq!(
            e(StoreOp::AddGlobal).code(),
            TransactionExceptionCode::BeginFailed
        );
        assert_eq!(
            e(StoreOp::AddBranch).code(),
            TransactionExceptionCode::FailedToAddBranch
        );
        assert_eq!(
            e(StoreOp::WriteGlobal).code(),
            TransactionExceptionCode::FailedWriteSession
        );
    }
}
