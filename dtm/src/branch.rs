//! The branch side for axum: [`BranchParams`], an extractor for the four query parameters the
//! server puts on every branch call (spec §4.1), and [`BranchError`] / [`BranchResult`], whose
//! `IntoResponse` is the one place the answer codes of §4.2 live: 200 done, 409 FAILURE (roll
//! the transaction back: only a saga action or a TCC try may say this), 425 ONGOING (ask again
//! later), 500 anything temporary.
//!
//! ```no_run
//! use seata_dtm::{BranchError, BranchParams, BranchResult, BranchSuccess};
//!
//! async fn deduct(params: BranchParams, body: axum::Json<serde_json::Value>) -> BranchResult {
//!     if body.get("n").and_then(|n| n.as_i64()).unwrap_or(0) > 10 {
//!         return Err(BranchError::failure("not enough stock"));
//!     }
//!     // ... the business, usually through a BranchBarrier built from `params`
//!     Ok(BranchSuccess)
//! }
//! let app: axum::Router = axum::Router::new().route("/deduct", axum::routing::post(deduct));
//! ```

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::DtmError;

/// The `op` values of §1.
pub mod op {
    /// Saga/msg/xa first phase.
    pub const ACTION: &str = "action";
    /// Saga compensation.
    pub const COMPENSATE: &str = "compensate";
    /// TCC first phase (called by the initiator).
    pub const TRY: &str = "try";
    /// TCC second phase, commit.
    pub const CONFIRM: &str = "confirm";
    /// TCC second phase, roll back.
    pub const CANCEL: &str = "cancel";
    /// XA phase two, commit.
    pub const COMMIT: &str = "commit";
    /// XA phase two (and workflow) roll back.
    pub const ROLLBACK: &str = "rollback";
    /// msg `queryPrepared` and the producer's barrier.
    pub const MSG: &str = "msg";
}

/// The identity of one branch call: `gid`, `trans_type`, `branch_id`, `op` (all required,
/// §4.1), plus the optional `dtm` (the server, when the initiator calls a branch itself) and
/// `phase2_url` (XA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchParams {
    /// The global transaction.
    pub gid: String,
    /// `saga`, `msg`, `tcc`, `xa`, `workflow`.
    pub trans_type: String,
    /// `01`, `02`, … (`00` for msg's queryPrepared).
    pub branch_id: String,
    /// See [`op`].
    pub op: String,
    /// The coordinator's base URL, when the caller sent it.
    pub dtm: Option<String>,
    /// XA: where phase two will be called.
    pub phase2_url: Option<String>,
}

impl BranchParams {
    /// Reads the parameters from a query string's pairs; the legacy name `branch_type` is
    /// accepted for `op` (servers before DTM 1.5 sent that, §4.1).
    pub fn from_pairs(pairs: &HashMap<String, String>) -> Result<BranchParams, MissingParams> {
        let get = |name: &str| pairs.get(name).filter(|v| !v.is_empty()).cloned();
        let op = get("op").or_else(|| get("branch_type"));
        let (gid, trans_type, branch_id) = (get("gid"), get("trans_type"), get("branch_id"));
        match (gid, trans_type, branch_id, op) {
            (Some(gid), Some(trans_type), Some(branch_id), Some(op)) => Ok(BranchParams {
                gid,
                trans_type,
                branch_id,
                op,
                dtm: get("dtm"),
                phase2_url: get("phase2_url"),
            }),
            (gid, trans_type, branch_id, op) => {
                let missing = [
                    ("gid", gid.is_none()),
                    ("trans_type", trans_type.is_none()),
                    ("branch_id", branch_id.is_none()),
                    ("op", op.is_none()),
                ]
                .into_iter()
                .filter_map(|(name, absent)| absent.then_some(name))
                .collect();
                Err(MissingParams { missing })
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BranchParams {
    type Rejection = MissingParams;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // A query string that does not even parse has none of the four.
        let pairs = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|Query(p)| p)
            .unwrap_or_default();
        BranchParams::from_pairs(&pairs)
    }
}

/// A branch call without some of the four required parameters: answered 400, naming them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "branch call without the query parameter(s) {}: every call of a branch carries gid, \
     trans_type, branch_id and op (the DTM server always sends them; add them when you call a \
     branch yourself)",
    .missing.join(", ")
)]
pub struct MissingParams {
    /// The names that were missing or empty.
    pub missing: Vec<&'static str>,
}

