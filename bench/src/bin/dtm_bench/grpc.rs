//! `--proto grpc`: the saga goes to the coordinator's gRPC API (`dtmgimp.Dtm/Submit` with
//! `WaitResult`, through `seata-dtm`'s gRPC client) and its branches are gRPC methods of an
//! in-process tonic service, `busi.Busi/Step<i>Action` / `Step<i>Compensate`, that answers `OK`
//! to every call after checking the raw request bytes and the `dtm-*` metadata the same way the
//! HTTP branch server checks its body and query.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

use crate::branches::{Branches, PAYLOAD};

/// Starts the branch service; returns the URL prefix of its methods (`127.0.0.1:PORT/busi.Busi`).
pub async fn start(branches: Arc<Branches>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let svc = Busi(branches);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    Ok(format!("{addr}/busi.Busi"))
}

/// One saga submitted over gRPC with `wait_result`: `Ok` means it succeeded.
pub async fn submit(
    dtm: &seata_dtm::DtmClient,
    gid: &str,
    busi: &str,
    steps: usize,
) -> Result<(), seata_dtm::DtmError> {
    let mut saga = seata_dtm::Saga::new(dtm, gid).wait_result(true);
    for i in 1..=steps {
        saga = saga.add_bytes(
            format!("{busi}/Step{i}Action"),
            format!("{busi}/Step{i}Compensate"),
            PAYLOAD.as_bytes(),
        );
    }
    saga.submit().await
}

/// `busi.Busi`: every method answers `OK` with an empty message.
#[derive(Debug, Clone)]
struct Busi(Arc<Branches>);

impl NamedService for Busi {
    const NAME: &'static str = "busi.Busi";
}

impl Service<http::Request<tonic::body::Body>> for Busi {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
        let unary = Unary {
            branches: self.0.clone(),
            method,
        };
        Box::pin(async move { Ok(tonic::server::Grpc::new(RawCodec).unary(unary, req).await) })
    }
}

struct Unary {
    branches: Arc<Branches>,
    method: String,
}

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, Status>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let md = req.metadata();
        let get = |k: &str| {
            md.get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (gid, branch_id, op) = (get("dtm-gid"), get("dtm-branch_id"), get("dtm-op"));
        self.branches
            .record(&self.method, req.get_ref(), &gid, &branch_id, &op);
        Box::pin(async move { Ok(tonic::Response::new(Bytes::new())) })
    }
}

/// Bytes in, bytes out.
#[derive(Debug, Default, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
