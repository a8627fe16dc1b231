//! Statement execution inside a global transaction (at-mode.md 3.2, 3.4): before image →
//! statement → after image → undo item and lock key, plus the autocommit retry loop.
//!
//! Everything that can refuse a statement (metadata, key columns, INSERT key sources) runs
//! before the statement does ([`Plan`]). An UPDATE or DELETE whose values all have exact
//! literals sends its before image and the statement in one round trip (`batch.rs`); others
//! take the before image first. INSERT keys: explicit values come from the statement;
//! generated ones are `LAST_INSERT_ID()` + i × `@@auto_increment_increment` for every row of a
//! multi-row insert (Seata 1.2 images only the first row), and the after image must find
//! exactly the inserted rows or the statement fails.

use std::sync::Arc;

use mysql_async::prelude::FromRow;
use mysql_async::{Params, Value};
use tracing::debug;

use super::batch::Batch;
use super::connection::{register, AtConnection, Protocol};
use super::image::{select_by_keys, select_for_update, Row, TableRecords};
use super::int_set::IntSet;
use super::lock_key;
use super::meta::TableMeta;
use super::recognize::{Cell, Filter, InsertStmt, Recognized, TableRef};
use super::undo::{SqlType, SqlUndoLog};
use super::value::{FieldValue, Kind};
use crate::error::RmError;

/// Where one row's value for one primary key column comes from.
#[derive(Debug)]
pub(super) enum KeySource {
    Explicit(FieldValue),
    Generated,
}

/// What a statement needs before anything runs: its table, image columns and rows.
pub(super) struct Plan<'r> {
    pub(super) sql_type: SqlType,
    pub(super) meta: Arc<TableMeta>,
    pub(super) table: &'r TableRef,
    /// The image columns: the key and the SET columns for an UPDATE (at-mode.md 3.4), all
    /// columns otherwise.
    pub(super) columns: Vec<String>,
    /// UPDATE/DELETE: the rows the statement touches.
    pub(super) filter: Option<&'r Filter>,
    /// UPDATE: the SET columns.
    pub(super) set_columns: &'r [String],
    /// UPDATE: the SETs as integer changes, when every one is.
    pub(super) int_sets: Option<&'r [IntSet]>,
    /// INSERT only: per row, per primary key column (key order).
    pub(super) insert_keys: Vec<Vec<KeySource>>,
}

impl Plan<'_> {
    pub(super) fn into_prepared(
        self,
        before: TableRecords,
        after_guess: Option<TableRecords>,
    ) -> Prepared {
        Prepared {
            sql_type: self.sql_type,
            meta: self.meta,
            table_name: self.table.name.to_string(),
            columns: self.columns,
            before,
            insert_keys: self.insert_keys,
            after_guess,
        }
    }
}

/// What the statement's before phase found, needed again after it runs.
pub(super) struct Prepared {
    sql_type: SqlType,
    meta: Arc<TableMeta>,
    /// The table as the statement names it (undo logs keep that spelling).
    table_name: String,
    columns: Vec<String>,
    before: TableRecords,
    insert_keys: Vec<Vec<KeySource>>,
    /// UPDATE: the rows its own filter selected again after it ran, in the same round trip.
    /// Taken as the after image only when they carry exactly the before image's keys.
    after_guess: Option<TableRecords>,
}

/// How a statement reaches its after image.
enum Stage<'r> {
    /// The before image, the statement and an after-image guess go in one round trip.
    Batched(Batch, Plan<'r>),
    /// The before image is taken; the statement runs next.
    Imaged(Prepared),
}

