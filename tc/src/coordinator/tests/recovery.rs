//! Recovery from a store, and the memory budget of an open transaction.

use seata_protocol::{BranchStatus, BranchType, GlobalStatus};

use super::*;

/// A store holding a fixed set of sessions to recover; records removals.
#[derive(Debug, Default)]
struct RecoveringStore {
    sessions: Mutex<Vec<StoredSession>>,
    removed: Mutex<Vec<i64>>,
}

impl SessionStore for RecoveringStore {
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
        ready(Ok(std::mem::take(&mut *self.sessions.lock().unwrap())))
    }
    fn find<'a>(&'a self, _t: i64, _x: &'a str) -> StoreFuture<'a, Option<StoredSession>> {
        ready(Ok(None))
    }
}

fn stored(tid: i64, status: GlobalStatus, branches: &[(i64, &str)]) -> StoredSession {
    StoredSession {
        global: StoredGlobal {
            transaction_id: tid,
            xid: format!("10.0.0.1:8091:{tid}"),
            status,
            application_id: "app".into(),
            transaction_service_group: "grp".into(),
            transaction_name: "n".into(),
            timeout_ms: 60_000,
            begin_time_ms: id::now_ms(),
        },
        branches: branches
            .iter()
            .map(|&(branch_id, key)| StoredBranch {
                branch_id,
                branch_type: BranchType::At,
                status: BranchStatus::Registered,
                resource_id: "db".into(),
                lock_key: key.into(),
                client_id: "app:1.1.1.1:1".into(),
                application_data: String::new(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn recovery_rebuilds_locks_queues_and_ids() {
    let big = 1i64 << 60;
    let store = Arc::new(RecoveringStore::default());
    *store.sessions.lock().unwrap() = vec![
        stored(1, GlobalStatus::Begin, &[(2, "t:1")]),
        stored(3, GlobalStatus::RollbackRetrying, &[(4, "t:2")]),
        stored(5, GlobalStatus::AsyncCommitting, &[(6, "t:3")]),
        stored(7, GlobalStatus::Committing, &[(big, "t:4")]),
        stored(9, GlobalStatus::Rollbacked, &[]),
    ];
    let (c, gw) = setup_with(store.clone()).await;
    let s = c.stats();
    assert_eq!(
        (
            s.sessions,
            s.async_committing,
            s.retry_committing,
            s.retry_rollbacking
        ),
        (4, 1, 1, 1)
    );
    assert!(!free(&c, "db", "t:1").await, "Begin session re-locked");
    assert!(
        !free(&c, "db", "t:2").await,
        "rolling-back session re-locked"
    );
    assert!(
        free(&c, "db", "t:3;t:4").await,
        "committing sessions hold no locks"
    );
    assert_eq!(*store.removed.lock().unwrap(), vec![9]);
    let xid = begin(&c).await;
    assert!(
        id::transaction_id_of(&xid).unwrap() > big,
        "ids continue past recovered ones"
    );

    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryRollbacking, id::now_ms())
            .await,
        1
    );
    assert_eq!(gw.calls(), vec![rb("db")]);
    assert!(free(&c, "db", "t:2").await);
}

/// Measures the heap of one open two-branch AT transaction with realistic field sizes: the
/// session and branches (including `Arc` headers and allocator rounding), the session map
/// slot, and two row locks.
#[tokio::test]
async fn open_two_branch_transaction_fits_in_two_kib() {
    let (c, _gw) = setup().await;
    let xid = begin(&c).await;
    let resource = "jdbc:mysql://127.0.0.1:3306/seata_order";
    register_ok(&c, &xid, BranchType::At, resource, "order_tbl:100001").await;
    register_ok(&c, &xid, BranchType::At, resource, "account_tbl:200001").await;
    let tid = id::transaction_id_of(&xid).unwrap();
    let session = c.sessions.get(&tid).unwrap().value().clone();
    let session_bytes = session.heap_bytes();
    let map_slot = (std::mem::size_of::<(i64, Arc<GlobalSession>)>() + 1) * 8 / 7;
    let row = |key: &str| ShardedLockManager::approx_bytes_per_row(resource.len() + 6 + key.len());
    let lock_bytes = row("order_tbl100001") + row("account_tbl200001");
    let total = session_bytes + map_slot + lock_bytes;
    println!("open 2-branch AT transaction: {total} bytes (session {session_bytes}, map {map_slot}, locks {lock_bytes})");
    assert!(total <= 2048, "{total} bytes");
}

/// Cross-check of the figure above against the process's resident memory: opens 50,000
/// two-branch AT transactions and divides the RSS growth. Linux only, and noisy when other
/// tests run in the same process, so run it alone:
/// `cargo test -p seata-tc --lib rss_per -- --ignored --test-threads=1 --nocapture`.
#[tokio::test]
#[ignore]
async fn rss_per_open_two_branch_transaction() {
    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }
    let (c, _gw) = setup().await;
    let resource = "jdbc:mysql://127.0.0.1:3306/seata_order";
    // Warm up the maps' first allocations.
    let x = begin(&c).await;
    register_ok(&c, &x, BranchType::At, resource, "order_tbl:0").await;
    const N: usize = 50_000;
    let before = rss_bytes();
    for i in 0..N {
        let x = begin(&c).await;
        register_ok(
            &c,
            &x,
            BranchType::At,
            resource,
            &format!("order_tbl:{}", 100_000 + i),
        )
        .await;
        register_ok(
            &c,
            &x,
            BranchType::At,
            resource,
            &format!("account_tbl:{}", 200_000 + i),
        )
        .await;
    }
    let per = (rss_bytes() - before) / N;
    println!("RSS growth per open 2-branch AT transaction: {per} bytes");
    assert_eq!(c.stats().sessions, N + 1);
}
