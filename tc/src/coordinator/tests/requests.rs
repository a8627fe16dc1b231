//! Begin, register, report, lock query and status requests.

use seata_protocol::{
    BranchReportRequest, BranchStatus, BranchType, GlobalStatus, ResultCode,
    TransactionExceptionCode,
};

use super::*;

#[tokio::test]
async fn lock_conflict_between_two_xids_until_the_holder_commits() {
    let (c, _gw) = setup().await;
    let x1 = begin(&c).await;
    let x2 = begin(&c).await;
    register_ok(&c, &x1, BranchType::At, "db", "t:1").await;
    let r = register(&c, &x2, BranchType::At, "db", "t:1").await;
    assert_eq!(r.result.result_code, ResultCode::Failed);
    assert_eq!(
        r.result.transaction_exception_code,
        TransactionExceptionCode::LockKeyConflict
    );
    assert!(r.result.msg.contains(&x1), "{}", r.result.msg);

    assert_eq!(commit(&c, &x1).await, GlobalStatus::Committed);
    register_ok(&c, &x2, BranchType::At, "db", "t:1").await;
}

#[tokio::test]
async fn lock_conflict_released_after_rollback_of_holder() {
    let (c, _gw) = setup().await;
    let x1 = begin(&c).await;
    let x2 = begin(&c).await;
    register_ok(&c, &x1, BranchType::At, "db", "t:1").await;
    assert!(!register(&c, &x2, BranchType::At, "db", "t:1")
        .await
        .result
        .is_success());
    assert_eq!(rollback(&c, &x1).await, GlobalStatus::Rollbacked);
    register_ok(&c, &x2, BranchType::At, "db", "t:1").await;
}

#[tokio::test]
async fn composite_and_multi_table_keys_lock_all_or_nothing() {
    let (c, _gw) = setup().await;
    let x1 = begin(&c).await;
    let x2 = begin(&c).await;
    register_ok(&c, &x1, BranchType::At, "db", "a:1_x,2_y;b:7").await;
    assert!(!free(&c, "db", "b:7").await);
    assert!(!free(&c, "db", "a:2_y").await);
    assert!(free(&c, "db", "a:1").await, "a composite key is one row");
    assert!(free(&c, "other", "b:7").await, "rows are per resource");

    // Partial overlap: nothing of x2's set is taken.
    assert!(!register(&c, &x2, BranchType::At, "db", "b:8;a:2_y")
        .await
        .result
        .is_success());
    assert!(free(&c, "db", "b:8").await);
    // The same xid re-takes its own rows.
    register_ok(&c, &x1, BranchType::At, "db", "b:7,9").await;
    assert_eq!(c.stats().row_locks, 4);
}

#[tokio::test]
async fn malformed_lock_key_is_rejected() {
    let (c, _gw) = setup().await;
    let x = begin(&c).await;
    let r = register(&c, &x, BranchType::At, "db", "t:1;nocolon").await;
    assert_eq!(
        r.result.transaction_exception_code,
        TransactionExceptionCode::BranchRegisterFailed
    );
    assert_eq!(c.stats().row_locks, 0);
}

#[tokio::test]
async fn register_after_commit_is_rejected() {
    let (c, _gw) = setup().await;
    let xid = begin(&c).await;
    commit(&c, &xid).await;
    // The branch-less session finishes on the first async tick; before that it is closed.
    let r = register(&c, &xid, BranchType::At, "db", "t:1").await;
    assert_eq!(
        r.result.transaction_exception_code,
        TransactionExceptionCode::GlobalTransactionNotActive
    );
    assert_eq!(c.stats().row_locks, 0);
}

#[tokio::test]
async fn report_of_unknown_branch_is_branch_not_exist() {
    let (c, _gw) = setup().await;
    let xid = begin(&c).await;
    let r = c
        .branch_report(BranchReportRequest {
            xid,
            branch_id: 42,
            status: BranchStatus::PhaseOneDone,
            ..BranchReportRequest::default()
        })
        .await;
    assert_eq!(
        r.result.transaction_exception_code,
        TransactionExceptionCode::BranchTransactionNotExist
    );
}

#[tokio::test]
async fn unknown_xid_is_finished_and_bad_xid_is_an_error() {
    let (c, _gw) = setup().await;
    let unknown = "10.0.0.1:8091:12345";
    assert_eq!(commit(&c, unknown).await, GlobalStatus::Finished);
    assert_eq!(rollback(&c, unknown).await, GlobalStatus::Finished);
    assert_eq!(status(&c, unknown).await, GlobalStatus::Finished);
    let r = register(&c, unknown, BranchType::At, "db", "t:1").await;
    assert_eq!(
        r.result.transaction_exception_code,
        TransactionExceptionCode::GlobalTransactionNotExist
    );
    let r = c
        .commit(GlobalCommitRequest {
            xid: "garbage".into(),
            extra_data: String::new(),
        })
        .await;
    assert_eq!(r.result.result_code, ResultCode::Failed);
    assert!(r.result.msg.starts_with("TransactionException["));
}

#[tokio::test]
async fn lock_query_of_non_at_branch_is_always_lockable() {
    let (c, _gw) = setup().await;
    let x = begin(&c).await;
    register_ok(&c, &x, BranchType::At, "db", "t:1").await;
    let q = |xid: &str, ty| GlobalLockQueryRequest {
        xid: xid.into(),
        branch_type: ty,
        resource_id: "db".into(),
        lock_key: "t:1".into(),
        application_data: String::new(),
    };
    assert!(c.lock_query(q("", BranchType::Tcc)).await.lockable);
    assert!(
        c.lock_query(q(&x, BranchType::At)).await.lockable,
        "own rows"
    );
    assert!(
        !c.lock_query(q("10.0.0.1:8091:1", BranchType::At))
            .await
            .lockable
    );
}

#[tokio::test]
async fn zero_timeout_means_sixty_seconds() {
    let (c, _gw) = setup().await;
    begin_with(&c, 0).await;
    let now = id::now_ms();
    assert_eq!(c.check_timeouts(now + 59_000).await, 0);
    assert_eq!(c.check_timeouts(now + 61_000).await, 1);
}
