//! Statement execution inside a global transaction (at-mode.md 3.2, 3.4): before image →
//! statement → after image → undo item and lock key, plus the autocommit retry loop.
//!
//! Everything that can refuse a statement (metadata, key columns, INSERT key sources) is
//! decided before the statement runs (`model/plan.rs`). An UPDATE or DELETE whose values all
//! have exact literals sends its before image and the statement in one round trip
//! (`batch.rs`); others take the before image first. The after image of an INSERT must find
//! exactly the inserted rows or the statement fails.

use mysql_async::prelude::FromRow;
use mysql_async::{Params, Value};
use seata_tm::context::BoundXid;
use tracing::debug;

use super::batch::run_batch;
use super::commit::{begin_own, commit_tx, fail_registered, flush_and_commit, register};
use super::conn_state::{ConnState, Protocol};
use super::image_query::{select_by_keys, select_for_update};
use super::{joined, upsert};
use crate::at::model::batch_sql::Batch;
use crate::at::model::image::TableRecords;
use crate::at::model::lock_key;
use crate::at::model::plan::{self, inserted_key, same_keys, KeySource, Plan, Prepared};
use crate::at::model::statement::{OnConflict, Recognized};
use crate::at::model::undo_log::{SqlType, SqlUndoLog};
use crate::at::model::value::FieldValue;
use crate::error::RmError;

/// How a statement reaches its after image.
enum Stage<'r> {
    /// The before image, the statement and an after-image guess go in one round trip.
    Batched(Batch, Plan<'r>),
    /// The before image is taken; the statement runs next.
    Imaged(Prepared),
}

/// One DML statement inside the open local transaction.
pub(crate) async fn dml<T: FromRow + Send + 'static>(
    c: &mut ConnState,
    xid: &str,
    sql: &str,
    params: Params,
    protocol: Protocol,
    rec: &Recognized,
) -> Result<Vec<T>, RmError> {
    c.bind_xid(xid)?;
    match rec {
        Recognized::Insert(i) if i.on_conflict != OnConflict::Error => {
            return upsert::run(c, sql, params, protocol, i).await
        }
        Recognized::Joined(j) => return joined::run(c, sql, params, protocol, j).await,
        _ => {}
    }
    let plan = plan_statement(c, sql, rec).await?;
    let stage = stage(c, sql, &params, protocol, plan).await?;
    run_stage(c, sql, params, protocol, stage).await
}

/// Whether the statement takes the single-table path of `plan.rs` (the others have no early
/// lock key and no batch).
fn single_table(rec: &Recognized) -> bool {
    match rec {
        Recognized::Insert(i) => i.on_conflict == OnConflict::Error,
        Recognized::Update(_) | Recognized::Delete(_) => true,
        _ => false,
    }
}

/// The statement's table metadata and plan; refusals happen here, before anything runs.
async fn plan_statement<'r>(
    c: &mut ConnState,
    sql: &str,
    rec: &'r Recognized,
) -> Result<Plan<'r>, RmError> {
    let table =
        plan::target(rec).ok_or_else(|| RmError::unsupported(sql, "not a DML statement"))?;
    let meta = c.table_meta(sql, table).await?;
    plan::plan(sql, rec, meta)
}

/// A batch when the statement allows one, else the before image taken now.
async fn stage<'r>(
    c: &mut ConnState,
    sql: &str,
    params: &Params,
    protocol: Protocol,
    plan: Plan<'r>,
) -> Result<Stage<'r>, RmError> {
    match Batch::build(&plan, sql, params, protocol == Protocol::Text) {
        Some(batch) => Ok(Stage::Batched(batch, plan)),
        None => Ok(Stage::Imaged(before_image(c, plan).await?)),
    }
}

/// Runs the statement, then adds its undo item and lock key to the local transaction.
async fn run_stage<T: FromRow + Send + 'static>(
    c: &mut ConnState,
    sql: &str,
    params: Params,
    protocol: Protocol,
    stage: Stage<'_>,
) -> Result<Vec<T>, RmError> {
    let (rows, prepared) = match stage {
        // UPDATE and DELETE return no rows.
        Stage::Batched(batch, plan) => (Vec::new(), run_batch(c, sql, batch, plan).await?),
        Stage::Imaged(prepared) => (c.raw_run(sql, params, protocol).await?, prepared),
    };
    match finish(c, prepared).await {
        Ok(Some((item, key))) => {
            if let Some(tx) = c.tx.as_mut() {
                tx.undo.push(item);
                tx.keys.add(key);
            }
        }
        Ok(None) => {}
        Err(e) => {
            c.poison(&e);
            return Err(e);
        }
    }
    Ok(rows)
}

