//! A DTM client nobody here wrote against seata-tc's DTM HTTP mode: the Python `dtmcli` from
//! PyPI (pinned in `tests/py/requirements.txt`, installed into `target/pyenv` by
//! `scripts/python-env.sh`), driven by the small programs in `tests/py/` exactly as its users
//! write them. Each test starts a TC and an axum branch service that records every call, runs
//! one program, then checks the calls the branches saw and what `query` reports.
//!
//! The interpreter is `SEATA_TEST_PYTHON` (`scripts/test.sh` sets it); without it the tests run
//! `scripts/python-env.sh` themselves, so a bare `cargo test` works too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::Router;
use seata_it::python::run_py;
use seata_it::tc::TcProcess;
use serde_json::{json, Value};

/// Deadline for a transaction to finish (a prepared msg waits for its 1 s timeout and the
/// server's cron) and for one Python program to run.
const WAIT: Duration = Duration::from_secs(60);

/// Runs `tests/py/<script> DTM BUSI MODE`.
async fn run_py_mode(script: &str, dtm: &str, busi: &str, mode: &str) -> Value {
    run_py(script, &[dtm, busi, mode], WAIT).await
}

/// One call a branch service received.
#[derive(Clone, Debug)]
struct Call {
    method: Method,
    /// The path below the service's base, e.g. `TransIn`.
    name: String,
    query: BTreeMap<String, String>,
    body: String,
}

impl Call {
    fn q(&self, key: &str) -> &str {
        self.query.get(key).map(String::as_str).unwrap_or_default()
    }
}

#[derive(Debug)]
struct BusiState {
    answers: HashMap<String, u16>,
    calls: Mutex<Vec<Call>>,
}

/// A branch service at `http://127.0.0.1:PORT/api/busi`: records every call and answers 200
/// `{"dtm_result":"SUCCESS"}`, or the status configured for that name (409 with
/// `{"dtm_result":"FAILURE"}`, as DTM's samples do).
#[derive(Debug)]
struct Busi {
    base: String,
    state: Arc<BusiState>,
    server: tokio::task::JoinHandle<()>,
}

impl Busi {
    async fn start(answers: &[(&str, u16)]) -> Busi {
        let state = Arc::new(BusiState {
            answers: answers.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
            calls: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind branch service");
        let addr = listener.local_addr().expect("branch service address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("branch service");
        });
        Busi {
            base: format!("http://{addr}/api/busi"),
            state,
            server,
        }
    }

    fn url(&self) -> &str {
        &self.base
    }

    fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().expect("calls").clone()
    }
}

