//! DTM's gRPC path (spec §9, feature `grpc`): the coordinator's `dtmgimp.Dtm` service as the
//! initiators see it, the client's own calls of gRPC branches (a TCC try, an XA phase one), and
//! the branch side for tonic handlers.
//!
//! **Initiator side.** A [`DtmClient`](crate::DtmClient) made from `grpc://host:port` (or a bare
//! `host:port`, DTM's `dtmgrpc` form, or [`DtmClient::grpc`](crate::DtmClient::grpc)) sends
//! `NewGid`, `Prepare`, `Submit`, `Abort` and `RegisterBranch` over gRPC; [`Saga`](crate::Saga),
//! [`Msg`](crate::Msg), TCC and XA work unchanged on top of it. Branch URLs are then usually
//! `host:port/pkg.Service/Method`, their payloads the encoded request messages
//! (`Saga::add_message`, `Tcc::call_branch_message`, …). Answers: `Aborted` is FAILURE
//! (`Aborted` with the text `ONGOING` is ONGOING, as DTM before v1.10 sent it),
//! `FailedPrecondition` is ONGOING, any other code is [`DtmError::Grpc`].
//!
//! **Branch side.** [`BranchParams::from_metadata`] / [`BranchParams::from_request`] read the
//! metadata `dtm-gid`, `dtm-trans_type`, `dtm-branch_id`, `dtm-op` (plus `dtm-dtm`,
//! `dtm-phase2_url`) into the same [`BranchParams`] the axum extractor builds, so a
//! [`BranchBarrier`](crate::BranchBarrier) works inside a tonic handler as it does in axum; a
//! [`BranchError`] converts into the [`Status`] the coordinator reads (`?` does it):
//! FAILURE → `Aborted("FAILURE")`, ONGOING → `FailedPrecondition("ONGOING")`, anything else →
//! `Internal` (retried).
//!
//! ```no_run
//! use seata_dtm::grpc::GrpcBranchResult;
//! use seata_dtm::{BarrierTable, BranchBarrier, BranchError, BranchParams};
//!
//! # struct Req { amount: i64 }
//! # struct Reply {}
//! async fn trans_out(req: tonic::Request<Req>, pool: &mysql_async::Pool) -> GrpcBranchResult<Reply> {
//!     let params = BranchParams::from_request(&req)?; // InvalidArgument if metadata is missing
//!     if req.get_ref().amount > 100 {
//!         return Err(BranchError::failure("amount too large").into()); // Aborted("FAILURE")
//!     }
//!     BranchBarrier::new(params)
//!         .call_with_pool(pool, |tx| Box::pin(async move {
//!             // the business SQL, in the barrier's local transaction
//!             Ok(())
//!         }))
//!         .await?; // a duplicate or null compensation is a no-op; errors map to statuses
//!     Ok(tonic::Response::new(Reply {}))
//! }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::branch::{BranchError, BranchParams, MissingParams};
use crate::client::{Registration, TransBody, DEFAULT_CALL_TIMEOUT};
use crate::error::DtmError;
use crate::options::TransOptions;

/// Code generated from `proto/dtmgimp.proto` (DTM's proto) by `build.rs`: the messages and a
/// client of `dtmgimp.Dtm`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]
pub mod pb {
    tonic::include_proto!("dtmgimp");
}

/// What a tonic branch handler returns; `?` on a [`BranchError`] (or a barrier call) maps it.
pub type GrpcBranchResult<T> = Result<tonic::Response<T>, Status>;

/// Connect timeout of the channels this client opens (to the server and to branches).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The metadata keys of §9, in the order [`BranchParams::from_pairs`] reads them.
const PARAMS: [&str; 7] = [
    "gid",
    "trans_type",
    "branch_id",
    "op",
    "branch_type",
    "dtm",
    "phase2_url",
];

// ---------------------------------------------------------------------------------------------
// Addresses

