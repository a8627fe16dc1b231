//! An independent client of DTM's gRPC API against seata-tc: Python programs (`tests/py/grpc_*.py`)
//! on stubs that grpcio-tools generated from DTM's proto (`tests/py/grpc_stubs/`, pinned
//! grpcio in `tests/py/requirements.txt`, venv from `scripts/python-env.sh`), driving one saga
//! and one TCC. The branches are a tonic service in the test process (`busi.Busi`, raw bytes)
//! that records every call and answers as scripted; outcomes are read over the HTTP `query`.
//!
//! The interpreter is `SEATA_TEST_PYTHON` (`scripts/test.sh` sets it); without it the tests run
//! `scripts/python-env.sh` themselves.

use std::time::Duration;

use seata_it::dtm::{branch_rows, rows, Dtm};
use seata_it::grpc_busi::{BusiServer, GrpcCall};
use seata_it::python::run_py;
use seata_it::tc::TcProcess;
use serde_json::Value;
use tonic::Status;

/// Deadline of one Python program.
const WAIT: Duration = Duration::from_secs(60);

/// A TC, its HTTP API (for `query`) and the branch service.
struct Env {
    tc: TcProcess,
    http: Dtm,
    busi: BusiServer,
}

impl Env {
    async fn start() -> Env {
        let tc = TcProcess::start_with(&["--store", "memory"]);
        let http = Dtm::new(&tc.dtm_url());
        let busi = BusiServer::start(b"").await;
        Env { tc, http, busi }
    }

    /// `host:port/busi.Busi`, the scripts' BUSI argument.
    fn busi(&self) -> String {
        format!("{}/busi.Busi", self.busi.addr())
    }

    fn script(&self, method: &str, answers: impl IntoIterator<Item = Status>) {
        self.busi.script(method, answers);
    }

    fn calls_to(&self, method: &str) -> Vec<GrpcCall> {
        self.busi.calls_to(method)
    }

    async fn run(&self, script: &str) -> (String, Value) {
        let out = run_py(script, &[self.tc.grpc_addr(), &self.busi()], WAIT).await;
        let gid = out["gid"].as_str().expect("gid").to_owned();
        (gid, out)
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
            (c.md_or_empty("dtm-gid"), c.md_or_empty("dtm-trans_type")),
            (gid.as_str(), "saga")
        );
        assert_eq!(
            (c.md_or_empty("dtm-branch_id"), c.md_or_empty("dtm-op")),
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
        assert_eq!(tries[0].md_or_empty("dtm-op"), "try");
        // The TC calls confirm with the registered BusiPayload, byte for byte.
        let confirms = env.calls_to(&format!("{name}Confirm"));
        assert_eq!(confirms.len(), 1, "{name}Confirm");
        assert_eq!(
            hex(&confirms[0].body),
            out["payloads"][name].as_str().unwrap()
        );
        assert_eq!(
            (
                confirms[0].md_or_empty("dtm-gid"),
                confirms[0].md_or_empty("dtm-op")
            ),
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
            .filter(|c| c.md_or_empty("dtm-gid") == gid)
            .collect();
        assert_eq!(cancels.len(), 1, "{name}");
        assert_eq!(cancels[0].md_or_empty("dtm-op"), "cancel");
    }
}
