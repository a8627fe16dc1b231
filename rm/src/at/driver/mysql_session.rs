//! What an [`AtConnection`](crate::at::AtConnection) knows about its MySQL session (the
//! server's connection state, not a Seata session), so that AT mode
//! skips the round trips whose answers it already has:
//!
//! - the **current database**, for statements that name no schema: the data source's configured
//!   database (`Opts::db_name`) until a statement may have changed it, then `SELECT DATABASE()`
//!   once;
//! - whether the proxy itself turned the session's **autocommit** off, so that the next
//!   statement it images opens its local transaction implicitly instead of paying a
//!   `START TRANSACTION`; it is turned back on before the next statement the application sends
//!   outside a local transaction;
//! - `@@auto_increment_increment`, needed to number the rows of a multi-row INSERT.
//!
//! Knowledge is dropped whenever a statement the application sent might have changed it. Every
//! application statement is scanned for the words `USE`, `DATABASE`/`SCHEMA` (dropping the
//! current database makes it NULL) and `auto_increment_increment`; comments and string literals
//! are not skipped, so the scan errs towards a false alarm, which costs one query, never towards
//! a miss. Statements sent through [`AtConnection::raw`](crate::at::AtConnection::raw) cannot be
//! seen, so taking `raw()` forgets the database and the increment; autocommit is always checked
//! against the status flags of the server's last OK packet before it is relied on.
//!
//! A pooled session keeps its current database across checkouts (`COM_RESET_CONNECTION` does not
//! reset it), so a connection returned while in another database is remembered by its
//! connection id in the data source and its next user queries the database again.

use mysql_async::consts::StatusFlags;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use sqlparser::ast::{ObjectNamePart, Statement, Use};

use crate::at::model::recognize::parse;
use crate::error::RmError;

/// How the next local transaction the proxy opens on its own starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxStart {
    /// Autocommit is off (the proxy turned it off) and no transaction is open: the first
    /// statement opens one, no round trip.
    Implicit,
    /// Autocommit is on: `SET autocommit = 0` now, so later statements start implicitly.
    DisableAutocommit,
    /// Anything else (state unknown, a transaction already open, autocommit turned off by the
    /// application): an explicit `START TRANSACTION`, as before.
    Explicit,
}

/// The session facts a proxied connection caches (see the module docs).
#[derive(Debug)]
pub(crate) struct MysqlSession {
    /// The current database; `None` when it must be asked for.
    db: Option<Option<String>>,
    /// Set while the session's autocommit is off because the proxy turned it off.
    autocommit_off: bool,
    /// `@@auto_increment_increment`, once read.
    auto_increment_step: Option<u64>,
}

/// What a statement the application sent may have changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Touches {
    database: bool,
    auto_increment: bool,
}

/// Scans `sql` for words of statements that change the session facts we cache.
fn touches(sql: &str) -> Touches {
    let mut t = Touches::default();
    let words = sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'));
    for w in words {
        if ["use", "database", "schema"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
        {
            t.database = true;
        } else if w.eq_ignore_ascii_case("auto_increment_increment") {
            t.auto_increment = true;
        }
    }
    t
}

/// The database a lone `USE db` selects, if `sql` is exactly that.
fn use_target(sql: &str) -> Option<String> {
    let first = sql.split_whitespace().next()?;
    if !first.eq_ignore_ascii_case("use") {
        return None;
    }
    let stmts = parse(sql).ok()?;
    let [Statement::Use(Use::Object(name))] = stmts.as_slice() else {
        return None;
    };
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(db)] => Some(db.value.clone()),
        _ => None,
    }
}

fn status(conn: &Conn) -> Option<StatusFlags> {
    conn.last_ok_packet().map(|ok| ok.status_flags())
}

impl MysqlSession {
    /// The facts for a connection just taken from a pool; `assumed_db` is the database it is
    /// known to be in, if known (`DataSource::assumed_db`).
    pub(crate) fn new(assumed_db: Option<Option<String>>) -> Self {
        MysqlSession {
            db: assumed_db,
            autocommit_off: false,
            auto_increment_step: None,
        }
    }

    /// Records that the application sent `sql` (`ok`: whether it succeeded).
    pub(crate) fn observe(&mut self, sql: &str, ok: bool) {
        let t = touches(sql);
        if t.database {
            // A failed USE leaves the database as it was, but a failed multi-statement string
            // may have run its USE first: only a successful lone USE is taken at its word.
            self.db = if ok { use_target(sql).map(Some) } else { None };
        }
        if t.auto_increment {
            self.auto_increment_step = None;
        }
    }

