//! [`ConnState`]: the raw `mysql_async` connection of an [`AtConnection`](crate::at::AtConnection)
//! with what the proxy tracks beside it: the resource it belongs to, its MySQL session facts,
//! the open local transaction and the last statement's OK packet. The statement paths
//! (`dml.rs`, `batch.rs`, `for_update.rs`, `commit.rs`) work on it, so `AtConnection` itself
//! stays the public surface in `connection.rs`.

use std::sync::Arc;

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, Params};
use tracing::warn;

use super::mysql_session::MysqlSession;
use super::resource::DataSourceProxy;
use crate::at::model::local_tx::LocalTx;
use crate::at::model::statement::TableRef;
use crate::at::model::table_meta::TableMeta;
use crate::error::RmError;

/// How the caller sent the statement (text protocol without parameters, or prepared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Text,
    Binary,
}

/// A proxied connection's state (see the module docs).
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) conn: Conn,
    pub(crate) ds: DataSourceProxy,
    pub(crate) tx: Option<LocalTx>,
    pub(crate) affected: u64,
    pub(crate) insert_id: Option<u64>,
    pub(crate) session: MysqlSession,
}

impl ConnState {
    pub(crate) fn new(conn: Conn, ds: DataSourceProxy) -> Self {
        let session = MysqlSession::new(ds.inner.assumed_db(&conn));
        ConnState {
            conn,
            ds,
            tx: None,
            affected: 0,
            insert_id: None,
            session,
        }
    }

    /// Sends the statement as the application would have, recording its OK packet and what it
    /// may have changed in the session.
    pub(crate) async fn raw_run<T: FromRow + Send + 'static>(
        &mut self,
        sql: &str,
        params: Params,
        protocol: Protocol,
    ) -> Result<Vec<T>, RmError> {
        let rows = match protocol {
            Protocol::Text => self.conn.query(sql).await,
            Protocol::Binary => self.conn.exec(sql, params).await,
        };
        self.session.observe(sql, rows.is_ok());
        if let Err(e) = &rows {
            self.note_failure(e);
        }
        let rows = rows?;
        self.affected = self.conn.affected_rows();
        self.insert_id = self.conn.last_insert_id();
        Ok(rows)
    }

    /// A deadlock makes MySQL roll back the whole transaction, not just the statement: the
    /// undo items collected so far describe changes that are gone (and with autocommit on,
    /// what follows would commit on its own), so the local transaction may only roll back.
    pub(crate) fn note_failure(&mut self, e: &mysql_async::Error) {
        const ER_LOCK_DEADLOCK: u16 = 1213;
        if let (mysql_async::Error::Server(s), Some(tx)) = (e, self.tx.as_mut()) {
            if s.code == ER_LOCK_DEADLOCK {
                tx.poisoned = Some(format!(
                    "MySQL rolled it back after a deadlock ({})",
                    s.message
                ));
            }
        }
    }

    /// The application's statement failed (nothing of it took effect).
    pub(crate) fn statement_failed(&mut self, sql: &str, e: mysql_async::Error) -> RmError {
        self.session.observe(sql, false);
        self.note_failure(&e);
        e.into()
    }

    /// Turns the session's autocommit back on if the proxy turned it off.
    pub(crate) async fn restore_session(&mut self) -> Result<(), RmError> {
        if self.tx.is_none() && self.session.must_restore_autocommit(&self.conn) {
            self.conn.query_drop("SET autocommit = 1").await?;
            self.session.autocommit_restored();
        }
        Ok(())
    }

    /// Ends the local transaction without a word to the TC; a failure is only logged (the
    /// pool's reset rolls back whatever is left).
    pub(crate) async fn rollback_quietly(&mut self) {
        self.tx = None;
        if let Err(e) = self.conn.query_drop("ROLLBACK").await {
            warn!(error = %e, "local rollback failed");
        }
    }

    /// Joins the open local transaction to `xid` (at-mode.md 3.1: one XID per local
    /// transaction).
    pub(crate) fn bind_xid(&mut self, xid: &str) -> Result<(), RmError> {
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
    pub(crate) fn poison(&mut self, e: &RmError) {
        if let Some(tx) = self.tx.as_mut() {
            tx.poisoned = Some(format!("a statement failed after it ran: {e}"));
        }
    }

    /// The metadata of the statement's table, resolved in the session's database when the SQL
    /// names no schema.
    ///
    /// The session must be in the resource's own database: phase two reads the undo log and
    /// resolves unqualified table names there, and statements the proxy prepared keep the
    /// database they were prepared in. After a `USE` of another database, imaging would write
    /// an undo log phase two never finds, so the statement is refused before it runs.
    pub(crate) async fn table_meta(
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
}
