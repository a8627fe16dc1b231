//! AT mode: a SQL proxy over `mysql_async` that makes a service's MySQL work part of a global
//! transaction without changing its SQL (at-mode.md).
//!
//! - [`AtResourceManager`] owns the data sources, the TC link and the phase-two entry points
//!   (`branch_commit`, `branch_rollback`, undo-log housekeeping) the RM client calls.
//! - [`DataSourceProxy`] wraps a `mysql_async::Pool`; its [`AtConnection`]s intercept
//!   statements while an XID is bound (`seata_tm::context`), and are plain pass-throughs
//!   otherwise.
//! - Inside: `recognize` (SQL → shapes), `meta` (table metadata), `exec` (a DML statement with
//!   its images), `batch` (images and statement in one round trip), `literal` (parameters
//!   written into SQL text), `for_update` (`SELECT ... FOR UPDATE`), `image` (row images),
//!   `lock_key`, `undo` (model, Jackson JSON, `undo_log` table), `undo_exec` (phase-two
//!   rollback), `value` (column values as Java classes), `session` (what a connection knows
//!   about its MySQL session, to skip round trips).
//!
//! The TC is reached through the [`TcLink`] trait, which the RM client implements.

mod batch;
mod connection;
mod exec;
mod for_update;
pub mod image;
pub mod int_set;
mod json;
mod literal;
pub mod lock_key;
mod manager;
pub mod meta;
mod proxy;
pub mod recognize;
mod session;
mod text_cache;
pub mod undo;
mod undo_exec;
pub mod value;

use std::time::Duration;

use futures::future::BoxFuture;
use seata_protocol::BranchStatus;

use crate::error::RmError;

pub use connection::AtConnection;
pub use manager::AtResourceManager;
pub use proxy::{resource_id_of, DataSourceProxy};

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

/// AT mode settings. Defaults are Seata 1.2's (at-mode.md 5.2, 10).
#[derive(Debug, Clone)]
pub struct AtConfig {
    /// Pause between global-lock attempts (`client.rm.lock.retryInterval`, default 10 ms).
    pub lock_retry_interval: Duration,
    /// Retries after the first conflict before giving up with `LockWaitTimeout`
    /// (`client.rm.lock.retryTimes`, default 30).
    pub lock_retry_times: u32,
    /// On a lock conflict, roll the local transaction back and re-run the statement (true,
    /// default) or keep the local locks and retry only the registration (false)
    /// (`client.rm.lock.retryPolicyBranchRollbackOnConflict`).
    pub rollback_on_conflict: bool,
    /// Attempts for a branch report (`client.rm.reportRetryCount`, default 5).
    pub report_retry_count: u32,
    /// Report `PhaseOne_Done` after a successful local commit (`client.rm.reportSuccessEnable`,
    /// default false).
    pub report_success: bool,
    /// Queue length of phase-two commits awaiting undo-log deletion; beyond it entries are
    /// dropped and left to age-based deletion (`client.rm.asyncCommitBufferLimit`, 10000).
    pub async_commit_buffer_limit: usize,
    /// How long committed branches gather before their undo logs are deleted together
    /// (Seata's AsyncWorker ticks every 1000 ms); a full batch of 1000 goes at once. Deleting
    /// per commit would add a write and an fsync to every transaction.
    pub async_commit_interval: Duration,
    /// Compare current rows with the after image before undoing (`client.undo.dataValidation`,
    /// default true).
    pub data_validation: bool,
    /// The undo log table (`client.undo.logTable`, default `undo_log`).
    pub undo_log_table: String,
    /// Seconds east of UTC for `java.sql.Timestamp`/`Date` millis in undo logs; set it to the
    /// Java services' JVM zone when they share undo logs (default 0, UTC).
    pub time_zone_offset_secs: i32,
}

impl Default for AtConfig {
    fn default() -> Self {
        AtConfig {
            lock_retry_interval: Duration::from_millis(10),
            lock_retry_times: 30,
            rollback_on_conflict: true,
            report_retry_count: 5,
            report_success: false,
            async_commit_buffer_limit: 10_000,
            async_commit_interval: Duration::from_secs(1),
            data_validation: true,
            undo_log_table: "undo_log".into(),
            time_zone_offset_secs: 0,
        }
    }
}
