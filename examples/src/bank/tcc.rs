//! The TCC side of a bank: a fenced `debit` action (prepare freezes the amount, commit drops
//! it from `frozen`, rollback gives it back) and a fenced `credit` action (prepare books it
//! as `incoming`, commit moves it into `balance`, rollback drops it). Both run their SQL on the
//! fence's connection, so each phase and its `tcc_fence_log` row commit together: a repeated
//! commit or rollback does nothing, a rollback without prepare only records itself, and a
//! prepare after that rollback is refused (see `seata_rm::tcc::fence`).

use serde_json::json;

use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use seata_rm::client::RmClient;
use seata_rm::error::RmError;
use seata_rm::tcc::{ActionError, BusinessActionContext, TccAction, TccActionRef, TccFence};

use super::Refused;

/// The parameters both actions are called with: `{"id": account, "amount": money}`.
fn params(ctx: &BusinessActionContext) -> Result<(i64, i64), ActionError> {
    Ok((ctx.param("id")?, ctx.param("amount")?))
}

/// Runs `sql` with `(amount, [amount,] id)` on the fenced phase's connection.
async fn run(ctx: &mut BusinessActionContext, sql: &str) -> Result<u64, ActionError> {
    let (id, amount) = params(ctx)?;
    let conn = ctx.connection()?;
    if sql.matches('?').count() == 3 {
        conn.exec_drop(sql, (amount, amount, id)).await?;
    } else {
        conn.exec_drop(sql, (amount, id)).await?;
    }
    Ok(conn.affected_rows())
}

/// Takes money out of an account: freeze, then confirm or cancel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Debit;

impl TccAction for Debit {
    async fn prepare(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        let (id, amount) = params(ctx)?;
        let conn = ctx.connection()?;
        conn.exec_drop(
            "UPDATE account SET balance = balance - ?, frozen = frozen + ? \
             WHERE id = ? AND balance >= ?",
            (amount, amount, id, amount),
        )
        .await?;
        if conn.affected_rows() == 0 {
            // The fence's local transaction rolls back; the call fails and the TM rolls back.
            return Err(Box::new(Refused::Overdrawn));
        }
        Ok(())
    }

    async fn commit(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        run(ctx, "UPDATE account SET frozen = frozen - ? WHERE id = ?").await?;
        Ok(())
    }

    async fn rollback(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        // The fence runs this only after a prepare that committed, so the money is frozen.
        run(
            ctx,
            "UPDATE account SET balance = balance + ?, frozen = frozen - ? WHERE id = ?",
        )
        .await?;
        Ok(())
    }
}

/// Puts money into an account: book as incoming, then confirm or cancel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credit;

impl TccAction for Credit {
    async fn prepare(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        run(
            ctx,
            "UPDATE account SET incoming = incoming + ? WHERE id = ?",
        )
        .await?;
        Ok(())
    }

    async fn commit(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        run(
            ctx,
            "UPDATE account SET balance = balance + ?, incoming = incoming - ? WHERE id = ?",
        )
        .await?;
        Ok(())
    }

    async fn rollback(&self, ctx: &mut BusinessActionContext) -> Result<(), ActionError> {
        run(
            ctx,
            "UPDATE account SET incoming = incoming - ? WHERE id = ?",
        )
        .await?;
        Ok(())
    }
}

/// A bank's two fenced actions over one database.
#[derive(Debug, Clone)]
pub struct TccAccounts {
    /// `<db>.debit`.
    pub debit: TccActionRef,
    /// `<db>.credit`.
    pub credit: TccActionRef,
    /// The fence (and the pool the phases run on).
    pub fence: TccFence,
}

impl TccAccounts {
    /// Creates the fence table in `pool`'s database `db` and registers both actions. Their
    /// names carry the database, as an action name is a resource id: two banks (or two runs
    /// against one TC) must not share one.
    pub async fn register(
        rm: &std::sync::Arc<RmClient>,
        db: &str,
        pool: Pool,
    ) -> anyhow::Result<Self> {
        let fence = TccFence::new(pool);
        fence.create_table().await?;
        Ok(TccAccounts {
            debit: rm
                .tcc_fenced(&format!("{db}.debit"), Debit, fence.clone())
                .await?,
            credit: rm
                .tcc_fenced(&format!("{db}.credit"), Credit, fence.clone())
                .await?,
            fence,
        })
    }

    /// Calls `debit` (a negative `delta`) or `credit` on account `id`; a refused freeze comes
    /// back as [`Refused::Overdrawn`].
    pub async fn apply(&self, id: usize, delta: i64) -> anyhow::Result<()> {
        let params = json!({"id": id, "amount": delta.abs()});
        let action = if delta < 0 { &self.debit } else { &self.credit };
        match action.call(params).await {
            Ok(_) => Ok(()),
            Err(RmError::TccPrepare { source, .. }) if source.is::<Refused>() => {
                Err(Refused::Overdrawn.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Fence rows by status (`tried`, `committed`, `rollbacked`, `suspended`).
    pub async fn fence_rows(&self) -> anyhow::Result<[i64; 4]> {
        let mut conn = self.fence.pool().get_conn().await?;
        let rows: Vec<(i64, i64)> = conn
            .query("SELECT status, COUNT(*) FROM tcc_fence_log GROUP BY status")
            .await?;
        let mut counts = [0; 4];
        for (status, n) in rows {
            if let Some(slot) = usize::try_from(status - 1)
                .ok()
                .and_then(|i| counts.get_mut(i))
            {
                *slot = n;
            }
        }
        Ok(counts)
    }
}
