//! Two TCs on one MySQL store (`--store db`) serving the DTM API: a transaction submitted to
//! one is visible through the other, and when the first is killed the second finishes it
//! once the first's lease has run out.

use seata_it::db_store::TestDb;
use seata_it::dtm::{branch_rows, rows, saga, BranchServer, Dtm, Reply};
use serde_json::json;

use super::race_registrations_with_submit;

/// Lease of the TCs, ms: short, so the survivor takes over quickly.
const LEASE_MS: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_finishes_a_saga_of_a_killed_tc() {
    let db = TestDb::create().await;
    let mut tc1 = db.start_tc(LEASE_MS);
    let tc2 = db.start_tc(LEASE_MS);
    let (d1, d2) = (Dtm::new(&tc1.dtm_url()), Dtm::new(&tc2.dtm_url()));
    let svc = BranchServer::start().await;
    svc.reply("/a2", Reply::status(500));

    let gid = d1.new_gid().await;
    let (a1, c1, a2, c2) = (
        svc.url("/a1"),
        svc.url("/c1"),
        svc.url("/a2"),
        svc.url("/c2"),
    );
    d1.submit(&saga(
        &gid,
        &[(&a1, &c1), (&a2, &c2)],
        &[r#"{"n":1}"#, r#"{"n":2}"#],
        json!({"retry_interval": 1}),
    ))
    .await
    .expect_success();
    svc.wait_calls("/a2", 2).await;
    // One store: the other TC sees the transaction and step 1's success.
    d2.wait_until(&gid, "step 1 succeed, seen through TC2", |q| {
        q["transaction"]["status"] == "submitted"
            && branch_rows(q).contains(&("01".into(), "action".into(), "succeed".into()))
    })
    .await;

    tc1.kill();
    svc.reply("/a2", Reply::ok());
    let q = d2.wait_status(&gid, "succeed").await;
    assert_eq!(svc.calls_to("/a1").len(), 1, "step 1 is not driven again");
    assert!(svc.calls_to("/c1").is_empty() && svc.calls_to("/c2").is_empty());
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "prepared"),
            ("01", "action", "succeed"),
            ("02", "compensate", "prepared"),
            ("02", "action", "succeed"),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_through_one_tc_racing_submit_through_the_other() {
    let db = TestDb::create().await;
    let (tc1, tc2) = (db.start_tc(LEASE_MS), db.start_tc(LEASE_MS));
    let (d1, d2) = (Dtm::new(&tc1.dtm_url()), Dtm::new(&tc2.dtm_url()));
    let svc = BranchServer::start().await;
    // §3.5: the `prepared` check of registerBranch holds across TCs (DTM: SELECT … FOR UPDATE
    // of the global row), so a registration accepted by TC2 is never missed by the submit
    // that TC1 processes.
    for _ in 0..5 {
        let gid = d1.new_gid().await;
        d1.prepare(&json!({"gid": gid, "trans_type": "tcc"}))
            .await
            .expect_success();
        race_registrations_with_submit(&d2, &d1, &svc, &gid).await;
    }
}
