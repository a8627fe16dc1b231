//! [`MysqlStore`]: sessions in Seata 1.2's `global_table`/`branch_table`, row locks in its
//! `lock_table`, shareable by several `seata-tc` processes (`store = "db"`).
//!
//! - Tables: `schema.rs` (Seata's DDL unchanged, plus `seata_rs_tc_node` and
//!   `seata_rs_tx_lease`); `--init-db` creates the missing ones.
//! - Writes: group commit. Each write is a unit (`unit.rs`) queued to a writer task
//!   (`writer.rs`), which runs everything queued as one DB transaction, alike units sharing
//!   multi-row statements (`batch.rs`), and answers each unit once that transaction
//!   committed. A register is still atomic (global status check, lock rows,
//!   branch row) and a phase-two decision still a compare-and-set with the lease, the
//!   commit's lock release and a fresh read of the branches; they just share the commit.
//! - Reads: `sessions.rs` (one session; the orphan scan).
//! - Locks: `locks.rs` (the primary key `row_key` decides conflicts).
//! - Several TCs: `lease.rs` (node numbers for ids, phase-two leases, orphan takeover).
//! - DTM-mode transactions: `dtm.rs` over DTM's `trans_global`/`trans_branch_op`
//!   (`dtm_rows.rs`), one pooled DB transaction per write, leased with the same node leases.
//!
//! Reads, leases and the lock manager use a connection pool (`pool_min`/`pool_max` in the
//! URL; default 2 to 32); each writer has a connection of its own. All sessions use READ
//! COMMITTED, so InnoDB takes no gap locks that would make unrelated registers wait on each
//! other, and report matched rather than changed rows, so a conditional `UPDATE` that
//! matched counts as applied. Statements are prepared and cached per connection by the
//! driver.

use std::sync::Arc;

use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use seata_protocol::{BranchStatus, GlobalStatus};
use tracing::info;

use super::{
    boxed, ready, BranchAdded, BranchRow, DtmStore, GlobalRow, SessionStore, StoreError,
    StoreFuture, StoredSession, Transition,
};
use crate::lock::LockManager;
use unit::{NewBranch, Op, Outcome};
use writer::Writers;

mod audit;
mod batch;
mod dtm;
mod dtm_rows;
#[cfg(test)]
mod dtm_tests;
mod lease;
mod locks;
mod resolve;
mod rows;
mod schema;
mod sessions;
#[cfg(test)]
mod tests;
mod unit;
mod writer;

pub use locks::MysqlLockManager;

/// Connections kept open at least / at most, unless the URL sets `pool_min`/`pool_max`.
const POOL_MIN: usize = 2;
const POOL_MAX: usize = 32;
/// How long a statement waits for a row lock, s. Lock rows are held only for the few
/// statements of a register, so a long wait means something is stuck; fail and let the RM
/// retry.
const LOCK_WAIT_TIMEOUT_S: u32 = 10;
/// Group-commit writers for begins, registers and decisions (removals have one more of their
/// own). One is fastest here: each pipelines its COMMITs over a few connections already,
/// and a second one halves the batches, so the database spends more per unit on statement
/// overhead (measured on 2 cores: 1 writer ~2,000 tx/s, 2 ~1,400, 4 ~1,100).
const WRITERS: usize = 1;

/// The db store.
#[derive(Debug)]
pub struct MysqlStore {
    pool: Pool,
    leases: Arc<lease::Leases>,
    locks: Arc<MysqlLockManager>,
    writers: Writers,
}

