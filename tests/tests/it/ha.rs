//! Several TCs on one MySQL store (`--store db`): transactions through any TC, row locks
//! decided by the database, takeover of a killed TC's transactions, recovery on restart.
//! Every wait polls with a deadline; nothing asserts on timing.

use seata_it::clients::{
    begin, commit, lockable, rollback, status, tm, wait_status, Answer, Phase, TestRm, WAIT,
};
use seata_it::db_store::{tm_all, TestDb};
use seata_protocol::{BranchType, GlobalStatus};

const RES: &str = "jdbc:mysql://127.0.0.1:3306/ha";
/// Lease of the TCs in these tests, ms: short, so a killed TC's work moves on quickly.
const LEASE_MS: u64 = 1_500;

#[tokio::test]
async fn transactions_run_through_either_tc() {
    let db = TestDb::create().await;
    let (a, b) = (db.start_tc(LEASE_MS), db.start_tc(LEASE_MS));
    let (tm_a, tm_b) = (tm(a.addr()).await, tm(b.addr()).await);
    let rm_a = TestRm::connect(a.addr(), "ha-rm", &[RES]).await;
    let rm_b = TestRm::connect(b.addr(), "ha-rm", &[RES]).await;

    // Begin on A, register through both, commit through B.
    let xid = begin(&tm_a, 60_000).await;
    let b1 = rm_b.register(&xid, RES, "acct:1").await;
    let b2 = rm_a.register(&xid, RES, "acct:2").await;
    assert!(
        b1.result.is_success() && b2.result.is_success(),
        "{b1:?} {b2:?}"
    );
    assert_ne!(b1.branch_id, b2.branch_id);
    // The rows are locked for everyone, whichever TC is asked.
    let other = begin(&tm_b, 60_000).await;
    assert!(!rm_a
        .register(&other, RES, "acct:1")
        .await
        .result
        .is_success());
    assert!(!lockable(&rm_b, RES, "acct:2").await);
    assert_eq!(status(&tm_b, &xid).await, GlobalStatus::Begin);

    let r = commit(&tm_b, &xid).await;
    assert!(r.result.is_success(), "{:?}", r.result);
    assert_eq!(r.global_status, GlobalStatus::Committed);
    wait_status(&tm_a, &xid, GlobalStatus::Finished).await;
    wait_status(&tm_b, &xid, GlobalStatus::Finished).await;
    let calls = rm_b.calls();
    assert_eq!(
        calls.len(),
        2,
        "B drives both branches through its RM: {calls:?}"
    );
    assert!(calls
        .iter()
        .all(|c| c.phase == Phase::Commit && c.xid == xid));
    assert!(lockable(&rm_a, RES, "acct:1;acct:2").await);
    // A commit repeated on A, whose copy is stale, answers from the store.
    assert_eq!(
        commit(&tm_a, &xid).await.global_status,
        GlobalStatus::Finished
    );

    // TCC through the other TC: begin on B, register on A, roll back on A.
    let xid = begin(&tm_b, 60_000).await;
    let t = rm_a.register_typed(&xid, BranchType::Tcc, RES, "").await;
    assert!(t.result.is_success());
    let r = rollback(&tm_a, &xid).await;
    assert_eq!(r.global_status, GlobalStatus::Rollbacked, "{:?}", r.result);
    assert!(rm_a
        .calls()
        .iter()
        .any(|c| c.phase == Phase::Rollback && c.branch_id == t.branch_id));
    assert_eq!(status(&tm_b, &xid).await, GlobalStatus::Finished);
    let r = rollback(&tm_a, &other).await;
    assert_eq!(r.global_status, GlobalStatus::Rollbacked);
    assert_eq!(db.count("global_table").await, 0);
    assert_eq!(db.count("lock_table").await, 0);
}

#[tokio::test]
async fn concurrent_conflicting_registers_through_two_tcs_have_one_winner() {
    let db = TestDb::create().await;
    let (a, b) = (db.start_tc(LEASE_MS), db.start_tc(LEASE_MS));
    let tm = tm_all(&[a.addr(), b.addr()]).await;
    let rm_a = TestRm::connect(a.addr(), "ha-rm", &[RES]).await;
    let rm_b = TestRm::connect(b.addr(), "ha-rm", &[RES]).await;
    for round in 0..50 {
        let (x1, x2) = (begin(&tm, 60_000).await, begin(&tm, 60_000).await);
        // Overlapping keys in different orders: the shared row decides.
        let k1 = format!("stock:{round},r{round}");
        let k2 = format!("stock:r{round},{round}");
        let (r1, r2) = tokio::join!(rm_a.register(&x1, RES, &k1), rm_b.register(&x2, RES, &k2));
        let wins = [&r1, &r2].iter().filter(|r| r.result.is_success()).count();
        assert_eq!(wins, 1, "round {round}: {r1:?} {r2:?}");
        assert!(rollback(&tm, &x1).await.result.is_success());
        assert!(rollback(&tm, &x2).await.result.is_success());
    }
    assert_eq!(db.count("lock_table").await, 0);
}

