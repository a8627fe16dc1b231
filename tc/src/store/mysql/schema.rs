//! The db store's tables: Seata 1.2's `global_table`, `branch_table` and `lock_table`, with
//! their 1.2 DDL unchanged so operators' existing scripts and queries keep working
//! (tc-semantics 5.3), plus two tables of our own, prefixed `seata_rs_` so they never collide
//! with Seata's:
//!
//! - `seata_rs_tc_node`: one row per server node number (the 10 id bits of a TC), leased by a
//!   running TC, so TCs sharing a database get distinct ids without any configuration;
//! - `seata_rs_tx_lease`: which TC drives a transaction's phase two (valid while that TC's
//!   node row is unexpired, `lease.rs`);
//! - `seata_rs_audit`: operators' actions and RMs' unretryable reports (`audit.rs`).
//!
//! DTM-mode transactions (`dtm.rs`) live in DTM's own two tables, `trans_global` and
//! `trans_branch_op`, with DTM's table and column names (spec dtm-http-api §10); the script
//! says where their column types differ from DTM's and why.
//!
//! `scripts/sql/mysql.sql` is the only copy of the DDL: operators run it by hand, and
//! `--init-db` runs the same text (compiled in).

use mysql_async::prelude::Queryable;
use mysql_async::Pool;

use super::db;
use crate::store::StoreError;

/// The DDL operators run by hand is the DDL `--init-db` runs: one source, the script.
const SCRIPT: &str = include_str!("../../../../scripts/sql/mysql.sql");

/// Every table the store uses, in creation order.
pub(super) const TABLE_NAMES: [&str; 8] = [
    "global_table",
    "branch_table",
    "lock_table",
    "seata_rs_tc_node",
    "seata_rs_tx_lease",
    "trans_global",
    "trans_branch_op",
    "seata_rs_audit",
];

/// The script's statements (`CREATE TABLE IF NOT EXISTS ...`), comments dropped.
fn statements() -> impl Iterator<Item = String> {
    SCRIPT
        .split(';')
        .map(|stmt| {
            stmt.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|stmt| !stmt.trim().is_empty())
}

/// Creates the missing tables (`--init-db`).
pub(super) async fn create_missing(pool: &Pool) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await.map_err(db)?;
    for ddl in statements() {
        conn.query_drop(ddl).await.map_err(db)?;
    }
    Ok(())
}

/// Fails with the name of the first missing table and what to do about it.
pub(super) async fn check(pool: &Pool) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await.map_err(db)?;
    for name in TABLE_NAMES {
        let present: Option<String> = conn
            .exec_first(
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = ?",
                (name,),
            )
            .await
            .map_err(db)?;
        if present.is_none() {
            return Err(StoreError::Backend(format!(
                "table {name} is missing; create the tables with scripts/sql/mysql.sql or start with --init-db"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_creates_every_table_in_order() {
        let created: Vec<String> = statements()
            .map(|stmt| {
                let rest = stmt
                    .split("CREATE TABLE IF NOT EXISTS `")
                    .nth(1)
                    .unwrap_or_else(|| panic!("not a CREATE TABLE IF NOT EXISTS: {stmt}"));
                rest.split('`').next().unwrap_or_default().to_owned()
            })
            .collect();
        assert_eq!(created, TABLE_NAMES);
    }
}
