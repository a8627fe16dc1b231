//! The barrier against MariaDB, called directly the way the server would call a handler
//! (spec §8.2–§8.4): duplicates, null compensation, hanging, concurrent calls, rollback,
//! queryPrepared and cleanup.

use std::time::Duration;

use mysql_async::TxOpts;
use seata_dtm::{
    cleanup_barriers, query_prepared, BarrierOutcome, BranchBarrier, BranchError, BranchParams,
};

use crate::harness::{bank_db, business, business_runs, transfer, A};

fn params(trans_type: &str, gid: &str, op: &str) -> BranchParams {
    BranchParams {
        gid: gid.into(),
        trans_type: trans_type.into(),
        branch_id: "01".into(),
        op: op.into(),
        dtm: None,
        phase2_url: None,
    }
}

/// One call of the debit branch of `gid` with `op`, as a fresh handler would make it.
async fn call(
    pool: &mysql_async::Pool,
    table: &seata_dtm::BarrierTable,
    trans_type: &str,
    gid: &str,
    op: &str,
) -> Result<BarrierOutcome<()>, BranchError> {
    let barrier = BranchBarrier::new(params(trans_type, gid, op)).with_table(table.clone());
    let (g, o) = (gid.to_owned(), op.to_owned());
    barrier
        .call_with_pool(pool, move |tx| {
            business(tx, "debit".into(), o, g, "01".into(), transfer(A, 10))
        })
        .await
}

async fn barrier_rows(db: &seata_it::mysql::TestDb, gid: &str) -> Vec<(String, String)> {
    db.query(&format!(
        "SELECT op, reason FROM barrier WHERE gid = '{gid}' ORDER BY id"
    ))
    .await
}

