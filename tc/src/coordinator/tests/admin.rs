//! Operator actions on the coordinator (`admin.rs`): what they may do and what they refuse.

use super::*;
use crate::coordinator::{AdminAction, Refusal};

#[tokio::test]
async fn give_up_of_a_dirty_branch_rolls_the_others_back_and_ends_failed() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::At, "db0", "t:0").await;
    let dirty = register_ok(&c, &xid, BranchType::At, "db1", "t:1").await;
    gw.answer("db1", Ok(BranchStatus::PhaseTwoRollbackFailedUnretryable));
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackFailed);
    // The branch before the dirty one was not undone: both keep their rows.
    assert!(!free(&c, "db0", "t:0").await && !free(&c, "db1", "t:1").await);
    let view = &c.admin_sessions()[0];
    assert!(view.needs_operator);
    assert!(view.branches[1].note.unretryable);

    // Commit is refused; a give-up needs a reason; the give-up itself is audited.
    assert!(matches!(
        c.admin_act(&xid, AdminAction::Commit, "ops").await,
        Err(Refusal::Conflict {
            status: GlobalStatus::RollbackFailed,
            ..
        })
    ));
    assert!(matches!(
        c.admin_give_up(&xid, dirty, " ", "ops").await,
        Err(Refusal::Invalid(_))
    ));
    let done = c
        .admin_give_up(&xid, dirty, "fixed by hand", "ops")
        .await
        .unwrap();
    assert!(done.changed);
    assert!(
        free(&c, "db1", "t:1").await,
        "the given-up branch's rows are released"
    );
    assert_eq!(status(&c, &xid).await, GlobalStatus::RollbackRetrying);
    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryRollbacking, i64::MAX / 2)
            .await,
        1
    );
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
    assert_eq!(c.stats().row_locks, 0);
    assert_eq!(gw.calls().last(), Some(&rb("db0")));
    let audit = c.admin_audits(Some(&xid), 0).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(kinds, ["rm-unretryable", "give-up", "rollback"]);
    // Repeated: nothing more happens.
    let again = c.admin_give_up(&xid, dirty, "again", "ops").await.unwrap();
    assert!(!again.changed);
}

/// The give-up is durable (its audit record); the rollback of the other branches that follows
/// it may be cut by a restart, and the transaction must still end failed, not Rollbacked.
#[tokio::test]
async fn a_give_up_cut_by_a_restart_still_ends_the_transaction_failed() {
    use crate::store::file::{FileStore, FileStoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let options = FileStoreOptions::new(dir.path(), crate::config::SyncMode::Fsync);
    let store = Arc::new(FileStore::open(options.clone()).await.unwrap());
    let (c, gw) = setup_with(store.clone()).await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::At, "db0", "t:0").await;
    let dirty = register_ok(&c, &xid, BranchType::At, "db1", "t:1").await;
    gw.answer("db1", Ok(BranchStatus::PhaseTwoRollbackFailedUnretryable));
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackFailed);
    c.admin_give_up(&xid, dirty, "fixed by hand", "ops")
        .await
        .unwrap();
    assert_eq!(status(&c, &xid).await, GlobalStatus::RollbackRetrying);
    // The TC stops before db0 is rolled back.
    drop(c);
    store.close().await.unwrap();
    drop(store);

    let store = Arc::new(FileStore::open(options).await.unwrap());
    let (c, gw) = setup_with(store.clone()).await;
    let tid = id::transaction_id_of(&xid).unwrap();
    let session = c.sessions.get(&tid).map(|s| s.clone()).expect("recovered");
    assert_eq!(session.status(), GlobalStatus::RollbackRetrying);
    assert_eq!(
        c.drive_rollback(&session, id::now_ms()).await,
        GlobalStatus::RollbackFailed
    );
    assert_eq!(gw.calls(), [rb("db0")]);
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
    store.close().await.unwrap();
}

#[tokio::test]
async fn retry_resumes_a_failed_rollback_once_the_data_is_fixed() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::At, "db", "t:1").await;
    gw.answer("db", Ok(BranchStatus::PhaseTwoRollbackFailedUnretryable));
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackFailed);
    // Not retried by the jobs on their own.
    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryRollbacking, i64::MAX / 2)
            .await,
        0
    );
    gw.answer("db", Ok(BranchStatus::PhaseTwoRollbacked));
    c.admin_act(&xid, AdminAction::Retry, "ops").await.unwrap();
    assert_eq!(
        c.run_retry_queue(RetryQueue::RetryRollbacking, i64::MAX / 2)
            .await,
        1
    );
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
    assert!(free(&c, "db", "t:1").await);
}

#[tokio::test]
async fn phase_one_refusals_and_operator_rollback() {
    let (c, _gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::Tcc, "tcc", "").await;
    for action in [AdminAction::Commit, AdminAction::Retry] {
        assert!(matches!(
            c.admin_act(&xid, action, "ops").await,
            Err(Refusal::Conflict {
                status: GlobalStatus::Begin,
                ..
            })
        ));
    }
    assert!(matches!(
        c.admin_delete(&xid, "", "ops").await,
        Err(Refusal::Conflict { .. })
    ));
    let done = c
        .admin_act(&xid, AdminAction::Rollback, "ops")
        .await
        .unwrap();
    assert_eq!(done.status, "Rollbacked");
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
    assert!(matches!(
        c.admin_act(&xid, AdminAction::Rollback, "ops").await,
        Err(Refusal::NotFound { .. })
    ));
    assert!(!c.admin_delete(&xid, "", "ops").await.unwrap().changed);
}

#[tokio::test]
async fn delete_forgets_a_kept_failure_and_its_locks() {
    let (c, gw) = setup().await;
    let xid = begin(&c).await;
    register_ok(&c, &xid, BranchType::At, "db", "t:1").await;
    gw.answer("db", Ok(BranchStatus::PhaseTwoRollbackFailedUnretryable));
    assert_eq!(rollback(&c, &xid).await, GlobalStatus::RollbackFailed);
    assert_eq!(c.admin_locks().len(), 1);
    let done = c.admin_delete(&xid, "cleaned up", "ops").await.unwrap();
    assert!(done.changed);
    assert!(free(&c, "db", "t:1").await);
    assert!(c.admin_locks().is_empty());
    assert_eq!(status(&c, &xid).await, GlobalStatus::Finished);
}
