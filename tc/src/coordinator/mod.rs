//! The transaction coordinator's core: begin, branch register/report, lock query, status and
//! report here; commit and rollback in `phase_two.rs`; the work behind the periodic jobs and
//! start-up recovery in `recovery.rs`. No networking: the server calls these methods, and
//! phase-two requests leave through a [`BranchGateway`].
//!
//! Concurrency: sessions live in a `DashMap` keyed by transaction id, each with its own mutex
//! (never held across `.await`), and row locks live in a sharded [`LockManager`]. Lock order:
//! code never touches the session map, the retry queues or the lock manager while holding a
//! session's mutex, so map/queue iteration may lock sessions without risk of deadlock.
//!
//! Durability: every decision is written to the [`SessionStore`] before it is answered or acted
//! on (a status change before phase-two requests go out, a branch before its id is returned).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use dashmap::{DashMap, DashSet};
use seata_protocol::{
    BranchRegisterRequest, BranchRegisterResponse, BranchReportRequest, BranchReportResponse,
    BranchType, GlobalBeginRequest, GlobalBeginResponse, GlobalLockQueryRequest,
    GlobalLockQueryResponse, GlobalReportRequest, GlobalReportResponse, GlobalStatus,
    GlobalStatusRequest, GlobalStatusResponse, TxResult,
};
use tokio::sync::Notify;
use tracing::{debug, field, info, instrument, warn, Span};

use crate::config::TcConfig;
use crate::error::{StoreOp, TcError};
use crate::gateway::BranchGateway;
use crate::id::{self, IdGenerator};
use crate::lock::{LockManager, ShardedLockManager};
use crate::session::{BranchSession, GlobalSession};
use crate::store::{SessionStore, StoredSession};

mod admin;
mod fault_log;
mod gauges;
mod notes;
mod phase_two;
mod recovery;
mod shared;

pub use admin::{
    Action as AdminAction, BranchView, Done as AdminDone, LockView, Refusal, SessionView,
};
pub use notes::{BranchNote, HistoryEntry};
pub use recovery::RetryQueue;
#[cfg(test)]
mod tests;

/// Timeout used when a TM sends 0 or a negative one. Seata 1.2 takes such a value literally,
/// so the transaction times out at once; 60 s is the Java TM's own default.
pub const DEFAULT_TIMEOUT_MS: i32 = 60_000;

/// The connection a request came from, as registered by the network side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// Application id from the TM/RM registration.
    pub application_id: String,
    /// Transaction service group from the registration.
    pub transaction_service_group: String,
    /// `applicationId:ip:port` of the connection.
    pub client_id: String,
}

/// A snapshot of the coordinator's working set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoordinatorStats {
    /// Sessions held in memory (open, in phase two, or kept after a failed rollback).
    pub sessions: usize,
    /// Row locks held.
    pub row_locks: usize,
    /// Sessions waiting for the async (AT) commit job.
    pub async_committing: usize,
    /// Sessions waiting for the commit retry job.
    pub retry_committing: usize,
    /// Sessions waiting for the rollback retry job (including timed-out ones).
    pub retry_rollbacking: usize,
}

/// The work queues of the periodic jobs (Seata's async/retry session managers), as sets of
/// transaction ids. Membership only says "look at this session"; the session's status and
/// back-off decide what happens.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    pub(crate) async_committing: DashSet<i64>,
    pub(crate) retry_committing: DashSet<i64>,
    pub(crate) retry_rollbacking: DashSet<i64>,
}

impl Queues {
    fn remove_all(&self, transaction_id: i64) {
        self.async_committing.remove(&transaction_id);
        self.retry_committing.remove(&transaction_id);
        self.retry_rollbacking.remove(&transaction_id);
    }
}

/// The recovery settings the coordinator needs after construction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) async_period_ms: u32,
    pub(crate) commit_period_ms: u32,
    pub(crate) rollback_period_ms: u32,
    pub(crate) max_commit_retry_timeout_ms: i64,
    pub(crate) max_rollback_retry_timeout_ms: i64,
    pub(crate) rollback_retry_timeout_unlock: bool,
}

