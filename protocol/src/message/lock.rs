//! Global lock query (spec 2.4.6): may these rows be locked? Used by AT's
//! `SELECT ... FOR UPDATE` outside a global transaction's own locks.

use super::{wire_message, TxResult};
use crate::types::BranchType;

wire_message! {
    /// RM → TC: byte for byte the layout of a branch register; `xid` is usually empty.
    for [GlobalLockQueryRequest] {
        xid: String as str16,
        branch_type: BranchType as code,
        resource_id: String as str16,
        lock_key: String as str32,
        application_data: String as str32,
    }
}

wire_message! {
    /// TC → RM: whether no other global transaction holds any of the rows. `lockable` is
    /// the protocol's only two-byte boolean.
    for [GlobalLockQueryResponse] {
        #[serde(flatten)]
        result: TxResult as tx_result,
        lockable: bool as bool16,
    }
}
