//! Work behind the periodic jobs (timeout check, rollback retry, commit retry, async commit)
//! and start-up recovery of stored sessions. Each job tick takes `now` (ms) so tests drive
//! time explicitly; `jobs/` only supplies the clock and the schedule.

use std::sync::Arc;

use dashmap::DashSet;
use futures::StreamExt;
use seata_protocol::GlobalStatus;
use tracing::{debug, error, info, info_span, warn, Instrument};

use super::phase_two::DriveGuard;
use super::Coordinator;
use crate::session::state::{is_timed_out, phase_of, retry_expired, Phase};
use crate::session::{BranchSession, GlobalSession};
use crate::store::{StoredSession, Transition};

/// Sessions driven at once by one job tick; each waits on RM round trips, so a tick over
/// thousands of AT commits must not run them one by one.
const TICK_CONCURRENCY: usize = 256;

/// One of the three phase-two work queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryQueue {
    /// AT-only commits (Seata's AsyncCommitting manager). Never gives up.
    AsyncCommitting,
    /// Commits that failed retryably.
    RetryCommitting,
    /// Rollbacks that failed retryably, and timed-out transactions.
    RetryRollbacking,
}

/// What a tick decided for one session, under its lock.
enum Plan {
    Skip,
    Drop,
    Expired,
    Drive,
}

impl Coordinator {
    fn queue(&self, q: RetryQueue) -> &DashSet<i64> {
        match q {
            RetryQueue::AsyncCommitting => &self.queues.async_committing,
            RetryQueue::RetryCommitting => &self.queues.retry_committing,
            RetryQueue::RetryRollbacking => &self.queues.retry_rollbacking,
        }
    }

    /// Timeout job: Begin sessions past their timeout become TimeoutRollbacking (no more
    /// branches) and join the rollback retry queue, due at once. Locks stay until rollback.
    /// Returns how many timed out.
    pub async fn check_timeouts(&self, now: i64) -> usize {
        let mut expired: Vec<Arc<GlobalSession>> = Vec::new();
        for entry in self.sessions.iter() {
            let s = entry.value();
            if !is_timed_out(s.begin_time_ms, s.timeout_ms, now) {
                continue;
            }
            let mut st = s.lock();
            if st.status == GlobalStatus::Begin && st.active {
                st.status = GlobalStatus::TimeoutRollbacking;
                st.active = false;
                expired.push(s.clone());
            }
        }
        let mut n = 0;
        // For the tick's summary lines: the oldest timed-out session (ids grow with time), and
        // how many timeouts could not be recorded, with the first error.
        let mut oldest: Option<&GlobalSession> = None;
        let mut unrecorded: Option<(usize, &GlobalSession, String)> = None;
        for s in &expired {
            let tid = s.transaction_id;
            let written = self
                .store
                .transition_global(
                    tid,
                    &s.xid,
                    GlobalStatus::Begin,
                    GlobalStatus::TimeoutRollbacking,
                )
                .await;
            match written {
                Err(e) => {
                    debug!(xid = %s.xid, error = %e, "could not record timeout; will check again");
                    unrecorded.get_or_insert_with(|| (0, s, e.to_string())).0 += 1;
                    let mut st = s.lock();
                    st.status = GlobalStatus::Begin;
                    st.active = true;
                    continue;
                }
                Ok(Transition::Lost { .. }) => {
                    // Another TC sharing the store decided it first; drop our stale copy.
                    self.forget_local(s);
                    continue;
                }
                Ok(Transition::Applied { branches }) => self.apply_branches(s, branches),
            }
            // Thousands may time out in one tick (a TM or the TC was down): one line for all.
            debug!(xid = %s.xid, timeout_ms = s.timeout_ms, "global transaction timed out; rolling back");
            if oldest.is_none_or(|o| tid < o.transaction_id) {
                oldest = Some(s);
            }
            crate::metrics::seata().timed_out();
            self.notes.event(
                tid,
                None,
                now,
                "timed out in phase one; rolling back".into(),
            );
            self.queues.retry_rollbacking.insert(tid);
            n += 1;
        }
        if let Some(o) = oldest {
            info!(sessions = n, oldest_xid = %o.xid, "global transactions timed out; rolling back");
        }
        if let Some((count, first, error)) = unrecorded {
            warn!(sessions = count, first_xid = %first.xid, error = %error,
                "could not record timeouts; will check again");
        }
        n
    }

