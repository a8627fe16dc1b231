//! The API itself (§2, §3): the conflict answers of every endpoint, the `query` shape, the
//! small endpoints, what real clients send. Every answer is also checked against the §2.2
//! envelope by the client (never 200 with FAILURE; 409/425/500 bodies).

use base64::Engine;
use seata_it::dtm::{branch_rows, msg, rows, trans, Reply};
use serde_json::{json, Value};

use super::{one_step_saga, tcc_branch, Env};

#[tokio::test]
async fn prepare_is_idempotent_while_prepared_and_409_after() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let body = trans(&gid, "tcc", json!({}));
    env.dtm.prepare(&body).await.expect_success();
    // §3.2: same gid while prepared → 200, nothing changes.
    env.dtm.prepare(&body).await.expect_success();
    assert_eq!(env.dtm.status(&gid).await.as_deref(), Some("prepared"));

    let saga_gid = env.dtm.new_gid().await;
    env.dtm
        .submit(&one_step_saga(&env, &saga_gid, json!({})))
        .await
        .expect_success();
    env.dtm
        .prepare(&trans(&saga_gid, "saga", json!({})))
        .await
        .expect_conflict("§3.2: prepare of a gid that is not prepared");
}

#[tokio::test]
async fn submit_of_a_finished_transaction_is_409() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let body = one_step_saga(&env, &gid, json!({}));
    env.dtm.submit(&body).await.expect_success();
    env.dtm.wait_status(&gid, "succeed").await;
    env.dtm
        .submit(&body)
        .await
        .expect_conflict("§3.3: submit of a succeed saga");
    assert_eq!(env.svc.calls_to("/a1").len(), 1, "not processed again");

    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    env.dtm
        .abort(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "failed").await;
    env.dtm
        .submit(&trans(&gid, "tcc", json!({})))
        .await
        .expect_conflict("§3.3: submit of a failed tcc");
}

#[tokio::test]
async fn abort_conflicts() {
    let env = Env::start().await;
    // A saga kept submitted by a retried step.
    env.svc.reply("/a1", Reply::status(500));
    let gid = env.dtm.new_gid().await;
    env.dtm
        .submit(&one_step_saga(&env, &gid, json!({"retry_interval": 1})))
        .await
        .expect_success();
    env.dtm
        .abort(&trans(&gid, "saga", json!({})))
        .await
        .expect_conflict("§3.4: abort of a saga");
    // §3.4 "Our server": the stored type decides, not the request's.
    env.dtm
        .abort(&trans(&gid, "tcc", json!({})))
        .await
        .expect_conflict("§3.4: abort of a stored saga that claims to be tcc");
    assert_eq!(env.dtm.status(&gid).await.as_deref(), Some("submitted"));
    assert!(env.svc.calls_to("/c1").is_empty(), "no compensation");

    let unknown = env.dtm.new_gid().await;
    let a = env.dtm.abort(&trans(&unknown, "tcc", json!({}))).await;
    a.expect_status(500, "§3.4: abort of an unknown gid");

    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    env.dtm
        .submit(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "succeed").await;
    env.dtm
        .abort(&trans(&gid, "tcc", json!({})))
        .await
        .expect_conflict("§3.4: abort of a succeed tcc");
}

