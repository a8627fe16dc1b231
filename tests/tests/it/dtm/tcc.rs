//! TCC (§6.5): the initiator prepares, registers each branch and calls its try itself; the TC
//! confirms (submit) or cancels (abort, timeout) in reverse registration order, retrying a
//! second phase until it succeeds.

use seata_it::dtm::{branch_rows, call_branch, rows, trans, Reply};
use serde_json::json;

use super::{assert_branch_call, race_registrations_with_submit, Env};

/// The try body of branch `id`, sent back with confirm and cancel.
fn data(id: &str) -> String {
    format!(r#"{{"branch":"{id}", "amount": 5}}"#)
}

/// registerBranch for branch `id` (URLs `/b<id>/confirm|cancel`), then the try call, as the
/// Go client does (§6.5 step 2: register first).
async fn register_and_try(env: &Env, gid: &str, id: &str) {
    let body = json!({
        "gid": gid,
        "trans_type": "tcc",
        "branch_id": id,
        "data": data(id),
        "confirm": env.url(&format!("/b{id}/confirm")),
        "cancel": env.url(&format!("/b{id}/cancel")),
    });
    env.dtm.register_branch(&body).await.expect_success();
    let try_url = env.url(&format!("/b{id}/try"));
    let params = [
        ("dtm", env.dtm.base()),
        ("gid", gid),
        ("trans_type", "tcc"),
        ("branch_id", id),
        ("op", "try"),
    ];
    assert_eq!(call_branch(&try_url, &params, &data(id)).await, 200);
}

/// Paths of the calls the TC made (the tries are the test's own).
fn tc_paths(env: &Env) -> Vec<String> {
    env.svc
        .paths()
        .into_iter()
        .filter(|p| !p.ends_with("/try"))
        .collect()
}

#[tokio::test]
async fn tcc_submit_confirms_in_reverse_registration_order() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    // Registration order 01, 03, 02: reverse registration order is 02, 03, 01, which is
    // neither branch-id order nor its reverse.
    for id in ["01", "03", "02"] {
        register_and_try(&env, &gid, id).await;
    }
    let q = env.dtm.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "prepared");
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "cancel", "prepared"),
            ("01", "confirm", "prepared"),
            ("03", "cancel", "prepared"),
            ("03", "confirm", "prepared"),
            ("02", "cancel", "prepared"),
            ("02", "confirm", "prepared"),
        ]),
        "§3.5: cancel then confirm per registration; query: {q:#}"
    );

    env.dtm
        .submit(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    let q = env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(
        tc_paths(&env),
        ["/b02/confirm", "/b03/confirm", "/b01/confirm"]
    );
    let confirms: Vec<_> = env
        .svc
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/confirm"))
        .collect();
    for (c, id) in confirms.iter().zip(["02", "03", "01"]) {
        assert_branch_call(c, &gid, "tcc", (id, "confirm"), &data(id));
    }
    assert!(confirms[0].answered_before(&confirms[1]) && confirms[1].answered_before(&confirms[2]));
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "cancel", "prepared"),
            ("01", "confirm", "succeed"),
            ("03", "cancel", "prepared"),
            ("03", "confirm", "succeed"),
            ("02", "cancel", "prepared"),
            ("02", "confirm", "succeed"),
        ])
    );
}

#[tokio::test]
async fn tcc_abort_cancels_in_reverse_registration_order() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    for id in ["01", "02"] {
        register_and_try(&env, &gid, id).await;
    }
    env.dtm
        .abort(&trans(
            &gid,
            "tcc",
            json!({"rollback_reason": "try of 03 refused"}),
        ))
        .await
        .expect_success();
    let q = env.dtm.wait_status(&gid, "failed").await;
    assert_eq!(tc_paths(&env), ["/b02/cancel", "/b01/cancel"]);
    let cancels: Vec<_> = env
        .svc
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/cancel"))
        .collect();
    assert_branch_call(&cancels[0], &gid, "tcc", ("02", "cancel"), &data("02"));
    assert_branch_call(&cancels[1], &gid, "tcc", ("01", "cancel"), &data("01"));
    assert_eq!(
        q["transaction"]["rollback_reason"], "try of 03 refused",
        "§2.3: abort's rollback_reason is stored; query: {q:#}"
    );
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "cancel", "succeed"),
            ("01", "confirm", "prepared"),
            ("02", "cancel", "succeed"),
            ("02", "confirm", "prepared"),
        ])
    );
}

#[tokio::test]
async fn prepared_tcc_timing_out_is_cancelled() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({"timeout_to_fail": 2})))
        .await
        .expect_success();
    for id in ["01", "02"] {
        register_and_try(&env, &gid, id).await;
    }
    // The initiator "died" before submit: §6.5, timeout → aborting → cancels.
    let q = env.dtm.wait_status(&gid, "failed").await;
    assert_eq!(tc_paths(&env), ["/b02/cancel", "/b01/cancel"]);
    assert!(
        !q["transaction"]["rollback_reason"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "a timeout gives a rollback_reason (§6.5); query: {q:#}"
    );
}

