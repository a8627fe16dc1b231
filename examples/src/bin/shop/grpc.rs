//! The gRPC flavour of the shop (`--mode grpc-saga`), as in the go-zero tutorial: `order`,
//! `stock` and `account` as tonic services (`proto/shop.proto`), the saga submitted to the
//! coordinator over DTM's gRPC API (`--dtm-grpc grpc://host:port`, or
//! `etcd://host:port/dtmservice` to find it in etcd as go-zero does), branch URLs
//! `host:port/shop.Order/Create`. Each handler reads the branch metadata
//! ([`BranchParams::from_request`]) and runs the same barrier-guarded step as its HTTP twin;
//! a [`seata_dtm::BranchError`] becomes the status the coordinator reads (`Aborted` FAILURE
//! rolls the saga back, anything else is retried). `--down-secs` is for the HTTP services only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use seata_dtm::grpc::GrpcBranchResult;
use seata_dtm::BranchParams;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

use crate::db::Backend;
use crate::ledger::Ledger;
use crate::request::OrderRequest;

/// Code generated from `proto/shop.proto` by `build.rs`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod pb {
    tonic::include_proto!("shop");
}

impl From<pb::OrderRequest> for OrderRequest {
    fn from(o: pb::OrderRequest) -> OrderRequest {
        OrderRequest {
            order_id: o.order_id,
            user_id: o.user_id,
            sku: o.sku,
            qty: o.qty,
            amount: o.amount,
        }
    }
}

impl From<&OrderRequest> for pb::OrderRequest {
    fn from(o: &OrderRequest) -> pb::OrderRequest {
        pb::OrderRequest {
            order_id: o.order_id,
            user_id: o.user_id,
            sku: o.sku,
            qty: o.qty,
            amount: o.amount,
        }
    }
}

/// The branch's parameters from the metadata (`InvalidArgument` if missing), and the order.
fn read(req: Request<pb::OrderRequest>) -> Result<(BranchParams, OrderRequest), Status> {
    let params = BranchParams::from_request(&req)?;
    Ok((params, req.into_inner().into()))
}

/// `shop.Order` over the order database.
#[derive(Debug)]
pub struct OrderService(pub Arc<Backend>);

impl OrderService {
    async fn step(&self, req: Request<pb::OrderRequest>) -> GrpcBranchResult<pb::Reply> {
        let (params, order) = read(req)?;
        crate::order::saga_step(self.0.clone(), params, order).await?;
        Ok(Response::new(pb::Reply {}))
    }
}

#[tonic::async_trait]
impl pb::order_server::Order for OrderService {
    async fn create(&self, req: Request<pb::OrderRequest>) -> GrpcBranchResult<pb::Reply> {
        self.step(req).await
    }

    async fn create_rollback(&self, req: Request<pb::OrderRequest>) -> GrpcBranchResult<pb::Reply> {
        self.step(req).await
    }
}

/// `shop.Ledger` over the stock or the account database.
#[derive(Debug)]
pub struct LedgerService(pub Arc<Ledger>);

impl LedgerService {
    async fn step(&self, req: Request<pb::OrderRequest>) -> GrpcBranchResult<pb::Reply> {
        let (params, order) = read(req)?;
        crate::ledger::saga_step(self.0.clone(), params, order).await?;
        Ok(Response::new(pb::Reply {}))
    }
}

#[tonic::async_trait]
impl pb::ledger_server::Ledger for LedgerService {
    async fn deduct(&self, req: Request<pb::OrderRequest>) -> GrpcBranchResult<pb::Reply> {
        self.step(req).await
    }

    async fn deduct_rollback(&self, req: Request<pb::OrderRequest>) -> GrpcBranchResult<pb::Reply> {
        self.step(req).await
    }
}

/// The service's routes: `shop.Order` for `order`, `shop.Ledger` for the ledgers.
pub fn order_routes(db: Backend) -> Routes {
    Routes::new(pb::order_server::OrderServer::new(OrderService(Arc::new(
        db,
    ))))
}

/// See [`order_routes`].
pub fn ledger_routes(ledger: Ledger) -> Routes {
    Routes::new(pb::ledger_server::LedgerServer::new(LedgerService(
        Arc::new(ledger),
    )))
}

/// One tonic server on `127.0.0.1`, on a port the OS picked.
#[derive(Debug)]
pub struct GrpcService {
    addr: SocketAddr,
    running: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

impl GrpcService {
    /// Binds `127.0.0.1:0` and serves `routes`.
    pub async fn start(name: &'static str, routes: Routes) -> anyhow::Result<GrpcService> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
            if let Err(e) = served {
                eprintln!("{name} gRPC service stopped with an error: {e}");
            }
        });
        Ok(GrpcService {
            addr,
            running: Mutex::new(Some((stop, task))),
        })
    }

    /// The branch URL of `method` (`pkg.Service/Method`): `127.0.0.1:PORT/pkg.Service/Method`.
    pub fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.addr)
    }

    /// Stops serving.
    pub async fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((stop, task)) = running {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}
