//! Saga (§6.3): forward in step order, compensation in reverse of what may have run, answer
//! classification (§4.2), retries, concurrency from `custom_data`, `branch_headers`, and
//! `wait_result` (§5.6).

use seata_it::dtm::{branch_rows, rows, saga, Reply};
use serde_json::json;

use super::{assert_branch_call, Env};

/// Odd spacing and a non-ASCII character: the body must reach the branch byte for byte.
const P1: &str = "{ \"amount\" : 30 ,\"note\":\"zürich\"}";
const P2: &str = r#"{"amount":-30}"#;
const P3: &str = r#"{"amount":7}"#;

#[tokio::test]
async fn saga_commit_calls_actions_in_order_with_payloads_verbatim() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let steps = [
        (env.url("/a1"), env.url("/c1")),
        (env.url("/a2"), env.url("/c2")),
    ];
    let steps: Vec<(&str, &str)> = steps.iter().map(|(a, c)| (&**a, &**c)).collect();
    env.dtm
        .submit(&saga(&gid, &steps, &[P1, P2], json!({})))
        .await
        .expect_success();

    let q = env.dtm.wait_status(&gid, "succeed").await;
    let calls = env.svc.calls();
    assert_eq!(
        env.svc.paths(),
        ["/a1", "/a2"],
        "actions only, in step order"
    );
    assert_branch_call(&calls[0], &gid, "saga", ("01", "action"), P1);
    assert_branch_call(&calls[1], &gid, "saga", ("02", "action"), P2);
    assert!(
        calls[0].answered_before(&calls[1]),
        "sequential saga: action 2 starts only after action 1 answered"
    );
    assert_eq!(q["transaction"]["trans_type"], "saga");
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "prepared"),
            ("01", "action", "succeed"),
            ("02", "compensate", "prepared"),
            ("02", "action", "succeed"),
        ]),
        "§3.6 rows in creation order, §6.2 statuses; query: {q:#}"
    );
}

#[tokio::test]
async fn saga_step_without_payload_is_called_with_get() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let (a1, c1) = (env.url("/a1"), env.url("/c1"));
    env.dtm
        .submit(&saga(&gid, &[(&a1, &c1)], &[""], json!({})))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "succeed").await;
    let calls = env.svc.calls_to("/a1");
    assert_eq!(calls.len(), 1);
    // §4.1: empty body and not xa → GET.
    assert_branch_call(&calls[0], &gid, "saga", ("01", "action"), "");
}

#[tokio::test]
async fn saga_rollback_compensates_failed_and_done_steps_in_reverse() {
    let env = Env::start().await;
    env.svc.reply("/a2", Reply::failure());
    let gid = env.dtm.new_gid().await;
    let urls: Vec<(String, String)> = (1..=3)
        .map(|i| (env.url(&format!("/a{i}")), env.url(&format!("/c{i}"))))
        .collect();
    let steps: Vec<(&str, &str)> = urls.iter().map(|(a, c)| (&**a, &**c)).collect();
    env.dtm
        .submit(&saga(&gid, &steps, &[P1, P2, P3], json!({})))
        .await
        .expect_success();

    let q = env.dtm.wait_status(&gid, "failed").await;
    let calls = env.svc.calls();
    // §6.3 example: A1 → 200, A2 → 409 ⇒ C2, C1; A3/C3 never called.
    assert_eq!(env.svc.paths(), ["/a1", "/a2", "/c2", "/c1"]);
    assert_branch_call(&calls[2], &gid, "saga", ("02", "compensate"), P2);
    assert_branch_call(&calls[3], &gid, "saga", ("01", "compensate"), P1);
    assert!(
        calls[2].answered_before(&calls[3]),
        "C1 only after C2 answered"
    );
    let reason = q["transaction"]["rollback_reason"].as_str().unwrap_or("");
    assert!(
        !reason.is_empty(),
        "rollback_reason holds the failing action's answer (§6.3); query: {q:#}"
    );
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "succeed"),
            ("01", "action", "succeed"),
            ("02", "compensate", "succeed"),
            ("02", "action", "failed"),
            ("03", "compensate", "prepared"),
            ("03", "action", "prepared"),
        ]),
        "§6.3 example's rows; query: {q:#}"
    );
}

