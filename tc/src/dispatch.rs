//! Maps each request a client sends to a [`Coordinator`] call, and decides what an
//! unregistered or misbehaving connection gets.

use seata_protocol::{Message, RegisterRmResponse, RegisterTmResponse, SEATA_VERSION};
use tracing::warn;

use crate::coordinator::{ClientInfo, Coordinator};

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
pub async fn dispatch(coord: &Coordinator, client: &ClientInfo, msg: Message) -> Outcome {
    let reply: Message = match msg {
        Message::GlobalBeginRequest(r) => coord.begin(r, client).await.into(),
        Message::GlobalCommitRequest(r) => coord.commit(r).await.into(),
        Message::GlobalRollbackRequest(r) => coord.rollback(r).await.into(),
        Message::GlobalStatusRequest(r) => coord.status(r).await.into(),
        Message::GlobalReportRequest(r) => coord.report(r).await.into(),
        Message::BranchRegisterRequest(r) => coord.branch_register(r, client).await.into(),
        Message::BranchReportRequest(r) => coord.branch_report(r).await.into(),
        Message::GlobalLockQueryRequest(r) => coord.lock_query(r).await.into(),
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
    Outcome::Reply(reply)
}
