//! Reading a request body under a size limit and a deadline.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::ServerConfig;
use crate::error::ApiError;

/// Limits for one body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// Bytes on the wire (before any decompression).
    pub max_bytes: usize,
    /// The whole body must have arrived by then; a client that sends slower holds
    /// resources other clients need.
    pub deadline: Duration,
    /// `Retry-After` for a body that missed the deadline.
    pub retry_after: Duration,
}

impl BodyLimits {
    /// The limits of an ingest request body (OTLP over HTTP or gRPC).
    pub(crate) fn ingest(config: &ServerConfig) -> Self {
        BodyLimits {
            max_bytes: config.max_body_bytes,
            deadline: config.body_read_timeout,
            retry_after: config.overload_retry_after,
        }
    }
}

/// The request's `Content-Length`, when it has a valid one.
pub(crate) fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The request's `Content-Encoding`, trimmed; 415 when it is not ASCII text.
pub(crate) fn content_encoding(
    headers: &axum::http::HeaderMap,
) -> Result<Option<String>, ApiError> {
    match headers.get(axum::http::header::CONTENT_ENCODING) {
        None => Ok(None),
        Some(value) => Ok(Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::unsupported_media_type("Content-Encoding is not ASCII text")
                })?
                .trim()
                .to_owned(),
        )),
    }
}

/// Collects `body`, failing with 413 past `max_bytes` (early, when the declared
/// `Content-Length` is already too large) and with 503 past the deadline.
pub(crate) async fn read_body(
    body: Body,
    content_length: Option<u64>,
    limits: BodyLimits,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::payload_too_large(format!(
            "request body is larger than the limit of {} bytes",
            limits.max_bytes
        ))
    };
    if content_length.is_some_and(|len| len > limits.max_bytes as u64) {
        return Err(too_large());
    }
    let deadline = tokio::time::Instant::now() + limits.deadline;
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(ApiError::overloaded(
                    format!(
                        "request body did not arrive within {} s",
                        limits.deadline.as_secs_f64()
                    ),
                    limits.retry_after,
                ));
            }
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(err)) => {
                return Err(ApiError::bad_request(format!(
                    "could not read the request body: {err}"
                )));
            }
        };
        total = total.saturating_add(chunk.len());
        if total > limits.max_bytes {
            return Err(too_large());
        }
        // One chunk (the common case for small bodies) is passed on without a copy.
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(head), None) => {
                let capacity = content_length
                    .and_then(|len| usize::try_from(len).ok())
                    .unwrap_or(0)
                    .clamp(head.len() + chunk.len(), limits.max_bytes);
                let mut buf = BytesMut::with_capacity(capacity);
                buf.extend_from_slice(head);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(head), None) => head,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_bytes: usize) -> BodyLimits {
        BodyLimits {
            max_bytes,
            deadline: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
        }
    }

    fn chunked(chunks: Vec<&'static [u8]>) -> Body {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn joins_chunks() {
        let body = chunked(vec![b"ab", b"cd", b"e"]);
        let bytes = read_body(body, None, limits(10)).await.unwrap();
        assert_eq!(&bytes[..], b"abcde");
    }

    #[tokio::test]
    async fn rejects_bodies_over_the_limit_while_reading() {
        let body = chunked(vec![b"abc", b"def"]);
        let err = read_body(body, None, limits(5)).await.unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn rejects_a_declared_length_over_the_limit_before_reading() {
        let err = read_body(Body::from("abc"), Some(1 << 40), limits(5))
            .await
            .unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_that_never_ends_gets_503() {
        let limits = BodyLimits {
            deadline: Duration::from_millis(50),
            ..limits(5)
        };
        let stream = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("a")) })
            .chain(futures::stream::pending());
        let err = read_body(Body::from_stream(stream), None, limits)
            .await
            .unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    }
}
