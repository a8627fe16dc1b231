//! What the coordinator does differently when several TCs share its store (the db store):
//! the store, not this process's memory, is the truth.
//!
//! - A register goes to the store in one atomic step (status check, row locks, branch row);
//!   the in-memory copy of the session, if any, only learns about the branch.
//! - Status queries read the store: another TC may have moved the transaction on.
//! - Decisions (TM commit/rollback, timeout) are compare-and-set in the store; the winner gets
//!   the complete branch list back and the lease on phase two, and a loser drops its stale
//!   copy (`phase_two.rs`, `recovery.rs`).
//! - Retry passes run only under the lease (`SessionStore::claim`); jobs renew the leases and
//!   take over the sessions of TCs that died ([`Coordinator::adopt_orphans`]).
//!
//! None of this runs with a private store (memory, file), whose hot path stays as it was.

use std::sync::Arc;

use seata_protocol::{GlobalStatus, GlobalStatusResponse, TxResult};
use tracing::{debug, info, warn};

use super::Coordinator;
use crate::error::{StoreOp, TcError};
use crate::id;
use crate::session::{BranchSession, GlobalSession};
use crate::store::{BranchAdded, StoredBranch};

impl Coordinator {
    /// Registers `branch` through the store's atomic register.
    pub(super) async fn register_shared(
        &self,
        session: &Arc<GlobalSession>,
        branch: Arc<BranchSession>,
    ) -> Result<i64, TcError> {
        let tid = session.transaction_id;
        let xid = &session.xid;
        let store_error = |source| TcError::Store {
            op: StoreOp::AddBranch,
            xid: xid.to_string(),
            source,
        };
        let Some(register) = self.store.register_branch(branch.row(tid, xid)) else {
            return Err(store_error(crate::store::StoreError::Backend(
                "a store with its own lock manager must register branches atomically".into(),
            )));
        };
        match register.await.map_err(store_error)? {
            BranchAdded::Added => {
                let mut st = session.lock();
                if st.branch(branch.branch_id).is_none() {
                    st.branches.push(branch.clone());
                }
                debug!(branch_type = %branch.branch_type, "branch registered");
                Ok(branch.branch_id)
            }
            BranchAdded::Refused(GlobalStatus::Finished) => {
                // Finished through another TC: our copy is stale.
                self.forget_local(session);
                Err(TcError::GlobalNotExist {
                    xid: xid.to_string(),
                })
            }
            BranchAdded::Refused(status) => Err(TcError::GlobalNotActive {
                xid: xid.to_string(),
                status,
            }),
            BranchAdded::Lock(e) => Err(TcError::from_lock(xid, e, |holder| self.xid_of(holder))),
        }
    }

    /// Replaces the in-memory copy of `session` with the stored one.
    pub(super) async fn reload(
        &self,
        session: &Arc<GlobalSession>,
    ) -> Result<Arc<GlobalSession>, TcError> {
        let tid = session.transaction_id;
        let stored = self
            .store
            .find(tid, &session.xid)
            .await
            .map_err(|source| TcError::Store {
                op: StoreOp::Read,
                xid: session.xid.to_string(),
                source,
            })?;
        match stored {
            Some(s) => {
                self.sessions.remove(&tid);
                Ok(self.adopt(s))
            }
            None => {
                self.forget_local(session);
                Err(TcError::GlobalNotExist {
                    xid: session.xid.to_string(),
                })
            }
        }
    }

    /// The stored status; Finished when the store no longer has the transaction.
    pub(super) async fn stored_status(&self, xid: &str) -> GlobalStatusResponse {
        let Some(tid) = id::transaction_id_of(xid) else {
            return GlobalStatusResponse {
                result: TcError::InvalidXid {
                    xid: xid.to_owned(),
                }
                .to_result(),
                global_status: GlobalStatus::UnKnown,
            };
        };
        match self.store.find(tid, xid).await {
            Ok(found) => GlobalStatusResponse {
                result: TxResult::success(),
                global_status: found.map_or(GlobalStatus::Finished, |s| s.global.status),
            },
            Err(source) => GlobalStatusResponse {
                result: TcError::Store {
                    op: StoreOp::Read,
                    xid: xid.to_owned(),
                    source,
                }
                .to_result(),
                global_status: GlobalStatus::UnKnown,
            },
        }
    }

    /// Drops this process's copy of a session another TC decided, finished or drives.
    ///
    /// Only `stale` itself is dropped: while its owner awaited the store, the orphan scan may
    /// have replaced it with a fresher copy that we now drive (and whose queue entries these
    /// are), and dropping that one would leave a transaction leased to us that nobody drives.
    pub(crate) fn forget_local(&self, stale: &Arc<GlobalSession>) {
        let tid = stale.transaction_id;
        if self
            .sessions
            .remove_if(&tid, |_, held| Arc::ptr_eq(held, stale))
            .is_some()
        {
            self.queues.remove_all(tid);
        }
    }

    /// Installs the branch list a shared store returned with a decision.
    pub(crate) fn apply_branches(
        &self,
        session: &GlobalSession,
        stored: Option<Vec<StoredBranch>>,
    ) {
        if let Some(stored) = stored {
            let branches = stored
                .into_iter()
                .map(|b| Arc::new(BranchSession::from_stored(b)))
                .collect();
            session.lock().branches = branches;
        }
    }

    /// How often the store's leases must be renewed, ms; `None` for a store without leases.
    pub fn lease_renew_period_ms(&self) -> Option<u64> {
        self.store.renew_period_ms()
    }

    /// Renews this TC's leases (a job, every [`lease_renew_period_ms`](Self::lease_renew_period_ms)).
    pub async fn renew_leases(&self) {
        if let Err(e) = self.store.renew().await {
            warn!(error = %e, "could not renew leases; other TCs may take this TC's transactions over");
        }
    }

    /// Takes over sessions no live TC looks after (their TC died): they are queued for the
    /// retry jobs, or, still in Begin past their timeout, left to the timeout check. Returns
    /// how many were taken.
    pub async fn adopt_orphans(&self, now: i64) -> usize {
        let found = match self.store.orphans(now).await {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "orphan scan failed; will scan again");
                return 0;
            }
        };
        let mut n = 0;
        for s in found {
            let held = self
                .sessions
                .get(&s.global.transaction_id)
                .map(|h| h.value().clone());
            if let Some(held) = &held {
                let st = held.lock();
                // Ours already (e.g. our own lease lapsed during a stall). And a Begin orphan
                // (unleased) is never replaced: our copy is at least as new as the scan's
                // snapshot, because the timeout check and TM decisions change the status in
                // memory before their store write. Swapping in the Begin snapshot during that
                // write would lose the decision: the timeout check queues the rollback for the
                // replaced copy, the retry job drops the Begin replacement from the queue, its
                // next timeout check loses the compare-and-set and forgets it, and the lease
                // names this live TC, so no scan picks the transaction up again.
                if st.driving
                    || st.status == s.global.status
                    || s.global.status == GlobalStatus::Begin
                {
                    continue;
                }
            }
            // Absent, or a stale copy (say, still Begin from a register) that must not hide
            // the phase two we now own.
            if let Some(held) = &held {
                self.forget_local(held);
            }
            info!(xid = %s.global.xid, status = %s.global.status, "taking over a transaction of a TC that stopped");
            // Ids of another node must not raise our generator: it would continue in that
            // node's id range.
            self.restore(s, false).await;
            n += 1;
        }
        n
    }
}
