//! Phase-two commit answers only once the branch's undo log is deleted: an acknowledged
//! commit never leaves an undo_log row behind, even if the RM dies right after answering.

use std::sync::Arc;

use seata_protocol::BranchStatus;
use seata_rm::at::{AtConfig, AtResourceManager};
use seata_tm::context::with_xid;

use crate::harness::{FakeTc, TestDb};

const ACCOUNT: &str = "CREATE TABLE account_tbl (id INT PRIMARY KEY, money INT)";

/// Phase one of `n` branches, one global transaction each, updating row `i`; returns
/// (xid, branch id) per branch.
async fn phase_one(db: &TestDb, n: i64) -> Vec<(String, i64)> {
    let mut conn = db.ds.get_conn().await.unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let xid = format!("192.168.0.2:8091:{}", 3_000_000 + i);
        with_xid(&xid, async {
            conn.exec_drop(
                "UPDATE account_tbl SET money = money - 1 WHERE id = ?",
                (i,),
            )
            .await
            .unwrap();
        })
        .await;
        out.push(db.tc.last_branch());
    }
    out
}

async fn undo_of(db: &TestDb, branch: i64) -> i64 {
    db.count(&format!(
        "SELECT COUNT(*) FROM undo_log WHERE branch_id = {branch}"
    ))
    .await
}

#[tokio::test]
async fn branch_commit_is_answered_after_its_undo_log_is_gone() {
    let db = TestDb::new(&[ACCOUNT]).await;
    let values: Vec<String> = (0..20).map(|i| format!("({i}, 100)")).collect();
    db.run(&format!(
        "INSERT INTO account_tbl VALUES {}",
        values.join(",")
    ))
    .await;
    let branches = phase_one(&db, 20).await;
    assert_eq!(db.undo_rows().await, 20);
    let rid = db.ds.resource_id().to_string();
    // Concurrent commits (they share batches); each checks its rows the moment it is answered.
    let answers = futures::future::join_all(branches.iter().map(|(xid, branch)| {
        let (db, rid) = (&db, &rid);
        async move {
            let status = db.rm.branch_commit(xid, *branch, rid).await;
            (status, undo_of(db, *branch).await)
        }
    }))
    .await;
    for (status, left) in answers {
        assert_eq!(status, BranchStatus::PhaseTwoCommitted);
        assert_eq!(
            left, 0,
            "answered Committed while its undo log is still there"
        );
    }
    assert_eq!(db.undo_rows().await, 0);
    // A repeated commit (the TC retrying after a lost answer) finds nothing and is fine.
    let (xid, branch) = &branches[0];
    assert_eq!(
        db.rm.branch_commit(xid, *branch, &rid).await,
        BranchStatus::PhaseTwoCommitted
    );
    db.cleanup().await;
}

#[tokio::test]
async fn failed_undo_delete_answers_retryable_and_the_retry_commits() {
    let db = TestDb::new(&[ACCOUNT, "INSERT INTO account_tbl VALUES (0, 100)"]).await;
    let branches = phase_one(&db, 1).await;
    let (xid, branch) = &branches[0];
    let rid = db.ds.resource_id().to_string();
    // The delete fails while the table is away.
    db.run("RENAME TABLE undo_log TO undo_log_away").await;
    assert_eq!(
        db.rm.branch_commit(xid, *branch, &rid).await,
        BranchStatus::PhaseTwoCommitFailedRetryable
    );
    db.run("RENAME TABLE undo_log_away TO undo_log").await;
    assert_eq!(
        undo_of(&db, *branch).await,
        1,
        "the undo log is still there"
    );
    assert_eq!(
        db.rm.branch_commit(xid, *branch, &rid).await,
        BranchStatus::PhaseTwoCommitted
    );
    assert_eq!(undo_of(&db, *branch).await, 0);
    db.cleanup().await;
}

/// The RM client reaches the AT manager through a weak reference (the manager holds the
/// client), so the application's data source is what keeps it alive: phase two still finds
/// it after the application dropped the manager, while a data source or one of its
/// connections lives, and nothing keeps it alive after those are gone.
#[tokio::test]
async fn a_data_source_keeps_its_manager_alive_for_phase_two_and_no_longer() {
    let db = TestDb::new(&[ACCOUNT]).await;
    db.run("INSERT INTO account_tbl VALUES (1, 100)").await;
    let tc = FakeTc::new();
    let rm = AtResourceManager::new(tc.clone(), AtConfig::default()).unwrap();
    let ds = rm.data_source(db.opts());
    let weak = Arc::downgrade(&rm);
    drop(rm);
    let mut conn = ds.get_conn().await.unwrap();
    let rid = ds.resource_id().to_string();
    drop(ds);
    with_xid("192.168.0.2:8091:4000000", async {
        conn.exec_drop(
            "UPDATE account_tbl SET money = money - 7 WHERE id = ?",
            (1,),
        )
        .await
        .unwrap();
    })
    .await;
    let (xid, branch) = tc.last_branch();
    let rm = weak
        .upgrade()
        .expect("the manager went away while a connection of its data source lives");
    assert_eq!(
        rm.branch_rollback(&xid, branch, &rid).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 1").await,
        100
    );
    drop(rm);
    drop(conn);
    assert!(
        weak.upgrade().is_none(),
        "the manager outlived every data source: something holds it in a cycle"
    );
    db.cleanup().await;
}
