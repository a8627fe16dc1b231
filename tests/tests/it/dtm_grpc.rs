//! DTM's gRPC path against the real `seata-tc` (spec §9, issue "the go-zero path"): a client of
//! `dtmgimp.Dtm` written here from §9 (prost messages by hand, not the TC's generated code), a
//! tonic branch service `busi.Busi` in the test process that records every call and answers as
//! scripted, and a real etcd (Debian's `etcd-server`, found through `SEATA_TEST_ETCD` or
//! `scripts/etcd-env.sh`) started per test on free ports. Outcomes are read over the HTTP API's
//! `query`, which also shows that both front-ends share one engine and store. Every wait polls
//! with a deadline; nothing asserts on timing.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use seata_it::dtm::{branch_rows, rows, Dtm};
use seata_it::etcd::Etcd;
use seata_it::grpc_busi::{BusiServer, GrpcCall};
use seata_it::tc::TcProcess;
use serde_json::{json, Value};
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Deadline of every wait (a transaction's retries double from 1 s; the TC's cron ticks each
/// second).
const WAIT: Duration = Duration::from_secs(40);
const POLL: Duration = Duration::from_millis(25);

// ---------------------------------------------------------------------------------------------
// §9's messages, written here from the spec (field names and numbers as DTM's proto)

#[derive(Clone, PartialEq, prost::Message)]
struct DtmTransOptions {
    #[prost(bool, tag = "1")]
    wait_result: bool,
    #[prost(int64, tag = "2")]
    timeout_to_fail: i64,
    #[prost(int64, tag = "3")]
    retry_interval: i64,
    #[prost(map = "string, string", tag = "5")]
    branch_headers: HashMap<String, String>,
    #[prost(int64, tag = "6")]
    request_timeout: i64,
    #[prost(int64, tag = "7")]
    retry_limit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DtmRequest {
    #[prost(string, tag = "1")]
    gid: String,
    #[prost(string, tag = "2")]
    trans_type: String,
    #[prost(message, optional, tag = "3")]
    trans_options: Option<DtmTransOptions>,
    #[prost(string, tag = "4")]
    customed_data: String,
    #[prost(bytes = "vec", repeated, tag = "5")]
    bin_payloads: Vec<Vec<u8>>,
    #[prost(string, tag = "6")]
    query_prepared: String,
    #[prost(string, tag = "7")]
    steps: String,
    #[prost(map = "string, string", tag = "8")]
    req_extra: HashMap<String, String>,
    #[prost(string, tag = "9")]
    rollback_reason: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DtmGidReply {
    #[prost(string, tag = "1")]
    gid: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DtmBranchRequest {
    #[prost(string, tag = "1")]
    gid: String,
    #[prost(string, tag = "2")]
    trans_type: String,
    #[prost(string, tag = "3")]
    branch_id: String,
    #[prost(string, tag = "4")]
    op: String,
    #[prost(map = "string, string", tag = "5")]
    data: HashMap<String, String>,
    #[prost(bytes = "vec", tag = "6")]
    busi_payload: Vec<u8>,
}

/// `google.protobuf.Empty`.
#[derive(Clone, PartialEq, prost::Message)]
struct Empty {}

/// A `dtmgimp.Dtm` client over one channel.
#[derive(Clone)]
struct DtmGrpc {
    grpc: tonic::client::Grpc<Channel>,
}

impl DtmGrpc {
    fn new(addr: &str) -> DtmGrpc {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .timeout(WAIT)
            .connect_lazy();
        DtmGrpc {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    async fn unary<Q, R>(&self, method: &'static str, req: Q) -> Result<R, Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static(method);
        let codec = tonic_prost::ProstCodec::<Q, R>::default();
        grpc.unary(tonic::Request::new(req), path, codec)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn new_gid(&self) -> String {
        let r: DtmGidReply = self
            .unary("/dtmgimp.Dtm/NewGid", Empty {})
            .await
            .expect("NewGid");
        r.gid
    }

    async fn prepare(&self, r: DtmRequest) -> Result<(), Status> {
        self.unary::<_, Empty>("/dtmgimp.Dtm/Prepare", r)
            .await
            .map(drop)
    }

    async fn submit(&self, r: DtmRequest) -> Result<(), Status> {
        self.unary::<_, Empty>("/dtmgimp.Dtm/Submit", r)
            .await
            .map(drop)
    }

    async fn abort(&self, r: DtmRequest) -> Result<(), Status> {
        self.unary::<_, Empty>("/dtmgimp.Dtm/Abort", r)
            .await
            .map(drop)
    }

    async fn register_branch(&self, r: DtmBranchRequest) -> Result<(), Status> {
        self.unary::<_, Empty>("/dtmgimp.Dtm/RegisterBranch", r)
            .await
            .map(drop)
    }
}

/// A request of `trans_type` with `retry_interval: 1` and the given steps JSON and payloads.
fn request(gid: &str, trans_type: &str, steps: Value, payloads: &[&[u8]]) -> DtmRequest {
    DtmRequest {
        gid: gid.into(),
        trans_type: trans_type.into(),
        trans_options: Some(DtmTransOptions {
            retry_interval: 1,
            ..Default::default()
        }),
        steps: if steps.is_null() {
            String::new()
        } else {
            steps.to_string()
        },
        bin_payloads: payloads.iter().map(|p| p.to_vec()).collect(),
        ..Default::default()
    }
}

/// A TCC branch registration over gRPC.
fn tcc_branch(
    gid: &str,
    branch_id: &str,
    confirm: &str,
    cancel: &str,
    body: &[u8],
) -> DtmBranchRequest {
    DtmBranchRequest {
        gid: gid.into(),
        trans_type: "tcc".into(),
        branch_id: branch_id.into(),
        op: "try".into(),
        data: HashMap::from([
            ("confirm".to_owned(), confirm.to_owned()),
            ("cancel".to_owned(), cancel.to_owned()),
        ]),
        busi_payload: body.to_vec(),
    }
}

/// A TC, its two APIs and a branch service.
struct Env {
    _tc: TcProcess,
    grpc: DtmGrpc,
    http: Dtm,
    busi: BusiServer,
}

impl Env {
    async fn start(args: &[&str]) -> Env {
        let mut all = vec!["--store", "memory"];
        all.extend_from_slice(args);
        let tc = TcProcess::start_with(&all);
        let grpc = DtmGrpc::new(tc.grpc_addr());
        let http = Dtm::new(&tc.dtm_url());
        let busi = BusiServer::start(b"\x08\x01").await;
        Env {
            _tc: tc,
            grpc,
            http,
            busi,
        }
    }
}

#[track_caller]
fn expect_code(r: Result<(), Status>, code: Code, why: &str) -> Status {
    match r {
        Ok(()) => panic!("{why}: expected {code:?}, got OK"),
        Err(s) => {
            assert_eq!(s.code(), code, "{why}: {s:?}");
            s
        }
    }
}

/// Asserts §4.1/§9's metadata of a gRPC branch call.
#[track_caller]
fn assert_metadata(call: &GrpcCall, gid: &str, trans_type: &str, branch: (&str, &str)) {
    assert_eq!(call.md("dtm-gid"), Some(gid), "{call:?}");
    assert_eq!(call.md("dtm-trans_type"), Some(trans_type), "{call:?}");
    assert_eq!(call.md("dtm-branch_id"), Some(branch.0), "{call:?}");
    assert_eq!(call.md("dtm-op"), Some(branch.1), "{call:?}");
    assert_eq!(call.md("dtm-dtm"), Some(""), "{call:?}");
}

/// The `bin_data` of the branch row (`branch_id`, `op`) of a `query` answer, decoded.
fn bin_data(q: &Value, branch_id: &str, op: &str) -> Vec<u8> {
    let b = q["branches"]
        .as_array()
        .and_then(|bs| {
            bs.iter()
                .find(|b| b["branch_id"] == branch_id && b["op"] == op)
        })
        .unwrap_or_else(|| panic!("no branch {branch_id}/{op} in {q:#}"));
    base64::engine::general_purpose::STANDARD
        .decode(b["bin_data"].as_str().unwrap_or_default())
        .expect("bin_data is base64")
}

// ---------------------------------------------------------------------------------------------
// Saga, msg, TCC over gRPC

#[tokio::test]
async fn a_grpc_saga_commits_with_raw_payloads_and_dtm_metadata() {
    let env = Env::start(&[]).await;
    let gid = env.grpc.new_gid().await;
    let b = &env.busi;
    let steps = json!([
        {"action": b.url("TransOut"), "compensate": b.url("TransOutRevert")},
        {"action": b.url("TransIn"), "compensate": b.url("TransInRevert")},
    ]);
    // Protobuf bytes, not JSON, and not UTF-8.
    let p1: &[u8] = &[0x08, 0x1e, 0xff, 0x00];
    let p2: &[u8] = &[0x08, 0x1f];
    let mut r = request(&gid, "saga", steps, &[p1, p2]);
    if let Some(o) = r.trans_options.as_mut() {
        o.branch_headers = HashMap::from([("x-tenant".to_owned(), "t1".to_owned())]);
    }
    env.grpc.submit(r).await.expect("Submit");

    let q = env.http.wait_status(&gid, "succeed").await;
    assert_eq!(q["transaction"]["protocol"], "grpc", "{q:#}");
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "prepared"),
            ("01", "action", "succeed"),
            ("02", "compensate", "prepared"),
            ("02", "action", "succeed"),
        ])
    );
    assert_eq!(bin_data(&q, "01", "action"), p1, "payload stored verbatim");
    let calls = b.calls();
    let methods: Vec<_> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(methods, ["TransOut", "TransIn"]);
    assert_metadata(&calls[0], &gid, "saga", ("01", "action"));
    assert_metadata(&calls[1], &gid, "saga", ("02", "action"));
    assert_eq!(calls[0].body, p1, "the raw payload is the request message");
    assert_eq!(calls[1].body, p2);
    assert_eq!(
        calls[0].md("x-tenant"),
        Some("t1"),
        "branch_headers as metadata"
    );
}

#[tokio::test]
async fn a_grpc_saga_rolls_back_when_a_branch_answers_aborted() {
    let env = Env::start(&[]).await;
    let gid = env.grpc.new_gid().await;
    let b = &env.busi;
    b.script("TransIn", [Status::aborted("FAILURE")]);
    let steps = json!([
        {"action": b.url("TransOut"), "compensate": b.url("TransOutRevert")},
        {"action": b.url("TransIn"), "compensate": b.url("TransInRevert")},
    ]);
    env.grpc
        .submit(request(&gid, "saga", steps, &[b"a", b"b"]))
        .await
        .expect("Submit");
    let q = env.http.wait_status(&gid, "failed").await;
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "succeed"),
            ("01", "action", "succeed"),
            ("02", "compensate", "succeed"),
            ("02", "action", "failed"),
        ])
    );
    let reason = q["transaction"]["rollback_reason"].as_str().unwrap_or("");
    assert!(reason.contains("FAILURE"), "{q:#}");
    let order: Vec<_> = b.calls().iter().map(|c| c.method.clone()).collect();
    assert_eq!(
        order,
        ["TransOut", "TransIn", "TransInRevert", "TransOutRevert"]
    );
    assert_metadata(
        &b.calls_to("TransInRevert")[0],
        &gid,
        "saga",
        ("02", "compensate"),
    );
}

