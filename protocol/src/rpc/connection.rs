//! One RPC connection = two tasks over a split socket: a reader that resolves responses and
//! dispatches requests, and a writer that drains the queue of frames, batches and flushes (a
//! caller finding the write half idle writes its own frame, see [`super::handle`]).
//! Splitting them means a peer that stops reading can never stop us from reading its answers.
//!
//! Inbound requests are handed to a [`RequestHandler`] in their own task, so slow phase-two
//! work never blocks the connection; registrations are handled inline, in order, because what
//! follows them depends on them.
//!
//! Bounds against a peer that sends faster than it reads: at most `max_inflight` requests are
//! handled at once (the reader stops reading until one is answered), the writer's queue is
//! bounded, and every write gives up after `write_timeout`, which closes the connection and
//! drops the answers still queued for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, trace, warn};

use super::config::RpcConfig;
use super::error::RpcError;
use super::handle::{Command, RpcHandle, Shared};
use super::pending::{next_request_id, Pending};
use crate::codec::SeataCodec;
use crate::frame::RpcFrame;
use crate::message::{failed_member, MergeResultMessage, MergedWarpMessage, Message};
use crate::types::MessageType;

/// Serves requests a peer sends on a connection.
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles one request. Return the response to send, or `None` for one-way messages.
    /// Sub-requests of a MergedWarpMessage arrive here one by one; each must be answered.
    fn on_request(
        self: Arc<Self>,
        conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>>;

    /// Called once when the connection has closed.
    fn on_closed(self: Arc<Self>, _conn: &RpcHandle) {}
}

/// A handler for connections that expect no requests: it logs and ignores them.
#[derive(Debug, Default)]
pub struct NoRequests;

impl RequestHandler for NoRequests {
    fn on_request(
        self: Arc<Self>,
        conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        warn!(peer = %conn.peer_addr(), message = msg.name(), "unexpected request ignored");
        Box::pin(async { None })
    }
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Connects to `addr` (10 s connect timeout, as Seata) and starts the connection's tasks.
pub async fn connect(
    addr: &str,
    config: RpcConfig,
    handler: Arc<dyn RequestHandler>,
) -> Result<RpcHandle, RpcError> {
    let connect = TcpStream::connect(addr);
    let stream = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .map_err(|_| RpcError::Connect {
            addr: addr.to_owned(),
            reason: "timed out after 10 s".into(),
        })?
        .map_err(|e| RpcError::Connect {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })?;
    spawn_tcp(stream, config, handler, CancellationToken::new()).map_err(|e| RpcError::Connect {
        addr: addr.to_owned(),
        reason: e.to_string(),
    })
}

/// Starts the tasks of a connection over an accepted or connected TCP stream. Cancelling
/// `token` (or a parent of it) closes the connection.
pub fn spawn_tcp(
    stream: TcpStream,
    config: RpcConfig,
    handler: Arc<dyn RequestHandler>,
    token: CancellationToken,
) -> std::io::Result<RpcHandle> {
    // Requests are small and latency-bound: never wait for Nagle.
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr()?;
    let local = stream.local_addr()?;
    let (rd, wr) = stream.into_split();
    Ok(spawn(rd, wr, peer, local, config, handler, token))
}

/// Starts the reader and writer tasks over any byte stream halves.
pub fn spawn<R, W>(
    rd: R,
    wr: W,
    peer: SocketAddr,
    local: SocketAddr,
    config: RpcConfig,
    handler: Arc<dyn RequestHandler>,
    token: CancellationToken,
) -> RpcHandle
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let codec = SeataCodec::new(config.max_frame_len);
    let read_codec = SeataCodec::with_budget(config.max_frame_len, config.frame_budget.clone());
    let shared = Arc::new(Shared {
        id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
        peer,
        local,
        pending: Pending::default(),
        closed: AtomicBool::new(false),
        token,
        written_out: CancellationToken::new(),
        read_out: CancellationToken::new(),
        inflight: TaskTracker::new(),
        request_timeout: config.request_timeout,
        write_timeout: config.write_timeout,
        sink: Mutex::new(FramedWrite::new(Box::new(wr), codec.clone())),
    });
    let handle = RpcHandle { tx, shared };
    let reader = FramedRead::new(rd, read_codec);
    tokio::spawn(read_loop(reader, handle.clone(), config.clone(), handler));
    tokio::spawn(write_loop(rx, handle.clone(), config));
    handle
}

