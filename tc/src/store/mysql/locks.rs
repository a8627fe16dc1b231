//! Row locks in Seata's `lock_table`, decided by the database so several TCs agree.
//!
//! Seata 1.2 checks which rows exist and then inserts the others, so two TCs can both see a
//! row free and both believe they hold it. Here the primary key `row_key` decides: the rows
//! are inserted with a plain multi-row `INSERT` inside the caller's transaction; a duplicate
//! fails the statement, a locking read then finds who holds the duplicates, rows of the same
//! xid are accepted (re-entrant) and the rest retried, and a row of another transaction
//! refuses the register. Each insert is one statement, atomic on its own, so a refused
//! register has inserted nothing and the caller's DB transaction can go on with other units
//! (all-or-nothing per register; `batch.rs` first tries the rows of every register of a
//! batch in one statement, and falls back to this per register on a duplicate). InnoDB makes
//! a second inserter of the same key wait for the first one's outcome, so exactly one of two
//! concurrent registers wins.

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Row, TxOpts, Value};

use super::rows::{lock_rows, placeholders, repeat_row, LockRow};
use super::{db, is_lock_contention, server_code, StepError};
use crate::lock::{boxed, LockError, LockFuture, LockManager, LockOwner};
use crate::store::StoreError;

/// MySQL's ER_DUP_ENTRY.
pub(super) const DUPLICATE_KEY: u16 = 1062;
/// Rounds of insert → find holders → insert the rest before giving up as a conflict; more
/// than one is needed only when a holder released rows between our statements.
const INSERT_ROUNDS: usize = 3;

/// [`LockManager`] over `lock_table`.
#[derive(Debug, Clone)]
pub struct MysqlLockManager {
    pool: Pool,
}

impl MysqlLockManager {
    pub(super) fn new(pool: Pool) -> Self {
        MysqlLockManager { pool }
    }
}

/// Inserts `rows` for `owner` inside `tx`. `Ok(Err(_))`: a row is held by another
/// transaction; nothing of `rows` was inserted (every insert is one statement, atomic on its
/// own), so the caller may go on with other work in the same DB transaction. `Err(_)`: the
/// statement failed; a deadlock or lock wait timeout ([`is_lock_contention`]) is passed up
/// unchanged so a group commit can retry its batch, and a single register can call it a
/// conflict.
pub(super) async fn insert_locks<Q: Queryable>(
    tx: &mut Q,
    owner: LockOwner,
    xid: &str,
    resource_id: &str,
    rows: &[LockRow],
) -> Result<Result<(), LockError>, StepError> {
    let mut pending: Vec<&LockRow> = rows.iter().collect();
    for _ in 0..INSERT_ROUNDS {
        let sql = format!("{INSERT_LOCKS}{}", repeat_row(pending.len(), LOCK_VALUES));
        let mut params: Vec<Value> = Vec::with_capacity(pending.len() * 7);
        for r in &pending {
            push_lock_params(&mut params, r, xid, owner, resource_id);
        }
        match tx.exec_drop(sql, params).await {
            Ok(()) => return Ok(Ok(())),
            Err(e) if server_code(&e) == Some(DUPLICATE_KEY) => {}
            Err(e) => return Err(e.into()),
        }
        // A locking read sees the newest committed rows and waits for in-flight inserters.
        let sql = format!(
            "SELECT row_key, xid, transaction_id FROM lock_table FORCE INDEX (PRIMARY) \
             WHERE row_key IN ({}) FOR UPDATE",
            placeholders(pending.len())
        );
        let keys: Vec<Value> = pending
            .iter()
            .map(|r| Value::from(r.row_key.as_str()))
            .collect();
        let held: Vec<Row> = tx.exec(sql, keys).await?;
        let mut mine = Vec::with_capacity(held.len());
        for row in held {
            let (key, holder_xid, holder_tid): (String, Option<String>, Option<i64>) =
                mysql_async::from_row_opt(row)
                    .map_err(|e| StoreError::Corrupt(format!("lock_table row: {e}")))?;
            if holder_xid.as_deref() != Some(xid) {
                let row = pending.iter().copied().find(|r| r.row_key == key);
                return Ok(Err(conflict(resource_id, row, holder_tid.unwrap_or(0))));
            }
            mine.push(key);
        }
        pending.retain(|r| !mine.contains(&r.row_key));
        if pending.is_empty() {
            return Ok(Ok(()));
        }
    }
    Ok(Err(conflict(resource_id, pending.first().copied(), 0)))
}

/// Multi-row insert into `lock_table`; append [`repeat_row`]`(n, LOCK_VALUES)`.
pub(super) const INSERT_LOCKS: &str = "INSERT INTO lock_table (row_key, xid, transaction_id, \
     branch_id, resource_id, table_name, pk, gmt_create, gmt_modified) VALUES ";
