//! Refusals, dirty writes, the defense row, global-lock handling and pass-through.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mysql_async::Value;
use seata_protocol::BranchStatus;
use seata_rm::at::{resource_id_of, AtConfig};
use seata_rm::error::RmError;
use seata_tm::context::with_xid;

use crate::harness::TestDb;

const ACCOUNT: &str =
    "CREATE TABLE account_tbl (id INT PRIMARY KEY, user_id VARCHAR(255), money INT)";
const SEED: &str = "INSERT INTO account_tbl VALUES (1, 'a', 10), (2, 'b', 20)";
const XID: &str = "10.0.0.9:8091:77";

#[tokio::test]
async fn dirty_write_fails_unretryable_and_touches_nothing() {
    let db = TestDb::new(&[ACCOUNT, SEED]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.query_drop("UPDATE account_tbl SET money = 11 WHERE id = 1")
            .await
            .unwrap();
    })
    .await;
    // Someone outside the global transaction overwrites the row before phase two.
    db.run("UPDATE account_tbl SET money = 500 WHERE id = 1")
        .await;
    let (xid, branch) = db.tc.last_branch();
    let rid = db.ds.resource_id().to_string();
    assert_eq!(
        db.rm.branch_rollback(&xid, branch, &rid).await,
        BranchStatus::PhaseTwoRollbackFailedUnretryable
    );
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 1").await,
        500
    );
    assert_eq!(db.undo_rows().await, 1, "the undo log stays for a human");
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn unsupported_statements_are_refused_inside_and_pass_outside() {
    let db = TestDb::new(&[
        ACCOUNT,
        SEED,
        "CREATE TABLE no_pk (a INT, b INT)",
        "INSERT INTO no_pk VALUES (1, 1)",
        "CREATE TABLE other (id INT PRIMARY KEY, v INT)",
        "INSERT INTO other VALUES (1, 1)",
    ])
    .await;
    let refused = [
        "INSERT INTO account_tbl (id, money) SELECT 1, 5 FROM other ON DUPLICATE KEY UPDATE money = 5",
        "UPDATE account_tbl, other SET account_tbl.money = 1 WHERE account_tbl.id = other.id",
        "UPDATE account_tbl a JOIN other o ON a.id = o.id SET x.money = 1",
        "INSERT INTO account_tbl (id, money) SELECT id + 10, v FROM other",
        "INSERT INTO account_tbl (id, money) VALUES (UUID_SHORT(), 3)",
        "UPDATE account_tbl SET id = 3 WHERE id = 1",
        "SELECT * FROM account_tbl a JOIN other o ON a.id = o.id FOR UPDATE",
    ];
    let before = db.rows("SELECT * FROM account_tbl ORDER BY id").await;
    let mut conn = db.ds.get_conn().await.unwrap();
    for sql in refused {
        let err = with_xid(XID, conn.query_drop(sql)).await.unwrap_err();
        assert!(matches!(err, RmError::Unsupported { .. }), "{sql}: {err}");
    }
    let err = with_xid(XID, conn.query_drop("UPDATE no_pk SET b = 2"))
        .await
        .unwrap_err();
    assert!(matches!(err, RmError::NoPrimaryKey { .. }), "{err}");
    let err = with_xid(XID, conn.query_drop("DELETE FROM missing WHERE id = 1"))
        .await
        .unwrap_err();
    assert!(matches!(err, RmError::UnknownTable { .. }), "{err}");
    assert_eq!(
        db.rows("SELECT * FROM account_tbl ORDER BY id").await,
        before
    );
    assert_eq!(db.count("SELECT b FROM no_pk").await, 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM other").await, 1);
    assert!(db.tc.registered.lock().unwrap().is_empty());

    // Outside a global transaction the proxy adds nothing.
    conn.query_drop("UPDATE no_pk SET b = 2").await.unwrap();
    conn.query_drop(refused[0]).await.unwrap();
    conn.query_drop(refused[5]).await.unwrap();
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 3").await,
        5
    );
    assert_eq!(db.undo_rows().await, 0);
    assert!(db.tc.registered.lock().unwrap().is_empty());
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn rollback_without_undo_log_writes_the_defense_row_and_blocks_late_phase_one() {
    let db = TestDb::new(&[ACCOUNT, SEED]).await;
    let rid = db.ds.resource_id().to_string();
    let branch = 4242;
    assert_eq!(
        db.rm.branch_rollback(XID, branch, &rid).await,
        BranchStatus::PhaseTwoRollbacked
    );
    let rows = db
        .rows("SELECT log_status, rollback_info, context FROM undo_log")
        .await;
    assert_eq!(
        rows,
        vec![vec![
            Value::from("1"),
            Value::Bytes(b"{}".to_vec()),
            Value::from("serializer=jackson")
        ]]
    );
    // A rollback meeting the defense row again is a no-op success.
    assert_eq!(
        db.rm.branch_rollback(XID, branch, &rid).await,
        BranchStatus::PhaseTwoRollbacked
    );
    // The late phase one gets the same branch id and must not commit.
    db.tc.force_branch_id.store(branch, Ordering::SeqCst);
    let mut conn = db.ds.get_conn().await.unwrap();
    let err = with_xid(XID, conn.query_drop("UPDATE account_tbl SET money = 0"))
        .await
        .unwrap_err();
    assert!(matches!(err, RmError::PhaseOneFailed { .. }), "{err}");
    assert_eq!(db.count("SELECT SUM(money) FROM account_tbl").await, 30);
    assert_eq!(
        db.tc.reports.lock().unwrap().as_slice(),
        &[(XID.to_string(), branch, BranchStatus::PhaseOneFailed)]
    );
    drop(conn);
    db.cleanup().await;
}

fn fast_retries(times: u32) -> AtConfig {
    AtConfig {
        lock_retry_interval: Duration::from_millis(1),
        lock_retry_times: times,
        ..AtConfig::default()
    }
}

#[tokio::test]
async fn lock_conflicts_at_register_rerun_the_statement() {
    let db = TestDb::with_config(&[ACCOUNT, SEED], fast_retries(5)).await;
    db.tc.conflicts.store(2, Ordering::SeqCst);
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(
        XID,
        conn.query_drop("UPDATE account_tbl SET money = money + 1 WHERE id = 1"),
    )
    .await
    .unwrap();
    assert_eq!(db.tc.registered.lock().unwrap().len(), 3);
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 1").await,
        11
    );
    assert_eq!(db.undo_rows().await, 1);

    db.tc.conflicts.store(100, Ordering::SeqCst);
    let err = with_xid(
        XID,
        conn.query_drop("UPDATE account_tbl SET money = 0 WHERE id = 2"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RmError::LockWaitTimeout { .. }), "{err}");
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 2").await,
        20
    );
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn select_for_update_checks_the_global_lock() {
    let db = TestDb::with_config(&[ACCOUNT, SEED], fast_retries(3)).await;
    db.tc.locked_queries.store(2, Ordering::SeqCst);
    let mut conn = db.ds.get_conn().await.unwrap();
    let rows: Vec<(i32, i32)> = with_xid(
        XID,
        conn.exec(
            "SELECT id, money FROM account_tbl WHERE id > ? FOR UPDATE",
            (0,),
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows, vec![(1, 10), (2, 20)]);
    assert_eq!(db.tc.queries.lock().unwrap().len(), 3);
    assert_eq!(db.tc.queries.lock().unwrap()[0].1, "account_tbl:1,2");
    assert!(
        db.tc.registered.lock().unwrap().is_empty(),
        "never registers a branch"
    );

    db.tc.locked_queries.store(100, Ordering::SeqCst);
    with_xid(XID, async {
        conn.begin().await.unwrap();
        let err = conn
            .query::<(i32, i32)>("SELECT id, money FROM account_tbl WHERE id = 1 FOR UPDATE")
            .await
            .unwrap_err();
        assert!(matches!(err, RmError::LockWaitTimeout { .. }), "{err}");
        conn.rollback().await.unwrap();
    })
    .await;
    // Outside a global transaction it is a plain query.
    let n = db.tc.queries.lock().unwrap().len();
    let rows: Vec<(i32, i32)> = conn
        .query("SELECT id, money FROM account_tbl WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(db.tc.queries.lock().unwrap().len(), n);
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn plain_statements_pass_through_in_and_out_of_global_transactions() {
    let db = TestDb::new(&[ACCOUNT, SEED]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    conn.query_drop("UPDATE account_tbl SET money = 1 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 1);
    let n: Option<i64> = with_xid(XID, conn.query_first("SELECT COUNT(*) FROM account_tbl"))
        .await
        .unwrap();
    assert_eq!(n, Some(2));
    with_xid(XID, conn.query_drop("CREATE TABLE t2 (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    assert_eq!(db.undo_rows().await, 0);
    assert!(db.tc.registered.lock().unwrap().is_empty());
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn old_undo_logs_are_deleted_by_age() {
    let db = TestDb::new(&[]).await;
    db.run(
        "INSERT INTO undo_log (branch_id, xid, context, rollback_info, log_status, log_created, \
         log_modified) VALUES (1, 'old', 'serializer=jackson', '{}', 1, now() - INTERVAL 10 DAY, now()), \
         (2, 'new', 'serializer=jackson', '{}', 1, now(), now())",
    )
    .await;
    let rid = db.ds.resource_id().to_string();
    assert_eq!(db.rm.delete_undo_logs_older_than(&rid, 7).await.unwrap(), 1);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM undo_log WHERE xid = 'new'")
            .await,
        1
    );
    assert_eq!(db.undo_rows().await, 1);
    db.cleanup().await;
}

#[test]
fn resource_id_is_the_java_jdbc_url() {
    let opts = mysql_async::Opts::from_url("mysql://root@127.0.0.1:3306/seata_order").unwrap();
    assert_eq!(
        resource_id_of(&opts),
        "jdbc:mysql://127.0.0.1:3306/seata_order"
    );
}

/// A deadlock makes MySQL roll back the victim's whole local transaction: its undo items
/// describe changes that are gone, so committing it must roll back instead of registering a
/// branch and writing an undo log for them.
#[tokio::test]
async fn a_deadlocked_local_transaction_can_only_roll_back() {
    let db = TestDb::new(&[ACCOUNT, SEED]).await;
    let (xa, xb) = ("10.0.0.9:8091:401", "10.0.0.9:8091:402");
    let mut a = db.ds.get_conn().await.unwrap();
    let mut b = db.ds.get_conn().await.unwrap();
    let bump = |id: i32| format!("UPDATE account_tbl SET money = money + 1 WHERE id = {id}");
    for (conn, xid, id) in [(&mut a, xa, 1), (&mut b, xb, 2)] {
        with_xid(xid, async {
            conn.begin().await.unwrap();
            conn.query_drop(bump(id)).await.unwrap();
        })
        .await;
    }
    // Each reaches for the other's row: InnoDB picks a victim.
    let (ra, rb) = tokio::join!(with_xid(xa, a.query_drop(bump(2))), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        with_xid(xb, b.query_drop(bump(1))).await
    });
    let (victim, victim_xid, survivor, survivor_xid, err) = match (ra, rb) {
        (Err(e), Ok(())) => (&mut a, xa, &mut b, xb, e),
        (Ok(()), Err(e)) => (&mut b, xb, &mut a, xa, e),
        other => panic!("expected one deadlock victim, got {other:?}"),
    };
    assert_eq!(err.mysql_code(), Some(1213), "{err}");
    let refused = with_xid(victim_xid, victim.commit()).await.unwrap_err();
    assert!(
        matches!(&refused, RmError::TxState(m) if m.contains("deadlock")),
        "{refused}"
    );
    assert!(db.tc.registered.lock().unwrap().is_empty());
    with_xid(survivor_xid, survivor.commit()).await.unwrap();
    assert_eq!(db.tc.registered.lock().unwrap().len(), 1);
    assert_eq!(db.undo_rows().await, 1);
    assert_eq!(
        db.count("SELECT SUM(money) FROM account_tbl").await,
        32,
        "only the survivor's two updates"
    );
    drop((a, b));
    db.cleanup().await;
}