async fn read_loop<R>(
    mut frames: FramedRead<R, SeataCodec>,
    conn: RpcHandle,
    config: RpcConfig,
    handler: Arc<dyn RequestHandler>,
) where
    R: AsyncRead + Unpin,
{
    let token = conn.shared.token.clone();
    let peer = conn.peer_addr();
    let slots = Arc::new(Semaphore::new(config.max_inflight.max(1)));
    // Closing (shutdown, or the writer gave up): reading goes on until the writer is done, so
    // answers to our own requests still arrive and a request that arrives meanwhile gets a
    // failed answer (nothing done) instead of vanishing unread with its outcome unknown.
    let mut closing = false;
    // Once the writer has sent its FIN, what still arrives is read and dropped until the peer
    // closes too (or `LINGER`): a socket closed with unread bytes sends a reset, and a reset
    // can make the peer's kernel discard answers it has received but not yet handed over.
    let mut linger_until = None;
    loop {
        let next = tokio::select! {
            biased;
            _ = conn.shared.written_out.cancelled(), if linger_until.is_none() => {
                linger_until = Some(tokio::time::Instant::now() + LINGER.min(config.shutdown_grace));
                continue;
            }
            _ = token.cancelled(), if !closing => {
                closing = true;
                continue;
            }
            _ = sleep_until_some(linger_until) => break,
            next = read_next(&mut frames, &config) => next,
        };
        match next {
            ReadOutcome::Frame(_) if linger_until.is_some() => {}
            ReadOutcome::Frame(frame) if closing => refuse(frame, &conn).await,
            ReadOutcome::Frame(frame) => {
                if let Err(reason) =
                    on_frame(frame, &conn, &handler, &slots, config.max_inflight).await
                {
                    warn!(%peer, reason, "closing connection");
                    break;
                }
            }
            ReadOutcome::Eof => {
                info!(%peer, "connection closed by peer");
                break;
            }
            ReadOutcome::Idle => {
                info!(%peer, "closing connection: nothing read within the idle timeout");
                break;
            }
            ReadOutcome::Error(e) if e.is_peer_reset() => {
                info!(%peer, error = %e, "connection closed by peer");
                break;
            }
            ReadOutcome::Error(e @ crate::codec::CodecError::MemoryBudget { .. }) => {
                warn!(%peer, error = %e, "closing connection: frame memory budget spent");
                break;
            }
            ReadOutcome::Error(e) => {
                // Protocol v1 cannot resynchronise after a bad frame: drop the connection.
                warn!(%peer, error = %e, "closing connection after a bad frame");
                break;
            }
        }
    }
    token.cancel();
    conn.shared.read_out.cancel();
    handler.on_closed(&conn);
}

/// Longest a closed connection is still read for the peer to close its side.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Sleeps until `deadline`; never completes without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A frame read while the connection closes: responses and heartbeats as usual, a request
/// answered with its failed answer (a one-way message, which has none, is dropped).
async fn refuse(frame: RpcFrame, conn: &RpcHandle) {
    match frame.message_type {
        // Seata clients send merged batches one-way; their members still wait for answers.
        MessageType::Request | MessageType::RequestOneway => {
            let refusal = frame.body.as_ref().and_then(|m| {
                debug!(peer = %conn.peer_addr(), request = m.name(), "request refused: connection closing");
                m.refusal(CLOSING)
            });
            if let Some(reply) = refusal {
                let _ = conn.queue_frame(RpcFrame::response_to(&frame, reply)).await;
            }
        }
        MessageType::HeartbeatResponse => {}
        MessageType::HeartbeatRequest => {
            let _ = conn.queue_frame(RpcFrame::pong_to(&frame)).await;
        }
        MessageType::Response => complete(frame, conn),
    }
}

