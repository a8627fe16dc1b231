//! Protocol-level test clients: a TM connection and a scriptable RM that records every
//! phase-two request the TC pushes and answers as the test says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use seata_protocol::rpc::{
    NoRequests, Registration, RequestHandler, RpcHandle, TcClient, TcClientConfig,
};
use seata_protocol::{
    BranchCommitResponse, BranchRegisterRequest, BranchRegisterResponse, BranchRollbackResponse,
    BranchStatus, BranchType, GlobalBeginRequest, GlobalBeginResponse, GlobalCommitRequest,
    GlobalCommitResponse, GlobalLockQueryRequest, GlobalLockQueryResponse, GlobalRollbackRequest,
    GlobalRollbackResponse, GlobalStatus, GlobalStatusRequest, GlobalStatusResponse, Message,
    TxResult,
};
use tokio::sync::Notify;

/// Phase two kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// BranchCommitRequest.
    Commit,
    /// BranchRollbackRequest.
    Rollback,
}

/// One phase-two request the TC sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseTwoCall {
    /// Commit or rollback.
    pub phase: Phase,
    /// The transaction.
    pub xid: String,
    /// The branch.
    pub branch_id: i64,
    /// The resource.
    pub resource_id: String,
}

/// How the test RM answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// PhaseTwo_Committed / PhaseTwo_Rollbacked.
    Done,
    /// PhaseTwo_*Failed_Retryable.
    Retryable,
    /// PhaseTwo_*Failed_Unretryable.
    Unretryable,
}

#[derive(Debug)]
struct Recorder {
    calls: Mutex<Vec<PhaseTwoCall>>,
    answer: Mutex<Answer>,
    notify: Notify,
}

impl RequestHandler for Recorder {
    fn on_request(
        self: Arc<Self>,
        _conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        Box::pin(async move {
            let answer = *self.answer.lock().unwrap();
            let reply: Message = match msg {
                Message::BranchCommitRequest(r) => {
                    self.record(Phase::Commit, &r.xid, r.branch_id, &r.resource_id);
                    BranchCommitResponse {
                        result: TxResult::success(),
                        xid: r.xid,
                        branch_id: r.branch_id,
                        branch_status: match answer {
                            Answer::Done => BranchStatus::PhaseTwoCommitted,
                            Answer::Retryable => BranchStatus::PhaseTwoCommitFailedRetryable,
                            Answer::Unretryable => BranchStatus::PhaseTwoCommitFailedUnretryable,
                        },
                    }
                    .into()
                }
                Message::BranchRollbackRequest(r) => {
                    self.record(Phase::Rollback, &r.xid, r.branch_id, &r.resource_id);
                    BranchRollbackResponse {
                        result: TxResult::success(),
                        xid: r.xid,
                        branch_id: r.branch_id,
                        branch_status: match answer {
                            Answer::Done => BranchStatus::PhaseTwoRollbacked,
                            Answer::Retryable => BranchStatus::PhaseTwoRollbackFailedRetryable,
                            Answer::Unretryable => BranchStatus::PhaseTwoRollbackFailedUnretryable,
                        },
                    }
                    .into()
                }
                _ => return None,
            };
            Some(reply)
        })
    }
}

impl Recorder {
    fn record(&self, phase: Phase, xid: &str, branch_id: i64, resource_id: &str) {
        self.calls.lock().unwrap().push(PhaseTwoCall {
            phase,
            xid: xid.to_owned(),
            branch_id,
            resource_id: resource_id.to_owned(),
        });
        self.notify.notify_waiters();
    }
}

/// A TM connection registered with the TC at `addr`.
pub async fn tm(addr: &str) -> TcClient {
    let config = TcClientConfig::new(
        vec![addr.to_owned()],
        Registration::Tm {
            application_id: "it-tm".into(),
            transaction_service_group: "it_tx_group".into(),
        },
    );
    TcClient::connect(config, Arc::new(NoRequests), Duration::from_secs(10))
        .await
        .expect("TM connects")
}

/// Begins a global transaction and returns its XID.
pub async fn begin(tm: &TcClient, timeout_ms: i32) -> String {
    let r: GlobalBeginResponse = tm
        .request(GlobalBeginRequest {
            timeout: timeout_ms,
            transaction_name: "it".into(),
        })
        .await
        .expect("begin");
    assert!(r.result.is_success(), "begin failed: {:?}", r.result);
    r.xid
}

/// A scriptable RM.
#[derive(Debug, Clone)]
pub struct TestRm {
    /// Its TC connections.
    pub client: TcClient,
    recorder: Arc<Recorder>,
}

