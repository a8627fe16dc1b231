//! The RPC layer over real loopback TCP: request/response by id, merged batches, heartbeats,
//! timeouts, and what callers see when a connection dies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use seata_protocol::rpc::{self, RequestHandler, RpcConfig, RpcError, RpcHandle};
use seata_protocol::{
    GlobalBeginRequest, GlobalBeginResponse, GlobalStatusRequest, Message, TxResult,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Answers GlobalBegin with an XID naming the transaction; never answers GlobalStatus
/// (to provoke timeouts); counts merged members it saw.
#[derive(Default)]
struct Server {
    seen: AtomicUsize,
}

impl RequestHandler for Server {
    fn on_request(
        self: Arc<Self>,
        _conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        Box::pin(async move {
            self.seen.fetch_add(1, Ordering::SeqCst);
            match msg {
                Message::GlobalBeginRequest(b) => Some(
                    GlobalBeginResponse {
                        result: TxResult::success(),
                        xid: format!("xid-{}", b.transaction_name),
                        extra_data: String::new(),
                    }
                    .into(),
                ),
                Message::GlobalStatusRequest(_) => {
                    std::future::pending::<()>().await;
                    None
                }
                _ => None,
            }
        })
    }
}

async fn start_server(config: RpcConfig) -> (String, Arc<Server>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = Arc::new(Server::default());
    let token = CancellationToken::new();
    let (s, t) = (server.clone(), token.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            rpc::spawn_tcp(stream, config.clone(), s.clone(), t.child_token()).unwrap();
        }
    });
    (addr, server, token)
}

fn begin(name: &str) -> GlobalBeginRequest {
    GlobalBeginRequest {
        timeout: 1000,
        transaction_name: name.into(),
    }
}

#[tokio::test]
async fn concurrent_calls_are_matched_to_their_responses() {
    let (addr, server, _t) = start_server(RpcConfig::server()).await;
    let client = rpc::connect(&addr, RpcConfig::client(), Arc::new(rpc::NoRequests))
        .await
        .unwrap();
    let calls = (0..200).map(|i| {
        let c = client.clone();
        async move {
            let r: GlobalBeginResponse = c.request(begin(&i.to_string())).await.unwrap();
            assert_eq!(r.xid, format!("xid-{i}"));
        }
    });
    futures::future::join_all(calls).await;
    assert_eq!(server.seen.load(Ordering::SeqCst), 200);
    assert_eq!(client.pending_requests(), 0);
}

#[tokio::test]
async fn unanswered_request_times_out_as_outcome_unknown() {
    let (addr, _server, _t) = start_server(RpcConfig::server()).await;
    let client = rpc::connect(&addr, RpcConfig::client(), Arc::new(rpc::NoRequests))
        .await
        .unwrap();
    let err = client
        .call_timeout(GlobalStatusRequest::default(), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout { .. }), "{err}");
    assert!(err.is_undetermined());
    assert_eq!(client.pending_requests(), 0);
}

#[tokio::test]
async fn dead_connection_fails_waiters_at_once_and_refuses_new_requests() {
    let (addr, _server, token) = start_server(RpcConfig::server()).await;
    let client = rpc::connect(&addr, RpcConfig::client(), Arc::new(rpc::NoRequests))
        .await
        .unwrap();
    let waiting = {
        let c = client.clone();
        tokio::spawn(async move { c.call(GlobalStatusRequest::default()).await })
    };
    // Let the request reach the server, then kill the server side of the connection.
    while client.pending_requests() == 0 {
        tokio::task::yield_now().await;
    }
    token.cancel();
    let err = waiting.await.unwrap().unwrap_err();
    assert!(matches!(err, RpcError::ConnectionLost { .. }), "{err}");
    client.closed().await;
    let err = client.call(begin("late")).await.unwrap_err();
    assert!(matches!(err, RpcError::NotSent { .. }), "{err}");
}

#[tokio::test]
async fn malformed_frame_closes_only_that_connection() {
    use tokio::io::AsyncWriteExt;
    let (addr, _server, _t) = start_server(RpcConfig::server()).await;
    let good = rpc::connect(&addr, RpcConfig::client(), Arc::new(rpc::NoRequests))
        .await
        .unwrap();
    let mut bad = tokio::net::TcpStream::connect(&addr).await.unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::io::AsyncReadExt::read(&mut bad, &mut buf)
        .await
        .unwrap();
    assert_eq!(n, 0, "server should close the bad connection");
    let r: GlobalBeginResponse = good.request(begin("still-fine")).await.unwrap();
    assert_eq!(r.xid, "xid-still-fine");
}

