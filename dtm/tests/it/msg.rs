//! Two-phase message end to end (spec §6.4, §8.4): prepare/submit, abort, `do_and_submit` with
//! the producer barrier, and the server's queryPrepared after a producer "crash".

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::TxOpts;
use seata_dtm::{BranchBarrier, BranchError, DtmError, GlobalStatus, Msg};

use crate::harness::{business, transfer, Env, A, B};

fn msg(env: &Env, gid: &str) -> Msg {
    Msg::new(&env.dtm, gid)
        .add(env.at("credit"), &transfer(B, 30))
        .query_prepared(env.at("query_prepared"))
        .barrier_table(env.table.clone())
}

#[tokio::test]
async fn msg_prepare_then_submit_commits() {
    let env = Env::start("msg_ok").await;
    let gid = env.new_gid().await;
    let m = msg(&env, &gid);
    m.prepare().await.unwrap();
    assert_eq!(
        env.dtm.status(&gid).await.unwrap(),
        Some(GlobalStatus::Prepared)
    );
    m.submit().await.unwrap();
    assert_eq!(
        env.wait_final(&gid).await.transaction.status,
        GlobalStatus::Succeed
    );
    assert_eq!(env.account(B).await, (130, 0, 0));
    env.finish().await;
}

#[tokio::test]
async fn msg_abort_fails_it_without_calling_actions() {
    let env = Env::start("msg_abort").await;
    let gid = env.new_gid().await;
    let m = msg(&env, &gid);
    m.prepare().await.unwrap();
    m.abort().await.unwrap();
    assert_eq!(
        env.wait_final(&gid).await.transaction.status,
        GlobalStatus::Failed
    );
    assert!(env.calls_of(&gid, "action").is_empty());
    // A failed msg cannot be submitted any more: FAILURE.
    assert!(m.submit().await.unwrap_err().is_failure());
    env.finish().await;
}

#[tokio::test]
async fn do_and_submit_commits_the_local_transaction_and_the_message() {
    let env = Env::start("msg_das_ok").await;
    let gid = env.new_gid().await;
    let g = gid.clone();
    let value = msg(&env, &gid)
        .do_and_submit(&env.pool, move |tx| {
            Box::pin(async move {
                business(
                    tx,
                    "debit".into(),
                    "action".into(),
                    g,
                    "00".into(),
                    transfer(A, 30),
                )
                .await?;
                Ok(7)
            })
        })
        .await
        .unwrap();
    assert_eq!(value, 7);
    assert_eq!(
        env.wait_final(&gid).await.transaction.status,
        GlobalStatus::Succeed
    );
    assert_eq!(env.account(A).await, (70, 0, 0));
    assert_eq!(env.account(B).await, (130, 0, 0));
    // The producer barrier row says "committed".
    let reason: Vec<String> = env
        .db
        .query(&format!(
            "SELECT reason FROM barrier WHERE gid = '{gid}' AND branch_id = '00' AND op = 'msg'"
        ))
        .await;
    assert_eq!(reason, ["msg"]);
    env.finish().await;
}

#[tokio::test]
async fn do_and_submit_aborts_on_a_failure_of_the_local_transaction() {
    let env = Env::start("msg_das_fail").await;
    let gid = env.new_gid().await;
    let g = gid.clone();
    // Debiting more than A has answers FAILURE inside the local transaction.
    let err = msg(&env, &gid)
        .do_and_submit(&env.pool, move |tx| {
            business(
                tx,
                "debit".into(),
                "action".into(),
                g,
                "00".into(),
                transfer(A, 1000),
            )
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, DtmError::Local { ref source, .. } if source.is_failure()),
        "{err}"
    );
    assert_eq!(
        env.wait_final(&gid).await.transaction.status,
        GlobalStatus::Failed
    );
    assert!(env.calls_of(&gid, "action").is_empty());
    assert_eq!(env.account(A).await, (100, 0, 0));
    env.finish().await;
}

#[tokio::test]
async fn do_and_submit_asks_the_barrier_after_another_error() {
    let env = Env::start("msg_das_err").await;
    let gid = env.new_gid().await;
    let err = msg(&env, &gid)
        .do_and_submit(&env.pool, |tx| {
            Box::pin(async move {
                tx.exec_drop("UPDATE account SET balance = 0 WHERE id = 1", ())
                    .await?;
                Err::<(), _>(BranchError::internal("lost the connection to a cache"))
            })
        })
        .await
        .unwrap_err();
    // Rolled back, so the barrier says "not committed": the message is aborted.
    assert!(
        matches!(err, DtmError::Local { next, .. } if next.contains("aborted")),
        "{err}"
    );
    assert_eq!(
        env.wait_final(&gid).await.transaction.status,
        GlobalStatus::Failed
    );
    assert_eq!(env.account(A).await, (100, 0, 0));
    env.finish().await;
}

#[tokio::test]
async fn query_prepared_decides_a_prepared_message_after_its_timeout() {
    let env = Env::start("msg_qp").await;
    // Committed locally, then the producer "crashed" before submit.
    let committed = env.new_gid().await;
    let m = msg(&env, &committed).timeout_to_fail(Duration::from_secs(1));
    m.prepare().await.unwrap();
    let barrier = BranchBarrier::msg_producer(&committed).with_table(env.table.clone());
    let tx = env.pool.start_transaction(TxOpts::default()).await.unwrap();
    let g = committed.clone();
    barrier
        .call(tx, move |tx| {
            business(
                tx,
                "debit".into(),
                "action".into(),
                g,
                "00".into(),
                transfer(A, 30),
            )
        })
        .await
        .unwrap();
    // Prepared, and the producer died before its local transaction.
    let lost = env.new_gid().await;
    msg(&env, &lost)
        .timeout_to_fail(Duration::from_secs(1))
        .prepare()
        .await
        .unwrap();

    assert_eq!(
        env.wait_final(&committed).await.transaction.status,
        GlobalStatus::Succeed
    );
    assert_eq!(
        env.wait_final(&lost).await.transaction.status,
        GlobalStatus::Failed
    );
    assert!(env.calls_of(&lost, "action").is_empty());
    assert_eq!(env.calls_of(&lost, "msg").len(), 1);
    assert_eq!(env.account(A).await, (70, 0, 0));
    assert_eq!(env.account(B).await, (130, 0, 0));
    env.finish().await;
}
