//! A store shared with other TCs (scripted): the orphan scan racing this TC's own decisions
//! on a transaction taken over from a TC that died.

use seata_protocol::{BranchStatus, BranchType, GlobalStatus};
use tokio::sync::{Notify, Semaphore};

use super::*;
use crate::store::{boxed, Transition};

/// A shared store (it has its own lock manager) whose orphan scan returns what the test put
/// there, and whose status compare-and-set waits until the test releases it.
#[derive(Debug)]
struct SharedStore {
    orphans: Mutex<Vec<StoredSession>>,
    /// The compare-and-set's answer.
    transition: Mutex<Option<Transition>>,
    /// Signalled when a compare-and-set starts.
    writing: Notify,
    /// One permit lets one compare-and-set answer.
    release: Semaphore,
    removed: Mutex<Vec<i64>>,
}

impl SharedStore {
    fn new() -> Self {
        SharedStore {
            orphans: Mutex::new(Vec::new()),
            transition: Mutex::new(None),
            writing: Notify::new(),
            release: Semaphore::new(0),
            removed: Mutex::new(Vec::new()),
        }
    }
    fn scan_finds(&self, s: &StoredSession) {
        *self.orphans.lock().unwrap() = vec![s.clone()];
    }
    fn transition_answers(&self, t: Transition) {
        *self.transition.lock().unwrap() = Some(t);
    }
}

impl SessionStore for SharedStore {
    fn add_global<'a>(&'a self, _g: GlobalRow<'a>) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }
    fn update_global_status<'a>(
        &'a self,
        _t: i64,
        _x: &'a str,
        _s: GlobalStatus,
    ) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }
    fn remove_global<'a>(&'a self, t: i64, _x: &'a str) -> StoreFuture<'a, ()> {
        self.removed.lock().unwrap().push(t);
        ready(Ok(()))
    }
    fn add_branch<'a>(&'a self, _b: BranchRow<'a>) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }
    fn update_branch_status<'a>(
        &'a self,
        _t: i64,
        _x: &'a str,
        _b: i64,
        _s: BranchStatus,
    ) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }
    fn remove_branch<'a>(&'a self, _t: i64, _x: &'a str, _b: i64) -> StoreFuture<'a, ()> {
        ready(Ok(()))
    }
    fn recover(&self) -> StoreFuture<'_, Vec<StoredSession>> {
        ready(Ok(Vec::new()))
    }
    fn find<'a>(&'a self, _t: i64, _x: &'a str) -> StoreFuture<'a, Option<StoredSession>> {
        ready(Ok(None))
    }
    fn lock_manager(&self) -> Option<Arc<dyn LockManager>> {
        Some(Arc::new(ShardedLockManager::new()))
    }
    fn transition_global<'a>(
        &'a self,
        _t: i64,
        _x: &'a str,
        _from: GlobalStatus,
        _to: GlobalStatus,
    ) -> StoreFuture<'a, Transition> {
        boxed(async move {
            self.writing.notify_one();
            self.release.acquire().await.unwrap().forget();
            Ok(self.transition.lock().unwrap().take().unwrap())
        })
    }
    fn orphans(&self, _now_ms: i64) -> StoreFuture<'_, Vec<StoredSession>> {
        ready(Ok(self.orphans.lock().unwrap().clone()))
    }
}

const TID: i64 = 4242;

/// A transaction a dead TC left behind, begun 10 s before `now` with a 1 s timeout, with one
/// AT branch.
fn left_behind(status: GlobalStatus, now: i64) -> StoredSession {
    StoredSession {
        global: StoredGlobal {
            transaction_id: TID,
            xid: format!("10.0.0.9:8091:{TID}"),
            status,
            application_id: "app".into(),
            transaction_service_group: "grp".into(),
            transaction_name: "n".into(),
            timeout_ms: 1_000,
            begin_time_ms: now - 10_000,
        },
        branches: vec![StoredBranch {
            branch_id: TID + 1,
            branch_type: BranchType::At,
            status: BranchStatus::Registered,
            resource_id: "db".into(),
            lock_key: "t:1".into(),
            client_id: "app:1.1.1.1:1".into(),
            application_data: String::new(),
        }],
    }
}

/// Times out the taken-over copy while the scan runs again: the timeout check's store write
/// is held open so the scan sees the session in memory already TimeoutRollbacking.
async fn scan_during_timeout_check(
    c: &Arc<Coordinator>,
    store: &SharedStore,
    now: i64,
    scan_adopts: usize,
) -> usize {
    let check = tokio::spawn({
        let c = c.clone();
        async move { c.check_timeouts(now).await }
    });
    store.writing.notified().await;
    assert_eq!(c.adopt_orphans(now).await, scan_adopts);
    store.release.add_permits(1);
    check.await.unwrap()
}

#[tokio::test]
async fn begin_snapshot_of_a_scan_does_not_undo_a_timeout_in_progress() {
    let store = Arc::new(SharedStore::new());
    let (c, gw) = setup_with(store.clone()).await;
    let now = id::now_ms();
    let open = left_behind(GlobalStatus::Begin, now);
    store.scan_finds(&open);
    assert_eq!(c.adopt_orphans(now).await, 1);

    // The next scan still reads Begin: the timeout check has not recorded its decision yet.
    store.transition_answers(Transition::Applied {
        branches: Some(open.branches.clone()),
    });
    assert_eq!(scan_during_timeout_check(&c, &store, now, 0).await, 1);

    c.run_retry_queue(RetryQueue::RetryRollbacking, now).await;
    assert_eq!(gw.calls(), vec![rb("db")]);
    assert_eq!(*store.removed.lock().unwrap(), vec![TID]);
    assert_eq!(c.stats().sessions, 0);
}

#[tokio::test]
async fn stale_copy_losing_its_decision_leaves_the_taken_over_one() {
    let store = Arc::new(SharedStore::new());
    let (c, gw) = setup_with(store.clone()).await;
    let now = id::now_ms();
    // A Begin copy in memory (as a register through this TC would have loaded it)...
    store.scan_finds(&left_behind(GlobalStatus::Begin, now));
    assert_eq!(c.adopt_orphans(now).await, 1);

    // ... while another TC had decided the rollback and died: the scan takes that over just
    // as our timeout check of the stale copy loses its compare-and-set.
    store.scan_finds(&left_behind(GlobalStatus::Rollbacking, now));
    store.transition_answers(Transition::Lost {
        current: Some(GlobalStatus::Rollbacking),
    });
    assert_eq!(scan_during_timeout_check(&c, &store, now, 1).await, 0);

    c.run_retry_queue(RetryQueue::RetryRollbacking, now).await;
    assert_eq!(gw.calls(), vec![rb("db")]);
    assert_eq!(*store.removed.lock().unwrap(), vec![TID]);
    assert_eq!(c.stats().sessions, 0);
}
