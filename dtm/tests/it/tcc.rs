//! TCC end to end (spec §6.5): register-then-try, submit → confirms, a refused try or a closure
//! error → abort → cancels (including a null compensation for the refused try).

use seata_dtm::{tcc_global_transaction, DtmError, GlobalStatus};

use crate::harness::{transfer, Env, A, B};

#[tokio::test]
async fn tcc_commits_end_to_end() {
    let env = Env::start("tcc_ok").await;
    let gid = env.new_gid().await;
    let (debit, credit) = (env.at("debit"), env.at("credit"));
    let answer = tcc_global_transaction(&env.dtm, &gid, |tcc| async move {
        tcc.call_branch(&transfer(A, 30), &debit, &debit, &debit)
            .await?;
        // Tries are done, confirms are not: A's money is frozen, B's is incoming.
        tcc.call_branch(&transfer(B, 30), &credit, &credit, &credit)
            .await?;
        Ok::<_, DtmError>(tcc.gid().to_owned())
    })
    .await
    .unwrap();
    assert_eq!(answer, gid);
    assert_eq!(
        env.wait_final(&gid).await.transaction.status,
        GlobalStatus::Succeed
    );
    assert_eq!(env.account(A).await, (70, 0, 0));
    assert_eq!(env.account(B).await, (130, 0, 0));

    // The client called each try itself with the four parameters and `dtm`, after registering.
    let tries = env.calls_of(&gid, "try");
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[0].params.branch_id, "01");
    assert_eq!(tries[1].params.branch_id, "02");
    assert_eq!(tries[0].params.trans_type, "tcc");
    assert_eq!(tries[0].params.dtm.as_deref(), Some(env.dtm.base_url()));
    // Confirms in reverse registration order (§6.5).
    let confirms = env.calls_of(&gid, "confirm");
    let ids: Vec<&str> = confirms
        .iter()
        .map(|c| c.params.branch_id.as_str())
        .collect();
    assert_eq!(ids, ["02", "01"]);
    env.finish().await;
}

#[tokio::test]
async fn a_refused_try_aborts_and_cancels_every_registered_branch() {
    let env = Env::start("tcc_refused").await;
    let gid = env.new_gid().await;
    let (debit, credit) = (env.at("debit"), env.at("credit"));
    let err = tcc_global_transaction(&env.dtm, &gid, |tcc| async move {
        tcc.call_branch(&transfer(B, 30), &credit, &credit, &credit)
            .await?;
        // More than A has: the try answers 409 and its barrier rows roll back.
        tcc.call_branch(&transfer(A, 1000), &debit, &debit, &debit)
            .await?;
        Ok::<_, DtmError>(())
    })
    .await
    .unwrap_err();
    assert!(err.is_failure(), "{err}");
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Failed);
    assert!(
        q.transaction.rollback_reason.contains("FAILURE"),
        "{:?}",
        q.transaction.rollback_reason
    );
    assert_eq!(env.account(A).await, (100, 0, 0));
    assert_eq!(env.account(B).await, (100, 0, 0));
    // Both branches were cancelled; the refused one was a null compensation.
    assert_eq!(env.calls_of(&gid, "cancel").len(), 2);
    assert_eq!(env.business_runs(&gid, "cancel", "credit").await, 1);
    assert_eq!(env.business_runs(&gid, "cancel", "debit").await, 0);
    assert!(env.calls_of(&gid, "confirm").is_empty());
    env.finish().await;
}

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("coordinator: {0}")]
    Dtm(#[from] DtmError),
    #[error("the order service said no")]
    Refused,
}

#[tokio::test]
async fn an_error_of_the_closure_aborts_with_its_text_as_reason() {
    let env = Env::start("tcc_closure").await;
    let gid = env.new_gid().await;
    let debit = env.at("debit");
    let err = tcc_global_transaction(&env.dtm, &gid, |tcc| async move {
        tcc.call_branch(&transfer(A, 30), &debit, &debit, &debit)
            .await?;
        Err::<(), _>(AppError::Refused)
    })
    .await
    .unwrap_err();
    assert!(matches!(err, AppError::Refused));
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Failed);
    assert_eq!(q.transaction.rollback_reason, "the order service said no");
    // The try ran, so the cancel ran its business and gave the money back.
    assert_eq!(env.business_runs(&gid, "cancel", "debit").await, 1);
    assert_eq!(env.account(A).await, (100, 0, 0));
    env.finish().await;
}
