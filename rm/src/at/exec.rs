//! Statement execution inside a global transaction (at-mode.md 3.2, 3.4): before image →
//! statement → after image → undo item and lock key, plus the autocommit retry loop and
//! `SELECT ... FOR UPDATE`'s global-lock check.
//!
//! Everything that can refuse a statement (metadata, key columns, INSERT key sources) runs
//! before the statement does. INSERT keys: explicit values come from the statement; generated
//! ones are `LAST_INSERT_ID()` + i × `@@auto_increment_increment` for every row of a
//! multi-row insert (Seata 1.2 images only the first row), and the after image must find
//! exactly the inserted rows or the statement fails.

use std::sync::Arc;

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Params, Value};
use tracing::debug;

use super::connection::{register, AtConnection, Protocol};
use super::image::{select_by_keys, select_for_update, TableRecords};
use super::lock_key;
use super::meta::TableMeta;
use super::recognize::{Cell, InsertStmt, Recognized, SelectStmt, TableRef};
use super::undo::{SqlType, SqlUndoLog};
use super::value::FieldValue;
use crate::error::RmError;

const SAVEPOINT: &str = "seata_select_for_update";

/// Where one row's value for one primary key column comes from.
#[derive(Debug)]
enum KeySource {
    Explicit(FieldValue),
    Generated,
}

/// What the statement's before phase found, needed again after it runs.
struct Prepared {
    sql_type: SqlType,
    meta: Arc<TableMeta>,
    table: TableRef,
    columns: Vec<String>,
    before: TableRecords,
    /// INSERT only: per row, per primary key column (key order).
    insert_keys: Vec<Vec<KeySource>>,
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
        let prepared = self.prepare(sql, rec).await?;
        self.execute_prepared(sql, params, protocol, prepared).await
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

