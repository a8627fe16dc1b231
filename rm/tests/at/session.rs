//! What the proxy remembers about its MySQL session to save round trips: the statement count
//! of a warm global UPDATE, autocommit between global and pass-through statements, the current
//! database after `USE` (imaging only in the resource's database), the session's `auto_increment_increment`, and the branch registered
//! while an UPDATE runs.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{OptsBuilder, Pool, PoolConstraints, PoolOpts};
use seata_protocol::BranchStatus;
use seata_rm::at::AtConnection;
use seata_rm::error::RmError;
use seata_tm::context::with_xid;

use crate::harness::TestDb;

const ACCOUNT: &str =
    "CREATE TABLE account_tbl (id INT PRIMARY KEY, user_id VARCHAR(255), money INT)";
const SEED: &str = "INSERT INTO account_tbl VALUES (1, 'a', 10), (2, 'b', 20)";
const ITEMS: &str =
    "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20), qty INT)";
const XID: &str = "10.0.0.9:8091:501";

/// The session's `Com_*` and `Questions` counters, read through the proxy: a pass-through SHOW
/// leaves what the proxy knows about the session untouched (`raw()` would not).
async fn counters(conn: &mut AtConnection) -> HashMap<String, i64> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SHOW SESSION STATUS WHERE Variable_name LIKE 'Com\\_%' OR Variable_name = 'Questions'",
        )
        .await
        .unwrap();
    rows.into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect()
}