/// `host:port` checked as a tonic endpoint (`http://host:port`), with this client's timeouts.
pub(crate) fn endpoint(authority: &str, call_timeout: Duration) -> Result<Endpoint, DtmError> {
    if authority.is_empty() || authority.contains('/') {
        return Err(DtmError::invalid(
            format!("gRPC address {authority:?}"),
            "expected host:port",
        ));
    }
    Endpoint::from_shared(format!("http://{authority}"))
        .map(|e| {
            e.connect_timeout(CONNECT_TIMEOUT)
                .timeout(call_timeout)
                .tcp_nodelay(true)
        })
        .map_err(|e| DtmError::invalid(format!("gRPC address {authority:?}"), e))
}

/// A gRPC branch URL `host:port/pkg.Service/Method` split into the authority and the method
/// path (`/pkg.Service/Method`).
pub(crate) fn split_branch_url(url: &str) -> Result<(&str, PathAndQuery), DtmError> {
    let bad = |why: &str| DtmError::invalid(format!("gRPC branch URL {url:?}"), why);
    if url.starts_with("etcd://") {
        return Err(bad(
            "etcd:// URLs are resolved by the server; a branch this client calls itself (a TCC \
             try, an XA phase one) needs host:port/pkg.Service/Method",
        ));
    }
    let url = url.strip_prefix("grpc://").unwrap_or(url);
    let Some(slash) = url.find('/') else {
        return Err(bad("expected host:port/pkg.Service/Method"));
    };
    let (authority, method) = url.split_at(slash);
    let service_and_method = method.trim_start_matches('/');
    if authority.is_empty() || service_and_method.split('/').count() != 2 {
        return Err(bad("expected host:port/pkg.Service/Method"));
    }
    let path = PathAndQuery::try_from(method).map_err(|e| bad(&e.to_string()))?;
    Ok((authority, path))
}

// ---------------------------------------------------------------------------------------------
// The coordinator

/// `dtmgimp.Dtm` at one address, or at the address an etcd has registered under a key. The
/// channel is opened on first use (a tonic channel needs a running runtime, a constructor may
/// be called outside one) and multiplexes every call; an etcd-found one is dropped when a call
/// answers `Unavailable`, so the next call asks etcd again (the coordinator may have moved).
#[derive(Debug)]
pub(crate) struct GrpcServer {
    /// `host:port`, or the `etcd://` URL as given.
    name: String,
    call_timeout: Duration,
    etcd: Option<crate::etcd::EtcdTarget>,
    channel: Mutex<Option<Channel>>,
}

impl GrpcServer {
    pub(crate) fn new(authority: &str, call_timeout: Duration) -> Result<GrpcServer, DtmError> {
        endpoint(authority, call_timeout)?;
        Ok(GrpcServer {
            name: authority.to_owned(),
            call_timeout,
            etcd: None,
            channel: Mutex::new(None),
        })
    }

    /// The coordinator registered in etcd: `rest` is what follows `etcd://` (`host:port/key`,
    /// several etcd endpoints separated by commas).
    pub(crate) fn etcd(rest: &str, call_timeout: Duration) -> Result<GrpcServer, DtmError> {
        Ok(GrpcServer {
            etcd: Some(crate::etcd::EtcdTarget::parse(rest)?),
            name: format!("etcd://{rest}"),
            call_timeout,
            channel: Mutex::new(None),
        })
    }

