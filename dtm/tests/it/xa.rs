//! XA end to end (spec §6.6): phase one in the branch (`XaLocal::run`), phase two by the
//! server; no prepared XA transaction is left behind either way.

use seata_dtm::{xa_global_transaction, DtmError, GlobalStatus};

use crate::harness::{prepared_xids, transfer, Env, A, B};

#[tokio::test]
async fn xa_commits_end_to_end() {
    let env = Env::start("xa_ok").await;
    let gid = env.new_gid().await;
    let (debit, credit) = (env.at("xa/debit"), env.at("xa/credit"));
    xa_global_transaction(&env.dtm, &gid, |xa| async move {
        xa.call_branch(&transfer(A, 30), &debit).await?;
        xa.call_branch(&transfer(B, 30), &credit).await?;
        Ok::<_, DtmError>(())
    })
    .await
    .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.account(A).await, (70, 0, 0));
    assert_eq!(env.account(B).await, (130, 0, 0));
    // Commits in registration order (§6.6 step 5).
    let commits = env.calls_of(&gid, "commit");
    let ids: Vec<&str> = commits
        .iter()
        .map(|c| c.params.branch_id.as_str())
        .collect();
    assert_eq!(ids, ["01", "02"]);
    assert!(prepared_xids(&env.db, &gid).await.is_empty());
    env.finish().await;
}

#[tokio::test]
async fn xa_rolls_back_and_leaves_no_prepared_transaction() {
    let env = Env::start("xa_rb").await;
    let gid = env.new_gid().await;
    let (debit, credit) = (env.at("xa/debit"), env.at("xa/credit"));
    let err = xa_global_transaction(&env.dtm, &gid, |xa| async move {
        xa.call_branch(&transfer(B, 30), &credit).await?;
        // More than A has: the local part answers FAILURE and rolls its XA branch back.
        xa.call_branch(&transfer(A, 1000), &debit).await?;
        Ok::<_, DtmError>(())
    })
    .await
    .unwrap_err();
    assert!(err.is_failure(), "{err}");
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Failed);
    assert_eq!(env.account(A).await, (100, 0, 0));
    assert_eq!(env.account(B).await, (100, 0, 0));
    // Only the registered (prepared) branch 01 was rolled back by the server.
    let rollbacks = env.calls_of(&gid, "rollback");
    assert!(
        rollbacks.iter().all(|c| c.params.branch_id == "01"),
        "{rollbacks:?}"
    );
    assert!(!rollbacks.is_empty());
    assert!(prepared_xids(&env.db, &gid).await.is_empty());
    env.finish().await;
}