/// A DML statement with no open local transaction: it becomes one, committed at once and
/// re-run after a lock conflict (Seata's default policy, at-mode.md 5.3).
pub(crate) async fn autocommit_dml<T: FromRow + Send + 'static>(
    c: &mut ConnState,
    xid: &BoundXid,
    sql: &str,
    params: Params,
    protocol: Protocol,
    rec: &Recognized,
) -> Result<Vec<T>, RmError> {
    let config = c.ds.inner.config.clone();
    let mut attempts = 0;
    loop {
        attempts += 1;
        begin_own(c).await?;
        let err = match autocommit_once(c, xid, sql, params.clone(), protocol, rec).await {
            Ok(rows) => return Ok(rows),
            Err(e) => e,
        };
        if c.tx.is_some() {
            c.rollback_quietly().await;
        }
        if !(err.is_lock_conflict() && config.rollback_on_conflict) {
            return Err(err);
        }
        if attempts > config.lock_retry_times {
            return Err(RmError::LockWaitTimeout {
                lock_keys: match err {
                    RmError::LockConflict { lock_keys, .. } => lock_keys,
                    other => other.to_string(),
                },
                attempts,
            });
        }
        debug!(%xid, attempts, "lock conflict; re-running the statement");
        tokio::time::sleep(config.lock_retry_interval).await;
    }
}

/// One attempt of [`autocommit_dml`](Self::autocommit_dml): before image, statement, after
/// image, branch register, undo log, commit.
///
/// The local transaction holds this one statement, so when its lock key is known before it
/// runs, the branch is registered while the statement runs, taking the TC round trip off
/// the critical path. The key is known from the filter when it names whole integer
/// primary keys (`id = ?`, `id IN (...)`, `a = ? AND b = ?`), or from the before image for
/// a DELETE or a one-row UPDATE (an UPDATE may not change the key, so its after image has
/// the same rows). Seata registers after the statement; the order does not matter to the
/// TC, and the rows are locked locally before the local commit. The rows the images give
/// must be among the registered ones; a key naming a row that turned out not to exist
/// only holds that key until the global transaction ends. If the statement fails, the
/// branch is reported `PhaseOne_Failed`, as after a failed undo-log write.
///
/// The XID may still be on its way (the TC's answer to the GlobalBegin): the statement's SQL
/// runs meanwhile, and only the register waits for it. If the begin failed, the local
/// transaction is rolled back, as when the register fails.
async fn autocommit_once<T: FromRow + Send + 'static>(
    c: &mut ConnState,
    bound: &BoundXid,
    sql: &str,
    params: Params,
    protocol: Protocol,
    rec: &Recognized,
) -> Result<Vec<T>, RmError> {
    if !single_table(rec) {
        let xid = resolve(c, bound).await?;
        let rows = dml(c, &xid, sql, params, protocol, rec).await?;
        let tx = c.tx.take().unwrap_or_default();
        commit_tx(c, tx).await?;
        return Ok(rows);
    }
    let plan = plan_statement(c, sql, rec).await?;
    let table = plan.meta.name.clone();
    let stage = stage(c, sql, &params, protocol, plan).await?;
    let early_key = match &stage {
        Stage::Batched(_, plan) => match plan.filter {
            Some(f) => lock_key::predict(&plan.meta, f),
            None => inserted_key(&plan.meta, &plan.insert_keys),
        },
        // Seata takes a DELETE's key from the before image and an UPDATE's from the after
        // image, whose row order may differ from the before image's (ORDER BY ... DESC):
        // with one row the strings cannot differ.
        Stage::Imaged(p) => match p.sql_type {
            SqlType::Delete => lock_key::build(&p.meta, &p.before)?,
            SqlType::Update if p.before.rows.len() == 1 => lock_key::build(&p.meta, &p.before)?,
            SqlType::Update | SqlType::Insert => None,
        },
    };
    let Some(key) = early_key else {
        resolve(c, bound).await?;
        let rows = run_stage(c, sql, params, protocol, stage).await?;
        let tx = c.tx.take().unwrap_or_default();
        commit_tx(c, tx).await?;
        return Ok(rows);
    };
    let inner = c.ds.inner.clone();
    let (ran, registered) = tokio::join!(run_stage::<T>(c, sql, params, protocol, stage), async {
        let xid = wait_xid(bound).await?;
        register(&inner, &xid, &key).await.map(|id| (xid, id))
    });
    let (xid, branch_id) = match (ran.as_ref(), registered) {
        (_, Ok(registered)) => registered,
        // The statement's own error comes first, as if it had run alone.
        (Err(_), Err(_)) => return ran,
        (Ok(_), Err(e)) => {
            c.rollback_quietly().await;
            return Err(e);
        }
    };
    let xid = xid.as_str();
    tracing::Span::current().record("xid", xid);
    let rows = match ran.and_then(|rows| c.bind_xid(xid).map(|()| rows)) {
        Ok(rows) => rows,
        Err(e) => {
            fail_registered(c, xid, branch_id).await;
            return Err(e);
        }
    };
    let tx = c.tx.take().unwrap_or_default();
    let found = tx.keys.joined();
    if tx.poisoned.is_some() || !lock_key::covers(&key, &found) {
        fail_registered(c, xid, branch_id).await;
        return Err(RmError::ImageMismatch {
            table,
            reason: format!("registered lock key `{key}` but the images give `{found}`"),
        });
    }
    // With no row changed the undo log is empty; phase two still finds it.
    flush_and_commit(c, xid.to_string(), branch_id, tx.undo).await?;
    Ok(rows)
}