#[tokio::test]
async fn a_duplicate_action_is_a_noop() {
    let (db, pool, table) = bank_db("bar_dup").await;
    let first = call(&pool, &table, "saga", "g1", "action").await.unwrap();
    let again = call(&pool, &table, "saga", "g1", "action").await.unwrap();
    assert_eq!(first, BarrierOutcome::Ran(()));
    assert_eq!(again, BarrierOutcome::DuplicateOrHanging);
    assert_eq!(business_runs(&db, "g1", "action", "debit").await, 1);
    assert_eq!(
        db.scalar("SELECT balance FROM account WHERE id = 1").await,
        90
    );
    pool.disconnect().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn a_null_compensation_skips_the_business_and_records_the_action() {
    let (db, pool, table) = bank_db("bar_null").await;
    let out = call(&pool, &table, "saga", "g1", "compensate")
        .await
        .unwrap();
    assert_eq!(out, BarrierOutcome::NullCompensation);
    assert_eq!(business_runs(&db, "g1", "compensate", "debit").await, 0);
    assert_eq!(
        db.scalar("SELECT balance FROM account WHERE id = 1").await,
        100
    );
    // The action's row exists, written by the compensation (§8.3).
    assert_eq!(
        barrier_rows(&db, "g1").await,
        [
            ("action".to_owned(), "compensate".to_owned()),
            ("compensate".to_owned(), "compensate".to_owned())
        ]
    );
    // So the late action is refused (hanging).
    let late = call(&pool, &table, "saga", "g1", "action").await.unwrap();
    assert_eq!(late, BarrierOutcome::DuplicateOrHanging);
    assert_eq!(business_runs(&db, "g1", "action", "debit").await, 0);
    pool.disconnect().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn a_late_try_after_its_cancel_is_refused() {
    let (db, pool, table) = bank_db("bar_hang").await;
    let cancel = call(&pool, &table, "tcc", "g1", "cancel").await.unwrap();
    assert_eq!(cancel, BarrierOutcome::NullCompensation);
    let late_try = call(&pool, &table, "tcc", "g1", "try").await.unwrap();
    assert_eq!(late_try, BarrierOutcome::DuplicateOrHanging);
    assert_eq!(business_runs(&db, "g1", "try", "debit").await, 0);
    let rows: Vec<(i64, i64)> = db
        .query("SELECT balance, frozen FROM account WHERE id = 1")
        .await;
    assert_eq!(rows, [(100, 0)], "nothing reserved");
    pool.disconnect().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn a_repeated_cancel_is_a_noop() {
    let (db, pool, table) = bank_db("bar_cancel2").await;
    assert_eq!(
        call(&pool, &table, "tcc", "g1", "try").await.unwrap(),
        BarrierOutcome::Ran(())
    );
    assert_eq!(
        call(&pool, &table, "tcc", "g1", "cancel").await.unwrap(),
        BarrierOutcome::Ran(())
    );
    assert_eq!(
        call(&pool, &table, "tcc", "g1", "cancel").await.unwrap(),
        BarrierOutcome::DuplicateOrHanging
    );
    assert_eq!(business_runs(&db, "g1", "cancel", "debit").await, 1);
    let rows: Vec<(i64, i64)> = db
        .query("SELECT balance, frozen FROM account WHERE id = 1")
        .await;
    assert_eq!(rows, [(100, 0)]);
    pool.disconnect().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn concurrent_calls_of_one_branch_run_the_business_once() {
    let (db, pool, table) = bank_db("bar_conc").await;
    const N: usize = 12;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let (pool, table, start) = (pool.clone(), table.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                call(&pool, &table, "saga", "g1", "action").await
            })
        })
        .collect();
    let mut ran = 0;
    for t in tasks {
        // A loser may see a deadlock error from InnoDB (then the server would retry it); it
        // must never run the business a second time.
        if let Ok(BarrierOutcome::Ran(())) = t.await.unwrap() {
            ran += 1;
        }
    }
    assert_eq!(ran, 1);
    assert_eq!(business_runs(&db, "g1", "action", "debit").await, 1);
    assert_eq!(
        db.scalar("SELECT balance FROM account WHERE id = 1").await,
        90
    );
    pool.disconnect().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn a_failed_business_leaves_no_barrier_row_so_the_retry_runs_it() {
    let (db, pool, table) = bank_db("bar_retry").await;
    let barrier = BranchBarrier::new(params("saga", "g1", "action")).with_table(table.clone());
    let err = barrier
        .call_with_pool(&pool, |_tx| {
            Box::pin(async { Err::<(), _>(BranchError::internal("database hiccup")) })
        })
        .await
        .unwrap_err();
    assert_eq!(err, BranchError::internal("database hiccup"));
    assert!(barrier_rows(&db, "g1").await.is_empty());
    let retry = call(&pool, &table, "saga", "g1", "action").await.unwrap();
    assert_eq!(retry, BarrierOutcome::Ran(()));
    pool.disconnect().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn one_handler_may_guard_several_local_transactions() {
    let (db, pool, table) = bank_db("bar_multi").await;
    let barrier = BranchBarrier::new(params("saga", "g1", "action")).with_table(table.clone());
    for _ in 0..2 {
        let out = barrier
            .call_with_pool(&pool, |_tx| Box::pin(async { Ok(()) }))
            .await
            .unwrap();
        assert_eq!(out, BarrierOutcome::Ran(()));
    }
    let ids: Vec<String> = db
        .query("SELECT barrier_id FROM barrier WHERE gid = 'g1' ORDER BY id")
        .await;
    assert_eq!(ids, ["01", "02"]);
    pool.disconnect().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn query_prepared_answers_from_the_producer_row() {
    let (db, pool, table) = bank_db("bar_qp").await;
    // Committed producer → success.
    let producer = BranchBarrier::msg_producer("done").with_table(table.clone());
    let tx = pool.start_transaction(TxOpts::default()).await.unwrap();
    let out = producer
        .call(tx, |_tx| Box::pin(async { Ok(()) }))
        .await
        .unwrap();
    assert_eq!(out, BarrierOutcome::Ran(()));
    query_prepared(&pool, &table, "done").await.unwrap();
    // No producer row → FAILURE, and the producer arriving later is refused.
    let err = query_prepared(&pool, &table, "lost").await.unwrap_err();
    assert!(err.is_failure(), "{err}");
    let late = BranchBarrier::msg_producer("lost").with_table(table.clone());
    let out = late
        .call_with_pool(&pool, |_tx| Box::pin(async { Ok(()) }))
        .await
        .unwrap();
    assert_eq!(out, BarrierOutcome::DuplicateOrHanging);
    // Asking again gives the same answer.
    assert!(query_prepared(&pool, &table, "lost")
        .await
        .unwrap_err()
        .is_failure());
    pool.disconnect().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn cleanup_deletes_only_old_rows_in_batches() {
    let (db, pool, table) = bank_db("bar_clean").await;
    for i in 0..5 {
        db.run(&format!(
            "INSERT INTO barrier (trans_type, gid, branch_id, op, barrier_id, reason, \
             create_time) VALUES ('saga', 'old{i}', '01', 'action', '01', 'action', \
             NOW() - INTERVAL 2 DAY)"
        ))
        .await;
    }
    call(&pool, &table, "saga", "fresh", "action")
        .await
        .unwrap();
    let deleted = cleanup_barriers(&pool, &table, Duration::from_secs(86_400), 2)
        .await
        .unwrap();
    assert_eq!(deleted, 5);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM barrier").await, 1);
    pool.disconnect().await.unwrap();
    db.cleanup().await;
}