#[tokio::test]
async fn tcc_confirm_answering_failure_is_retried_until_it_succeeds() {
    let env = Env::start().await;
    env.svc
        .replies("/b01/confirm", [Reply::failure(), Reply::status(500)]);
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({"retry_interval": 1})))
        .await
        .expect_success();
    register_and_try(&env, &gid, "01").await;
    env.dtm
        .submit(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    // §4.2: a second phase cannot fail; FAILURE is retried like an error.
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(
        tc_paths(&env),
        ["/b01/confirm", "/b01/confirm", "/b01/confirm"]
    );
}

#[tokio::test]
async fn repeated_submit_of_a_submitted_tcc_redrives_the_stored_branches() {
    let env = Env::start().await;
    env.svc.reply("/b01/confirm", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({"retry_interval": 1})))
        .await
        .expect_success();
    for id in ["01", "02"] {
        register_and_try(&env, &gid, id).await;
    }
    env.dtm
        .submit(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    env.svc.wait_calls("/b01/confirm", 1).await;

    // §3.3 "Our server": a repeated submit (body without branches) must not finish the TCC
    // without its remaining confirm, as DTM does.
    env.dtm
        .submit(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    let seen = env.svc.calls_to("/b01/confirm").len();
    env.svc.wait_calls("/b01/confirm", seen + 1).await;
    assert_eq!(
        env.dtm.status(&gid).await.as_deref(),
        Some("submitted"),
        "confirm of 01 has not succeeded yet"
    );

    env.svc.reply("/b01/confirm", Reply::ok());
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(
        env.svc.calls_to("/b02/confirm").len(),
        1,
        "a confirm that succeeded is not re-driven"
    );
}

#[tokio::test]
async fn tcc_wait_result_answers_after_the_round() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({"retry_interval": 1})))
        .await
        .expect_success();
    register_and_try(&env, &gid, "01").await;
    env.dtm
        .submit(&trans(&gid, "tcc", json!({"wait_result": true})))
        .await
        .expect_success();
    // §5.6: 200 means the round finished it.
    assert_eq!(env.dtm.status(&gid).await.as_deref(), Some("succeed"));
    assert_eq!(tc_paths(&env), ["/b01/confirm"]);

    // A confirm being retried: still going, not failed (§5.6 "Our server": 425).
    env.svc.reply("/b01/confirm", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({"retry_interval": 1})))
        .await
        .expect_success();
    register_and_try(&env, &gid, "01").await;
    let a = env
        .dtm
        .submit(&trans(&gid, "tcc", json!({"wait_result": true})))
        .await;
    a.expect_status(425, "§5.6: wait_result while a confirm is retried");
    env.svc.reply("/b01/confirm", Reply::ok());
    env.dtm.wait_status(&gid, "succeed").await;

    // abort with wait_result: a round that finished the rollback answers 200 (§5.6: only a
    // submitted transaction that did not succeed is 409).
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    register_and_try(&env, &gid, "01").await;
    env.dtm
        .abort(&trans(&gid, "tcc", json!({"wait_result": true})))
        .await
        .expect_success();
    assert_eq!(env.dtm.status(&gid).await.as_deref(), Some("failed"));
}

#[tokio::test]
async fn abort_of_an_aborting_tcc_is_accepted_again() {
    let env = Env::start().await;
    env.svc.reply("/b01/cancel", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({"retry_interval": 1})))
        .await
        .expect_success();
    register_and_try(&env, &gid, "01").await;
    env.dtm
        .abort(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    env.svc.wait_calls("/b01/cancel", 1).await;
    assert_eq!(env.dtm.status(&gid).await.as_deref(), Some("aborting"));
    // §3.4, §6.1: aborting → abort again is allowed (re-processed); submit is not.
    env.dtm
        .abort(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    env.dtm
        .submit(&trans(&gid, "tcc", json!({})))
        .await
        .expect_conflict("§3.3: submit of an aborting tcc");
    env.svc.reply("/b01/cancel", Reply::ok());
    env.dtm.wait_status(&gid, "failed").await;
    assert!(env.svc.calls_to("/b01/confirm").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_racing_submit_are_confirmed_or_refused() {
    let env = Env::start().await;
    // A few rounds: the interleavings differ from run to run. `retry_interval` 3600: §5.6, the
    // submit processes right away in the background however busy the gid is; a round left to
    // the cron would show as a timeout.
    for _ in 0..5 {
        let gid = env.dtm.new_gid().await;
        env.dtm
            .prepare(&trans(&gid, "tcc", json!({"retry_interval": 3600})))
            .await
            .expect_success();
        race_registrations_with_submit(&env.dtm, &env.dtm, &env.svc, &gid).await;
    }
}
