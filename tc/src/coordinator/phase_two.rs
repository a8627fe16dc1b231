//! Global commit and rollback: the TM-facing entry points, and the passes over a session's
//! branches that the TM path and the retry jobs share (tc-semantics 2.5, 2.6).
//!
//! Only one pass runs per session at a time (`SessionState::driving`, claimed under the
//! session mutex and released by [`DriveGuard`] even if the pass is cancelled).

use std::sync::Arc;

use seata_protocol::{
    BranchStatus, GlobalCommitRequest, GlobalCommitResponse, GlobalRollbackRequest,
    GlobalRollbackResponse, GlobalStatus, TxResult,
};
use tracing::{debug, error, field, info, info_span, instrument, warn, Instrument};

use super::fault_log::Half;
use super::Coordinator;
use crate::error::{StoreOp, TcError};
use crate::id;
use crate::metrics::seata::{End, Phase as MetricsPhase};
use crate::session::state::{phase_of, transition, Event, Phase};
use crate::session::{BranchSession, GlobalSession};
use crate::store::Transition;

/// Clears a session's `driving` flag when a phase-two pass ends or is dropped.
pub(crate) struct DriveGuard<'a>(pub(crate) &'a GlobalSession);

impl Drop for DriveGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().driving = false;
    }
}

/// Which decision a TM asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Commit,
    Rollback,
}

impl Coordinator {
    /// Commits a global transaction. Unknown xid → Finished; a session no longer in Begin →
    /// its current status, unchanged (idempotent for TM retries).
    #[instrument(skip_all, fields(xid = %req.xid, branch_id = field::Empty))]
    pub async fn commit(&self, req: GlobalCommitRequest) -> GlobalCommitResponse {
        let (result, global_status) = self.answer(self.decide(&req.xid, Decision::Commit).await);
        GlobalCommitResponse {
            result,
            global_status,
        }
    }

    /// Rolls a global transaction back. Unknown xid → Finished; a session no longer in Begin
    /// → its current status, unchanged.
    #[instrument(skip_all, fields(xid = %req.xid, branch_id = field::Empty))]
    pub async fn rollback(&self, req: GlobalRollbackRequest) -> GlobalRollbackResponse {
        let (result, global_status) = self.answer(self.decide(&req.xid, Decision::Rollback).await);
        GlobalRollbackResponse {
            result,
            global_status,
        }
    }

    fn answer(&self, r: Result<GlobalStatus, TcError>) -> (TxResult, GlobalStatus) {
        match r {
            Ok(status) => (TxResult::success(), status),
            Err(e) => {
                warn!(error = %e, "global commit/rollback failed");
                (e.to_result(), GlobalStatus::UnKnown)
            }
        }
    }