#[tokio::test]
async fn register_branch_conflicts() {
    let env = Env::start().await;
    // Unknown gid → 409 (§3.5).
    let unknown = env.dtm.new_gid().await;
    env.dtm
        .register_branch(&tcc_branch(&env, &unknown, "01", "{}"))
        .await
        .expect_conflict("§3.5: registerBranch of an unknown gid");
    assert!(env.dtm.query(&unknown).await["transaction"].is_null());

    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    let first = tcc_branch(&env, &gid, "01", r#"{"n":1}"#);
    env.dtm.register_branch(&first).await.expect_success();
    // §3.5 "Our server": identical again → 200, differing → 409.
    env.dtm.register_branch(&first).await.expect_success();
    env.dtm
        .register_branch(&tcc_branch(&env, &gid, "01", r#"{"n":2}"#))
        .await
        .expect_conflict("§3.5: the same branch registered with other data");
    let q = env.dtm.query(&gid).await;
    assert_eq!(
        branch_rows(&q),
        rows(&[("01", "cancel", "prepared"), ("01", "confirm", "prepared")]),
        "{q:#}"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(r#"{"n":1}"#);
    assert!(
        q["branches"]
            .as_array()
            .is_some_and(|bs| bs.iter().all(|b| b["bin_data"] == b64.as_str())),
        "the first registration's data is kept; query: {q:#}"
    );

    // Not prepared any more → 409.
    env.dtm
        .submit(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    env.dtm
        .register_branch(&tcc_branch(&env, &gid, "02", "{}"))
        .await
        .expect_conflict("§3.5: registerBranch on a submitted tcc");
    env.dtm.wait_status(&gid, "succeed").await;
    env.dtm
        .register_branch(&tcc_branch(&env, &gid, "03", "{}"))
        .await
        .expect_conflict("§3.5: registerBranch on a succeed tcc");
    assert_eq!(env.svc.paths(), ["/b01/confirm"]);
}

#[tokio::test]
async fn register_branch_aliases() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    // §3.5: registerTccBranch and registerXaBranch are the same endpoint.
    env.dtm
        .post("registerTccBranch", &tcc_branch(&env, &gid, "01", "{}"))
        .await
        .expect_success();
    let gid_xa = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid_xa, "xa", json!({})))
        .await
        .expect_success();
    env.dtm
        .post(
            "registerXaBranch",
            &json!({"gid": gid_xa, "trans_type": "xa", "branch_id": "01", "url": env.url("/xa")}),
        )
        .await
        .expect_success();
    assert_eq!(branch_rows(&env.dtm.query(&gid).await).len(), 2);
    assert_eq!(
        branch_rows(&env.dtm.query(&gid_xa).await),
        rows(&[("01", "rollback", "prepared"), ("01", "commit", "prepared")])
    );
}

#[tokio::test]
async fn register_branch_of_another_trans_type_is_an_error() {
    let env = Env::start().await;
    // §3.5: only tcc, xa (and workflow) register branches; any other trans_type → 500.
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    let mut saga_branch = tcc_branch(&env, &gid, "01", "{}");
    saga_branch["trans_type"] = json!("saga");
    env.dtm
        .register_branch(&saga_branch)
        .await
        .expect_error("§3.5: registerBranch with trans_type saga");
    assert_eq!(branch_rows(&env.dtm.query(&gid).await), rows(&[]));

    let gid = env.dtm.new_gid().await;
    let (a1, qp) = (env.url("/a1"), env.url("/qp"));
    env.dtm
        .prepare(&msg(&gid, &[&a1], &["{}"], &qp, json!({})))
        .await
        .expect_success();
    let mut msg_branch = tcc_branch(&env, &gid, "02", "{}");
    msg_branch["trans_type"] = json!("msg");
    env.dtm
        .register_branch(&msg_branch)
        .await
        .expect_error("§3.5: registerBranch with trans_type msg");
    assert_eq!(
        branch_rows(&env.dtm.query(&gid).await),
        rows(&[("01", "action", "prepared")])
    );
}

/// RFC 3339 with a date, a `T`, and a zone (`Z` or `±hh:mm`), as Go writes `time.Time`.
fn is_rfc3339(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    b.len() >= 20
        && b.get(4) == Some(&b'-')
        && b.get(10) == Some(&b'T')
        && (s.ends_with('Z') || b.get(b.len() - 6).is_some_and(|c| *c == b'+' || *c == b'-'))
}

#[tokio::test]
async fn query_has_dtm_shape() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(
            &gid,
            "tcc",
            json!({"timeout_to_fail": 60, "request_timeout": 5, "branch_headers": {"X-A": "1"}}),
        ))
        .await
        .expect_success();
    let data = "{\"amount\": 30,\n \"note\": \"ü\"}";
    env.dtm
        .register_branch(&tcc_branch(&env, &gid, "01", data))
        .await
        .expect_success();

    let q = env.dtm.query(&gid).await;
    let keys: Vec<&str> = q
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        keys.len(),
        2,
        "exactly transaction and branches (§3.6): {q:#}"
    );
    let t = &q["transaction"];
    for k in [
        "id",
        "create_time",
        "update_time",
        "gid",
        "trans_type",
        "status",
        "concurrent",
    ] {
        assert!(
            t.get(k).is_some(),
            "transaction.{k} always present (§3.6): {q:#}"
        );
    }
    assert_eq!(t["gid"], gid.as_str());
    assert_eq!(t["trans_type"], "tcc");
    assert_eq!(t["status"], "prepared");
    assert!(
        is_rfc3339(&t["create_time"]) && is_rfc3339(&t["update_time"]),
        "{t:#}"
    );
    assert!(
        is_rfc3339(&t["next_cron_time"]),
        "an unfinished transaction is due some time: {t:#}"
    );
    // The option fields, flat and in `options` (JSON text).
    assert_eq!(t["timeout_to_fail"], 60, "{t:#}");
    assert_eq!(t["request_timeout"], 5, "{t:#}");
    let options: Value = t["options"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| panic!("options is JSON text: {t:#}"));
    assert_eq!(options["timeout_to_fail"], 60, "{options:#}");
    assert_eq!(options["branch_headers"]["X-A"], "1", "{options:#}");

    let branches = q["branches"].as_array().expect("branches array");
    assert_eq!(branches.len(), 2);
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    for (b, op) in branches.iter().zip(["cancel", "confirm"]) {
        for k in [
            "id",
            "create_time",
            "update_time",
            "gid",
            "url",
            "bin_data",
            "branch_id",
            "op",
            "status",
        ] {
            assert!(b.get(k).is_some(), "branch.{k} (§3.6): {b:#}");
        }
        assert_eq!(b["gid"], gid.as_str());
        assert_eq!(b["branch_id"], "01");
        assert_eq!(b["op"], op);
        assert_eq!(b["status"], "prepared");
        assert_eq!(
            b["bin_data"],
            b64.as_str(),
            "bin_data is base64 of the body (§3.6)"
        );
        assert_eq!(b["url"], env.url(&format!("/b01/{op}")).as_str());
        assert!(is_rfc3339(&b["create_time"]), "{b:#}");
    }

    // A saga keeps custom_data verbatim.
    let gid = env.dtm.new_gid().await;
    let custom = r#"{"concurrent":false,"orders":{}}"#;
    env.dtm
        .submit(&one_step_saga(&env, &gid, json!({"custom_data": custom})))
        .await
        .expect_success();
    let q = env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(q["transaction"]["custom_data"], custom, "{q:#}");
    assert!(is_rfc3339(&q["transaction"]["finish_time"]), "{q:#}");
}

