//! The barrier on MySQL/MariaDB through `mysql_async` (spec §8.2, §8.4): `INSERT IGNORE` of the
//! barrier rows first, then the business in the same local transaction.
//!
//! Inserting first (rather than `SELECT … FOR UPDATE` then insert) matters: the unique key
//! (gid, branch_id, op, barrier_id) decides, so a concurrent call of the same branch waits on
//! the first one's row lock and then sees "duplicate" — and no gap lock is taken under
//! REPEATABLE READ, so different branches never block each other.

use std::time::Duration;

use futures::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Transaction, TxOpts};

use super::{
    decide, origin_op, BarrierOutcome, BarrierTable, BranchBarrier, Decision, MSG_BARRIER_ID,
    MSG_BRANCH_ID, REASON_ROLLBACK,
};
use crate::branch::{op, BranchError};

impl BranchBarrier {
    /// Runs `busi` behind the barrier in the caller's local transaction `tx` (§8.2), and
    /// commits it — or rolls it back if `busi` (or the barrier) fails, which removes the barrier
    /// rows too, so the server's retry runs the business again.
    ///
    /// `busi` gets the transaction and returns a boxed future (`|tx| Box::pin(async move {
    /// .. })`): the borrow of `tx` must be tied to the future, which a plain closure cannot say.
    pub async fn call<'c, T, F>(
        &self,
        mut tx: Transaction<'c>,
        busi: F,
    ) -> Result<BarrierOutcome<T>, BranchError>
    where
        F: for<'t> FnOnce(&'t mut Transaction<'c>) -> BoxFuture<'t, Result<T, BranchError>>,
    {
        let decision = match self.insert_rows(&mut tx).await {
            Ok(d) => d,
            Err(e) => {
                rollback_quietly(tx).await;
                return Err(e);
            }
        };
        let outcome = match decision {
            Decision::Run => match busi(&mut tx).await {
                Ok(v) => BarrierOutcome::Ran(v),
                Err(e) => {
                    rollback_quietly(tx).await;
                    return Err(e);
                }
            },
            Decision::NullCompensation => BarrierOutcome::NullCompensation,
            Decision::Duplicate => BarrierOutcome::DuplicateOrHanging,
        };
        // The skipped cases commit too: a null compensation's insert of the first-phase row is
        // what refuses the late first phase.
        tx.commit().await?;
        tracing::debug!(
            gid = %self.params.gid,
            branch_id = %self.params.branch_id,
            op = %self.params.op,
            ran = matches!(outcome, BarrierOutcome::Ran(_)),
            "barrier call done"
        );
        Ok(outcome)
    }

    /// [`call`](BranchBarrier::call) in a new transaction from `pool` (default isolation).
    pub async fn call_with_pool<T, F>(
        &self,
        pool: &Pool,
        busi: F,
    ) -> Result<BarrierOutcome<T>, BranchError>
    where
        F: for<'t> FnOnce(&'t mut Transaction<'static>) -> BoxFuture<'t, Result<T, BranchError>>,
    {
        let tx = pool.start_transaction(TxOpts::default()).await?;
        self.call(tx, busi).await
    }

    /// Steps 2–4 of §8.2: insert the origin row (if the op has one) and the op's own row.
    async fn insert_rows(&self, tx: &mut Transaction<'_>) -> Result<Decision, BranchError> {
        let barrier_id = self.next_barrier_id()?;
        let p = &self.params;
        let origin_affected = match origin_op(&p.op) {
            Some(origin) => {
                Some(insert_barrier(tx, &self.table, p, origin, &barrier_id, &p.op).await?)
            }
            None => None,
        };
        let current = insert_barrier(tx, &self.table, p, &p.op, &barrier_id, &p.op).await?;
        Ok(decide(origin_affected, current))
    }

    /// The answer of a msg's queryPrepared handler (§8.4) for the gid of this barrier: `Ok` if
    /// the producer's local transaction committed; [`BranchError::Failure`] if it did not — and
    /// now never can, because the row this inserts makes its barrier insert collide. While the
    /// local transaction is still running this waits for it (on the row lock).
    pub async fn query_prepared(&self, pool: &Pool) -> Result<(), BranchError> {
        query_prepared(pool, &self.table, &self.params.gid).await
    }
}

