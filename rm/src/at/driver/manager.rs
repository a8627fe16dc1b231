//! [`AtResourceManager`]: the AT resources of one process and the phase-two entry points the
//! RM client calls when the TC pushes a request (at-mode.md 7, 8, 9).
//!
//! Phase-two commit only has to delete undo logs. It is queued to one background worker that
//! deletes in batches (group commit): a batch starts at once when the worker is idle, and the
//! commits queued while it runs go together in the next one (up to 1000). A branch commit is
//! answered only once the batch holding it is deleted, so an acknowledged commit never leaves
//! an undo log behind (Seata's AsyncWorker answers first and deletes up to a second later; an
//! RM killed in that second leaves the rows to the age-based cleanup). The worker stops when
//! the manager is dropped.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use mysql_async::{Opts, Pool};
use seata_protocol::BranchStatus;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, instrument, warn};

use super::dirty::{self, DirtyResolution};
use super::resource::DataSourceProxy;
use super::rollback::undo;
use crate::at::config::AtConfig;
use crate::at::model::dirty::DirtyReport;
use crate::at::tc_link::TcLink;
use crate::error::RmError;

/// Undo-log rows deleted per statement by the commit worker (Seata's batch size).
const COMMIT_BATCH: usize = 1000;

/// Default `saveDays` when the TC sends a value ≤ 0.
const DEFAULT_SAVE_DAYS: u32 = 7;

enum CommitJob {
    /// Delete a committed branch's undo log; `done` hears whether the delete succeeded.
    Delete {
        xid: String,
        branch_id: i64,
        resource_id: String,
        done: oneshot::Sender<bool>,
    },
    Flush(oneshot::Sender<()>),
}

type Sources = Arc<DashMap<String, DataSourceProxy>>;

/// A phase-two rollback's answer for the TC.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackAnswer {
    /// The branch status.
    pub status: BranchStatus,
    /// For `PhaseTwo_RollbackFailed_Unretryable`: the report summary, sent as the response
    /// message (which Seata's codec carries only with resultCode Failed).
    pub message: Option<String>,
}

/// The AT resource manager: data sources by resource id, the TC link, the commit worker.
pub struct AtResourceManager {
    tc: Arc<dyn TcLink>,
    config: AtConfig,
    sources: Sources,
    commits: mpsc::Sender<CommitJob>,
}

impl std::fmt::Debug for AtResourceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtResourceManager")
            .field("resources", &self.resource_ids())
            .finish_non_exhaustive()
    }
}

