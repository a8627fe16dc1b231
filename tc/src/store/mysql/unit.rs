//! Units of work for the group-commit writers (`writer.rs`): one store write each, owned so it
//! can travel to a writer task, and what it answered.
//!
//! A unit is built on the caller's side, so a malformed lock key is refused before it queues.

use seata_protocol::{BranchStatus, BranchType, GlobalStatus};

use super::rows::{lock_rows, LockRow};
use crate::lock::{LockError, LockOwner};
use crate::store::{BranchAdded, BranchRow, GlobalRow, StoredGlobal, Transition};

/// A new branch, with the row locks it takes (AT) and whether the global status is checked.
#[derive(Debug)]
pub(super) struct NewBranch {
    pub(super) transaction_id: i64,
    pub(super) xid: String,
    pub(super) branch_id: i64,
    pub(super) branch_type: BranchType,
    pub(super) status: BranchStatus,
    pub(super) resource_id: String,
    pub(super) client_id: String,
    pub(super) application_data: String,
    /// Rows for `lock_table`, sorted by row key; empty for non-AT branches.
    pub(super) locks: Vec<LockRow>,
    /// Refuse unless the global transaction is in Begin (every register but SAGA's,
    /// tc-semantics 2.2 step 2; never for a plain `add_branch`).
    pub(super) check_status: bool,
}

impl NewBranch {
    /// A register: status check (not for SAGA) and the AT lock rows. `Err`: the lock key is
    /// malformed or too long for `lock_table`, so nothing needs the database.
    pub(super) fn register(b: &BranchRow<'_>) -> Result<Self, LockError> {
        let locks = if b.branch_type == BranchType::At && !b.lock_key.is_empty() {
            lock_rows(b.resource_id, b.lock_key)?
        } else {
            Vec::new()
        };
        Ok(Self::with(b, locks, b.branch_type != BranchType::Saga))
    }

    /// Only the branch row: the caller took any locks itself.
    pub(super) fn plain(b: &BranchRow<'_>) -> Self {
        Self::with(b, Vec::new(), false)
    }

    fn with(b: &BranchRow<'_>, locks: Vec<LockRow>, check_status: bool) -> Self {
        NewBranch {
            transaction_id: b.transaction_id,
            xid: b.xid.to_owned(),
            branch_id: b.branch_id,
            branch_type: b.branch_type,
            status: b.status,
            resource_id: b.resource_id.to_owned(),
            client_id: b.client_id.to_owned(),
            application_data: b.application_data.to_owned(),
            locks,
            check_status,
        }
    }

    pub(super) fn owner(&self) -> LockOwner {
        LockOwner {
            transaction_id: self.transaction_id,
            branch_id: self.branch_id,
        }
    }
}

/// One store write.
#[derive(Debug)]
pub(super) enum Op {
    /// GLOBAL_ADD.
    InsertGlobal(StoredGlobal),
    /// Unconditional GLOBAL_UPDATE.
    SetGlobalStatus { xid: String, status: GlobalStatus },
    /// Compare-and-set of the global status (see `SessionStore::transition_global`).
    Transition {
        transaction_id: i64,
        xid: String,
        from: GlobalStatus,
        to: GlobalStatus,
    },
    /// BRANCH_ADD, with its locks and status check when it is a register.
    Register(NewBranch),
    /// BRANCH_UPDATE.
    SetBranchStatus {
        xid: String,
        branch_id: i64,
        status: BranchStatus,
    },
    /// BRANCH_REMOVE, with the branch's lock rows.
    RemoveBranch { xid: String, branch_id: i64 },
    /// GLOBAL_REMOVE, with branches, lock rows and lease.
    RemoveGlobal { transaction_id: i64, xid: String },
}

impl Op {
    /// Whether the unit forgets something: it goes to the removals' writer (`writer.rs`).
    pub(super) fn is_removal(&self) -> bool {
        matches!(self, Op::RemoveBranch { .. } | Op::RemoveGlobal { .. })
    }

    /// The global transaction the unit writes; writers are chosen by it.
    pub(super) fn xid(&self) -> &str {
        match self {
            Op::InsertGlobal(g) => &g.xid,
            Op::Register(b) => &b.xid,
            Op::SetGlobalStatus { xid, .. }
            | Op::Transition { xid, .. }
            | Op::SetBranchStatus { xid, .. }
            | Op::RemoveBranch { xid, .. }
            | Op::RemoveGlobal { xid, .. } => xid,
        }
    }
}

/// What a unit answered once its DB transaction committed.
#[derive(Debug)]
pub(super) enum Outcome {
    /// A plain write.
    Done,
    /// A [`Op::Transition`].
    Transition(Transition),
    /// A [`Op::Register`].
    Added(BranchAdded),
}

/// The owned copy of a global row.
pub(super) fn owned_global(g: &GlobalRow<'_>) -> StoredGlobal {
    StoredGlobal {
        transaction_id: g.transaction_id,
        xid: g.xid.to_owned(),
        status: g.status,
        application_id: g.application_id.to_owned(),
        transaction_service_group: g.transaction_service_group.to_owned(),
        transaction_name: g.transaction_name.to_owned(),
        timeout_ms: g.timeout_ms,
        begin_time_ms: g.begin_time_ms,
    }
}
