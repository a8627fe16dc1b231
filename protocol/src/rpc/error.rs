//! Errors of the RPC layer. The distinction that matters to callers is whether the peer may
//! have acted on a request: [`RpcError::is_undetermined`] says "outcome unknown" (the request
//! went out and no answer came), which a TM must never report as a failure or a rollback.

use thiserror::Error;

use crate::codec::CodecError;

/// A request that did not produce a response.
#[derive(Debug, Error)]
pub enum RpcError {
    /// The connection was closed before the request was written: the peer never saw it, so it
    /// is safe to retry on another connection.
    #[error("connection to {peer} is closed; the request was not sent (reconnect and retry)")]
    NotSent {
        /// The peer's address.
        peer: String,
    },
    /// The request was written but no response arrived within the timeout. The peer may or may
    /// not have acted on it.
    #[error("no response from {peer} within {timeout_ms} ms: outcome unknown (query the status before retrying)")]
    Timeout {
        /// The peer's address.
        peer: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// The connection died after the request was written. The peer may or may not have acted
    /// on it.
    #[error("connection to {peer} lost while waiting for a response: outcome unknown (query the status before retrying)")]
    ConnectionLost {
        /// The peer's address.
        peer: String,
    },
    /// Connecting or registering failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address tried.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The server refused the registration (`identified = false`).
    #[error("{addr} refused registration: {reason}")]
    Rejected {
        /// The server's address.
        addr: String,
        /// Why, as far as known.
        reason: String,
    },
    /// The peer answered with a message of the wrong type.
    #[error("unexpected response {got} to {sent}")]
    UnexpectedResponse {
        /// The request's message name.
        sent: &'static str,
        /// The response's message name.
        got: &'static str,
    },
    /// A frame could not be encoded (e.g. a field over its length limit); nothing was sent.
    #[error("request not sent: {0}")]
    Encode(#[source] CodecError),
}

impl RpcError {
    /// True when the request may have been carried out by the peer (timeout, connection lost
    /// after sending). Callers must not treat this as a failure of the operation.
    pub fn is_undetermined(&self) -> bool {
        matches!(
            self,
            RpcError::Timeout { .. } | RpcError::ConnectionLost { .. }
        )
    }

    /// True when the request certainly did not reach the peer and can be retried elsewhere.
    pub fn is_not_sent(&self) -> bool {
        matches!(
            self,
            RpcError::NotSent { .. } | RpcError::Connect { .. } | RpcError::Encode(_)
        )
    }
}

/// Converts a response to the message type the caller expects.
pub(crate) fn expect_reply<T>(
    sent: &'static str,
    reply: crate::message::Message,
) -> Result<T, RpcError>
where
    T: TryFrom<crate::message::Message, Error = crate::message::Message>,
{
    T::try_from(reply).map_err(|other| RpcError::UnexpectedResponse {
        sent,
        got: other.name(),
    })
}
