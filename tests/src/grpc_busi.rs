//! A gRPC branch service `busi.Busi` in the test process for the DTM gRPC tests: any method,
//! raw request bytes in (the stored payload as the branch's request message), every call
//! recorded with its metadata, answers scripted per method (then OK), stopped on drop.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

/// Bytes in, bytes out: the branch sees the stored payload as its request message.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawCodec;

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

/// One call the TC made to `busi.Busi`.
#[derive(Debug, Clone)]
pub struct GrpcCall {
    /// The method, e.g. `TransOut`.
    pub method: String,
    /// Metadata, keys lowercase.
    pub metadata: HashMap<String, String>,
    /// The request message, byte for byte.
    pub body: Vec<u8>,
}

impl GrpcCall {
    /// A metadata value.
    pub fn md(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// A metadata value, `""` when absent.
    pub fn md_or_empty(&self, key: &str) -> &str {
        self.md(key).unwrap_or("")
    }

    /// `(dtm-branch_id, dtm-op)`.
    pub fn branch(&self) -> (String, String) {
        let s = |k| self.md(k).unwrap_or("<none>").to_owned();
        (s("dtm-branch_id"), s("dtm-op"))
    }
}

#[derive(Debug, Default)]
struct Recorded {
    calls: Mutex<Vec<GrpcCall>>,
    /// Scripted answers per method, then OK.
    scripts: Mutex<HashMap<String, VecDeque<Status>>>,
}

/// `busi.Busi`: every method answers OK unless scripted.
#[derive(Clone)]
struct Busi {
    rec: Arc<Recorded>,
    ok_reply: &'static [u8],
}

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
            rec: self.rec.clone(),
            method,
            ok_reply: self.ok_reply,
        };
        Box::pin(async move { Ok(tonic::server::Grpc::new(RawCodec).unary(unary, req).await) })
    }
}

struct Unary {
    rec: Arc<Recorded>,
    method: String,
    ok_reply: &'static [u8],
}

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, Status>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let metadata = req
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect();
        let call = GrpcCall {
            method: self.method.clone(),
            metadata,
            body: req.into_inner().to_vec(),
        };
        self.rec.calls.lock().unwrap().push(call);
        let scripted = self
            .rec
            .scripts
            .lock()
            .unwrap()
            .get_mut(&self.method)
            .and_then(VecDeque::pop_front);
        let ok = Bytes::from_static(self.ok_reply);
        Box::pin(async move {
            match scripted {
                Some(status) => Err(status),
                None => Ok(tonic::Response::new(ok)),
            }
        })
    }
}

/// The branch service on `127.0.0.1:0`, stopped on drop.
#[derive(Debug)]
pub struct BusiServer {
    addr: String,
    rec: Arc<Recorded>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BusiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BusiServer {
    /// Starts it; methods answer OK with `ok_reply` unless scripted.
    pub async fn start(ok_reply: &'static [u8]) -> BusiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the branch service");
        let addr = listener.local_addr().expect("address").to_string();
        let rec = Arc::new(Recorded::default());
        let svc = Busi {
            rec: rec.clone(),
            ok_reply,
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        BusiServer { addr, rec, task }
    }

    /// `host:port` it listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `host:port/busi.Busi/<method>`: the gRPC branch URL of `method`.
    pub fn url(&self, method: &str) -> String {
        format!("{}/busi.Busi/{method}", self.addr)
    }

    /// The next calls of `method` answer these statuses, in order; then OK.
    pub fn script(&self, method: &str, answers: impl IntoIterator<Item = Status>) {
        self.rec
            .scripts
            .lock()
            .unwrap()
            .entry(method.to_owned())
            .or_default()
            .extend(answers);
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<GrpcCall> {
        self.rec.calls.lock().unwrap().clone()
    }

    /// The calls of `method`, in order.
    pub fn calls_to(&self, method: &str) -> Vec<GrpcCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }
}
