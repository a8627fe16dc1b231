//! Saga end to end (spec §6.3): commit, rollback with compensation (and a null compensation of
//! the failed step), concurrent order, `wait_result`, `branch_headers`.

use seata_dtm::{BranchStatus, GlobalStatus, Saga};

use crate::harness::{transfer, Env, Script, A, B};

#[tokio::test]
async fn saga_commits_end_to_end() {
    let env = Env::start("saga_ok").await;
    let gid = env.new_gid().await;
    Saga::new(&env.dtm, &gid)
        .add(env.at("debit"), env.at("debit"), &transfer(A, 30))
        .add(env.at("credit"), env.at("credit"), &transfer(B, 30))
        .submit()
        .await
        .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed);
    assert_eq!(env.account(A).await, (70, 0, 0));
    assert_eq!(env.account(B).await, (130, 0, 0));
    assert!(env.calls_of(&gid, "compensate").is_empty());
    // Each step's action ran exactly once, with the step position as branch id.
    let actions = env.calls_of(&gid, "action");
    let ids: Vec<&str> = actions
        .iter()
        .map(|c| c.params.branch_id.as_str())
        .collect();
    assert_eq!(ids, ["01", "02"]);
    assert_eq!(env.business_runs(&gid, "action", "debit").await, 1);
    env.finish().await;
}

#[tokio::test]
async fn saga_rolls_back_in_reverse_and_null_compensates_the_failed_step() {
    let env = Env::start("saga_rb").await;
    let gid = env.new_gid().await;
    // Step 2 debits more than A has: its business answers FAILURE (and its barrier rows roll
    // back with it), so its compensation finds no action row: a null compensation.
    Saga::new(&env.dtm, &gid)
        .add(env.at("credit"), env.at("credit"), &transfer(B, 30))
        .add(env.at("debit"), env.at("debit"), &transfer(A, 1000))
        .submit()
        .await
        .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Failed);
    assert_eq!(
        q.branch("02", "action").unwrap().status,
        BranchStatus::Failed
    );
    assert_eq!(env.account(A).await, (100, 0, 0));
    assert_eq!(env.account(B).await, (100, 0, 0));
    // Compensations ran in reverse: step 2's (null, skipped), then step 1's (business ran).
    let comps = env.calls_of(&gid, "compensate");
    let ids: Vec<&str> = comps.iter().map(|c| c.params.branch_id.as_str()).collect();
    assert_eq!(ids, ["02", "01"]);
    assert_eq!(env.business_runs(&gid, "compensate", "debit").await, 0);
    assert_eq!(env.business_runs(&gid, "compensate", "credit").await, 1);
    env.finish().await;
}

#[tokio::test]
async fn concurrent_saga_runs_free_steps_together_and_respects_orders() {
    // Steps 0 and 1 ("meet") each wait until both are in flight; step 2 may start only after
    // both succeeded.
    let env = Env::start_with("saga_conc", Some(2)).await;
    let gid = env.new_gid().await;
    Saga::new(&env.dtm, &gid)
        .add(env.at("meet"), "", &transfer(A, 0))
        .add(env.at("meet"), "", &transfer(B, 0))
        .add(env.at("credit"), env.at("credit"), &transfer(B, 5))
        .concurrent(true)
        .add_branch_order(2, &[0, 1])
        .submit()
        .await
        .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Succeed, "{q:?}");
    let calls = env.calls_of(&gid, "action");
    let meets: Vec<_> = calls.iter().filter(|c| c.kind == "meet").collect();
    let last = calls.iter().find(|c| c.kind == "credit").unwrap();
    assert_eq!(meets.len(), 2, "{calls:?}");
    for m in meets {
        assert!(m.answered < last.arrived, "step 2 started before {m:?}");
    }
    assert_eq!(env.account(B).await, (105, 0, 0));
    env.finish().await;
}