    async fn decide(&self, xid: &str, decision: Decision) -> Result<GlobalStatus, TcError> {
        let session = match self.find_session(xid).await {
            Ok(s) => s,
            Err(TcError::GlobalNotExist { .. }) => return Ok(GlobalStatus::Finished),
            Err(e) => return Err(e),
        };
        let mut asynchronous;
        let to = {
            let mut st = session.lock();
            // Only a session still in Begin is closed. Seata 1.2 closes (and, on commit,
            // unlocks) before this check, so a late commit of a session already rolling back
            // released locks whose rows were not yet restored; we leave such a session alone.
            if st.status != GlobalStatus::Begin {
                return Ok(st.status);
            }
            asynchronous = decision == Decision::Commit && st.can_commit_async();
            let event = match decision {
                Decision::Commit => Event::Commit { asynchronous },
                Decision::Rollback => Event::Rollback,
            };
            let to = transition(st.status, event).map_err(|m| TcError::IllegalTransition {
                xid: xid.to_owned(),
                from: m.from,
                event: m.event,
            })?;
            st.status = to;
            st.active = false;
            // The async job drives AT commits; the TM's request drives the others now.
            st.driving = !asynchronous;
            to
        };
        let mut guard = (!asynchronous).then(|| DriveGuard(&session));
        let tid = session.transaction_id;
        let written = self
            .store
            .transition_global(tid, &session.xid, GlobalStatus::Begin, to)
            .await;
        match written {
            Err(source) => {
                // Not recorded, so not decided: reopen, and let the TM retry (or the timeout
                // job roll it back).
                let mut st = session.lock();
                st.status = GlobalStatus::Begin;
                st.active = true;
                return Err(TcError::Store {
                    op: StoreOp::WriteGlobal,
                    xid: xid.to_owned(),
                    source,
                });
            }
            Ok(Transition::Lost { current }) => {
                // Another TC sharing the store decided (or finished) it first; our copy is
                // stale. Answer what the store says, as for a repeated request.
                drop(guard);
                self.forget_local(&session);
                return Ok(current.unwrap_or(GlobalStatus::Finished));
            }
            Ok(Transition::Applied { branches }) => self.apply_branches(&session, branches),
        }
        crate::failpoints::hit("tc::decision::after_append");
        if asynchronous && !session.lock().can_commit_async() {
            // The stored branch list has a TCC/XA branch registered through another TC that
            // our copy had not seen: commit synchronously after all.
            asynchronous = self.commit_synchronously(&session).await?;
            if !asynchronous {
                guard = Some(DriveGuard(&session));
            }
        }
        let to = session.status();
        // Per transaction: DEBUG (metrics and the admin API count them; at INFO a loaded TC
        // wrote two lines per transaction and spent measurable time on them).
        debug!(status = %to, "global transaction {decision:?} decided");
        let now = id::now_ms();
        match decision {
            Decision::Commit => {
                // Every branch committed locally in phase one and the outcome is commit, so
                // the rows are final: release all of the session's locks now (Seata does the
                // same), before any branch commit goes out. A shared store released them with
                // the decision.
                if !self.shared {
                    self.unlock_session(&session).await;
                }
                if asynchronous {
                    self.queues.async_committing.insert(tid);
                    return Ok(GlobalStatus::Committed);
                }
                let status = self.drive_commit(&session, now).await;
                drop(guard);
                Ok(status)
            }
            Decision::Rollback => {
                let status = self.drive_rollback(&session, now).await;
                drop(guard);
                Ok(status)
            }
        }
    }

    /// One commit pass in registration order; the caller holds the session's drive claim.
    pub(crate) async fn drive_commit(
        &self,
        session: &Arc<GlobalSession>,
        now: i64,
    ) -> GlobalStatus {
        let (branches, asynchronous) = {
            let st = session.lock();
            (
                st.branches.clone(),
                st.status == GlobalStatus::AsyncCommitting,
            )
        };
        let mut pending = false;
        // With a shared (database) store, branches done in this pass are forgotten together:
        // by the session's removal when all are done (one write instead of one per branch),
        // else just before the pass ends. Committing a branch twice after a crash is harmless
        // (the same window exists between an RM's answer and any write).
        let mut done: Vec<&Arc<BranchSession>> = Vec::new();
        crate::failpoints::hit("tc::commit::before_branch_commit");
        for (i, branch) in branches.iter().enumerate() {
            if i > 0 {
                crate::failpoints::hit("tc::phase_two::between_branches");
            }
            if branch.status() == BranchStatus::PhaseOneFailed {
                // Its local transaction rolled back in phase one: nothing to commit.
                if self.shared {
                    done.push(branch);
                } else if self.forget_branch(session, branch, false).await.is_err() {
                    pending = true;
                }
                continue;
            }
            let sent = std::time::Instant::now();
            let outcome = self
                .gateway
                .branch_commit(branch.target(&session.xid))
                .instrument(info_span!(
                    "branch_commit",
                    xid = %session.xid,
                    branch_id = branch.branch_id
                ))
                .await;
            crate::metrics::seata().phase_two(
                branch.branch_type,
                MetricsPhase::Commit,
                &outcome,
                sent.elapsed(),
            );
            match outcome {
                Ok(BranchStatus::PhaseTwoCommitted) => {
                    if self.shared {
                        done.push(branch);
                    } else if self.forget_branch(session, branch, false).await.is_err() {
                        pending = true;
                    }
                }
                Ok(BranchStatus::PhaseTwoCommitFailedUnretryable) if asynchronous => {
                    // An AT branch's data is already committed; its phase two only deletes the
                    // undo log, which the age-based undo cleanup also removes. Retrying forever
                    // (Seata keeps the branch) would gain nothing, so let it go.
                    error!(
                        branch_id = branch.branch_id,
                        "AT branch commit failed unretryably; its undo log is left to the periodic cleanup"
                    );
                    if self.shared {
                        done.push(branch);
                    } else if self.forget_branch(session, branch, false).await.is_err() {
                        pending = true;
                    }
                }
                Ok(BranchStatus::PhaseTwoCommitFailedUnretryable) => {
                    error!(
                        branch_id = branch.branch_id,
                        "branch commit failed unretryably; global transaction ends CommitFailed, later branches stay unconfirmed"
                    );
                    return self.end(session, Event::PhaseTwoUnretryable, now).await;
                }
                other => {
                    debug!(branch_id = branch.branch_id, outcome = ?other, "branch commit not done; will retry");
                    self.phase_two_failures.record(
                        Half::Commit,
                        &branch.resource_id,
                        branch.branch_id,
                        &session.xid,
                        &other,
                    );
                    self.notes.branch_failed(
                        session.transaction_id,
                        branch.branch_id,
                        now,
                        failure_text("commit", &other),
                    );
                    if asynchronous {
                        // AT branches are independent: commit the others now.
                        pending = true;
                        continue;
                    }
                    // TCC/XA: keep registration order, stop at this branch.
                    self.forget_done(session, &done).await;
                    return self.retry_later(session, now).await;
                }
            }
        }
        if pending {
            self.forget_done(session, &done).await;
            return self.retry_later(session, now).await;
        }
        self.end(session, Event::PhaseTwoDone, now).await
    }

