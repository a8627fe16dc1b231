//! Runs `INSERT IGNORE`, `INSERT ... ON DUPLICATE KEY UPDATE` and `REPLACE` with the images
//! `model/upsert.rs` plans: the colliding rows locked before, the same rows read after.

use mysql_async::prelude::FromRow;
use mysql_async::Params;

use super::conn_state::{ConnState, Protocol};
use super::image_query::query_image;
use crate::at::model::image::TableRecords;
use crate::at::model::image_sql::column_list;
use crate::at::model::statement::InsertStmt;
use crate::at::model::upsert::{self, after_identities, identity_condition, UpsertPlan};
use crate::error::RmError;

/// One upsert-like INSERT inside the open local transaction.
pub(crate) async fn run<T: FromRow + Send + 'static>(
    c: &mut ConnState,
    sql: &str,
    params: Params,
    protocol: Protocol,
    ins: &InsertStmt,
) -> Result<Vec<T>, RmError> {
    let meta = c.table_meta(sql, &ins.table).await?;
    let p = upsert::plan(sql, ins, meta)?;
    let before = read(c, &p, &p.identities, true).await?;
    let rows = c.raw_run(sql, params, protocol).await?;
    let affected = c.affected;
    let outcome = async {
        let ids = after_identities(&p, &before)?;
        let after = read(c, &p, &ids, false).await?;
        upsert::outcome(&p, before, after, affected)
    }
    .await;
    match outcome {
        Ok(o) => {
            if let (Some(tx), Some(key)) = (c.tx.as_mut(), o.lock_key) {
                tx.undo.extend(o.items);
                tx.keys.add(key);
            }
            Ok(rows)
        }
        Err(e) => {
            c.poison(&e);
            Err(e)
        }
    }
}

/// Whole rows matching any of `identities`, locked for the before image.
async fn read(
    c: &mut ConnState,
    p: &UpsertPlan,
    identities: &[upsert::Identity],
    lock: bool,
) -> Result<TableRecords, RmError> {
    let all: Vec<String> = p.meta.columns.iter().map(|c| c.name.clone()).collect();
    let (cond, params) = identity_condition(&p.meta, identities);
    let sql = format!(
        "SELECT {} FROM {} WHERE {cond}{}",
        column_list(&all),
        p.table_name,
        if lock { " FOR UPDATE" } else { "" }
    );
    query_image(&mut c.conn, &p.meta, &sql, params, &all).await
}
