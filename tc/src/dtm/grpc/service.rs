//! `dtmgimp.Dtm` (spec §9) over tonic: each RPC turns its prost message into the request the
//! HTTP API builds too ([`TransRequest`], [`RegisterRequest`]), makes one [`DtmEngine`] call,
//! and maps an error to a [`Status`] in [`status`]. Workflow and topic RPCs answer
//! `Unimplemented`, as their HTTP counterparts are not served either.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tracing::{error, info};

use super::pb::dtmgimp::dtm_server::{Dtm, DtmServer};
use super::pb::dtmgimp::{
    DtmBranchRequest, DtmGidReply, DtmProgressesReply, DtmRequest, DtmTopicRequest,
};
use crate::dtm::engine::DtmEngine;
use crate::dtm::error::DtmError;
use crate::dtm::{RegisterRequest, TransRequest};

/// The service: the engine and nothing else.
#[derive(Debug, Clone)]
pub struct DtmService {
    engine: Arc<DtmEngine>,
}

/// The one place where an engine error becomes a gRPC status (§9): FAILURE → `Aborted`,
/// ONGOING → `FailedPrecondition` (what `dtmgrpc` clients test for), a malformed request →
/// `InvalidArgument`, anything else → `Internal`.
pub fn status(e: DtmError) -> Status {
    let message = e.to_string();
    match e {
        DtmError::Failure(_) => Status::aborted(message),
        DtmError::Ongoing(_) => Status::failed_precondition(message),
        DtmError::Invalid(_) => Status::invalid_argument(message),
        DtmError::NotFound(_) | DtmError::Store(_) => Status::internal(message),
    }
}

/// The steps of a `DtmRequest`: a JSON text of an array of string maps (DTM marshals its
/// `[]map[string]string`), `""` for none.
fn steps(json: &str) -> Result<Vec<BTreeMap<String, String>>, DtmError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str::<Vec<BTreeMap<String, Option<String>>>>(json)
        .map(|steps| {
            steps
                .into_iter()
                .map(|s| {
                    s.into_iter()
                        .map(|(k, v)| (k, v.unwrap_or_default()))
                        .collect()
                })
                .collect()
        })
        .map_err(|e| {
            DtmError::Invalid(format!(
                "Steps must be the JSON text of an array of objects of strings \
                 ([{{\"action\":\"host:port/pkg.Service/Method\",\"compensate\":\"...\"}}]): {e}"
            ))
        })
}