    /// One rollback pass in reverse registration order; the caller holds the drive claim.
    pub(crate) async fn drive_rollback(
        &self,
        session: &Arc<GlobalSession>,
        now: i64,
    ) -> GlobalStatus {
        let branches = session.lock().branches.clone();
        for (i, branch) in branches.iter().rev().enumerate() {
            if i > 0 {
                crate::failpoints::hit("tc::phase_two::between_branches");
            }
            if branch.status() != BranchStatus::PhaseOneFailed {
                let sent = std::time::Instant::now();
                let reported = self
                    .gateway
                    .branch_rollback_reported(branch.target(&session.xid))
                    .instrument(info_span!(
                        "branch_rollback",
                        xid = %session.xid,
                        branch_id = branch.branch_id
                    ))
                    .await;
                let (outcome, report) = match reported {
                    Ok((status, report)) => (Ok(status), report),
                    Err(e) => (Err(e), String::new()),
                };
                crate::metrics::seata().phase_two(
                    branch.branch_type,
                    MetricsPhase::Rollback,
                    &outcome,
                    sent.elapsed(),
                );
                match outcome {
                    Ok(BranchStatus::PhaseTwoRollbacked) => {}
                    Ok(BranchStatus::PhaseTwoRollbackFailedUnretryable) => {
                        return self.rollback_failed(session, branch, report, now).await;
                    }
                    other => {
                        self.notes.branch_failed(
                            session.transaction_id,
                            branch.branch_id,
                            now,
                            failure_text("rollback", &other),
                        );
                        // Earlier branches may depend on this one's rows being restored
                        // first, so stop here for this round.
                        debug!(branch_id = branch.branch_id, outcome = ?other, "branch rollback not done; will retry");
                        self.phase_two_failures.record(
                            Half::Rollback,
                            &branch.resource_id,
                            branch.branch_id,
                            &session.xid,
                            &other,
                        );
                        return self.retry_later(session, now).await;
                    }
                }
            }
            // Undone (or never committed): only now may its rows be written by others.
            if self.forget_branch(session, branch, true).await.is_err() {
                return self.retry_later(session, now).await;
            }
        }
        self.end(session, Event::PhaseTwoDone, now).await
    }

