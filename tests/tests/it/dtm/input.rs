//! Bad input (§2.2 "Our server", §11): malformed or oversized bodies, unknown types, URLs that
//! are not HTTP, unusable gids. Each is an error (400, or 500 where DTM says so; 413 for size),
//! never a FAILURE, and nothing is stored or called.

use seata_it::dtm::{msg, saga, trans};
use serde_json::json;

use super::{one_step_saga, tcc_branch, Env};

#[tokio::test]
async fn malformed_requests_are_errors_not_failures() {
    let env = Env::start().await;
    for endpoint in ["prepare", "submit", "abort", "registerBranch"] {
        env.dtm
            .post_raw(endpoint, r#"{"gid": "x", "trans_type": "#)
            .await
            .expect_error("§2.2: malformed JSON");
        env.dtm
            .post_raw(endpoint, "[1, 2]")
            .await
            .expect_error("§2.2: not an object");
    }

    // Unknown trans_type: error, nothing stored (§3.2, §11).
    let gid = env.dtm.new_gid().await;
    for endpoint in ["prepare", "submit"] {
        env.dtm
            .post(endpoint, &trans(&gid, "twophase", json!({})))
            .await
            .expect_error("unknown trans_type");
    }
    assert!(env.dtm.query(&gid).await["transaction"].is_null());

    // registerBranch values are strings only (§3.5).
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    let mut numeric = tcc_branch(&env, &gid, "01", "{}");
    numeric["branch_id"] = json!(1);
    env.dtm
        .register_branch(&numeric)
        .await
        .expect_error("§3.5: a number value");
    let mut object = tcc_branch(&env, &gid, "01", "{}");
    object["data"] = json!({"amount": 1});
    env.dtm
        .register_branch(&object)
        .await
        .expect_error("§3.5: an object value");
    assert!(env.dtm.query(&gid).await["branches"]
        .as_array()
        .is_some_and(Vec::is_empty));

    // The server is still there.
    env.dtm.new_gid().await;
}

#[tokio::test]
async fn saga_with_fewer_payloads_than_steps_is_refused() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let (a, c) = (env.url("/a1"), env.url("/c1"));
    // §2.3: payloads has the same length as steps.
    env.dtm
        .submit(&saga(&gid, &[(&a, &c), (&a, &c)], &["{}"], json!({})))
        .await
        .expect_error("two steps, one payload");
    assert!(env.dtm.query(&gid).await["transaction"].is_null());
    assert!(env.svc.calls().is_empty());
}

#[tokio::test]
async fn oversized_body_is_refused_and_nothing_stored() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(1_100_000));
    let (a, c) = (env.url("/a1"), env.url("/c1"));
    let a = env
        .dtm
        .submit(&saga(&gid, &[(&a, &c)], &[&big], json!({})))
        .await;
    assert!(
        matches!(a.status, 400 | 413),
        "body > max-body-bytes (1 MiB) → 413 or 400; got {} {}",
        a.status,
        a.text
    );
    assert!(env.dtm.query(&gid).await["transaction"].is_null());
    assert!(env.svc.calls().is_empty());
}

#[tokio::test]
async fn max_body_bytes_comes_from_the_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tc.toml");
    std::fs::write(&config, "[dtm]\nmax-body-bytes = 2000\n").expect("write config");
    let env = Env::start_with(&["--config", config.to_str().expect("utf-8 path")]).await;
    let gid = env.dtm.new_gid().await;
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(3000));
    let (a, c) = (env.url("/a1"), env.url("/c1"));
    let a = env
        .dtm
        .submit(&saga(&gid, &[(&a, &c)], &[&big], json!({})))
        .await;
    assert!(matches!(a.status, 400 | 413), "{} {}", a.status, a.text);
    assert!(env.dtm.query(&gid).await["transaction"].is_null());
    // Below the limit is fine.
    env.dtm
        .submit(&one_step_saga(&env, &gid, json!({})))
        .await
        .expect_success();
}

#[tokio::test]
async fn urls_that_are_not_http_are_refused() {
    let env = Env::start().await;
    let ok = env.url("/a1");
    for bad in [
        "ftp://127.0.0.1/a",
        "127.0.0.1:1/a",
        "file:///etc/hosts",
        "not a url",
    ] {
        let gid = env.dtm.new_gid().await;
        env.dtm
            .submit(&saga(&gid, &[(bad, &ok)], &["{}"], json!({})))
            .await
            .expect_status(400, &format!("saga action {bad:?}"));
        env.dtm
            .submit(&saga(&gid, &[(&ok, bad)], &["{}"], json!({})))
            .await
            .expect_status(400, &format!("saga compensate {bad:?}"));
        env.dtm
            .prepare(&msg(&gid, &[&ok], &["{}"], bad, json!({})))
            .await
            .expect_status(400, &format!("msg query_prepared {bad:?}"));
        assert!(env.dtm.query(&gid).await["transaction"].is_null());

        let tcc = env.dtm.new_gid().await;
        env.dtm
            .prepare(&trans(&tcc, "tcc", json!({})))
            .await
            .expect_success();
        let mut reg = tcc_branch(&env, &tcc, "01", "{}");
        reg["confirm"] = json!(bad);
        env.dtm
            .register_branch(&reg)
            .await
            .expect_status(400, &format!("tcc confirm {bad:?}"));
        assert!(env.dtm.query(&tcc).await["branches"]
            .as_array()
            .is_some_and(Vec::is_empty));
    }
    assert!(env.svc.calls().is_empty());
}

#[tokio::test]
async fn gids_with_bad_characters_or_too_long_are_refused() {
    let env = Env::start().await;
    let long = "g".repeat(129);
    for bad in [
        "bad\"gid",
        "bad gid",
        "bad\ngid",
        "bad;gid",
        "bad'gid",
        "",
        long.as_str(),
    ] {
        for endpoint in ["prepare", "submit"] {
            env.dtm
                .post(endpoint, &trans(bad, "tcc", json!({})))
                .await
                .expect_status(400, &format!("{endpoint} gid {bad:?}"));
        }
    }
    // The longest allowed gid (128, §1) is fine.
    let max = "g".repeat(128);
    env.dtm
        .prepare(&trans(&max, "tcc", json!({})))
        .await
        .expect_success();
    assert_eq!(env.dtm.status(&max).await.as_deref(), Some("prepared"));
    let a = env.dtm.get("all", &[]).await;
    assert_eq!(
        a.body()["transactions"].as_array().map(Vec::len),
        Some(1),
        "only the valid gid was stored: {}",
        a.text
    );
}