#[tokio::test]
async fn other_grpc_errors_and_ongoing_are_retried_until_success() {
    let env = Env::start(&[]).await;
    let gid = env.grpc.new_gid().await;
    let b = &env.busi;
    // Unavailable and Internal are errors; FailedPrecondition and Aborted "ONGOING" are
    // ongoing: none of them rolls the saga back.
    b.script(
        "TransOut",
        [
            Status::unavailable("down"),
            Status::failed_precondition("not yet"),
            Status::aborted("ONGOING"),
            Status::internal("FAILURE in the text is not a FAILURE status"),
        ],
    );
    let steps = json!([{"action": b.url("TransOut"), "compensate": b.url("TransOutRevert")}]);
    env.grpc
        .submit(request(&gid, "saga", steps, &[b"x"]))
        .await
        .expect("Submit");
    let q = env.http.wait_status(&gid, "succeed").await;
    assert_eq!(b.calls_to("TransOut").len(), 5, "four retries, then OK");
    assert!(b.calls_to("TransOutRevert").is_empty());
    assert!(
        q["transaction"]["retry_count"].as_i64().unwrap_or(0) >= 4,
        "{q:#}"
    );
}

#[tokio::test]
async fn a_grpc_msg_runs_its_actions_after_submit() {
    let env = Env::start(&[]).await;
    let gid = env.grpc.new_gid().await;
    let b = &env.busi;
    b.script("TransIn", [Status::unavailable("down")]);
    let steps = json!([{"action": b.url("TransOut")}, {"action": b.url("TransIn")}]);
    let mut r = request(&gid, "msg", steps, &[b"o", b"i"]);
    r.query_prepared = b.url("QueryPrepared");
    env.grpc.prepare(r.clone()).await.expect("Prepare");
    assert_eq!(env.http.status(&gid).await.as_deref(), Some("prepared"));
    assert!(b.calls().is_empty(), "nothing runs before submit");
    env.grpc.submit(r).await.expect("Submit");
    env.http.wait_status(&gid, "succeed").await;
    assert_eq!(b.calls_to("TransOut").len(), 1);
    assert_eq!(b.calls_to("TransIn").len(), 2, "retried after Unavailable");
    assert_metadata(&b.calls_to("TransIn")[1], &gid, "msg", ("02", "action"));
    assert!(b.calls_to("QueryPrepared").is_empty());
}