    /// A branch could not be undone and never will be. Seata 1.2 ends the session and
    /// releases every lock although the data was not restored; we keep the session visible in
    /// RollbackFailed/TimeoutRollbackFailed and keep the locks of every branch not undone, so
    /// no other transaction builds on unrestored rows until an operator resolves it.
    ///
    /// The branch is recorded as unretryable (its status in the store, the RM's `report` as an
    /// audit record and its last error) and is not tried again until an operator retries the
    /// rollback after fixing the data or gives the branch up (`admin.rs`). The TM and status
    /// queries see RollbackFailed, as from Seata 1.2.
    async fn rollback_failed(
        &self,
        session: &Arc<GlobalSession>,
        branch: &BranchSession,
        report: String,
        now: i64,
    ) -> GlobalStatus {
        let unretryable = BranchStatus::PhaseTwoRollbackFailedUnretryable;
        if let Err(e) = self
            .store
            .update_branch_status(
                session.transaction_id,
                &session.xid,
                branch.branch_id,
                unretryable,
            )
            .await
        {
            warn!(error = %e, "could not record the branch as unretryable; will retry");
            return self.retry_later(session, now).await;
        }
        branch.set_status(unretryable);
        let report = if report.is_empty() {
            "RM answered PhaseTwo_RollbackFailed_Unretryable without a report".to_owned()
        } else {
            report
        };
        let audit = crate::store::AuditRecord {
            at_ms: now,
            actor: "rm".into(),
            action: "rm-unretryable".into(),
            xid: session.xid.to_string(),
            branch_id: Some(branch.branch_id),
            reason: report.clone(),
            status: session.status().to_string(),
        };
        if let Err(e) = self.store.add_audit(&audit).await {
            warn!(error = %e, "could not keep the RM's unretryable report in the store");
        }
        self.notes
            .branch_unretryable(session.transaction_id, branch.branch_id, now, report);
        let (from, to) = match self.step(session, Event::PhaseTwoUnretryable) {
            Ok(pair) => pair,
            Err(status) => return status,
        };
        self.queues.remove_all(session.transaction_id);
        if let Err(e) = self
            .store
            .update_global_status(session.transaction_id, &session.xid, to)
            .await
        {
            // Keep retrying rather than lose the failure record.
            warn!(error = %e, "could not record rollback failure; will retry");
            session.lock().status = from;
            return self.retry_later(session, now).await;
        }
        error!(
            branch_id = branch.branch_id,
            status = %to,
            "branch rollback failed unretryably; session and its remaining row locks are kept for manual resolution"
        );
        crate::metrics::seata().finished(session.mode(), End::Failed);
        to
    }

    /// A retryable failure: move to the retry status and queue the session with back-off.
    async fn retry_later(&self, session: &Arc<GlobalSession>, now: i64) -> GlobalStatus {
        let (from, to, phase) = {
            let mut st = session.lock();
            let from = st.status;
            let Ok(to) = transition(from, Event::PhaseTwoRetryable) else {
                error!(status = %from, "retry requested in a status without retries");
                return from;
            };
            st.status = to;
            let base = match (to, phase_of(to)) {
                (GlobalStatus::AsyncCommitting, _) => self.settings.async_period_ms,
                (_, Phase::Commit) => self.settings.commit_period_ms,
                _ => self.settings.rollback_period_ms,
            };
            st.backoff.failed(now, base);
            (from, to, phase_of(to))
        };
        let queue = match (to, phase) {
            (GlobalStatus::AsyncCommitting, _) => &self.queues.async_committing,
            (_, Phase::Commit) => &self.queues.retry_committing,
            _ => &self.queues.retry_rollbacking,
        };
        queue.insert(session.transaction_id);
        if from != to {
            crate::metrics::seata().retrying(match phase {
                Phase::Commit => MetricsPhase::Commit,
                _ => MetricsPhase::Rollback,
            });
            if let Err(e) = self
                .store
                .update_global_status(session.transaction_id, &session.xid, to)
                .await
            {
                // The stored status is still `from`, which recovery queues the same way.
                warn!(error = %e, status = %to, "could not record retry status");
            }
        }
        to
    }

    /// Applies `event` under the session lock; `Err(current)` when it is illegal there.
    fn step(
        &self,
        session: &GlobalSession,
        event: Event,
    ) -> Result<(GlobalStatus, GlobalStatus), GlobalStatus> {
        let mut st = session.lock();
        let from = st.status;
        match transition(from, event) {
            Ok(to) => {
                st.status = to;
                Ok((from, to))
            }
            Err(m) => {
                error!(status = %from, event = ?m.event, "illegal transition skipped");
                Err(from)
            }
        }
    }

