//! Concurrent processing: a saga with `custom_data` orders (§6.3; forward and backward), a msg
//! with `concurrent: true` (§6.4). Order is judged by the branch service's clock: a step's call
//! must arrive after its predecessors' answers were given; parallelism by a call arriving while
//! another step is still being retried.

use seata_it::dtm::{branch_rows, msg, rows, saga, Reply};
use serde_json::json;

use super::Env;

const P1: &str = r#"{"amount":30}"#;
const P2: &str = r#"{"amount":-30}"#;
const P3: &str = r#"{"amount":7}"#;

/// Three steps: 0 and 1 independent, 2 after both (`orders {"2":[0,1]}`, 0-based).
fn concurrent_saga(env: &Env, gid: &str) -> serde_json::Value {
    let urls: Vec<(String, String)> = (0..3)
        .map(|i| (env.url(&format!("/a{i}")), env.url(&format!("/c{i}"))))
        .collect();
    let steps: Vec<(&str, &str)> = urls.iter().map(|(a, c)| (&**a, &**c)).collect();
    saga(
        gid,
        &steps,
        &[P1, P2, P3],
        json!({
            "custom_data": r#"{"concurrent":true,"orders":{"2":[0,1]}}"#,
            "retry_interval": 1,
        }),
    )
}

#[tokio::test]
async fn concurrent_saga_respects_orders_forward() {
    let env = Env::start().await;
    // Step 0 fails once: step 1 must not wait for it, step 2 must.
    env.svc.replies("/a0", [Reply::status(500)]);
    let gid = env.dtm.new_gid().await;
    env.dtm
        .submit(&concurrent_saga(&env, &gid))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "succeed").await;

    let a0 = env.svc.calls_to("/a0");
    let a1 = env.svc.calls_to("/a1");
    let a2 = env.svc.calls_to("/a2");
    assert!(
        a0.len() >= 2 && a1.len() == 1 && a2.len() == 1,
        "{:?}",
        env.svc.paths()
    );
    let a0_done = a0.last().expect("a0 called");
    assert!(
        a1[0].seq < a0_done.seq,
        "step 1 has no predecessor: it runs while step 0 is still being retried; calls {:?}",
        env.svc.paths()
    );
    assert!(
        a0_done.answered_before(&a2[0]) && a1[0].answered_before(&a2[0]),
        "step 2 starts only after steps 0 and 1 answered success; calls {:?}",
        env.svc.paths()
    );
    assert!(env.svc.paths().iter().all(|p| p.starts_with("/a")));
}

#[tokio::test]
async fn concurrent_saga_respects_orders_backward() {
    let env = Env::start().await;
    env.svc.reply("/a2", Reply::failure());
    // Step 2's compensation fails once: 0 and 1 must wait for it; 0's fails once too, and 1's
    // must not wait for that.
    env.svc.replies("/c2", [Reply::status(500)]);
    env.svc.replies("/c0", [Reply::status(500)]);
    let gid = env.dtm.new_gid().await;
    env.dtm
        .submit(&concurrent_saga(&env, &gid))
        .await
        .expect_success();
    let q = env.dtm.wait_status(&gid, "failed").await;

    let c2 = env.svc.calls_to("/c2");
    let c0 = env.svc.calls_to("/c0");
    let c1 = env.svc.calls_to("/c1");
    let paths = env.svc.paths();
    assert!(c2.len() >= 2 && c0.len() >= 2 && c1.len() == 1, "{paths:?}");
    let c2_done = c2.last().expect("c2 called");
    assert!(
        c2_done.answered_before(&c0[0]) && c2_done.answered_before(&c1[0]),
        "steps listed by step 2's orders are compensated after step 2 (§6.3); calls {paths:?}"
    );
    assert!(
        c1[0].seq < c0.last().expect("c0 called").seq,
        "independent compensations run in parallel; calls {paths:?}"
    );
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "succeed"),
            ("01", "action", "succeed"),
            ("02", "compensate", "succeed"),
            ("02", "action", "succeed"),
            ("03", "compensate", "succeed"),
            ("03", "action", "failed"),
        ])
    );
}

#[tokio::test]
async fn concurrent_msg_runs_actions_in_parallel() {
    let env = Env::start().await;
    env.svc.replies("/a1", [Reply::status(500)]);
    let gid = env.dtm.new_gid().await;
    let (a1, a2, qp) = (env.url("/a1"), env.url("/a2"), env.url("/qp"));
    env.dtm
        .submit(&msg(
            &gid,
            &[&a1, &a2],
            &[P1, P2],
            &qp,
            json!({"concurrent": true, "retry_interval": 1}),
        ))
        .await
        .expect_success();
    env.dtm.wait_status(&gid, "succeed").await;
    let (c1, c2) = (env.svc.calls_to("/a1"), env.svc.calls_to("/a2"));
    assert!(c1.len() == 2 && c2.len() == 1, "{:?}", env.svc.paths());
    assert!(
        c2[0].seq < c1[1].seq,
        "§6.4 concurrent: action 2 does not wait for action 1's retry; {:?}",
        env.svc.paths()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sagas_at_once_each_step_called_once() {
    let env = Env::start().await;
    let (a1, c1, a2, c2) = (
        env.url("/a1"),
        env.url("/c1"),
        env.url("/a2"),
        env.url("/c2"),
    );
    let mut gids = Vec::new();
    for _ in 0..40 {
        gids.push(env.dtm.new_gid().await);
    }
    let submits = gids.iter().map(|gid| {
        let body = saga(gid, &[(&a1, &c1), (&a2, &c2)], &[P1, P2], json!({}));
        let dtm = env.dtm.clone();
        tokio::spawn(async move { dtm.submit(&body).await })
    });
    for s in futures::future::join_all(submits).await {
        s.expect("submit task").expect_success();
    }
    for gid in &gids {
        env.dtm.wait_status(gid, "succeed").await;
    }
    let calls = env.svc.calls();
    for gid in &gids {
        let mine: Vec<&str> = calls
            .iter()
            .filter(|c| c.gid() == Some(gid.as_str()))
            .map(|c| c.path.as_str())
            .collect();
        assert_eq!(mine, ["/a1", "/a2"], "{gid}");
    }
}
