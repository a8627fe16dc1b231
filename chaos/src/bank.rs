//! The two banks of the run, each a MySQL database with `account` (balances), `ledger` (one
//! row per leg of a transfer, written in the same local transaction as the balance change, so
//! the checker can tell which transfers are applied on which side), Seata's `undo_log` and the
//! TCC fence's `tcc_fence_log`.

use std::collections::HashMap;

use anyhow::Context;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, PoolConstraints, PoolOpts};
use seata_rm::at::undo::UNDO_LOG_DDL;
use seata_rm::tcc::TCC_FENCE_LOG_DDL;

/// Balances; `frozen` and `incoming` hold what a TCC try reserved (zero once phase two is
/// over, see `modes.rs`).
pub const ACCOUNT_DDL: &str = "CREATE TABLE account (id INT PRIMARY KEY, \
     balance BIGINT NOT NULL, frozen BIGINT NOT NULL DEFAULT 0, \
     incoming BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB";
/// One row per applied leg; the primary key is the transfer id.
pub const LEDGER_DDL: &str = "CREATE TABLE ledger (transfer_id BIGINT PRIMARY KEY, \
     account INT NOT NULL, delta BIGINT NOT NULL) ENGINE=InnoDB";

/// A leg: the balance change (run first) and its ledger row.
pub const MOVE: &str = "UPDATE account SET balance = balance + ? WHERE id = ?";
/// The ledger row of a leg.
pub const RECORD: &str = "INSERT INTO ledger (transfer_id, account, delta) VALUES (?, ?, ?)";

/// Parses a server URL such as `mysql://root@127.0.0.1:3306`.
pub fn server_opts(url: &str) -> anyhow::Result<Opts> {
    Opts::from_url(url).with_context(|| format!("--mysql {url:?} is not a mysql:// URL"))
}

/// Options for database `db` on `server` with at most `max_conns` pooled connections.
pub fn db_opts(server: &Opts, db: &str, max_conns: usize) -> anyhow::Result<Opts> {
    let constraints =
        PoolConstraints::new(1, max_conns.max(1)).context("pool size must be at least 1")?;
    Ok(OptsBuilder::from_opts(server.clone())
        .db_name(Some(db))
        .pool_opts(PoolOpts::default().with_constraints(constraints))
        .into())
}

/// Drops and creates `db` with the bank's tables and `accounts` accounts of `opening` each.
pub async fn create(server: &Opts, db: &str, accounts: i64, opening: i64) -> anyhow::Result<()> {
    let mut c = Conn::new(server.clone())
        .await
        .context("cannot connect to MySQL; is it running and is --mysql right?")?;
    c.query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
        .await?;
    c.query_drop(format!("CREATE DATABASE `{db}`")).await?;
    c.query_drop(format!("USE `{db}`")).await?;
    for ddl in [UNDO_LOG_DDL, ACCOUNT_DDL, LEDGER_DDL, TCC_FENCE_LOG_DDL] {
        c.query_drop(ddl)
            .await
            .with_context(|| format!("creating the tables of {db}"))?;
    }
    // Inserted in chunks: one statement per account would take seconds for large runs.
    let ids: Vec<i64> = (0..accounts).collect();
    for chunk in ids.chunks(1000) {
        let rows = chunk
            .iter()
            .map(|i| format!("({i}, {opening})"))
            .collect::<Vec<_>>()
            .join(",");
        c.query_drop(format!("INSERT INTO account (id, balance) VALUES {rows}"))
            .await?;
    }
    c.disconnect().await?;
    Ok(())
}

/// Drops `db`.
pub async fn drop_db(server: &Opts, db: &str) -> anyhow::Result<()> {
    let mut c = Conn::new(server.clone()).await?;
    c.query_drop(format!("DROP DATABASE IF EXISTS `{db}`"))
        .await?;
    c.disconnect().await?;
    Ok(())
}

/// What the checker reads from one bank.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Sum of all balances.
    pub total: i64,
    /// Balance per account.
    pub balances: HashMap<i64, i64>,
    /// Ledger rows: transfer id → (account, delta).
    pub ledger: HashMap<i64, (i64, i64)>,
    /// `undo_log` rows in status Normal (`log_status` 0), by XID.
    pub undo_by_xid: HashMap<String, i64>,
    /// Their number.
    pub undo: i64,
    /// `undo_log` rows with `log_status` 1 (GlobalFinished): the marker an RM writes when a
    /// rollback finds no undo log (phase one never committed, or an earlier rollback already
    /// undid it and the TC re-sent it after a crash), so that a late phase one cannot commit.
    /// They hold no pending work; like Seata, the age-based undo-log cleanup removes them.
    pub markers: i64,
}

/// Reads a bank's state.
pub async fn snapshot(server: &Opts, db: &str) -> anyhow::Result<Snapshot> {
    let mut c = Conn::new(db_opts(server, db, 1)?).await?;
    let balances: Vec<(i64, i64)> = c.query("SELECT id, balance FROM account").await?;
    let ledger: Vec<(i64, i64, i64)> = c
        .query("SELECT transfer_id, account, delta FROM ledger")
        .await?;
    let by_xid: Vec<(String, i64)> = c
        .query("SELECT xid, COUNT(*) FROM undo_log WHERE log_status = 0 GROUP BY xid")
        .await?;
    let markers: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM undo_log WHERE log_status = 1")
        .await?;
    c.disconnect().await?;
    Ok(Snapshot {
        markers: markers.unwrap_or(0),
        total: balances.iter().map(|(_, b)| b).sum(),
        balances: balances.into_iter().collect(),
        ledger: ledger.into_iter().map(|(t, a, d)| (t, (a, d))).collect(),
        undo: by_xid.iter().map(|(_, n)| n).sum(),
        undo_by_xid: by_xid.into_iter().collect(),
    })
}

/// Undo logs waiting for phase two: status 0 (Normal), not the GlobalFinished markers.
const PENDING_UNDO: &str = "SELECT COUNT(*) FROM undo_log WHERE log_status = 0";

/// Rows of `undo_log` waiting for phase two.
pub async fn undo_rows(server: &Opts, db: &str) -> anyhow::Result<i64> {
    let mut c = Conn::new(db_opts(server, db, 1)?).await?;
    let n: Option<i64> = c.query_first(PENDING_UNDO).await?;
    c.disconnect().await?;
    Ok(n.unwrap_or(0))
}
