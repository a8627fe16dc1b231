//! [`RpcHandle`]: the cloneable side of a connection that callers use to send requests and
//! await their responses. The socket itself is owned by the connection's tasks
//! ([`super::connection`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::error::RpcError;
use super::pending::{next_request_id, Pending};
use crate::frame::RpcFrame;
use crate::message::Message;

/// What the writer task is asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// A request whose waiter is already in the pending table under `id`.
    Request { id: i32, msg: Message },
    /// A request nobody waits for (e.g. UndoLogDelete).
    OneWay { msg: Message },
    /// A ready frame (a response, a PONG).
    Frame(RpcFrame),
}

/// State shared by a connection's tasks and handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) pending: Pending,
    pub(crate) closed: AtomicBool,
    pub(crate) token: CancellationToken,
    /// Handlers of inbound requests still running (their answers are awaited on close).
    pub(crate) inflight: TaskTracker,
    pub(crate) request_timeout: Duration,
}

/// A handle to one RPC connection. Cheap to clone; the connection stays open while its
/// tasks run, whether or not handles exist, until [`RpcHandle::close`] or the socket dies.
#[derive(Debug, Clone)]
pub struct RpcHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) shared: Arc<Shared>,
}

impl RpcHandle {
    /// Sends `msg` and waits for its response, at most the connection's request timeout.
    pub async fn call(&self, msg: impl Into<Message>) -> Result<Message, RpcError> {
        self.call_timeout(msg, self.shared.request_timeout).await
    }

    /// Sends `msg` and waits for its response, at most `timeout`.
    ///
    /// Errors: [`RpcError::NotSent`] when the connection was already closed (safe to retry
    /// elsewhere); [`RpcError::Timeout`] or [`RpcError::ConnectionLost`] when the request went out
    /// but no answer came (outcome unknown).
    pub async fn call_timeout(
        &self,
        msg: impl Into<Message>,
        timeout: Duration,
    ) -> Result<Message, RpcError> {
        if self.is_closed() {
            return Err(self.not_sent());
        }
        let id = next_request_id();
        let (tx, rx) = oneshot::channel();
        self.shared.pending.insert(id, tx);
        if self
            .tx
            .send(Command::Request {
                id,
                msg: msg.into(),
            })
            .await
            .is_err()
        {
            self.shared.pending.remove(id);
            return Err(self.not_sent());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            // The waiter was dropped without an answer: only teardown does that.
            Ok(Err(_)) => Err(RpcError::ConnectionLost {
                peer: self.shared.peer.to_string(),
            }),
            Err(_) => {
                self.shared.pending.remove(id);
                Err(RpcError::Timeout {
                    peer: self.shared.peer.to_string(),
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }

    /// Sends a request and converts the response to the expected message type.
    pub async fn request<T>(&self, msg: impl Into<Message>) -> Result<T, RpcError>
    where
        T: TryFrom<Message, Error = Message>,
    {
        let msg = msg.into();
        let sent = msg.name();
        let reply = self.call(msg).await?;
        super::error::expect_reply(sent, reply)
    }

    /// Sends a message that gets no response (Seata's one-way sends, e.g. UndoLogDelete).
    pub async fn send_oneway(&self, msg: impl Into<Message>) -> Result<(), RpcError> {
        if self.is_closed() {
            return Err(self.not_sent());
        }
        self.tx
            .send(Command::OneWay { msg: msg.into() })
            .await
            .map_err(|_| self.not_sent())
    }

    /// Queues a ready frame (used by the connection to answer requests and pings).
    pub(crate) async fn send_frame(&self, frame: RpcFrame) -> Result<(), RpcError> {
        self.tx
            .send(Command::Frame(frame))
            .await
            .map_err(|_| self.not_sent())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Our side's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// A number unique to this connection within the process.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// True once the connection is closing or closed: new requests fail with `NotSent`.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.shared.token.is_cancelled()
    }

    /// Closes the connection: stops reading, writes the answers of requests already being
    /// handled (within the shutdown grace), then shuts the socket.
    pub fn close(&self) {
        self.shared.token.cancel();
    }

    /// Completes when the connection has been closed (by either side).
    pub async fn closed(&self) {
        self.shared.token.cancelled().await;
    }

    /// Requests waiting for a response on this connection.
    pub fn pending_requests(&self) -> usize {
        self.shared.pending.len()
    }

    fn not_sent(&self) -> RpcError {
        RpcError::NotSent {
            peer: self.shared.peer.to_string(),
        }
    }
}
