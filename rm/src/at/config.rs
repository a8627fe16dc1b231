//! [`AtConfig`]: AT mode's settings, with Seata 1.2's defaults.

use std::time::Duration;

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
    /// Queue length of phase-two commits awaiting undo-log deletion; beyond it a branch
    /// commit waits for room (`client.rm.asyncCommitBufferLimit`, 10000).
    pub async_commit_buffer_limit: usize,
    /// Unused, kept for compatibility (Seata's AsyncWorker gathers commits for 1000 ms and
    /// answers them first). A branch commit is now answered only once its undo log is
    /// deleted, so the deletes are group-committed instead: a batch starts at once when none
    /// is running, and the commits arriving meanwhile (up to 1000) go together in the next.
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