impl AtConnection {
    /// One DML statement inside the open local transaction.
    pub(crate) async fn dml<T: FromRow + Send + 'static>(
        &mut self,
        xid: &str,
        sql: &str,
        params: Params,
        protocol: Protocol,
        rec: &Recognized,
    ) -> Result<Vec<T>, RmError> {
        self.bind_xid(xid)?;
        let plan = self.plan(sql, rec).await?;
        let stage = self.stage(sql, &params, protocol, plan).await?;
        self.run_stage(sql, params, protocol, stage).await
    }

    /// Joins the open local transaction to `xid` (at-mode.md 3.1: one XID per local
    /// transaction).
    fn bind_xid(&mut self, xid: &str) -> Result<(), RmError> {
        let tx = self
            .tx
            .as_mut()
            .ok_or_else(|| RmError::TxState("no local transaction".into()))?;
        if let Some(bound) = tx.xid.as_deref().filter(|b| *b != xid) {
            return Err(RmError::TxState(format!(
                "the local transaction belongs to global transaction {bound}; it cannot join {xid}"
            )));
        }
        tx.xid = Some(xid.to_string());
        Ok(())
    }

    /// Marks the local transaction as able only to roll back: a statement ran but its undo
    /// item could not be built.
    pub(super) fn poison(&mut self, e: &RmError) {
        if let Some(tx) = self.tx.as_mut() {
            tx.poisoned = Some(format!("a statement failed after it ran: {e}"));
        }
    }

    /// A batch when the statement allows one, else the before image taken now.
    async fn stage<'r>(
        &mut self,
        sql: &str,
        params: &Params,
        protocol: Protocol,
        plan: Plan<'r>,
    ) -> Result<Stage<'r>, RmError> {
        match Batch::build(&plan, sql, params, protocol) {
            Some(batch) => Ok(Stage::Batched(batch, plan)),
            None => Ok(Stage::Imaged(self.before_image(plan).await?)),
        }
    }

    /// Runs the statement, then adds its undo item and lock key to the local transaction.
    async fn run_stage<T: FromRow + Send + 'static>(
        &mut self,
        sql: &str,
        params: Params,
        protocol: Protocol,
        stage: Stage<'_>,
    ) -> Result<Vec<T>, RmError> {
        let (rows, prepared) = match stage {
            // UPDATE and DELETE return no rows.
            Stage::Batched(batch, plan) => (Vec::new(), self.run_batch(sql, batch, plan).await?),
            Stage::Imaged(prepared) => (self.raw_run(sql, params, protocol).await?, prepared),
        };
        match self.finish(prepared).await {
            Ok(Some((item, key))) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.undo.push(item);
                    tx.keys.add(key);
                }
            }
            Ok(None) => {}
            Err(e) => {
                self.poison(&e);
                return Err(e);
            }
        }
        Ok(rows)
    }

    /// A DML statement with no open local transaction: it becomes one, committed at once and
    /// re-run after a lock conflict (Seata's default policy, at-mode.md 5.3).
    pub(crate) async fn autocommit_dml<T: FromRow + Send + 'static>(
        &mut self,
        xid: &str,
        sql: &str,
        params: Params,
        protocol: Protocol,
        rec: &Recognized,
    ) -> Result<Vec<T>, RmError> {
        let config = self.ds.inner.config.clone();
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.begin_own().await?;
            let err = match self
                .autocommit_once(xid, sql, params.clone(), protocol, rec)
                .await
            {
                Ok(rows) => return Ok(rows),
                Err(e) => e,
            };
            if self.tx.is_some() {
                self.rollback_quietly().await;
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
            debug!(xid, attempts, "lock conflict; re-running the statement");
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
    async fn autocommit_once<T: FromRow + Send + 'static>(
        &mut self,
        xid: &str,
        sql: &str,
        params: Params,
        protocol: Protocol,
        rec: &Recognized,
    ) -> Result<Vec<T>, RmError> {
        self.bind_xid(xid)?;
        let plan = self.plan(sql, rec).await?;
        let table = plan.meta.name.clone();
        let stage = self.stage(sql, &params, protocol, plan).await?;
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
            let rows = self.run_stage(sql, params, protocol, stage).await?;
            let tx = self.tx.take().unwrap_or_default();
            self.commit_tx(tx).await?;
            return Ok(rows);
        };
        let inner = self.ds.inner.clone();
        let (ran, registered) = tokio::join!(
            self.run_stage::<T>(sql, params, protocol, stage),
            register(&inner, xid, &key)
        );
        let branch_id = match (ran.as_ref(), registered) {
            (_, Ok(id)) => id,
            // The statement's own error comes first, as if it had run alone.
            (Err(_), Err(_)) => return ran,
            (Ok(_), Err(e)) => {
                self.rollback_quietly().await;
                return Err(e);
            }
        };
        let rows = match ran {
            Ok(rows) => rows,
            Err(e) => {
                self.fail_registered(xid, branch_id).await;
                return Err(e);
            }
        };
        let tx = self.tx.take().unwrap_or_default();
        let found = tx.keys.joined();
        if tx.poisoned.is_some() || !lock_key::covers(&key, &found) {
            self.fail_registered(xid, branch_id).await;
            return Err(RmError::ImageMismatch {
                table,
                reason: format!("registered lock key `{key}` but the images give `{found}`"),
            });
        }
        // With no row changed the undo log is empty; phase two still finds it.
        self.flush_and_commit(xid.to_string(), branch_id, tx.undo)
            .await?;
        Ok(rows)
    }

    /// The metadata of the statement's table, resolved in the session's database when the SQL
    /// names no schema.
    ///
    /// The session must be in the resource's own database: phase two reads the undo log and
    /// resolves unqualified table names there, and statements the proxy prepared keep the
    /// database they were prepared in. After a `USE` of another database, imaging would write
    /// an undo log phase two never finds, so the statement is refused before it runs.
    pub(super) async fn table_meta(
        &mut self,
        sql: &str,
        table: &TableRef,
    ) -> Result<Arc<TableMeta>, RmError> {
        let current = self.session.current_db(&mut self.conn).await?;
        if let Some(default) = self.ds.inner.default_db.as_deref() {
            if !current
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(default))
            {
                return Err(RmError::unsupported(
                    sql,
                    format!(
                        "the session's database is {}, not this resource's `{default}`; \
                         run `USE {default}` first or use a connection of that resource",
                        current.map_or("none".to_string(), |c| format!("`{c}`"))
                    ),
                ));
            }
        }
        let schema = match (&table.schema, current) {
            (Some(s), _) => s.clone(),
            (None, Some(s)) => s,
            (None, None) => {
                return Err(RmError::UnknownTable {
                    schema: "(no database selected)".into(),
                    table: table.table.clone(),
                })
            }
        };
        self.ds
            .inner
            .meta
            .get(&mut self.conn, &schema, &table.table)
            .await
    }

    /// Everything that can refuse the statement, checked before anything runs.
    async fn plan<'r>(&mut self, sql: &str, rec: &'r Recognized) -> Result<Plan<'r>, RmError> {
        let (sql_type, table, filter, set_columns): (_, _, _, &[String]) = match rec {
            Recognized::Insert(i) => (SqlType::Insert, &i.table, None, &[]),
            Recognized::Update(u) => (SqlType::Update, &u.table, Some(&u.filter), &u.columns),
            Recognized::Delete(d) => (SqlType::Delete, &d.table, Some(&d.filter), &[]),
            _ => return Err(RmError::unsupported(sql, "not a DML statement")),
        };
        let int_sets = match rec {
            Recognized::Update(u) => u.int_sets.as_deref(),
            _ => None,
        };
        let meta = self.table_meta(sql, table).await?;
        let columns = if sql_type == SqlType::Update {
            let mut columns = meta.primary_keys.clone();
            for c in set_columns {
                if meta.is_primary_key(c) {
                    return Err(RmError::unsupported(
                        sql,
                        format!(
                            "UPDATE of primary key column `{c}`; delete and insert the row instead"
                        ),
                    ));
                }
                let col = meta.column(c).ok_or_else(|| RmError::Value {
                    column: c.clone(),
                    reason: format!("no such column in `{}`", meta.name),
                })?;
                columns.push(col.name.clone());
            }
            columns
        } else {
            meta.columns.iter().map(|c| c.name.clone()).collect()
        };
        let insert_keys = match rec {
            Recognized::Insert(i) => insert_keys(sql, &meta, i)?,
            _ => Vec::new(),
        };
        Ok(Plan {
            sql_type,
            meta,
            table,
            columns,
            filter,
            set_columns,
            int_sets,
            insert_keys,
        })
    }

    /// The before image (`SELECT ... FOR UPDATE`) of an UPDATE or DELETE; none for an INSERT.
    async fn before_image(&mut self, plan: Plan<'_>) -> Result<Prepared, RmError> {
        let before = match plan.filter {
            Some(filter) => {
                select_for_update(
                    &mut self.conn,
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
    async fn finish(&mut self, mut p: Prepared) -> Result<Option<(SqlUndoLog, String)>, RmError> {
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
                _ => Err(self.inserted_keys(&p).await?),
            },
        };
        let after = match known {
            Ok(after) => after,
            Err(keys) => {
                let after = select_by_keys(
                    &mut self.conn,
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
    async fn inserted_keys(&mut self, p: &Prepared) -> Result<Vec<Vec<FieldValue>>, RmError> {
        let needs_generated = p
            .insert_keys
            .iter()
            .any(|r| r.iter().any(|k| matches!(k, KeySource::Generated)));
        let (first, step) = if needs_generated {
            let first = self.insert_id.ok_or_else(|| RmError::ImageMismatch {
                table: p.meta.name.clone(),
                reason: "the insert generated no AUTO_INCREMENT id".into(),
            })?;
            // One row needs no step; more read it once per connection.
            let step = if p.insert_keys.len() > 1 {
                self.session.auto_increment_step(&mut self.conn).await?
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
}

/// The lock key of an INSERT whose rows all carry explicit integer keys, known before it runs.
fn inserted_key(meta: &TableMeta, keys: &[Vec<KeySource>]) -> Option<String> {
    let pk_cols = meta.primary_key_columns();
    let ints = pk_cols
        .iter()
        .all(|c| matches!(c.kind, Kind::Int | Kind::Long | Kind::BigInteger));
    if !ints || keys.is_empty() {
        return None;
    }
    let rows = keys
        .iter()
        .map(|row| {
            let parts = row
                .iter()
                .map(|k| match k {
                    KeySource::Explicit(v) => Some(v.lock_key_text()),
                    KeySource::Generated => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some(parts.join("_"))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(lock_key::format(&meta.name, rows))
}

/// Whether two images hold the same rows by key (in any order).
fn same_keys(a: &TableRecords, b: &TableRecords) -> bool {
    let keys = |t: &TableRecords| {
        let mut k: Vec<String> = t.rows.iter().map(Row::key_text).collect();
        k.sort_unstable();
        k
    };
    a.rows.len() == b.rows.len() && keys(a) == keys(b)
}

/// Where each inserted row's key comes from, decided before the INSERT runs.
fn insert_keys(
    sql: &str,
    meta: &TableMeta,
    ins: &InsertStmt,
) -> Result<Vec<Vec<KeySource>>, RmError> {
    let columns: Vec<String> = if ins.columns.is_empty() {
        meta.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        ins.columns.clone()
    };
    let pk_cols = meta.primary_key_columns();
    let positions: Vec<Option<usize>> = pk_cols
        .iter()
        .map(|pk| {
            columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(&pk.name))
        })
        .collect();
    let mut out = Vec::with_capacity(ins.rows.len());
    for row in &ins.rows {
        if row.len() != columns.len() {
            return Err(RmError::unsupported(
                sql,
                "a VALUES row whose length differs from the column list",
            ));
        }
        let mut key = Vec::with_capacity(pk_cols.len());
        for (pk, pos) in pk_cols.iter().zip(&positions) {
            let cell = pos.and_then(|p| row.get(p));
            let src = match cell {
                // 0 on an AUTO_INCREMENT column also asks for a new id (without
                // NO_AUTO_VALUE_ON_ZERO, MySQL's default).
                Some(Cell::Value(Value::Int(0) | Value::UInt(0))) if pk.auto_increment => {
                    KeySource::Generated
                }
                Some(Cell::Value(v)) => KeySource::Explicit(FieldValue::from_mysql(v.clone(), pk)?),
                None | Some(Cell::Null | Cell::Default) if pk.auto_increment => KeySource::Generated,
                None | Some(Cell::Null | Cell::Default) => {
                    return Err(RmError::unsupported(
                        sql,
                        format!("no value for primary key column `{}`", pk.name),
                    ))
                }
                Some(Cell::Expr(e)) => {
                    return Err(RmError::unsupported(
                        sql,
                        format!("primary key `{}` from expression `{e}`; pass the value as a literal or parameter", pk.name),
                    ))
                }
            };
            key.push(src);
        }
        out.push(key);
    }
    // LAST_INSERT_ID() numbers only the generated rows, so rows with explicit ids between
    // them would shift the sequence.
    let generated = out
        .iter()
        .filter(|k| k.iter().any(|s| matches!(s, KeySource::Generated)))
        .count();
    if generated != 0 && generated != out.len() {
        return Err(RmError::unsupported(
            sql,
            "a multi-row INSERT mixing explicit and generated AUTO_INCREMENT keys",
        ));
    }
    Ok(out)
}