impl Drop for Busi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(
    State(state): State<Arc<BusiState>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> (StatusCode, String) {
    let name = uri
        .path()
        .strip_prefix("/api/busi/")
        .unwrap_or(uri.path())
        .to_owned();
    let code = state.answers.get(&name).copied().unwrap_or(200);
    state.calls.lock().expect("calls").push(Call {
        method,
        name,
        query,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let result = match code {
        200 => "SUCCESS",
        409 => "FAILURE",
        425 => "ONGOING",
        _ => "ERROR",
    };
    (
        StatusCode::from_u16(code).expect("status code"),
        json!({ "dtm_result": result }).to_string(),
    )
}

/// A TC serving the DTM HTTP API, and its base URL `http://IP:PORT/api/dtmsvr`.
fn dtm_server() -> (TcProcess, String) {
    let tc = TcProcess::start_with(&["--http-listen", "127.0.0.1:0", "--store", "memory"]);
    let url = tc.dtm_url();
    (tc, url)
}

/// `GET query?gid=G`, which must answer 200 and `{"transaction": ..., "branches": [...]}`.
async fn query(dtm: &str, gid: &str) -> Value {
    let url = format!("{dtm}/query?gid={gid}");
    let resp = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "GET {url}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
}

fn status_of(q: &Value) -> &str {
    q["transaction"]["status"].as_str().unwrap_or_default()
}

/// Polls `query` until the transaction is `succeed` or `failed`.
async fn wait_final(dtm: &str, gid: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let q = query(dtm, gid).await;
        if matches!(status_of(&q), "succeed" | "failed") {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "{gid} not finished within {WAIT:?}: {q:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The branch rows of a `query` answer as `branch_id/op status`, in the order given.
fn branch_rows(q: &Value) -> Vec<String> {
    q["branches"]
        .as_array()
        .unwrap_or_else(|| panic!("no branches array: {q:#}"))
        .iter()
        .map(|b| {
            format!(
                "{}/{} {}",
                b["branch_id"].as_str().unwrap_or_default(),
                b["op"].as_str().unwrap_or_default(),
                b["status"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn gid_of(out: &Value) -> String {
    let gid = out["gid"].as_str().unwrap_or_default().to_owned();
    assert!(!gid.is_empty(), "no gid from the program: {out}");
    gid
}

/// The calls the branch service saw, as `METHOD Name branch_id/op`, after checking what every
/// one carries (§4.1): the transaction's `gid` and `trans_type`, and as body the payload the
/// program gave that step, byte for byte (empty for QueryPrepared).
fn seen(busi: &Busi, gid: &str, trans_type: &str, out: &Value) -> Vec<String> {
    busi.calls()
        .iter()
        .map(|call| {
            assert_eq!(call.q("gid"), gid, "{call:?}");
            assert_eq!(call.q("trans_type"), trans_type, "{call:?}");
            let step = ["Compensate", "Try", "Confirm", "Cancel"]
                .iter()
                .find_map(|suffix| call.name.strip_suffix(suffix))
                .unwrap_or(&call.name);
            let body = match step {
                "QueryPrepared" => "",
                step => payload(out, step),
            };
            assert_eq!(call.body, body, "{call:?}");
            format!(
                "{} {} {}/{}",
                call.method,
                call.name,
                call.q("branch_id"),
                call.q("op")
            )
        })
        .collect()
}

fn payload<'a>(out: &'a Value, name: &str) -> &'a str {
    out["payloads"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no payload {name}: {out}"))
}

fn assert_transaction(q: &Value, gid: &str, trans_type: &str, status: &str) {
    let t = &q["transaction"];
    assert_eq!(t["gid"], gid, "{q:#}");
    assert_eq!(t["trans_type"], trans_type, "{q:#}");
    assert_eq!(t["status"], status, "{q:#}");
}

// ---------------------------------------------------------------------------------------------
// saga (§6.3)

#[tokio::test]
async fn dtmcli_saga_commits() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[]).await;
    let out = run_py_mode("saga.py", &dtm, busi.url(), "sequential").await;
    let gid = gid_of(&out);

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "saga", "succeed");
    assert_eq!(
        seen(&busi, &gid, "saga", &out),
        ["POST TransOut 01/action", "POST TransIn 02/action"]
    );
    assert_eq!(
        branch_rows(&q),
        [
            "01/compensate prepared",
            "01/action succeed",
            "02/compensate prepared",
            "02/action succeed"
        ]
    );
}

#[tokio::test]
async fn dtmcli_saga_rolls_back_when_an_action_answers_409() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[("TransIn", 409)]).await;
    let out = run_py_mode("saga.py", &dtm, busi.url(), "sequential").await;
    let gid = gid_of(&out);

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "saga", "failed");
    // The failed step's own compensation runs too, then the earlier one: reverse order, each
    // with its action's body.
    assert_eq!(
        seen(&busi, &gid, "saga", &out),
        [
            "POST TransOut 01/action",
            "POST TransIn 02/action",
            "POST TransInCompensate 02/compensate",
            "POST TransOutCompensate 01/compensate"
        ]
    );
    assert_eq!(
        branch_rows(&q),
        [
            "01/compensate succeed",
            "01/action succeed",
            "02/compensate succeed",
            "02/action failed"
        ]
    );
    let reason = &q["transaction"]["rollback_reason"];
    assert!(
        !reason.as_str().unwrap_or_default().is_empty(),
        "no rollback_reason: {q:#}"
    );
}

/// dtmcli's concurrent saga (after setting the two attributes it forgets, spec §8.5):
/// `custom_data` `{"orders": {"2": [0, 1]}, "concurrent": true}` — step 3 only after 1 and 2.
#[tokio::test]
async fn dtmcli_concurrent_saga_keeps_its_branch_orders() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[]).await;
    let out = run_py_mode("saga.py", &dtm, busi.url(), "concurrent").await;
    let gid = gid_of(&out);

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "saga", "succeed");
    let custom = q["transaction"]["custom_data"].as_str().unwrap_or_default();
    let custom: Value = serde_json::from_str(custom)
        .unwrap_or_else(|e| panic!("custom_data is not JSON text ({e}): {q:#}"));
    assert_eq!(custom, json!({"orders": {"2": [0, 1]}, "concurrent": true}));
    let mut calls = seen(&busi, &gid, "saga", &out);
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[2], "POST Notify 03/action", "{calls:?}");
    calls[..2].sort();
    assert_eq!(
        calls[..2],
        ["POST TransIn 02/action", "POST TransOut 01/action"]
    );
}

// ---------------------------------------------------------------------------------------------
// msg (§6.4)

const MSG_ACTIONS: [&str; 2] = ["POST TransOut 01/action", "POST TransIn 02/action"];

#[tokio::test]
async fn dtmcli_msg_prepare_then_submit_runs_the_actions() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[]).await;
    let out = run_py_mode("msg.py", &dtm, busi.url(), "submit").await;
    let gid = gid_of(&out);

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "msg", "succeed");
    let query_prepared = format!("{}/QueryPrepared", busi.url());
    assert_eq!(q["transaction"]["query_prepared"], query_prepared, "{q:#}");
    assert_eq!(seen(&busi, &gid, "msg", &out), MSG_ACTIONS);
    assert_eq!(branch_rows(&q), ["01/action succeed", "02/action succeed"]);
}

