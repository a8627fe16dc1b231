//! Branch messages (spec 2.4.3–2.4.5): register, report, and the TC's phase-two commit and
//! rollback requests. Field order differs between them; it is Seata's, not a mistake.

use super::{wire_message, TxResult};
use crate::types::{BranchStatus, BranchType};

wire_message! {
    /// RM → TC: join a global transaction, taking the row locks in `lock_key`
    /// (`table:pk1,pk2;table2:pk` for AT).
    for [BranchRegisterRequest] {
        xid: String as str16,
        branch_type: BranchType as code,
        resource_id: String as str16,
        lock_key: String as str32,
        application_data: String as str32,
    }
}

wire_message! {
    /// TC → RM: the new branch id.
    for [BranchRegisterResponse] {
        #[serde(flatten)]
        result: TxResult as tx_result,
        branch_id: i64 as i64,
    }
}

wire_message! {
    /// RM → TC: a branch's status changed (e.g. phase one failed). `branch_type` is last.
    for [BranchReportRequest] {
        xid: String as str16,
        branch_id: i64 as i64,
        status: BranchStatus as code,
        resource_id: String as str16,
        application_data: String as str32,
        branch_type: BranchType as code,
    }
}

wire_message! {
    /// TC → RM: the report was recorded.
    for [BranchReportResponse] {
        #[serde(flatten)]
        result: TxResult as tx_result,
    }
}

wire_message! {
    /// TC → RM: phase two for one branch.
    for [BranchCommitRequest, BranchRollbackRequest] {
        xid: String as str16,
        branch_id: i64 as i64,
        branch_type: BranchType as code,
        resource_id: String as str16,
        application_data: String as str32,
    }
}

wire_message! {
    /// RM → TC: the branch's status after phase two.
    for [BranchCommitResponse, BranchRollbackResponse] {
        #[serde(flatten)]
        result: TxResult as tx_result,
        xid: String as str16,
        branch_id: i64 as i64,
        branch_status: BranchStatus as code,
    }
}
