//! `TcClient` against several TCs over real loopback TCP: every TC learns every resource,
//! however the RM's registrations and the connections' own registrations interleave.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use seata_protocol::rpc::{
    self, NoRequests, Registration, RequestHandler, RpcConfig, RpcHandle, TcClient, TcClientConfig,
};
use seata_protocol::{Message, RegisterRmResponse, SEATA_VERSION};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A TC that records the resource ids of every RegisterRm and answers the first one after
/// `first_delay` (a slow start: the client's other connections register meanwhile).
struct Registrar {
    first_delay: Duration,
    seen: Mutex<Vec<String>>,
}

impl RequestHandler for Registrar {
    fn on_request(
        self: Arc<Self>,
        _conn: RpcHandle,
        msg: Message,
    ) -> BoxFuture<'static, Option<Message>> {
        Box::pin(async move {
            let Message::RegisterRmRequest(r) = msg else {
                return None;
            };
            let first = {
                let mut seen = self.seen.lock().unwrap();
                let first = seen.is_empty();
                seen.extend(r.resource_id_list().map(str::to_owned));
                seen.push(String::new()); // marks one registration, even of no resource
                first
            };
            if first {
                tokio::time::sleep(self.first_delay).await;
            }
            Some(
                RegisterRmResponse {
                    identified: true,
                    version: SEATA_VERSION.into(),
                }
                .into(),
            )
        })
    }
}

async fn start_registrar(first_delay: Duration) -> (String, Arc<Registrar>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = Arc::new(Registrar {
        first_delay,
        seen: Mutex::new(Vec::new()),
    });
    let token = CancellationToken::new();
    let (s, t) = (server.clone(), token.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            rpc::spawn_tcp(stream, RpcConfig::server(), s.clone(), t.child_token()).unwrap();
        }
    });
    (addr, server, token)
}

/// `connect` returns once one TC accepted; a resource registered right then must still reach
/// the TC whose registration was in flight (it went out before the resource existed, and
/// the connection was not yet among those a new resource is sent to).
#[tokio::test]
async fn a_resource_added_while_a_tc_registers_reaches_that_tc_too() {
    let (fast, _fast_seen, t1) = start_registrar(Duration::ZERO).await;
    let (slow, slow_seen, t2) = start_registrar(Duration::from_millis(300)).await;
    let config = TcClientConfig::new(
        vec![fast, slow],
        Registration::Rm {
            application_id: "it-client".into(),
            transaction_service_group: "default_tx_group".into(),
            resource_ids: Vec::new(),
        },
    );
    let client = TcClient::connect(config, Arc::new(NoRequests), Duration::from_secs(5))
        .await
        .expect("one TC accepts");
    client
        .register_resource("jdbc:a")
        .await
        .expect("registered");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen = slow_seen.seen.lock().unwrap().clone();
        if seen.iter().any(|r| r == "jdbc:a") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow TC never learned jdbc:a; its registrations: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.shutdown();
    t1.cancel();
    t2.cancel();
}