/// A `DtmRequest` as the request both front-ends check. `protocol` is implied `grpc`.
fn trans_request(r: DtmRequest) -> Result<TransRequest, DtmError> {
    let o = r.trans_options.unwrap_or_default();
    Ok(TransRequest {
        steps: steps(&r.steps)?,
        gid: r.gid,
        trans_type: r.trans_type,
        payloads: r.bin_payloads,
        query_prepared: r.query_prepared,
        custom_data: r.customed_data,
        protocol: "grpc".into(),
        rollback_reason: r.rollback_reason,
        wait_result: o.wait_result,
        timeout_to_fail: o.timeout_to_fail,
        request_timeout: o.request_timeout,
        retry_interval: o.retry_interval,
        retry_limit: o.retry_limit,
        branch_headers: o.branch_headers.into_iter().collect(),
        concurrent: false,
    })
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Dtm for DtmService {
    async fn new_gid(&self, _: Request<()>) -> Answer<DtmGidReply> {
        Ok(Response::new(DtmGidReply {
            gid: self.engine.new_gid(),
        }))
    }

    async fn submit(&self, req: Request<DtmRequest>) -> Answer<()> {
        let r = trans_request(req.into_inner()).map_err(status)?;
        let wait = r.wait_result;
        let record = r.into_record(false).map_err(status)?;
        self.engine.submit(record, wait).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn prepare(&self, req: Request<DtmRequest>) -> Answer<()> {
        let record = trans_request(req.into_inner())
            .and_then(|r| r.into_record(true))
            .map_err(status)?;
        self.engine.prepare(record).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn abort(&self, req: Request<DtmRequest>) -> Answer<()> {
        let r = trans_request(req.into_inner()).map_err(status)?;
        let gid = r.checked_gid().map_err(status)?;
        self.engine
            .abort(gid, &r.rollback_reason, r.wait_result)
            .await
            .map_err(status)?;
        Ok(Response::new(()))
    }

    async fn register_branch(&self, req: Request<DtmBranchRequest>) -> Answer<()> {
        let r = req.into_inner();
        let mut data = r.data;
        let mut take = |k: &str| data.remove(k).unwrap_or_default();
        let (gid, reg) = RegisterRequest {
            confirm: take("confirm"),
            cancel: take("cancel"),
            url: take("url"),
            gid: r.gid,
            trans_type: r.trans_type,
            branch_id: r.branch_id,
            data: r.busi_payload,
        }
        .into_registration()
        .map_err(status)?;
        self.engine.register(&gid, &reg).await.map_err(status)?;
        Ok(Response::new(()))
    }

    async fn prepare_workflow(&self, _: Request<DtmRequest>) -> Answer<DtmProgressesReply> {
        Err(Status::unimplemented(
            "workflow transactions are not served yet; use saga, msg, tcc or xa",
        ))
    }

    async fn subscribe(&self, _: Request<DtmTopicRequest>) -> Answer<()> {
        Err(topics())
    }

    async fn unsubscribe(&self, _: Request<DtmTopicRequest>) -> Answer<()> {
        Err(topics())
    }

    async fn delete_topic(&self, _: Request<DtmTopicRequest>) -> Answer<()> {
        Err(topics())
    }
}

fn topics() -> Status {
    Status::unimplemented("msg topics are not served yet")
}

/// Serves `dtmgimp.Dtm` on `listener` until `token` is cancelled; calls in flight then
/// finish. Messages over `max_message_bytes` are refused (`ResourceExhausted`).
pub async fn serve(
    listener: TcpListener,
    engine: Arc<DtmEngine>,
    max_message_bytes: usize,
    token: CancellationToken,
) {
    let addr = listener.local_addr().ok();
    let service =
        DtmServer::new(DtmService { engine }).max_decoding_message_size(max_message_bytes);
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), token.cancelled_owned())
        .await;
    match served {
        Ok(()) => info!(?addr, "grpc listener stopped"),
        Err(e) => error!(?addr, error = %e, "grpc listener failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn engine_errors_map_to_dtm_status_codes() {
        let code = |e: DtmError| status(e).code();
        assert_eq!(code(DtmError::Failure("x".into())), Code::Aborted);
        assert_eq!(
            code(DtmError::Ongoing("x".into())),
            Code::FailedPrecondition
        );
        assert_eq!(code(DtmError::Invalid("x".into())), Code::InvalidArgument);
        assert_eq!(code(DtmError::NotFound("x".into())), Code::Internal);
    }

    #[test]
    fn a_grpc_saga_request_becomes_a_checked_record() {
        let r = DtmRequest {
            gid: "g1".into(),
            trans_type: "saga".into(),
            steps:
                r#"[{"action":"127.0.0.1:1/busi.Busi/A","compensate":"127.0.0.1:1/busi.Busi/B"}]"#
                    .into(),
            bin_payloads: vec![vec![0, 0xff, 7]],
            ..Default::default()
        };
        let rec = trans_request(r).unwrap().into_record(false).unwrap();
        assert_eq!(rec.trans.protocol, "grpc");
        assert_eq!(rec.branches.len(), 2);
        assert_eq!(
            rec.branches[1].bin_data,
            vec![0, 0xff, 7],
            "binary payload kept"
        );
    }

    #[test]
    fn malformed_steps_are_invalid_arguments() {
        let r = DtmRequest {
            gid: "g1".into(),
            trans_type: "saga".into(),
            steps: "[{".into(),
            ..Default::default()
        };
        let e = trans_request(r).unwrap_err();
        assert_eq!(status(e).code(), Code::InvalidArgument);
    }
}