#[tokio::test]
async fn a_grpc_tcc_confirms_on_submit_and_cancels_on_abort() {
    let env = Env::start(&[]).await;
    let b = &env.busi;
    // Commit: both confirms, newest registration first (§6.5), with the BusiPayload bytes.
    let gid = env.grpc.new_gid().await;
    env.grpc
        .prepare(request(&gid, "tcc", Value::Null, &[]))
        .await
        .expect("Prepare");
    for (id, body) in [("01", &[1u8, 0xff][..]), ("02", &[2u8][..])] {
        env.grpc
            .register_branch(tcc_branch(
                &gid,
                id,
                &b.url("Confirm"),
                &b.url("Cancel"),
                body,
            ))
            .await
            .expect("RegisterBranch");
    }
    b.script("Confirm", [Status::unavailable("retry me")]);
    env.grpc
        .submit(request(&gid, "tcc", Value::Null, &[]))
        .await
        .expect("Submit");
    let q = env.http.wait_status(&gid, "succeed").await;
    let confirms = b.calls_to("Confirm");
    let ids: Vec<_> = confirms.iter().map(GrpcCall::branch).collect();
    let want = |id: &str| (id.to_owned(), "confirm".to_owned());
    assert_eq!(ids, [want("02"), want("02"), want("01")], "{q:#}");
    assert_eq!(confirms[2].body, [1u8, 0xff], "BusiPayload sent verbatim");
    assert_metadata(&confirms[2], &gid, "tcc", ("01", "confirm"));
    assert!(b.calls_to("Cancel").is_empty());

    // Roll back: a try failed, the initiator aborts.
    let gid = env.grpc.new_gid().await;
    env.grpc
        .prepare(request(&gid, "tcc", Value::Null, &[]))
        .await
        .expect("Prepare");
    env.grpc
        .register_branch(tcc_branch(
            &gid,
            "01",
            &b.url("Confirm"),
            &b.url("Cancel"),
            b"t",
        ))
        .await
        .expect("RegisterBranch");
    let mut abort = request(&gid, "tcc", Value::Null, &[]);
    abort.rollback_reason = "try said FAILURE".into();
    env.grpc.abort(abort).await.expect("Abort");
    let q = env.http.wait_status(&gid, "failed").await;
    assert_eq!(q["transaction"]["rollback_reason"], "try said FAILURE");
    let cancels = b.calls_to("Cancel");
    assert_eq!(cancels.len(), 1);
    assert_metadata(&cancels[0], &gid, "tcc", ("01", "cancel"));
    // A finished transaction refuses more work with Aborted (DTM's FAILURE).
    let s = expect_code(
        env.grpc
            .submit(request(&gid, "tcc", Value::Null, &[]))
            .await,
        Code::Aborted,
        "submit of a failed tcc",
    );
    assert!(s.message().contains("failed"), "{s:?}");
}

