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
    /// 503: the store cannot be reached now (the database is down or restarting); the call
    /// may succeed later.
    #[error("{0}")]
    Unavailable(String),
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
            ApiError::Unavailable(message) => {
                tracing::warn!(%message, "management API: store unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
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
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<ferry_store::StoreError> for ApiError {
    fn from(e: ferry_store::StoreError) -> Self {
        match e {
            ferry_store::StoreError::NotFound => ApiError::NotFound("not found".into()),
            ferry_store::StoreError::Conflict(m) => ApiError::Conflict(m),
            e @ (ferry_store::StoreError::Unavailable(_) | ferry_store::StoreError::Closed) => {
                ApiError::Unavailable(format!("the store is unavailable, try again: {e}"))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(e: ferry_store::StoreError) -> (StatusCode, Option<String>, String) {
        let response = ApiError::from(e).into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        (status, retry, body)
    }

    #[tokio::test]
    async fn an_unreachable_store_answers_503_naming_the_cause() {
        let (status, retry, body) = answer(ferry_store::StoreError::Unavailable(
            "database connection: connection refused".into(),
        ))
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(
            body.contains("the store is unavailable, try again"),
            "{body}"
        );
        assert!(body.contains("connection refused"), "{body}");
        let (status, _, _) = answer(ferry_store::StoreError::Closed).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        // Other store errors stay internal: 500 without details.
        let (status, retry, body) =
            answer(ferry_store::StoreError::Corrupt("bad row".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(retry, None);
        assert!(!body.contains("bad row"), "{body}");
    }
}