/// Hands a response to the request waiting for it.
fn complete(frame: RpcFrame, conn: &RpcHandle) {
    let Some(body) = frame.body else {
        return;
    };
    if !conn.shared.pending.complete(frame.request_id, body) {
        debug!(
            id = frame.request_id,
            "response nobody waits for (late or unknown id)"
        );
    }
}

/// Why a request read while closing was refused.
const CLOSING: &str = "the connection is closing (shutdown or dropped); the request was not \
     handled, nothing was done: send it again";

enum ReadOutcome {
    Frame(RpcFrame),
    Eof,
    Idle,
    Error(crate::codec::CodecError),
}

async fn read_next<R: AsyncRead + Unpin>(
    frames: &mut FramedRead<R, SeataCodec>,
    config: &RpcConfig,
) -> ReadOutcome {
    let next = match config.read_idle_timeout {
        Some(idle) => match tokio::time::timeout(idle, frames.next()).await {
            Ok(n) => n,
            Err(_) => return ReadOutcome::Idle,
        },
        None => frames.next().await,
    };
    match next {
        Some(Ok(frame)) => ReadOutcome::Frame(frame),
        Some(Err(e)) => ReadOutcome::Error(e),
        None => ReadOutcome::Eof,
    }
}

/// Waits for `n` of the connection's `max` request slots (back-pressure: the connection is not
/// read meanwhile); `None` when the connection closes first. A batch larger than `max` takes
/// them all and runs alone.
async fn take_slots(
    slots: &Arc<Semaphore>,
    n: usize,
    max: usize,
    conn: &RpcHandle,
) -> Option<OwnedSemaphorePermit> {
    let n = u32::try_from(n.clamp(1, max.max(1))).unwrap_or(1);
    tokio::select! {
        biased;
        p = slots.clone().acquire_many_owned(n) => p.ok(),
        _ = conn.shared.token.cancelled() => None,
    }
}

/// Handles one inbound frame; an `Err` closes the connection.
async fn on_frame(
    frame: RpcFrame,
    conn: &RpcHandle,
    handler: &Arc<dyn RequestHandler>,
    slots: &Arc<Semaphore>,
    max_inflight: usize,
) -> Result<(), &'static str> {
    trace!(peer = %conn.peer_addr(), id = frame.request_id, kind = ?frame.message_type, "frame in");
    match frame.message_type {
        MessageType::HeartbeatRequest => {
            let _ = conn.queue_frame(RpcFrame::pong_to(&frame)).await;
        }
        MessageType::HeartbeatResponse => {}
        MessageType::Response => complete(frame, conn),
        MessageType::Request | MessageType::RequestOneway => {
            let Some(body) = frame.body else {
                // Java ignores a request with an empty body; so do we.
                debug!(id = frame.request_id, "request without body ignored");
                return Ok(());
            };
            let header = RpcFrame {
                body: None,
                ..frame
            };
            match body {
                Message::MergedWarpMessage(batch) => {
                    let Some(permit) = take_slots(slots, batch.len(), max_inflight, conn).await
                    else {
                        return Ok(());
                    };
                    spawn_merged(batch, header, conn.clone(), handler.clone(), permit)
                }
                msg @ (Message::RegisterTmRequest(_) | Message::RegisterRmRequest(_)) => {
                    // Inline: later requests on this connection rely on the registration.
                    let reply = handler.clone().on_request(conn.clone(), msg).await;
                    if let Some(reply) = reply {
                        let _ = conn
                            .queue_frame(RpcFrame::response_to(&header, reply))
                            .await;
                    }
                }
                msg => {
                    let Some(permit) = take_slots(slots, 1, max_inflight, conn).await else {
                        return Ok(());
                    };
                    let conn2 = conn.clone();
                    let fut = handler.clone().on_request(conn.clone(), msg);
                    conn.shared.inflight.spawn(async move {
                        let _permit = permit;
                        if let Some(reply) = fut.await {
                            let _ = conn2
                                .send_frame(RpcFrame::response_to(&header, reply))
                                .await;
                        }
                    });
                }
            }
        }
    }
    Ok(())
}