fn delta(before: &HashMap<String, i64>, after: &HashMap<String, i64>, key: &str) -> i64 {
    after.get(key).copied().unwrap_or(0) - before.get(key).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_warm_global_update_sends_four_statements_none_prepared() {
    let db = TestDb::new(&[ACCOUNT, SEED]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    let update = "UPDATE account_tbl SET money = money + ? WHERE id = ?";
    // The first one loads metadata, prepares the image statements and turns autocommit off.
    with_xid(XID, conn.exec_drop(update, (1, 1))).await.unwrap();
    for _ in 0..2 {
        let before = counters(&mut conn).await;
        with_xid(XID, conn.exec_drop(update, (1, 1))).await.unwrap();
        let after = counters(&mut conn).await;
        // Before image and UPDATE in one text query (`money + ?` gives the after image),
        // then the undo_log INSERT with the COMMIT, and the second SHOW: no START TRANSACTION,
        // no SELECT DATABASE(), no SET, no after-image read and no prepared statement (each
        // would be a round trip of its own).
        assert_eq!(delta(&before, &after, "Questions"), 5, "{after:?}");
        assert_eq!(delta(&before, &after, "Com_stmt_execute"), 0);
        assert_eq!(delta(&before, &after, "Com_select"), 1);
        assert_eq!(delta(&before, &after, "Com_update"), 1);
        assert_eq!(delta(&before, &after, "Com_insert"), 1);
        assert_eq!(delta(&before, &after, "Com_commit"), 1);
        for none in ["Com_begin", "Com_set_option", "Com_stmt_prepare"] {
            assert_eq!(delta(&before, &after, none), 0, "{none}");
        }
    }
    assert_eq!(db.tc.lock_keys(), vec!["account_tbl:1"; 3]);
    assert_eq!(db.undo_rows().await, 3);
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 1").await,
        13
    );
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn pass_through_statements_autocommit_between_global_ones() {
    let db = TestDb::new(&[ACCOUNT, SEED]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    for round in 0..3 {
        with_xid(
            XID,
            conn.query_drop("UPDATE account_tbl SET money = money + 1 WHERE id = 1"),
        )
        .await
        .unwrap();
        // Outside the global transaction the next statement commits on its own, as on a plain
        // connection: another session sees it at once.
        conn.exec_drop(
            "UPDATE account_tbl SET money = ? WHERE id = 2",
            (100 + round,),
        )
        .await
        .unwrap();
        assert_eq!(
            db.count("SELECT money FROM account_tbl WHERE id = 2").await,
            100 + round
        );
        let autocommit: Option<i64> = conn.query_first("SELECT @@autocommit").await.unwrap();
        assert_eq!(autocommit, Some(1));
    }
    // A plain statement inside the global transaction, outside a local one, autocommits too.
    with_xid(
        XID,
        conn.query_drop("UPDATE account_tbl SET money = money + 1 WHERE id = 1"),
    )
    .await
    .unwrap();
    with_xid(XID, conn.query_drop("CREATE TABLE t2 (id INT PRIMARY KEY)"))
        .await
        .unwrap();
    let autocommit: Option<i64> = with_xid(XID, conn.query_first("SELECT @@autocommit"))
        .await
        .unwrap();
    assert_eq!(autocommit, Some(1));
    // A local transaction the application opens after a global statement still rolls back.
    conn.begin().await.unwrap();
    conn.query_drop("UPDATE account_tbl SET money = 0 WHERE id = 2")
        .await
        .unwrap();
    conn.rollback().await.unwrap();
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 2").await,
        102
    );
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 1").await,
        14
    );
    assert_eq!(db.undo_rows().await, 4);
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn use_inside_a_session_is_followed() {
    let db = TestDb::new(&[ACCOUNT, SEED]).await;
    let other = TestDb::new(&[ACCOUNT, SEED]).await;
    // One pooled connection, so every checkout gets the same session back.
    let opts: mysql_async::Opts = OptsBuilder::from_opts(db.opts())
        .pool_opts(PoolOpts::default().with_constraints(PoolConstraints::new(1, 1).unwrap()))
        .into();
    let ds = db.rm.data_source_with_pool(Pool::new(opts.clone()), &opts);
    let update = "UPDATE account_tbl SET money = money + 1 WHERE id = 1";
    let refused = |e: &RmError| matches!(e, RmError::Unsupported { .. });

    // In another database the undo log would land where phase two never looks: refused,
    // before anything runs.
    let mut conn = ds.get_conn().await.unwrap();
    conn.query_drop(format!("USE `{}`", other.name))
        .await
        .unwrap();
    let err = with_xid(XID, conn.query_drop(update)).await.unwrap_err();
    assert!(refused(&err), "{err}");

    // The pool's session reset keeps the current database: the next checkout knows it.
    drop(conn);
    let mut conn = ds.get_conn().await.unwrap();
    let err = with_xid(XID, conn.query_drop(update)).await.unwrap_err();
    assert!(refused(&err), "{err}");

    // Back in the resource's database, by name: no SELECT DATABASE() needed.
    conn.query_drop(format!("USE `{}`", db.name)).await.unwrap();
    with_xid(XID, conn.query_drop(update)).await.unwrap();
    let before = counters(&mut conn).await;
    with_xid(XID, conn.query_drop(update)).await.unwrap();
    let after = counters(&mut conn).await;
    // The before image only: `money = money + 1` gives the after image.
    assert_eq!(delta(&before, &after, "Com_select"), 1);

    // A USE the proxy cannot see: taking raw() makes it ask the server again.
    conn.raw()
        .query_drop(format!("USE `{}`", other.name))
        .await
        .unwrap();
    let err = with_xid(XID, conn.query_drop(update)).await.unwrap_err();
    assert!(refused(&err), "{err}");
    conn.raw()
        .query_drop(format!("USE `{}`", db.name))
        .await
        .unwrap();
    with_xid(XID, conn.query_drop(update)).await.unwrap();

    assert_eq!(db.tc.lock_keys(), vec!["account_tbl:1"; 3]);
    assert_eq!(db.undo_rows().await, 3);
    assert_eq!(other.undo_rows().await, 0);
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 1").await,
        13
    );
    assert_eq!(
        other
            .count("SELECT money FROM account_tbl WHERE id = 1")
            .await,
        10
    );
    drop(conn);
    ds.pool().clone().disconnect().await.unwrap();
    other.cleanup().await;
    db.cleanup().await;
}

#[tokio::test]
async fn multi_row_inserts_follow_the_session_auto_increment_increment() {
    let db = TestDb::new(&[ITEMS]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    let batched = "INSERT INTO items (name) VALUES ('a'), ('b')";
    with_xid(XID, conn.query_drop(batched)).await.unwrap();
    conn.query_drop("SET SESSION auto_increment_increment = 5")
        .await
        .unwrap();
    // Batched: MySQL numbers the rows it reads back (LAST_INSERT_ID() + i * increment). The
    // first one also turns autocommit off again after the pass-through SET.
    with_xid(XID, conn.query_drop(batched)).await.unwrap();
    let before = counters(&mut conn).await;
    with_xid(XID, conn.query_drop(batched)).await.unwrap();
    let after = counters(&mut conn).await;
    // INSERT with the read of its rows, undo_log INSERT with COMMIT, and the second SHOW.
    assert_eq!(delta(&before, &after, "Questions"), 5, "{after:?}");
    assert_eq!(delta(&before, &after, "Com_select"), 1);
    assert_eq!(delta(&before, &after, "Com_stmt_execute"), 0);
    // Not batched (no literal for `é`): the increment is read once per connection.
    let prepared = "INSERT INTO items (name) VALUES (?), (?)";
    for selects in [2, 1] {
        let before = counters(&mut conn).await;
        with_xid(XID, conn.exec_drop(prepared, ("é", "è")))
            .await
            .unwrap();
        let after = counters(&mut conn).await;
        assert_eq!(delta(&before, &after, "Com_select"), selects);
    }
    assert_eq!(
        db.tc.lock_keys(),
        vec![
            "items:1,2",
            "items:6,11",
            "items:16,21",
            "items:26,31",
            "items:36,41"
        ]
    );
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn an_update_failing_after_its_branch_registered_reports_phase_one_failed() {
    let db = TestDb::new(&[ACCOUNT, SEED]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    // The before image finds the row, so the branch registers while the UPDATE runs; strict
    // mode then refuses the value.
    let err = with_xid(
        XID,
        conn.query_drop("UPDATE account_tbl SET money = 'abc' WHERE id = 1"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RmError::Mysql(_)), "{err}");
    let (xid, branch) = db.tc.last_branch();
    assert_eq!(
        db.tc.reports.lock().unwrap().as_slice(),
        &[(xid, branch, BranchStatus::PhaseOneFailed)]
    );
    assert_eq!(db.undo_rows().await, 0);
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 1").await,
        10
    );
    // The connection is usable afterwards.
    with_xid(
        XID,
        conn.query_drop("UPDATE account_tbl SET money = 11 WHERE id = 1"),
    )
    .await
    .unwrap();
    assert_eq!(db.undo_rows().await, 1);
    drop(conn);
    db.cleanup().await;
}