/// The transaction coordinator. `Send + Sync`; share it as `Arc<Coordinator>`.
pub struct Coordinator {
    xid_prefix: String,
    ids: IdGenerator,
    sessions: DashMap<i64, Arc<GlobalSession>>,
    locks: Arc<dyn LockManager>,
    store: Arc<dyn SessionStore>,
    /// Several TCs share the store (it has its own lock manager): see `shared.rs`.
    shared: bool,
    gateway: Arc<dyn BranchGateway>,
    queues: Queues,
    settings: Settings,
    wake: Notify,
    /// Phase-two failures, logged per resource once per retry tick (`fault_log.rs`).
    phase_two_failures: fault_log::PhaseTwoFailures,
    /// Failures and operator actions per transaction, for the admin API (`notes.rs`).
    notes: notes::Notes,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("xid_prefix", &self.xid_prefix)
            .field("stats", &self.stats())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn period_ms(ms: u64) -> u32 {
    u32::try_from(ms).unwrap_or(u32::MAX)
}

impl Coordinator {
    /// Builds the coordinator and recovers every unfinished session from `store`: ids are
    /// raised past the recovered ones, row locks of AT branches not yet committed are
    /// re-taken, and sessions in phase two are queued for the jobs.
    pub async fn new(
        config: &TcConfig,
        xid_ip: IpAddr,
        xid_port: u16,
        store: Arc<dyn SessionStore>,
        gateway: Arc<dyn BranchGateway>,
    ) -> Result<Arc<Self>, TcError> {
        let store_locks = store.lock_manager();
        let shared = store_locks.is_some();
        let locks = store_locks.unwrap_or_else(|| Arc::new(ShardedLockManager::new()));
        let r = &config.recovery;
        let coord = Arc::new(Coordinator {
            xid_prefix: id::xid_prefix(xid_ip, xid_port),
            ids: IdGenerator::new(store.server_node().unwrap_or(config.server_node)),
            sessions: DashMap::new(),
            locks,
            store,
            shared,
            gateway,
            queues: Queues::default(),
            settings: Settings {
                async_period_ms: period_ms(r.async_committing_retry_period_ms),
                commit_period_ms: period_ms(r.committing_retry_period_ms),
                rollback_period_ms: period_ms(r.rollbacking_retry_period_ms),
                max_commit_retry_timeout_ms: r.max_commit_retry_timeout_ms,
                max_rollback_retry_timeout_ms: r.max_rollback_retry_timeout_ms,
                rollback_retry_timeout_unlock: r.rollback_retry_timeout_unlock_enable,
            },
            wake: Notify::new(),
            phase_two_failures: fault_log::PhaseTwoFailures::default(),
            notes: notes::Notes::default(),
        });
        let stored = coord
            .store
            .recover()
            .await
            .map_err(|source| TcError::Store {
                op: StoreOp::Read,
                xid: String::new(),
                source,
            })?;
        let n = stored.len();
        for s in stored {
            coord.restore(s, true).await;
        }
        if n > 0 {
            info!(sessions = n, "recovered sessions from the store");
        }
        Ok(coord)
    }

    /// Starts a global transaction.
    #[instrument(skip_all, fields(xid = field::Empty, branch_id = field::Empty))]
    pub async fn begin(&self, req: GlobalBeginRequest, client: &ClientInfo) -> GlobalBeginResponse {
        match self.try_begin(req, client).await {
            Ok(xid) => {
                crate::metrics::seata().begun(crate::metrics::seata::Mode::Seata);
                GlobalBeginResponse {
                    result: TxResult::success(),
                    xid,
                    extra_data: String::new(),
                }
            }
            Err(e) => {
                warn!(error = %e, "global begin failed");
                GlobalBeginResponse {
                    result: e.to_result(),
                    ..GlobalBeginResponse::default()
                }
            }
        }
    }