/// A producer that prepared and never submitted: after `timeout_to_fail` (1 s, set on the
/// Msg's body) the server asks queryPrepared (GET, branch 00, op msg), which answers 200.
#[tokio::test]
async fn dtmcli_msg_left_prepared_is_submitted_when_query_prepared_says_committed() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[]).await;
    let out = run_py_mode("msg.py", &dtm, busi.url(), "prepare-only").await;
    let gid = gid_of(&out);

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "msg", "succeed");
    let calls = seen(&busi, &gid, "msg", &out);
    assert_eq!(calls[0], "GET QueryPrepared 00/msg", "{calls:?}");
    assert_eq!(calls[1..], MSG_ACTIONS);
    assert_eq!(branch_rows(&q), ["01/action succeed", "02/action succeed"]);
}

#[tokio::test]
async fn dtmcli_msg_left_prepared_fails_when_query_prepared_answers_409() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[("QueryPrepared", 409)]).await;
    let out = run_py_mode("msg.py", &dtm, busi.url(), "prepare-only").await;
    let gid = gid_of(&out);

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "msg", "failed");
    // Only queryPrepared, no action.
    assert_eq!(seen(&busi, &gid, "msg", &out), ["GET QueryPrepared 00/msg"]);
    let rows = branch_rows(&q);
    assert_eq!(rows, ["01/action prepared", "02/action prepared"]);
}

#[tokio::test]
async fn dtmcli_msg_do_and_submit_runs_the_actions() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[]).await;
    let out = run_py_mode("msg.py", &dtm, busi.url(), "do-and-submit").await;
    let gid = gid_of(&out);

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "msg", "succeed");
    assert_eq!(seen(&busi, &gid, "msg", &out), MSG_ACTIONS);
}

/// `do_and_submit` whose local transaction raises: dtmcli itself asks queryPrepared (with its
/// `dtm` parameter), gets 409, and aborts the prepared msg: `failed` at once, no action (§3.4).
#[tokio::test]
async fn dtmcli_msg_do_and_submit_aborts_when_the_local_transaction_was_lost() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[("QueryPrepared", 409)]).await;
    let out = run_py_mode("msg.py", &dtm, busi.url(), "do-and-submit-error").await;
    let gid = gid_of(&out);
    assert_eq!(out["raised"], "local transaction lost", "{out}");

    let q = query(&dtm, &gid).await;
    assert_transaction(&q, &gid, "msg", "failed");
    assert_eq!(seen(&busi, &gid, "msg", &out), ["GET QueryPrepared 00/msg"]);
    assert_eq!(busi.calls()[0].q("dtm"), dtm);
    let rows = branch_rows(&q);
    assert_eq!(rows, ["01/action prepared", "02/action prepared"]);
}

// ---------------------------------------------------------------------------------------------
// TCC (§6.5). The tries are dtmcli's own calls (POST, op=try, branch ids it numbers 01, 02);
// confirms and cancels are the server's.

#[tokio::test]
async fn dtmcli_tcc_confirms_in_reverse_order() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[]).await;
    let out = run_py_mode("tcc.py", &dtm, busi.url(), "normal").await;
    let gid = gid_of(&out);
    assert_eq!(out["returned"], gid.as_str(), "{out}");

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "tcc", "succeed");
    assert_eq!(
        seen(&busi, &gid, "tcc", &out),
        [
            "POST TransOutTry 01/try",
            "POST TransInTry 02/try",
            "POST TransInConfirm 02/confirm",
            "POST TransOutConfirm 01/confirm"
        ]
    );
    assert_eq!(
        branch_rows(&q),
        [
            "01/cancel prepared",
            "01/confirm succeed",
            "02/cancel prepared",
            "02/confirm succeed"
        ]
    );
}

/// The second try answers 409: dtmcli's call_branch raises, tcc_global_transaction aborts and
/// returns "", and the server cancels every registered branch in reverse order.
#[tokio::test]
async fn dtmcli_tcc_cancels_when_a_try_answers_409() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[("TransInTry", 409)]).await;
    let out = run_py_mode("tcc.py", &dtm, busi.url(), "normal").await;
    let gid = gid_of(&out);
    assert_eq!(out["returned"], "", "{out}");

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "tcc", "failed");
    assert_eq!(seen(&busi, &gid, "tcc", &out), TCC_CANCELLED);
    assert_eq!(
        branch_rows(&q),
        [
            "01/cancel succeed",
            "01/confirm prepared",
            "02/cancel succeed",
            "02/confirm prepared"
        ]
    );
}

const TCC_CANCELLED: [&str; 4] = [
    "POST TransOutTry 01/try",
    "POST TransInTry 02/try",
    "POST TransInCancel 02/cancel",
    "POST TransOutCancel 01/cancel",
];

/// Both tries succeed, then the initiator's own callback raises: abort, cancels in reverse.
#[tokio::test]
async fn dtmcli_tcc_cancels_when_the_initiator_raises() {
    let (_tc, dtm) = dtm_server();
    let busi = Busi::start(&[]).await;
    let out = run_py_mode("tcc.py", &dtm, busi.url(), "raise").await;
    let gid = gid_of(&out);
    assert_eq!(out["returned"], "", "{out}");

    let q = wait_final(&dtm, &gid).await;
    assert_transaction(&q, &gid, "tcc", "failed");
    assert_eq!(seen(&busi, &gid, "tcc", &out), TCC_CANCELLED);
}