    /// Runs the statement whose before phase is done, then adds its undo item and lock key to
    /// the local transaction.
    async fn execute_prepared<T: FromRow + Send + 'static>(
        &mut self,
        sql: &str,
        params: Params,
        protocol: Protocol,
        prepared: Prepared,
    ) -> Result<Vec<T>, RmError> {
        let rows = self.raw_run(sql, params, protocol).await?;
        match self.finish(prepared).await {
            Ok(Some((item, key))) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.undo.push(item);
                    tx.keys.add(key);
                }
            }
            Ok(None) => {}
            Err(e) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.poisoned = Some(e.to_string());
                }
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
    /// The local transaction holds this one statement, so for a DELETE or a one-row UPDATE the
    /// branch's lock key is known from the before image (an UPDATE may not change the key, so
    /// its after image has the same row) and the branch is registered while the statement and
    /// the after image run, taking the TC round trip off the critical path. Seata registers after
    /// them; the order does not matter to the TC, which sees the same lock key, and the rows
    /// are already locked locally by the before image's `FOR UPDATE`. The key the after image
    /// gives is still compared with the registered one. If the statement then fails, the
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
        let prepared = self.prepare(sql, rec).await?;
        // Seata takes a DELETE's key from the before image and an UPDATE's from the after
        // image, whose row order may differ from the before image's (ORDER BY ... DESC): with
        // one row the strings cannot differ.
        let early_key = match prepared.sql_type {
            SqlType::Delete => lock_key::build(&prepared.meta, &prepared.before)?,
            SqlType::Update if prepared.before.rows.len() == 1 => {
                lock_key::build(&prepared.meta, &prepared.before)?
            }
            SqlType::Update | SqlType::Insert => None,
        };
        let Some(key) = early_key else {
            let rows = self
                .execute_prepared(sql, params, protocol, prepared)
                .await?;
            let tx = self.tx.take().unwrap_or_default();
            self.commit_tx(tx).await?;
            return Ok(rows);
        };
        let inner = self.ds.inner.clone();
        let table = prepared.meta.name.clone();
        let (ran, registered) = tokio::join!(
            self.execute_prepared::<T>(sql, params, protocol, prepared),
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
        if tx.poisoned.is_some() || found != key {
            self.fail_registered(xid, branch_id).await;
            return Err(RmError::ImageMismatch {
                table,
                reason: format!("registered lock key `{key}` but the after image gives `{found}`"),
            });
        }
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
    async fn table_meta(&mut self, sql: &str, table: &TableRef) -> Result<Arc<TableMeta>, RmError> {
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

    async fn prepare(&mut self, sql: &str, rec: &Recognized) -> Result<Prepared, RmError> {
        let (sql_type, table) = match rec {
            Recognized::Insert(i) => (SqlType::Insert, &i.table),
            Recognized::Update(u) => (SqlType::Update, &u.table),
            Recognized::Delete(d) => (SqlType::Delete, &d.table),
            _ => return Err(RmError::unsupported(sql, "not a DML statement")),
        };
        let meta = self.table_meta(sql, table).await?;
        let all: Vec<String> = meta.columns.iter().map(|c| c.name.clone()).collect();
        let mut prepared = Prepared {
            sql_type,
            meta: meta.clone(),
            table: table.clone(),
            columns: all,
            before: TableRecords::empty(&meta),
            insert_keys: Vec::new(),
        };
        match rec {
            Recognized::Insert(i) => prepared.insert_keys = insert_keys(sql, &meta, i)?,
            Recognized::Update(u) => {
                // The image holds the key and the SET columns only (at-mode.md 3.4).
                let mut columns = meta.primary_keys.clone();
                for c in &u.columns {
                    if meta.is_primary_key(c) {
                        return Err(RmError::unsupported(
                            sql,
                            format!("UPDATE of primary key column `{c}`; delete and insert the row instead"),
                        ));
                    }
                    let col = meta.column(c).ok_or_else(|| RmError::Value {
                        column: c.clone(),
                        reason: format!("no such column in `{}`", meta.name),
                    })?;
                    columns.push(col.name.clone());
                }
                prepared.before = select_for_update(
                    &mut self.conn,
                    &meta,
                    &u.table.from_sql(),
                    &columns,
                    &u.filter,
                )
                .await?;
                prepared.columns = columns;
            }
            Recognized::Delete(d) => {
                prepared.before = select_for_update(
                    &mut self.conn,
                    &meta,
                    &d.table.from_sql(),
                    &prepared.columns,
                    &d.filter,
                )
                .await?;
            }
            _ => {}
        }
        Ok(prepared)
    }

    /// After image, undo item and lock key; `None` when the statement changed nothing.
    async fn finish(&mut self, p: Prepared) -> Result<Option<(SqlUndoLog, String)>, RmError> {
        let from = p.table.name.to_string();
        let after = match p.sql_type {
            SqlType::Delete => TableRecords::empty(&p.meta),
            SqlType::Update if p.before.is_empty() => TableRecords::empty(&p.meta),
            SqlType::Update => {
                let keys = p.before.key_values(&p.meta)?;
                select_by_keys(&mut self.conn, &p.meta, &from, &p.columns, &keys, false).await?
            }
            SqlType::Insert => {
                let keys = self.inserted_keys(&p).await?;
                let after =
                    select_by_keys(&mut self.conn, &p.meta, &from, &p.columns, &keys, false)
                        .await?;
                if after.rows.len() != keys.len() {
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
            table_name: from,
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

    /// `SELECT ... FOR UPDATE` in a global transaction (at-mode.md 3.4): run it, then ask
    /// the TC whether another global transaction holds the selected rows; if so undo the
    /// local locks (savepoint or rollback), wait and retry.
    pub(crate) async fn select_for_update<T: FromRow + Send + 'static>(
        &mut self,
        xid: &str,
        sql: &str,
        params: Params,
        protocol: Protocol,
        s: &SelectStmt,
    ) -> Result<Vec<T>, RmError> {
        let inner = self.ds.inner.clone();
        let meta = self.table_meta(sql, &s.table).await?;
        let standalone = self.tx.is_none();
        let start = if standalone {
            "START TRANSACTION".to_string()
        } else {
            format!("SAVEPOINT {SAVEPOINT}")
        };
        self.conn.query_drop(start.as_str()).await?;
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let step = async {
                let rows = self.raw_run::<T>(sql, params.clone(), protocol).await?;
                let pks = select_for_update(
                    &mut self.conn,
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
                    self.conn.query_drop(undo_locks.as_str()).await?;
                    tokio::time::sleep(inner.config.lock_retry_interval).await;
                    if standalone {
                        self.conn.query_drop("START TRANSACTION").await?;
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
        self.conn.query_drop(end.as_str()).await?;
        result
    }
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
