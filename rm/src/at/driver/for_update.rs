//! `SELECT ... FOR UPDATE` inside a global transaction (at-mode.md 3.4): the statement takes
//! local row locks, then the TC is asked whether another global transaction holds the same
//! rows; if so the local locks are given back (savepoint or rollback) and the read retried.

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::Params;

use super::conn_state::{ConnState, Protocol};
use super::image_query::select_for_update as select_keys_for_update;
use crate::at::model::lock_key;
use crate::at::model::statement::SelectStmt;
use crate::error::RmError;

const SAVEPOINT: &str = "seata_select_for_update";

/// `SELECT ... FOR UPDATE` in a global transaction (at-mode.md 3.4): run it, then ask
/// the TC whether another global transaction holds the selected rows; if so undo the
/// local locks (savepoint or rollback), wait and retry.
pub(crate) async fn select_for_update<T: FromRow + Send + 'static>(
    c: &mut ConnState,
    xid: &str,
    sql: &str,
    params: Params,
    protocol: Protocol,
    s: &SelectStmt,
) -> Result<Vec<T>, RmError> {
    let inner = c.ds.inner.clone();
    let meta = c.table_meta(sql, &s.table).await?;
    let standalone = c.tx.is_none();
    let start = if standalone {
        "START TRANSACTION".to_string()
    } else {
        format!("SAVEPOINT {SAVEPOINT}")
    };
    c.conn.query_drop(start.as_str()).await?;
    let mut attempts = 0;
    let result = loop {
        attempts += 1;
        let step = async {
            let rows = c.raw_run::<T>(sql, params.clone(), protocol).await?;
            let pks = select_keys_for_update(
                &mut c.conn,
                &meta,
                &s.table.from_sql(),
                &meta.primary_keys,
                &s.filter,
            )
            .await?;
            let Some(key) = lock_key::build(&meta, &pks)? else {
                return Ok((rows, None));
            };
            let free = inner.tc.lock_query(xid, &inner.resource_id, &key).await?;
            Ok::<_, RmError>((rows, (!free).then_some(key)))
        }
        .await;
        match step {
            Ok((rows, None)) => break Ok(rows),
            Ok((_, Some(key))) if attempts > inner.config.lock_retry_times => {
                break Err(RmError::LockWaitTimeout {
                    lock_keys: key,
                    attempts,
                })
            }
            Ok((_, Some(_))) => {
                let undo_locks = if standalone {
                    "ROLLBACK".to_string()
                } else {
                    format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                };
                c.conn.query_drop(undo_locks.as_str()).await?;
                tokio::time::sleep(inner.config.lock_retry_interval).await;
                if standalone {
                    c.conn.query_drop("START TRANSACTION").await?;
                }
            }
            Err(e) => break Err(e),
        }
    };
    let end = match (standalone, result.is_ok()) {
        (true, true) => "COMMIT".to_string(),
        (true, false) => "ROLLBACK".to_string(),
        (false, true) => format!("RELEASE SAVEPOINT {SAVEPOINT}"),
        (false, false) => format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"),
    };
    c.conn.query_drop(end.as_str()).await?;
    result
}