#[tokio::test]
async fn wait_result_answers_after_the_round() {
    let env = Env::start("saga_wait").await;
    // Success: when submit returns, the saga has already succeeded.
    let gid = env.new_gid().await;
    Saga::new(&env.dtm, &gid)
        .add(env.at("debit"), env.at("debit"), &transfer(A, 10))
        .wait_result(true)
        .submit()
        .await
        .unwrap();
    let status = env.dtm.status(&gid).await.unwrap();
    assert_eq!(status, Some(GlobalStatus::Succeed));

    // FAILURE: submit reports it; the saga ends failed.
    let gid = env.new_gid().await;
    let err = Saga::new(&env.dtm, &gid)
        .add(env.at("credit"), env.at("credit"), &transfer(B, 10))
        .add(env.at("debit"), env.at("debit"), &transfer(A, 1000))
        .wait_result(true)
        .submit()
        .await
        .unwrap_err();
    assert!(err.is_failure(), "{err}");
    assert_eq!(
        env.wait_final(&gid).await.transaction.status,
        GlobalStatus::Failed
    );
    assert_eq!(env.account(B).await, (100, 0, 0));
    env.finish().await;
}

#[tokio::test]
async fn wait_result_on_a_step_still_ongoing_is_ongoing() {
    let env = Env::start("saga_ongoing").await;
    env.script("credit", "action", Script::Ongoing);
    let gid = env.new_gid().await;
    let err = Saga::new(&env.dtm, &gid)
        .add(env.at("credit"), env.at("credit"), &transfer(B, 10))
        .wait_result(true)
        .submit()
        .await
        .unwrap_err();
    // §5.6 "Our server": a transaction still being retried answers 425, not 409.
    assert!(err.is_ongoing(), "{err}");
    let status = env.dtm.status(&gid).await.unwrap();
    assert_eq!(status, Some(GlobalStatus::Submitted));
    env.finish().await;
}

#[tokio::test]
async fn branch_headers_and_options_reach_the_branches() {
    let env = Env::start("saga_headers").await;
    let gid = env.new_gid().await;
    Saga::new(&env.dtm, &gid)
        .add(env.at("credit"), env.at("credit"), &transfer(B, 1))
        .branch_header("x-test", "hello")
        .retry_interval(std::time::Duration::from_secs(1))
        .request_timeout(std::time::Duration::from_secs(5))
        .submit()
        .await
        .unwrap();
    env.wait_final(&gid).await;
    let call = &env.calls_of(&gid, "action")[0];
    assert_eq!(call.header.as_deref(), Some("hello"));
    assert_eq!(call.params.trans_type, "saga");
    env.finish().await;
}

#[tokio::test]
async fn concurrent_saga_rolls_back_every_step_that_may_have_run() {
    let env = Env::start("saga_conc_rb").await;
    // Step 1 refuses before its business (scripted 409); step 0 runs in parallel.
    env.script("debit", "action", Script::Failure);
    let gid = env.new_gid().await;
    Saga::new(&env.dtm, &gid)
        .add(env.at("credit"), env.at("credit"), &transfer(B, 30))
        .add(env.at("debit"), env.at("debit"), &transfer(A, 30))
        .concurrent(true)
        .submit()
        .await
        .unwrap();
    let q = env.wait_final(&gid).await;
    assert_eq!(q.transaction.status, GlobalStatus::Failed);
    assert_eq!(env.account(A).await, (100, 0, 0));
    assert_eq!(env.account(B).await, (100, 0, 0));
    // Step 1's compensation was a null compensation (its action never ran its business).
    assert_eq!(env.business_runs(&gid, "compensate", "debit").await, 0);
    let mut comped: Vec<String> = env
        .calls_of(&gid, "compensate")
        .into_iter()
        .map(|c| c.params.branch_id)
        .collect();
    comped.sort();
    comped.dedup();
    assert_eq!(comped, ["01", "02"]);
    env.finish().await;
}
