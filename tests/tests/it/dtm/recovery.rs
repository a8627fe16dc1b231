//! A DTM transaction survives `kill -9` of the TC (file store): what was acknowledged and what a
//! branch answered is on disk, and the restarted TC carries on from there (§11 "durable before
//! answering").

use seata_it::dtm::{branch_rows, msg, rows, saga, Reply};
use serde_json::json;

use super::Env;

const P1: &str = r#"{"amount":30}"#;
const P2: &str = r#"{"amount":-30}"#;

// Multi-threaded: the harness blocks a thread while the TC restarts, and the branch service
// must keep answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_retried_across_a_kill_finishes_without_redoing_done_steps() {
    let mut env = Env::start_with(&["--store", "file"]).await;
    env.svc.reply("/a2", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    let (a1, c1, a2, c2) = (
        env.url("/a1"),
        env.url("/c1"),
        env.url("/a2"),
        env.url("/c2"),
    );
    env.dtm
        .submit(&saga(
            &gid,
            &[(&a1, &c1), (&a2, &c2)],
            &[P1, P2],
            json!({"retry_interval": 1}),
        ))
        .await
        .expect_success();
    // Step 2 has been retried (a later round than the one where step 1 succeeded), and step
    // 1's success shows.
    env.svc.wait_calls("/a2", 2).await;
    env.dtm
        .wait_until(&gid, "step 1 succeed", |q| {
            branch_rows(q).contains(&("01".into(), "action".into(), "succeed".into()))
        })
        .await;

    env.tc.kill();
    env.svc.reply("/a2", Reply::ok());
    env.tc.restart();

    let q = env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(
        env.svc.calls_to("/a1").len(),
        1,
        "step 1 succeeded and was stored before the kill: not driven again"
    );
    assert!(env.svc.calls_to("/c1").is_empty() && env.svc.calls_to("/c2").is_empty());
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
async fn prepared_tcc_and_its_branches_survive_a_kill() {
    let mut env = Env::start_with(&["--store", "file"]).await;
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&json!({"gid": gid, "trans_type": "tcc", "retry_interval": 1}))
        .await
        .expect_success();
    for id in ["01", "02"] {
        env.dtm
            .register_branch(&json!({
                "gid": gid, "trans_type": "tcc", "branch_id": id, "data": format!("{{\"b\":\"{id}\"}}"),
                "confirm": env.url(&format!("/b{id}/confirm")),
                "cancel": env.url(&format!("/b{id}/cancel")),
            }))
            .await
            .expect_success();
    }
    env.tc.kill();
    env.tc.restart();

    let q = env.dtm.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "prepared", "{q:#}");
    assert_eq!(branch_rows(&q).len(), 4, "{q:#}");
    env.dtm
        .submit(&json!({"gid": gid, "trans_type": "tcc"}))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(env.svc.paths(), ["/b02/confirm", "/b01/confirm"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_msg_is_resolved_by_query_prepared_after_a_kill() {
    let mut env = Env::start_with(&["--store", "file"]).await;
    let gid = env.dtm.new_gid().await;
    let (a1, qp) = (env.url("/a1"), env.url("/qp"));
    env.dtm
        .prepare(&msg(
            &gid,
            &[&a1],
            &[P1],
            &qp,
            json!({"timeout_to_fail": 2}),
        ))
        .await
        .expect_success();
    // The initiator and the TC die; the restarted TC times the msg out and asks (§6.4).
    env.tc.kill();
    env.tc.restart();
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(env.svc.paths(), ["/qp", "/a1"]);
}
