//! [`TmError`], the one error type of the TM client, and the reverse of the TC's code mapping:
//! how a response's `ResultCode` / `TransactionExceptionCode` becomes a variant
//! ([`TmError::from_result`]).
//!
//! The distinction callers must respect is [`TmError::is_undetermined`]: the request reached
//! (or may have reached) the TC and no answer came, so the transaction may or may not have been
//! committed or rolled back. Such an error never claims an outcome.

use seata_protocol::rpc::RpcError;
use seata_protocol::{GlobalStatus, TransactionExceptionCode, TxResult};
use thiserror::Error;

use crate::transaction::TxState;

/// What a TM operation was doing when it failed (used in messages and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// GlobalBegin.
    Begin,
    /// GlobalCommit.
    Commit,
    /// GlobalRollback.
    Rollback,
    /// GlobalStatus.
    Status,
    /// GlobalReport.
    Report,
}

impl Op {
    /// The operation's name, as in Seata's message names.
    pub const fn name(self) -> &'static str {
        match self {
            Op::Begin => "begin",
            Op::Commit => "commit",
            Op::Rollback => "rollback",
            Op::Status => "status",
            Op::Report => "report",
        }
    }

    /// True for operations that change the transaction on the TC.
    pub const fn mutates(self) -> bool {
        !matches!(self, Op::Status)
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a TM operation failed.
#[derive(Debug, Error)]
pub enum TmError {
    /// The configuration is invalid; nothing was started.
    #[error("invalid TM config: {field}: {reason}")]
    Config {
        /// The field at fault (its config-file name).
        field: &'static str,
        /// What is accepted.
        reason: String,
    },
    /// No TC accepted a connection and registration in time.
    #[error("cannot reach a TC ({source}); check the TC addresses and that seata-tc is running")]
    Connect {
        /// The RPC layer's error.
        #[source]
        source: RpcError,
    },
    /// The request went out and no answer came (timeout, or the connection died while
    /// waiting): the TC may or may not have carried it out.
    #[error("{op} of {xid}: outcome unknown ({source}); query the status with TmClient::status before acting again")]
    Undetermined {
        /// The operation.
        op: Op,
        /// The XID (empty for a begin: a transaction may have been created, and the TC rolls
        /// it back when its timeout expires).
        xid: String,
        /// The RPC layer's error.
        #[source]
        source: RpcError,
    },
    /// The request failed without reaching the TC (after the retries Seata allows for commit
    /// and rollback), or a status query got no usable answer. Nothing changed on the TC.
    #[error(
        "{op} of {xid} failed: {source}; nothing changed on the TC, retry when a TC is reachable"
    )]
    Rpc {
        /// The operation.
        op: Op,
        /// The XID (empty for a begin).
        xid: String,
        /// The RPC layer's error.
        #[source]
        source: RpcError,
    },
    /// The TC could not start a global transaction.
    #[error("the TC refused to begin a global transaction ({code:?}): {msg}; check the TC log and its store")]
    BeginFailed {
        /// Seata's exception code.
        code: TransactionExceptionCode,
        /// The TC's message.
        msg: String,
    },
    /// The TC does not know the XID (`GlobalTransactionNotExist`).
    #[error("{op} of {xid}: the TC does not know this global transaction; it has finished or never existed")]
    NotFound {
        /// The operation.
        op: Op,
        /// The XID.
        xid: String,
    },
    /// The TC answered `Failed` with another exception code (after the retries Seata allows
    /// for commit and rollback).
    #[error("{op} of {xid} failed on the TC ({code:?}): {msg}; query the status, the TC may still finish it")]
    Tc {
        /// The operation.
        op: Op,
        /// The XID.
        xid: String,
        /// Seata's exception code.
        code: TransactionExceptionCode,
        /// The TC's message.
        msg: String,
    },
    /// A commit found the transaction rolling back or rolled back, typically because it timed
    /// out first (tc-semantics 2.8: Seata 1.2's TM would report success here; we do not).
    #[error("commit of {xid} was refused: the TC rolled it back (status {status:?}); nothing was committed, run the business operation again")]
    RolledBackInstead {
        /// The XID.
        xid: String,
        /// The status the TC returned.
        status: GlobalStatus,
    },
    /// A commit ended in `CommitFailed`: a branch could not commit and will not be retried.
    #[error("commit of {xid} failed on a branch (status {status:?}); data may be partly committed, this needs manual repair")]
    CommitFailed {
        /// The XID.
        xid: String,
        /// The status the TC returned.
        status: GlobalStatus,
    },
    /// A rollback ended in `RollbackFailed`/`TimeoutRollbackFailed`: a branch could not be
    /// restored and will not be retried.
    #[error("rollback of {xid} failed on a branch (status {status:?}); data may not be restored, this needs manual repair")]
    RollbackFailed {
        /// The XID.
        xid: String,
        /// The status the TC returned.
        status: GlobalStatus,
    },
    /// A rollback found the transaction already committing or committed.
    #[error("rollback of {xid} was refused: the TC is committing it (status {status:?}); it will not be rolled back")]
    CommittedInstead {
        /// The XID.
        xid: String,
        /// The status the TC returned.
        status: GlobalStatus,
    },
    /// The TC no longer knew the transaction when the commit arrived (`Finished` on the first
    /// attempt): it ended before, most likely rolled back by its timeout.
    #[error("commit of {xid}: the TC had already finished this transaction, most likely rolled back by timeout; treat it as not committed and check the data")]
    AlreadyFinished {
        /// The XID.
        xid: String,
    },
    /// The TC answered with a status that makes no sense for the request.
    #[error("{op} of {xid}: the TC answered with status {status:?}, which this request cannot produce; check the TC version")]
    UnexpectedStatus {
        /// The operation.
        op: Op,
        /// The XID.
        xid: String,
        /// The status the TC returned.
        status: GlobalStatus,
    },
    /// The operation is not allowed in the transaction's local state (e.g. commit after a
    /// finished rollback).
    #[error("cannot {op} {xid}: the transaction is {state:?} here; begin a new one")]
    InvalidState {
        /// The operation.
        op: Op,
        /// The XID.
        xid: String,
        /// Its local state.
        state: TxState,
    },
    /// Propagation `Never` found a global transaction bound to the task.
    #[error(
        "a global transaction ({xid}) is bound but the propagation is Never; run this outside it"
    )]
    ExistingTransaction {
        /// The bound XID.
        xid: String,
    },
    /// Propagation `Mandatory` found no global transaction bound to the task.
    #[error(
        "no global transaction is bound but the propagation is Mandatory; call this inside one"
    )]
    NoTransaction,
    /// A bad argument (e.g. a zero transaction timeout).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl TmError {
    /// True when the TC may have carried out the request although no answer came. The
    /// transaction's outcome is then unknown: query it with `status` instead of assuming.
    pub fn is_undetermined(&self) -> bool {
        matches!(self, TmError::Undetermined { .. })
    }

    /// True when the TC certainly did not act on the request, so sending it again is safe.
    pub fn is_not_sent(&self) -> bool {
        matches!(self, TmError::Rpc { source, .. } if source.is_not_sent())
            || matches!(self, TmError::Connect { .. })
    }

    /// True when the transaction is known to be (or to end) rolled back.
    pub fn is_rolled_back(&self) -> bool {
        matches!(self, TmError::RolledBackInstead { .. })
    }

    /// True when a branch failed for good and a person must repair the data.
    pub fn needs_manual_repair(&self) -> bool {
        matches!(
            self,
            TmError::CommitFailed { .. } | TmError::RollbackFailed { .. }
        )
    }

    /// Seata's exception code when the TC answered `Failed`.
    pub fn exception_code(&self) -> Option<TransactionExceptionCode> {
        match self {
            TmError::BeginFailed { code, .. } | TmError::Tc { code, .. } => Some(*code),
            TmError::NotFound { .. } => Some(TransactionExceptionCode::GlobalTransactionNotExist),
            _ => None,
        }
    }

    /// The reverse of the TC's mapping: `Ok` for a `Success` result, otherwise the variant for
    /// the response's `TransactionExceptionCode`.
    pub fn from_result(op: Op, xid: &str, result: &TxResult) -> Result<(), TmError> {
        if result.is_success() {
            return Ok(());
        }
        let code = result.transaction_exception_code;
        Err(match (op, code) {
            (Op::Begin, code) => TmError::BeginFailed {
                code,
                msg: result.msg.clone(),
            },
            (op, TransactionExceptionCode::GlobalTransactionNotExist) => TmError::NotFound {
                op,
                xid: xid.to_owned(),
            },
            (op, code) => TmError::Tc {
                op,
                xid: xid.to_owned(),
                code,
                msg: result.msg.clone(),
            },
        })
    }

    /// Wraps an RPC error. For requests that change the TC's state, anything but a proven
    /// "not sent" becomes [`TmError::Undetermined`] (a wrong-typed answer also means the TC
    /// saw the request); everything else becomes [`TmError::Rpc`].
    pub fn from_rpc(op: Op, xid: &str, source: RpcError) -> TmError {
        let xid = xid.to_owned();
        if op.mutates() && !source.is_not_sent() {
            TmError::Undetermined { op, xid, source }
        } else {
            TmError::Rpc { op, xid, source }
        }
    }

    /// True for a `Failed` answer from the TC, which Seata's TM retries for commit and
    /// rollback (the TC returns the current status to a repeated request, so it is safe).
    pub(crate) fn is_failed_response(&self) -> bool {
        matches!(self, TmError::Tc { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_maps_to_ok() {
        assert!(TmError::from_result(Op::Commit, "x", &TxResult::success()).is_ok());
    }

    #[test]
    fn not_exist_maps_to_not_found() {
        let r = TxResult::failed(TransactionExceptionCode::GlobalTransactionNotExist, "gone");
        let e = TmError::from_result(Op::Status, "x:1", &r).unwrap_err();
        assert!(matches!(e, TmError::NotFound { op: Op::Status, .. }), "{e}");
        assert_eq!(
            e.exception_code(),
            Some(TransactionExceptionCode::GlobalTransactionNotExist)
        );
    }

    #[test]
    fn failed_begin_keeps_code_and_message() {
        let r = TxResult::failed(TransactionExceptionCode::FailedWriteSession, "disk full");
        let e = TmError::from_result(Op::Begin, "", &r).unwrap_err();
        assert!(matches!(
            &e,
            TmError::BeginFailed { code: TransactionExceptionCode::FailedWriteSession, msg } if msg == "disk full"
        ));
        assert!(e.to_string().contains("disk full"));
    }

    #[test]
    fn outcome_unknown_only_for_mutating_requests() {
        let lost = || RpcError::ConnectionLost { peer: "tc".into() };
        assert!(TmError::from_rpc(Op::Commit, "x", lost()).is_undetermined());
        assert!(!TmError::from_rpc(Op::Status, "x", lost()).is_undetermined());
        let not_sent = TmError::from_rpc(Op::Commit, "x", RpcError::NotSent { peer: "tc".into() });
        assert!(!not_sent.is_undetermined());
        assert!(not_sent.is_not_sent());
        let odd = RpcError::UnexpectedResponse {
            sent: "GlobalCommitRequest",
            got: "GlobalStatusResponse",
        };
        assert!(TmError::from_rpc(Op::Commit, "x", odd).is_undetermined());
    }
}
