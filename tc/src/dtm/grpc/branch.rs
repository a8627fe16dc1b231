//! The edge that calls gRPC branches (spec §4.1, §9): a unary call of `/pkg.Service/Method`
//! with the stored body as the raw request message, metadata `dtm-gid`, `dtm-trans_type`,
//! `dtm-branch_id`, `dtm-op` (and `dtm-dtm`, empty) plus the transaction's `branch_headers`,
//! under the transaction's request timeout; the answer's status classified per §4.2.
//!
//! Channels are pooled per `host:port` (a tonic channel multiplexes calls over one HTTP/2
//! connection and reconnects by itself), so a target costs one connection, not one per call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::codec::RawCodec;
use super::etcd;
use crate::dtm::caller::Call;
use crate::dtm::machine::Outcome;

/// Most targets kept in the pool; past it the pool starts over (old channels close when their
/// calls finish). Branch targets are few; this only bounds a pathological mix of URLs.
const MAX_CHANNELS: usize = 1024;
/// How long opening a connection to a branch may take (within the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Calls gRPC branches. Cheap to clone (the pool is shared).
#[derive(Debug, Clone, Default)]
pub struct GrpcCaller {
    pool: ChannelPool,
    /// Round-robin among the addresses an etcd lists for a service.
    next: Arc<AtomicUsize>,
}

/// One lazily connected channel per `host:port`.
#[derive(Debug, Clone, Default)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl ChannelPool {
    /// The channel to `authority` (`host:port`), made on first use. Never blocks on I/O.
    pub fn get(&self, authority: &str) -> Result<Channel, String> {
        let mut map = self
            .channels
            .lock()
            .map_err(|_| "gRPC channel pool poisoned".to_owned())?;
        if let Some(c) = map.get(authority) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| format!("{authority:?} is not a host:port: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        if map.len() >= MAX_CHANNELS {
            map.clear();
        }
        map.insert(authority.to_owned(), channel.clone());
        Ok(channel)
    }
}

impl GrpcCaller {
    /// The pool, shared with etcd lookups.
    pub fn pool(&self) -> &ChannelPool {
        &self.pool
    }

    /// Calls `method` on `authority`.
    pub async fn call(
        &self,
        call: Call<'_>,
        authority: &str,
        method: &str,
        timeout: Duration,
    ) -> Outcome {
        let what = format!("{authority}{method}");
        match tokio::time::timeout(timeout, self.unary(call, authority, method, timeout)).await {
            Err(_) => Outcome::Error(format!("gRPC call to {what} timed out after {timeout:?}")),
            Ok(Err(e)) => Outcome::Error(format!("gRPC call to {what} not made: {e}")),
            Ok(Ok(Ok(_))) => Outcome::Success,
            Ok(Ok(Err(status))) => classify(&status, &what),
        }
    }

    /// Looks `service` up in the etcd at `etcd` and calls `method` on one of its addresses
    /// (round robin). The lookup counts against the same timeout.
    pub async fn call_via_etcd(
        &self,
        call: Call<'_>,
        etcd: &str,
        service: &str,
        method: &str,
        timeout: Duration,
    ) -> Outcome {
        let started = tokio::time::Instant::now();
        let found = tokio::time::timeout(timeout, etcd::resolve(&self.pool, etcd, service)).await;
        let addrs = match found {
            Err(_) => {
                return Outcome::Error(format!(
                    "looking up {service} in etcd {etcd} timed out after {timeout:?}"
                ))
            }
            Ok(Err(e)) => return Outcome::Error(e),
            Ok(Ok(a)) => a,
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(authority) = addrs.get(n % addrs.len().max(1)) else {
            return Outcome::Error(format!(
                "no address of {service} is registered in etcd {etcd} (keys {service}/…)"
            ));
        };
        let left = timeout.saturating_sub(started.elapsed());
        self.call(call, authority, method, left).await
    }

    /// The call itself: `Err` when it could not be made, else the branch's answer.
    async fn unary(
        &self,
        call: Call<'_>,
        authority: &str,
        method: &str,
        timeout: Duration,
    ) -> Result<Result<Bytes, Status>, String> {
        let channel = self.pool.get(authority)?;
        let path = PathAndQuery::try_from(method.to_owned())
            .map_err(|e| format!("{method:?} is not a gRPC method path: {e}"))?;
        let mut req = tonic::Request::new(Bytes::copy_from_slice(call.body));
        req.set_timeout(timeout);
        metadata(req.metadata_mut(), &call)?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        Ok(grpc
            .unary(req, path, RawCodec)
            .await
            .map(tonic::Response::into_inner))
    }
}

/// §4.1 for gRPC: the four values as `dtm-*` metadata, `dtm-dtm` empty, then the
/// transaction's `branch_headers` (a header that is no valid metadata is skipped, as the
/// HTTP edge skips an invalid header).
fn metadata(md: &mut MetadataMap, call: &Call<'_>) -> Result<(), String> {
    let trans = call.trans;
    for (key, value) in [
        ("dtm-gid", trans.gid.as_str()),
        ("dtm-trans_type", trans.trans_type.as_str()),
        ("dtm-branch_id", call.branch_id),
        ("dtm-op", call.op.as_str()),
        ("dtm-dtm", ""),
    ] {
        let v = AsciiMetadataValue::try_from(value)
            .map_err(|_| format!("{key} {value:?} cannot travel as gRPC metadata (not ASCII)"))?;
        md.insert(key, v);
    }
    for (k, v) in &trans.options.branch_headers {
        if let (Ok(k), Ok(v)) = (
            AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
            AsciiMetadataValue::try_from(v.as_str()),
        ) {
            md.insert(k, v);
        }
    }
    Ok(())
}

/// §4.2 for gRPC: `Aborted` is FAILURE, except an `Aborted` whose message is exactly
/// `ONGOING` (what DTM before v1.10 sent); `FailedPrecondition` is ONGOING; any other code is
/// an error to retry.
pub fn classify(status: &Status, what: &str) -> Outcome {
    let text = || format!("{what}: {:?} {}", status.code(), status.message());
    match status.code() {
        Code::Ok => Outcome::Success,
        Code::Aborted if status.message() == "ONGOING" => Outcome::Ongoing(text()),
        Code::Aborted => Outcome::Failure(text()),
        Code::FailedPrecondition => Outcome::Ongoing(text()),
        _ => Outcome::Error(text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: Code, message: &str) -> &'static str {
        match classify(&Status::new(code, message), "x") {
            Outcome::Success => "success",
            Outcome::Failure(_) => "failure",
            Outcome::Ongoing(_) => "ongoing",
            Outcome::Error(_) => "error",
        }
    }

    #[test]
    fn statuses_are_classified_as_dtm_does() {
        assert_eq!(class(Code::Ok, ""), "success");
        assert_eq!(class(Code::Aborted, "FAILURE"), "failure");
        assert_eq!(class(Code::Aborted, "no stock"), "failure");
        assert_eq!(class(Code::Aborted, "ONGOING"), "ongoing");
        assert_eq!(class(Code::FailedPrecondition, ""), "ongoing");
        assert_eq!(class(Code::Unavailable, "FAILURE"), "error");
        assert_eq!(class(Code::Internal, ""), "error");
        assert_eq!(class(Code::Unknown, "ONGOING"), "error");
    }
}