impl MysqlStore {
    /// Connects, creates missing tables when `init_db`, checks they exist, and leases a
    /// server node. `lease_ms`: how long a dead TC's transactions wait before another TC takes
    /// them over.
    pub async fn open(url: &str, init_db: bool, lease_ms: u64) -> Result<Self, StoreError> {
        let opts =
            Opts::from_url(url).map_err(|e| StoreError::Backend(format!("invalid db-url: {e}")))?;
        let mut pool_opts: PoolOpts = opts.pool_opts().clone();
        if !url.contains("pool_min=") && !url.contains("pool_max=") {
            if let Some(c) = PoolConstraints::new(POOL_MIN, POOL_MAX) {
                pool_opts = pool_opts.with_constraints(c);
            }
        }
        // No reset on checkout (the driver's default resets): a reset throws away the
        // driver's per-connection statement cache (the DTM path then prepared 8 statements
        // per saga) and undoes the `init` statements below, which run only when a connection
        // is made, so a reused connection silently fell back to REPEATABLE READ.
        if !url.contains("reset_connection=") {
            pool_opts = pool_opts.with_reset_connection(false);
        }
        let builder = OptsBuilder::from_opts(opts)
            .client_found_rows(true)
            .init(vec![
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_owned(),
                format!("SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_TIMEOUT_S}"),
            ])
            .pool_opts(pool_opts);
        let opts: Opts = builder.into();
        let pool = Pool::new(opts.clone());
        if init_db {
            schema::create_missing(&pool).await?;
        }
        schema::check(&pool).await?;
        let leases = Arc::new(lease::Leases::start(pool.clone(), lease_ms).await?);
        let writers = Writers::start(opts, leases.clone(), WRITERS).await?;
        info!(
            node = leases.node(),
            lease_ms,
            writers = WRITERS,
            "db store open"
        );
        Ok(MysqlStore {
            locks: Arc::new(MysqlLockManager::new(pool.clone())),
            pool,
            leases,
            writers,
        })
    }

    /// A plain write through the writers.
    async fn write(&self, op: Op) -> Result<(), StoreError> {
        self.writers.submit(op).await.map(|_| ())
    }

    async fn transition(
        &self,
        transaction_id: i64,
        xid: &str,
        from: GlobalStatus,
        to: GlobalStatus,
    ) -> Result<Transition, StoreError> {
        let op = Op::Transition {
            transaction_id,
            xid: xid.to_owned(),
            from,
            to,
        };
        match self.writers.submit(op).await? {
            Outcome::Transition(t) => Ok(t),
            other => Err(unexpected(&other)),
        }
    }

    async fn register(&self, branch: NewBranch) -> Result<BranchAdded, StoreError> {
        // A branch id carries our node number, like a transaction id.
        self.leases.ensure_node().await?;
        match self.writers.submit(Op::Register(branch)).await? {
            Outcome::Added(added) => Ok(added),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(outcome: &Outcome) -> StoreError {
    StoreError::Backend(format!(
        "db store writer answered {outcome:?} to the wrong request; this is a bug"
    ))
}

/// Why a sequence of statements inside a writer's DB transaction stopped.
#[derive(Debug)]
pub(super) enum StepError {
    /// The database or the connection failed; see [`is_lock_contention`] and
    /// [`server_code`].
    Db(mysql_async::Error),
    /// A row could not be decoded.
    Corrupt(StoreError),
}

impl StepError {
    pub(super) fn into_store(self) -> StoreError {
        match self {
            StepError::Db(e) => db(e),
            StepError::Corrupt(e) => e,
        }
    }
}

impl From<mysql_async::Error> for StepError {
    fn from(e: mysql_async::Error) -> Self {
        StepError::Db(e)
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Corrupt(e)
    }
}

/// A driver error as a store error.
pub(super) fn db(e: mysql_async::Error) -> StoreError {
    StoreError::Backend(format!("database: {e}"))
}

/// The server's error code, if the error came from the server.
pub(super) fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Deadlock (1213) or lock wait timeout (1205): contention, not failure.
pub(super) fn is_lock_contention(e: &mysql_async::Error) -> bool {
    matches!(server_code(e), Some(1213 | 1205))
}

impl SessionStore for MysqlStore {
    fn add_global<'a>(&'a self, global: GlobalRow<'a>) -> StoreFuture<'a, ()> {
        let op = Op::InsertGlobal(unit::owned_global(&global));
        boxed(async move {
            self.leases.ensure_node().await?;
            self.write(op).await
        })
    }

    fn update_global_status<'a>(
        &'a self,
        _transaction_id: i64,
        xid: &'a str,
        status: GlobalStatus,
    ) -> StoreFuture<'a, ()> {
        boxed(self.write(Op::SetGlobalStatus {
            xid: xid.to_owned(),
            status,
        }))
    }

    fn remove_global<'a>(&'a self, transaction_id: i64, xid: &'a str) -> StoreFuture<'a, ()> {
        boxed(self.write(Op::RemoveGlobal {
            transaction_id,
            xid: xid.to_owned(),
        }))
    }

    fn add_branch<'a>(&'a self, branch: BranchRow<'a>) -> StoreFuture<'a, ()> {
        let op = Op::Register(NewBranch::plain(&branch));
        boxed(async move {
            self.leases.ensure_node().await?;
            match self.writers.submit(op).await? {
                Outcome::Added(BranchAdded::Added) => Ok(()),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn update_branch_status<'a>(
        &'a self,
        _transaction_id: i64,
        xid: &'a str,
        branch_id: i64,
        status: BranchStatus,
    ) -> StoreFuture<'a, ()> {
        boxed(self.write(Op::SetBranchStatus {
            xid: xid.to_owned(),
            branch_id,
            status,
        }))
    }

    fn remove_branch<'a>(
        &'a self,
        _transaction_id: i64,
        xid: &'a str,
        branch_id: i64,
    ) -> StoreFuture<'a, ()> {
        boxed(self.write(Op::RemoveBranch {
            xid: xid.to_owned(),
            branch_id,
        }))
    }

    /// Nothing at start-up: sessions of a previous run are still leased by it, and the orphan
    /// scan ([`orphans`](SessionStore::orphans)) takes them over once the lease expires, like
    /// those of any other TC that died.
    fn recover(&self) -> StoreFuture<'_, Vec<StoredSession>> {
        boxed(async { Ok(Vec::new()) })
    }

