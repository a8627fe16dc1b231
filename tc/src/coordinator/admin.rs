//! What the admin API reads from and does to the coordinator: views of the sessions, their
//! branches and row locks, and the operator's actions (retry now, roll back or commit a
//! transaction waiting on a decision, give up a branch that can never complete, delete a kept
//! failure). Each action is idempotent and refuses what would break the protocol with a
//! [`Refusal`] that says why and what to do instead (tc-semantics 2.8 for the legal moves).
//!
//! No HTTP here: `crate::admin` turns these into JSON and status codes.

use std::sync::Arc;

use seata_protocol::{BranchStatus, GlobalRollbackRequest, GlobalStatus};
use serde::Serialize;
use thiserror::Error;
use tracing::{info, warn};

use super::notes::{BranchNote, HistoryEntry};
use super::phase_two::DriveGuard;
use super::Coordinator;
use crate::error::{StoreOp, TcError};
use crate::id;
use crate::lock::parse_lock_key;
use crate::session::state::{phase_of, Phase};
use crate::session::GlobalSession;
use crate::store::AuditRecord;

/// One branch as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BranchView {
    /// Branch id (a JSON string).
    #[serde(with = "crate::store::id_json")]
    pub branch_id: i64,
    /// AT, TCC, SAGA or XA.
    pub branch_type: String,
    /// Seata's branch status name.
    pub status: String,
    /// Resource id (a database URL for AT).
    pub resource_id: String,
    /// `applicationId:ip:port` of the RM connection that registered it.
    pub client_id: String,
    /// Row lock key (AT).
    pub lock_key: String,
    /// Failures, last error and the unretryable mark.
    #[serde(flatten)]
    pub note: BranchNote,
}

/// One global transaction as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// XID.
    pub xid: String,
    /// Transaction id (a JSON string).
    #[serde(with = "crate::store::id_json")]
    pub transaction_id: i64,
    /// Seata's global status name.
    pub status: String,
    /// `at`, `tcc`, `xa`, `saga`, `mixed`, or `none` before any branch registered.
    pub mode: String,
    /// Application id of the TM.
    pub application_id: String,
    /// Transaction service group of the TM.
    pub transaction_service_group: String,
    /// Name given by the TM.
    pub transaction_name: String,
    /// Timeout, ms.
    pub timeout_ms: i32,
    /// Begin time, ms since the Unix epoch.
    pub begin_time_ms: i64,
    /// Still accepting branches.
    pub active: bool,
    /// When its phase two started failing, ms (None: it has not failed).
    pub retrying_since_ms: Option<i64>,
    /// Waiting for an operator: a branch the RM reported unretryable.
    pub needs_operator: bool,
    /// Its branches in registration order.
    pub branches: Vec<BranchView>,
}

/// One held row lock.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LockView {
    /// Resource id.
    pub resource_id: String,
    /// Table.
    pub table: String,
    /// Primary key value(s).
    pub pk: String,
    /// Holder's XID.
    pub xid: String,
    /// Holder branch (a JSON string).
    #[serde(with = "crate::store::id_json")]
    pub branch_id: i64,
}

/// What an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run phase two again now (resuming a rollback an RM marked unretryable).
    Retry,
    /// Roll back: decide it (Begin), or push the decided rollback on.
    Rollback,
    /// Push a decided commit on.
    Commit,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Rollback => "rollback",
            Action::Commit => "commit",
        }
    }
}