impl AtResourceManager {
    /// Creates the manager and starts its commit worker; must run inside a tokio runtime.
    pub fn new(tc: Arc<dyn TcLink>, config: AtConfig) -> Result<Arc<Self>, RmError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| RmError::NoRuntime)?;
        let (tx, rx) = mpsc::channel(config.async_commit_buffer_limit.max(1));
        let sources: Sources = Arc::default();
        // Ends when the last sender (held by the manager) is dropped.
        handle.spawn(commit_worker(rx, sources.clone()));
        Ok(Arc::new(AtResourceManager {
            tc,
            config,
            sources,
            commits: tx,
        }))
    }

    /// Registers a MySQL database as an AT resource, with a new pool for `opts`. The data
    /// source keeps this manager alive.
    pub fn data_source(self: &Arc<Self>, opts: impl Into<Opts>) -> DataSourceProxy {
        let opts = opts.into();
        self.data_source_with_pool(Pool::new(opts.clone()), &opts)
    }

    /// Registers a MySQL database as an AT resource over an existing pool built from `opts`.
    /// The data source keeps this manager alive.
    pub fn data_source_with_pool(self: &Arc<Self>, pool: Pool, opts: &Opts) -> DataSourceProxy {
        let ds = DataSourceProxy::new(pool, opts, self.tc.clone(), self.config.clone());
        self.sources
            .insert(ds.resource_id().to_string(), ds.clone());
        ds.owned_by(self.clone())
    }

    /// The resource ids to announce to the TC (RegisterRM).
    pub fn resource_ids(&self) -> Vec<String> {
        self.sources.iter().map(|e| e.key().clone()).collect()
    }

    /// The data source registered under `resource_id`.
    pub fn data_source_for(&self, resource_id: &str) -> Option<DataSourceProxy> {
        self.sources.get(resource_id).map(|e| e.value().clone())
    }

    /// Phase-two commit: queues the undo log for deletion with the next batch and answers
    /// `PhaseTwo_Committed` once that batch is deleted, `PhaseTwo_CommitFailed_Retryable`
    /// when the delete failed (the TC retries; deleting nothing again is harmless). A full
    /// queue waits for room.
    #[instrument(skip_all, fields(xid = %xid, branch_id = branch_id))]
    pub async fn branch_commit(
        &self,
        xid: &str,
        branch_id: i64,
        resource_id: &str,
    ) -> BranchStatus {
        let (done, deleted) = oneshot::channel();
        let job = CommitJob::Delete {
            xid: xid.to_string(),
            branch_id,
            resource_id: resource_id.to_string(),
            done,
        };
        if self.commits.send(job).await.is_err() {
            warn!(xid, branch_id, "commit worker stopped; the TC will retry");
            return BranchStatus::PhaseTwoCommitFailedRetryable;
        }
        match deleted.await {
            Ok(true) => BranchStatus::PhaseTwoCommitted,
            _ => BranchStatus::PhaseTwoCommitFailedRetryable,
        }
    }

    /// Phase-two rollback: undoes the branch's phase-one changes. A dirty write answers
    /// `PhaseTwo_RollbackFailed_Unretryable`; any other failure `..._Retryable`. See
    /// [`branch_rollback_reported`](Self::branch_rollback_reported) for the report.
    pub async fn branch_rollback(
        &self,
        xid: &str,
        branch_id: i64,
        resource_id: &str,
    ) -> BranchStatus {
        self.branch_rollback_reported(xid, branch_id, resource_id)
            .await
            .status
    }

    /// [`branch_rollback`](Self::branch_rollback) with the message for the TC: on a dirty
    /// write, the branch's undo log is kept (its rows stay locked at the TC) and the answer
    /// carries [`DirtyReport::summary`]; settle it with [`resolve_dirty`](Self::resolve_dirty).
    #[instrument(skip_all, fields(xid = %xid, branch_id = branch_id))]
    pub async fn branch_rollback_reported(
        &self,
        xid: &str,
        branch_id: i64,
        resource_id: &str,
    ) -> RollbackAnswer {
        let answer = |status, message| RollbackAnswer { status, message };
        let Some(ds) = self.data_source_for(resource_id) else {
            error!(
                resource_id,
                "rollback for an unknown resource; the TC will retry"
            );
            return answer(BranchStatus::PhaseTwoRollbackFailedRetryable, None);
        };
        match undo(&ds.inner, xid, branch_id).await {
            Ok(outcome) => {
                info!(xid, branch_id, ?outcome, "branch rolled back");
                answer(BranchStatus::PhaseTwoRollbacked, None)
            }
            Err(e @ RmError::DirtyWrite { .. }) => {
                let message = match dirty::report(&ds.inner, xid, branch_id).await {
                    Ok(Some(report)) => {
                        error!(
                            error = %e,
                            report = %report.to_json(),
                            "branch rollback refused: dirty write; settle it with \
                             AtResourceManager::resolve_dirty, then retry or give up the branch at the TC"
                        );
                        report.summary()
                    }
                    other => {
                        error!(error = %e, report = ?other.err(), "branch rollback refused: dirty write");
                        e.to_string()
                    }
                };
                answer(
                    BranchStatus::PhaseTwoRollbackFailedUnretryable,
                    Some(message),
                )
            }
            Err(e) => {
                warn!(error = %e, "branch rollback failed; the TC will retry");
                answer(BranchStatus::PhaseTwoRollbackFailedRetryable, None)
            }
        }
    }

    /// The rows of a branch whose rollback was refused for a dirty write, with their before,
    /// after and current values; `None` when the branch has no undo log left.
    pub async fn dirty_report(
        &self,
        xid: &str,
        branch_id: i64,
        resource_id: &str,
    ) -> Result<Option<DirtyReport>, RmError> {
        let ds = self
            .data_source_for(resource_id)
            .ok_or_else(|| RmError::UnknownResource(resource_id.to_string()))?;
        dirty::report(&ds.inner, xid, branch_id).await
    }

    /// Settles a dirty rollback: write the before images back anyway, or accept the current
    /// data. Either deletes the undo log, so the TC's next rollback of the branch (an admin
    /// `retry`) succeeds and releases its locks. Returns `false` when there was no undo log.
    #[instrument(skip_all, fields(xid = %xid, branch_id = branch_id))]
    pub async fn resolve_dirty(
        &self,
        xid: &str,
        branch_id: i64,
        resource_id: &str,
        how: DirtyResolution,
    ) -> Result<bool, RmError> {
        let ds = self
            .data_source_for(resource_id)
            .ok_or_else(|| RmError::UnknownResource(resource_id.to_string()))?;
        let done = dirty::resolve(&ds.inner, xid, branch_id, how).await?;
        info!(xid, branch_id, ?how, done, "dirty rollback settled");
        Ok(done)
    }

    /// Deletes undo logs created `save_days` or more days ago (TC-driven housekeeping);
    /// `save_days` ≤ 0 means 7. Returns how many rows were deleted.
    pub async fn delete_undo_logs_older_than(
        &self,
        resource_id: &str,
        save_days: i32,
    ) -> Result<u64, RmError> {
        let ds = self
            .data_source_for(resource_id)
            .ok_or_else(|| RmError::UnknownResource(resource_id.to_string()))?;
        let days = u32::try_from(save_days)
            .ok()
            .filter(|d| *d > 0)
            .unwrap_or(DEFAULT_SAVE_DAYS);
        let mut conn = ds.pool().get_conn().await?;
        ds.inner.undo_table.delete_older_than(&mut conn, days).await
    }

    /// Waits until every phase-two commit queued so far has had its undo log deleted (or its
    /// deletion failed and was logged). Each [`branch_commit`](Self::branch_commit) already
    /// waits for its own.
    pub async fn flush_async_commits(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commits.send(CommitJob::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn commit_worker(mut rx: mpsc::Receiver<CommitJob>, sources: Sources) {
    while let Some(first) = rx.recv().await {
        // Group commit: take what queued up while the previous batch ran, without waiting.
        let mut jobs = vec![first];
        while jobs.len() < COMMIT_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut flushes = Vec::new();
        let mut by_resource: HashMap<String, Vec<(String, i64, oneshot::Sender<bool>)>> =
            HashMap::new();
        for job in jobs {
            match job {
                CommitJob::Delete {
                    xid,
                    branch_id,
                    resource_id,
                    done,
                } => by_resource
                    .entry(resource_id)
                    .or_default()
                    .push((xid, branch_id, done)),
                CommitJob::Flush(done) => flushes.push(done),
            }
        }
        for (resource_id, entries) in by_resource {
            let branches: Vec<(String, i64)> =
                entries.iter().map(|(x, b, _)| (x.clone(), *b)).collect();
            let ok = match delete_committed(&sources, &resource_id, &branches).await {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, resource_id, branches = branches.len(),
                        "undo log deletion after commit failed; answering retryable, the TC will retry");
                    false
                }
            };
            for (_, _, done) in entries {
                let _ = done.send(ok);
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn delete_committed(
    sources: &Sources,
    resource_id: &str,
    branches: &[(String, i64)],
) -> Result<(), RmError> {
    let ds = sources
        .get(resource_id)
        .map(|e| e.value().clone())
        .ok_or_else(|| RmError::UnknownResource(resource_id.to_string()))?;
    let mut conn = ds.pool().get_conn().await?;
    for chunk in branches.chunks(COMMIT_BATCH) {
        let xids: Vec<String> = chunk.iter().map(|(x, _)| x.clone()).collect();
        let ids: Vec<i64> = chunk.iter().map(|(_, b)| *b).collect();
        ds.inner
            .undo_table
            .delete_batch(&mut conn, &ids, &xids)
            .await?;
    }
    Ok(())
}