/// [`BranchBarrier::query_prepared`] for `gid` on `table`, for handlers that hold no barrier.
pub async fn query_prepared(
    pool: &Pool,
    table: &BarrierTable,
    gid: &str,
) -> Result<(), BranchError> {
    let mut conn = pool.get_conn().await?;
    let insert = format!(
        "INSERT IGNORE INTO {} (trans_type, gid, branch_id, op, barrier_id, reason) \
         VALUES ('msg', ?, ?, ?, ?, ?)",
        table.quoted()
    );
    conn.exec_drop(
        insert,
        (gid, MSG_BRANCH_ID, op::MSG, MSG_BARRIER_ID, REASON_ROLLBACK),
    )
    .await?;
    let select = format!(
        "SELECT reason FROM {} WHERE gid = ? AND branch_id = ? AND op = ? AND barrier_id = ?",
        table.quoted()
    );
    let reason: Option<String> = conn
        .exec_first(select, (gid, MSG_BRANCH_ID, op::MSG, MSG_BARRIER_ID))
        .await?;
    match reason.as_deref() {
        Some(REASON_ROLLBACK) => Err(BranchError::failure(format!(
            "the local transaction of msg {gid} did not commit"
        ))),
        Some(_) => Ok(()),
        // The row was just inserted or found; its absence means someone deleted it meanwhile.
        None => Err(BranchError::internal(format!(
            "no producer barrier row for msg {gid} after inserting one; retry"
        ))),
    }
}

/// Deletes barrier rows created more than `older_than` ago, `batch` rows per statement (each
/// its own short transaction, so the table is never locked for long), until none is left.
/// Returns how many were deleted.
///
/// Choose `older_than` well beyond the longest a transaction can stay unfinished on the server
/// (its timeout plus the whole retry schedule): a row deleted while its transaction can still
/// call the branch no longer protects against a duplicate or a hanging first phase.
pub async fn cleanup_barriers(
    pool: &Pool,
    table: &BarrierTable,
    older_than: Duration,
    batch: u32,
) -> Result<u64, mysql_async::Error> {
    let batch = batch.max(1);
    let seconds = older_than.as_secs();
    let delete = format!(
        "DELETE FROM {} WHERE create_time < NOW() - INTERVAL ? SECOND LIMIT ?",
        table.quoted()
    );
    let mut conn = pool.get_conn().await?;
    let mut total = 0u64;
    loop {
        conn.exec_drop(delete.as_str(), (seconds, batch)).await?;
        let n = conn.affected_rows();
        total += n;
        if n < u64::from(batch) {
            return Ok(total);
        }
    }
}

/// `INSERT IGNORE` of one barrier row; the number of rows it inserted (0 = it was there).
async fn insert_barrier(
    tx: &mut Transaction<'_>,
    table: &BarrierTable,
    p: &crate::branch::BranchParams,
    op: &str,
    barrier_id: &str,
    reason: &str,
) -> Result<u64, BranchError> {
    let sql = format!(
        "INSERT IGNORE INTO {} (trans_type, gid, branch_id, op, barrier_id, reason) \
         VALUES (?, ?, ?, ?, ?, ?)",
        table.quoted()
    );
    tx.exec_drop(
        sql,
        (&p.trans_type, &p.gid, &p.branch_id, op, barrier_id, reason),
    )
    .await?;
    Ok(tx.affected_rows())
}

/// A rollback whose own failure changes nothing: the connection is reset before reuse anyway.
async fn rollback_quietly(tx: Transaction<'_>) {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "barrier: rollback failed; the connection discards the transaction");
    }
}