    fn find<'a>(
        &'a self,
        _transaction_id: i64,
        xid: &'a str,
    ) -> StoreFuture<'a, Option<StoredSession>> {
        boxed(self.load(xid))
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        boxed(async move {
            // Writes accepted before shutdown are committed first.
            self.writers.close().await;
            self.leases.release_all().await?;
            self.pool.clone().disconnect().await.map_err(db)
        })
    }

    fn lock_manager(&self) -> Option<Arc<dyn LockManager>> {
        Some(self.locks.clone())
    }

    fn transition_global<'a>(
        &'a self,
        transaction_id: i64,
        xid: &'a str,
        from: GlobalStatus,
        to: GlobalStatus,
    ) -> StoreFuture<'a, Transition> {
        boxed(self.transition(transaction_id, xid, from, to))
    }

    fn register_branch<'a>(
        &'a self,
        branch: BranchRow<'a>,
    ) -> Option<StoreFuture<'a, BranchAdded>> {
        Some(match NewBranch::register(&branch) {
            Ok(b) => boxed(self.register(b)),
            Err(e) => ready(Ok(BranchAdded::Lock(e))),
        })
    }

    fn claim<'a>(&'a self, transaction_id: i64, xid: &'a str) -> StoreFuture<'a, bool> {
        boxed(self.leases.claim(transaction_id, xid))
    }

    fn renew_period_ms(&self) -> Option<u64> {
        u64::try_from(self.leases.lease_ms() / 3).ok()
    }

    fn renew(&self) -> StoreFuture<'_, ()> {
        boxed(self.leases.renew())
    }

    fn orphans(&self, now_ms: i64) -> StoreFuture<'_, Vec<StoredSession>> {
        boxed(self.scan_orphans(now_ms))
    }

    fn add_audit<'a>(&'a self, record: &'a super::AuditRecord) -> StoreFuture<'a, ()> {
        boxed(audit::add(&self.pool, record))
    }

    fn audits<'a>(
        &'a self,
        xid: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<super::AuditRecord>> {
        boxed(audit::list(&self.pool, xid, limit))
    }

    fn dtm(&self) -> Option<&dyn DtmStore> {
        Some(self)
    }

    fn server_node(&self) -> Option<u16> {
        Some(self.leases.node())
    }
}
