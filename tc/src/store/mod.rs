//! Durable record of the coordinator's decisions: the [`SessionStore`] trait and its
//! implementations ([`MemoryStore`] now; an append-only file store and a MySQL store on Seata's
//! `global_table`/`branch_table`/`lock_table` later).
//!
//! Contract shared by every implementation:
//! - A write (global add/update/remove, branch add/update/remove) resolves only once the change
//!   is durable, so the coordinator answers a client only after the decision it reports
//!   survives a crash.
//! - [`SessionStore::recover`] returns every stored session with its branches in registration
//!   order; lock keys travel with the branches so row locks can be rebuilt.
//! - A store shared by several TCs (MySQL) answers [`SessionStore::find`] for sessions another
//!   TC created and decides row-lock conflicts itself through
//!   [`SessionStore::lock_manager`]. A store private to this process returns `None` from both
//!   and the coordinator keeps its working set (and the row locks) in memory.
//!
//! Writes borrow their rows ([`GlobalRow`], [`BranchRow`]) so the hot path copies nothing
//! into a store that keeps nothing, and return a [`StoreFuture`], which is an unboxed ready
//! value for such a store and a boxed future for one that does I/O.

use std::sync::Arc;

use futures::future::{BoxFuture, Either, Ready};
use seata_protocol::{BranchStatus, BranchType, GlobalStatus};
use thiserror::Error;

use crate::lock::{LockError, LockManager};

mod audit;
pub mod dtm;
mod dtm_table;
pub mod file;
mod memory;
pub mod mysql;
mod open;

pub use audit::{id_json, AuditRecord};
pub use dtm::DtmStore;
pub use dtm_table::DtmTable;
pub use memory::MemoryStore;
pub use open::open_store;

/// What a store call resolves to: an immediate value (no allocation) or a boxed future.
pub type StoreFuture<'a, T> =
    Either<Ready<Result<T, StoreError>>, BoxFuture<'a, Result<T, StoreError>>>;

/// A store call that completed synchronously.
pub fn ready<'a, T>(value: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Either::Left(futures::future::ready(value))
}

/// A store call that does I/O.
pub fn boxed<'a, T>(
    fut: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'a,
) -> StoreFuture<'a, T> {
    Either::Right(Box::pin(fut))
}

/// Why a store could not record or read something. The coordinator maps it to Seata's
/// `FailedWriteSession`/`FailedToAddBranch`/`BeginFailed` codes in `error.rs`.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backing file or connection failed; the write may or may not have happened.
    #[error("session store I/O failed: {0}; check the store's disk or database")]
    Io(#[from] std::io::Error),
    /// The backend refused the operation (e.g. a database error), with its own message.
    #[error("session store backend failed: {0}; check the store's logs")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("session store record is corrupt: {0}; restore the store from a backup or repair it")]
    Corrupt(String),
}

/// One global transaction as written to the store (Seata's `global_table` row).
#[derive(Debug, Clone, Copy)]
pub struct GlobalRow<'a> {
    /// Transaction id (the part of the XID after the last `:`).
    pub transaction_id: i64,
    /// `ip:port:transactionId`.
    pub xid: &'a str,
    /// Current status.
    pub status: GlobalStatus,
    /// Application id of the TM that began it.
    pub application_id: &'a str,
    /// Transaction service group of the TM that began it.
    pub transaction_service_group: &'a str,
    /// Name given by the TM.
    pub transaction_name: &'a str,
    /// Timeout in ms.
    pub timeout_ms: i32,
    /// Begin time, ms since the Unix epoch.
    pub begin_time_ms: i64,
}

/// One branch as written to the store (Seata's `branch_table` row, plus the lock key so locks
/// can be rebuilt on recovery).
#[derive(Debug, Clone, Copy)]
pub struct BranchRow<'a> {
    /// Transaction id of the owning global transaction.
    pub transaction_id: i64,
    /// XID of the owning global transaction.
    pub xid: &'a str,
    /// Branch id.
    pub branch_id: i64,
    /// AT, TCC, SAGA or XA.
    pub branch_type: BranchType,
    /// Current status.
    pub status: BranchStatus,
    /// Resource the branch registered.
    pub resource_id: &'a str,
    /// Row lock key (`table:pk1,pk2;table2:pk`), empty for non-AT branches.
    pub lock_key: &'a str,
    /// `applicationId:ip:port` of the registering RM connection.
    pub client_id: &'a str,
    /// Opaque data from the RM.
    pub application_data: &'a str,
}

