//! Protocol-level test clients: a TM connection and a scriptable RM that records every
//! phase-two request the TC pushes and answers as the test says.

use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Work a test RM does on a phase-two request before it answers (e.g. a real AT undo); the
/// status it returns replaces the scripted [`Answer`].
pub type PhaseTwoWork = Arc<dyn Fn(PhaseTwoCall) -> BoxFuture<'static, BranchStatus> + Send + Sync>;

struct Recorder {
    calls: Mutex<Vec<PhaseTwoCall>>,
    answer: Mutex<Answer>,
    notify: Notify,
    work: Mutex<Option<PhaseTwoWork>>,
    /// How many of the next phase-two requests get no answer: the connection that carried
    /// each is closed after the work is done, as when an RM dies before it answers.
    die: AtomicUsize,
    /// How many of the next phase-two requests are recorded and never answered while the
    /// connection stays up (the TC waits until its RPC timeout).
    withhold: AtomicUsize,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("calls", &self.calls)
            .field("answer", &self.answer)
            .finish_non_exhaustive()
    }
}

/// Takes one from `n` if it is above zero.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl RequestHandler for Recorder {
    fn on_request(
        self: Arc<Self>,
        conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        Box::pin(async move {
            let call = match &msg {
                Message::BranchCommitRequest(r) => Some((
                    Phase::Commit,
                    r.xid.clone(),
                    r.branch_id,
                    r.resource_id.clone(),
                )),
                Message::BranchRollbackRequest(r) => Some((
                    Phase::Rollback,
                    r.xid.clone(),
                    r.branch_id,
                    r.resource_id.clone(),
                )),
                _ => None,
            }
            .map(|(phase, xid, branch_id, resource_id)| PhaseTwoCall {
                phase,
                xid,
                branch_id,
                resource_id,
            });
            let work = self.work.lock().unwrap().clone();
            let worked = match (work, &call) {
                (Some(work), Some(c)) => Some(work(c.clone()).await),
                _ => None,
            };
            if let Some(c) = &call {
                let die = take_one(&self.die);
                if die || take_one(&self.withhold) {
                    self.record(c.phase, &c.xid, c.branch_id, &c.resource_id);
                    if die {
                        conn.close();
                    }
                    return None;
                }
            }
            let answer = *self.answer.lock().unwrap();
            let reply: Message = match msg {
                Message::BranchCommitRequest(r) => {
                    self.record(Phase::Commit, &r.xid, r.branch_id, &r.resource_id);
                    BranchCommitResponse {
                        result: TxResult::success(),
                        xid: r.xid,
                        branch_id: r.branch_id,
                        branch_status: worked.unwrap_or(match answer {
                            Answer::Done => BranchStatus::PhaseTwoCommitted,
                            Answer::Retryable => BranchStatus::PhaseTwoCommitFailedRetryable,
                            Answer::Unretryable => BranchStatus::PhaseTwoCommitFailedUnretryable,
                        }),
                    }
                    .into()
                }
                Message::BranchRollbackRequest(r) => {
                    self.record(Phase::Rollback, &r.xid, r.branch_id, &r.resource_id);
                    BranchRollbackResponse {
                        result: TxResult::success(),
                        xid: r.xid,
                        branch_id: r.branch_id,
                        branch_status: worked.unwrap_or(match answer {
                            Answer::Done => BranchStatus::PhaseTwoRollbacked,
                            Answer::Retryable => BranchStatus::PhaseTwoRollbackFailedRetryable,
                            Answer::Unretryable => BranchStatus::PhaseTwoRollbackFailedUnretryable,
                        }),
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
            work: Mutex::new(None),
            die: AtomicUsize::new(0),
            withhold: AtomicUsize::new(0),
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

    /// Runs `work` on every phase-two request from now on, before answering; its status is
    /// the answer.
    pub fn work(&self, work: PhaseTwoWork) {
        *self.recorder.work.lock().unwrap() = Some(work);
    }

    /// The next `n` phase-two requests are worked (see [`TestRm::work`]) and recorded, then
    /// their connection is closed without an answer: an RM that dies after doing its part. The
    /// client reconnects and registers again by itself, as a restarted RM would.
    pub fn die_before_answering(&self, n: usize) {
        self.recorder.die.store(n, Ordering::SeqCst);
    }

    /// The next `n` phase-two requests are worked and recorded but never answered; the
    /// connection stays up.
    pub fn withhold(&self, n: usize) {
        self.recorder.withhold.store(n, Ordering::SeqCst);
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
