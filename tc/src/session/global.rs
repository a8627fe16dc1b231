//! [`GlobalSession`]: one global transaction. Identity and begin data are immutable; the
//! status, the branch list and retry bookkeeping sit behind the session's own mutex
//! ([`SessionState`]), held only for short synchronous sections.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use seata_protocol::{BranchType, GlobalStatus};

use super::branch::BranchSession;
use super::state::Backoff;
use crate::store::{GlobalRow, StoredGlobal};

/// A global transaction.
#[derive(Debug)]
pub struct GlobalSession {
    /// Transaction id (the XID's last part).
    pub transaction_id: i64,
    /// `ip:port:transactionId`.
    pub xid: Box<str>,
    /// Application id of the TM that began it.
    pub application_id: Box<str>,
    /// Transaction service group of the TM that began it.
    pub transaction_service_group: Box<str>,
    /// Name given by the TM.
    pub transaction_name: Box<str>,
    /// Timeout, ms.
    pub timeout_ms: i32,
    /// Begin time, ms since the Unix epoch.
    pub begin_time_ms: i64,
    state: Mutex<SessionState>,
    /// The types of every branch ever registered (one bit each, kept after the branches are
    /// forgotten), for the `mode` label of the metrics when the transaction ends.
    branch_types: AtomicU8,
}

/// The mutable part of a session.
#[derive(Debug)]
pub struct SessionState {
    /// Lifecycle status.
    pub status: GlobalStatus,
    /// Accepts branch registrations (false once commit, rollback or timeout started).
    pub active: bool,
    /// Branches in registration order.
    pub branches: Vec<Arc<BranchSession>>,
    /// A phase-two pass is running; a second one (TM retry, retry job) must not start.
    pub driving: bool,
    /// When the retry jobs may try this session again.
    pub backoff: Backoff,
}

impl GlobalSession {
    /// A new session in status Begin.
    pub fn new(
        transaction_id: i64,
        xid: String,
        application_id: &str,
        transaction_service_group: &str,
        transaction_name: String,
        timeout_ms: i32,
        begin_time_ms: i64,
    ) -> Self {
        GlobalSession {
            transaction_id,
            xid: xid.into_boxed_str(),
            application_id: application_id.into(),
            transaction_service_group: transaction_service_group.into(),
            transaction_name: transaction_name.into_boxed_str(),
            timeout_ms,
            begin_time_ms,
            state: Mutex::new(SessionState {
                status: GlobalStatus::Begin,
                active: true,
                branches: Vec::new(),
                driving: false,
                backoff: Backoff::default(),
            }),
            branch_types: AtomicU8::new(0),
        }
    }

    /// A session read back from the store, with its branches.
    pub fn from_stored(g: StoredGlobal, branches: Vec<Arc<BranchSession>>) -> Self {
        let s = GlobalSession::new(
            g.transaction_id,
            g.xid,
            &g.application_id,
            &g.transaction_service_group,
            g.transaction_name,
            g.timeout_ms,
            g.begin_time_ms,
        );
        {
            let mut st = s.lock();
            st.active = g.status == GlobalStatus::Begin;
            st.status = g.status;
            st.branches = branches;
        }
        for b in &s.lock().branches {
            s.note_branch_type(b.branch_type);
        }
        s
    }

    /// Records that a branch of type `t` joined.
    pub fn note_branch_type(&self, t: BranchType) {
        self.branch_types
            .fetch_or(crate::metrics::seata::branch_bit(t), Ordering::Relaxed);
    }

    /// The transaction's mode for the metrics, from the branch types seen.
    pub fn mode(&self) -> crate::metrics::seata::Mode {
        crate::metrics::seata::Mode::of_branch_bits(self.branch_types.load(Ordering::Relaxed))
    }

    /// Locks the mutable state. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        // Poisoning means a panic elsewhere while holding the guard; every critical section
        // leaves the state consistent before any call that could panic, so keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current status.
    pub fn status(&self) -> GlobalStatus {
        self.lock().status
    }

    /// The store row of this session with `status`.
    pub fn row(&self, status: GlobalStatus) -> GlobalRow<'_> {
        GlobalRow {
            transaction_id: self.transaction_id,
            xid: &self.xid,
            status,
            application_id: &self.application_id,
            transaction_service_group: &self.transaction_service_group,
            transaction_name: &self.transaction_name,
            timeout_ms: self.timeout_ms,
            begin_time_ms: self.begin_time_ms,
        }
    }

    /// Heap bytes owned by this session and its branches when held in an `Arc` (allocator
    /// rounding to 16 bytes included), for the memory budget.
    pub fn heap_bytes(&self) -> usize {
        let arc = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<Self>();
        let st = self.lock();
        let list = st.branches.capacity() * std::mem::size_of::<Arc<BranchSession>>();
        let own: usize = [
            arc,
            list,
            self.xid.len(),
            self.application_id.len(),
            self.transaction_service_group.len(),
            self.transaction_name.len(),
        ]
        .iter()
        .map(|&n| n.div_ceil(16) * 16)
        .sum();
        own + st.branches.iter().map(|b| b.heap_bytes()).sum::<usize>()
    }
}

impl SessionState {
    /// Seata's `canBeCommittedAsync`: no TCC or XA branch.
    pub fn can_commit_async(&self) -> bool {
        self.branches
            .iter()
            .all(|b| !matches!(b.branch_type, BranchType::Tcc | BranchType::Xa))
    }

    /// Removes a branch by id; true if it was there.
    pub fn remove_branch(&mut self, branch_id: i64) -> bool {
        let before = self.branches.len();
        self.branches.retain(|b| b.branch_id != branch_id);
        self.branches.len() != before
    }

    /// The branch with this id.
    pub fn branch(&self, branch_id: i64) -> Option<&Arc<BranchSession>> {
        self.branches.iter().find(|b| b.branch_id == branch_id)
    }
}