    /// Ends a session with a final status and forgets it. If the store cannot record that,
    /// the session stays queued and the next pass tries again: nothing is dropped.
    async fn end(&self, session: &Arc<GlobalSession>, event: Event, now: i64) -> GlobalStatus {
        // An operator gave a branch up: the transaction did not complete, so it ends failed.
        let event = match event {
            Event::PhaseTwoDone
                if self.notes.has_given_up(session.transaction_id)
                    && transition(session.status(), Event::PhaseTwoUnretryable).is_ok() =>
            {
                Event::PhaseTwoUnretryable
            }
            other => other,
        };
        let (from, to) = match self.step(session, event) {
            Ok(pair) => pair,
            Err(status) => return status,
        };
        if let Err(e) = self
            .store
            .remove_global(session.transaction_id, &session.xid)
            .await
        {
            warn!(error = %e, "could not record the end of the global transaction; will retry");
            session.lock().status = from;
            return self.retry_later(session, now).await;
        }
        // Branches still listed here (a CommitFailed TCC session) hold no locks worth keeping:
        // commit already released them. A shared store released them with the removal.
        if !self.shared {
            self.unlock_session(session).await;
        }
        self.sessions.remove(&session.transaction_id);
        self.queues.remove_all(session.transaction_id);
        self.notes.forget(session.transaction_id);
        if matches!(to, GlobalStatus::Committed | GlobalStatus::Rollbacked) {
            debug!(status = %to, "global transaction finished");
        } else {
            info!(status = %to, "global transaction finished");
        }
        if let Some(end) = End::of_status(to) {
            crate::metrics::seata().finished(session.mode(), end);
        }
        to
    }

    /// Phase two of `branch` is done: forget it durably, then (rollback) release its locks.
    pub(super) async fn forget_branch(
        &self,
        session: &GlobalSession,
        branch: &BranchSession,
        unlock: bool,
    ) -> Result<(), ()> {
        if let Err(e) = self
            .store
            .remove_branch(session.transaction_id, &session.xid, branch.branch_id)
            .await
        {
            warn!(error = %e, branch_id = branch.branch_id, "could not record branch end; will retry");
            return Err(());
        }
        session.lock().remove_branch(branch.branch_id);
        // A shared store released the branch's rows with the removal.
        if unlock && !self.shared {
            self.unlock_branch(session, branch).await;
        }
        Ok(())
    }

    /// Forgets the branches a commit pass finished (shared store; see `drive_commit`). One
    /// that cannot be recorded stays and is committed again by the next pass.
    async fn forget_done(&self, session: &GlobalSession, done: &[&Arc<BranchSession>]) {
        for branch in done {
            let _ = self.forget_branch(session, branch, false).await;
        }
    }

    /// Releases the row locks of every branch of the session.
    pub(crate) async fn unlock_session(&self, session: &GlobalSession) {
        if let Some(all) = self
            .locks
            .release_transaction(session.transaction_id, &session.xid)
        {
            if let Err(e) = all.await {
                warn!(error = %e, "could not release the transaction's locks");
            }
            return;
        }
        let branches = session.lock().branches.clone();
        for b in &branches {
            self.unlock_branch(session, b).await;
        }
    }

    /// Turns a just-decided AsyncCommitting into Committing (shared store, see `decide`);
    /// returns whether the commit stays asynchronous.
    async fn commit_synchronously(&self, session: &Arc<GlobalSession>) -> Result<bool, TcError> {
        let written = self
            .store
            .transition_global(
                session.transaction_id,
                &session.xid,
                GlobalStatus::AsyncCommitting,
                GlobalStatus::Committing,
            )
            .await
            .map_err(|source| TcError::Store {
                op: StoreOp::WriteGlobal,
                xid: session.xid.to_string(),
                source,
            })?;
        match written {
            Transition::Applied { branches } => {
                self.apply_branches(session, branches);
                let mut st = session.lock();
                st.status = GlobalStatus::Committing;
                st.driving = true;
                Ok(false)
            }
            // Someone else already moved it on (only possible after our lease lapsed).
            Transition::Lost { .. } => Ok(true),
        }
    }
}

/// One line for a branch's last error, from a phase-two outcome that did not finish it.
fn failure_text(
    phase: &str,
    outcome: &Result<BranchStatus, crate::gateway::GatewayError>,
) -> String {
    match outcome {
        Ok(status) => format!("{phase}: RM answered {status}"),
        Err(e) => format!("{phase}: {e}"),
    }
}
