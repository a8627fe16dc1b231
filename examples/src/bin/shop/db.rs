//! The three databases (`<prefix>_order`, `<prefix>_stock`, `<prefix>_account`): created with
//! their business table, DTM's barrier table and Seata's `undo_log`, seeded, and at the end
//! checked for consistency: every item and every cent is either still there or in a paid order.

use std::collections::HashMap;

use anyhow::{bail, ensure, Context};
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, Pool};
use seata_dtm::BarrierTable;
use seata_examples::{db_opts, drop_database, recreate_database};
use seata_rm::at::DataSourceProxy;

use crate::fault::{Faults, Step};
use crate::{account, order, stock};

/// What a branch service works on.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Its database, for the saga and TCC handlers and the barrier.
    pub pool: Pool,
    /// The barrier table in that database (`<db>.barrier`).
    pub barrier: BarrierTable,
    /// The same database behind the AT proxy, when AT mode runs.
    pub at: Option<DataSourceProxy>,
    /// What to get wrong.
    pub faults: Faults,
}

/// The starting data.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    /// Skus `0..skus`.
    pub skus: u32,
    /// Users `0..users`.
    pub users: u32,
    /// Items of each sku.
    pub stock: i64,
    /// Cents of each user.
    pub balance: i64,
}

/// The three databases of one run.
#[derive(Debug)]
pub struct Databases {
    server: Opts,
    prefix: String,
    /// Plain pools, by step.
    pools: HashMap<&'static str, Pool>,
}

impl Databases {
    /// Drops and creates the three databases and seeds them.
    pub async fn create(
        server: &Opts,
        prefix: &str,
        seed: Seed,
        max_conns: usize,
    ) -> anyhow::Result<Databases> {
        ensure!(
            !prefix.is_empty()
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "--db-prefix {prefix:?}: use lowercase letters, digits and `_`"
        );
        let mut pools = HashMap::new();
        for step in [Step::Order, Step::Stock, Step::Account] {
            let name = format!("{prefix}_{}", step.name());
            let business = match step {
                Step::Order => order::DDL,
                Step::Stock => stock::DDL,
                Step::Account => account::DDL,
            };
            let barrier = barrier_table(prefix, step)?.ddl();
            recreate_database(server, &name, &[business, &barrier]).await?;
            let pool = Pool::new(db_opts(server, &name, max_conns)?);
            let mut conn = pool.get_conn().await?;
            match step {
                Step::Order => {}
                Step::Stock => {
                    let rows = (0..seed.skus).map(|sku| (sku, seed.stock));
                    conn.exec_batch(stock::SEED, rows).await?;
                }
                Step::Account => {
                    let rows = (0..seed.users).map(|user| (user, seed.balance));
                    conn.exec_batch(account::SEED, rows).await?;
                }
            }
            drop(conn);
            pools.insert(step.name(), pool);
        }
        Ok(Databases {
            server: server.clone(),
            prefix: prefix.to_owned(),
            pools,
        })
    }

    /// The plain pool of `step`'s database.
    pub fn pool(&self, step: Step) -> &Pool {
        &self.pools[step.name()]
    }

    /// Connection options of `step`'s database (for its AT proxy).
    pub fn opts(&self, step: Step, max_conns: usize) -> anyhow::Result<Opts> {
        db_opts(
            &self.server,
            &format!("{}_{}", self.prefix, step.name()),
            max_conns,
        )
    }

    /// What `step`'s service works on.
    pub fn backend(
        &self,
        step: Step,
        at: Option<DataSourceProxy>,
        faults: &Faults,
    ) -> anyhow::Result<Backend> {
        Ok(Backend {
            pool: self.pool(step).clone(),
            barrier: barrier_table(&self.prefix, step)?,
            at,
            faults: faults.clone(),
        })
    }

    /// Closes the pools and, unless `keep`, drops the databases.
    pub async fn close(self, keep: bool) -> anyhow::Result<()> {
        for (_, pool) in self.pools {
            pool.disconnect().await?;
        }
        if !keep {
            for step in [Step::Order, Step::Stock, Step::Account] {
                drop_database(&self.server, &format!("{}_{}", self.prefix, step.name())).await?;
            }
        }
        Ok(())
    }

    /// Checks that nothing was lost or created: per sku, `available + reserved + items in paid
    /// orders` is the seed; per user, `balance + frozen + paid amounts` is the seed; nothing is
    /// left reserved, frozen or pending; and the number of paid orders is within `paid` (the
    /// orders the run saw commit, plus those whose outcome it could not learn).
    pub async fn check(
        &self,
        seed: Seed,
        paid: std::ops::RangeInclusive<usize>,
    ) -> anyhow::Result<String> {
        let orders: Vec<(u32, u32, i64, i64, String)> = self
            .pool(Step::Order)
            .get_conn()
            .await?
            .query("SELECT user_id, sku, qty, amount, status FROM orders")
            .await
            .context("reading orders")?;
        let stock: Vec<(u32, i64, i64)> = self
            .pool(Step::Stock)
            .get_conn()
            .await?
            .query("SELECT sku, available, reserved FROM stock")
            .await?;
        let accounts: Vec<(u32, i64, i64)> = self
            .pool(Step::Account)
            .get_conn()
            .await?
            .query("SELECT user_id, balance, frozen FROM account")
            .await?;

        let mut problems = Vec::new();
        let (mut items_sold, mut money_paid) = (HashMap::new(), HashMap::new());
        let mut paid_orders = 0;
        for (user, sku, qty, amount, status) in &orders {
            match status.as_str() {
                order::PAID => {
                    paid_orders += 1;
                    *items_sold.entry(*sku).or_insert(0) += qty;
                    *money_paid.entry(*user).or_insert(0) += amount;
                }
                order::CANCELLED => {}
                other => problems.push(format!("an order is still {other}")),
            }
        }
        for (sku, available, reserved) in &stock {
            let sold = items_sold.get(sku).copied().unwrap_or(0);
            if available + reserved + sold != seed.stock || *reserved != 0 {
                problems.push(format!(
                    "sku {sku}: available {available} + reserved {reserved} + sold {sold}, \
                     seeded {}",
                    seed.stock
                ));
            }
        }
        for (user, balance, frozen) in &accounts {
            let spent = money_paid.get(user).copied().unwrap_or(0);
            if balance + frozen + spent != seed.balance || *frozen != 0 {
                problems.push(format!(
                    "user {user}: balance {balance} + frozen {frozen} + paid {spent}, seeded {}",
                    seed.balance
                ));
            }
        }
        if !paid.contains(&paid_orders) {
            problems.push(format!(
                "{paid_orders} paid orders, but {}..={} committed",
                paid.start(),
                paid.end()
            ));
        }
        if let Some(first) = problems.first() {
            bail!(
                "{} problem(s), the first: {first}; all: {problems:?}",
                problems.len()
            );
        }
        let items: i64 = items_sold.values().sum();
        let money: i64 = money_paid.values().sum();
        Ok(format!(
            "{paid_orders} paid orders hold {items} items and {money} cents; stock, orders and \
             money agree"
        ))
    }
}

fn barrier_table(prefix: &str, step: Step) -> anyhow::Result<BarrierTable> {
    Ok(BarrierTable::new(&format!(
        "{prefix}_{}.barrier",
        step.name()
    ))?)
}
