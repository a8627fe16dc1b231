//! The db store's tables: Seata 1.2's `global_table`, `branch_table` and `lock_table`, with
//! their 1.2 DDL unchanged so operators' existing scripts and queries keep working
//! (tc-semantics 5.3), plus two tables of our own, prefixed `seata_rs_` so they never collide
//! with Seata's:
//!
//! - `seata_rs_tc_node`: one row per server node number (the 10 id bits of a TC), leased by a
//!   running TC, so TCs sharing a database get distinct ids without any configuration;
//! - `seata_rs_tx_lease`: which TC drives a transaction's phase two (valid while that TC's
//!   node row is unexpired, `lease.rs`).
//!
//! `scripts/sql/mysql.sql` holds the same statements for operators; a unit test keeps the two
//! in step.

use mysql_async::prelude::Queryable;
use mysql_async::Pool;

use super::db;
use crate::store::StoreError;

/// `CREATE TABLE IF NOT EXISTS` for every table the store uses, in creation order.
pub(super) const TABLES: [(&str, &str); 5] = [
    (
        "global_table",
        "CREATE TABLE IF NOT EXISTS `global_table` (
  `xid` VARCHAR(128) NOT NULL,
  `transaction_id` BIGINT,
  `status` TINYINT NOT NULL,
  `application_id` VARCHAR(32),
  `transaction_service_group` VARCHAR(32),
  `transaction_name` VARCHAR(128),
  `timeout` INT,
  `begin_time` BIGINT,
  `application_data` VARCHAR(2000),
  `gmt_create` DATETIME,
  `gmt_modified` DATETIME,
  PRIMARY KEY (`xid`),
  KEY `idx_gmt_modified_status` (`gmt_modified`, `status`),
  KEY `idx_transaction_id` (`transaction_id`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8",
    ),
    (
        "branch_table",
        "CREATE TABLE IF NOT EXISTS `branch_table` (
  `branch_id` BIGINT NOT NULL,
  `xid` VARCHAR(128) NOT NULL,
  `transaction_id` BIGINT,
  `resource_group_id` VARCHAR(32),
  `resource_id` VARCHAR(256),
  `branch_type` VARCHAR(8),
  `status` TINYINT,
  `client_id` VARCHAR(64),
  `application_data` VARCHAR(2000),
  `gmt_create` DATETIME(6),
  `gmt_modified` DATETIME(6),
  PRIMARY KEY (`branch_id`),
  KEY `idx_xid` (`xid`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8",
    ),
    (
        "lock_table",
        "CREATE TABLE IF NOT EXISTS `lock_table` (
  `row_key` VARCHAR(128) NOT NULL,
  `xid` VARCHAR(96),
  `transaction_id` BIGINT,
  `branch_id` BIGINT NOT NULL,
  `resource_id` VARCHAR(256),
  `table_name` VARCHAR(32),
  `pk` VARCHAR(36),
  `gmt_create` DATETIME,
  `gmt_modified` DATETIME,
  PRIMARY KEY (`row_key`),
  KEY `idx_branch_id` (`branch_id`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8",
    ),
    (
        "seata_rs_tc_node",
        "CREATE TABLE IF NOT EXISTS `seata_rs_tc_node` (
  `node` SMALLINT NOT NULL,
  `owner` BIGINT NOT NULL,
  `expires_at` BIGINT NOT NULL,
  PRIMARY KEY (`node`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8",
    ),
    (
        "seata_rs_tx_lease",
        "CREATE TABLE IF NOT EXISTS `seata_rs_tx_lease` (
  `xid` VARCHAR(128) NOT NULL,
  `transaction_id` BIGINT NOT NULL,
  `owner` BIGINT NOT NULL,
  `expires_at` BIGINT NOT NULL,
  PRIMARY KEY (`xid`),
  KEY `idx_owner` (`owner`)
) ENGINE = InnoDB DEFAULT CHARSET = utf8",
    ),
];

/// Creates the missing tables (`--init-db`).
pub(super) async fn create_missing(pool: &Pool) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await.map_err(db)?;
    for (_, ddl) in TABLES {
        conn.query_drop(ddl).await.map_err(db)?;
    }
    Ok(())
}

/// Fails with the name of the first missing table and what to do about it.
pub(super) async fn check(pool: &Pool) -> Result<(), StoreError> {
    let mut conn = pool.get_conn().await.map_err(db)?;
    for (name, _) in TABLES {
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

    fn squash(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn script_matches_the_built_in_ddl() {
        let script = squash(include_str!("../../../../scripts/sql/mysql.sql"));
        for (name, ddl) in TABLES {
            assert!(
                script.contains(&squash(ddl)),
                "scripts/sql/mysql.sql differs from the built-in DDL of {name}"
            );
        }
    }
}
