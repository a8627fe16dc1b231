//! Audit records in `seata_rs_audit` (one row per event, never updated). Written straight
//! through the pool, outside the batched writers: operator actions are rare and each must be
//! durable before the action goes on.

use mysql_async::prelude::Queryable;
use mysql_async::Pool;

use super::db;
use crate::store::{AuditRecord, StoreError};

type Row = (i64, String, String, String, Option<i64>, String, String);

fn from_row((at_ms, actor, action, xid, branch_id, reason, status): Row) -> AuditRecord {
    AuditRecord {
        at_ms,
        actor,
        action,
        xid,
        branch_id,
        reason,
        status,
    }
}

/// Inserts one record.
pub(super) async fn add(pool: &Pool, a: &AuditRecord) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await.map_err(db)?;
    conn.exec_drop(
        "INSERT INTO seata_rs_audit (at_ms, actor, action, xid, branch_id, reason, status) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            a.at_ms,
            &a.actor,
            &a.action,
            &a.xid,
            a.branch_id,
            &a.reason,
            &a.status,
        ),
    )
    .await
    .map_err(db)
}

/// The records of `xid`, or the newest `limit`; oldest first.
pub(super) async fn list(
    pool: &Pool,
    xid: Option<&str>,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut conn = pool.get_conn().await.map_err(db)?;
    let rows: Vec<Row> = match xid {
        Some(x) => {
            conn.exec(
                "SELECT at_ms, actor, action, xid, branch_id, reason, status FROM seata_rs_audit \
                 WHERE xid = ? ORDER BY id",
                (x,),
            )
            .await
        }
        None => {
            conn.exec(
                "SELECT at_ms, actor, action, xid, branch_id, reason, status FROM \
                 (SELECT * FROM seata_rs_audit ORDER BY id DESC LIMIT ?) newest ORDER BY id",
                (u64::try_from(limit).unwrap_or(u64::MAX),),
            )
            .await
        }
    }
    .map_err(db)?;
    Ok(rows.into_iter().map(from_row).collect())
}