    /// `host:port`, or the `etcd://` URL (what a go-zero branch passes on to `dtmgrpc`).
    pub(crate) fn authority(&self) -> &str {
        &self.name
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Option<Channel>> {
        self.channel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn client(&self) -> Result<pb::dtm_client::DtmClient<Channel>, DtmError> {
        if let Some(channel) = self.cached().clone() {
            return Ok(pb::dtm_client::DtmClient::new(channel));
        }
        let authority = match &self.etcd {
            Some(target) => target.resolve().await?,
            None => self.name.clone(),
        };
        let fresh = endpoint(&authority, self.call_timeout)?.connect_lazy();
        let channel = self.cached().get_or_insert(fresh).clone();
        Ok(pb::dtm_client::DtmClient::new(channel))
    }

    /// Forgets an etcd-found channel after `Unavailable`; passes the status on.
    fn after_error(&self, s: Status) -> Status {
        if self.etcd.is_some() && s.code() == Code::Unavailable {
            *self.cached() = None;
        }
        s
    }

    pub(crate) async fn new_gid(&self) -> Result<String, DtmError> {
        let reply = self
            .client()
            .await?
            .new_gid(())
            .await
            .map_err(|s| status_error("NewGid", "", self.after_error(s)))?
            .into_inner();
        if reply.gid.is_empty() {
            return Err(DtmError::BadAnswer {
                what: "NewGid".into(),
                reason: "no gid in the answer".into(),
            });
        }
        Ok(reply.gid)
    }

    /// `Prepare`, `Submit` or `Abort` (by the HTTP endpoint name) with `body`.
    pub(crate) async fn trans(&self, name: &str, body: &TransBody<'_>) -> Result<(), DtmError> {
        let request = dtm_request(body)?;
        let mut client = self.client().await?;
        let answer = match name {
            "prepare" => client.prepare(request).await,
            "submit" => client.submit(request).await,
            "abort" => client.abort(request).await,
            other => {
                return Err(DtmError::invalid(
                    "gRPC call",
                    format!("{other} is not a transaction call"),
                ))
            }
        };
        answer
            .map(drop)
            .map_err(|s| status_error(name, body.gid, self.after_error(s)))
    }

    pub(crate) async fn register(&self, r: &Registration<'_>) -> Result<(), DtmError> {
        let request = pb::DtmBranchRequest {
            gid: r.gid.to_owned(),
            trans_type: r.trans_type.to_owned(),
            branch_id: r.branch_id.to_owned(),
            op: r.op.to_owned(),
            data: r
                .urls
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            busi_payload: r.payload.map(<[u8]>::to_vec).unwrap_or_default(),
        };
        self.client()
            .await?
            .register_branch(request)
            .await
            .map(drop)
            .map_err(|s| status_error("registerBranch", r.gid, self.after_error(s)))
    }
}

/// The gRPC form of a prepare/submit/abort body (§9): steps as JSON text, payloads as bytes.
fn dtm_request(body: &TransBody<'_>) -> Result<pb::DtmRequest, DtmError> {
    if body.concurrent {
        return Err(DtmError::invalid(
            "msg",
            "DTM's gRPC API has no concurrent flag for a msg; submit it over HTTP or without \
             .concurrent(true)",
        ));
    }
    let steps = if body.steps.is_empty() {
        String::new()
    } else {
        serde_json::to_string(body.steps).map_err(|e| DtmError::invalid("steps", e))?
    };
    Ok(pb::DtmRequest {
        gid: body.gid.to_owned(),
        trans_type: body.trans_type.to_owned(),
        trans_options: Some(trans_options(body.options)),
        customed_data: body.custom_data.to_owned(),
        bin_payloads: body.payloads.to_vec(),
        query_prepared: body.query_prepared.to_owned(),
        steps,
        req_extra: HashMap::new(),
        rollback_reason: body.rollback_reason.to_owned(),
    })
}

fn trans_options(o: &TransOptions) -> pb::DtmTransOptions {
    let secs = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    pb::DtmTransOptions {
        wait_result: o.wait_result,
        timeout_to_fail: secs(o.timeout_to_fail),
        retry_interval: secs(o.retry_interval),
        branch_headers: o
            .branch_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        request_timeout: secs(o.request_timeout),
        retry_limit: secs(o.retry_limit),
    }
}

/// A status as a [`DtmError`] (§9 / §4.2).
pub(crate) fn status_error(what: &str, gid: &str, s: Status) -> DtmError {
    let (what, gid, message) = (what.to_owned(), gid.to_owned(), s.message().to_owned());
    match s.code() {
        Code::Aborted if message == "ONGOING" => DtmError::Ongoing { what, gid, message },
        Code::Aborted => DtmError::Failure { what, gid, message },
        Code::FailedPrecondition => DtmError::Ongoing { what, gid, message },
        code => DtmError::Grpc {
            what,
            gid,
            code,
            message,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Branches this client calls itself

/// One lazily connected channel per branch `host:port`, shared by the clones of a client.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

/// Most branch targets kept; past it the pool starts over (old channels close when idle).
const MAX_CHANNELS: usize = 256;

impl ChannelPool {
    fn get(&self, authority: &str, call_timeout: Duration) -> Result<Channel, DtmError> {
        let mut map = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(authority) {
            return Ok(c.clone());
        }
        let channel = endpoint(authority, call_timeout)?.connect_lazy();
        if map.len() >= MAX_CHANNELS {
            map.clear();
        }
        map.insert(authority.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// A unary call of the gRPC branch `url` (`host:port/pkg.Service/Method`) with the raw
/// request `data`, the metadata `dtm-<name>` of `params` and the transaction's
/// `branch_headers`, under its `request_timeout` (else [`DEFAULT_CALL_TIMEOUT`]); returns the
/// answer message's bytes.
pub(crate) async fn call_branch(
    pool: &ChannelPool,
    url: &str,
    what: &str,
    gid: &str,
    params: &[(&str, &str)],
    options: &TransOptions,
    data: Vec<u8>,
) -> Result<Bytes, DtmError> {
    let (authority, path) = split_branch_url(url)?;
    let timeout = options
        .request_timeout_secs()
        .map_or(DEFAULT_CALL_TIMEOUT, Duration::from_secs);
    let channel = pool.get(authority, DEFAULT_CALL_TIMEOUT)?;
    let mut request = tonic::Request::new(Bytes::from(data));
    request.set_timeout(timeout);
    let md = request.metadata_mut();
    for (name, value) in params {
        insert(md, &format!("dtm-{name}"), value)?;
    }
    for (name, value) in options.branch_headers() {
        insert(md, &name.to_ascii_lowercase(), value)?;
    }
    let call = async move {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        grpc.unary(request, path, RawCodec).await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(answer)) => Ok(answer.into_inner()),
        Ok(Err(s)) => Err(status_error(what, gid, s)),
        Err(_) => Err(status_error(
            what,
            gid,
            Status::deadline_exceeded(format!("no answer within {timeout:?}")),
        )),
    }
}

fn insert(md: &mut MetadataMap, key: &str, value: &str) -> Result<(), DtmError> {
    let k = AsciiMetadataKey::from_bytes(key.as_bytes())
        .map_err(|e| DtmError::invalid(format!("gRPC metadata key {key:?}"), e))?;
    let v = AsciiMetadataValue::try_from(value)
        .map_err(|e| DtmError::invalid(format!("gRPC metadata {key}={value:?}"), e))?;
    md.insert(k, v);
    Ok(())
}

/// Bytes in, bytes out: a branch's request is the caller's encoded message, and its answer is
/// handed back undecoded.
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

/// Decodes a branch's answer as `R`.
pub(crate) fn decode<R: prost::Message + Default>(what: &str, bytes: &[u8]) -> Result<R, DtmError> {
    R::decode(bytes).map_err(|e| DtmError::BadAnswer {
        what: what.to_owned(),
        reason: format!("the answer is not the expected message: {e}"),
    })
}

// ---------------------------------------------------------------------------------------------
// The branch side

impl BranchParams {
    /// Reads `dtm-gid`, `dtm-trans_type`, `dtm-branch_id`, `dtm-op` (or the legacy
    /// `dtm-branch_type`), and the optional `dtm-dtm`, `dtm-phase2_url` from a gRPC call's
    /// metadata. Missing ones are named in the error, which converts into `InvalidArgument`.
    pub fn from_metadata(md: &MetadataMap) -> Result<BranchParams, MissingParams> {
        let pairs: HashMap<String, String> = PARAMS
            .iter()
            .filter_map(|name| {
                let value = md.get(format!("dtm-{name}").as_str())?.to_str().ok()?;
                Some(((*name).to_owned(), value.to_owned()))
            })
            .collect();
        BranchParams::from_pairs(&pairs)
    }

    /// [`BranchParams::from_metadata`] of a tonic request.
    pub fn from_request<T>(request: &tonic::Request<T>) -> Result<BranchParams, MissingParams> {
        BranchParams::from_metadata(request.metadata())
    }
}

/// `InvalidArgument`, naming the missing metadata.
impl From<MissingParams> for Status {
    fn from(e: MissingParams) -> Status {
        let names: Vec<String> = e.missing.iter().map(|n| format!("dtm-{n}")).collect();
        Status::invalid_argument(format!(
            "gRPC branch call without the metadata {}: the DTM server always sends dtm-gid, \
             dtm-trans_type, dtm-branch_id and dtm-op; add them when you call a branch yourself",
            names.join(", ")
        ))
    }
}

/// §4.2 for gRPC, as DTM's own branches answer: FAILURE → `Aborted` with the text `FAILURE`,
/// ONGOING → `FailedPrecondition` with `ONGOING` (the reason is logged, not sent: DTM's servers
/// compare the text), anything else → `Internal` with the message (the server retries).
impl From<BranchError> for Status {
    fn from(e: BranchError) -> Status {
        match e {
            BranchError::Failure(m) => {
                tracing::debug!(reason = %m, "branch answers Aborted(FAILURE)");
                Status::aborted("FAILURE")
            }
            BranchError::Ongoing(m) => {
                tracing::debug!(reason = %m, "branch answers FailedPrecondition(ONGOING)");
                Status::failed_precondition("ONGOING")
            }
            BranchError::Internal(m) => {
                tracing::warn!(error = %m, "branch answers Internal; the server will retry");
                Status::internal(m)
            }
        }
    }
}

/// A nested initiator's error inside a tonic handler keeps its class (see
/// [`BranchError`]'s `From<DtmError>`).
impl From<DtmError> for Status {
    fn from(e: DtmError) -> Status {
        Status::from(BranchError::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_urls_split_into_authority_and_method() {
        let (a, p) = split_branch_url("127.0.0.1:5/busi.Busi/TransOut").unwrap();
        assert_eq!((a, p.as_str()), ("127.0.0.1:5", "/busi.Busi/TransOut"));
        let (a, _) = split_branch_url("grpc://h:1/p.S/M").unwrap();
        assert_eq!(a, "h:1");
        for bad in [
            "127.0.0.1:5",
            "127.0.0.1:5/busi.Busi",
            "/busi.Busi/M",
            "etcd://e:2379/svc/p.S/M",
        ] {
            assert!(split_branch_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_map_to_dtm_classes() {
        let e = |s| status_error("submit", "g", s);
        assert!(e(Status::aborted("FAILURE")).is_failure());
        assert!(e(Status::aborted("ONGOING")).is_ongoing());
        assert!(e(Status::failed_precondition("x")).is_ongoing());
        assert!(matches!(
            e(Status::unavailable("down")),
            DtmError::Grpc {
                code: Code::Unavailable,
                ..
            }
        ));
        assert!(e(Status::deadline_exceeded("slow")).is_outcome_unknown());
    }

    #[test]
    fn branch_errors_map_to_statuses_and_metadata_to_params() {
        let s = Status::from(BranchError::failure("no stock"));
        assert_eq!((s.code(), s.message()), (Code::Aborted, "FAILURE"));
        let s = Status::from(BranchError::ongoing("later"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::FailedPrecondition, "ONGOING")
        );
        assert_eq!(
            Status::from(BranchError::internal("db down")).code(),
            Code::Internal
        );

        let mut md = MetadataMap::new();
        for (k, v) in [
            ("dtm-gid", "g1"),
            ("dtm-trans_type", "saga"),
            ("dtm-branch_id", "01"),
            ("dtm-op", "compensate"),
            ("dtm-dtm", "127.0.0.1:36790"),
        ] {
            insert(&mut md, k, v).unwrap();
        }
        let p = BranchParams::from_metadata(&md).unwrap();
        assert_eq!(
            (p.gid.as_str(), p.op.as_str(), p.dtm.as_deref()),
            ("g1", "compensate", Some("127.0.0.1:36790"))
        );
        md.remove("dtm-op");
        let missing = BranchParams::from_metadata(&md).unwrap_err();
        let s = Status::from(missing);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("dtm-op"), "{}", s.message());
    }
}
