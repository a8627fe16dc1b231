//! Undo log delete (spec 2.4.8): the TC asks an AT resource to purge old undo logs. One-way:
//! there is no response message.

use super::wire_message;
use crate::types::BranchType;

/// Seata's default `server.undo.logSaveDays`.
pub const DEFAULT_UNDO_LOG_SAVE_DAYS: i16 = 7;

wire_message! {
    /// TC → RM: delete undo logs older than `save_days` for `resource_id`.
    for [UndoLogDeleteRequest] {
        branch_type: BranchType as code,
        resource_id: String as str16,
        save_days: i16 as i16,
    }
}