/// Answers a batch with one MergeResultMessage under the batch's id. Members are handled
/// concurrently (they are independent requests that merely travelled together) and answered
/// in their order. The batch's results are matched by position, so every member gets one:
/// a member the handler does not answer, and each sub-message left unread after an unknown
/// type code, gets a failed result, and the connection stays up.
fn spawn_merged(
    batch: MergedWarpMessage,
    header: RpcFrame,
    conn: RpcHandle,
    handler: Arc<dyn RequestHandler>,
    permit: OwnedSemaphorePermit,
) {
    if let Some(tail) = &batch.unread {
        info!(peer = %conn.peer_addr(), id = header.request_id, code = tail.code,
            unread = tail.count,
            "merged batch holds a message type unknown to Seata 1.2; it and the ones after it get failed answers");
    }
    let names: Vec<&'static str> = batch.msgs.iter().map(Message::name).collect();
    let futs: Vec<_> = batch
        .msgs
        .into_iter()
        .map(|m| handler.clone().on_request(conn.clone(), m))
        .collect();
    let unread = batch.unread;
    let conn2 = conn.clone();
    conn.shared.inflight.spawn(async move {
        let _permit = permit;
        let results = futures::future::join_all(futs).await;
        let mut msgs = Vec::with_capacity(results.len());
        for (r, name) in results.into_iter().zip(names) {
            match r {
                Some(m) => msgs.push(m),
                None => {
                    debug!(peer = %conn2.peer_addr(), message = name,
                        "a merged request has no response; answering it as failed");
                    msgs.push(unanswered(name));
                }
            }
        }
        if let Some(tail) = &unread {
            msgs.extend(tail.failed_answers());
        }
        let reply = Message::MergeResultMessage(MergeResultMessage { msgs });
        let _ = conn2
            .send_frame(RpcFrame::response_to(&header, reply))
            .await;
    });
}

/// The failed result of a merged member the handler gave no answer (a one-way or misplaced
/// message): a result must hold its place in the batch.
fn unanswered(name: &str) -> Message {
    failed_member(format!(
        "{name} is not served in a merged batch; nothing was done: send it alone"
    ))
}

/// Messages Seata clients put into merged batches.
fn mergeable(msg: &Message) -> bool {
    matches!(
        msg,
        Message::GlobalBeginRequest(_)
            | Message::GlobalCommitRequest(_)
            | Message::GlobalRollbackRequest(_)
            | Message::GlobalStatusRequest(_)
            | Message::GlobalReportRequest(_)
            | Message::BranchRegisterRequest(_)
            | Message::BranchReportRequest(_)
            | Message::GlobalLockQueryRequest(_)
    )
}

/// Most commands taken from the queue before a flush.
const MAX_DRAIN: usize = 256;