/// Why an admin action was not done.
#[derive(Debug, Error)]
pub enum Refusal {
    /// No such transaction (or branch) here.
    #[error("{what} not found: {detail}")]
    NotFound {
        /// `transaction` or `branch`.
        what: &'static str,
        /// What to check.
        detail: String,
    },
    /// The action would break the protocol in the transaction's current state.
    #[error("{why}; {next}")]
    Conflict {
        /// Why not.
        why: String,
        /// What to do instead.
        next: String,
        /// The status now.
        status: GlobalStatus,
    },
    /// A phase-two pass is running on it right now.
    #[error("a phase-two pass is running on {xid}; try again in a moment")]
    Busy {
        /// The transaction.
        xid: String,
    },
    /// The request is malformed (e.g. a give-up without a reason).
    #[error("{0}")]
    Invalid(String),
    /// The store could not record the action or its audit record; nothing was done.
    #[error(transparent)]
    Store(#[from] TcError),
}

/// What an action did.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    /// The transaction.
    pub xid: String,
    /// The action.
    pub action: String,
    /// Status afterwards (`Finished` when the session is gone).
    pub status: String,
    /// Whether anything changed (false: it was already so, e.g. a repeated request).
    pub changed: bool,
    /// One line for the operator.
    pub message: String,
}

fn mode_of(session: &GlobalSession) -> String {
    use seata_protocol::BranchType as T;
    let st = session.lock();
    let mut kinds = st.branches.iter().map(|b| match b.branch_type {
        T::At => "at",
        T::Tcc => "tcc",
        T::Saga => "saga",
        T::Xa => "xa",
    });
    let Some(first) = kinds.next() else {
        return "none".into();
    };
    if kinds.all(|k| k == first) {
        first.into()
    } else {
        "mixed".into()
    }
}

fn store_error(xid: &str, op: StoreOp) -> impl FnOnce(crate::store::StoreError) -> Refusal + '_ {
    move |source| {
        Refusal::Store(TcError::Store {
            op,
            xid: xid.to_owned(),
            source,
        })
    }
}