impl IntoResponse for MissingParams {
    fn into_response(self) -> Response {
        let body = Json(json!({ "message": self.to_string() }));
        (StatusCode::BAD_REQUEST, body).into_response()
    }
}

/// How a branch handler says it did not succeed (§4.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BranchError {
    /// 409 `{"dtm_result":"FAILURE"}`: refuse, roll the whole transaction back. Final for a
    /// saga action or TCC try; on any second phase the server treats it as an error and
    /// retries (a second phase cannot fail).
    #[error("FAILURE: {0}")]
    Failure(String),
    /// 425 `{"dtm_result":"ONGOING"}`: not decided yet; the server asks again at the same
    /// interval.
    #[error("ONGOING: {0}")]
    Ongoing(String),
    /// 500: a temporary fault (the database is down, a bug); the server retries with backoff.
    #[error("{0}")]
    Internal(String),
}

impl BranchError {
    /// A FAILURE answer.
    pub fn failure(message: impl Into<String>) -> BranchError {
        BranchError::Failure(message.into())
    }

    /// An ONGOING answer.
    pub fn ongoing(message: impl Into<String>) -> BranchError {
        BranchError::Ongoing(message.into())
    }

    /// A temporary error (500).
    pub fn internal(message: impl ToString) -> BranchError {
        BranchError::Internal(message.to_string())
    }

    /// The HTTP status this answer maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            BranchError::Failure(_) => StatusCode::CONFLICT,
            BranchError::Ongoing(_) => StatusCode::TOO_EARLY,
            BranchError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether this is FAILURE.
    pub fn is_failure(&self) -> bool {
        matches!(self, BranchError::Failure(_))
    }
}

impl IntoResponse for BranchError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            BranchError::Failure(m) => json!({ "dtm_result": "FAILURE", "message": m }),
            BranchError::Ongoing(m) => json!({ "dtm_result": "ONGOING", "message": m }),
            BranchError::Internal(m) => {
                tracing::warn!(error = %m, "branch answers 500; the server will retry");
                json!({ "message": m })
            }
        };
        (status, Json(body)).into_response()
    }
}

/// A database error inside a branch is temporary: 500, the server retries.
impl From<mysql_async::Error> for BranchError {
    fn from(e: mysql_async::Error) -> BranchError {
        BranchError::Internal(format!("database error: {e}"))
    }
}

/// A nested initiator's error keeps its class: FAILURE stays FAILURE, ONGOING stays ONGOING,
/// anything else is temporary.
impl From<DtmError> for BranchError {
    fn from(e: DtmError) -> BranchError {
        match e {
            DtmError::Failure { .. } => BranchError::Failure(e.to_string()),
            DtmError::Ongoing { .. } => BranchError::Ongoing(e.to_string()),
            other => BranchError::Internal(other.to_string()),
        }
    }
}

/// A handler's success: 200 `{"dtm_result":"SUCCESS"}` (the body clients older than DTM 1.10
/// also read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BranchSuccess;

impl IntoResponse for BranchSuccess {
    fn into_response(self) -> Response {
        (StatusCode::OK, Json(json!({ "dtm_result": "SUCCESS" }))).into_response()
    }
}

/// What a branch handler returns: `Ok` is 200, `Err` maps as [`BranchError`] says.
pub type BranchResult<T = BranchSuccess> = Result<T, BranchError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_the_four_and_the_legacy_op_name() {
        let p = BranchParams::from_pairs(&pairs(&[
            ("gid", "g"),
            ("trans_type", "saga"),
            ("branch_id", "01"),
            ("branch_type", "action"),
        ]))
        .unwrap();
        assert_eq!(p.op, "action");
        assert_eq!(p.dtm, None);
    }

    #[test]
    fn names_every_missing_or_empty_parameter() {
        let err = BranchParams::from_pairs(&pairs(&[("gid", "g"), ("op", "")])).unwrap_err();
        assert_eq!(err.missing, vec!["trans_type", "branch_id", "op"]);
        assert!(err.to_string().contains("trans_type, branch_id, op"));
        assert_eq!(err.into_response().status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn errors_map_to_the_status_table() {
        assert_eq!(
            BranchError::failure("x").into_response().status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            BranchError::ongoing("x").into_response().status(),
            StatusCode::TOO_EARLY
        );
        assert_eq!(
            BranchError::internal("x").into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(BranchSuccess.into_response().status(), StatusCode::OK);
    }
}