async fn write_loop(mut rx: mpsc::Receiver<Command>, conn: RpcHandle, config: RpcConfig) {
    let token = conn.shared.token.clone();
    let peer = conn.peer_addr();
    let mut batch: Vec<(i32, Message)> = Vec::new();
    let result: Result<(), crate::codec::CodecError> = async {
        loop {
            let first = tokio::select! {
                biased;
                _ = token.cancelled() => break,
                cmd = recv_or_idle(&mut rx, &config) => cmd,
            };
            // Held until everything taken from the queue is flushed.
            let mut sink = conn.shared.sink.lock().await;
            let cmd = match first {
                Recv::Cmd(cmd) => cmd,
                Recv::Closed => break,
                Recv::Idle => {
                    bounded(&config, sink.send(&RpcFrame::ping(next_request_id()))).await?;
                    continue;
                }
            };
            bounded(&config, async {
                write_cmd(cmd, &mut sink, &mut batch, &conn, &config).await?;
                for _ in 0..MAX_DRAIN {
                    match rx.try_recv() {
                        Ok(cmd) => write_cmd(cmd, &mut sink, &mut batch, &conn, &config).await?,
                        Err(_) => break,
                    }
                }
                flush_batch(&mut sink, &mut batch, &conn).await?;
                flush(&mut sink).await
            })
            .await?;
        }
        // Closing: answers of requests being handled may still be written, within the grace.
        conn.shared.inflight.close();
        let grace = tokio::time::sleep(config.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                _ = &mut grace => break,
                _ = conn.shared.inflight.wait() => {
                    let mut sink = conn.shared.sink.lock().await;
                    while let Ok(cmd) = rx.try_recv() {
                        if let Command::Frame(f) = cmd {
                            bounded(&config, sink.feed(&f)).await?;
                        } else {
                            fail_unsent(cmd, &conn);
                        }
                    }
                    break;
                }
                cmd = rx.recv() => match cmd {
                    Some(Command::Frame(f)) => {
                        bounded(&config, conn.shared.sink.lock().await.send(&f)).await?
                    }
                    Some(other) => fail_unsent(other, &conn),
                    None => break,
                },
            }
        }
        // Bounded: a peer that stopped reading must not keep the waiters below from their
        // answers.
        match tokio::time::timeout(config.shutdown_grace, async {
            flush(&mut *conn.shared.sink.lock().await).await
        })
        .await
        {
            Ok(flushed) => flushed,
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        }
    }
    .await;
    if let Err(e) = result {
        warn!(%peer, error = %e, "write failed; closing connection");
    }
    token.cancel();
    conn.shared.closed.store(true, Ordering::Release);
    // Taken after `closed` is set, so no caller writes a frame of its own from here on (one
    // still writing gives up within the request timeout).
    let mut sink = conn.shared.sink.lock().await;
    // What is still queued was never written; what is pending was (outcome unknown).
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        fail_unsent(cmd, &conn);
    }
    for (id, _) in batch.drain(..) {
        conn.shared.pending.fail(
            id,
            RpcError::NotSent {
                peer: peer.to_string(),
            },
        );
    }
    conn.shared.pending.fail_all(|| RpcError::ConnectionLost {
        peer: peer.to_string(),
    });
    let _ = tokio::time::timeout(
        config.shutdown_grace,
        SinkExt::<&RpcFrame>::close(&mut *sink),
    )
    .await;
    conn.shared.written_out.cancel();
}

/// Runs one write, giving up after the write timeout: a peer that takes no bytes for that
/// long is not reading, and its connection is closed rather than its answers buffered.
async fn bounded<T>(
    config: &RpcConfig,
    write: impl std::future::Future<Output = Result<T, crate::codec::CodecError>>,
) -> Result<T, crate::codec::CodecError> {
    match tokio::time::timeout(config.write_timeout, write).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "peer took no bytes for {} ms (write timeout)",
                config.write_timeout.as_millis()
            ),
        )
        .into()),
    }
}

async fn flush<W: AsyncWrite + Unpin>(
    sink: &mut FramedWrite<W, SeataCodec>,
) -> Result<(), crate::codec::CodecError> {
    SinkExt::<&RpcFrame>::flush(sink).await
}

fn fail_unsent(cmd: Command, conn: &RpcHandle) {
    if let Command::Request { id, .. } = cmd {
        conn.shared.pending.fail(
            id,
            RpcError::NotSent {
                peer: conn.peer_addr().to_string(),
            },
        );
    }
}