// ---------------------------------------------------------------------------------------------
// Mixed front-ends, bad input

#[tokio::test]
async fn grpc_and_http_see_the_same_transactions() {
    let env = Env::start(&[]).await;
    let b = &env.busi;
    // HTTP prepare, gRPC registerBranch, HTTP submit: the confirm goes to a gRPC branch.
    let gid = env.http.new_gid().await;
    env.http
        .prepare(&json!({"gid": gid, "trans_type": "tcc"}))
        .await
        .expect_success();
    env.grpc
        .register_branch(tcc_branch(
            &gid,
            "01",
            &b.url("Confirm"),
            &b.url("Cancel"),
            b"{}",
        ))
        .await
        .expect("RegisterBranch over gRPC of an HTTP transaction");
    env.http
        .submit(&json!({"gid": gid, "trans_type": "tcc"}))
        .await
        .expect_success();
    env.http.wait_status(&gid, "succeed").await;
    assert_eq!(b.calls_to("Confirm").len(), 1);

    // An HTTP saga whose steps are gRPC methods (protocol "grpc", as dtmcli sends for them).
    let gid = env.http.new_gid().await;
    env.http
        .submit(&json!({
            "gid": gid, "trans_type": "saga", "protocol": "grpc",
            "steps": [{"action": b.url("Http2Grpc"), "compensate": ""}],
            "payloads": ["{\"amount\":1}"],
        }))
        .await
        .expect_success();
    env.http.wait_status(&gid, "succeed").await;
    assert_eq!(b.calls_to("Http2Grpc")[0].body, b"{\"amount\":1}");

    // A gRPC prepare is visible over HTTP, and an HTTP abort ends it.
    let gid = env.grpc.new_gid().await;
    env.grpc
        .prepare(request(&gid, "tcc", Value::Null, &[]))
        .await
        .expect("Prepare");
    let q = env.http.query(&gid).await;
    assert_eq!(q["transaction"]["status"], "prepared", "{q:#}");
    assert_eq!(q["transaction"]["trans_type"], "tcc");
    env.http
        .abort(&json!({"gid": gid, "trans_type": "tcc"}))
        .await
        .expect_success();
    env.http.wait_status(&gid, "failed").await;
    // … and gRPC sees the HTTP abort: prepare again is a conflict.
    expect_code(
        env.grpc
            .prepare(request(&gid, "tcc", Value::Null, &[]))
            .await,
        Code::Aborted,
        "prepare of a failed transaction",
    );
}

