//! [`ApiError`]: the one place where ingest, storage and query errors become HTTP
//! status codes (and gRPC status codes).
//!
//! | error | status | gRPC status | body says |
//! |---|---|---|---|
//! | `IngestError::Malformed`, `IngestError::BadCompression`, a request whose every span (log record) is invalid | 400 | `INVALID_ARGUMENT` | what was wrong |
//! | `IngestError::TooLarge`, body over `max_body_bytes` | 413 | `RESOURCE_EXHAUSTED` | the limit |
//! | `IngestError::UnsupportedContentEncoding`, unknown `Content-Type` | 415 | `INVALID_ARGUMENT` | what is supported |
//! | `StorageError::Overloaded`, too many ingest requests in flight, body too slow | 503 + `Retry-After` (Sentry envelopes: 429, see below) | `UNAVAILABLE` + `RetryInfo` | retry later |
//! | `StorageError::ShuttingDown` | 503 + `Retry-After` | `UNAVAILABLE` + `RetryInfo` | the server is stopping |
//! | `StorageError::InvalidBatch` | 400 | `INVALID_ARGUMENT` | what the storage refused |
//! | `QueryError::Refused`, `QueryError::Invalid` | 400 | — | what was wrong with the SQL |
//! | `QueryError::ResourcesExhausted` | 422 | — | the query needs more memory than allowed |
//! | `QueryError::Timeout` | 504 | — | the time limit |
//! | no such route | 404 | `UNIMPLEMENTED` | the method and path |
//! | a handler panicked | 500 | — | `internal error` only; the panic goes to the log |
//! | everything else | 500 | `INTERNAL` | `internal error` only; the details go to the log |
//!
//! Why 422 and 504: a query over its memory limit fails the same way on every
//! retry, so it is the request that cannot be processed (422), not the server that
//! is unavailable (503, which clients retry). A query over its time limit is
//! answered with 504 rather than 408, because HTTP clients and proxies treat 408
//! as "the request was not sent in time" and silently resend it, which would run
//! the expensive query again.
//!
//! The body format depends on the endpoint: the SQL API, the Zipkin receiver and
//! the Sentry envelope endpoint answer `{"error": "…"}`, the OTLP receiver
//! answers a `google.rpc.Status` in the request's encoding, Jaeger's query API
//! (`/jaeger/api/…`) Jaeger's envelope `{"data": null, "total": 0, "limit": 0,
//! "offset": 0, "errors": [{"code": 400, "msg": "…"}]}`. The Sentry endpoint
//! answers every 503 with a `Retry-After` as 429 instead, with the same
//! `Retry-After` and an `X-Sentry-Rate-Limits: SECONDS::organization` header:
//! that is what the Sentry SDKs understand as "back off" (they drop what they
//! would send until then, rather than retrying a 503).
//! OTLP/gRPC answers the gRPC status of the third column (`From<ApiError> for
//! tonic::Status`): `RESOURCE_EXHAUSTED` carries no `RetryInfo`, so OTLP clients
//! do not retry a request that is too large; `UNAVAILABLE` always carries one,
//! with the same delay as `Retry-After`. Rows marked — do not occur there.

use std::fmt;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lighttrace_ingest::IngestError;
use lighttrace_query::QueryError;
use lighttrace_storage::StorageError;

/// The header with which Sentry's own ingestion tells SDKs to back off.
const SENTRY_RATE_LIMITS: &str = "x-sentry-rate-limits";

/// The body shown to clients for every 5xx that is not an overload.
const INTERNAL_MESSAGE: &str = "internal error; the server log has the details";

