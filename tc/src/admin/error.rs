//! The admin API's error type and the one table from errors to HTTP status codes. Every error
//! body is `{"error": "...", "next": "...", "status": "..."}`: what went wrong, what to do
//! instead, and the transaction's status when that is what refused the action.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::coordinator::Refusal;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The coordinator refused or could not do it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Actions need `Authorization: Bearer <token>` and it was missing or wrong.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// Actions are disabled (no token configured), or reads from this address are not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// A bad request (e.g. an unknown filter value).
    #[error("{0}")]
    BadRequest(String),
    /// The action does not fit the transaction (DTM ones; Seata ones go through
    /// [`Refusal::Conflict`]).
    #[error("{why}")]
    Conflict {
        /// Why not.
        why: String,
        /// What to do instead.
        next: String,
        /// Its status.
        status: String,
    },
    /// Not found (DTM transactions; Seata ones go through [`Refusal::NotFound`]).
    #[error("{0}")]
    NotFound(String),
    /// A DTM or store failure.
    #[error("{0}")]
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, next, status) = match &self {
            ApiError::Refused(Refusal::NotFound { .. }) => (StatusCode::NOT_FOUND, "", None),
            ApiError::Refused(Refusal::Conflict { next, status, .. }) => (
                StatusCode::CONFLICT,
                next.as_str(),
                Some(status.to_string()),
            ),
            ApiError::Refused(Refusal::Busy { .. }) => {
                (StatusCode::CONFLICT, "repeat the request in a moment", None)
            }
            ApiError::Refused(Refusal::Invalid(_)) => (StatusCode::BAD_REQUEST, "", None),
            ApiError::Refused(Refusal::Store(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "check the store (disk or database), then repeat the request",
                None,
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "send `Authorization: Bearer <token>` with the token of [admin] token/token-file",
                None,
            ),
            ApiError::Conflict { next, status, .. } => {
                (StatusCode::CONFLICT, next.as_str(), Some(status.clone()))
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "", None),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "", None),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "", None),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "check the TC log and the store, then repeat the request",
                None,
            ),
        };
        let error = match &self {
            // The refusal's own text already ends with its "next".
            ApiError::Refused(Refusal::Conflict { why, .. }) => why.clone(),
            other => other.to_string(),
        };
        let mut body = serde_json::Map::new();
        body.insert("error".into(), json!(error));
        if !next.is_empty() {
            body.insert("next".into(), json!(next));
        }
        if let Some(s) = status {
            body.insert("status".into(), json!(s));
        }
        (code, Json(serde_json::Value::Object(body))).into_response()
    }
}