enum Recv {
    Cmd(Command),
    Closed,
    Idle,
}

async fn recv_or_idle(rx: &mut mpsc::Receiver<Command>, config: &RpcConfig) -> Recv {
    let next = match config.heartbeat_interval {
        Some(every) => match tokio::time::timeout(every, rx.recv()).await {
            Ok(n) => n,
            Err(_) => return Recv::Idle,
        },
        None => rx.recv().await,
    };
    next.map_or(Recv::Closed, Recv::Cmd)
}

async fn write_cmd<W: AsyncWrite + Unpin>(
    cmd: Command,
    sink: &mut FramedWrite<W, SeataCodec>,
    batch: &mut Vec<(i32, Message)>,
    conn: &RpcHandle,
    config: &RpcConfig,
) -> Result<(), crate::codec::CodecError> {
    match cmd {
        Command::Request { id, msg } if config.batch_requests && mergeable(&msg) => {
            batch.push((id, msg));
            if batch.len() >= config.max_batch {
                flush_batch(sink, batch, conn).await?;
            }
        }
        Command::Request { id, msg } => {
            let frame = RpcFrame::request(id, msg);
            feed_or_fail(sink, &frame, Some(id), conn).await?;
        }
        Command::OneWay { msg } => {
            let frame = RpcFrame::request(next_request_id(), msg);
            feed_or_fail(sink, &frame, None, conn).await?;
        }
        Command::Frame(frame) => feed_or_fail(sink, &frame, None, conn).await?,
    }
    Ok(())
}

/// Writes queued mergeable requests: one alone as a plain request (type 2, as Java sends
/// with batching off), several as one MergedWarpMessage (type 0) under a fresh id.
async fn flush_batch<W: AsyncWrite + Unpin>(
    sink: &mut FramedWrite<W, SeataCodec>,
    batch: &mut Vec<(i32, Message)>,
    conn: &RpcHandle,
) -> Result<(), crate::codec::CodecError> {
    match batch.len() {
        0 => Ok(()),
        1 => {
            let Some((id, msg)) = batch.pop() else {
                return Ok(());
            };
            feed_or_fail(sink, &RpcFrame::request(id, msg), Some(id), conn).await
        }
        _ => {
            let (ids, msgs): (Vec<i32>, Vec<Message>) = batch.drain(..).unzip();
            let outer = next_request_id();
            conn.shared.pending.insert_batch(outer, ids.clone());
            let frame =
                RpcFrame::merged_request(outer, MergedWarpMessage { msgs, unread: None }.into());
            if let Err(e) = sink.feed(&frame).await {
                conn.shared.pending.remove(outer);
                return match e {
                    crate::codec::CodecError::Protocol(p) => {
                        for id in ids {
                            conn.shared.pending.fail(
                                id,
                                RpcError::Encode(crate::codec::CodecError::Protocol(p.clone())),
                            );
                        }
                        Ok(())
                    }
                    io => Err(io),
                };
            }
            Ok(())
        }
    }
}

/// Writes a frame; a frame that cannot be encoded fails only its own request, while an I/O
/// error ends the connection.
async fn feed_or_fail<W: AsyncWrite + Unpin>(
    sink: &mut FramedWrite<W, SeataCodec>,
    frame: &RpcFrame,
    id: Option<i32>,
    conn: &RpcHandle,
) -> Result<(), crate::codec::CodecError> {
    match sink.feed(frame).await {
        Ok(()) => Ok(()),
        Err(crate::codec::CodecError::Protocol(p)) => {
            warn!(peer = %conn.peer_addr(), error = %p, "frame not sent: cannot be encoded");
            if let Some(id) = id {
                conn.shared
                    .pending
                    .fail(id, RpcError::Encode(crate::codec::CodecError::Protocol(p)));
            }
            Ok(())
        }
        Err(io) => Err(io),
    }
}