/// A global transaction read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGlobal {
    /// Transaction id.
    pub transaction_id: i64,
    /// XID.
    pub xid: String,
    /// Status last recorded.
    pub status: GlobalStatus,
    /// Application id of the TM.
    pub application_id: String,
    /// Transaction service group of the TM.
    pub transaction_service_group: String,
    /// Name given by the TM.
    pub transaction_name: String,
    /// Timeout in ms.
    pub timeout_ms: i32,
    /// Begin time, ms since the Unix epoch.
    pub begin_time_ms: i64,
}

/// A branch read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBranch {
    /// Branch id.
    pub branch_id: i64,
    /// AT, TCC, SAGA or XA.
    pub branch_type: BranchType,
    /// Status last recorded.
    pub status: BranchStatus,
    /// Resource id.
    pub resource_id: String,
    /// Row lock key.
    pub lock_key: String,
    /// Registering client.
    pub client_id: String,
    /// Opaque data from the RM.
    pub application_data: String,
}

/// A global transaction with its branches in registration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The global transaction.
    pub global: StoredGlobal,
    /// Its branches, oldest first.
    pub branches: Vec<StoredBranch>,
}

impl<'a> From<&'a StoredGlobal> for GlobalRow<'a> {
    fn from(g: &'a StoredGlobal) -> Self {
        GlobalRow {
            transaction_id: g.transaction_id,
            xid: &g.xid,
            status: g.status,
            application_id: &g.application_id,
            transaction_service_group: &g.transaction_service_group,
            transaction_name: &g.transaction_name,
            timeout_ms: g.timeout_ms,
            begin_time_ms: g.begin_time_ms,
        }
    }
}