impl TestRm {
    /// Connects and registers as RM of `resources` under `application_id`.
    pub async fn connect(addr: &str, application_id: &str, resources: &[&str]) -> Self {
        let recorder = Arc::new(Recorder {
            calls: Mutex::new(Vec::new()),
            answer: Mutex::new(Answer::Done),
            notify: Notify::new(),
        });
        let config = TcClientConfig::new(
            vec![addr.to_owned()],
            Registration::Rm {
                application_id: application_id.into(),
                transaction_service_group: "it_tx_group".into(),
                resource_ids: resources.iter().map(|s| s.to_string()).collect(),
            },
        );
        let client = TcClient::connect(config, recorder.clone(), Duration::from_secs(10))
            .await
            .expect("RM connects");
        TestRm { client, recorder }
    }

    /// How to answer from now on.
    pub fn answer(&self, a: Answer) {
        *self.recorder.answer.lock().unwrap() = a;
    }

    /// Registers an AT branch.
    pub async fn register(
        &self,
        xid: &str,
        resource: &str,
        lock_key: &str,
    ) -> BranchRegisterResponse {
        self.register_typed(xid, BranchType::At, resource, lock_key)
            .await
    }

    /// Registers a branch of any type.
    pub async fn register_typed(
        &self,
        xid: &str,
        branch_type: BranchType,
        resource: &str,
        lock_key: &str,
    ) -> BranchRegisterResponse {
        self.client
            .request(BranchRegisterRequest {
                xid: xid.into(),
                branch_type,
                resource_id: resource.into(),
                lock_key: lock_key.into(),
                application_data: String::new(),
            })
            .await
            .expect("branch register answered")
    }

    /// Every phase-two request received so far.
    pub fn calls(&self) -> Vec<PhaseTwoCall> {
        self.recorder.calls.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the calls received, at most `timeout`; returns them.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[PhaseTwoCall]) -> bool,
    ) -> Vec<PhaseTwoCall> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.recorder.notify.notified();
            let calls = self.calls();
            if pred(&calls) {
                return calls;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let calls = self.calls();
                assert!(
                    pred(&calls),
                    "condition not reached in {timeout:?}; calls: {calls:#?}"
                );
                return calls;
            }
        }
    }
}

/// How long the polling helpers wait before failing the test (the TC's jobs tick every second;
/// a killed TC's transactions move after its lease).
pub const WAIT: Duration = Duration::from_secs(40);

/// Sends a request and waits for its answer, retrying while no TC answers (e.g. while the
/// client reconnects after a TC was killed); fails the test after [`WAIT`].
pub async fn call<T, M>(client: &TcClient, msg: impl Fn() -> M) -> T
where
    M: Into<Message>,
    T: TryFrom<Message, Error = Message>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client.request::<T>(msg()).await {
            Ok(r) => return r,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "no answer: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The TC's status of `xid`.
pub async fn status(tm: &TcClient, xid: &str) -> GlobalStatus {
    let r: GlobalStatusResponse = call(tm, || GlobalStatusRequest {
        xid: xid.into(),
        extra_data: String::new(),
    })
    .await;
    assert!(r.result.is_success(), "{:?}", r.result);
    r.global_status
}

/// Polls the status of `xid` until it is `want`, at most [`WAIT`].
pub async fn wait_status(tm: &TcClient, xid: &str, want: GlobalStatus) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = status(tm, xid).await;
        if s == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{xid} stuck in {s}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Global commit.
pub async fn commit(tm: &TcClient, xid: &str) -> GlobalCommitResponse {
    call(tm, || GlobalCommitRequest {
        xid: xid.into(),
        extra_data: String::new(),
    })
    .await
}

/// Global rollback.
pub async fn rollback(tm: &TcClient, xid: &str) -> GlobalRollbackResponse {
    call(tm, || GlobalRollbackRequest {
        xid: xid.into(),
        extra_data: String::new(),
    })
    .await
}

/// Whether no global transaction holds any row of `lock_key` on `resource` (a global lock
/// query without an XID: the TC's lock state as a client sees it).
pub async fn lockable(rm: &TestRm, resource: &str, lock_key: &str) -> bool {
    let r: GlobalLockQueryResponse = call(&rm.client, || GlobalLockQueryRequest {
        xid: String::new(),
        branch_type: BranchType::At,
        resource_id: resource.into(),
        lock_key: lock_key.into(),
        application_data: String::new(),
    })
    .await;
    assert!(r.result.is_success(), "{:?}", r.result);
    r.lockable
}
