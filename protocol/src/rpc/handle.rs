//! [`RpcHandle`]: the cloneable side of a connection that callers use to send requests and
//! await their responses. The socket's read half is owned by the connection's reader task;
//! its write half sits behind a lock shared by the writer task ([`super::connection`]) and
//! callers, who write their own frame when nobody else is writing and nothing is queued.
//! That saves the hand-off to the writer task, a thread wake-up on a multi-threaded runtime
//! and about a third of an idle round trip; under load frames queue and go out in batches.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use super::error::RpcError;
use super::pending::{next_request_id, Pending};
use crate::codec::{CodecError, SeataCodec};
use crate::frame::RpcFrame;
use crate::message::Message;

/// The write half of a connection, whatever the stream.
pub(crate) type FrameSink = FramedWrite<Box<dyn AsyncWrite + Send + Unpin>, SeataCodec>;

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
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) pending: Pending,
    pub(crate) closed: AtomicBool,
    pub(crate) token: CancellationToken,
    /// Cancelled once the writer has written its last frame and closed the write half.
    pub(crate) written_out: CancellationToken,
    /// Cancelled once the reader has stopped (after lingering for the peer to close).
    pub(crate) read_out: CancellationToken,
    /// Handlers of inbound requests still running (their answers are awaited on close).
    pub(crate) inflight: TaskTracker,
    pub(crate) request_timeout: Duration,
    /// Longest one write may wait for the peer to take bytes.
    pub(crate) write_timeout: Duration,
    /// The write half. Whoever holds it writes whole frames and flushes before letting go.
    pub(crate) sink: Mutex<FrameSink>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("local", &self.local)
            .field("pending", &self.pending)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// Why a frame written by its caller did not go out.
enum DirectError {
    /// The connection is closed; nothing was written.
    Closed,
    /// The frame cannot be encoded; nothing was written.
    Encode(RpcError),
    /// The socket failed, perhaps after part of the frame; the connection is being closed.
    Io,
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
        // One deadline for sending and answering: a peer that stops reading can hold up the
        // write (ours or the queue's) as long as it likes.
        let deadline = tokio::time::Instant::now() + timeout;
        let sent = tokio::time::timeout_at(deadline, async {
            match self.write_direct(RpcFrame::request(id, msg.into())).await {
                Err(RpcFrame {
                    body: Some(msg), ..
                }) => Ok(self.tx.send(Command::Request { id, msg }).await.is_ok()),
                Err(RpcFrame { body: None, .. }) | Ok(Err(DirectError::Closed)) => Ok(false),
                Ok(Ok(())) => Ok(true),
                Ok(Err(DirectError::Encode(e))) => Err(e),
                // Teardown answers the waiter (ConnectionLost: part may have been sent).
                Ok(Err(DirectError::Io)) => Ok(true),
            }
        })
        .await;
        match sent {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                self.shared.pending.remove(id);
                return Err(self.not_sent());
            }
            Ok(Err(e)) => {
                self.shared.pending.remove(id);
                return Err(e);
            }
            // Perhaps part of the frame went out.
            Err(_) => {
                self.shared.pending.remove(id);
                return Err(self.timed_out(timeout));
            }
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => reply,
            // The waiter was dropped without an answer: only teardown does that.
            Ok(Err(_)) => Err(RpcError::ConnectionLost {
                peer: self.shared.peer.to_string(),
            }),
            Err(_) => {
                self.shared.pending.remove(id);
                Err(self.timed_out(timeout))
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

    /// Queues a ready frame for the writer task. The reader task sends only this way: it
    /// must never wait on a peer that stops reading.
    pub(crate) async fn queue_frame(&self, frame: RpcFrame) -> Result<(), RpcError> {
        self.tx
            .send(Command::Frame(frame))
            .await
            .map_err(|_| self.not_sent())
    }

    /// Writes or queues a ready frame (the answer of a handled request).
    pub(crate) async fn send_frame(&self, frame: RpcFrame) -> Result<(), RpcError> {
        match self.write_direct(frame).await {
            Err(frame) => self.queue_frame(frame).await,
            Ok(Ok(())) => Ok(()),
            Ok(Err(DirectError::Encode(e))) => Err(e),
            Ok(Err(DirectError::Closed | DirectError::Io)) => Err(self.not_sent()),
        }
    }

    /// Writes `frame` from the caller's task, when the write half is free and nothing waits
    /// in the queue (frames queued earlier go first, and under load the writer task batches
    /// them). Gives the frame back when it must be queued instead.
    async fn write_direct(&self, frame: RpcFrame) -> Result<Result<(), DirectError>, RpcFrame> {
        if self.tx.capacity() != self.tx.max_capacity() {
            return Err(frame);
        }
        let Ok(mut sink) = self.shared.sink.try_lock() else {
            return Err(frame);
        };
        // Teardown marks the connection closed before it takes the write half to fail what
        // is pending, so a frame written here is either failed by it or not written at all.
        if self.shared.closed.load(Ordering::Acquire) {
            return Ok(Err(DirectError::Closed));
        }
        // Shutting down but not torn down yet: the writer task is writing the answers of the
        // requests still in flight during its grace, so the frame goes to it (refusing it
        // here dropped the answer of every request in flight at SIGTERM).
        if self.shared.token.is_cancelled() {
            return Err(frame);
        }
        // A peer that has not taken a frame within the write timeout is not reading: the
        // connection is given up rather than held by a stuck writer.
        let written = tokio::time::timeout(self.shared.write_timeout, async {
            sink.feed(&frame).await?;
            SinkExt::<&RpcFrame>::flush(&mut *sink).await
        })
        .await;
        drop(sink);
        Ok(match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(CodecError::Protocol(p))) => Err(DirectError::Encode(RpcError::Encode(
                CodecError::Protocol(p),
            ))),
            Ok(Err(e)) => {
                info!(peer = %self.shared.peer, error = %e, "write failed; closing connection");
                self.close();
                Err(DirectError::Io)
            }
            Err(_) => {
                info!(peer = %self.shared.peer, timeout_ms = u64::try_from(self.shared.write_timeout.as_millis()).unwrap_or(u64::MAX),
                    "closing connection: the peer took no bytes within the write timeout");
                self.close();
                Err(DirectError::Io)
            }
        })
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

    /// Completes when the connection is gone for good: closed, the answers of its shutdown
    /// grace written, and the peer's side closed too (or a second passed). A server waits for
    /// this before its process exits, or the exit cuts those answers off.
    pub async fn finished(&self) {
        self.shared.written_out.cancelled().await;
        self.shared.read_out.cancelled().await;
    }

    /// Requests waiting for a response on this connection.
    pub fn pending_requests(&self) -> usize {
        self.shared.pending.len()
    }

    fn timed_out(&self, timeout: Duration) -> RpcError {
        RpcError::Timeout {
            peer: self.shared.peer.to_string(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn not_sent(&self) -> RpcError {
        RpcError::NotSent {
            peer: self.shared.peer.to_string(),
        }
    }
}