    /// One tick of a retry job: every due session of `queue` gets one phase-two pass.
    /// Returns how many passes ran.
    pub async fn run_retry_queue(&self, queue: RetryQueue, now: i64) -> usize {
        let ids: Vec<i64> = self.queue(queue).iter().map(|t| *t).collect();
        let driven = std::sync::atomic::AtomicUsize::new(0);
        futures::stream::iter(ids)
            .for_each_concurrent(TICK_CONCURRENCY, |tid| {
                let driven = &driven;
                async move {
                    if self.retry_one(queue, tid, now).await {
                        driven.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .await;
        // One line per resource for the failures of this tick (and of TM-driven passes since).
        self.phase_two_failures.flush();
        driven.into_inner()
    }

    async fn retry_one(&self, queue: RetryQueue, tid: i64, now: i64) -> bool {
        let Some(session) = self.sessions.get(&tid).map(|s| s.value().clone()) else {
            self.queue(queue).remove(&tid);
            return false;
        };
        let plan = {
            let mut st = session.lock();
            let wanted = match queue {
                RetryQueue::AsyncCommitting => st.status == GlobalStatus::AsyncCommitting,
                RetryQueue::RetryCommitting => {
                    phase_of(st.status) == Phase::Commit
                        && st.status != GlobalStatus::AsyncCommitting
                }
                RetryQueue::RetryRollbacking => phase_of(st.status) == Phase::Rollback,
            };
            let max = match queue {
                RetryQueue::AsyncCommitting => -1,
                RetryQueue::RetryCommitting => self.settings.max_commit_retry_timeout_ms,
                RetryQueue::RetryRollbacking => self.settings.max_rollback_retry_timeout_ms,
            };
            if !wanted {
                Plan::Drop
            } else if st.driving || !st.backoff.is_due(now) {
                Plan::Skip
            } else if retry_expired(session.begin_time_ms, max, now) {
                Plan::Expired
            } else {
                st.driving = true;
                Plan::Drive
            }
        };
        match plan {
            Plan::Skip => false,
            Plan::Drop => {
                self.queue(queue).remove(&tid);
                false
            }
            Plan::Expired => {
                // Seata's behaviour: stop retrying but keep the session (and its stored
                // record, so a restart queues it again).
                self.queue(queue).remove(&tid);
                let unlock = queue == RetryQueue::RetryRollbacking
                    && self.settings.rollback_retry_timeout_unlock;
                if unlock {
                    self.unlock_session(&session).await;
                }
                error!(xid = %session.xid, status = %session.status(), unlocked = unlock,
                    "phase-two retry timeout reached; giving up until restart or manual action");
                false
            }
            Plan::Drive => {
                let _guard = DriveGuard(&session);
                // With a shared store, only the lease holder drives; a private store always
                // grants without I/O.
                match self.store.claim(tid, &session.xid).await {
                    Ok(true) => {}
                    Ok(false) => {
                        debug!(xid = %session.xid, "another TC drives this transaction; dropping our copy");
                        self.forget_local(&session);
                        return false;
                    }
                    Err(e) => {
                        warn!(xid = %session.xid, error = %e, "could not claim the lease; will retry");
                        return false;
                    }
                }
                let span = info_span!("phase_two_retry", xid = %session.xid, queue = ?queue);
                let m = crate::metrics::seata();
                match queue {
                    RetryQueue::RetryRollbacking => {
                        m.retried(crate::metrics::seata::Phase::Rollback);
                        self.drive_rollback(&session, now).instrument(span).await;
                    }
                    RetryQueue::RetryCommitting => {
                        m.retried(crate::metrics::seata::Phase::Commit);
                        self.drive_commit(&session, now).instrument(span).await;
                    }
                    RetryQueue::AsyncCommitting => {
                        self.drive_commit(&session, now).instrument(span).await;
                    }
                }
                true
            }
        }
    }

    /// Puts one recovered session back in memory: ids are raised past it, AT row locks of
    /// sessions not yet committing are re-taken, and phase-two sessions are queued.
    /// `observe`: raise the id generator past the session's ids (start-up recovery of our
    /// own ids; not for sessions taken over from another node).
    pub(super) async fn restore(&self, s: StoredSession, observe: bool) {
        let status = s.global.status;
        let tid = s.global.transaction_id;
        if observe {
            self.ids.observe(tid);
            for b in &s.branches {
                self.ids.observe(b.branch_id);
            }
        }
        let kept_failure = matches!(
            status,
            GlobalStatus::RollbackFailed | GlobalStatus::TimeoutRollbackFailed
        );
        let phase = phase_of(status);
        if phase == Phase::Done && !kept_failure {
            // Ended but its removal was not recorded: finish forgetting it.
            if let Err(e) = self.store.remove_global(tid, &s.global.xid).await {
                warn!(xid = %s.global.xid, error = %e, "could not remove finished session");
            }
            return;
        }
        let branches: Vec<Arc<BranchSession>> = s
            .branches
            .into_iter()
            .map(|b| Arc::new(BranchSession::from_stored(b)))
            .collect();
        let session = Arc::new(GlobalSession::from_stored(s.global, branches));
        // Commit already released the locks when it was decided; everything else still
        // protects rows that phase one changed. A shared store kept them in the database.
        if phase != Phase::Commit && !self.shared {
            let branches = session.lock().branches.clone();
            for b in branches.iter().filter(|b| b.holds_locks()) {
                let owner = b.lock_owner(tid);
                if let Err(e) = self
                    .locks
                    .acquire(owner, &session.xid, &b.resource_id, &b.lock_key)
                    .await
                {
                    error!(xid = %session.xid, branch_id = b.branch_id, error = %e,
                        "could not re-take row locks of a recovered branch");
                }
            }
        }
        if kept_failure {
            self.note_recovered(&session);
        }
        if phase == Phase::Rollback {
            self.note_given_up(&session).await;
        }
        self.sessions.insert(tid, session);
        match (status, phase) {
            (GlobalStatus::AsyncCommitting, _) => {
                self.queues.async_committing.insert(tid);
            }
            // Includes Committing, which Seata 1.2 never picks up again after a crash.
            (_, Phase::Commit) => {
                self.queues.retry_committing.insert(tid);
            }
            (_, Phase::Rollback) => {
                self.queues.retry_rollbacking.insert(tid);
            }
            _ => {}
        }
    }
}
