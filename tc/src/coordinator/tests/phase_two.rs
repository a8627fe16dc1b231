//! Commit, rollback and timeout passes.

use seata_protocol::{
    BranchReportRequest, BranchStatus, BranchType, GlobalStatus, TransactionExceptionCode,
};

use super::*;

#[tokio::test]
async fn at_commit_answers_committed_and_async_job_commits_branches() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    assert!(xid.starts_with("10.0.0.1:8091:"));
    register_ok(&c, &xid, BranchType::At, "db1", "t:1").await;
    register_ok(&c, &xid, BranchType::At, "db2", "u:1").await;
    assert_eq!(c.stats().row_locks, 2);

    assert_eq!(commit(&c, &xid).await, GlobalStatus::Committed);
    // Locks go when commit is decided; branches are committed later by the job.
    assert_eq!(c.stats().row_locks, 0);
    assert_eq!(c.stats().async_committing, 1);
    assert_eq!(status(&c, &xid).await, GlobalStatus::AsyncCommitting);
    assert!(gw.calls().is_empty());

    assert_eq!(
        c.run_retry_queue(RetryQueue::AsyncCommitting, id::now_ms())
            .await,
        1
    );
    assert_eq!(gw.calls(), vec![cm("db1"), cm("db2")]);
    assert_eq!(c.stats(), CoordinatorStats::default());
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
}

#[tokio::test]
async fn tcc_commit_is_synchronous_in_registration_order() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    for r in ["a", "b", "c"] {
        register_ok(&c, &xid, BranchType::Tcc, r, "").await;
    }
    assert_eq!(c.stats().row_locks, 0, "TCC takes no TC locks");
    assert_eq!(commit(&c, &xid).await, GlobalStatus::Committed);
    assert_eq!(gw.calls(), vec![cm("a"), cm("b"), cm("c")]);
    assert_eq!(c.stats().sessions, 0);
}

#[tokio::test]
async fn tcc_commit_retry_resumes_at_the_failed_branch() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    for r in ["a", "b", "c"] {
        register_ok(&c, &xid, BranchType::Tcc, r, "").await;
    }
    gw.answer("b", Ok(BranchStatus::PhaseTwoCommitFailedRetryable));
    assert_eq!(commit(&c, &xid).await, GlobalStatus::CommitRetrying);
    assert_eq!(gw.calls(), vec![cm("a"), cm("b")]);
    assert_eq!(c.stats().retry_committing, 1);
    // A TM retry sees the retry status and changes nothing.
    assert_eq!(commit(&c, &xid).await, GlobalStatus::CommitRetrying);

    let later = id::now_ms() + 60_000;
    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryCommitting, later).await,
        1
    );
    assert_eq!(gw.calls(), vec![cm("a"), cm("b"), cm("b"), cm("c")]);
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
    assert_eq!(c.stats(), CoordinatorStats::default());
}

#[tokio::test]
async fn tcc_unretryable_commit_ends_commit_failed() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::Tcc, "a", "").await;
    register_ok(&c, &xid, BranchType::Tcc, "b", "").await;
    gw.answer("a", Ok(BranchStatus::PhaseTwoCommitFailedUnretryable));
    assert_eq!(commit(&c, &xid).await, GlobalStatus::CommitFailed);
    assert_eq!(gw.calls(), vec![cm("a")]);
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
}

#[tokio::test]
async fn rollback_runs_in_reverse_and_releases_locks_per_undone_branch() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::At, "db", "t:1").await;
    register_ok(&c, &xid, BranchType::At, "db", "t:2").await;
    register_ok(&c, &xid, BranchType::At, "db3", "t:3").await;
    // The middle branch fails once; the last one (first undone) succeeds.
    gw.answer("db", Ok(BranchStatus::PhaseTwoRollbackFailedRetryable));

    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackRetrying);
    assert_eq!(gw.calls(), vec![rb("db3"), rb("db")]);
    assert!(
        free(&c, "db3", "t:3").await,
        "undone branch's rows are free"
    );
    assert!(!free(&c, "db", "t:2").await, "failed branch keeps its rows");
    assert!(
        !free(&c, "db", "t:1").await,
        "branch not yet undone keeps its rows"
    );
    assert_eq!(c.stats().retry_rollbacking, 1);

    let later = id::now_ms() + 60_000;
    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryRollbacking, later).await,
        1
    );
    assert_eq!(gw.calls(), vec![rb("db3"), rb("db"), rb("db"), rb("db")]);
    assert_eq!(c.stats(), CoordinatorStats::default());
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
}