/// Durable session storage. Object safe: the coordinator holds an `Arc<dyn SessionStore>`.
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// Records a new global transaction (Seata's GLOBAL_ADD).
    fn add_global<'a>(&'a self, global: GlobalRow<'a>) -> StoreFuture<'a, ()>;

    /// Records a status change (GLOBAL_UPDATE).
    fn update_global_status<'a>(
        &'a self,
        transaction_id: i64,
        xid: &'a str,
        status: GlobalStatus,
    ) -> StoreFuture<'a, ()>;

    /// Forgets a finished global transaction and any branches still recorded for it
    /// (GLOBAL_REMOVE).
    fn remove_global<'a>(&'a self, transaction_id: i64, xid: &'a str) -> StoreFuture<'a, ()>;

    /// Records a new branch (BRANCH_ADD).
    fn add_branch<'a>(&'a self, branch: BranchRow<'a>) -> StoreFuture<'a, ()>;

    /// Records a branch status change (BRANCH_UPDATE).
    fn update_branch_status<'a>(
        &'a self,
        transaction_id: i64,
        xid: &'a str,
        branch_id: i64,
        status: BranchStatus,
    ) -> StoreFuture<'a, ()>;

    /// Forgets a branch whose phase two is done (BRANCH_REMOVE).
    fn remove_branch<'a>(
        &'a self,
        transaction_id: i64,
        xid: &'a str,
        branch_id: i64,
    ) -> StoreFuture<'a, ()>;

    /// Every session still recorded, with its branches in registration order. Called once at
    /// start-up.
    fn recover(&self) -> StoreFuture<'_, Vec<StoredSession>>;

    /// Loads one session this process does not hold in memory. Only a store shared by several
    /// TCs can find anything; a private store answers `None`.
    fn find<'a>(
        &'a self,
        transaction_id: i64,
        xid: &'a str,
    ) -> StoreFuture<'a, Option<StoredSession>>;

    /// Makes every accepted write durable and stops background work; called once at
    /// shutdown after the jobs have stopped. A store that writes synchronously does nothing.
    fn close(&self) -> StoreFuture<'_, ()> {
        ready(Ok(()))
    }

    /// The lock manager when row locks must be decided by the store itself (several TCs on
    /// one database). `None`: the coordinator uses its in-memory sharded lock manager.
    ///
    /// A store that returns `Some` is *shared*, and also promises what the methods below
    /// describe for shared stores: it releases row locks itself as part of
    /// [`remove_branch`](Self::remove_branch) (that branch's rows),
    /// [`remove_global`](Self::remove_global) (every row of the transaction) and a
    /// [`transition_global`](Self::transition_global) to Committing/AsyncCommitting (every row),
    /// so the coordinator does not release them separately.
    fn lock_manager(&self) -> Option<Arc<dyn LockManager>> {
        None
    }

    /// Changes the status only if it is still `from` (a compare-and-set, so two TCs deciding
    /// the same transaction cannot both win). A shared store, when it applies the change, also
    /// takes this TC's lease on the transaction (see [`claim`](Self::claim)) and returns the
    /// branches as stored, which may include some registered through another TC. The default,
    /// for a store only this process writes, is an unconditional
    /// [`update_global_status`](Self::update_global_status).
    fn transition_global<'a>(
        &'a self,
        transaction_id: i64,
        xid: &'a str,
        from: GlobalStatus,
        to: GlobalStatus,
    ) -> StoreFuture<'a, Transition> {
        let _ = from;
        let applied =
            |r: Result<(), StoreError>| r.map(|()| Transition::Applied { branches: None });
        match self.update_global_status(transaction_id, xid, to) {
            Either::Left(r) => ready(applied(r.into_inner())),
            Either::Right(fut) => boxed(async move { applied(fut.await) }),
        }
    }

    /// Shared stores: records a new branch and takes its row locks (AT) in one atomic step,
    /// refusing when the global transaction is no longer in Begin (SAGA branches skip that
    /// check). `None`: not supported; the coordinator locks through its lock manager and
    /// calls [`add_branch`](Self::add_branch).
    fn register_branch<'a>(
        &'a self,
        branch: BranchRow<'a>,
    ) -> Option<StoreFuture<'a, BranchAdded>> {
        let _ = branch;
        None
    }

    /// Takes or keeps this TC's lease on driving the transaction's phase two; `false` when
    /// another live TC holds it. A store private to this process always grants.
    fn claim<'a>(&'a self, transaction_id: i64, xid: &'a str) -> StoreFuture<'a, bool> {
        let _ = (transaction_id, xid);
        ready(Ok(true))
    }

    /// How often [`renew`](Self::renew) must run, in ms; `None` when the store has no leases.
    fn renew_period_ms(&self) -> Option<u64> {
        None
    }

    /// Extends every lease this TC holds (its node number and its transactions).
    fn renew(&self) -> StoreFuture<'_, ()> {
        ready(Ok(()))
    }

    /// Sessions no live TC looks after, already claimed for this TC: phase-two sessions whose
    /// lease expired (their TC died) and Begin sessions well past their timeout. A private
    /// store has none.
    fn orphans(&self, now_ms: i64) -> StoreFuture<'_, Vec<StoredSession>> {
        let _ = now_ms;
        ready(Ok(Vec::new()))
    }

    /// Where this backend keeps DTM-mode transactions (saga, msg, tcc, xa over HTTP), beside
    /// the Seata sessions. `None`: the backend has no DTM tables (test doubles); the DTM
    /// API is then off.
    fn dtm(&self) -> Option<&dyn DtmStore> {
        None
    }

    /// The server node (id bits) the store allocated to this TC so several TCs sharing it never
    /// hand out the same id. `None`: use the configured `server-node`.
    fn server_node(&self) -> Option<u16> {
        None
    }

    /// Records an audited event ([`AuditRecord`]) durably, like a session write. The default
    /// (test doubles) refuses, so an operator action is never done without its record.
    fn add_audit<'a>(&'a self, record: &'a AuditRecord) -> StoreFuture<'a, ()> {
        let _ = record;
        ready(Err(StoreError::Backend(
            "this store keeps no audit records; use the memory, file or db store".into(),
        )))
    }

    /// Audit records, oldest first: of `xid` only when given, else the newest `limit` of all.
    fn audits<'a>(
        &'a self,
        xid: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Vec<AuditRecord>> {
        let _ = (xid, limit);
        ready(Ok(Vec::new()))
    }
}

/// What a conditional status change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The status was `from` and is now `to`. `branches`: the stored branch list, from a
    /// shared store (`None` from a private one, whose list is the coordinator's own).
    Applied {
        /// Branches in registration order, as stored.
        branches: Option<Vec<StoredBranch>>,
    },
    /// The status was not `from`: another TC decided first. `current`: the stored status,
    /// `None` when the transaction is no longer stored (finished).
    Lost {
        /// Status found instead.
        current: Option<GlobalStatus>,
    },
}

/// What [`SessionStore::register_branch`] did.
#[derive(Debug)]
pub enum BranchAdded {
    /// The branch and its row locks are recorded.
    Added,
    /// The global transaction is not in Begin (`Finished`: no longer stored); nothing recorded.
    Refused(GlobalStatus),
    /// A row is held by another transaction (or the key is malformed); nothing recorded.
    Lock(LockError),
}
