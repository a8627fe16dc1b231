//! Every supported statement kind through phase one, then phase-two commit or rollback.

use mysql_async::Value;
use seata_protocol::BranchStatus;
use seata_rm::at::undo::UndoCodec;
use seata_tm::context::with_xid;

use crate::harness::TestDb;

const ACCOUNT: &str =
    "CREATE TABLE account_tbl (id INT PRIMARY KEY, user_id VARCHAR(255), money INT)";
const ITEMS: &str =
    "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20), qty INT)";
const XID: &str = "192.168.0.2:8091:2000042948";

async fn commit(db: &TestDb) {
    let (xid, branch) = db.tc.last_branch();
    let rid = db.ds.resource_id().to_string();
    assert_eq!(
        db.rm.branch_commit(&xid, branch, &rid).await,
        BranchStatus::PhaseTwoCommitted
    );
    db.rm.flush_async_commits().await;
    assert_eq!(
        db.undo_rows().await,
        0,
        "phase-two commit deletes the undo log"
    );
}

async fn rollback(db: &TestDb) {
    let (xid, branch) = db.tc.last_branch();
    let rid = db.ds.resource_id().to_string();
    assert_eq!(
        db.rm.branch_rollback(&xid, branch, &rid).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(db.undo_rows().await, 0, "rollback deletes the undo log");
}

#[tokio::test]
async fn update_writes_the_worked_example_undo_log_and_commits() {
    let db = TestDb::new(&[
        ACCOUNT,
        "INSERT INTO account_tbl VALUES (1, 'U100001', 1000)",
    ])
    .await;
    db.tc
        .force_branch_id
        .store(2000042950, std::sync::atomic::Ordering::SeqCst);
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.exec_drop(
            "UPDATE account_tbl SET money = ? WHERE user_id = ?",
            (900, "U100001"),
        )
        .await
        .unwrap();
    })
    .await;
    assert_eq!(conn.affected_rows(), 1);
    assert_eq!(db.tc.lock_keys(), vec!["account_tbl:1"]);
    let (_, branch) = db.tc.last_branch();
    let stored = db
        .rows("SELECT rollback_info, context, log_status FROM undo_log")
        .await;
    let Value::Bytes(info) = &stored[0][0] else {
        panic!()
    };
    let log = UndoCodec::default().decode(info).unwrap();
    assert_eq!(log.branch_id, branch);
    // The exact bytes of at-mode.md 2.4.
    assert_eq!(
        String::from_utf8(info.clone()).unwrap(),
        include_str!("worked_example.json").trim()
    );
    // Text protocol: every value comes back as bytes.
    assert_eq!(stored[0][1], Value::from("serializer=jackson"));
    assert_eq!(stored[0][2], Value::from("0"));
    commit(&db).await;
    assert_eq!(
        db.count("SELECT money FROM account_tbl WHERE id = 1").await,
        900
    );
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn update_with_order_by_limit_rolls_back() {
    let db = TestDb::new(&[
        ACCOUNT,
        "INSERT INTO account_tbl VALUES (1, 'u', 10), (2, 'u', 20), (3, 'u', 30)",
    ])
    .await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.query_drop(
            "UPDATE account_tbl SET money = money + 1 WHERE user_id = 'u' ORDER BY id DESC LIMIT 2",
        )
        .await
        .unwrap();
        assert_eq!(conn.affected_rows(), 2);
    })
    .await;
    assert_eq!(db.tc.lock_keys(), vec!["account_tbl:2,3"]);
    rollback(&db).await;
    assert_eq!(db.count("SELECT SUM(money) FROM account_tbl").await, 60);
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn multi_row_auto_increment_insert_images_every_row() {
    let db = TestDb::new(&[ITEMS, "INSERT INTO items (name) VALUES ('old')"]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.exec_drop(
            "INSERT INTO items (name, qty) VALUES (?, 1), (?, 2), ('c', 3)",
            ("a", "b"),
        )
        .await
        .unwrap();
    })
    .await;
    assert_eq!(conn.last_insert_id(), Some(2));
    assert_eq!(db.tc.lock_keys(), vec!["items:2,3,4"]);
    rollback(&db).await;
    assert_eq!(db.count("SELECT COUNT(*) FROM items").await, 1);
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn insert_with_explicit_keys_commits() {
    let db = TestDb::new(&[ACCOUNT]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.query_drop(
            "INSERT INTO account_tbl (id, user_id, money) VALUES (7, 'x', 1), (8, 'y', 2)",
        )
        .await
        .unwrap();
    })
    .await;
    assert_eq!(db.tc.lock_keys(), vec!["account_tbl:7,8"]);
    commit(&db).await;
    assert_eq!(db.count("SELECT COUNT(*) FROM account_tbl").await, 2);
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn delete_rolls_back_by_reinserting_rows() {
    let db = TestDb::new(&[
        ACCOUNT,
        "INSERT INTO account_tbl VALUES (1, 'a', 10), (2, 'b', NULL), (3, 'c', 30)",
    ])
    .await;
    let before = db.rows("SELECT * FROM account_tbl ORDER BY id").await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.exec_drop("DELETE FROM account_tbl WHERE id >= ?", (2,))
            .await
            .unwrap();
    })
    .await;
    assert_eq!(db.count("SELECT COUNT(*) FROM account_tbl").await, 1);
    assert_eq!(db.tc.lock_keys(), vec!["account_tbl:2,3"]);
    rollback(&db).await;
    assert_eq!(
        db.rows("SELECT * FROM account_tbl ORDER BY id").await,
        before
    );
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn local_transaction_collects_statements_into_one_branch() {
    let db = TestDb::new(&[
        ACCOUNT,
        ITEMS,
        "INSERT INTO account_tbl VALUES (1, 'a', 10)",
    ])
    .await;
    let before = db.rows("SELECT * FROM account_tbl ORDER BY id").await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.begin().await.unwrap();
        conn.query_drop("INSERT INTO account_tbl VALUES (2, 'b', 20)")
            .await
            .unwrap();
        conn.query_drop("UPDATE account_tbl SET money = 99 WHERE id IN (1, 2)")
            .await
            .unwrap();
        conn.query_drop("INSERT INTO items (name) VALUES ('i')")
            .await
            .unwrap();
        conn.query_drop("DELETE FROM account_tbl WHERE id = 1")
            .await
            .unwrap();
        conn.commit().await.unwrap();
    })
    .await;
    assert_eq!(
        db.tc.registered.lock().unwrap().len(),
        1,
        "one branch per local transaction"
    );
    assert_eq!(
        db.tc.lock_keys(),
        vec!["account_tbl:2;account_tbl:1,2;items:1;account_tbl:1"]
    );
    assert_eq!(db.undo_rows().await, 1);
    rollback(&db).await;
    assert_eq!(
        db.rows("SELECT * FROM account_tbl ORDER BY id").await,
        before
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM items").await, 0);
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn sql_transaction_control_is_tracked_and_rollback_discards() {
    let db = TestDb::new(&[ACCOUNT]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.query_drop("START TRANSACTION").await.unwrap();
        conn.query_drop("INSERT INTO account_tbl VALUES (1, 'a', 1)")
            .await
            .unwrap();
        conn.query_drop("ROLLBACK").await.unwrap();
        conn.query_drop("BEGIN").await.unwrap();
        conn.query_drop("INSERT INTO account_tbl VALUES (2, 'b', 2)")
            .await
            .unwrap();
        conn.query_drop("COMMIT").await.unwrap();
    })
    .await;
    assert_eq!(db.tc.lock_keys(), vec!["account_tbl:2"]);
    assert_eq!(db.count("SELECT COUNT(*) FROM account_tbl").await, 1);
    commit(&db).await;
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn composite_primary_keys_lock_and_roll_back() {
    let db = TestDb::new(&[
        "CREATE TABLE stock (sku VARCHAR(10), wh INT, qty INT, PRIMARY KEY (wh, sku))",
        "INSERT INTO stock VALUES ('a', 1, 5), ('b', 1, 6), ('a', 2, 7)",
    ])
    .await;
    let before = db.rows("SELECT * FROM stock ORDER BY wh, sku").await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.begin().await.unwrap();
        conn.query_drop("UPDATE stock SET qty = 0 WHERE sku = 'a'")
            .await
            .unwrap();
        conn.query_drop("DELETE FROM stock WHERE wh = 1 AND sku = 'b'")
            .await
            .unwrap();
        conn.query_drop("INSERT INTO stock VALUES ('c', 3, 1)")
            .await
            .unwrap();
        conn.commit().await.unwrap();
    })
    .await;
    assert_eq!(db.tc.lock_keys(), vec!["stock:1_a,2_a;stock:1_b;stock:3_c"]);
    rollback(&db).await;
    assert_eq!(
        db.rows("SELECT * FROM stock ORDER BY wh, sku").await,
        before
    );
    drop(conn);
    db.cleanup().await;
}