    async fn try_begin(
        &self,
        req: GlobalBeginRequest,
        client: &ClientInfo,
    ) -> Result<String, TcError> {
        let timeout_ms = if req.timeout <= 0 {
            debug!(
                requested = req.timeout,
                "timeout ≤ 0; using {DEFAULT_TIMEOUT_MS} ms"
            );
            DEFAULT_TIMEOUT_MS
        } else {
            req.timeout
        };
        let transaction_id = self.ids.next_id();
        let mut xid = String::with_capacity(self.xid_prefix.len() + 20);
        xid.push_str(&self.xid_prefix);
        // Writing into the pre-sized string allocates nothing more.
        let _ = write!(xid, "{transaction_id}");
        let session = Arc::new(GlobalSession::new(
            transaction_id,
            xid,
            &client.application_id,
            &client.transaction_service_group,
            req.transaction_name,
            timeout_ms,
            id::now_ms(),
        ));
        Span::current().record("xid", &*session.xid);
        self.store
            .add_global(session.row(GlobalStatus::Begin))
            .await
            .map_err(|source| TcError::Store {
                op: StoreOp::AddGlobal,
                xid: session.xid.to_string(),
                source,
            })?;
        let xid = session.xid.to_string();
        self.sessions.insert(transaction_id, session);
        debug!(timeout_ms, "global transaction begun");
        Ok(xid)
    }

    /// Registers a branch; AT branches take their row locks here, all or none.
    #[instrument(skip_all, fields(xid = %req.xid, branch_id = field::Empty))]
    pub async fn branch_register(
        &self,
        req: BranchRegisterRequest,
        client: &ClientInfo,
    ) -> BranchRegisterResponse {
        match self.try_register(req, client).await {
            Ok(branch_id) => BranchRegisterResponse {
                result: TxResult::success(),
                branch_id,
            },
            Err(e) => {
                if matches!(e, TcError::LockConflict { .. }) {
                    crate::metrics::seata().lock_conflict();
                }
                debug!(error = %e, "branch register rejected");
                BranchRegisterResponse {
                    result: e.to_result(),
                    branch_id: 0,
                }
            }
        }
    }

    async fn try_register(
        &self,
        req: BranchRegisterRequest,
        client: &ClientInfo,
    ) -> Result<i64, TcError> {
        let session = self.find_session(&req.xid).await?;
        // SAGA branches skip the status check (tc-semantics 2.2 step 2).
        let check_status = req.branch_type != BranchType::Saga;
        self.check_open(&session, check_status)?;

        let branch_id = self.ids.next_id();
        Span::current().record("branch_id", branch_id);
        let branch = Arc::new(BranchSession::new(
            branch_id,
            req.branch_type,
            req.resource_id,
            req.lock_key,
            client.client_id.clone(),
            req.application_data,
        ));
        let tid = session.transaction_id;
        // Before the outcome is known: a refused branch still says which mode the TM runs.
        session.note_branch_type(branch.branch_type);
        if self.shared {
            return self.register_shared(&session, branch).await;
        }
        if branch.holds_locks() {
            self.locks
                .acquire(
                    branch.lock_owner(tid),
                    &session.xid,
                    &branch.resource_id,
                    &branch.lock_key,
                )
                .await
                .map_err(|e| TcError::from_lock(&session.xid, e, |holder| self.xid_of(holder)))?;
        }
        if let Err(source) = self.store.add_branch(branch.row(tid, &session.xid)).await {
            self.unlock_branch(&session, &branch).await;
            return Err(TcError::Store {
                op: StoreOp::AddBranch,
                xid: session.xid.to_string(),
                source,
            });
        }
        // Locks and store write happened outside the session mutex, so commit, rollback or
        // timeout may have closed the session meanwhile. Phase two only sees branches in the
        // list, so a branch arriving late must not join it: undo it instead.
        let refused = {
            let mut st = session.lock();
            if st.active || !check_status {
                if st.branches.capacity() == 0 {
                    // Most transactions have one or two branches; the default first growth
                    // would reserve four.
                    st.branches.reserve_exact(2);
                }
                st.branches.push(branch.clone());
                None
            } else {
                Some(st.status)
            }
        };
        if let Some(status) = refused {
            self.unlock_branch(&session, &branch).await;
            if let Err(e) = self.store.remove_branch(tid, &session.xid, branch_id).await {
                // Harmless if it stays: phase two of an unknown branch is a no-op on the RM.
                warn!(error = %e, branch_id, "could not remove refused branch from the store");
            }
            return Err(TcError::GlobalNotActive {
                xid: session.xid.to_string(),
                status,
            });
        }
        debug!(branch_type = %branch.branch_type, "branch registered");
        Ok(branch_id)
    }

