//! The fence's anomalies (tcc-xa-saga.md §2.1): each one driven through the real TC, with the
//! repeat delivered through `TccActionRef::phase_two`/`prepare_branch` (what the RM runs when
//! the TC asks), and the account row, the fence row and the business calls checked.

use std::time::Duration;

use seata_protocol::BranchStatus;
use seata_rm::error::RmError;
use seata_rm::tcc::TccFence;
use serde_json::json;

use super::{wait_until, Env};

/// The applicationData a call with these parameters registers (what phase two reads back).
fn data(params: serde_json::Value) -> String {
    json!({ "actionContext": params }).to_string()
}

#[tokio::test]
async fn duplicate_commit_is_a_noop() {
    let env = Env::start("tcc_dup_commit").await;
    let (action, calls) = env.action(&env.rm, "freeze", true).await;
    let params = json!({"id": 1, "amount": 30});
    let (xid, branch) = env.global(&action, params.clone(), true).await;
    env.wait_finished(&xid).await;
    assert_eq!(env.account().await, (70, 0));
    let again = action.phase_two(true, &xid, branch, &data(params)).await;
    assert_eq!(again, BranchStatus::PhaseTwoCommitted);
    assert_eq!(calls.get(), (1, 1, 0));
    assert_eq!(env.account().await, (70, 0));
    assert_eq!(env.fence_status(&xid, branch).await, Some(2));
    env.close().await;
}

#[tokio::test]
async fn duplicate_rollback_is_a_noop() {
    let env = Env::start("tcc_dup_rollback").await;
    let (action, calls) = env.action(&env.rm, "freeze", true).await;
    let params = json!({"id": 1, "amount": 30});
    let (xid, branch) = env.global(&action, params.clone(), false).await;
    env.wait_finished(&xid).await;
    let again = action.phase_two(false, &xid, branch, &data(params)).await;
    assert_eq!(again, BranchStatus::PhaseTwoRollbacked);
    assert_eq!(calls.get(), (1, 0, 1));
    assert_eq!(env.account().await, (100, 0));
    assert_eq!(env.fence_status(&xid, branch).await, Some(3));
    env.close().await;
}

/// A prepare that fails rolls back its local transaction, fence row included, so the global
/// rollback that follows is a null rollback, and a late prepare of the branch is refused.
#[tokio::test]
async fn null_rollback_then_suspended_prepare_is_refused() {
    let env = Env::start("tcc_null_rollback").await;
    let (action, calls) = env.action(&env.rm, "freeze", true).await;
    let mut tx = env
        .tm
        .begin("it-tcc-null", super::TX_TIMEOUT)
        .await
        .expect("begin");
    let xid = tx.xid().to_owned();
    let err = seata_tm::context::with_xid(
        xid.clone(),
        action.call(json!({"id": 1, "amount": 30, "fail": true})),
    )
    .await
    .expect_err("prepare fails");
    let RmError::TccPrepare { branch_id, .. } = err else {
        panic!("expected TccPrepare, got {err:?}");
    };
    // The fenced prepare's reservation was rolled back with its fence row.
    assert_eq!(env.account().await, (100, 0));
    assert_eq!(env.fence_status(&xid, branch_id).await, None);
    tx.rollback().await.expect("rollback answered");
    env.wait_finished(&xid).await;
    // Null rollback: recorded as suspended, the business rollback did not run.
    assert_eq!(calls.get(), (1, 0, 0));
    assert_eq!(env.fence_status(&xid, branch_id).await, Some(4));
    // Suspension: the same branch's prepare arriving late is refused without running.
    let late = action
        .prepare_branch(&xid, branch_id, json!({"id": 1, "amount": 30}))
        .await;
    assert!(
        matches!(late, Err(RmError::FenceRefused { .. })),
        "{late:?}"
    );
    assert_eq!(calls.get(), (1, 0, 0));
    assert_eq!(env.account().await, (100, 0));
    assert_eq!(env.fence_status(&xid, branch_id).await, Some(4));
    env.close().await;
}

#[tokio::test]
async fn commit_without_prepare_is_retried_not_run() {
    let env = Env::start("tcc_commit_no_row").await;
    let (action, calls) = env.action(&env.rm, "freeze", true).await;
    let status = action
        .phase_two(
            true,
            "127.0.0.1:1:404",
            404,
            &data(json!({"id": 1, "amount": 30})),
        )
        .await;
    assert_eq!(status, BranchStatus::PhaseTwoCommitFailedRetryable);
    assert_eq!(calls.get(), (0, 0, 0));
    assert_eq!(env.account().await, (100, 0));
    env.close().await;
}

#[tokio::test]
async fn cleanup_deletes_finished_rows_only() {
    let env = Env::start("tcc_fence_clean").await;
    let (action, _calls) = env.action(&env.rm, "freeze", true).await;
    let (done_xid, done_branch) = env
        .global(&action, json!({"id": 1, "amount": 10}), true)
        .await;
    env.wait_finished(&done_xid).await;
    let open = env
        .tm
        .begin("it-tcc-open", super::TX_TIMEOUT)
        .await
        .expect("begin");
    let open_xid = open.xid().to_owned();
    let open_branch =
        seata_tm::context::with_xid(open_xid.clone(), action.call(json!({"id": 1, "amount": 5})))
            .await
            .expect("prepare");
    let fence = TccFence::new(env.db.plain().clone());
    // Rows last changed before now (age 0) and finished: only the committed one.
    wait_until("fence cleanup", async || {
        fence
            .delete_older_than(Duration::ZERO)
            .await
            .expect("cleanup");
        env.fence_status(&done_xid, done_branch).await.is_none()
    })
    .await;
    assert_eq!(env.fence_status(&open_xid, open_branch).await, Some(1));
    let mut open = open;
    open.rollback().await.expect("rollback");
    env.wait_finished(&open_xid).await;
    assert_eq!(env.account().await, (90, 0));
    env.close().await;
}
