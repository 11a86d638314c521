//! The one error type of the HTTP API.
//!
//! Every failure answers a status code and `{"error": "<for people>",
//! "code": "<stable_snake_case>"}`. A client mistake is always a 4xx; a 5xx
//! means our fault (logged with its cause chain, opaque to the client) or a
//! dependency that is overloaded or down (503 with Retry-After).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;
use utoipa::ToSchema;

use crate::auth::HashError;
use crate::domain::{Invalid, InvalidKind};
use crate::store::StoreError;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A human-readable explanation.
    pub error: String,
    /// A stable machine-readable code, e.g. `username_taken`.
    pub code: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// Seconds a client should wait before retrying (503/429).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(what: &'static str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in first: send Authorization: Bearer <token>",
        )
    }

    pub fn unavailable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// Our fault: log the cause, tell the client nothing about it.
    pub fn internal(cause: &anyhow::Error) -> Self {
        tracing::error!(error = ?cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side",
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .json(ErrorBody {
                error: self.message.to_string(),
                code: self.code.to_owned(),
            })
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        let status = match e.kind {
            InvalidKind::Malformed => StatusCode::BAD_REQUEST,
            InvalidKind::WrongCredentials => StatusCode::UNAUTHORIZED,
            InvalidKind::Unacceptable => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, e.code, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => Self::new(
                StatusCode::CONFLICT,
                "username_taken",
                "that username is taken",
            ),
            StoreError::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = ?cause, "storage unavailable");
                Self::unavailable("storage_unavailable", "storage is busy; retry shortly")
            }
            StoreError::Overloaded => Self::unavailable(
                "overloaded",
                "storage is at its limit of waiting requests; retry shortly",
            ),
            StoreError::SessionsUnavailable(cause) => {
                tracing::warn!(error = ?cause, "session store unavailable");
                Self::unavailable(
                    "sessions_unavailable",
                    "sign-in is unavailable for a moment; retry shortly",
                )
            }
            StoreError::Unexpected(cause) => Self::internal(&cause),
        }
    }
}

impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Saturated => {
                Self::unavailable("overloaded", "too many sign-ins at once; retry shortly")
            }
            HashError::Unexpected(cause) => Self::internal(&cause),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(&e)
    }
}

/// Maps actix's JSON extractor failures to our codes.
pub fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_type",
            "send a JSON body with Content-Type: application/json",
        ),
        E::Overflow { .. } | E::OverflowKnownLength { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the JSON body is too large",
        ),
        E::Deserialize(e) if e.is_data() => {
            ApiError::unprocessable("invalid_body", format!("the JSON body does not fit: {e}"))
        }
        E::Deserialize(e) => ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")),
        other => ApiError::bad_request("invalid_body", format!("could not read the body: {other}")),
    }
}

/// Maps actix's query-string extractor failures to our codes.
pub fn query_error(err: actix_web::error::QueryPayloadError) -> ApiError {
    ApiError::unprocessable("invalid_query", format!("bad query string: {err}"))
}

impl From<ApiError> for HttpResponse {
    fn from(e: ApiError) -> Self {
        e.error_response()
    }
}