    /// Fails unless the session accepts branches.
    fn check_open(&self, session: &GlobalSession, check_status: bool) -> Result<(), TcError> {
        let st = session.lock();
        if !check_status {
            return Ok(());
        }
        if !st.active {
            return Err(TcError::GlobalNotActive {
                xid: session.xid.to_string(),
                status: st.status,
            });
        }
        if st.status != GlobalStatus::Begin {
            return Err(TcError::GlobalStatusInvalid {
                xid: session.xid.to_string(),
                status: st.status,
                operation: "branch register",
            });
        }
        Ok(())
    }

    /// Records a branch's reported status (e.g. PhaseOne_Failed).
    #[instrument(skip_all, fields(xid = %req.xid, branch_id = req.branch_id))]
    pub async fn branch_report(&self, req: BranchReportRequest) -> BranchReportResponse {
        let result = match self.try_report(&req).await {
            Ok(()) => TxResult::success(),
            Err(e) => {
                debug!(error = %e, "branch report rejected");
                e.to_result()
            }
        };
        BranchReportResponse { result }
    }

    async fn try_report(&self, req: &BranchReportRequest) -> Result<(), TcError> {
        let mut session = self.find_session(&req.xid).await?;
        let mut branch = session.lock().branch(req.branch_id).cloned();
        if branch.is_none() && self.shared {
            // Registered through another TC after this one loaded the session.
            session = self.reload(&session).await?;
            branch = session.lock().branch(req.branch_id).cloned();
        }
        let Some(branch) = branch else {
            return Err(TcError::BranchNotExist {
                xid: req.xid.clone(),
                branch_id: req.branch_id,
            });
        };
        self.store
            .update_branch_status(
                session.transaction_id,
                &session.xid,
                req.branch_id,
                req.status,
            )
            .await
            .map_err(|source| TcError::Store {
                op: StoreOp::UpdateBranch,
                xid: req.xid.clone(),
                source,
            })?;
        branch.set_status(req.status);
        debug!(status = %req.status, "branch status reported");
        Ok(())
    }

    /// May these rows be locked? AT only; with an empty xid any holder says no.
    #[instrument(skip_all, fields(xid = %req.xid, branch_id = field::Empty))]
    pub async fn lock_query(&self, req: GlobalLockQueryRequest) -> GlobalLockQueryResponse {
        let ok = |lockable| GlobalLockQueryResponse {
            result: TxResult::success(),
            lockable,
        };
        if req.branch_type != BranchType::At {
            return ok(true);
        }
        let transaction_id = if req.xid.is_empty() {
            None
        } else {
            match id::transaction_id_of(&req.xid) {
                Some(t) => Some(t),
                None => {
                    let e = TcError::InvalidXid { xid: req.xid };
                    return GlobalLockQueryResponse {
                        result: e.to_result(),
                        lockable: false,
                    };
                }
            }
        };
        match self
            .locks
            .is_lockable(transaction_id, &req.resource_id, &req.lock_key)
            .await
        {
            Ok(lockable) => ok(lockable),
            Err(e) => {
                // Seata answers "not lockable" when the check itself fails: the safe answer.
                debug!(error = %e, "lock query failed; answering not lockable");
                ok(false)
            }
        }
    }

    /// The status of a global transaction; Finished when it is not held.
    #[instrument(skip_all, fields(xid = %req.xid, branch_id = field::Empty))]
    pub async fn status(&self, req: GlobalStatusRequest) -> GlobalStatusResponse {
        if self.shared {
            return self.stored_status(&req.xid).await;
        }
        match self.find_session(&req.xid).await {
            Ok(s) => GlobalStatusResponse {
                result: TxResult::success(),
                global_status: s.status(),
            },
            Err(TcError::GlobalNotExist { .. }) => GlobalStatusResponse {
                result: TxResult::success(),
                global_status: GlobalStatus::Finished,
            },
            Err(e) => GlobalStatusResponse {
                result: e.to_result(),
                global_status: GlobalStatus::UnKnown,
            },
        }
    }

    /// A saga engine's report of its final status. Sagas are not driven by this TC yet, so a
    /// held session answers its own status and an unknown one echoes the report
    /// (tc-semantics 2.7).
    #[instrument(skip_all, fields(xid = %req.xid, branch_id = field::Empty))]
    pub async fn report(&self, req: GlobalReportRequest) -> GlobalReportResponse {
        let global_status = match self.find_session(&req.xid).await {
            Ok(s) => s.status(),
            Err(_) => req.global_status.unwrap_or(GlobalStatus::Finished),
        };
        GlobalReportResponse {
            result: TxResult::success(),
            global_status,
        }
    }

