//! The banks of the `transfer` example, one MySQL database each, taking part in a global
//! transaction in one of three modes: AT through the SQL proxy, TCC as fenced debit/credit
//! actions ([`tcc`]), or XA through the XA data source. `at_latency` borrows the TCC credit
//! action for its TCC branch.
//!
//! A bank only moves money on one account per transfer ([`Bank::apply`]); the transfer itself,
//! the TM and the bookkeeping live in the binary. Every mode uses one table,
//! [`ACCOUNT_DDL`]: `frozen` and `incoming` hold what a TCC branch has reserved and not yet
//! confirmed or cancelled, so they are zero in every mode once phase two is over.

pub mod tcc;

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, Pool};
use seata_rm::at::{AtConfig, DataSourceProxy};
use seata_rm::client::RmClient;
use seata_rm::xa::xid::BranchXid;
use seata_rm::xa::XaDataSource;

pub use tcc::{Credit, Debit, TccAccounts};

/// The account table of every bank.
pub const ACCOUNT_DDL: &str = "CREATE TABLE account (id INT PRIMARY KEY, \
     balance BIGINT NOT NULL, frozen BIGINT NOT NULL DEFAULT 0, \
     incoming BIGINT NOT NULL DEFAULT 0)";

/// An AT or XA leg: add `?` to account `?`.
const MOVE: &str = "UPDATE account SET balance = balance + ? WHERE id = ?";
const BALANCE: &str = "SELECT balance FROM account WHERE id = ?";

/// Why a transfer was rolled back on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The source account would go below zero.
    Overdrawn,
    /// `--fail-percent` picked this transfer.
    Injected,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Overdrawn => "insufficient funds",
            Refused::Injected => "injected failure",
        })
    }
}

impl std::error::Error for Refused {}

/// How a bank takes part in global transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An AT data source (undo log, TC row locks).
    At,
    /// Fenced TCC actions.
    Tcc,
    /// An XA data source.
    Xa,
}

/// One bank: its database in the mode it was opened in.
#[derive(Clone)]
pub enum Bank {
    /// AT mode (the data source keeps its AT manager alive for phase two).
    At(DataSourceProxy),
    /// TCC mode.
    Tcc(TccAccounts),
    /// XA mode.
    Xa(XaDataSource),
}

impl std::fmt::Debug for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bank::At(ds) => f.debug_tuple("At").field(ds).finish(),
            Bank::Tcc(t) => f.debug_tuple("Tcc").field(t).finish(),
            Bank::Xa(xa) => f.debug_tuple("Xa").field(xa).finish(),
        }
    }
}

impl Bank {
    /// Opens database `db` (options `opts`) as a `kind` resource of `rm`.
    pub async fn open(
        rm: &Arc<RmClient>,
        kind: Kind,
        db: &str,
        opts: Opts,
    ) -> anyhow::Result<Bank> {
        Ok(match kind {
            Kind::At => {
                // One AT manager per RM client: a second call returns the first.
                let at = rm.at(AtConfig::default())?;
                Bank::At(rm.at_data_source(&at, opts).await?)
            }
            Kind::Tcc => Bank::Tcc(TccAccounts::register(rm, db, Pool::new(opts)).await?),
            Kind::Xa => Bank::Xa(rm.xa_data_source(opts).await?),
        })
    }

    /// The mode's name.
    pub fn mode(&self) -> &'static str {
        match self {
            Bank::At(..) => "AT",
            Bank::Tcc(_) => "TCC",
            Bank::Xa(_) => "XA",
        }
    }

    /// A plain pool on the bank's database (outside any branch).
    pub fn pool(&self) -> &Pool {
        match self {
            Bank::At(ds) => ds.pool(),
            Bank::Tcc(t) => t.fence.pool(),
            Bank::Xa(xa) => xa.pool(),
        }
    }

    /// Adds `delta` to account `id` as this bank's branch of the current global transaction
    /// (or, outside one, as a local transaction). Taking money out fails with
    /// [`Refused::Overdrawn`] if the account would go below zero; the caller then rolls back.
    pub async fn apply(&self, id: usize, delta: i64) -> anyhow::Result<()> {
        match self {
            Bank::At(ds) => {
                // Its own local transaction and AT branch; the read sees our phase-one write.
                let mut conn = ds.get_conn().await?;
                conn.exec_drop(MOVE, (delta, id)).await?;
                if delta < 0 {
                    let left: Option<i64> = conn.exec_first(BALANCE, (id,)).await?;
                    if left.unwrap_or(0) < 0 {
                        return Err(Refused::Overdrawn.into());
                    }
                }
                Ok(())
            }
            Bank::Tcc(t) => t.apply(id, delta).await,
            Bank::Xa(xa) => {
                // XA START … XA END + XA PREPARE: the row stays locked until phase two.
                let mut conn = xa.begin().await?;
                conn.exec_drop(MOVE, (delta, id)).await?;
                if delta < 0 {
                    let left: Option<i64> = conn.exec_first(BALANCE, (id,)).await?;
                    if left.unwrap_or(0) < 0 {
                        conn.rollback().await?;
                        return Err(Refused::Overdrawn.into());
                    }
                }
                conn.commit().await?;
                Ok(())
            }
        }
    }

    /// Waits until phase two has left nothing behind: no `undo_log` rows (AT deletes them in
    /// the background after a commit), nothing `frozen` or `incoming` (TCC), no session held
    /// for an XA phase two; then checks that `XA RECOVER` lists no prepared branch begun by
    /// `tc` (an XA server lists every database's branches, so others' are left out).
    pub async fn settle(&self, tc: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut conn = self.pool().get_conn().await?;
        loop {
            let left: Option<(i64, i64, i64)> = conn
                .query_first(
                    "SELECT (SELECT COUNT(*) FROM undo_log), \
                     CAST(COALESCE(SUM(ABS(frozen)), 0) AS SIGNED), \
                     CAST(COALESCE(SUM(ABS(incoming)), 0) AS SIGNED) FROM account",
                )
                .await?;
            let (undo, frozen, incoming) = left.unwrap_or_default();
            let held = match self {
                Bank::Xa(xa) => xa.held_sessions().len(),
                _ => 0,
            };
            if (undo, frozen, incoming, held) == (0, 0, 0, 0) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} bank not settled after {timeout:?}: undo_log rows {undo}, frozen {frozen}, \
                     incoming {incoming}, XA sessions held {held}",
                    self.mode()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Bank::Xa(_) = self {
            let rows: Vec<(i64, i64, i64, Vec<u8>)> = conn.query("XA RECOVER").await?;
            let prefix = format!("{tc}:");
            let ours = rows
                .into_iter()
                .filter_map(|(f, g, b, data)| BranchXid::from_recover_row(f, g, b, &data))
                .filter(|bx| bx.global_xid().is_some_and(|x| x.starts_with(&prefix)))
                .count();
            if ours > 0 {
                bail!("XA RECOVER still lists {ours} prepared branches of TC {tc}");
            }
        }
        Ok(())
    }

    /// The money on the bank's accounts.
    pub async fn total(&self) -> anyhow::Result<i64> {
        let mut conn = self.pool().get_conn().await?;
        let sum: Option<i64> = conn
            .query_first("SELECT CAST(COALESCE(SUM(balance), 0) AS SIGNED) FROM account")
            .await?;
        Ok(sum.unwrap_or(0))
    }
}