/// How an error body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorFormat {
    /// `{"error": "…"}` (the SQL API and everything that is not OTLP).
    Json,
    /// `google.rpc.Status` as protobuf (`application/x-protobuf`).
    OtlpProtobuf,
    /// `google.rpc.Status` as JSON: `{"code": 3, "message": "…"}`.
    OtlpJson,
    /// `{"error": "…"}`, and overload as 429 with `X-Sentry-Rate-Limits`.
    Sentry,
    /// Jaeger's query API envelope, the message in `errors[0].msg`.
    Jaeger,
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// An error answered to an HTTP client.
///
/// Build it from an [`IngestError`], [`StorageError`] or [`QueryError`] with `?` /
/// `From`, or with the constructors for errors found by the server itself. 4xx
/// messages tell the client what was wrong; 5xx other than overload carry a
/// generic message and the cause is logged when the error is created.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
    format: ErrorFormat,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            format: ErrorFormat::Json,
        }
    }

    /// 400: the request is malformed; `message` says how.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 with `WWW-Authenticate: Bearer`: no key, or a wrong one.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 404: no such route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 413: the request body is over a limit.
    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 415: the `Content-Type` or `Content-Encoding` is not supported.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }

    /// 503 with `Retry-After`: the server cannot take this request now.
    pub fn overloaded(message: impl Into<String>, retry_after: Duration) -> Self {
        let mut err = Self::new(StatusCode::SERVICE_UNAVAILABLE, message);
        err.retry_after = Some(retry_after);
        err
    }

    /// 500: logs `context` and `cause`; the client only sees a generic message.
    pub fn internal(context: &str, cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message the client sees.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The `Retry-After` delay, for overload errors.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    pub(crate) fn with_format(mut self, format: ErrorFormat) -> Self {
        self.format = format;
        self
    }

    /// The `google.rpc.Code` matching the HTTP status, for OTLP bodies.
    fn rpc_code(&self) -> i32 {
        match self.status {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
            StatusCode::NOT_FOUND => 5,                                        // NOT_FOUND
            StatusCode::UNAUTHORIZED => 16,                                    // UNAUTHENTICATED
            StatusCode::PAYLOAD_TOO_LARGE => 8,                                // RESOURCE_EXHAUSTED
            StatusCode::SERVICE_UNAVAILABLE => 14,                             // UNAVAILABLE
            StatusCode::NOT_IMPLEMENTED => 12,                                 // UNIMPLEMENTED
            _ => 13,                                                           // INTERNAL
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        let code = tonic::Code::from_i32(err.rpc_code());
        match err.retry_after {
            // OTLP clients retry UNAVAILABLE, after the RetryInfo delay when given.
            Some(delay) => <tonic::Status as tonic_types::StatusExt>::with_error_details(
                code,
                err.message,
                tonic_types::ErrorDetails::with_retry_info(Some(delay)),
            ),
            None => tonic::Status::new(code, err.message),
        }
    }
}

/// Seconds for a `Retry-After` header: rounded up, at least 1.
pub(crate) fn retry_after_secs(delay: Duration) -> u64 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    secs.max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (content_type, body) = match self.format {
            ErrorFormat::Json | ErrorFormat::Sentry => (
                "application/json",
                serde_json::json!({ "error": self.message })
                    .to_string()
                    .into_bytes(),
            ),
            ErrorFormat::OtlpProtobuf => (
                "application/x-protobuf",
                prost::Message::encode_to_vec(&RpcStatus {
                    code: self.rpc_code(),
                    message: self.message.clone(),
                }),
            ),
            ErrorFormat::OtlpJson => (
                "application/json",
                serde_json::json!({ "code": self.rpc_code(), "message": self.message })
                    .to_string()
                    .into_bytes(),
            ),
            ErrorFormat::Jaeger => (
                "application/json",
                serde_json::json!({
                    "data": null, "total": 0, "limit": 0, "offset": 0,
                    "errors": [{ "code": self.status.as_u16(), "msg": self.message }],
                })
                .to_string()
                .into_bytes(),
            ),
        };
        let rate_limited = self.format == ErrorFormat::Sentry
            && self.status == StatusCode::SERVICE_UNAVAILABLE
            && self.retry_after.is_some();
        let status = if rate_limited {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            self.status
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"lighttrace\""),
            );
        }
        if let Some(delay) = self.retry_after {
            let secs = retry_after_secs(delay);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            if rate_limited {
                // `retry_after:categories:scope`; no categories means all of them.
                headers.insert(
                    SENTRY_RATE_LIMITS,
                    HeaderValue::from_str(&format!("{secs}::organization"))
                        .unwrap_or_else(|_| HeaderValue::from_static("1::organization")),
                );
            }
        }
        response
    }
}

impl From<crate::auth::Unauthenticated> for ApiError {
    fn from(err: crate::auth::Unauthenticated) -> Self {
        ApiError::unauthorized(err.0)
    }
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::Malformed(_) | IngestError::BadCompression(_) => {
                ApiError::bad_request(err.to_string())
            }
            IngestError::TooLarge { .. } => ApiError::payload_too_large(err.to_string()),
            IngestError::UnsupportedContentEncoding(_) => {
                ApiError::unsupported_media_type(err.to_string())
            }
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Overloaded { retry_after, .. } => {
                tracing::debug!(error = %err, "ingest refused: storage overloaded");
                ApiError::overloaded(err.to_string(), retry_after)
            }
            StorageError::ShuttingDown => {
                ApiError::overloaded("the server is shutting down; retry later", SHUTDOWN_RETRY)
            }
            StorageError::InvalidBatch(_) => ApiError::bad_request(err.to_string()),
            other => ApiError::internal("storage error", other),
        }
    }
}

/// `Retry-After` while the lake shuts down: long enough for a restart.
const SHUTDOWN_RETRY: Duration = Duration::from_secs(5);

impl From<QueryError> for ApiError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::Refused(_) | QueryError::Invalid(_) => {
                ApiError::bad_request(err.to_string())
            }
            QueryError::ResourcesExhausted(_) => {
                tracing::info!(error = %err, "query over its memory limit");
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string())
            }
            QueryError::Timeout(_) => {
                tracing::info!(error = %err, "query over its time limit");
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, err.to_string())
            }
            other => ApiError::internal("query failed", other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn internal_errors_do_not_leak_the_cause() {
        let err = ApiError::internal("test", "/secret/path: permission denied");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.message().contains("secret"));
    }

    #[test]
    fn sentry_overload_is_429_with_rate_limits() {
        let response = ApiError::overloaded("busy", Duration::from_millis(1500))
            .with_format(ErrorFormat::Sentry)
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[SENTRY_RATE_LIMITS], "2::organization");
        let response = ApiError::bad_request("bad")
            .with_format(ErrorFormat::Sentry)
            .into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(SENTRY_RATE_LIMITS).is_none());
    }

    #[test]
    fn otlp_status_codes_follow_the_http_status() {
        assert_eq!(ApiError::bad_request("x").rpc_code(), 3);
        assert_eq!(ApiError::payload_too_large("x").rpc_code(), 8);
        assert_eq!(
            ApiError::overloaded("x", Duration::from_secs(1)).rpc_code(),
            14
        );
    }
}