impl Coordinator {
    fn view(&self, session: &GlobalSession) -> SessionView {
        let notes = self.notes.of(session.transaction_id);
        let (status, active, branches) = {
            let st = session.lock();
            (st.status, st.active, st.branches.clone())
        };
        let branches: Vec<BranchView> = branches
            .iter()
            .map(|b| BranchView {
                branch_id: b.branch_id,
                branch_type: b.branch_type.to_string(),
                status: b.status().to_string(),
                resource_id: b.resource_id.to_string(),
                client_id: b.client_id.to_string(),
                lock_key: b.lock_key.to_string(),
                note: notes
                    .branches
                    .get(&b.branch_id)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        SessionView {
            xid: session.xid.to_string(),
            transaction_id: session.transaction_id,
            status: status.to_string(),
            mode: mode_of(session),
            application_id: session.application_id.to_string(),
            transaction_service_group: session.transaction_service_group.to_string(),
            transaction_name: session.transaction_name.to_string(),
            timeout_ms: session.timeout_ms,
            begin_time_ms: session.begin_time_ms,
            active,
            retrying_since_ms: notes.retrying_since_ms,
            needs_operator: branches.iter().any(|b| b.note.unretryable),
            branches,
        }
    }

    /// Every session this TC holds, oldest first.
    pub fn admin_sessions(&self) -> Vec<SessionView> {
        let held: Vec<Arc<GlobalSession>> =
            self.sessions.iter().map(|e| e.value().clone()).collect();
        let mut views: Vec<SessionView> = held.iter().map(|s| self.view(s)).collect();
        views.sort_by_key(|v| (v.begin_time_ms, v.transaction_id));
        views
    }

    /// One session with its short history and audit records; `None` if not held.
    pub async fn admin_session(
        &self,
        xid: &str,
    ) -> Result<Option<(SessionView, Vec<HistoryEntry>, Vec<AuditRecord>)>, TcError> {
        let Some(session) = self.held(xid) else {
            return Ok(None);
        };
        let view = self.view(&session);
        let history = self.notes.of(session.transaction_id).history;
        let audits = self.admin_audits(Some(xid), 0).await?;
        Ok(Some((view, history, audits)))
    }

    /// Audit records (of `xid`, or the newest `limit`), oldest first.
    pub async fn admin_audits(
        &self,
        xid: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, TcError> {
        self.store
            .audits(xid, limit)
            .await
            .map_err(|source| TcError::Store {
                op: StoreOp::Read,
                xid: xid.unwrap_or_default().to_owned(),
                source,
            })
    }

    /// The row locks held, from the lock keys of the AT branches that hold them: every branch
    /// of a session not yet committing (a commit decision releases all its locks).
    pub fn admin_locks(&self) -> Vec<LockView> {
        let mut out = Vec::new();
        for entry in self.sessions.iter() {
            let s = entry.value();
            let st = s.lock();
            if phase_of(st.status) == Phase::Commit {
                continue;
            }
            for b in st.branches.iter().filter(|b| b.holds_locks()) {
                let Ok(rows) = parse_lock_key(&b.lock_key) else {
                    continue;
                };
                for (table, pk) in rows {
                    out.push(LockView {
                        resource_id: b.resource_id.to_string(),
                        table: table.to_owned(),
                        pk: pk.to_owned(),
                        xid: s.xid.to_string(),
                        branch_id: b.branch_id,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.resource_id, &a.table, &a.pk).cmp(&(&b.resource_id, &b.table, &b.pk))
        });
        out
    }

    /// Whether `s` looks like a Seata XID (`ip:port:transactionId`) rather than a DTM gid.
    pub fn is_seata_xid(&self, s: &str) -> bool {
        s.contains(':') && id::transaction_id_of(s).is_some()
    }

    fn held(&self, xid: &str) -> Option<Arc<GlobalSession>> {
        let tid = id::transaction_id_of(xid)?;
        self.sessions
            .get(&tid)
            .map(|s| s.value().clone())
            .filter(|s| &*s.xid == xid)
    }

    fn not_found(xid: &str) -> Refusal {
        Refusal::NotFound {
            what: "transaction",
            detail: format!(
                "{xid} is not held by this TC (finished, deleted, or never begun here); \
                 `admin list` shows what is, `admin audit --xid {xid}` what operators did"
            ),
        }
    }

    async fn audit(
        &self,
        session: &GlobalSession,
        actor: &str,
        action: &str,
        branch_id: Option<i64>,
        reason: &str,
    ) -> Result<(), Refusal> {
        let record = AuditRecord {
            at_ms: id::now_ms(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            xid: session.xid.to_string(),
            branch_id,
            reason: reason.to_owned(),
            status: session.status().to_string(),
        };
        self.store
            .add_audit(&record)
            .await
            .map_err(store_error(&session.xid, StoreOp::WriteGlobal))
    }

    /// Keeps an audit record of an action on something that is not a Seata session (a DTM
    /// transaction).
    pub async fn admin_record(&self, record: &AuditRecord) -> Result<(), Refusal> {
        self.store
            .add_audit(record)
            .await
            .map_err(store_error(&record.xid, StoreOp::WriteGlobal))
    }

    /// Retry now, roll back or commit (see [`Action`]).
    pub async fn admin_act(&self, xid: &str, action: Action, actor: &str) -> Result<Done, Refusal> {
        let session = self.held(xid).ok_or_else(|| Self::not_found(xid))?;
        let status = session.status();
        let phase = phase_of(status);
        let done = |status: GlobalStatus, changed: bool, message: String| Done {
            xid: xid.to_owned(),
            action: action.name().to_owned(),
            status: status.to_string(),
            changed,
            message,
        };
        let kept_failure = matches!(
            status,
            GlobalStatus::RollbackFailed | GlobalStatus::TimeoutRollbackFailed
        );
        match (action, phase) {
            (Action::Retry | Action::Commit, Phase::Open) => Err(Refusal::Conflict {
                why: format!("{xid} is still in phase one (Begin); only its TM can commit it, as its branches may not have finished"),
                next: "roll it back (`admin rollback`) or wait for its timeout".into(),
                status,
            }),
            (Action::Rollback, Phase::Open) => {
                let r = self
                    .rollback(GlobalRollbackRequest {
                        xid: xid.to_owned(),
                        extra_data: String::new(),
                    })
                    .await;
                if !r.result.is_success() {
                    return Err(Refusal::Conflict {
                        why: format!("rollback of {xid} failed: {}", r.result.msg),
                        next: "check the TC log and the store; then try again".into(),
                        status,
                    });
                }
                self.notes.event(session.transaction_id, None, id::now_ms(), format!("operator {actor}: rollback decided"));
                let _ = self.audit(&session, actor, "rollback", None, "").await;
                Ok(done(r.global_status, true, "rollback decided; branches are being rolled back".into()))
            }
            (Action::Commit, Phase::Rollback) | (Action::Commit, Phase::Done) if kept_failure || phase == Phase::Rollback => {
                Err(Refusal::Conflict {
                    why: format!("a rollback of {xid} was decided ({status}); committing now would break atomicity"),
                    next: "use `admin retry` to push the rollback on, or `admin give-up` for a branch that can never be undone".into(),
                    status,
                })
            }
            (Action::Rollback, Phase::Commit) => Err(Refusal::Conflict {
                why: format!("a commit of {xid} was decided ({status}); branches already committed cannot be rolled back"),
                next: "use `admin retry` to push the commit on, or `admin give-up` for a branch that can never be confirmed".into(),
                status,
            }),
            (_, Phase::Commit) | (_, Phase::Rollback) => {
                let queued = self.requeue(&session);
                self.notes.event(session.transaction_id, None, id::now_ms(), format!("operator {actor}: {} now", action.name()));
                Ok(done(status, queued, "phase two runs again now".into()))
            }
            (Action::Retry | Action::Rollback, Phase::Done) if kept_failure => {
                self.resume_rollback(&session, actor, action).await?;
                Ok(done(session.status(), true, "rollback resumed: the branch the RM refused is tried again (fix its data first)".into()))
            }
            (_, _) => Err(Refusal::Conflict {
                why: format!("{xid} is {status}: nothing is left to {}", action.name()),
                next: "`admin delete` removes a kept record".into(),
                status,
            }),
        }
    }

    /// Puts a phase-two session back in its queue, due now; true if it was not queued.
    fn requeue(&self, session: &GlobalSession) -> bool {
        let tid = session.transaction_id;
        let status = {
            let mut st = session.lock();
            st.backoff.reset();
            st.status
        };
        let queue = match (status, phase_of(status)) {
            (GlobalStatus::AsyncCommitting, _) => &self.queues.async_committing,
            (_, Phase::Commit) => &self.queues.retry_committing,
            _ => &self.queues.retry_rollbacking,
        };
        let added = queue.insert(tid);
        self.wake.notify_waiters();
        added
    }

    /// (Timeout)RollbackFailed → (Timeout)RollbackRetrying, queued: the operator fixed the data
    /// behind the branch the RM refused, or gave it up and the others must still be undone.
    async fn resume_rollback(
        &self,
        session: &Arc<GlobalSession>,
        actor: &str,
        action: Action,
    ) -> Result<(), Refusal> {
        let to = match session.status() {
            GlobalStatus::RollbackFailed => GlobalStatus::RollbackRetrying,
            GlobalStatus::TimeoutRollbackFailed => GlobalStatus::TimeoutRollbackRetrying,
            _ => return Ok(()),
        };
        self.audit(session, actor, action.name(), None, "resume rollback")
            .await?;
        self.store
            .update_global_status(session.transaction_id, &session.xid, to)
            .await
            .map_err(store_error(&session.xid, StoreOp::WriteGlobal))?;
        session.lock().status = to;
        self.notes.clear_unretryable(session.transaction_id);
        self.notes.event(
            session.transaction_id,
            None,
            id::now_ms(),
            format!("operator {actor}: rollback resumed"),
        );
        self.requeue(session);
        info!(xid = %session.xid, status = %to, "operator resumed the rollback");
        Ok(())
    }

    /// Gives up one branch that can never complete: audited, forgotten, its row locks
    /// released. The transaction then finishes as failed (RollbackFailed, TimeoutRollbackFailed
    /// or CommitFailed) once its other branches are done.
    pub async fn admin_give_up(
        &self,
        xid: &str,
        branch_id: i64,
        reason: &str,
        actor: &str,
    ) -> Result<Done, Refusal> {
        if reason.trim().is_empty() {
            return Err(Refusal::Invalid(
                "give-up needs a reason (it is kept in the audit record); pass --reason".into(),
            ));
        }
        let done = |status: String, changed: bool, message: String| Done {
            xid: xid.to_owned(),
            action: "give-up".into(),
            status,
            changed,
            message,
        };
        let Some(session) = self.held(xid) else {
            // Idempotent: a repeated give-up of a branch whose transaction has since finished.
            let audits = self.admin_audits(Some(xid), 0).await?;
            if audits
                .iter()
                .any(|a| a.action == "give-up" && a.branch_id == Some(branch_id))
            {
                return Ok(done(
                    GlobalStatus::Finished.to_string(),
                    false,
                    "already given up".into(),
                ));
            }
            return Err(Self::not_found(xid));
        };
        let status = session.status();
        if phase_of(status) == Phase::Open {
            return Err(Refusal::Conflict {
                why: format!("{xid} is still in phase one (Begin); its branches may yet complete"),
                next: "roll it back first (`admin rollback`), then give up a branch that cannot be undone".into(),
                status,
            });
        }
        // Claimed under the session mutex; `None` when the branch is not (or no longer) there.
        let claimed = {
            let mut st = session.lock();
            match st.branch(branch_id).cloned() {
                Some(_) if st.driving => {
                    return Err(Refusal::Busy {
                        xid: xid.to_owned(),
                    })
                }
                Some(branch) => {
                    st.driving = true;
                    Some(branch)
                }
                None => None,
            }
        };
        let Some(branch) = claimed else {
            let audits = self.admin_audits(Some(xid), 0).await?;
            if audits
                .iter()
                .any(|a| a.action == "give-up" && a.branch_id == Some(branch_id))
            {
                return Ok(done(status.to_string(), false, "already given up".into()));
            }
            return Err(Refusal::NotFound {
                what: "branch",
                detail: format!(
                    "{xid} has no branch {branch_id}; `admin show {xid}` lists its branches"
                ),
            });
        };
        let guard = DriveGuard(&session);
        self.audit(&session, actor, "give-up", Some(branch_id), reason)
            .await?;
        self.notes.gave_up(session.transaction_id, branch_id);
        if self.forget_branch(&session, &branch, true).await.is_err() {
            return Err(Refusal::Conflict {
                why: format!("the store could not record that branch {branch_id} is gone"),
                next: "check the store, then repeat the give-up (the audit record is kept)".into(),
                status,
            });
        }
        self.notes.event(
            session.transaction_id,
            Some(branch_id),
            id::now_ms(),
            format!("operator {actor} gave the branch up: {reason}"),
        );
        warn!(
            xid,
            branch_id, reason, actor, "operator gave up a branch; its row locks are released"
        );
        let left = session.lock().branches.len();
        drop(guard);
        if left == 0 {
            let final_status = match status {
                GlobalStatus::RollbackFailed
                | GlobalStatus::TimeoutRollbackFailed
                | GlobalStatus::CommitFailed => status,
                GlobalStatus::TimeoutRollbacking | GlobalStatus::TimeoutRollbackRetrying => {
                    GlobalStatus::TimeoutRollbackFailed
                }
                s if phase_of(s) == Phase::Rollback => GlobalStatus::RollbackFailed,
                GlobalStatus::AsyncCommitting => GlobalStatus::Committed,
                _ => GlobalStatus::CommitFailed,
            };
            self.finish(&session, final_status).await?;
            return Ok(done(
                final_status.to_string(),
                true,
                "branch given up; no branch left, the transaction is finished".into(),
            ));
        }
        if matches!(
            status,
            GlobalStatus::RollbackFailed | GlobalStatus::TimeoutRollbackFailed
        ) {
            self.resume_rollback(&session, actor, Action::Rollback)
                .await?;
        } else {
            self.requeue(&session);
        }
        Ok(done(
            session.status().to_string(),
            true,
            "branch given up; the other branches go on with phase two".into(),
        ))
    }

    /// Deletes a kept failure (RollbackFailed / TimeoutRollbackFailed): audited, forgotten,
    /// its remaining row locks released. Deleting what is not held is a no-op.
    pub async fn admin_delete(
        &self,
        xid: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Done, Refusal> {
        let Some(session) = self.held(xid) else {
            return Ok(Done {
                xid: xid.to_owned(),
                action: "delete".into(),
                status: GlobalStatus::Finished.to_string(),
                changed: false,
                message: "not held: already finished or deleted".into(),
            });
        };
        let status = session.status();
        if !status.is_final() {
            return Err(Refusal::Conflict {
                why: format!("{xid} is not finished ({status})"),
                next: "wait for phase two, or `admin give-up` the branches that cannot complete"
                    .into(),
                status,
            });
        }
        {
            let mut st = session.lock();
            if st.driving {
                return Err(Refusal::Busy {
                    xid: xid.to_owned(),
                });
            }
            st.driving = true;
        }
        let _guard = DriveGuard(&session);
        self.audit(&session, actor, "delete", None, reason).await?;
        self.finish(&session, status).await?;
        Ok(Done {
            xid: xid.to_owned(),
            action: "delete".into(),
            status: status.to_string(),
            changed: true,
            message: "deleted; its row locks are released".into(),
        })
    }

    /// Ends a session with `status` without a lifecycle event (an operator's decision).
    async fn finish(
        &self,
        session: &Arc<GlobalSession>,
        status: GlobalStatus,
    ) -> Result<(), Refusal> {
        let tid = session.transaction_id;
        self.store
            .remove_global(tid, &session.xid)
            .await
            .map_err(store_error(&session.xid, StoreOp::WriteGlobal))?;
        session.lock().status = status;
        if !self.shared {
            self.unlock_session(session).await;
        }
        self.sessions.remove(&tid);
        self.queues.remove_all(tid);
        self.notes.forget(tid);
        info!(xid = %session.xid, %status, "global transaction finished by an operator");
        Ok(())
    }

    /// Rebuilds the give-up mark of a recovered rolling-back session from the audit records,
    /// so a rollback that a restart cut after an operator gave a branch up still ends failed.
    pub(super) async fn note_given_up(&self, session: &GlobalSession) {
        let audits = match self.store.audits(Some(&session.xid), 0).await {
            Ok(a) => a,
            Err(e) => {
                warn!(xid = %session.xid, error = %e,
                    "cannot read the audit records; a branch given up before the restart would end the transaction Rollbacked");
                return;
            }
        };
        for a in audits.iter().filter(|a| a.action == "give-up") {
            if let Some(branch_id) = a.branch_id {
                self.notes.gave_up(session.transaction_id, branch_id);
            }
        }
    }

    /// Rebuilds the unretryable marks of a recovered session from its stored branch statuses.
    pub(super) fn note_recovered(&self, session: &GlobalSession) {
        let st = session.lock();
        for b in &st.branches {
            if matches!(
                b.status(),
                BranchStatus::PhaseTwoRollbackFailedUnretryable
                    | BranchStatus::PhaseTwoCommitFailedUnretryable
            ) {
                self.notes.branch_unretryable(
                    session.transaction_id,
                    b.branch_id,
                    session.begin_time_ms,
                    "RM answered unretryable before the TC restarted; its report is in the audit records".into(),
                );
            }
        }
    }
}
