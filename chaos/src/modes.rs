//! The transaction modes a worker mixes (`--modes at,tcc,xa`): each transfer picks one
//! (seeded) and runs both legs in it.
//!
//! - AT: each leg an AT branch through the SQL proxy (`worker.rs`).
//! - TCC: bank A's leg is the fenced action `<db_a>.debit` (try takes the money off `balance`
//!   into `frozen` and writes the ledger row; confirm clears `frozen`; cancel gives the money
//!   back and deletes the ledger row), bank B's the fenced action `<db_b>.credit` (try books
//!   the amount as `incoming`; confirm moves it into `balance` and writes the ledger row;
//!   cancel drops it). The fence (`tcc_fence_log`, same local transaction as the SQL) makes
//!   phase two idempotent, a cancel without try a recorded no-op and a late try refused.
//! - XA: each leg (balance change and ledger row) one XA branch of the bank's XA data source.
//!
//! So once phase two is over, in every mode a leg is applied exactly when its ledger row
//! exists, and the checker's ledger rules hold unchanged.
//!
//! Each mode moves money only on its own accounts (`id % modes == index`): AT's rollback
//! restores a before image guarded by the TC's row locks, which TCC and XA writes do not take,
//! so sharing rows across modes would make AT rollbacks dirty (a limit of mixing modes in
//! Seata, not something this run tests).

use std::fmt;

use anyhow::bail;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use seata_rm::tcc::{ActionError, BusinessActionContext, TccAction};
use seata_rm::xa::xid::BranchXid;

use crate::bank::{db_opts, RECORD};

/// A transaction mode of the transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// AT branches (undo log, TC row locks).
    At,
    /// Fenced TCC actions.
    Tcc,
    /// XA branches.
    Xa,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::At => "at",
            Mode::Tcc => "tcc",
            Mode::Xa => "xa",
        })
    }
}

/// Parses `--modes`: a comma list of `at`, `tcc`, `xa` (no duplicates, at least one).
pub fn parse_modes(s: &str) -> anyhow::Result<Vec<Mode>> {
    let mut modes = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let m = match part.to_ascii_lowercase().as_str() {
            "at" => Mode::At,
            "tcc" => Mode::Tcc,
            "xa" => Mode::Xa,
            "saga" => bail!("--modes: saga is not supported (DTM-style mode, out of scope)"),
            other => bail!("--modes: unknown mode {other:?} (expected at, tcc, xa)"),
        };
        if modes.contains(&m) {
            bail!("--modes: {m} given twice");
        }
        modes.push(m);
    }
    if modes.is_empty() {
        bail!("--modes: give at least one of at, tcc, xa");
    }
    Ok(modes)
}

