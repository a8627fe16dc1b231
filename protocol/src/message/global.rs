//! Global transaction messages (spec 2.4.1, 2.4.2): begin, commit, rollback, status, report.

use super::{wire_message, TxResult};
use crate::types::GlobalStatus;

wire_message! {
    /// TM → TC: start a global transaction.
    for [GlobalBeginRequest] {
        /// Milliseconds until the TC rolls the transaction back (Java default 60000).
        timeout: i32 as i32,
        /// Free-form name, shown in logs and the store.
        transaction_name: String as str16,
    }
}

wire_message! {
    /// TC → TM: the new transaction's XID.
    for [GlobalBeginResponse] {
        #[serde(flatten)]
        result: TxResult as tx_result,
        xid: String as str16,
        extra_data: String as str16,
    }
}

wire_message! {
    /// TM → TC: commit, roll back, or ask the status of a global transaction.
    for [GlobalCommitRequest, GlobalRollbackRequest, GlobalStatusRequest] {
        xid: String as str16,
        extra_data: String as str16,
    }
}

wire_message! {
    /// TM → TC (SAGA): report the final status a saga reached. `None` is written as `0xFF`.
    for [GlobalReportRequest] {
        xid: String as str16,
        extra_data: String as str16,
        global_status: Option<GlobalStatus> as opt_global_status,
    }
}

wire_message! {
    /// TC → TM: the global status after the request.
    for [GlobalCommitResponse, GlobalRollbackResponse, GlobalStatusResponse, GlobalReportResponse] {
        #[serde(flatten)]
        result: TxResult as tx_result,
        global_status: GlobalStatus as code,
    }
}
