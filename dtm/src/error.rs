//! [`DtmError`], the one error type of this crate's client side: what a call to the coordinator
//! (or, for a TCC try, to a branch) can end in, split the way an application must react
//! (spec §2.2 and §4.2): FAILURE is final, ONGOING means "ask again", a transport error means
//! "not sent", and an unknown outcome means "sent, no answer: query before you decide".
//!
//! The branch side answers with [`crate::branch::BranchError`] instead: that type is an HTTP
//! answer (an `IntoResponse`), not a failure of this crate.

use reqwest::StatusCode;

/// Everything a client call can fail with. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum DtmError {
    /// The coordinator or a branch answered FAILURE (HTTP 409, or a `dtm_result` of `FAILURE`):
    /// the global transaction is rolled back or will be (a saga action or TCC try refused, a
    /// `wait_result` round that failed, a transaction that is no longer in the state the call
    /// needs). Final.
    #[error(
        "{what} for gid {gid} answered FAILURE: {message}; this is final: the global transaction \
         is (or will be) rolled back; to try again start a new one with a new gid"
    )]
    Failure {
        /// The call, e.g. `submit` or `try of branch 01`.
        what: String,
        /// The global transaction.
        gid: String,
        /// The answer's `message` (or body).
        message: String,
    },

    /// The coordinator or a branch answered ONGOING (HTTP 425, or a `dtm_result` of
    /// `ONGOING`): the outcome is not decided yet, the coordinator keeps retrying.
    #[error(
        "{what} for gid {gid} answered ONGOING: {message}; not decided yet: the coordinator \
         keeps retrying, so query the gid later (DtmClient::query) instead of assuming an outcome"
    )]
    Ongoing {
        /// The call.
        what: String,
        /// The global transaction.
        gid: String,
        /// The answer's `message` (or body).
        message: String,
    },

    /// The request was not sent (no connection could be made, or it could not be built):
    /// nothing changed on the other side.
    #[error(
        "{what} to {url} was not sent: {source}; nothing changed there: check that the server \
         is up and the URL right, then repeat the call"
    )]
    Transport {
        /// The call.
        what: String,
        /// Where it was going.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },

    /// The request was sent but no answer came (timeout, connection reset): the other side may
    /// or may not have acted on it.
    #[error(
        "{what} for gid {gid} was sent but got no answer ({source}); it may or may not have taken \
         effect: query the gid (DtmClient::query) or repeat the same call, which is idempotent, \
         before deciding anything"
    )]
    OutcomeUnknown {
        /// The call.
        what: String,
        /// The global transaction (empty for calls without one, like `newGid`).
        gid: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },

    /// Any other answer than 200/409/425: the request was refused (400/500: bad input, an
    /// unknown gid on abort, a server fault) or, for a TCC try, the branch failed temporarily.
    #[error(
        "{what} for gid {gid} failed with HTTP {status}: {message}; not a FAILURE: fix the \
         request if it is malformed, else repeat the call later (it is idempotent)"
    )]
    Status {
        /// The call.
        what: String,
        /// The global transaction.
        gid: String,
        /// The HTTP status.
        status: StatusCode,
        /// The answer's `message` (or body).
        message: String,
    },

    /// A gRPC call (to the coordinator or, for a TCC try or XA phase one, to a branch) ended
    /// with a status other than `OK`, `Aborted` (FAILURE) and `FailedPrecondition` (ONGOING).
    #[cfg(feature = "grpc")]
    #[error(
        "{what} for gid {gid} failed with gRPC status {code:?}: {message}; not a FAILURE: \
         Unavailable means it was not delivered (is the server up, the address right?), \
         DeadlineExceeded/Cancelled/Unknown that it may have taken effect (query the gid or \
         repeat the call, which is idempotent), InvalidArgument that the request needs fixing; \
         otherwise repeat the call later"
    )]
    Grpc {
        /// The call.
        what: String,
        /// The global transaction (empty for calls without one, like `NewGid`).
        gid: String,
        /// The status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },

    /// A 200 answer this client could not read (for `newGid` and `query`, or a gRPC branch's
    /// answer that is not the expected message).
    #[error(
        "{what} answered 200 with a body this client cannot read ({reason}); is the URL the \
         base of a DTM-compatible API (`http://host:port/api/dtmsvr`)?"
    )]
    BadAnswer {
        /// The call.
        what: String,
        /// Why it could not be read.
        reason: String,
    },

    /// The caller asked for something this client cannot send (a body that does not serialise,
    /// a 100th TCC branch, a bad URL).
    #[error("invalid {what}: {reason}; fix the call")]
    InvalidInput {
        /// What was wrong.
        what: String,
        /// Why.
        reason: String,
    },

    /// The local transaction of `Msg::do_and_submit` did not commit (or had already run);
    /// `next` says what became of the message.
    #[error("the local transaction of msg {gid} did not run to commit: {source}; {next}")]
    Local {
        /// The message's gid.
        gid: String,
        /// What the business (or the barrier) answered.
        #[source]
        source: crate::branch::BranchError,
        /// What happened to the message.
        next: &'static str,
    },
}

impl DtmError {
    /// A FAILURE answer: final, the transaction rolls back.
    pub fn is_failure(&self) -> bool {
        matches!(self, DtmError::Failure { .. })
    }

    /// An ONGOING answer: the coordinator is still working on it.
    pub fn is_ongoing(&self) -> bool {
        matches!(self, DtmError::Ongoing { .. })
    }

    /// Sent without an answer: query before deciding.
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            DtmError::OutcomeUnknown { .. } => true,
            #[cfg(feature = "grpc")]
            DtmError::Grpc { code, .. } => matches!(
                code,
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled | tonic::Code::Unknown
            ),
            _ => false,
        }
    }

    /// Whether repeating the same call may succeed: everything but FAILURE, bad input and a
    /// msg's failed local transaction (all coordinator calls are idempotent for the same gid).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            DtmError::Failure { .. }
                | DtmError::InvalidInput { .. }
                | DtmError::BadAnswer { .. }
                | DtmError::Local { .. }
        )
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> DtmError {
        DtmError::InvalidInput {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
