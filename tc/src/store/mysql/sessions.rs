//! The store's reads of `global_table`/`branch_table` (tc-semantics 5.3): one session for
//! `find`, and the orphan scan that takes over the sessions of TCs that died. Writes go
//! through the group-commit writers (`writer.rs`, `batch.rs`), which keep the multi-TC rules:
//! a register checks under a shared row lock on the global row that the transaction is still
//! in Begin and records the branch and its lock rows in the same DB transaction, so a
//! decision taken on another TC either sees the branch or makes the register fail; a status
//! change is a compare-and-set whose winner writes its lease and reads the complete branch
//! list in the same DB transaction; and removals are multi-table `DELETE`s, so a branch goes
//! with its lock rows and a global transaction with its branches, locks and lease.

use mysql_async::prelude::Queryable;
use mysql_async::Row;
use seata_protocol::GlobalStatus;
use tracing::warn;

use super::lease::OWNER_GONE;
use super::rows::{branch_from_row, global_from_row, GLOBAL_COLUMNS};
use super::{db, MysqlStore};
use crate::store::{StoreError, StoredSession};

/// Orphans taken over per scan (Seata's `store.db.queryLimit`).
const ORPHAN_LIMIT: usize = 100;

/// Registration order: `gmt_create` has microseconds (tc-semantics 5.3); the branch id breaks
/// ties within one microsecond (ids of one TC increase).
const SELECT_BRANCHES: &str = "SELECT branch_id, branch_type, status, resource_id, client_id, \
     application_data FROM branch_table WHERE xid = ? ORDER BY gmt_create, branch_id";

impl MysqlStore {
    /// One session with its branches in registration order.
    pub(super) async fn load(&self, xid: &str) -> Result<Option<StoredSession>, StoreError> {
        let mut conn = self.pool.get_conn().await.map_err(db)?;
        let row: Option<Row> = conn
            .exec_first(
                format!("SELECT {GLOBAL_COLUMNS} FROM global_table WHERE xid = ?"),
                (xid,),
            )
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let global = global_from_row(row)?;
        let rows: Vec<Row> = conn.exec(SELECT_BRANCHES, (xid,)).await.map_err(db)?;
        let branches = rows
            .into_iter()
            .map(branch_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(StoredSession { global, branches }))
    }

    /// Sessions no live TC looks after, claimed for this TC: phase-two sessions (Committing
    /// to AsyncCommitting, codes 2 to 8) whose lease expired or is missing, and Begin sessions
    /// past their timeout by more than a lease (their TC would have timed them out by then).
    pub(super) async fn scan_orphans(&self, now: i64) -> Result<Vec<StoredSession>, StoreError> {
        let candidates: Vec<(String, i64, i64, Option<String>)> = {
            let mut conn = self.pool.get_conn().await.map_err(db)?;
            let rows: Vec<Row> = conn
                .exec(
                    format!(
                        "SELECT g.xid, g.transaction_id, g.status, l.xid FROM global_table g \
                         LEFT JOIN seata_rs_tx_lease l ON l.xid = g.xid \
                         WHERE (g.status BETWEEN 2 AND 8 AND (l.xid IS NULL OR {OWNER_GONE})) \
                            OR (g.status = 1 AND g.begin_time + g.timeout < ?) \
                         ORDER BY g.gmt_modified LIMIT ?"
                    ),
                    (now, now - self.leases.lease_ms(), ORPHAN_LIMIT),
                )
                .await
                .map_err(db)?;
            rows.into_iter()
                .filter_map(|r| mysql_async::from_row_opt(r).ok())
                .collect()
        };
        let mut found = Vec::new();
        for (xid, transaction_id, status, leased) in candidates {
            if status != i64::from(GlobalStatus::Begin.code()) {
                let won = if leased.is_some() {
                    self.leases.claim(transaction_id, &xid).await?
                } else {
                    self.leases.claim_unleased(transaction_id, &xid).await?
                };
                if !won {
                    continue;
                }
            }
            match self.load(&xid).await? {
                Some(s) => found.push(s),
                None => warn!(xid, "orphaned transaction finished while being taken over"),
            }
        }
        Ok(found)
    }
}