#[tokio::test]
async fn timed_out_transaction_is_rolled_back_by_the_retry_job() {
    let (c, gw) = setup().await;
    let xid = begin_with(&c, 1_000).await;
    register_ok(&c, &xid, BranchType::At, "db", "t:1").await;
    let now = id::now_ms();
    assert_eq!(c.check_timeouts(now).await, 0);
    assert_eq!(c.check_timeouts(now + 2_000).await, 1);
    assert_eq!(status(&c, &xid).await, GlobalStatus::TimeoutRollbacking);
    assert!(!free(&c, "db", "t:1").await, "locks stay until rollback");
    let r = register(&c, &xid, BranchType::At, "db", "t:2").await;
    assert_eq!(
        r.result.transaction_exception_code,
        TransactionExceptionCode::GlobalTransactionNotActive
    );
    // A late TM commit gets the timeout status and changes nothing.
    assert_eq!(commit(&c, &xid).await, GlobalStatus::TimeoutRollbacking);

    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryRollbacking, now + 2_000)
            .await,
        1
    );
    assert_eq!(gw.calls(), vec![rb("db")]);
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
    assert_eq!(c.stats(), CoordinatorStats::default());
}

#[tokio::test]
async fn not_connected_rm_is_retried_when_its_resource_comes_back() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::At, "db", "t:1").await;
    gw.disconnect("db");
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackRetrying);
    let now = id::now_ms();
    // Backed off: not tried again right away, and never dropped.
    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryRollbacking, now).await,
        0
    );
    assert_eq!(c.stats().retry_rollbacking, 1);
    assert!(!free(&c, "db", "t:1").await);

    gw.connect("db");
    c.resource_available("other-db");
    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryRollbacking, now).await,
        0
    );
    c.resource_available("db");
    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryRollbacking, now).await,
        1
    );
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
    assert!(free(&c, "db", "t:1").await);
}

#[tokio::test]
async fn async_commit_with_disconnected_rm_is_kept_until_it_returns() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::At, "db1", "t:1").await;
    register_ok(&c, &xid, BranchType::At, "db2", "t:2").await;
    gw.disconnect("db1");
    assert_eq!(commit(&c, &xid).await, GlobalStatus::Committed);
    let now = id::now_ms();
    assert_eq!(c.run_retry_queue(RetryQueue::AsyncCommitting, now).await, 1);
    // db2 committed despite db1 being away; db1 waits.
    assert_eq!(gw.calls(), vec![cm("db1"), cm("db2")]);
    assert_eq!(status(&c, &xid).await, GlobalStatus::AsyncCommitting);
    gw.connect("db1");
    c.resource_available("db1");
    assert_eq!(c.run_retry_queue(RetryQueue::AsyncCommitting, now).await, 1);
    assert_eq!(gw.calls(), vec![cm("db1"), cm("db2"), cm("db1")]);
    assert_eq!(c.stats(), CoordinatorStats::default());
}

#[tokio::test]
async fn unretryable_rollback_keeps_session_and_locks_of_branches_not_undone() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::At, "db1", "t:1").await;
    register_ok(&c, &xid, BranchType::At, "db2", "t:2").await;
    gw.answer("db1", Ok(BranchStatus::PhaseTwoRollbackFailedUnretryable));
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackFailed);
    assert!(
        free(&c, "db2", "t:2").await,
        "the undone branch released its rows"
    );
    assert!(
        !free(&c, "db1", "t:1").await,
        "rows not restored stay locked"
    );
    assert_eq!(status(&c, &xid).await, GlobalStatus::RollbackFailed);
    let s = c.stats();
    assert_eq!((s.sessions, s.retry_rollbacking), (1, 0));
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackFailed);
}

#[tokio::test]
async fn late_commit_does_not_unlock_a_rolling_back_session() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::At, "db", "t:1").await;
    gw.disconnect("db");
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackRetrying);
    assert_eq!(commit(&c, &xid).await, GlobalStatus::RollbackRetrying);
    assert!(!free(&c, "db", "t:1").await);
}

#[tokio::test]
async fn phase_one_failed_branch_is_skipped_in_rollback() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    let b1 = register_ok(&c, &xid, BranchType::At, "db1", "t:1").await;
    register_ok(&c, &xid, BranchType::At, "db2", "t:2").await;
    let r = c
        .branch_report(BranchReportRequest {
            xid: xid.clone(),
            branch_id: b1,
            status: BranchStatus::PhaseOneFailed,
            ..BranchReportRequest::default()
        })
        .await;
    assert!(r.result.is_success());
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::Rollbacked);
    assert_eq!(gw.calls(), vec![rb("db2")]);
    assert_eq!(c.stats().row_locks, 0);
}
