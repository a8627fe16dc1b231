//! What AT mode promises about other writers: a dirty write blocks the rollback instead of
//! being overwritten, two global transactions on one row never lose an update, SELECT FOR
//! UPDATE respects global locks, and outside a global transaction the proxy stays out of the
//! way.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use seata_it::mysql::TestDb;
use seata_rm::at::{AtConfig, AtConnection};
use seata_rm::error::RmError;
use seata_tm::{GlobalStatus, GlobalTx, Propagation, TmError, TxError};
use tokio::sync::oneshot;

use super::{End, Env, INTENDED, TX_TIMEOUT};

const ACCOUNT: &str = "CREATE TABLE account (
    id INT PRIMARY KEY, owner VARCHAR(32) NOT NULL, balance INT NOT NULL)";
const ACCOUNT_ROWS: &str = "INSERT INTO account VALUES (1, 'a', 100), (2, 'b', 200)";

#[tokio::test]
async fn dirty_write_after_phase_one_refuses_the_rollback() {
    let env = Env::start().await;
    let db = TestDb::create("dirty", &[ACCOUNT, ACCOUNT_ROWS]).await;
    let ds = env.data_source(&db, 4).await;
    let mut xid = String::new();
    let result = env
        .tm
        .run("it-at-dirty", TX_TIMEOUT, |ctx| {
            xid = ctx.xid().unwrap_or_default().to_owned();
            async {
                let mut conn = ds.get_conn().await?;
                conn.query_drop("UPDATE account SET balance = balance - 50 WHERE id = 1")
                    .await?;
                // Phase one committed locally; a writer outside any global transaction now
                // overwrites the row (the global lock only binds AT participants).
                db.run("UPDATE account SET balance = 7 WHERE id = 1").await;
                Err::<(), _>(anyhow::anyhow!(INTENDED))
            }
        })
        .await;
    // The RM answers PhaseTwo_RollbackFailed_Unretryable; this TC then ends the transaction
    // in RollbackFailed and keeps its row locks for manual repair (tc coordinator
    // `rollback_failed`).
    match &result {
        Err(TxError::RollbackFailed {
            rollback: TmError::RollbackFailed { status, .. },
            ..
        }) => assert_eq!(*status, GlobalStatus::RollbackFailed),
        other => panic!("expected a failed rollback, got {other:?}"),
    }
    assert!(result
        .unwrap_err()
        .tm()
        .is_some_and(TmError::needs_manual_repair));
    assert_eq!(
        env.tm.status(&xid).await.unwrap(),
        GlobalStatus::RollbackFailed
    );
    let balances: Vec<i32> = db.query("SELECT balance FROM account ORDER BY id").await;
    assert_eq!(balances, [7, 200], "the dirty write is not overwritten");
    assert_eq!(db.undo_rows().await, 1, "the undo log is kept for repair");
    assert!(
        !env.lockable(&ds, "account:1").await,
        "the row stays locked"
    );
    assert!(env.lockable(&ds, "account:2").await);
    env.close(&[&ds]).await;
    db.cleanup().await;
}

/// Adds `amount` to account 1 in one autocommit statement through the proxy.
async fn add(conn: &mut AtConnection, amount: i32) -> Result<(), RmError> {
    conn.exec_drop(
        "UPDATE account SET balance = balance + ? WHERE id = ?",
        (amount, 1),
    )
    .await
}

