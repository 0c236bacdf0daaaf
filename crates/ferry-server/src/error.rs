//! Errors of the management API, mapped to `{"error": "…"}` responses.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An API error with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: missing or wrong bearer token.
    #[error("missing or invalid API token")]
    Unauthorized,
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 400 with a message naming the offending parameter.
    #[error("{0}")]
    BadRequest(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 502: a system Ferry called on the caller's behalf failed (the message names why).
    #[error("{0}")]
    BadGateway(String),
    /// 500 (details are logged, not returned).
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "management API error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (
            status,
            Json(ferry_api::ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<ferry_store::StoreError> for ApiError {
    fn from(e: ferry_store::StoreError) -> Self {
        match e {
            ferry_store::StoreError::NotFound => ApiError::NotFound("not found".into()),
            ferry_store::StoreError::Conflict(m) => ApiError::Conflict(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::BadRequest(format!("invalid path: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(format!("invalid query string: {}", e.body_text()))
    }
}
