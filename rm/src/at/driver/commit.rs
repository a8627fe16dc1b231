//! Phase one's commit (at-mode.md 5.1): register the branch with its lock keys, write the
//! undo log and commit, all or nothing; and the local transaction the proxy opens on its own
//! for a statement sent without `begin`.

use mysql_async::prelude::Queryable;
use seata_protocol::BranchStatus;
use tracing::warn;

use super::conn_state::ConnState;
use super::mysql_session::TxStart;
use super::resource::DataSource;
use crate::at::model::local_tx::LocalTx;
use crate::at::model::undo_log::{BranchUndoLog, LogStatus, SqlUndoLog};
use crate::error::RmError;

/// Opens the local transaction of a statement run without `begin`. The
/// first time this turns autocommit off; later ones cost no round trip, as the next
/// statement opens the transaction implicitly.
pub(crate) async fn begin_own(c: &mut ConnState) -> Result<(), RmError> {
    if c.tx.is_some() {
        return Err(RmError::TxState(
            "a local transaction is already open; commit or roll it back first".into(),
        ));
    }
    match c.session.tx_start(&c.conn) {
        TxStart::Implicit => {}
        TxStart::DisableAutocommit => {
            c.conn.query_drop("SET autocommit = 0").await?;
            c.session.autocommit_disabled();
        }
        TxStart::Explicit => c.conn.query_drop("START TRANSACTION").await?,
    }
    c.tx = Some(LocalTx::default());
    Ok(())
}

/// Phase one's commit (at-mode.md 5.1). Consumes the local transaction state.
pub(crate) async fn commit_tx(c: &mut ConnState, tx: LocalTx) -> Result<(), RmError> {
    if let Some(reason) = tx.poisoned {
        c.rollback_quietly().await;
        return Err(RmError::TxState(format!(
            "rolled back instead of committing: {reason}; run the transaction again"
        )));
    }
    let xid = match tx.xid {
        Some(xid) if !tx.undo.is_empty() && !tx.keys.is_empty() => xid,
        // Nothing changed under a global transaction: no branch, no undo log.
        _ => {
            c.conn.query_drop("COMMIT").await?;
            return Ok(());
        }
    };
    let lock_keys = tx.keys.joined();
    let branch_id = match register(&c.ds.inner, &xid, &lock_keys).await {
        Ok(id) => id,
        Err(e) => {
            c.rollback_quietly().await;
            return Err(e);
        }
    };
    flush_and_commit(c, xid, branch_id, tx.undo).await
}

/// Writes the registered branch's undo log and commits (at-mode.md 5.1 steps 3 to 5).
pub(crate) async fn flush_and_commit(
    c: &mut ConnState,
    xid: String,
    branch_id: i64,
    undo: Vec<SqlUndoLog>,
) -> Result<(), RmError> {
    let inner = c.ds.inner.clone();
    let log = BranchUndoLog {
        xid: xid.clone(),
        branch_id,
        sql_undo_logs: undo,
    };
    let bytes = inner.codec.encode(&log);
    let written = inner
        .undo_table
        .insert_and_commit(&mut c.conn, &xid, branch_id, &bytes, LogStatus::Normal)
        .await;
    if let Err(e) = written {
        // E.g. the rollback's defense row is already there: this branch must not commit.
        fail_registered(c, &xid, branch_id).await;
        return Err(RmError::PhaseOneFailed {
            xid,
            branch_id,
            source: Box::new(e),
        });
    }
    if inner.config.report_success {
        report(&inner, &xid, branch_id, BranchStatus::PhaseOneDone).await;
    }
    Ok(())
}

/// The local transaction of a registered branch cannot commit: roll it back and tell the
/// TC (`PhaseOne_Failed`), so phase two skips the branch.
pub(crate) async fn fail_registered(c: &mut ConnState, xid: &str, branch_id: i64) {
    c.rollback_quietly().await;
    report(&c.ds.inner, xid, branch_id, BranchStatus::PhaseOneFailed).await;
}

/// Branch register, retried on lock conflicts only under the keep-local-locks policy.
pub(crate) async fn register(
    inner: &DataSource,
    xid: &str,
    lock_keys: &str,
) -> Result<i64, RmError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match inner
            .tc
            .branch_register(xid, &inner.resource_id, lock_keys, None)
            .await
        {
            Ok(id) => {
                tracing::Span::current().record("branch_id", id);
                return Ok(id);
            }
            Err(e) if e.is_lock_conflict() && !inner.config.rollback_on_conflict => {
                if attempts > inner.config.lock_retry_times {
                    return Err(RmError::LockWaitTimeout {
                        lock_keys: lock_keys.to_string(),
                        attempts,
                    });
                }
                tokio::time::sleep(inner.config.lock_retry_interval).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Branch report with Seata's retry count; failures are only logged because the local
/// outcome is already decided.
pub(crate) async fn report(inner: &DataSource, xid: &str, branch_id: i64, status: BranchStatus) {
    for attempt in 1..=inner.config.report_retry_count.max(1) {
        match inner.tc.branch_report(xid, branch_id, status, None).await {
            Ok(()) => return,
            Err(e) => warn!(error = %e, attempt, xid, branch_id, "branch report failed"),
        }
    }
}
