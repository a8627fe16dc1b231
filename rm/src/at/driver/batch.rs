//! Runs a [`Batch`] (`model/batch_sql.rs` says what goes in one and why it changes nothing but
//! the round trips) and reads the images out of its results.

use mysql_async::prelude::Queryable;
use tracing::debug;

use super::conn_state::ConnState;
use crate::at::model::batch_sql::Batch;
use crate::at::model::image::{image_from_rows, TableRecords};
use crate::at::model::int_set;
use crate::at::model::plan::{Plan, Prepared};
use crate::error::RmError;

/// Sends `batch` (the application's `sql` among its statements) and reads the images.
/// An error before the statement's own result is the statement's error, with nothing
/// changed; one after it leaves the local transaction able only to roll back.
pub(crate) async fn run_batch(
    c: &mut ConnState,
    sql: &str,
    batch: Batch,
    plan: Plan<'_>,
) -> Result<Prepared, RmError> {
    debug!(batch = %batch.sql, "images and statement in one round trip");
    if batch.insert {
        return run_insert_batch(c, sql, batch, plan).await;
    }
    let mut result = match c.conn.query_iter(batch.sql.as_str()).await {
        Ok(r) => r,
        Err(e) => return Err(c.statement_failed(sql, e)),
    };
    // Reading the image's last row also reads the statement's result; an error there is
    // kept for the next read, so the pending result tells whether the statement ran.
    let before = result.collect::<mysql_async::Row>().await;
    let ran = before.is_ok() && result.columns().is_some();
    let before = match before {
        Ok(rows) if ran => rows,
        failed => {
            let e = match failed {
                Err(e) => e,
                Ok(_) => match result.collect::<mysql_async::Row>().await {
                    Err(e) => e,
                    Ok(_) => mysql_async::Error::Other("a batched statement sent no result".into()),
                },
            };
            drop(result);
            return Err(c.statement_failed(sql, e));
        }
    };
    let affected = result.affected_rows();
    let insert_id = result.last_insert_id();
    let warnings = result.warnings();
    // The statement's own (empty) result, then the guess. The guess is only a shortcut:
    // if it fails the after image is read by key, which meets any lasting problem again.
    let guess = async {
        result.collect::<mysql_async::Row>().await?;
        let guess = if batch.guess_after {
            Some(result.collect::<mysql_async::Row>().await?)
        } else {
            None
        };
        result.drop_result().await?;
        Ok::<_, mysql_async::Error>(guess)
    }
    .await
    .unwrap_or_else(|e| {
        debug!(error = %e, "after-image guess failed; reading by key");
        None
    });
    c.session.observe(sql, true);
    c.affected = affected;
    c.insert_id = insert_id;
    let images = image_from_rows(&plan.meta, &plan.columns, before).and_then(|before| {
        let after = match (guess, plan.int_sets) {
            (Some(rows), _) => Some(image_from_rows(&plan.meta, &plan.columns, rows)?),
            // A warning (a clamped value, say) means MySQL did not store what the
            // arithmetic says: the after image is read by key instead.
            (None, Some(sets)) if batch.computes_after && warnings == 0 => {
                int_set::after_image(&plan.meta, &before, sets)
            }
            (None, _) => None,
        };
        Ok::<(TableRecords, _), RmError>((before, after))
    });
    match images {
        Ok((before, after)) => Ok(plan.into_prepared(before, after)),
        Err(e) => {
            c.poison(&e);
            Err(e)
        }
    }
}

/// [`run_batch`](Self::run_batch) for an INSERT: its own result comes first, so an
/// error before it is the statement's; the read of its rows is only a shortcut.
async fn run_insert_batch(
    c: &mut ConnState,
    sql: &str,
    batch: Batch,
    plan: Plan<'_>,
) -> Result<Prepared, RmError> {
    let mut result = match c.conn.query_iter(batch.sql.as_str()).await {
        Ok(r) => r,
        Err(e) => return Err(c.statement_failed(sql, e)),
    };
    let affected = result.affected_rows();
    let insert_id = result.last_insert_id();
    let after = async {
        result.collect::<mysql_async::Row>().await?;
        let rows = result.collect::<mysql_async::Row>().await?;
        result.drop_result().await?;
        Ok::<_, mysql_async::Error>(rows)
    }
    .await
    .unwrap_or_else(|e| {
        debug!(error = %e, "reading the inserted rows failed; reading them by key");
        Vec::new()
    });
    c.session.observe(sql, true);
    c.affected = affected;
    c.insert_id = insert_id;
    match image_from_rows(&plan.meta, &plan.columns, after) {
        Ok(after) => {
            let before = TableRecords::empty(&plan.meta);
            Ok(plan.into_prepared(before, Some(after)))
        }
        Err(e) => {
            c.poison(&e);
            Err(e)
        }
    }
}