/// One row of [`INSERT_LOCKS`]; its parameters come from [`push_lock_params`].
pub(super) const LOCK_VALUES: &str = "(?, ?, ?, ?, ?, ?, ?, now(), now())";

/// The seven parameters of one [`LOCK_VALUES`] row.
pub(super) fn push_lock_params(
    params: &mut Vec<Value>,
    r: &LockRow,
    xid: &str,
    owner: LockOwner,
    resource_id: &str,
) {
    params.extend([
        Value::from(r.row_key.as_str()),
        Value::from(xid),
        Value::from(owner.transaction_id),
        Value::from(owner.branch_id),
        Value::from(resource_id),
        Value::from(r.table.as_str()),
        Value::from(r.pk.as_str()),
    ]);
}

/// A row held by another transaction (or a tie the database broke) as a lock conflict.
pub(super) fn conflict_on(resource_id: &str, rows: &[LockRow]) -> LockError {
    conflict(resource_id, rows.first(), 0)
}

fn conflict(resource_id: &str, row: Option<&LockRow>, holder: i64) -> LockError {
    LockError::Conflict {
        resource_id: resource_id.to_owned(),
        table: row.map(|r| r.table.clone()).unwrap_or_default(),
        pk: row.map(|r| r.pk.clone()).unwrap_or_default(),
        holder_transaction_id: holder,
    }
}

/// Releases every row of the transaction: rows are found through its branches
/// (`branch_table.idx_xid`, then `lock_table.idx_branch_id`), because the 1.2 `lock_table` has
/// no index on `xid`. The join order and indexes are forced: with small tables the
/// optimizer would rather scan, and a scan locks rows of other transactions too.
pub(super) const RELEASE_TRANSACTION: &str = "DELETE l FROM branch_table b FORCE INDEX (idx_xid) \
     STRAIGHT_JOIN lock_table l FORCE INDEX (idx_branch_id) ON l.branch_id = b.branch_id \
     WHERE b.xid = ?";

impl LockManager for MysqlLockManager {
    fn acquire<'a>(
        &'a self,
        owner: LockOwner,
        xid: &'a str,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> LockFuture<'a, ()> {
        boxed(async move {
            let rows = lock_rows(resource_id, lock_key)?;
            if rows.is_empty() {
                return Ok(());
            }
            let mut tx = self
                .pool
                .start_transaction(TxOpts::default())
                .await
                .map_err(db)?;
            match insert_locks(&mut tx, owner, xid, resource_id, &rows).await {
                Ok(Ok(())) => tx.commit().await.map_err(db)?,
                Ok(Err(e)) => {
                    tx.rollback().await.map_err(db)?;
                    return Err(e);
                }
                // InnoDB chose us as the deadlock victim (or we waited too long): report a
                // conflict, which the RM retries like any other.
                Err(StepError::Db(e)) if is_lock_contention(&e) => {
                    return Err(conflict_on(resource_id, &rows));
                }
                Err(e) => return Err(e.into_store().into()),
            }
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        owner: LockOwner,
        xid: &'a str,
        _resource_id: &'a str,
        _lock_key: &'a str,
    ) -> LockFuture<'a, ()> {
        boxed(async move {
            let mut conn = self.pool.get_conn().await.map_err(db)?;
            conn.exec_drop(
                "DELETE FROM lock_table WHERE branch_id = ? AND xid = ?",
                (owner.branch_id, xid),
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn is_lockable<'a>(
        &'a self,
        transaction_id: Option<i64>,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> LockFuture<'a, bool> {
        boxed(async move {
            let rows = lock_rows(resource_id, lock_key)?;
            if rows.is_empty() {
                return Ok(true);
            }
            let sql = format!(
                "SELECT transaction_id FROM lock_table WHERE row_key IN ({})",
                placeholders(rows.len())
            );
            let keys: Vec<Value> = rows
                .iter()
                .map(|r| Value::from(r.row_key.as_str()))
                .collect();
            let mut conn = self.pool.get_conn().await.map_err(db)?;
            let holders: Vec<Option<i64>> = conn.exec(sql, keys).await.map_err(db)?;
            // Without a transaction (`@GlobalLock`), any holder makes the rows unavailable.
            Ok(holders
                .iter()
                .all(|h| transaction_id.is_some() && *h == transaction_id))
        })
    }

    fn release_transaction<'a>(
        &'a self,
        _transaction_id: i64,
        xid: &'a str,
    ) -> Option<LockFuture<'a, ()>> {
        Some(boxed(async move {
            let mut conn = self.pool.get_conn().await.map_err(db)?;
            conn.exec_drop(RELEASE_TRANSACTION, (xid,))
                .await
                .map_err(db)?;
            Ok(())
        }))
    }

    /// Not counted: the rows belong to every TC sharing the database, and counting them would
    /// cost a query per stats call.
    fn held_rows(&self) -> usize {
        0
    }
}
