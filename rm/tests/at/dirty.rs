//! Dirty rollbacks: a row changed outside the global lock after phase one makes the rollback
//! unretryable with a report; the undo log stays until an operator restores the before image
//! or accepts the current data, after which the TC's retry succeeds.

use seata_protocol::BranchStatus;
use seata_rm::at::DirtyResolution;
use seata_tm::context::with_xid;

use crate::harness::TestDb;

const ACCOUNT: &str =
    "CREATE TABLE account_tbl (id INT PRIMARY KEY, user_id VARCHAR(255), money INT)";
const SEED: &str = "INSERT INTO account_tbl VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', 30)";
const XID: &str = "10.0.0.9:8091:4711";

/// Phase one debits rows 1 and 2 (10 → 9, 20 → 19), then someone outside the global lock sets
/// row 2 to 500.
async fn dirty_branch() -> (TestDb, i64, String) {
    let db = TestDb::new(&[ACCOUNT, SEED]).await;
    let mut conn = db.ds.get_conn().await.unwrap();
    with_xid(XID, async {
        conn.query_drop("UPDATE account_tbl SET money = money - 1 WHERE id IN (1, 2)")
            .await
            .unwrap();
    })
    .await;
    drop(conn);
    db.run("UPDATE account_tbl SET money = 500 WHERE id = 2")
        .await;
    let (_, branch) = db.tc.last_branch();
    let rid = db.ds.resource_id().to_string();
    (db, branch, rid)
}

async fn money(db: &TestDb) -> Vec<i64> {
    let rows = db.rows("SELECT money FROM account_tbl ORDER BY id").await;
    rows.iter()
        .map(|r| match &r[0] {
            mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).parse().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// The rollback is refused with a report, touches nothing and keeps the undo log.
async fn refused_with_report(db: &TestDb, branch: i64, rid: &str) {
    let answer = db.rm.branch_rollback_reported(XID, branch, rid).await;
    assert_eq!(
        answer.status,
        BranchStatus::PhaseTwoRollbackFailedUnretryable
    );
    let message = answer.message.expect("a dirty rollback carries a report");
    let summary: serde_json::Value = serde_json::from_str(&message).unwrap();
    assert_eq!(summary["dirty"], "account_tbl");
    assert_eq!(summary["pks"], serde_json::json!(["2"]));
    assert_eq!(summary["more"], 0);
    assert!(message.encode_utf16().count() <= 128, "fits Seata's msg");
    assert_eq!(money(db).await, [9, 500, 30], "nothing undone");
    assert_eq!(db.undo_rows().await, 1, "the undo log stays");
    // Asked again (the TC's retry), the answer is the same.
    assert_eq!(
        db.rm.branch_rollback(XID, branch, rid).await,
        BranchStatus::PhaseTwoRollbackFailedUnretryable
    );

    let report = db.rm.dirty_report(XID, branch, rid).await.unwrap().unwrap();
    assert_eq!((report.xid.as_str(), report.branch_id), (XID, branch));
    assert_eq!(report.resource_id, rid);
    let [row] = report.rows.as_slice() else {
        panic!("one dirty row: {report:?}")
    };
    assert_eq!((row.table.as_str(), row.pk.as_str()), ("account_tbl", "2"));
    let value = |r: &Option<Vec<(String, Option<String>)>>, col: &str| {
        r.as_ref()
            .unwrap()
            .iter()
            .find(|(c, _)| c == col)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(value(&row.before, "money").as_deref(), Some("20"));
    assert_eq!(value(&row.after, "money").as_deref(), Some("19"));
    assert_eq!(value(&row.current, "money").as_deref(), Some("500"));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["rows"][0]["pk"], "2");
}

#[tokio::test]
async fn restoring_the_before_image_undoes_every_row() {
    let (db, branch, rid) = dirty_branch().await;
    refused_with_report(&db, branch, &rid).await;
    let settled = db
        .rm
        .resolve_dirty(XID, branch, &rid, DirtyResolution::RestoreBeforeImage)
        .await
        .unwrap();
    assert!(settled);
    assert_eq!(money(&db).await, [10, 20, 30], "before images written back");
    assert_eq!(db.undo_rows().await, 0);
    assert!(db
        .rm
        .dirty_report(XID, branch, &rid)
        .await
        .unwrap()
        .is_none());
    // The TC's retry now succeeds (and leaves only the defense row).
    assert_eq!(
        db.rm.branch_rollback(XID, branch, &rid).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(money(&db).await, [10, 20, 30]);
    db.cleanup().await;
}

#[tokio::test]
async fn accepting_the_current_data_keeps_every_row() {
    let (db, branch, rid) = dirty_branch().await;
    refused_with_report(&db, branch, &rid).await;
    let settled = db
        .rm
        .resolve_dirty(XID, branch, &rid, DirtyResolution::AcceptCurrent)
        .await
        .unwrap();
    assert!(settled);
    assert_eq!(money(&db).await, [9, 500, 30], "the data stays as it is");
    assert_eq!(db.undo_rows().await, 0, "the undo log is gone");
    assert_eq!(
        db.rm.branch_rollback(XID, branch, &rid).await,
        BranchStatus::PhaseTwoRollbacked
    );
    assert_eq!(money(&db).await, [9, 500, 30]);
    assert!(!db
        .rm
        .resolve_dirty(XID, branch, &rid, DirtyResolution::AcceptCurrent)
        .await
        .unwrap());
    db.cleanup().await;
}