#[tokio::test]
async fn statements_that_change_nothing_register_no_branch() {
    let db = TestDb::new(&[ACCOUNT]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.query_drop("UPDATE account_tbl SET money = 1 WHERE user_id = 'nobody'")
            .await
            .unwrap();
        conn.exec_drop("DELETE FROM account_tbl WHERE money > ?", (5,))
            .await
            .unwrap();
    })
    .await;
    assert!(db.tc.registered.lock().unwrap().is_empty());
    assert_eq!(db.undo_rows().await, 0);
    drop(conn);
    db.cleanup().await;
}

/// A key-only filter registers its rows while the statement runs, before anyone knows the
/// row is missing: the branch holds that key, its undo log is empty, and both phase-two
/// outcomes leave the table alone.
#[tokio::test]
async fn a_key_filter_on_a_missing_row_registers_an_empty_branch() {
    let db = TestDb::new(&[ACCOUNT, "INSERT INTO account_tbl VALUES (1, 'u', 10)"]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    for finish in ["commit", "rollback"] {
        with_xid(XID, async {
            conn.exec_drop("UPDATE account_tbl SET money = 1 WHERE id = ?", (42,))
                .await
                .unwrap();
            assert_eq!(conn.affected_rows(), 0);
        })
        .await;
        assert_eq!(db.tc.lock_keys().last().unwrap(), "account_tbl:42");
        assert_eq!(db.undo_rows().await, 1);
        if finish == "commit" {
            commit(&db).await;
        } else {
            rollback(&db).await;
        }
        assert_eq!(
            db.rows("SELECT * FROM account_tbl").await,
            vec![vec![Value::from("1"), Value::from("u"), Value::from("10")]]
        );
    }
    drop(conn);
    db.cleanup().await;
}
