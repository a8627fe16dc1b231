//! The DTM-compatible HTTP mode of `seata-tc` (`shared/spec/dtm-http-api.md`), tested from the
//! outside: a real TC, its `/api/dtmsvr/*` API over real HTTP, and a branch service in the test
//! process that records what the TC calls. One module per area; every wait polls with a
//! deadline, nothing asserts on timing.

mod admin;
mod api;
mod concurrent;
mod ha;
mod input;
mod msg;
mod recovery;
mod saga;
mod tcc;
mod xa;

use seata_it::dtm::{saga, trans, BranchServer, Call, Dtm};
use seata_it::tc::TcProcess;
use serde_json::{json, Value};

/// A TC (file store, the default), a client of its DTM API and a branch service.
struct Env {
    tc: TcProcess,
    dtm: Dtm,
    svc: BranchServer,
}

impl Env {
    async fn start() -> Env {
        Env::start_with(&[]).await
    }

    async fn start_with(args: &[&str]) -> Env {
        let tc = TcProcess::start_with(args);
        let dtm = Dtm::new(&tc.dtm_url());
        let svc = BranchServer::start().await;
        Env { tc, dtm, svc }
    }

    /// The branch service's URL of `path`.
    fn url(&self, path: &str) -> String {
        self.svc.url(path)
    }
}

/// Asserts what §4.1 says of every server → branch call: the four query parameters (plus the
/// legacy `branch_type`, which our server sends too), `Content-Type: application/json`, and
/// the method rule (POST when there is a body or the type is xa, else GET), and the stored body
/// sent byte for byte.
#[track_caller]
fn assert_branch_call(
    call: &Call,
    gid: &str,
    trans_type: &str,
    (branch_id, op): (&str, &str),
    body: &str,
) {
    let what = format!("{} {} {:?}", call.method, call.path, call.query);
    assert_eq!(call.gid(), Some(gid), "gid of {what}");
    assert_eq!(
        call.param("trans_type"),
        Some(trans_type),
        "trans_type of {what}"
    );
    assert_eq!(call.branch_id(), Some(branch_id), "branch_id of {what}");
    assert_eq!(call.op(), Some(op), "op of {what}");
    assert_eq!(
        call.param("branch_type"),
        Some(op),
        "legacy branch_type (= op) of {what} (§4.1, §11 'send both')"
    );
    assert!(
        call.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "Content-Type of {what}: {:?}",
        call.header("content-type")
    );
    assert_eq!(
        call.body_text(),
        body,
        "body of {what}: the stored body verbatim (§4.1)"
    );
    let method = if body.is_empty() && trans_type != "xa" {
        "GET"
    } else {
        "POST"
    };
    assert_eq!(call.method, method, "method of {what} (§4.1)");
}

/// registerBranch body of a TCC branch `id` with try body `data`.
fn tcc_branch(env: &Env, gid: &str, id: &str, data: &str) -> Value {
    json!({
        "gid": gid,
        "trans_type": "tcc",
        "branch_id": id,
        "data": data,
        "confirm": env.url(&format!("/b{id}/confirm")),
        "cancel": env.url(&format!("/b{id}/cancel")),
    })
}

/// A one-step saga to the branch service.
fn one_step_saga(env: &Env, gid: &str, extra: Value) -> Value {
    let (a, c) = (env.url("/a1"), env.url("/c1"));
    saga(gid, &[(&a, &c)], &[r#"{"n":1}"#], extra)
}

/// Registers TCC branches through `register_via` in 4 streams (each stops at its first 409)
/// while `submit_via` submits once a few have landed; waits for `succeed`. §3.5: each
/// registration is checked against `prepared` under the transaction's lock, so it either landed
/// before the submit and is confirmed, or is refused with 409: asserts that the accepted ones
/// and the confirmed ones are the same set.
async fn race_registrations_with_submit(
    register_via: &Dtm,
    submit_via: &Dtm,
    svc: &BranchServer,
    gid: &str,
) {
    const STREAMS: usize = 4;
    const PER_STREAM: usize = 20;
    let landed = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let streams: Vec<_> = (0..STREAMS)
        .map(|s| {
            let (dtm, gid, landed) = (register_via.clone(), gid.to_owned(), landed.clone());
            let (confirm, cancel) = (svc.url("/confirm"), svc.url("/cancel"));
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for n in 0..PER_STREAM {
                    let id = format!("{:02}", 1 + s + n * STREAMS);
                    let body = json!({
                        "gid": gid, "trans_type": "tcc", "branch_id": id, "data": "{}",
                        "confirm": confirm, "cancel": cancel,
                    });
                    match dtm.register_branch(&body).await.status {
                        200 => {
                            accepted.push(id);
                            landed.add_permits(1);
                        }
                        409 => break,
                        other => panic!("registerBranch {id} answered {other}: 200 or 409"),
                    }
                }
                // A stream that never met the submit still lets it go.
                landed.add_permits(STREAMS);
                accepted
            })
        })
        .collect();
    // Submit while the streams are going.
    let _ = landed
        .acquire_many(STREAMS as u32)
        .await
        .expect("semaphore open");
    submit_via
        .submit(&trans(gid, "tcc", json!({})))
        .await
        .expect_success();
    let mut accepted: Vec<String> = Vec::new();
    for s in streams {
        accepted.extend(s.await.expect("registration stream"));
    }
    submit_via.wait_status(gid, "succeed").await;
    let mut confirmed: Vec<String> = svc
        .calls_to("/confirm")
        .iter()
        .filter(|c| c.gid() == Some(gid))
        .filter_map(|c| c.branch_id().map(str::to_owned))
        .collect();
    accepted.sort();
    confirmed.sort();
    assert!(
        accepted.len() < STREAMS * PER_STREAM,
        "{gid}: the submit came after every registration; no race was run"
    );
    assert_eq!(
        confirmed, accepted,
        "{gid}: every accepted registration is confirmed exactly once, no other"
    );
    assert!(svc.calls_to("/cancel").is_empty());
}
