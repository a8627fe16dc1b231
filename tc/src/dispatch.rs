//! Maps each request a client sends to a [`Coordinator`] call, and decides what an
//! unregistered or misbehaving connection gets: requests over a size limit (`[limits]`) are
//! answered with a failed result naming the limit, before any work is done for them.

use std::time::Instant;

use seata_protocol::{
    BranchRegisterRequest, BranchRegisterResponse, BranchReportResponse, Message,
    RegisterRmResponse, RegisterTmResponse, TransactionExceptionCode, TxResult, SEATA_VERSION,
};
use tracing::{info, warn};

use crate::config::LimitsConfig;
use crate::coordinator::{ClientInfo, Coordinator};
use crate::lock::count_rows;
use crate::metrics::seata::Request;

/// What to do with one request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Reply(Message),
    /// Nothing to answer (one-way message).
    NoReply,
    /// Close the connection (e.g. a transaction request before registration, as Seata does).
    Close(&'static str),
}

/// A registration response, accepted.
pub fn register_tm_ok() -> Message {
    RegisterTmResponse {
        identified: true,
        version: SEATA_VERSION.into(),
    }
    .into()
}

/// An RM registration response, accepted.
pub fn register_rm_ok() -> Message {
    RegisterRmResponse {
        identified: true,
        version: SEATA_VERSION.into(),
    }
    .into()
}

/// Runs a transaction request of a registered client. Registration itself is handled by the
/// connection handler, which owns the registry.
pub async fn dispatch(
    coord: &Coordinator,
    client: &ClientInfo,
    limits: &LimitsConfig,
    msg: Message,
) -> Outcome {
    if let Some(refusal) = over_limit(limits, &msg) {
        info!(client_id = %client.client_id, xid = msg.xid().unwrap_or_default(),
            message = msg.name(), reason = %refusal.reason, "request refused: over a limit");
        return Outcome::Reply(refusal.reply);
    }
    let started = Instant::now();
    let (request, reply): (Request, Message) = match msg {
        Message::GlobalBeginRequest(r) => (Request::Begin, coord.begin(r, client).await.into()),
        Message::GlobalCommitRequest(r) => (Request::Commit, coord.commit(r).await.into()),
        Message::GlobalRollbackRequest(r) => (Request::Rollback, coord.rollback(r).await.into()),
        Message::GlobalStatusRequest(r) => (Request::Status, coord.status(r).await.into()),
        Message::GlobalReportRequest(r) => (Request::GlobalReport, coord.report(r).await.into()),
        Message::BranchRegisterRequest(r) => (
            Request::Register,
            coord.branch_register(r, client).await.into(),
        ),
        Message::BranchReportRequest(r) => (Request::Report, coord.branch_report(r).await.into()),
        Message::GlobalLockQueryRequest(r) => {
            (Request::LockQuery, coord.lock_query(r).await.into())
        }
        other => {
            // Responses are matched by the RPC layer; anything else is not for a TC.
            warn!(
                message = other.name(),
                client_id = %client.client_id,
                "message a TC does not serve; ignored"
            );
            return Outcome::NoReply;
        }
    };
    crate::metrics::seata().request(request, started.elapsed());
    Outcome::Reply(reply)
}

/// A failed answer to a request over a limit.
struct Refusal {
    reason: String,
    reply: Message,
}

/// Checks the size limits of branch registers and reports.
fn over_limit(limits: &LimitsConfig, msg: &Message) -> Option<Refusal> {
    match msg {
        Message::BranchRegisterRequest(r) => {
            let reason = branch_register_over_limit(limits, r)?;
            let reply = BranchRegisterResponse {
                result: TxResult::failed(TransactionExceptionCode::BranchRegisterFailed, &reason),
                branch_id: 0,
            };
            Some(Refusal {
                reason,
                reply: reply.into(),
            })
        }
        Message::BranchReportRequest(r) => {
            let reason = application_data_over_limit(limits, &r.application_data)?;
            let reply = BranchReportResponse {
                result: TxResult::failed(TransactionExceptionCode::BranchReportFailed, &reason),
            };
            Some(Refusal {
                reason,
                reply: reply.into(),
            })
        }
        _ => None,
    }
}

fn branch_register_over_limit(limits: &LimitsConfig, r: &BranchRegisterRequest) -> Option<String> {
    if r.lock_key.len() > limits.max_lock_key_bytes {
        return Some(format!(
            "lock key of {} bytes is over limits.max-lock-key-bytes = {}; lock fewer rows per branch or raise the limit",
            r.lock_key.len(),
            limits.max_lock_key_bytes
        ));
    }
    let rows = count_rows(&r.lock_key);
    if rows > limits.max_lock_keys_per_branch {
        return Some(format!(
            "lock key of {rows} rows is over limits.max-lock-keys-per-branch = {}; lock fewer rows per branch or raise the limit",
            limits.max_lock_keys_per_branch
        ));
    }
    application_data_over_limit(limits, &r.application_data)
}

fn application_data_over_limit(limits: &LimitsConfig, data: &str) -> Option<String> {
    (data.len() > limits.max_application_data_bytes).then(|| {
        format!(
            "applicationData of {} bytes is over limits.max-application-data-bytes = {}",
            data.len(),
            limits.max_application_data_bytes
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(lock_key: &str, data: &str) -> Message {
        BranchRegisterRequest {
            xid: "x:1:1".into(),
            lock_key: lock_key.into(),
            application_data: data.into(),
            ..BranchRegisterRequest::default()
        }
        .into()
    }

    fn refused_msg(m: Option<Refusal>) -> String {
        match m.map(|r| r.reply) {
            Some(Message::BranchRegisterResponse(r)) => {
                assert!(!r.result.is_success());
                r.result.msg
            }
            other => panic!("expected a failed branch register answer, got {other:?}"),
        }
    }

    #[test]
    fn branch_register_limits_give_failed_answers_naming_the_key() {
        let limits = LimitsConfig {
            max_lock_keys_per_branch: 3,
            max_lock_key_bytes: 1024,
            max_application_data_bytes: 4,
            ..LimitsConfig::default()
        };
        assert!(over_limit(&limits, &register("t:1,2,3", "abcd")).is_none());
        let m = refused_msg(over_limit(&limits, &register("t:1,2;u:3,4", "")));
        assert!(m.contains("max-lock-keys-per-branch"), "{m}");
        let m = refused_msg(over_limit(&limits, &register(&"t:1".repeat(400), "")));
        assert!(m.contains("max-lock-key-bytes"), "{m}");
        let m = refused_msg(over_limit(&limits, &register("t:1", "abcde")));
        assert!(m.contains("max-application-data-bytes"), "{m}");
    }
}