#[tokio::test]
async fn second_writer_of_a_locked_row_gets_a_lock_conflict_and_loses_nothing() {
    let env = Env::start().await;
    let db = TestDb::create("conflict", &[ACCOUNT, ACCOUNT_ROWS]).await;
    let ds = env.data_source(&db, 8).await;
    let (holds_tx, holds_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    // A: +10, then keeps its global lock until B has tried twice.
    let a = env.global(End::Commit, || async {
        add(&mut ds.get_conn().await?, 10).await?;
        holds_tx.send(()).expect("B waits");
        done_rx.await?;
        Ok(())
    });
    let b = async {
        holds_rx.await.expect("A holds the lock");
        // A user-managed local transaction tries its commit once (at-mode.md 5.3).
        let local = env
            .tm
            .run("it-at-b1", TX_TIMEOUT, |_| async {
                let mut conn = ds.get_conn().await?;
                conn.begin().await?;
                add(&mut conn, 100).await?;
                conn.commit().await
            })
            .await;
        match local {
            Err(TxError::Business(e)) => assert!(e.is_lock_conflict(), "{e}"),
            other => panic!("expected a lock conflict, got {other:?}"),
        }
        // An autocommit statement re-runs until the retry budget is spent.
        let auto = env
            .tm
            .run("it-at-b2", TX_TIMEOUT, |_| async {
                add(&mut ds.get_conn().await?, 1000).await
            })
            .await;
        match auto {
            Err(TxError::Business(e @ RmError::LockWaitTimeout { .. })) => {
                assert!(e.is_retryable(), "{e}")
            }
            other => panic!("expected a lock wait timeout, got {other:?}"),
        }
        done_tx.send(()).expect("A waits");
    };
    let (xid, ()) = tokio::join!(a, b);
    env.assert_phase_two_done(&xid, &db, &ds, "account:1").await;
    // Once A committed, the same increment goes through and builds on A's value.
    let xid = env
        .global(End::Commit, || async {
            add(&mut ds.get_conn().await?, 1000).await?;
            Ok(())
        })
        .await;
    env.assert_phase_two_done(&xid, &db, &ds, "account:1").await;
    assert_eq!(
        db.scalar("SELECT balance FROM account WHERE id = 1").await,
        100 + 10 + 1000
    );
    env.close(&[&ds]).await;
    db.cleanup().await;
}

#[tokio::test]
async fn concurrent_increments_of_one_row_lose_no_update() {
    const WORKERS: i32 = 4;
    const EACH: i32 = 8;
    // A wait budget far above the few ms a global transaction holds the lock here, so
    // conflicts are waited out rather than failed (bounded: 2000 × 10 ms).
    let env = Env::with_config(AtConfig {
        lock_retry_times: 2000,
        ..AtConfig::default()
    })
    .await;
    let db = TestDb::create("counter", &[ACCOUNT, ACCOUNT_ROWS]).await;
    let ds = env.data_source(&db, 8).await;
    let workers = (0..WORKERS).map(|w| {
        let (env, ds) = (&env, &ds);
        async move {
            let mut committed = 0;
            for i in 0..EACH {
                // Distinct amounts: a lost or doubled increment changes the sum.
                let amount = 1 + w * EACH + i;
                let r = env
                    .tm
                    .run("it-at-incr", TX_TIMEOUT, |_| async {
                        add(&mut ds.get_conn().await?, amount).await
                    })
                    .await;
                match r {
                    Ok(()) => committed += amount,
                    Err(TxError::Business(e)) if e.is_retryable() => {}
                    Err(e) => panic!("increment {amount}: {e:?}"),
                }
            }
            committed
        }
    });
    let committed: i32 = futures::future::join_all(workers).await.into_iter().sum();
    assert!(committed > 0, "no increment committed");
    db.wait_undo_empty().await;
    env.wait_lockable(&ds, "account:1").await;
    assert_eq!(
        db.scalar("SELECT balance FROM account WHERE id = 1").await,
        i64::from(100 + committed),
        "final value = initial + every committed increment"
    );
    env.close(&[&ds]).await;
    db.cleanup().await;
}

#[tokio::test]
async fn select_for_update_waits_for_the_global_lock() {
    let env = Env::start().await;
    let db = TestDb::create("sfu_wait", &[ACCOUNT, ACCOUNT_ROWS]).await;
    let ds = env.data_source(&db, 8).await;
    const SFU: &str = "SELECT balance FROM account WHERE id = 1 FOR UPDATE";
    let (holds_tx, holds_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let a = env.global(End::Commit, || async {
        add(&mut ds.get_conn().await?, 5).await?;
        holds_tx.send(()).expect("B waits");
        done_rx.await?;
        Ok(())
    });
    let b = async {
        holds_rx.await.expect("A holds the lock");
        let r = env
            .tm
            .run("it-at-sfu", TX_TIMEOUT, |_| async {
                let mut conn = ds.get_conn().await?;
                // A plain SELECT reads A's phase-one data: global read-uncommitted.
                let dirty: Option<i32> = conn
                    .query_first("SELECT balance FROM account WHERE id = 1")
                    .await?;
                assert_eq!(dirty, Some(105));
                conn.query_first::<i32>(SFU).await
            })
            .await;
        match r {
            Err(TxError::Business(RmError::LockWaitTimeout { lock_keys, .. })) => {
                assert_eq!(lock_keys, "account:1")
            }
            other => panic!("expected a lock wait timeout, got {other:?}"),
        }
        done_tx.send(()).expect("A waits");
    };
    let (xid, ()) = tokio::join!(a, b);
    env.assert_phase_two_done(&xid, &db, &ds, "account:1").await;
    let seen = env
        .tm
        .run("it-at-sfu2", TX_TIMEOUT, |_| async {
            ds.get_conn().await?.query_first::<i32>(SFU).await
        })
        .await
        .expect("the lock is free now");
    assert_eq!(seen, Some(105));
    env.close(&[&ds]).await;
    db.cleanup().await;
}

/// The session's `Com_*` and `Questions` counters.
async fn counters(conn: &mut AtConnection) -> HashMap<String, i64> {
    let rows: Vec<(String, String)> = conn
        .raw()
        .query(
            "SHOW SESSION STATUS WHERE Variable_name LIKE 'Com\\_%' OR Variable_name = 'Questions'",
        )
        .await
        .expect("session status");
    rows.into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect()
}

fn delta(before: &HashMap<String, i64>, after: &HashMap<String, i64>, key: &str) -> i64 {
    after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0)
}

#[tokio::test]
async fn outside_a_global_transaction_statements_pass_through() {
    let env = Env::start().await;
    let db = TestDb::create("plain", &[ACCOUNT, ACCOUNT_ROWS]).await;
    let ds = env.data_source(&db, 4).await;
    let mut conn = ds.get_conn().await.unwrap();

    // Exactly the application's statement reaches the server: no image SELECTs, no
    // transaction control, no undo INSERT.
    let before = counters(&mut conn).await;
    conn.query_drop("UPDATE account SET balance = balance + 1 WHERE id = 1")
        .await
        .unwrap();
    let after = counters(&mut conn).await;
    assert_eq!(delta(&before, &after, "Com_update"), 1);
    for other in [
        "Com_select",
        "Com_insert",
        "Com_begin",
        "Com_commit",
        "Com_delete",
    ] {
        assert_eq!(delta(&before, &after, other), 0, "{other}");
    }
    // The UPDATE and the second SHOW STATUS.
    assert_eq!(delta(&before, &after, "Questions"), 2);

    // Outside a global transaction every statement passes through untouched: those AT mode
    // images specially inside one (ON DUPLICATE KEY UPDATE, REPLACE) and those it refuses
    // there (a key change, a table without a primary key).
    for sql in [
        "INSERT INTO account VALUES (1, 'a', 0) ON DUPLICATE KEY UPDATE balance = balance + 1",
        "REPLACE INTO account VALUES (3, 'c', 300)",
        "UPDATE account SET id = 4 WHERE id = 3",
        "CREATE TABLE no_pk (v INT)",
        "INSERT INTO no_pk VALUES (1), (2)",
        "DELETE FROM no_pk WHERE v = 1",
    ] {
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    conn.exec_drop(
        "INSERT INTO account (id, owner, balance) VALUES (?, ?, ?)",
        (5, "e", 500),
    )
    .await
    .unwrap();
    assert_eq!(conn.affected_rows(), 1);
    let locked: Vec<i32> = conn
        .query("SELECT balance FROM account WHERE id = 2 FOR UPDATE")
        .await
        .unwrap();
    assert_eq!(locked, [200]);

    // Suspended inside a global transaction (NotSupported) it passes through as well.
    let ds_ref = &ds;
    env.global(End::Rollback, || async {
        GlobalTx::new(&env.tm, "it-at-suspended")
            .propagation(Propagation::NotSupported)
            .run(|ctx| async move {
                assert_eq!(ctx.xid(), None);
                let mut c = ds_ref.get_conn().await?;
                c.query_drop("UPDATE account SET balance = 0 WHERE id = 2")
                    .await
            })
            .await?;
        Ok(())
    })
    .await;

    assert_eq!(
        db.undo_rows().await,
        0,
        "no undo log outside a global transaction"
    );
    assert!(
        env.lockable(&ds, "account:1,2,3,4,5").await,
        "no branch, no lock"
    );
    let rows: Vec<(i32, i32)> = db
        .query("SELECT id, balance FROM account ORDER BY id")
        .await;
    assert_eq!(rows, [(1, 102), (2, 0), (4, 300), (5, 500)]);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM no_pk").await, 1);
    drop(conn);
    env.close(&[&ds]).await;
    db.cleanup().await;
}
