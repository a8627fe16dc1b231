//! The sub-transaction barrier (spec §8): makes a branch handler safe against duplicate calls,
//! null compensation and hanging, by recording each (gid, branch_id, op, barrier_id) in the
//! branch's own database inside the same local transaction as its business SQL.
//!
//! This module owns what does not depend on the database: the table name, the origin-op
//! mapping and the decision of §8.2 steps 5–7, and the per-handler barrier id counter. The
//! MySQL/MariaDB storage is [`mysql`]; a Redis barrier would add a sibling module that runs the
//! same [`decide`] over its own inserts (a Lua `SET NX` per row) without changing this API.
//!
//! ```no_run
//! use seata_dtm::{BarrierTable, BranchBarrier, BranchParams, BranchResult, BranchSuccess};
//! use mysql_async::prelude::Queryable;
//!
//! async fn debit(params: BranchParams, pool: mysql_async::Pool) -> BranchResult {
//!     let barrier = BranchBarrier::new(params).with_table(BarrierTable::new("shop.barrier")?);
//!     barrier
//!         .call_with_pool(&pool, |tx| {
//!             Box::pin(async move {
//!                 tx.exec_drop("UPDATE account SET balance = balance - 30 WHERE id = 1", ())
//!                     .await?;
//!                 Ok(())
//!             })
//!         })
//!         .await?;
//!     Ok(BranchSuccess)
//! }
//! ```

pub mod mysql;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::branch::{op, BranchError, BranchParams};
use crate::error::DtmError;

/// The columns of DTM's barrier table (§8.1), written once for the constant and for
/// [`BarrierTable::ddl`].
macro_rules! barrier_columns {
    () => {
        "(
  id bigint(22) PRIMARY KEY AUTO_INCREMENT,
  trans_type varchar(45) default '',
  gid varchar(128) default '',
  branch_id varchar(128) default '',
  op varchar(45) default '',
  barrier_id varchar(45) default '',
  reason varchar(45) default '' comment 'the branch type who insert this record',
  create_time datetime DEFAULT now(),
  update_time datetime DEFAULT now(),
  key(create_time),
  key(update_time),
  UNIQUE key(gid, branch_id, op, barrier_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"
    };
}

/// `CREATE TABLE` of DTM's default barrier table `dtm_barrier.barrier` (§8.1); the database
/// must exist (`create database if not exists dtm_barrier`). The crate's
/// `sql/barrier.mysql.sql` holds both statements.
pub const BARRIER_TABLE_DDL: &str = concat!(
    "create table if not exists dtm_barrier.barrier",
    barrier_columns!()
);

/// The whole setup script (database and table), as shipped in `sql/barrier.mysql.sql`.
pub const BARRIER_SQL: &str = include_str!("../../sql/barrier.mysql.sql");

/// DTM's default barrier table.
pub const DEFAULT_BARRIER_TABLE: &str = "dtm_barrier.barrier";

/// The name of a barrier table, `table` or `database.table`. It cannot be a bound parameter,
/// so it is checked here (letters, digits, `_`, `$`) and quoted with backticks when used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarrierTable {
    name: Arc<str>,
    quoted: Arc<str>,
}

impl BarrierTable {
    /// Checks `name` (`table` or `database.table`).
    pub fn new(name: &str) -> Result<BarrierTable, DtmError> {
        let parts: Vec<&str> = name.split('.').collect();
        let ok_part = |p: &&str| {
            !p.is_empty()
                && p.len() <= 64
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        if parts.len() > 2 || !parts.iter().all(ok_part) {
            return Err(DtmError::invalid(
                format!("barrier table name {name:?}"),
                "use `table` or `database.table` with letters, digits, `_` or `$`",
            ));
        }
        let quoted: Vec<String> = parts.iter().map(|p| format!("`{p}`")).collect();
        Ok(BarrierTable {
            name: name.into(),
            quoted: quoted.join(".").into(),
        })
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name quoted for SQL.
    pub(crate) fn quoted(&self) -> &str {
        &self.quoted
    }

    /// `CREATE TABLE IF NOT EXISTS` for this name, with DTM's columns and keys.
    pub fn ddl(&self) -> String {
        format!(
            "create table if not exists {}{}",
            self.quoted,
            barrier_columns!()
        )
    }
}

impl Default for BarrierTable {
    fn default() -> BarrierTable {
        BarrierTable {
            name: DEFAULT_BARRIER_TABLE.into(),
            quoted: "`dtm_barrier`.`barrier`".into(),
        }
    }
}

/// What [`BranchBarrier::call`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BarrierOutcome<T> {
    /// First call of this op: the business ran and committed with the barrier rows.
    Ran(T),
    /// A cancel/compensate whose first phase never ran (§8.3): the business was skipped, and
    /// the first phase's row was recorded so that a late first phase is refused.
    NullCompensation,
    /// This op already ran (a retry), or it is a first phase arriving after its compensation
    /// (hanging): the business was skipped.
    DuplicateOrHanging,
}

impl<T> BarrierOutcome<T> {
    /// The business's value, if it ran.
    pub fn ran(self) -> Option<T> {
        match self {
            BarrierOutcome::Ran(v) => Some(v),
            _ => None,
        }
    }
}

/// The first-phase op whose row a second-phase op inserts too (§8.2 step 2): cancel → try,
/// compensate → action, rollback (workflow) → action.
pub(crate) fn origin_op(op: &str) -> Option<&'static str> {
    match op {
        op::CANCEL => Some(op::TRY),
        op::COMPENSATE | op::ROLLBACK => Some(op::ACTION),
        _ => None,
    }
}

