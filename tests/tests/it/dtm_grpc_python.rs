//! An independent client of DTM's gRPC API against seata-tc: Python programs (`tests/py/grpc_*.py`)
//! on stubs that grpcio-tools generated from DTM's proto (`tests/py/grpc_stubs/`, pinned
//! grpcio in `tests/py/requirements.txt`, venv from `scripts/python-env.sh`), driving one saga
//! and one TCC. The branches are a tonic service in the test process (`busi.Busi`, raw bytes)
//! that records every call and answers as scripted; outcomes are read over the HTTP `query`.
//!
//! The interpreter is `SEATA_TEST_PYTHON` (`scripts/test.sh` sets it); without it the tests run
//! `scripts/python-env.sh` themselves.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use seata_it::dtm::{branch_rows, rows, Dtm};
use seata_it::python::run_py;
use seata_it::tc::TcProcess;
use serde_json::Value;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

/// Deadline of one Python program.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The branch service

/// Bytes in, bytes out.
#[derive(Debug, Default, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// One call of `busi.Busi`.
#[derive(Debug, Clone)]
struct GrpcCall {
    method: String,
    metadata: HashMap<String, String>,
    body: Vec<u8>,
}

impl GrpcCall {
    fn md(&self, key: &str) -> &str {
        self.metadata.get(key).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
struct Recorded {
    calls: Mutex<Vec<GrpcCall>>,
    scripts: Mutex<HashMap<String, VecDeque<Status>>>,
}

#[derive(Clone)]
struct Busi(Arc<Recorded>);

impl NamedService for Busi {
    const NAME: &'static str = "busi.Busi";
}

impl Service<http::Request<tonic::body::Body>> for Busi {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
        let unary = Unary {
            rec: self.0.clone(),
            method,
        };
        Box::pin(async move { Ok(tonic::server::Grpc::new(RawCodec).unary(unary, req).await) })
    }
}

struct Unary {
    rec: Arc<Recorded>,
    method: String,
}

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, Status>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let metadata = req
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect();
        self.rec.calls.lock().unwrap().push(GrpcCall {
            method: self.method.clone(),
            metadata,
            body: req.into_inner().to_vec(),
        });
        let scripted = self
            .rec
            .scripts
            .lock()
            .unwrap()
            .get_mut(&self.method)
            .and_then(VecDeque::pop_front);
        Box::pin(async move {
            match scripted {
                Some(status) => Err(status),
                None => Ok(tonic::Response::new(Bytes::new())),
            }
        })
    }
}

/// A TC, its HTTP API (for `query`) and the branch service.
struct Env {
    tc: TcProcess,
    http: Dtm,
    addr: String,
    rec: Arc<Recorded>,
    task: tokio::task::JoinHandle<()>,
}

impl Env {
    async fn start() -> Env {
        let tc = TcProcess::start_with(&["--store", "memory"]);
        let http = Dtm::new(&tc.dtm_url());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let rec = Arc::new(Recorded::default());
        let svc = Busi(rec.clone());
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Env {
            tc,
            http,
            addr,
            rec,
            task,
        }
    }

    /// `host:port/busi.Busi`, the scripts' BUSI argument.
    fn busi(&self) -> String {
        format!("{}/busi.Busi", self.addr)
    }

    fn script(&self, method: &str, answers: impl IntoIterator<Item = Status>) {
        self.rec
            .scripts
            .lock()
            .unwrap()
            .entry(method.to_owned())
            .or_default()
            .extend(answers);
    }

    fn calls_to(&self, method: &str) -> Vec<GrpcCall> {
        self.rec
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    async fn run(&self, script: &str) -> (String, Value) {
        let out = run_py(script, &[self.tc.grpc_addr(), &self.busi()], WAIT).await;
        let gid = out["gid"].as_str().expect("gid").to_owned();
        (gid, out)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn python_grpc_saga_commits_and_its_binary_payloads_arrive_verbatim() {
    let env = Env::start().await;
    // One transient error on TransIn: retried by the TC, still within WaitResult's round or
    // the next one.
    env.script("TransIn", [Status::unavailable("restarting")]);
    let (gid, out) = env.run("grpc_saga.py").await;
    let q = env.http.wait_status(&gid, "succeed").await;
    assert!(
        ["SUCCESS", "FAILED_PRECONDITION"].contains(&out["outcome"].as_str().unwrap()),
        "{out}"
    );
    assert_eq!(
        branch_rows(&q),
        rows(&[
            ("01", "compensate", "prepared"),
            ("01", "action", "succeed"),
            ("02", "compensate", "prepared"),
            ("02", "action", "succeed"),
        ])
    );
    for (method, branch_id) in [("TransOut", "01"), ("TransIn", "02")] {
        let calls = env.calls_to(method);
        assert!(!calls.is_empty(), "{method} not called");
        let c = &calls[0];
        assert_eq!(hex(&c.body), out["payloads"][method].as_str().unwrap());
        assert_eq!(
            (c.md("dtm-gid"), c.md("dtm-trans_type")),
            (gid.as_str(), "saga")
        );
        assert_eq!(
            (c.md("dtm-branch_id"), c.md("dtm-op")),
            (branch_id, "action")
        );
    }
    assert_eq!(env.calls_to("TransIn").len(), 2, "retried once");
    assert!(env.calls_to("TransOutRevert").is_empty());
}

#[tokio::test]
async fn python_grpc_tcc_commits_and_a_refused_try_rolls_back() {
    let env = Env::start().await;
    let (gid, out) = env.run("grpc_tcc.py").await;
    assert_eq!(out["outcome"], "submitted", "{out}");
    env.http.wait_status(&gid, "succeed").await;
    for name in ["TransOut", "TransIn"] {
        let tries = env.calls_to(&format!("{name}Try"));
        assert_eq!(tries.len(), 1);
        assert_eq!(tries[0].md("dtm-op"), "try");
        // The TC calls confirm with the registered BusiPayload, byte for byte.
        let confirms = env.calls_to(&format!("{name}Confirm"));
        assert_eq!(confirms.len(), 1, "{name}Confirm");
        assert_eq!(
            hex(&confirms[0].body),
            out["payloads"][name].as_str().unwrap()
        );
        assert_eq!(
            (confirms[0].md("dtm-gid"), confirms[0].md("dtm-op")),
            (gid.as_str(), "confirm")
        );
        assert!(env.calls_to(&format!("{name}Cancel")).is_empty());
    }

    // Second transaction: TransIn's try answers Aborted (FAILURE): the script aborts, the TC
    // cancels both registered branches.
    env.script("TransInTry", [Status::aborted("FAILURE")]);
    let (gid, out) = env.run("grpc_tcc.py").await;
    assert_eq!(out["outcome"], "aborted: ABORTED", "{out}");
    env.http.wait_status(&gid, "failed").await;
    for name in ["TransOutCancel", "TransInCancel"] {
        let cancels: Vec<GrpcCall> = env
            .calls_to(name)
            .into_iter()
            .filter(|c| c.md("dtm-gid") == gid)
            .collect();
        assert_eq!(cancels.len(), 1, "{name}");
        assert_eq!(cancels[0].md("dtm-op"), "cancel");
    }
}
