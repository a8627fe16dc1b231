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

use crate::lock::LockManager;

mod memory;
mod open;

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
    fn lock_manager(&self) -> Option<Arc<dyn LockManager>> {
        None
    }
}