    /// Forgets what statements sent around the proxy could change.
    pub(crate) fn forget(&mut self) {
        self.db = None;
        self.auto_increment_step = None;
    }

    /// Whether the current database is known to be the data source's configured one.
    pub(crate) fn in_default_db(&self, default_db: &Option<String>) -> bool {
        self.db.as_ref().is_some_and(|db| db == default_db)
    }

    /// The session's current database, asked for only when unknown.
    pub(crate) async fn current_db(&mut self, conn: &mut Conn) -> Result<Option<String>, RmError> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        let db = current_db(conn).await?;
        self.db = Some(db.clone());
        Ok(db)
    }

    /// How to open the next local transaction the proxy starts for an autocommit statement.
    /// Reads the autocommit and in-transaction flags of the server's last OK packet, so a
    /// change made around the proxy is never missed.
    pub(crate) fn tx_start(&mut self, conn: &Conn) -> TxStart {
        let Some(flags) = status(conn) else {
            return TxStart::Explicit;
        };
        if flags.contains(StatusFlags::SERVER_STATUS_IN_TRANS) {
            return TxStart::Explicit;
        }
        if flags.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT) {
            self.autocommit_off = false;
            TxStart::DisableAutocommit
        } else if self.autocommit_off {
            TxStart::Implicit
        } else {
            // The application turned autocommit off itself: leave its setting alone.
            TxStart::Explicit
        }
    }

    /// Records that `SET autocommit = 0` succeeded.
    pub(crate) fn autocommit_disabled(&mut self) {
        self.autocommit_off = true;
    }

    /// Whether autocommit must be turned back on before an application statement that runs
    /// outside any local transaction: only when the proxy turned it off and the server still
    /// reports it off.
    pub(crate) fn must_restore_autocommit(&mut self, conn: &Conn) -> bool {
        if !self.autocommit_off {
            return false;
        }
        if status(conn).is_some_and(|f| f.contains(StatusFlags::SERVER_STATUS_AUTOCOMMIT)) {
            self.autocommit_off = false;
            return false;
        }
        true
    }

    /// Records that `SET autocommit = 1` succeeded.
    pub(crate) fn autocommit_restored(&mut self) {
        self.autocommit_off = false;
    }

    /// Whether the proxy left autocommit off (the pool must then reset the session).
    pub(crate) fn autocommit_off(&self) -> bool {
        self.autocommit_off
    }

    /// `@@auto_increment_increment`, read once per connection.
    pub(crate) async fn auto_increment_step(&mut self, conn: &mut Conn) -> Result<u64, RmError> {
        if let Some(step) = self.auto_increment_step {
            return Ok(step);
        }
        let step: Option<u64> = conn
            .query_first("SELECT @@auto_increment_increment")
            .await?;
        let step = step.unwrap_or(1).max(1);
        self.auto_increment_step = Some(step);
        Ok(step)
    }
}

/// `SELECT DATABASE()`.
pub(crate) async fn current_db(conn: &mut Conn) -> Result<Option<String>, RmError> {
    Ok(conn
        .query_first::<Option<String>, _>("SELECT DATABASE()")
        .await?
        .flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_flags_database_changes() {
        for sql in [
            "USE other",
            "use `other`",
            "/* x */ USE other",
            "SELECT 1; USE other",
            "DROP DATABASE d",
            "drop schema d",
        ] {
            assert!(touches(sql).database, "{sql}");
        }
        for sql in [
            "UPDATE t SET user_id = 1 WHERE used = 2",
            "SELECT * FROM users",
        ] {
            assert!(!touches(sql).database, "{sql}");
        }
    }

    #[test]
    fn scan_flags_increment_changes() {
        assert!(touches("SET @@session.auto_increment_increment = 5").auto_increment);
        assert!(touches("set auto_increment_increment=2").auto_increment);
        assert!(!touches("SET auto_increment_offset = 2").auto_increment);
    }

    #[test]
    fn only_a_lone_use_names_its_database() {
        assert_eq!(use_target("USE other").as_deref(), Some("other"));
        assert_eq!(use_target("  use `my db` ").as_deref(), Some("my db"));
        assert_eq!(use_target("USE a; SELECT 1"), None);
        assert_eq!(use_target("DROP DATABASE a"), None);
        assert_eq!(use_target("USE a.b"), None);
    }
}