    /// An RM (re)registered `resource_id`: sessions waiting on one of its branches are retried
    /// at once instead of after their back-off.
    pub fn resource_available(&self, resource_id: &str) {
        let mut woken = 0usize;
        for queue in [
            &self.queues.async_committing,
            &self.queues.retry_committing,
            &self.queues.retry_rollbacking,
        ] {
            for tid in queue.iter() {
                let Some(session) = self.sessions.get(&*tid).map(|s| s.value().clone()) else {
                    continue;
                };
                let mut st = session.lock();
                if st.branches.iter().any(|b| &*b.resource_id == resource_id) {
                    st.backoff.reset();
                    woken += 1;
                }
            }
        }
        if woken > 0 {
            debug!(
                resource_id,
                sessions = woken,
                "resource back; waking retries"
            );
            self.wake.notify_waiters();
        }
    }

    /// Counts for tests, the load generator and diagnostics.
    pub fn stats(&self) -> CoordinatorStats {
        CoordinatorStats {
            sessions: self.sessions.len(),
            row_locks: self.locks.held_rows(),
            async_committing: self.queues.async_committing.len(),
            retry_committing: self.queues.retry_committing.len(),
            retry_rollbacking: self.queues.retry_rollbacking.len(),
        }
    }

    /// Asks one live RM of every AT resource to delete undo logs older than `save_days`.
    pub fn broadcast_undo_log_delete(&self, save_days: i16) {
        debug!(save_days, "undo log delete broadcast");
        self.gateway.broadcast_undo_log_delete(save_days);
    }

    /// Flushes and closes the store; call once after the jobs and connections have stopped.
    /// Sessions still open stay recorded (a durable store recovers them at the next start).
    pub async fn shutdown(&self) {
        let stats = self.stats();
        if let Err(e) = self.store.close().await {
            warn!(error = %e, "session store did not close cleanly; recovery will check it");
        }
        info!(
            sessions = stats.sessions,
            row_locks = stats.row_locks,
            "coordinator stopped"
        );
    }

    /// Resolves when [`resource_available`](Self::resource_available) wakes the retry jobs.
    pub(crate) fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// The session of `xid`, from memory or (shared stores only) from the store.
    async fn find_session(&self, xid: &str) -> Result<Arc<GlobalSession>, TcError> {
        let tid = id::transaction_id_of(xid).ok_or_else(|| TcError::InvalidXid {
            xid: xid.to_owned(),
        })?;
        if let Some(s) = self.sessions.get(&tid) {
            return Ok(s.value().clone());
        }
        let stored = self
            .store
            .find(tid, xid)
            .await
            .map_err(|source| TcError::Store {
                op: StoreOp::Read,
                xid: xid.to_owned(),
                source,
            })?;
        match stored {
            // Another TC sharing the store created it; adopt it (locks live in that store).
            Some(s) => Ok(self.adopt(s)),
            None => Err(TcError::GlobalNotExist {
                xid: xid.to_owned(),
            }),
        }
    }

    fn adopt(&self, s: StoredSession) -> Arc<GlobalSession> {
        let branches = s
            .branches
            .into_iter()
            .map(|b| Arc::new(BranchSession::from_stored(b)))
            .collect();
        let session = Arc::new(GlobalSession::from_stored(s.global, branches));
        self.sessions
            .entry(session.transaction_id)
            .or_insert(session)
            .value()
            .clone()
    }

    /// The XID of a lock holder, for error messages.
    fn xid_of(&self, transaction_id: i64) -> String {
        self.sessions
            .get(&transaction_id)
            .map(|s| s.xid.to_string())
            .unwrap_or_else(|| format!("transaction {transaction_id}"))
    }

    /// Releases one branch's row locks; a failure is logged (memory locks cannot fail).
    async fn unlock_branch(&self, session: &GlobalSession, branch: &BranchSession) {
        if !branch.holds_locks() {
            return;
        }
        let owner = branch.lock_owner(session.transaction_id);
        if let Err(e) = self
            .locks
            .release(owner, &session.xid, &branch.resource_id, &branch.lock_key)
            .await
        {
            warn!(error = %e, branch_id = branch.branch_id, "could not release branch locks");
        }
    }
}
