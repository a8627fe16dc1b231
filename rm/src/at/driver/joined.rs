//! Runs multi-table UPDATE and DELETE with the per-table images `model/joined.rs` plans.

use mysql_async::prelude::FromRow;
use mysql_async::Params;

use super::conn_state::{ConnState, Protocol};
use super::image_query::{query_image, select_by_keys};
use crate::at::model::image::TableRecords;
use crate::at::model::joined::{self, dedupe};
use crate::at::model::lock_key;
use crate::at::model::statement::JoinedStmt;
use crate::at::model::undo_log::{SqlType, SqlUndoLog};
use crate::error::RmError;

/// One multi-table statement inside the open local transaction.
pub(crate) async fn run<T: FromRow + Send + 'static>(
    c: &mut ConnState,
    sql: &str,
    params: Params,
    protocol: Protocol,
    stmt: &JoinedStmt,
) -> Result<Vec<T>, RmError> {
    let mut metas = Vec::with_capacity(stmt.tables.len());
    for t in &stmt.tables {
        metas.push(c.table_meta(sql, t).await?);
    }
    let p = joined::plan(sql, stmt, &metas)?;
    let mut befores = Vec::with_capacity(p.targets.len());
    for t in &p.targets {
        let image = query_image(
            &mut c.conn,
            &t.meta,
            &t.select,
            p.params.clone(),
            &t.columns,
        );
        befores.push(dedupe(image.await?));
    }
    let rows = c.raw_run(sql, params, protocol).await?;
    let finished = async {
        let mut out = Vec::new();
        for (t, before) in p.targets.iter().zip(befores) {
            if before.is_empty() {
                continue;
            }
            let after = match p.sql_type {
                SqlType::Delete | SqlType::Insert => TableRecords::empty(&t.meta),
                SqlType::Update => {
                    let keys = before.key_values(&t.meta)?;
                    select_by_keys(
                        &mut c.conn,
                        &t.meta,
                        &t.table_name,
                        &t.columns,
                        &keys,
                        false,
                    )
                    .await?
                }
            };
            let lock_image = if p.sql_type == SqlType::Delete {
                &before
            } else {
                &after
            };
            let key = lock_key::build(&t.meta, lock_image)?;
            out.push((
                SqlUndoLog {
                    sql_type: p.sql_type,
                    table_name: t.table_name.clone(),
                    before_image: before,
                    after_image: after,
                },
                key,
            ));
        }
        Ok::<_, RmError>(out)
    }
    .await;
    match finished {
        Ok(items) => {
            if let Some(tx) = c.tx.as_mut() {
                for (item, key) in items {
                    if let Some(key) = key {
                        tx.undo.push(item);
                        tx.keys.add(key);
                    }
                }
            }
            Ok(rows)
        }
        Err(e) => {
            c.poison(&e);
            Err(e)
        }
    }
}