/// The comma list of `modes` (the inverse of [`parse_modes`]).
pub fn modes_arg(modes: &[Mode]) -> String {
    modes
        .iter()
        .map(Mode::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Picks a transfer's mode and its two accounts (each in `0..accounts`, in the mode's share:
/// `id % modes.len()` is the mode's index). With one mode this draws exactly what the AT-only
/// worker drew, so a seed replays the same transfers.
pub fn pick(rng: &mut fastrand::Rng, modes: &[Mode], accounts: i64) -> (Mode, i64, i64) {
    let n = modes.len().max(1) as i64;
    let index = if n == 1 { 0 } else { rng.usize(..modes.len()) };
    let mode = modes.get(index).copied().unwrap_or(Mode::At);
    let index = index as i64;
    // Accounts of this mode: index, index + n, ...; at least one even if accounts < n.
    let share = ((accounts - index + n - 1) / n).max(1);
    let mut account = || rng.i64(0..share) * n + index;
    let (a, b) = (account(), account());
    (mode, a, b)
}

/// The parameters of both TCC actions.
fn params(ctx: &BusinessActionContext) -> Result<(i64, i64, i64), ActionError> {
    Ok((
        ctx.param("transfer")?,
        ctx.param("account")?,
        ctx.param("amount")?,
    ))
}

/// Bank A's TCC leg: takes `amount` off the account.
#[derive(Debug, Clone, Copy, Default)]
pub struct Debit;

impl TccAction for Debit {
    async fn prepare(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        let (id, account, amount) = params(ctx)?;
        let c = ctx.connection()?;
        c.exec_drop(
            "UPDATE account SET balance = balance - ?, frozen = frozen + ? WHERE id = ?",
            (amount, amount, account),
        )
        .await?;
        c.exec_drop(RECORD, (id, account, -amount)).await?;
        Ok(())
    }

    async fn commit(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        let (_, account, amount) = params(ctx)?;
        ctx.connection()?
            .exec_drop(
                "UPDATE account SET frozen = frozen - ? WHERE id = ?",
                (amount, account),
            )
            .await?;
        Ok(())
    }

    async fn rollback(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        // The fence runs this only after a try that committed.
        let (id, account, amount) = params(ctx)?;
        let c = ctx.connection()?;
        c.exec_drop(
            "UPDATE account SET balance = balance + ?, frozen = frozen - ? WHERE id = ?",
            (amount, amount, account),
        )
        .await?;
        c.exec_drop("DELETE FROM ledger WHERE transfer_id = ?", (id,))
            .await?;
        Ok(())
    }
}

/// Bank B's TCC leg: adds `amount` to the account.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credit;

impl TccAction for Credit {
    async fn prepare(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        let (_, account, amount) = params(ctx)?;
        ctx.connection()?
            .exec_drop(
                "UPDATE account SET incoming = incoming + ? WHERE id = ?",
                (amount, account),
            )
            .await?;
        Ok(())
    }

    async fn commit(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        let (id, account, amount) = params(ctx)?;
        let c = ctx.connection()?;
        c.exec_drop(
            "UPDATE account SET balance = balance + ?, incoming = incoming - ? WHERE id = ?",
            (amount, amount, account),
        )
        .await?;
        c.exec_drop(RECORD, (id, account, amount)).await?;
        Ok(())
    }

    async fn rollback(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        let (_, account, amount) = params(ctx)?;
        ctx.connection()?
            .exec_drop(
                "UPDATE account SET incoming = incoming - ? WHERE id = ?",
                (amount, account),
            )
            .await?;
        Ok(())
    }
}

/// What TCC and XA left in one bank after the run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Leftovers {
    /// `tcc_fence_log` rows still `tried` (1): a try whose phase two never ran. Committed,
    /// rollbacked and suspended rows are the fence's design (kept until its cleanup).
    pub fence_tried: i64,
    /// Sum of `|frozen|` and `|incoming|`: money a TCC try reserved and nothing finished.
    pub reserved: i64,
}

/// Reads a bank's TCC leftovers.
pub async fn leftovers(server: &Opts, db: &str) -> anyhow::Result<Leftovers> {
    let mut c = Conn::new(db_opts(server, db, 1)?).await?;
    let tried: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM tcc_fence_log WHERE status = 1")
        .await?;
    let reserved: Option<i64> = c
        .query_first(
            "SELECT CAST(COALESCE(SUM(ABS(frozen) + ABS(incoming)), 0) AS SIGNED) FROM account",
        )
        .await?;
    c.disconnect().await?;
    Ok(Leftovers {
        fence_tried: tried.unwrap_or(0),
        reserved: reserved.unwrap_or(0),
    })
}

/// Prepared XA branches (`XA RECOVER`, Seata's format) begun by one of the TCs `tcs`
/// (`ip:port`): the server lists every database's branches, and a run's XIDs name its TCs.
pub async fn xa_prepared(server: &Opts, tcs: &[String]) -> anyhow::Result<Vec<String>> {
    let mut c = Conn::new(server.clone()).await?;
    let rows: Vec<(i64, i64, i64, Vec<u8>)> = c.query("XA RECOVER").await?;
    c.disconnect().await?;
    Ok(rows
        .into_iter()
        .filter_map(|(f, g, b, data)| BranchXid::from_recover_row(f, g, b, &data))
        .filter(|bx| {
            bx.global_xid().is_some_and(|x| {
                x.rsplit_once(':')
                    .is_some_and(|(tc, _)| tcs.iter().any(|t| t == tc))
            })
        })
        .map(|bx| bx.key())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        assert_eq!(parse_modes("at").unwrap(), vec![Mode::At]);
        assert_eq!(
            parse_modes("at, TCC,xa").unwrap(),
            vec![Mode::At, Mode::Tcc, Mode::Xa]
        );
        assert_eq!(modes_arg(&parse_modes("xa,at").unwrap()), "xa,at");
        assert!(parse_modes("").is_err());
        assert!(parse_modes("at,at").is_err());
        assert!(parse_modes("at,bogus").is_err());
        let saga = parse_modes("at,saga").unwrap_err().to_string();
        assert!(saga.contains("saga"), "{saga}");
    }

    #[test]
    fn picks_are_seeded_and_stay_in_the_mode_share() {
        let modes = [Mode::At, Mode::Tcc, Mode::Xa];
        let draw = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..300)
                .map(|_| pick(&mut rng, &modes, 100))
                .collect::<Vec<_>>()
        };
        let picks = draw(5);
        assert_eq!(picks, draw(5));
        for m in modes {
            assert!(picks.iter().any(|p| p.0 == m), "{m} never picked");
        }
        for (mode, a, b) in picks {
            let index = modes.iter().position(|m| *m == mode).unwrap() as i64;
            for account in [a, b] {
                assert!((0..100).contains(&account));
                assert_eq!(account % 3, index);
            }
        }
        // One mode: the same draws as the AT-only worker (two accounts in 0..accounts).
        let mut r1 = fastrand::Rng::with_seed(9);
        let mut r2 = fastrand::Rng::with_seed(9);
        let (m, a, b) = pick(&mut r1, &[Mode::At], 1000);
        assert_eq!((m, a, b), (Mode::At, r2.i64(0..1000), r2.i64(0..1000)));
    }
}