#[tokio::test]
async fn saga_action_answering_500_is_retried_until_it_succeeds() {
    let env = Env::start().await;
    env.svc.reply("/a2", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    let (a1, c1, a2, c2) = (
        env.url("/a1"),
        env.url("/c1"),
        env.url("/a2"),
        env.url("/c2"),
    );
    let body = saga(
        &gid,
        &[(&a1, &c1), (&a2, &c2)],
        &[P1, P2],
        json!({"retry_interval": 1}),
    );
    env.dtm.submit(&body).await.expect_success();

    // Two calls: the first failed and was retried.
    env.svc.wait_calls("/a2", 2).await;
    let q = env
        .dtm
        .wait_until(&gid, "retry_count >= 1", |q| {
            q["transaction"]["retry_count"].as_i64().unwrap_or(0) >= 1
        })
        .await;
    assert_eq!(
        q["transaction"]["status"], "submitted",
        "an error is not a failure (§4.2); query: {q:#}"
    );

    env.svc.reply("/a2", Reply::ok());
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(
        env.svc.calls_to("/a1").len(),
        1,
        "a succeeded action is not re-called"
    );
    let a2_calls = env.svc.calls_to("/a2");
    assert!(a2_calls.len() >= 3, "{a2_calls:?}");
    for c in &a2_calls {
        // A retry is the same call again (the barrier relies on it, §8).
        assert_branch_call(c, &gid, "saga", ("02", "action"), P2);
    }
    assert!(env.svc.calls_to("/c1").is_empty() && env.svc.calls_to("/c2").is_empty());
}

#[tokio::test]
async fn saga_action_answering_ongoing_is_retried() {
    let env = Env::start().await;
    // 425, then the legacy form 200 + {"dtm_result":"ONGOING"} (§4.2 rule 2), then 200.
    env.svc.replies(
        "/a1",
        [
            Reply::ongoing(),
            Reply::json(200, r#"{"dtm_result":"ONGOING"}"#),
        ],
    );
    let gid = env.dtm.new_gid().await;
    let (a1, c1) = (env.url("/a1"), env.url("/c1"));
    env.dtm
        .submit(&saga(
            &gid,
            &[(&a1, &c1)],
            &[P1],
            json!({"retry_interval": 1}),
        ))
        .await
        .expect_success();
    let q = env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(
        env.svc.calls_to("/a1").len(),
        3,
        "two ONGOING answers, then success"
    );
    assert!(env.svc.calls_to("/c1").is_empty());
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "prepared"),
            ("01", "action", "succeed")
        ])
    );
}

#[tokio::test]
async fn saga_200_that_merely_mentions_failure_is_success() {
    let env = Env::start().await;
    // §4.2 "Our server": only a top-level dtm_result decides; non-JSON goes by status code.
    env.svc
        .reply("/a1", Reply::json(200, r#"{"msg":"no FAILURE"}"#));
    env.svc
        .reply("/a2", Reply::json(200, "plain text: FAILURE or ONGOING?"));
    let gid = env.dtm.new_gid().await;
    let (a1, c1, a2, c2) = (
        env.url("/a1"),
        env.url("/c1"),
        env.url("/a2"),
        env.url("/c2"),
    );
    env.dtm
        .submit(&saga(&gid, &[(&a1, &c1), (&a2, &c2)], &[P1, P2], json!({})))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(env.svc.paths(), ["/a1", "/a2"]);
}

#[tokio::test]
async fn saga_200_with_dtm_result_failure_rolls_back() {
    let env = Env::start().await;
    env.svc
        .reply("/a1", Reply::json(200, r#"{"dtm_result":"FAILURE"}"#));
    let gid = env.dtm.new_gid().await;
    let (a1, c1, a2, c2) = (
        env.url("/a1"),
        env.url("/c1"),
        env.url("/a2"),
        env.url("/c2"),
    );
    env.dtm
        .submit(&saga(&gid, &[(&a1, &c1), (&a2, &c2)], &[P1, P2], json!({})))
        .await
        .expect_success();
    let q = env.dtm.wait_status(&gid, "failed").await;
    // The failed step's own compensation runs too (§6.3).
    assert_eq!(env.svc.paths(), ["/a1", "/c1"]);
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "succeed"),
            ("01", "action", "failed"),
            ("02", "compensate", "prepared"),
            ("02", "action", "prepared"),
        ])
    );
}

#[tokio::test]
async fn branch_headers_arrive_on_every_branch_call() {
    let env = Env::start().await;
    env.svc.reply("/a2", Reply::failure());
    let gid = env.dtm.new_gid().await;
    let (a1, c1, a2, c2) = (
        env.url("/a1"),
        env.url("/c1"),
        env.url("/a2"),
        env.url("/c2"),
    );
    let body = saga(
        &gid,
        &[(&a1, &c1), (&a2, &c2)],
        &[P1, P2],
        json!({"branch_headers": {"X-Tenant": "t-42", "Authorization": "Bearer abc"}}),
    );
    env.dtm.submit(&body).await.expect_success();
    env.dtm.wait_status(&gid, "failed").await;
    let calls = env.svc.calls();
    assert_eq!(env.svc.paths(), ["/a1", "/a2", "/c2", "/c1"]);
    for c in &calls {
        assert_eq!(
            c.header("x-tenant"),
            Some("t-42"),
            "{} {:?}",
            c.path,
            c.headers
        );
        assert_eq!(
            c.header("authorization"),
            Some("Bearer abc"),
            "{} {:?}",
            c.path,
            c.headers
        );
    }
}

