//! [`AuditRecord`]: what an operator did through the admin API (give up a branch, delete a
//! kept record, resume a rollback) and what an RM reported that needs an operator (an
//! unretryable phase two with its report). Every store keeps them beside the sessions: the
//! memory store in memory, the file store as `audit` log records (kept by compaction), the
//! db store in the `seata_audit` table.

use serde::{Deserialize, Serialize};

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// Who: `admin` (a bearer-token holder, with the name it gave), `rm` or `tc`.
    pub actor: String,
    /// What: `give-up`, `delete`, `retry`, `commit`, `rollback`, `rm-unretryable`.
    pub action: String,
    /// The global transaction (XID or DTM gid).
    pub xid: String,
    /// The branch concerned, if one.
    pub branch_id: Option<i64>,
    /// The operator's reason, or the RM's report.
    pub reason: String,
    /// The status the transaction had when it happened.
    pub status: String,
}

/// The records of `xid` (all of them), else the newest `limit`, oldest first.
pub(crate) fn select(all: &[AuditRecord], xid: Option<&str>, limit: usize) -> Vec<AuditRecord> {
    match xid {
        Some(x) => all.iter().filter(|r| r.xid == x).cloned().collect(),
        None => all
            .iter()
            .skip(all.len().saturating_sub(limit))
            .cloned()
            .collect(),
    }
}
