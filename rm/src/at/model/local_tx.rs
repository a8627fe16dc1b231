//! What an open local transaction has collected for its branch: the global transaction it
//! joined, one undo item per statement in execution order, the row lock keys, and why it may
//! only roll back, if it may.

use super::lock_key::LockKeys;
use super::undo_log::SqlUndoLog;

/// The state of an open local transaction.
#[derive(Debug, Default)]
pub(crate) struct LocalTx {
    /// The global transaction the local one joined (bound by its first imaged statement).
    pub(crate) xid: Option<String>,
    pub(crate) undo: Vec<SqlUndoLog>,
    pub(crate) keys: LockKeys,
    /// Why the undo log would not match the data (a statement failed after it ran, or MySQL
    /// rolled the transaction back): such a transaction may only roll back.
    pub(crate) poisoned: Option<String>,
}