#[tokio::test]
async fn bad_grpc_requests_are_invalid_arguments() {
    let env = Env::start(&[]).await;
    let g = &env.grpc;
    let b = &env.busi;
    let s = expect_code(
        g.submit(request("g-bad-1", "sagas", Value::Null, &[]))
            .await,
        Code::InvalidArgument,
        "unknown trans type",
    );
    assert!(s.message().contains("trans_type"), "{s:?}");
    let mut r = request("g-bad-2", "saga", Value::Null, &[]);
    r.steps = "[{\"action\":".into();
    let s = expect_code(g.submit(r).await, Code::InvalidArgument, "malformed Steps");
    assert!(s.message().contains("Steps"), "{s:?}");
    expect_code(
        g.submit(request("a b", "saga", json!([]), &[])).await,
        Code::InvalidArgument,
        "gid with a space",
    );
    let steps = json!([{"action": "no-port/busi.Busi/X"}]);
    expect_code(
        g.submit(request("g-bad-3", "saga", steps, &[b"x"])).await,
        Code::InvalidArgument,
        "a step URL that is neither http nor host:port/pkg.Service/Method",
    );
    let steps = json!([{"action": b.url("A")}, {"action": b.url("B")}]);
    expect_code(
        g.submit(request("g-bad-4", "saga", steps, &[b"x"])).await,
        Code::InvalidArgument,
        "two steps, one payload",
    );
    expect_code(
        g.register_branch(DtmBranchRequest {
            gid: "g-bad-5".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "registerBranch without branch id",
    );
    expect_code(
        g.abort(request("g-unknown", "tcc", Value::Null, &[])).await,
        Code::Internal,
        "abort of an unknown gid (DTM: a plain error)",
    );
    let r: Result<Empty, Status> = g
        .unary(
            "/dtmgimp.Dtm/PrepareWorkflow",
            request("g-w", "workflow", Value::Null, &[]),
        )
        .await;
    assert_eq!(r.err().map(|s| s.code()), Some(Code::Unimplemented));
    for gid in ["g-bad-1", "g-bad-2", "g-bad-3", "g-bad-4"] {
        assert_eq!(env.http.status(gid).await, None, "{gid} was not stored");
    }
}

// ---------------------------------------------------------------------------------------------
// etcd (a real one per test: seata_it::etcd)

#[tokio::test]
async fn the_grpc_listener_is_registered_in_etcd_until_shutdown() {
    let etcd = Etcd::start().await;
    let mut tc = TcProcess::start_with(&[
        "--store",
        "memory",
        "--etcd",
        etcd.addr(),
        "--etcd-key",
        "dtmservice",
    ]);
    let deadline = tokio::time::Instant::now() + WAIT;
    let kvs = loop {
        let kvs = etcd.prefix("dtmservice/").await;
        if !kvs.is_empty() {
            break kvs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no key under dtmservice/ after {WAIT:?}; TC log:\n{}",
            tc.log()
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(kvs.len(), 1, "{kvs:?}");
    let (key, value) = &kvs[0];
    let lease = key.strip_prefix("dtmservice/").unwrap_or_default();
    assert!(
        !lease.is_empty() && lease.chars().all(|c| c.is_ascii_digit()),
        "key <etcd-key>/<lease id in decimal>: {key}"
    );
    assert_eq!(
        value,
        tc.grpc_addr(),
        "value: the gRPC listener's host:port"
    );
    // What a go-zero client does with it: dial the address and call the service.
    let gid = DtmGrpc::new(value).new_gid().await;
    assert!(!gid.is_empty());

    // Waited for off the runtime, which keeps serving this test's client connections (the
    // TC's graceful stop waits for them to close).
    let (tc, clean) = tokio::task::spawn_blocking(move || {
        let clean = tc.terminate();
        (tc, clean)
    })
    .await
    .expect("terminate");
    assert!(clean, "clean exit; log:\n{}", tc.log());
    let left = etcd.prefix("dtmservice/").await;
    assert!(
        left.is_empty(),
        "the lease is revoked on shutdown: {left:?}"
    );
}

#[tokio::test]
async fn an_etcd_branch_url_is_resolved_through_etcd() {
    let etcd = Etcd::start().await;
    let env = Env::start(&[]).await;
    let b = &env.busi;
    etcd.put("busi.rpc/7587", b.addr()).await;
    let gid = env.grpc.new_gid().await;
    let url = |m: &str| format!("etcd://{}/busi.rpc/busi.Busi/{m}", etcd.addr());
    let steps = json!([{"action": url("TransOut"), "compensate": url("TransOutRevert")}]);
    env.grpc
        .submit(request(&gid, "saga", steps, &[b"e"]))
        .await
        .expect("Submit");
    let q = env.http.wait_status(&gid, "succeed").await;
    let calls = b.calls_to("TransOut");
    assert_eq!(calls.len(), 1, "{q:#}");
    assert_metadata(&calls[0], &gid, "saga", ("01", "action"));

    // A service with no address registered is an error to retry, not a rollback.
    let gid = env.grpc.new_gid().await;
    let missing = format!("etcd://{}/nobody.rpc/busi.Busi/TransOut", etcd.addr());
    env.grpc
        .submit(request(&gid, "saga", json!([{"action": missing}]), &[b"e"]))
        .await
        .expect("Submit");
    let q = env
        .http
        .wait_until(&gid, "a retried call", |q| {
            q["transaction"]["retry_count"].as_i64().unwrap_or(0) >= 1
        })
        .await;
    assert_eq!(q["transaction"]["status"], "submitted", "{q:#}");
}