#[tokio::test]
async fn survivor_finishes_phase_two_of_a_killed_tc() {
    let db = TestDb::create().await;
    let (mut a, b) = (db.start_tc(LEASE_MS), db.start_tc(LEASE_MS));
    let tm_a = tm(a.addr()).await;
    let tm_b = tm(b.addr()).await;
    let rm_a = TestRm::connect(a.addr(), "ha-rm", &[RES]).await;
    let rm_b = TestRm::connect(b.addr(), "ha-rm", &[RES]).await;
    rm_a.answer(Answer::Retryable);
    rm_b.answer(Answer::Retryable);

    // AT commit (async), a TCC commit and a rollback, all stuck retrying on A.
    let at = begin(&tm_a, 60_000).await;
    assert!(rm_a.register(&at, RES, "k:1").await.result.is_success());
    assert!(rm_a.register(&at, RES, "k:2").await.result.is_success());
    assert_eq!(
        commit(&tm_a, &at).await.global_status,
        GlobalStatus::Committed
    );
    let tcc = begin(&tm_a, 60_000).await;
    let t = rm_a.register_typed(&tcc, BranchType::Tcc, RES, "").await;
    assert!(t.result.is_success());
    assert_eq!(
        commit(&tm_a, &tcc).await.global_status,
        GlobalStatus::CommitRetrying
    );
    let rb = begin(&tm_a, 60_000).await;
    assert!(rm_a.register(&rb, RES, "k:3").await.result.is_success());
    assert_eq!(
        rollback(&tm_a, &rb).await.global_status,
        GlobalStatus::RollbackRetrying
    );
    // And one left open on A that times out after A is gone.
    let open = begin(&tm_a, 1_000).await;
    assert!(rm_a.register(&open, RES, "k:4").await.result.is_success());
    rm_a.wait_for(WAIT, |c| c.iter().any(|c| c.xid == at)).await;

    a.kill();
    rm_b.answer(Answer::Done);
    for xid in [&at, &tcc, &rb, &open] {
        wait_status(&tm_b, xid, GlobalStatus::Finished).await;
    }
    let calls = rm_b.calls();
    for (xid, phase) in [
        (&at, Phase::Commit),
        (&tcc, Phase::Commit),
        (&rb, Phase::Rollback),
        (&open, Phase::Rollback),
    ] {
        assert!(
            calls.iter().any(|c| &c.xid == xid && c.phase == phase),
            "{xid} {phase:?} not driven by B: {calls:#?}"
        );
    }
    assert!(lockable(&rm_b, RES, "k:1,2,3,4").await);
    assert_eq!(db.count("global_table").await, 0);
    assert_eq!(db.count("branch_table").await, 0);
}

#[tokio::test]
async fn restarted_tc_recovers_from_the_database() {
    let db = TestDb::create().await;
    let mut tc = db.start_tc(LEASE_MS);
    let tm = tm(tc.addr()).await;
    let rm = TestRm::connect(tc.addr(), "ha-rm", &[RES]).await;
    rm.answer(Answer::Retryable);
    let rb = begin(&tm, 60_000).await;
    assert!(rm.register(&rb, RES, "r:1").await.result.is_success());
    assert_eq!(
        rollback(&tm, &rb).await.global_status,
        GlobalStatus::RollbackRetrying
    );
    let open = begin(&tm, 60_000).await;
    let o = rm.register(&open, RES, "r:2").await;
    assert!(o.result.is_success());

    tc.restart();
    rm.answer(Answer::Done);
    assert!(rm.client.wait_connected(WAIT).await, "RM reconnects");
    assert!(tm.wait_connected(WAIT).await, "TM reconnects");
    // The open transaction is found in the database and still holds its row.
    assert_eq!(status(&tm, &open).await, GlobalStatus::Begin);
    assert!(!lockable(&rm, RES, "r:2").await);
    let r = commit(&tm, &open).await;
    assert_eq!(r.global_status, GlobalStatus::Committed, "{:?}", r.result);
    // The rollback of the previous run is taken over once its lease expires.
    wait_status(&tm, &rb, GlobalStatus::Finished).await;
    wait_status(&tm, &open, GlobalStatus::Finished).await;
    assert!(rm
        .calls()
        .iter()
        .any(|c| c.xid == rb && c.phase == Phase::Rollback));
    assert!(lockable(&rm, RES, "r:1;r:2").await);
}
