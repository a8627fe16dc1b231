//! An in-process fake TC for unit tests: accepts TM registrations, begins transactions, and
//! answers commit/rollback by a script (a given answer, or dropping the connection to make the
//! outcome unknown), otherwise like a TC with no branches.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use seata_protocol::rpc::{spawn_tcp, RequestHandler, RpcConfig, RpcHandle};
use seata_protocol::{
    GlobalBeginResponse, GlobalCommitResponse, GlobalReportResponse, GlobalRollbackResponse,
    GlobalStatus, GlobalStatusResponse, Message, RegisterTmResponse, TransactionExceptionCode,
    TxResult,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{TmClient, TmConfig};

/// One scripted answer to a commit or rollback.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// Answer with this result and status (the session is left as it is).
    Reply(TxResult, GlobalStatus),
    /// Close the connection without answering: the client sees "outcome unknown".
    DropConnection,
}

impl Answer {
    pub(crate) fn failed() -> Self {
        Answer::Reply(
            TxResult::failed(
                TransactionExceptionCode::FailedLockGlobalTransaction,
                "busy",
            ),
            GlobalStatus::Begin,
        )
    }

    pub(crate) fn status(status: GlobalStatus) -> Self {
        Answer::Reply(TxResult::success(), status)
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    port: u16,
    next_id: AtomicI64,
    pub(crate) registrations: AtomicUsize,
    pub(crate) begins: AtomicUsize,
    pub(crate) commits: AtomicUsize,
    pub(crate) rollbacks: AtomicUsize,
    sessions: Mutex<HashMap<String, GlobalStatus>>,
    commit_script: Mutex<VecDeque<Answer>>,
    rollback_script: Mutex<VecDeque<Answer>>,
    begin_script: Mutex<VecDeque<Answer>>,
    /// When set, begin answers wait until it is notified.
    begin_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

impl State {
    pub(crate) fn script_commit(&self, answers: impl IntoIterator<Item = Answer>) {
        self.commit_script.lock().unwrap().extend(answers);
    }

    pub(crate) fn script_rollback(&self, answers: impl IntoIterator<Item = Answer>) {
        self.rollback_script.lock().unwrap().extend(answers);
    }

    pub(crate) fn script_begin(&self, answers: impl IntoIterator<Item = Answer>) {
        self.begin_script.lock().unwrap().extend(answers);
    }

    /// Holds every begin answer until a permit is added to the returned semaphore.
    pub(crate) fn hold_begins(&self) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        *self.begin_gate.lock().unwrap() = Some(gate.clone());
        gate
    }

    pub(crate) fn session(&self, xid: &str) -> Option<GlobalStatus> {
        self.sessions.lock().unwrap().get(xid).copied()
    }

    /// A new session, answered Success.
    fn begin(&self) -> Message {
        let id = 2_000_000_000 + self.next_id.fetch_add(1, Ordering::SeqCst);
        let xid = format!("127.0.0.1:{}:{id}", self.port);
        self.sessions
            .lock()
            .unwrap()
            .insert(xid.clone(), GlobalStatus::Begin);
        GlobalBeginResponse {
            result: TxResult::success(),
            xid,
            extra_data: String::new(),
        }
        .into()
    }

    /// Ends a Begin session with `to` (like the TC's phase two with no branches); returns the
    /// status to answer.
    fn end(&self, xid: &str, to: GlobalStatus) -> GlobalStatus {
        let mut sessions = self.sessions.lock().unwrap();
        match sessions.get(xid).copied() {
            None => GlobalStatus::Finished,
            Some(GlobalStatus::Begin) => {
                sessions.insert(xid.to_owned(), to);
                to
            }
            Some(other) => other,
        }
    }
}

/// The outcome of a scripted request: an answer or a dropped connection.
/// The next scripted answer if one is queued (a scripted drop closes `conn` and answers
/// nothing), else the normal one.
fn scripted_or(
    script: &Mutex<VecDeque<Answer>>,
    conn: &RpcHandle,
    reply: impl FnOnce(TxResult, GlobalStatus) -> Message,
    normal: impl FnOnce() -> Message,
) -> Option<Message> {
    match script.lock().unwrap().pop_front() {
        Some(Answer::DropConnection) => {
            conn.close();
            None
        }
        Some(Answer::Reply(result, status)) => Some(reply(result, status)),
        None => Some(normal()),
    }
}

impl RequestHandler for State {
    fn on_request(
        self: Arc<Self>,
        conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        let reply: Option<Message> = match msg {
            Message::RegisterTmRequest(_) => {
                self.registrations.fetch_add(1, Ordering::SeqCst);
                Some(
                    RegisterTmResponse {
                        identified: true,
                        version: "1.2.0".into(),
                    }
                    .into(),
                )
            }
            Message::GlobalBeginRequest(_) => {
                self.begins.fetch_add(1, Ordering::SeqCst);
                let gate = self.begin_gate.lock().unwrap().clone();
                let reply = scripted_or(
                    &self.begin_script,
                    &conn,
                    |result, _| {
                        GlobalBeginResponse {
                            result,
                            xid: String::new(),
                            extra_data: String::new(),
                        }
                        .into()
                    },
                    || self.begin(),
                );
                return Box::pin(async move {
                    if let Some(gate) = gate {
                        gate.acquire().await.unwrap().forget();
                    }
                    reply
                });
            }
            Message::GlobalCommitRequest(req) => {
                self.commits.fetch_add(1, Ordering::SeqCst);
                let reply = |result, global_status| {
                    GlobalCommitResponse {
                        result,
                        global_status,
                    }
                    .into()
                };
                scripted_or(&self.commit_script, &conn, reply, || {
                    reply(
                        TxResult::success(),
                        self.end(&req.xid, GlobalStatus::Committed),
                    )
                })
            }
            Message::GlobalRollbackRequest(req) => {
                self.rollbacks.fetch_add(1, Ordering::SeqCst);
                let reply = |result, global_status| {
                    GlobalRollbackResponse {
                        result,
                        global_status,
                    }
                    .into()
                };
                scripted_or(&self.rollback_script, &conn, reply, || {
                    reply(
                        TxResult::success(),
                        self.end(&req.xid, GlobalStatus::Rollbacked),
                    )
                })
            }
            Message::GlobalStatusRequest(req) => Some(
                GlobalStatusResponse {
                    result: TxResult::success(),
                    global_status: self.session(&req.xid).unwrap_or(GlobalStatus::Finished),
                }
                .into(),
            ),
            Message::GlobalReportRequest(req) => Some(
                GlobalReportResponse {
                    result: TxResult::success(),
                    global_status: req.global_status.unwrap_or(GlobalStatus::UnKnown),
                }
                .into(),
            ),
            _ => None,
        };
        Box::pin(async move { reply })
    }
}

/// A running fake TC; stops accepting and closes its connections on drop.
pub(crate) struct FakeTc {
    pub(crate) addr: String,
    pub(crate) state: Arc<State>,
    token: CancellationToken,
}

impl FakeTc {
    pub(crate) async fn start() -> FakeTc {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let state = Arc::new(State {
            port: local.port(),
            ..State::default()
        });
        let token = CancellationToken::new();
        let (s, t) = (state.clone(), token.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = t.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { return };
                spawn_tcp(stream, RpcConfig::server(), s.clone(), t.child_token()).unwrap();
            }
        });
        FakeTc {
            addr: local.to_string(),
            state,
            token,
        }
    }

    /// A test config for this TC: short reconnect delay, Seata's retry counts.
    pub(crate) fn config(&self) -> TmConfig {
        TmConfig {
            reconnect_min_ms: 10,
            reconnect_max_ms: 100,
            ..TmConfig::new("tm-test", vec![self.addr.clone()])
        }
    }

    pub(crate) async fn client(&self) -> TmClient {
        TmClient::connect(self.config()).await.unwrap()
    }
}

impl Drop for FakeTc {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
