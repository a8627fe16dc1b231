//! [`BranchSession`]: one registered branch. Immutable after registration except its status,
//! which an RM report may change while a phase-two pass is reading it, hence the atomic.
//! Branches are shared as `Arc`s so a phase-two pass can snapshot a session's branch list
//! without copying strings or holding the session lock across RM calls.

use std::sync::atomic::{AtomicU8, Ordering};

use seata_protocol::{BranchStatus, BranchType};

use crate::gateway::BranchTarget;
use crate::lock::LockOwner;
use crate::store::{BranchRow, StoredBranch};

/// A branch transaction.
#[derive(Debug)]
pub struct BranchSession {
    /// Branch id (from the TC's id generator).
    pub branch_id: i64,
    /// AT, TCC, SAGA or XA.
    pub branch_type: BranchType,
    status: AtomicU8,
    /// Resource the branch registered (a JDBC URL for AT).
    pub resource_id: Box<str>,
    /// Row lock key (AT), else empty.
    pub lock_key: Box<str>,
    /// `applicationId:ip:port` of the registering RM connection.
    pub client_id: Box<str>,
    /// Opaque data from the RM, handed back in phase two.
    pub application_data: Box<str>,
}

impl BranchSession {
    /// A branch in status Registered.
    pub fn new(
        branch_id: i64,
        branch_type: BranchType,
        resource_id: String,
        lock_key: String,
        client_id: String,
        application_data: String,
    ) -> Self {
        BranchSession {
            branch_id,
            branch_type,
            status: AtomicU8::new(BranchStatus::Registered.code()),
            resource_id: resource_id.into_boxed_str(),
            lock_key: lock_key.into_boxed_str(),
            client_id: client_id.into_boxed_str(),
            application_data: application_data.into_boxed_str(),
        }
    }

    /// A branch read back from the store.
    pub fn from_stored(b: StoredBranch) -> Self {
        let s = BranchSession::new(
            b.branch_id,
            b.branch_type,
            b.resource_id,
            b.lock_key,
            b.client_id,
            b.application_data,
        );
        s.set_status(b.status);
        s
    }

    /// Current status.
    pub fn status(&self) -> BranchStatus {
        BranchStatus::try_from(self.status.load(Ordering::Acquire)).unwrap_or_default()
    }

    /// Records a reported status.
    pub fn set_status(&self, status: BranchStatus) {
        self.status.store(status.code(), Ordering::Release);
    }

    /// Takes TC row locks: AT only (tc-semantics 2.2 step 4).
    pub fn holds_locks(&self) -> bool {
        self.branch_type == BranchType::At && !self.lock_key.is_empty()
    }

    /// The lock owner identity of this branch.
    pub fn lock_owner(&self, transaction_id: i64) -> LockOwner {
        LockOwner {
            transaction_id,
            branch_id: self.branch_id,
        }
    }

    /// The phase-two address of this branch.
    pub fn target(&self, xid: &str) -> BranchTarget {
        BranchTarget {
            xid: xid.to_owned(),
            branch_id: self.branch_id,
            branch_type: self.branch_type,
            resource_id: self.resource_id.to_string(),
            client_id: self.client_id.to_string(),
            application_data: self.application_data.to_string(),
        }
    }

    /// The store row of this branch.
    pub fn row<'a>(&'a self, transaction_id: i64, xid: &'a str) -> BranchRow<'a> {
        BranchRow {
            transaction_id,
            xid,
            branch_id: self.branch_id,
            branch_type: self.branch_type,
            status: self.status(),
            resource_id: &self.resource_id,
            lock_key: &self.lock_key,
            client_id: &self.client_id,
            application_data: &self.application_data,
        }
    }

    /// Heap bytes owned by this branch when held in an `Arc` (allocator rounding to 16 bytes
    /// included), for the memory budget.
    pub fn heap_bytes(&self) -> usize {
        let arc = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Self>();
        [
            arc,
            self.resource_id.len(),
            self.lock_key.len(),
            self.client_id.len(),
            self.application_data.len(),
        ]
        .iter()
        .map(|&n| n.div_ceil(16) * 16)
        .sum()
    }
}