/// §8.2 steps 5–7, after the inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Step 8: run the business.
    Run,
    /// Step 6.
    NullCompensation,
    /// Step 7 (and step 5 for `msg`, which the caller treats as an error).
    Duplicate,
}

/// `origin_affected` is `None` when the op has no origin.
pub(crate) fn decide(origin_affected: Option<u64>, current_affected: u64) -> Decision {
    // Step 6: "op is cancel/compensate/rollback and originAffected > 0" — only those ops have
    // an origin, so a `Some` here already says which op it is.
    if origin_affected.is_some_and(|n| n > 0) {
        Decision::NullCompensation
    } else if current_affected == 0 {
        Decision::Duplicate
    } else {
        Decision::Run
    }
}

/// A barrier for one branch call. Each [`call`](BranchBarrier::call) on it takes the next
/// barrier id (`01`, `02`, …), so one handler may guard several local transactions — in the
/// same order on every retry.
#[derive(Debug)]
pub struct BranchBarrier {
    params: BranchParams,
    table: BarrierTable,
    next_id: AtomicU32,
}

impl BranchBarrier {
    /// A barrier for the call `params` describes, on [`DEFAULT_BARRIER_TABLE`].
    pub fn new(params: BranchParams) -> BranchBarrier {
        BranchBarrier {
            params,
            table: BarrierTable::default(),
            next_id: AtomicU32::new(0),
        }
    }

    /// The producer barrier of a msg (§8.4): (`msg`, gid, branch `00`, op `msg`), barrier `01`.
    pub fn msg_producer(gid: impl Into<String>) -> BranchBarrier {
        BranchBarrier::new(BranchParams {
            gid: gid.into(),
            trans_type: "msg".into(),
            branch_id: MSG_BRANCH_ID.into(),
            op: op::MSG.into(),
            dtm: None,
            phase2_url: None,
        })
    }

    /// Uses `table` instead of the default.
    pub fn with_table(mut self, table: BarrierTable) -> BranchBarrier {
        self.table = table;
        self
    }

    /// The call this barrier guards.
    pub fn params(&self) -> &BranchParams {
        &self.params
    }

    /// The table.
    pub fn table(&self) -> &BarrierTable {
        &self.table
    }

    /// `01`, `02`, …: the id of the next local transaction guarded by this barrier.
    pub(crate) fn next_barrier_id(&self) -> Result<String, BranchError> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        if n > 99 {
            return Err(BranchError::internal(
                "more than 99 barrier calls on one BranchBarrier: use one barrier per branch call",
            ));
        }
        Ok(format!("{n:02}"))
    }
}

/// The branch id of msg's queryPrepared and producer barrier (§1).
pub(crate) const MSG_BRANCH_ID: &str = "00";
/// The barrier id of msg's producer barrier (§8.4).
pub(crate) const MSG_BARRIER_ID: &str = "01";

/// `reason` a queryPrepared writes when it finds no producer row (§8.4).
pub(crate) const REASON_ROLLBACK: &str = op::ROLLBACK;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_ops_follow_the_spec_table() {
        assert_eq!(origin_op("cancel"), Some("try"));
        assert_eq!(origin_op("compensate"), Some("action"));
        assert_eq!(origin_op("rollback"), Some("action"));
        for op in ["try", "confirm", "action", "msg", "commit"] {
            assert_eq!(origin_op(op), None, "{op}");
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(None, 1), Decision::Run);
        assert_eq!(decide(None, 0), Decision::Duplicate);
        assert_eq!(decide(Some(1), 1), Decision::NullCompensation);
        assert_eq!(decide(Some(0), 1), Decision::Run);
        assert_eq!(decide(Some(0), 0), Decision::Duplicate);
    }

    #[test]
    fn table_names_are_checked_and_quoted() {
        assert_eq!(BarrierTable::new("a.b").unwrap().quoted(), "`a`.`b`");
        assert_eq!(BarrierTable::new("barrier").unwrap().quoted(), "`barrier`");
        for bad in ["", "a.", "a.b.c", "a;drop", "a`b", "a b"] {
            assert!(BarrierTable::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            BarrierTable::default(),
            BarrierTable::new(DEFAULT_BARRIER_TABLE).unwrap()
        );
    }

    #[test]
    fn shipped_sql_file_matches_the_constant() {
        assert!(BARRIER_SQL.contains(BARRIER_TABLE_DDL));
        assert!(BarrierTable::default()
            .ddl()
            .contains("UNIQUE key(gid, branch_id, op, barrier_id)"));
    }

    #[test]
    fn barrier_ids_count_up() {
        let b = BranchBarrier::msg_producer("g");
        assert_eq!(b.next_barrier_id().unwrap(), "01");
        assert_eq!(b.next_barrier_id().unwrap(), "02");
    }
}