#[tokio::test]
async fn wait_result_answers_200_when_the_saga_succeeded() {
    let env = Env::start().await;
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
            json!({"wait_result": true}),
        ))
        .await
        .expect_success();
    // §5.6: the answer came after the round that finished it.
    assert_eq!(env.svc.paths(), ["/a1", "/a2"]);
    assert_eq!(env.dtm.status(&gid).await.as_deref(), Some("succeed"));
}

#[tokio::test]
async fn wait_result_answers_409_when_a_step_failed() {
    let env = Env::start().await;
    env.svc.reply("/a1", Reply::failure());
    let gid = env.dtm.new_gid().await;
    let (a1, c1) = (env.url("/a1"), env.url("/c1"));
    env.dtm
        .submit(&saga(
            &gid,
            &[(&a1, &c1)],
            &[P1],
            json!({"wait_result": true}),
        ))
        .await
        .expect_conflict("§5.6: a saga that did not succeed in the round");
    env.dtm.wait_status(&gid, "failed").await;
    assert_eq!(env.svc.paths(), ["/a1", "/c1"]);
}

#[tokio::test]
async fn wait_result_answers_425_while_a_step_is_retried() {
    let env = Env::start().await;
    env.svc.reply("/a1", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    let (a1, c1) = (env.url("/a1"), env.url("/c1"));
    let a = env
        .dtm
        .submit(&saga(
            &gid,
            &[(&a1, &c1)],
            &[P1],
            json!({"wait_result": true, "retry_interval": 1}),
        ))
        .await;
    // §5.6 "Our server": still retrying is ONGOING, not FAILURE.
    a.expect_status(
        425,
        "§5.6: wait_result on a saga whose step is being retried",
    );
    assert_eq!(a.dtm_result(), Some("ONGOING"));
    assert_eq!(env.dtm.status(&gid).await.as_deref(), Some("submitted"));

    env.svc.reply("/a1", Reply::ok());
    env.dtm.wait_status(&gid, "succeed").await;
    assert!(env.svc.calls_to("/c1").is_empty());
}

#[tokio::test]
async fn empty_compensate_url_counts_as_compensated() {
    let env = Env::start().await;
    env.svc.reply("/a2", Reply::failure());
    let gid = env.dtm.new_gid().await;
    let (a1, a2, c2) = (env.url("/a1"), env.url("/a2"), env.url("/c2"));
    env.dtm
        .submit(&saga(&gid, &[(&a1, ""), (&a2, &c2)], &[P1, P2], json!({})))
        .await
        .expect_success();
    let q = env.dtm.wait_status(&gid, "failed").await;
    // §4.1: an empty URL is success without a call.
    assert_eq!(env.svc.paths(), ["/a1", "/a2", "/c2"]);
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "succeed"),
            ("01", "action", "succeed"),
            ("02", "compensate", "succeed"),
            ("02", "action", "failed"),
        ])
    );
}

#[tokio::test]
async fn request_timeout_makes_a_slow_answer_an_error() {
    let env = Env::start().await;
    // Every answer of a1 waits for release: the first call must time out (request_timeout 1,
    // §5.4) and be retried while it still hangs.
    env.svc.reply("/a1", Reply::ok().held());
    let gid = env.dtm.new_gid().await;
    let (a1, c1) = (env.url("/a1"), env.url("/c1"));
    env.dtm
        .submit(&saga(
            &gid,
            &[(&a1, &c1)],
            &[P1],
            json!({"request_timeout": 1, "retry_interval": 1}),
        ))
        .await
        .expect_success();
    let calls = env.svc.wait_calls("/a1", 2).await;
    assert!(
        calls[0].answered.is_none(),
        "the retry came while the first call was unanswered"
    );
    assert_eq!(env.dtm.status(&gid).await.as_deref(), Some("submitted"));
    env.svc.release();
    env.dtm.wait_status(&gid, "succeed").await;
    assert!(env.svc.calls_to("/c1").is_empty());
}