#[tokio::test(start_paused = true)]
async fn idle_client_sends_heartbeats_and_stays_connected() {
    let server_cfg = RpcConfig {
        read_idle_timeout: Some(Duration::from_secs(15)),
        ..RpcConfig::server()
    };
    let (addr, _server, _t) = start_server(server_cfg).await;
    let client = rpc::connect(&addr, RpcConfig::client(), Arc::new(rpc::NoRequests))
        .await
        .unwrap();
    // 60 s of silence: without heartbeats the server would drop us after 15 s.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!client.is_closed());
    let r: GlobalBeginResponse = client.request(begin("after-idle")).await.unwrap();
    assert_eq!(r.xid, "xid-after-idle");
}

#[tokio::test(start_paused = true)]
async fn server_drops_a_silent_connection() {
    let (addr, _server, _t) = start_server(RpcConfig::server()).await;
    let quiet = RpcConfig {
        heartbeat_interval: None,
        read_idle_timeout: None,
        ..RpcConfig::client()
    };
    let client = rpc::connect(&addr, quiet, Arc::new(rpc::NoRequests))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), client.closed())
        .await
        .expect("server closes after 15 s of silence");
}

#[tokio::test]
async fn merged_request_is_answered_with_results_in_order() {
    use futures::{SinkExt, StreamExt};
    use seata_protocol::{MergedWarpMessage, MessageType, RpcFrame, SeataCodec};
    use tokio_util::codec::Framed;

    let (addr, server, _t) = start_server(RpcConfig::server()).await;
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut framed = Framed::new(stream, SeataCodec::default());
    let batch = MergedWarpMessage {
        msgs: (0..5).map(|i| begin(&format!("m{i}")).into()).collect(),
        unread: None,
    };
    framed
        .send(RpcFrame::merged_request(77, batch.into()))
        .await
        .unwrap();
    let reply = framed.next().await.unwrap().unwrap();
    assert_eq!(reply.message_type, MessageType::Response);
    assert_eq!(reply.request_id, 77);
    let Some(Message::MergeResultMessage(results)) = reply.body else {
        panic!("expected a MergeResultMessage, got {:?}", reply.body);
    };
    let xids: Vec<String> = results
        .msgs
        .into_iter()
        .map(|m| GlobalBeginResponse::try_from(m).unwrap().xid)
        .collect();
    assert_eq!(xids, ["xid-m0", "xid-m1", "xid-m2", "xid-m3", "xid-m4"]);
    assert_eq!(server.seen.load(Ordering::SeqCst), 5);
}

/// A peer that accepts but never reads fills the socket's buffers: a caller writing its own
/// frame then waits on the socket, and must still get its answer (outcome unknown) within
/// the request timeout instead of waiting for ever.
#[tokio::test]
async fn a_peer_that_stops_reading_times_callers_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move { listener.accept().await.unwrap().0 });
    let config = RpcConfig {
        request_timeout: Duration::from_millis(300),
        ..RpcConfig::client()
    };
    let client = rpc::connect(&addr, config, Arc::new(rpc::NoRequests))
        .await
        .unwrap();
    let big = seata_protocol::BranchRegisterRequest {
        xid: "x".into(),
        branch_type: seata_protocol::BranchType::At,
        resource_id: "r".into(),
        lock_key: "k".repeat(1 << 20),
        application_data: String::new(),
    };
    // Enough megabytes to fill both sides' socket buffers several times over.
    for i in 0..40 {
        let answer = tokio::time::timeout(Duration::from_secs(20), client.call(big.clone()))
            .await
            .unwrap_or_else(|_| panic!("call {i} hung on a peer that does not read"));
        let err = answer.unwrap_err();
        assert!(
            err.is_undetermined() || matches!(err, RpcError::NotSent { .. }),
            "{err}"
        );
    }
    drop(held);
}

#[tokio::test]
async fn a_request_arriving_while_the_server_closes_gets_a_failed_answer() {
    let config = RpcConfig {
        shutdown_grace: Duration::from_secs(2),
        ..RpcConfig::server()
    };
    let (addr, server, token) = start_server(config).await;
    let client = rpc::connect(&addr, RpcConfig::client(), Arc::new(rpc::NoRequests))
        .await
        .unwrap();
    // In flight when the server starts closing: keeps the connection in its grace.
    let in_flight = {
        let c = client.clone();
        tokio::spawn(async move { c.call(GlobalStatusRequest::default()).await })
    };
    while server.seen.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    token.cancel();
    // Sent after the server stopped handling requests: refused with a failed answer, not
    // left unread (which the client could only report as outcome unknown).
    let r: GlobalBeginResponse = client.request(begin("late")).await.unwrap();
    assert!(!r.result.is_success(), "{r:?}");
    assert!(r.result.msg.contains("closing"), "{}", r.result.msg);
    assert!(r.xid.is_empty());
    assert_eq!(
        server.seen.load(Ordering::SeqCst),
        1,
        "the late begin was handled"
    );
    // The request in flight is never answered; the grace ends the connection.
    let err = in_flight.await.unwrap().unwrap_err();
    assert!(err.is_undetermined(), "{err}");
}
