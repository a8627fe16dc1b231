//! Operator endpoints (§3.7, §3.8): the `all` listing, forceStop, resetNextCronTime,
//! resetCronTime, metrics.

use seata_it::dtm::{trans, Reply};
use serde_json::{json, Value};

use super::{one_step_saga, Env};

#[tokio::test]
async fn all_lists_newest_first_in_pages() {
    let env = Env::start().await;
    let mut tcc = Vec::new();
    for _ in 0..3 {
        let gid = env.dtm.new_gid().await;
        env.dtm
            .prepare(&trans(&gid, "tcc", json!({})))
            .await
            .expect_success();
        tcc.push(gid);
    }
    let saga_gid = env.dtm.new_gid().await;
    env.dtm
        .submit(&one_step_saga(&env, &saga_gid, json!({})))
        .await
        .expect_success();
    env.dtm.wait_status(&saga_gid, "succeed").await;

    let gids = |a: &Value| -> Vec<String> {
        a["transactions"]
            .as_array()
            .unwrap_or_else(|| panic!("transactions array: {a:#}"))
            .iter()
            .map(|t| t["gid"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let all = env.dtm.get("all", &[]).await;
    all.expect_status(200, "§3.7");
    assert_eq!(gids(all.body()).len(), 4, "{}", all.text);

    let one = env.dtm.get("all", &[("gid", &tcc[1])]).await;
    assert_eq!(gids(one.body()), [tcc[1].as_str()]);

    let page1 = env
        .dtm
        .get("all", &[("transType", "tcc"), ("limit", "2")])
        .await;
    assert_eq!(
        gids(page1.body()),
        [tcc[2].as_str(), tcc[1].as_str()],
        "newest first"
    );
    let position = page1.body()["next_position"].as_str().unwrap_or_default();
    assert!(!position.is_empty(), "more to come: {}", page1.text);
    let page2 = env
        .dtm
        .get(
            "all",
            &[("transType", "tcc"), ("limit", "2"), ("position", position)],
        )
        .await;
    assert_eq!(gids(page2.body()), [tcc[0].as_str()]);
    assert_eq!(
        page2.body()["next_position"].as_str().unwrap_or_default(),
        "",
        "empty next_position = no more: {}",
        page2.text
    );

    let done = env.dtm.get("all", &[("status", "succeed")]).await;
    assert_eq!(gids(done.body()), [saga_gid.as_str()]);
    let prepared = env.dtm.get("all", &[("status", "prepared")]).await;
    assert_eq!(gids(prepared.body()).len(), 3);
}

#[tokio::test]
async fn all_filters_on_create_time() {
    let env = Env::start().await;
    let gid = env.dtm.new_gid().await;
    env.dtm
        .prepare(&trans(&gid, "tcc", json!({})))
        .await
        .expect_success();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let (past, future) = (
        (now_ms - 3_600_000).to_string(),
        (now_ms + 3_600_000).to_string(),
    );
    let count = |a: &seata_it::dtm::Answer| {
        a.body()["transactions"]
            .as_array()
            .map(Vec::len)
            .unwrap_or_else(|| panic!("{}", a.text))
    };
    // §3.7: createTimeStart / createTimeEnd are unix milliseconds.
    let later = env.dtm.get("all", &[("createTimeStart", &future)]).await;
    assert_eq!(count(&later), 0, "{}", later.text);
    let window = env
        .dtm
        .get(
            "all",
            &[("createTimeStart", &past), ("createTimeEnd", &future)],
        )
        .await;
    assert_eq!(count(&window), 1, "{}", window.text);
    let earlier = env.dtm.get("all", &[("createTimeEnd", &past)]).await;
    assert_eq!(count(&earlier), 0, "{}", earlier.text);
}

/// A one-step saga whose action answered 500 once with `retry_interval` 3600: its next try is
/// far beyond any wait of these tests (an hour, or the server's cap).
async fn parked_saga(env: &Env) -> String {
    let gid = env.dtm.new_gid().await;
    let before = env.svc.calls_to("/a1").len();
    env.svc.replies("/a1", [Reply::status(500)]);
    env.dtm
        .submit(&one_step_saga(env, &gid, json!({"retry_interval": 3600})))
        .await
        .expect_success();
    env.svc.wait_calls("/a1", before + 1).await;
    env.dtm
        .wait_until(&gid, "retry_count >= 1", |q| {
            q["transaction"]["retry_count"].as_i64().unwrap_or(0) >= 1
        })
        .await;
    gid
}

#[tokio::test]
async fn force_stop_fails_without_compensating() {
    let env = Env::start().await;
    let gid = parked_saga(&env).await;
    env.dtm
        .post("forceStop", &json!({"gid": gid}))
        .await
        .expect_success();
    // §3.8: straight to failed, no compensation (which would need aborting first).
    let q = env.dtm.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "failed", "{q:#}");
    assert!(env.svc.calls_to("/c1").is_empty());
    env.dtm
        .post("forceStop", &json!({"gid": gid}))
        .await
        .expect_conflict("§3.8: forceStop of a finished transaction");
}

#[tokio::test]
async fn reset_next_cron_time_retries_now() {
    let env = Env::start().await;
    let gid = parked_saga(&env).await;
    env.dtm
        .post("resetNextCronTime", &json!({"gid": gid}))
        .await
        .expect_success();
    // Without the reset the retry would be an hour away.
    env.dtm.wait_status(&gid, "succeed").await;
    assert_eq!(env.svc.calls_to("/a1").len(), 2);
}

#[tokio::test]
async fn reset_cron_time_brings_far_retries_forward() {
    let env = Env::start().await;
    let (g1, g2) = (parked_saga(&env).await, parked_saga(&env).await);
    let reset = |limit: &'static str| {
        let dtm = env.dtm.clone();
        async move {
            let a = dtm
                .get("resetCronTime", &[("timeout", "60"), ("limit", limit)])
                .await;
            a.expect_status(200, "§3.8 resetCronTime");
            let b = a.body();
            (b["succeed_count"].as_i64(), b["has_remaining"].as_bool())
        }
    };
    // §3.8: up to `limit` transactions due more than `timeout` s from now are made due now.
    let (first, _) = reset("1").await;
    assert_eq!(first, Some(1));
    assert_eq!(reset("10").await, (Some(1), Some(false)));
    env.dtm.wait_status(&g1, "succeed").await;
    env.dtm.wait_status(&g2, "succeed").await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let env = Env::start().await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let r = http
        .get(format!("{}/api/metrics", env.dtm.origin()))
        .send()
        .await
        .expect("metrics answered");
    assert_eq!(r.status().as_u16(), 200, "§3.8 GET /api/metrics");
    let text = r.text().await.expect("metrics body");
    assert!(
        text.lines().any(|l| l.starts_with("# TYPE ")),
        "Prometheus exposition format: {text}"
    );
}