#[tokio::test]
async fn saga_timing_out_compensates_the_step_being_retried() {
    let env = Env::start().await;
    env.svc.reply("/a2", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    let urls: Vec<(String, String)> = (1..=3)
        .map(|i| (env.url(&format!("/a{i}")), env.url(&format!("/c{i}"))))
        .collect();
    let steps: Vec<(&str, &str)> = urls.iter().map(|(a, c)| (&**a, &**c)).collect();
    env.dtm
        .submit(&saga(
            &gid,
            &steps,
            &[P1, P2, P3],
            json!({"timeout_to_fail": 2, "retry_interval": 1}),
        ))
        .await
        .expect_success();
    // §6.3: timeout → aborting; step 2 may have run (it was being retried), so it is
    // compensated too, before step 1; step 3 never ran.
    let q = env.dtm.wait_status(&gid, "failed").await;
    let paths = env.svc.paths();
    let backward: Vec<&str> = paths
        .iter()
        .map(String::as_str)
        .filter(|p| p.starts_with("/c"))
        .collect();
    assert_eq!(backward, ["/c2", "/c1"], "{paths:?}");
    assert!(!paths.iter().any(|p| p.ends_with('3')), "{paths:?}");
    assert!(
        !q["transaction"]["rollback_reason"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{q:#}"
    );
    let rows = branch_rows(&q);
    for (id, op, status) in [
        ("01", "compensate", "succeed"),
        ("02", "compensate", "succeed"),
        ("03", "compensate", "prepared"),
        ("03", "action", "prepared"),
    ] {
        assert!(
            rows.contains(&(id.into(), op.into(), status.into())),
            "{id}/{op} {status}; rows {rows:?}"
        );
    }
}

#[tokio::test]
async fn saga_retry_limit_reached_rolls_back() {
    let env = Env::start().await;
    env.svc.reply("/a1", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    let (a1, c1) = (env.url("/a1"), env.url("/c1"));
    env.dtm
        .submit(&saga(
            &gid,
            &[(&a1, &c1)],
            &[P1],
            json!({"retry_limit": 2, "retry_interval": 1}),
        ))
        .await
        .expect_success();
    // §6.3, §7: the first call and retry_limit retries, then aborting.
    let q = env.dtm.wait_status(&gid, "failed").await;
    assert_eq!(env.svc.calls_to("/a1").len(), 3, "{:?}", env.svc.paths());
    assert_eq!(env.svc.calls_to("/c1").len(), 1, "the step may have run");
    assert!(
        !q["transaction"]["rollback_reason"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{q:#}"
    );
}

#[tokio::test]
async fn repeated_submit_of_a_retrying_saga_does_not_redo_done_steps() {
    let env = Env::start().await;
    env.svc.reply("/a2", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    let (a1, c1, a2, c2) = (
        env.url("/a1"),
        env.url("/c1"),
        env.url("/a2"),
        env.url("/c2"),
    );
    let body = saga(
        &gid,
        &[(&a1, &c1), (&a2, &c2)],
        &[P1, P2],
        json!({"retry_interval": 1}),
    );
    env.dtm.submit(&body).await.expect_success();
    env.svc.wait_calls("/a2", 1).await;
    // §3.3 "Our server": re-drive from the stored state, not from the request's copy.
    env.dtm.submit(&body).await.expect_success();
    let seen = env.svc.calls_to("/a2").len();
    env.svc.wait_calls("/a2", seen + 1).await;
    env.svc.reply("/a2", Reply::ok());
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(env.svc.calls_to("/a1").len(), 1, "{:?}", env.svc.paths());
}

#[tokio::test]
async fn legacy_step_data_is_the_body() {
    let env = Env::start().await;
    env.svc.reply("/a2", Reply::failure());
    let gid = env.dtm.new_gid().await;
    // §2.3: legacy clients put each step's body in the step's "data", without payloads.
    let body = json!({
        "gid": gid,
        "trans_type": "saga",
        "steps": [
            {"action": env.url("/a1"), "compensate": env.url("/c1"), "data": P1},
            {"action": env.url("/a2"), "compensate": env.url("/c2"), "data": P2},
        ],
    });
    env.dtm.submit(&body).await.expect_success();
    env.dtm.wait_status(&gid, "failed").await;
    let calls = env.svc.calls();
    assert_eq!(env.svc.paths(), ["/a1", "/a2", "/c2", "/c1"]);
    assert_branch_call(&calls[0], &gid, "saga", ("01", "action"), P1);
    assert_branch_call(&calls[1], &gid, "saga", ("02", "action"), P2);
    assert_branch_call(&calls[2], &gid, "saga", ("02", "compensate"), P2);
    assert_branch_call(&calls[3], &gid, "saga", ("01", "compensate"), P1);
}
