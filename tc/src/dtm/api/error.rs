//! The result envelope of every `/api/dtmsvr/*` answer (spec §2.2), in one place: 200 with
//! the value or `{"dtm_result":"SUCCESS"}`, 409 FAILURE for conflicts and failed
//! transactions, 425 ONGOING for still-running ones, 400 for malformed requests (DTM says
//! 500; clients treat both as "error, not FAILURE"), 413 for oversized bodies, 500 for the
//! rest. Never 200 with a FAILURE body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::dtm::error::DtmError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    dtm_result: Option<&'static str>,
    message: String,
}

impl ApiError {
    /// 400 with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            dtm_result: None,
            message: message.into(),
        }
    }

    /// 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            dtm_result: None,
            message: format!(
                "request body is over {limit} bytes; send less, or raise dtm.max-body-bytes"
            ),
        }
    }
}

impl From<DtmError> for ApiError {
    fn from(e: DtmError) -> Self {
        let (status, dtm_result) = match &e {
            DtmError::Failure(_) => (StatusCode::CONFLICT, Some("FAILURE")),
            DtmError::Ongoing(_) => (StatusCode::TOO_EARLY, Some("ONGOING")),
            DtmError::Invalid(_) => (StatusCode::BAD_REQUEST, None),
            DtmError::NotFound(_) | DtmError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        ApiError {
            status,
            dtm_result,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.dtm_result {
            Some(r) => json!({"dtm_result": r, "message": self.message}),
            None => json!({"message": self.message}),
        };
        (self.status, Json(body)).into_response()
    }
}

/// `{"dtm_result":"SUCCESS"}`: what an operation without a value answers.
pub fn success() -> Response {
    Json(json!({"dtm_result": "SUCCESS"})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_envelope_table() {
        let status = |e: DtmError| ApiError::from(e).into_response().status().as_u16();
        assert_eq!(status(DtmError::Failure("x".into())), 409);
        assert_eq!(status(DtmError::Ongoing("x".into())), 425);
        assert_eq!(status(DtmError::Invalid("x".into())), 400);
        assert_eq!(status(DtmError::NotFound("x".into())), 500);
        assert_eq!(
            ApiError::too_large(5).into_response().status().as_u16(),
            413
        );
    }
}