#[tokio::test]
async fn query_of_unknown_or_missing_gid() {
    let env = Env::start().await;
    let q = env.dtm.query("no-such-gid").await;
    assert_eq!(q, json!({"transaction": null, "branches": []}), "§3.6");
    // DTM: 500; ours may say 400 for malformed input (§2.2 "Our server").
    env.dtm
        .get("query", &[])
        .await
        .expect_error("§3.6: missing gid");
}

#[tokio::test]
async fn new_gid_version_and_ping() {
    let env = Env::start().await;
    let a = env.dtm.get("newGid", &[]).await;
    a.expect_status(200, "§3.1");
    assert_eq!(a.dtm_result(), Some("SUCCESS"), "{}", a.text);
    let g1 = a.body()["gid"].as_str().unwrap_or_default().to_owned();
    let g2 = env.dtm.new_gid().await;
    for g in [&g1, &g2] {
        assert!(
            !g.is_empty()
                && g.len() <= 64
                && g.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "§3.1: unique, URL-safe, ≤ 64 chars: {g:?}"
        );
    }
    assert_ne!(g1, g2);

    let v = env.dtm.get("version", &[]).await;
    v.expect_status(200, "§3.8 version");
    assert!(
        v.body()["version"].as_str().is_some_and(|s| !s.is_empty()),
        "{}",
        v.text
    );

    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let ping = format!("{}/api/ping", env.dtm.origin());
    for req in [http.get(&ping), http.post(&ping)] {
        let r = req.send().await.expect("ping answered");
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.expect("ping JSON");
        assert_eq!(body, json!({"msg": "pong"}), "§3.8: ANY /api/ping");
    }
}

#[tokio::test]
async fn python_style_bodies_with_nulls_and_unknown_fields_are_accepted() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    // What dtmcli-py 1.7.7 sends for a saga (§2.3), plus a field nobody knows.
    let body = json!({
        "gid": gid, "trans_type": "saga", "custom_data": null,
        "steps": [{"action": env.url("/a1"), "compensate": env.url("/c1")}],
        "payloads": [r#"{"n": 1}"#], "query_prepared": null, "protocol": null,
        "wait_result": false, "timeout_to_fail": 0, "request_timeout": 8, "retry_interval": 0,
        "passthrough_headers": [], "branch_headers": {}, "concurrent": false,
        "field_from_the_future": {"x": 1},
    });
    env.dtm.submit(&body).await.expect_success();
    env.dtm.wait_status(&gid, "succeed").await;

    // Python TCC: registerBranch carries trans_type and status too (§3.5, §8.5).
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&json!({"gid": gid, "trans_type": "tcc"}))
        .await
        .expect_success();
    let mut reg = tcc_branch(&env, &gid, "01", "{}");
    reg["status"] = json!("prepared");
    env.dtm.register_branch(&reg).await.expect_success();
}
