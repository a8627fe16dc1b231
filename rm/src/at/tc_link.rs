//! [`TcLink`]: what AT mode needs from the TC, implemented over the RM's TC connection
//! (`client.rs`) and by test doubles.

use futures::future::BoxFuture;
use seata_protocol::BranchStatus;

use crate::error::RmError;

/// What AT mode needs from the TC. Implemented over the RM's TC connection; every call is for
/// branch type AT.
pub trait TcLink: Send + Sync + 'static {
    /// Registers an AT branch holding `lock_keys` (`table:pk,..;table2:pk`) and returns the
    /// branch id. A lock held by another global transaction must come back as an error whose
    /// [`RmError::is_lock_conflict`] is true (e.g. [`RmError::LockConflict`]).
    fn branch_register<'a>(
        &'a self,
        xid: &'a str,
        resource_id: &'a str,
        lock_keys: &'a str,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, RmError>>;

    /// Reports a branch's phase-one outcome (`PhaseOne_Done` / `PhaseOne_Failed`).
    fn branch_report<'a>(
        &'a self,
        xid: &'a str,
        branch_id: i64,
        status: BranchStatus,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), RmError>>;

    /// Asks whether `lock_keys` could be locked by `xid` now (global lock query): `true` when
    /// no other global transaction holds any of them.
    fn lock_query<'a>(
        &'a self,
        xid: &'a str,
        resource_id: &'a str,
        lock_keys: &'a str,
    ) -> BoxFuture<'a, Result<bool, RmError>>;
}
