//! Two-phase message (§6.4): branches fixed at prepare, actions after submit (retried, never
//! failed), queryPrepared after `timeout_to_fail`, abort of a prepared msg.

use seata_it::dtm::{branch_rows, msg, rows, Reply};
use serde_json::json;

use super::{assert_branch_call, Env};

const P1: &str = r#"{"user":1,"amount":30}"#;
const P2: &str = r#"{ "user" : 2 , "amount" : 30 }"#;

#[tokio::test]
async fn msg_prepare_then_submit_runs_the_actions() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let (a1, a2, qp) = (env.url("/a1"), env.url("/a2"), env.url("/qp"));
    let body = msg(&gid, &[&a1, &a2], &[P1, P2], &qp, json!({}));
    env.dtm.prepare(&body).await.expect_success();
    let q = env.dtm.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "prepared", "{q:#}");
    // §3.2: msg branch rows exist from prepare on.
    assert_eq!(
        branch_rows(&q),
        rows(&[("01", "action", "prepared"), ("02", "action", "prepared")]),
        "{q:#}"
    );
    assert!(
        env.svc.calls().is_empty(),
        "nothing is called before submit"
    );

    // The Python client sends the same object to prepare and submit (§2.3).
    env.dtm.submit(&body).await.expect_success();
    let q = env.dtm.wait_status(&gid, "succeed").await;
    let calls = env.svc.calls();
    assert_eq!(env.svc.paths(), ["/a1", "/a2"], "actions in step order");
    assert_branch_call(&calls[0], &gid, "msg", ("01", "action"), P1);
    assert_branch_call(&calls[1], &gid, "msg", ("02", "action"), P2);
    assert_eq!(
        branch_rows(&q),
        rows(&[("01", "action", "succeed"), ("02", "action", "succeed")])
    );
}

#[tokio::test]
async fn msg_submit_uses_the_branches_stored_at_prepare() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let (a1, other, qp) = (env.url("/a1"), env.url("/other"), env.url("/qp"));
    env.dtm
        .prepare(&msg(&gid, &[&a1], &[P1], &qp, json!({})))
        .await
        .expect_success();
    // §3.3: for a prepared gid the body's steps are ignored.
    env.dtm
        .submit(&msg(&gid, &[&other], &[P2], &qp, json!({})))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "succeed").await;
    let calls = env.svc.calls();
    assert_eq!(env.svc.paths(), ["/a1"]);
    assert_branch_call(&calls[0], &gid, "msg", ("01", "action"), P1);
}

#[tokio::test]
async fn msg_submitted_without_prepare_runs() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let (a1, qp) = (env.url("/a1"), env.url("/qp"));
    // §3.3: unknown gid → created directly as submitted.
    env.dtm
        .submit(&msg(&gid, &[&a1], &[P1], &qp, json!({})))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(env.svc.paths(), ["/a1"]);
}

#[tokio::test]
async fn msg_action_failure_is_retried_not_final() {
    let env = Env::start().await;
    env.svc
        .replies("/a1", [Reply::failure(), Reply::status(500)]);
    let gid = env.dtm.new_gid().await;
    let (a1, a2, qp) = (env.url("/a1"), env.url("/a2"), env.url("/qp"));
    env.dtm
        .submit(&msg(
            &gid,
            &[&a1, &a2],
            &[P1, P2],
            &qp,
            json!({"retry_interval": 1}),
        ))
        .await
        .expect_success();
    // §6.4: no compensation in msg; any non-success is retried.
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(env.svc.calls_to("/a1").len(), 3);
    assert_eq!(env.svc.calls_to("/a2").len(), 1);
    let a2 = &env.svc.calls_to("/a2")[0];
    assert!(
        env.svc.calls_to("/a1")[2].answered_before(a2),
        "sequential msg: action 2 after action 1 succeeded"
    );
}

#[tokio::test]
async fn prepared_msg_timing_out_asks_query_prepared_and_commits_on_200() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let (a1, a2, qp) = (env.url("/a1"), env.url("/a2"), env.url("/qp"));
    env.dtm
        .prepare(&msg(
            &gid,
            &[&a1, &a2],
            &[P1, P2],
            &qp,
            json!({"timeout_to_fail": 2}),
        ))
        .await
        .expect_success();
    // No submit: the initiator "died". §6.4: after timeout_to_fail, GET queryPrepared.
    let q = env.dtm.wait_status(&gid, "succeed").await;
    let calls = env.svc.calls();
    assert_eq!(env.svc.paths(), ["/qp", "/a1", "/a2"]);
    // §4.1 special call: GET, branch_id 00, op msg, no body.
    assert_branch_call(&calls[0], &gid, "msg", ("00", "msg"), "");
    assert_branch_call(&calls[1], &gid, "msg", ("01", "action"), P1);
    assert_branch_call(&calls[2], &gid, "msg", ("02", "action"), P2);
    assert_eq!(
        branch_rows(&q),
        rows(&[("01", "action", "succeed"), ("02", "action", "succeed")])
    );
}

#[tokio::test]
async fn prepared_msg_timing_out_fails_when_query_prepared_answers_409() {
    let env = Env::start().await;
    env.svc.reply("/qp", Reply::failure());
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
    let q = env.dtm.wait_status(&gid, "failed").await;
    assert_eq!(
        env.svc.paths(),
        ["/qp"],
        "FAILURE → failed, actions never run"
    );
    assert_eq!(branch_rows(&q), rows(&[("01", "action", "prepared")]));
    // Final: a late submit is refused (§6.4).
    env.dtm
        .submit(&msg(&gid, &[&a1], &[P1], &qp, json!({})))
        .await
        .expect_conflict("§6.4: submitting a failed msg");
    assert_eq!(env.svc.paths(), ["/qp"]);
}

#[tokio::test]
async fn prepared_msg_query_prepared_ongoing_asks_again() {
    let env = Env::start().await;
    env.svc
        .replies("/qp", [Reply::ongoing(), Reply::status(500)]);
    let gid = env.dtm.new_gid().await;
    let (a1, qp) = (env.url("/a1"), env.url("/qp"));
    env.dtm
        .prepare(&msg(
            &gid,
            &[&a1],
            &[P1],
            &qp,
            json!({"timeout_to_fail": 1, "retry_interval": 1}),
        ))
        .await
        .expect_success();
    // ONGOING → still prepared; error → backoff; then 200 → submitted and run.
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(env.svc.paths(), ["/qp", "/qp", "/qp", "/a1"]);
}

#[tokio::test]
async fn abort_of_a_prepared_msg_fails_it_without_calls() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let (a1, qp) = (env.url("/a1"), env.url("/qp"));
    let body = msg(&gid, &[&a1], &[P1], &qp, json!({}));
    env.dtm.prepare(&body).await.expect_success();
    env.dtm.abort(&body).await.expect_success();
    // §3.4: prepared msg → failed directly.
    assert_eq!(env.dtm.status(&gid).await.as_deref(), Some("failed"));
    env.dtm
        .submit(&body)
        .await
        .expect_conflict("§6.4: submitting a failed msg");
    assert!(env.svc.calls().is_empty(), "{:?}", env.svc.paths());
}