/// The XID, once the TC has answered the begin.
async fn wait_xid(bound: &BoundXid) -> Result<String, RmError> {
    let xid = bound.wait().await?;
    // A bound XID is never the empty "suspended" one: the caller checked.
    xid.ok_or_else(|| RmError::TxState("no global transaction bound".into()))
}

/// Waits for the XID and binds the local transaction to it.
async fn resolve(c: &mut ConnState, bound: &BoundXid) -> Result<String, RmError> {
    let xid = wait_xid(bound).await?;
    tracing::Span::current().record("xid", xid.as_str());
    c.bind_xid(&xid)?;
    Ok(xid)
}

/// The before image (`SELECT ... FOR UPDATE`) of an UPDATE or DELETE; none for an INSERT.
async fn before_image(c: &mut ConnState, plan: Plan<'_>) -> Result<Prepared, RmError> {
    let before = match plan.filter {
        Some(filter) => {
            select_for_update(
                &mut c.conn,
                &plan.meta,
                &plan.table.from_sql(),
                &plan.columns,
                filter,
            )
            .await?
        }
        None => TableRecords::empty(&plan.meta),
    };
    Ok(plan.into_prepared(before, None))
}

/// After image, undo item and lock key; `None` when the statement changed nothing.
async fn finish(
    c: &mut ConnState,
    mut p: Prepared,
) -> Result<Option<(SqlUndoLog, String)>, RmError> {
    // What the after image is, or the keys to read it by.
    let known = match p.sql_type {
        SqlType::Delete => Ok(TableRecords::empty(&p.meta)),
        SqlType::Update if p.before.is_empty() => Ok(TableRecords::empty(&p.meta)),
        SqlType::Update => match p.after_guess.take() {
            Some(guess) if same_keys(&guess, &p.before) => Ok(guess),
            _ => Err(p.before.key_values(&p.meta)?),
        },
        SqlType::Insert => match p.after_guess.take() {
            // Read with the INSERT, by the same keys.
            Some(after) if after.rows.len() == p.insert_keys.len() => Ok(after),
            _ => Err(inserted_keys(c, &p).await?),
        },
    };
    let after = match known {
        Ok(after) => after,
        Err(keys) => {
            let after = select_by_keys(
                &mut c.conn,
                &p.meta,
                &p.table_name,
                &p.columns,
                &keys,
                false,
            )
            .await?;
            if p.sql_type == SqlType::Insert && after.rows.len() != keys.len() {
                return Err(RmError::ImageMismatch {
                    table: p.meta.name.clone(),
                    reason: format!(
                        "inserted {} rows but found {} by key",
                        keys.len(),
                        after.rows.len()
                    ),
                });
            }
            after
        }
    };
    if p.before.is_empty() && after.is_empty() {
        return Ok(None);
    }
    let lock_image = if p.sql_type == SqlType::Delete {
        &p.before
    } else {
        &after
    };
    let Some(key) = lock_key::build(&p.meta, lock_image)? else {
        return Ok(None);
    };
    let item = SqlUndoLog {
        sql_type: p.sql_type,
        table_name: p.table_name,
        before_image: p.before,
        after_image: after,
    };
    Ok(Some((item, key)))
}

/// The key values of the rows an INSERT wrote, in key-column order.
async fn inserted_keys(c: &mut ConnState, p: &Prepared) -> Result<Vec<Vec<FieldValue>>, RmError> {
    let needs_generated = p
        .insert_keys
        .iter()
        .any(|r| r.iter().any(|k| matches!(k, KeySource::Generated)));
    let (first, step) = if needs_generated {
        let first = c.insert_id.ok_or_else(|| RmError::ImageMismatch {
            table: p.meta.name.clone(),
            reason: "the insert generated no AUTO_INCREMENT id".into(),
        })?;
        // One row needs no step; more read it once per connection.
        let step = if p.insert_keys.len() > 1 {
            c.session.auto_increment_step(&mut c.conn).await?
        } else {
            1
        };
        (first, step)
    } else {
        (0, 1)
    };
    let auto = p.meta.auto_increment_column();
    let mut out = Vec::with_capacity(p.insert_keys.len());
    for (i, row) in p.insert_keys.iter().enumerate() {
        let mut key = Vec::with_capacity(row.len());
        for src in row {
            key.push(match src {
                KeySource::Explicit(v) => v.clone(),
                KeySource::Generated => {
                    let col = auto.ok_or_else(|| RmError::ImageMismatch {
                        table: p.meta.name.clone(),
                        reason: "generated key without an AUTO_INCREMENT column".into(),
                    })?;
                    let id = first + step * u64::try_from(i).unwrap_or(u64::MAX);
                    FieldValue::from_mysql(Value::UInt(id), col)?
                }
            });
        }
        out.push(key);
    }
    Ok(out)
}
