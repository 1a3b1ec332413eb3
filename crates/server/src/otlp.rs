//! `POST /v1/traces`: the OTLP/HTTP trace receiver.
//!
//! A request goes through these steps, each of which may answer early:
//!
//! 1. `Content-Type` picks the encoding (protobuf or JSON), else 415.
//! 2. An ingest permit is taken without waiting, else 503: at most
//!    `max_inflight_ingest` bodies (HTTP and gRPC together) are held in memory
//!    at once.
//! 3. The body is read under `max_body_bytes` (413) and `body_read_timeout` (503).
//! 4. It is decompressed (gzip, with `max_decompressed_bytes` enforced while
//!    inflating) and decoded into an Arrow batch, on the blocking pool unless small.
//! 5. A request whose every span is invalid is answered 400; otherwise
//!    [`Lake::write_logged`](lighttrace_storage::Lake::write_logged) makes the
//!    valid spans durable and visible, and only then is the request answered
//!    200, with `partialSuccess` counting the invalid ones.
//!
//! Steps 4 and 5 are `ingest_traces`, which the OTLP/gRPC receiver (`grpc.rs`)
//! calls with the message bytes of an `Export` call.

use std::borrow::Cow;

use arrow::array::RecordBatch;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lighttrace_ingest::{
    DecodedSpans, IngestError, OtlpEncoding, decode_otlp_traces, decompress, encode_traces_response,
};
use lighttrace_storage::WalRecordDecoder;

use crate::body::{BodyLimits, content_length, read_body};
use crate::error::{ApiError, ErrorFormat};
use crate::{DEFAULT_PROJECT, Shared};

/// Bodies up to this size, uncompressed, are decoded on the request's task; larger
/// ones on the blocking pool so they do not hold up the reactor.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From the request's `Content-Type`; parameters such as `charset` are ignored.
    fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        const SUPPORTED: &str = "use application/x-protobuf or application/json";
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Err(ApiError::unsupported_media_type(format!(
                "missing Content-Type; {SUPPORTED}"
            )));
        };
        let text = value.to_str().unwrap_or("");
        let mime = text.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Encoding::Protobuf)
        } else if mime.eq_ignore_ascii_case("application/json") {
            Ok(Encoding::Json)
        } else {
            let shown: String = text.chars().take(100).collect();
            Err(ApiError::unsupported_media_type(format!(
                "unsupported Content-Type {shown:?}; {SUPPORTED}"
            )))
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    fn error_format(self) -> ErrorFormat {
        match self {
            Encoding::Protobuf => ErrorFormat::OtlpProtobuf,
            Encoding::Json => ErrorFormat::OtlpJson,
        }
    }

    fn ingest(self) -> OtlpEncoding {
        match self {
            Encoding::Protobuf => OtlpEncoding::Protobuf,
            Encoding::Json => OtlpEncoding::Json,
        }
    }
}

/// Handler of `POST /v1/traces`.
pub(crate) async fn export_traces(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let encoding = match Encoding::from_headers(&headers) {
        Ok(encoding) => encoding,
        // The client's encoding is unknown; JSON is the readable choice.
        Err(err) => return err.with_format(ErrorFormat::OtlpJson).into_response(),
    };
    match ingest(&shared, encoding, &headers, body).await {
        Ok(response) => response,
        Err(err) => err.with_format(encoding.error_format()).into_response(),
    }
}

async fn ingest(
    shared: &Shared,
    encoding: Encoding,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Held until the spans are written: it bounds the memory held by requests.
    let _permit = shared.ingest_permit()?;

    let content_encoding = match headers.get(header::CONTENT_ENCODING) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::unsupported_media_type("Content-Encoding is not ASCII text")
                })?
                .trim()
                .to_owned(),
        ),
    };
    let body = read_body(
        body,
        content_length(headers),
        BodyLimits::ingest(&shared.state.config),
    )
    .await?;

    let ingested = ingest_traces(shared, body, content_encoding, encoding.ingest()).await?;
    let body = encode_traces_response(
        encoding.ingest(),
        ingested.rejected,
        ingested.rejection_message.as_deref(),
    );
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response())
}

/// What became of an export request that was acknowledged.
#[derive(Debug)]
pub(crate) struct Ingested {
    /// Spans left out as invalid (the answer's partial success).
    pub rejected: usize,
    /// Why, for the partial success's `error_message`.
    pub rejection_message: Option<String>,
}

/// The receivers' common part (OTLP/HTTP and OTLP/gRPC): decompresses and decodes
/// `body` (on the blocking pool unless small), refuses a request whose every span
/// is invalid, and otherwise writes the valid spans, logging the request in the
/// WAL. When this returns `Ok`, the spans are durable and visible.
pub(crate) async fn ingest_traces(
    shared: &Shared,
    body: Bytes,
    content_encoding: Option<String>,
    encoding: OtlpEncoding,
) -> Result<Ingested, ApiError> {
    let is_identity = content_encoding
        .as_deref()
        .is_none_or(|e| e.is_empty() || e.eq_ignore_ascii_case("identity"));
    let inline = is_identity && body.len() <= INLINE_DECODE_BYTES;
    let max_decompressed = shared.state.config.max_decompressed_bytes;
    let decode = move || {
        decode(
            &body,
            content_encoding.as_deref(),
            max_decompressed,
            encoding,
        )
    };
    let decoded = if inline {
        decode()?
    } else {
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|err| ApiError::internal("OTLP decode task failed", err))??
    };

    let (
        DecodedSpans {
            batch,
            accepted,
            rejected,
            rejection_message,
            ..
        },
        wal_record,
    ) = decoded;
    if accepted == 0 && rejected > 0 {
        // Nothing to keep: the request as a whole is invalid (OTLP: 400 /
        // INVALID_ARGUMENT, not a partial success).
        let reasons = rejection_message.as_deref().unwrap_or("invalid spans");
        return Err(ApiError::bad_request(format!(
            "every span was rejected ({rejected}): {reasons}"
        )));
    }
    if batch.num_rows() > 0 {
        let lake = &shared.state.lake;
        if let (Some(record), true) = (wal_record, lake.config().wal_decoder.is_some()) {
            // The WAL keeps the (decompressed) request, a fraction of the Arrow
            // data's size; replay decodes it again with `OtlpWalDecoder`.
            lake.write_logged(batch, OTLP_TRACES_WAL_KIND, record)
                .await?;
        } else {
            lake.write(batch).await?;
        }
    }
    tracing::debug!(accepted, rejected, "OTLP traces ingested");
    Ok(Ingested {
        rejected,
        rejection_message,
    })
}

/// Decodes the request; also returns its WAL record (see [`OtlpWalDecoder`]).
fn decode(
    body: &Bytes,
    content_encoding: Option<&str>,
    max_decompressed: usize,
    encoding: OtlpEncoding,
) -> Result<(DecodedSpans, Option<Vec<Bytes>>), IngestError> {
    let raw = decompress(body, content_encoding, max_decompressed)?;
    let decoded = decode_otlp_traces(&raw, encoding, DEFAULT_PROJECT)?;
    // An uncompressed request is logged from the body itself, without a copy.
    let raw = match raw {
        Cow::Borrowed(_) => body.clone(),
        Cow::Owned(inflated) => Bytes::from(inflated),
    };
    Ok((decoded, encode_wal_record(encoding, DEFAULT_PROJECT, raw)))
}

/// WAL record kind of an OTLP trace export request.
pub const OTLP_TRACES_WAL_KIND: u8 = 16;

/// `[encoding: 0 protobuf, 1 JSON][project length: u16 LE][project][request bytes]`,
/// in two parts (header, request); `None` for a project name too long for its
/// length field (the batch is then logged as Arrow instead).
fn encode_wal_record(encoding: OtlpEncoding, project: &str, request: Bytes) -> Option<Vec<Bytes>> {
    let project = project.as_bytes();
    let project_len = u16::try_from(project.len()).ok()?;
    let mut header = Vec::with_capacity(3 + project.len());
    header.push(match encoding {
        OtlpEncoding::Protobuf => 0,
        OtlpEncoding::Json => 1,
    });
    header.extend_from_slice(&project_len.to_le_bytes());
    header.extend_from_slice(project);
    Some(vec![Bytes::from(header), request])
}

/// Replays the OTLP requests the receiver logged in the WAL: decoding is
/// deterministic, so replay yields the rows the request was acknowledged with.
pub struct OtlpWalDecoder;

impl WalRecordDecoder for OtlpWalDecoder {
    fn decode(&self, kind: u8, body: &[u8]) -> Result<RecordBatch, String> {
        if kind != OTLP_TRACES_WAL_KIND {
            return Err(format!("unknown WAL record kind {kind}"));
        }
        let (&encoding, rest) = body.split_first().ok_or("empty OTLP WAL record")?;
        let encoding = match encoding {
            0 => OtlpEncoding::Protobuf,
            1 => OtlpEncoding::Json,
            other => return Err(format!("unknown OTLP encoding {other} in WAL record")),
        };
        let len = rest
            .get(..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or("truncated OTLP WAL record")?;
        let project = rest
            .get(2..2 + len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or("bad project in OTLP WAL record")?;
        let request = &rest[2 + len..];
        decode_otlp_traces(request, encoding, project)
            .map(|decoded| decoded.batch)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        h
    }

    #[test]
    fn wal_records_decode_back_to_the_same_rows() {
        let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"op","startTimeUnixNano":"1714564800000000000","endTimeUnixNano":"1714564800000000005"}]}]}]}"#;
        let direct = decode_otlp_traces(json, OtlpEncoding::Json, "p7")
            .unwrap()
            .batch;
        let record = encode_wal_record(OtlpEncoding::Json, "p7", Bytes::from_static(json))
            .unwrap()
            .concat();
        assert!(
            encode_wal_record(
                OtlpEncoding::Json,
                &"p".repeat(70_000),
                Bytes::from_static(json)
            )
            .is_none()
        );
        let replayed = OtlpWalDecoder
            .decode(OTLP_TRACES_WAL_KIND, &record)
            .unwrap();
        assert_eq!(replayed, direct);
        assert!(OtlpWalDecoder.decode(1, &record).is_err());
        assert!(
            OtlpWalDecoder
                .decode(OTLP_TRACES_WAL_KIND, &record[..2])
                .is_err()
        );
    }

    #[test]
    fn content_type_parameters_and_case_are_ignored() {
        assert_eq!(
            Encoding::from_headers(&headers("application/json; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::from_headers(&headers("Application/X-Protobuf")).unwrap(),
            Encoding::Protobuf
        );
    }

    #[test]
    fn other_content_types_are_415() {
        for ct in ["text/plain", "application/jsonx", ""] {
            let err = Encoding::from_headers(&headers(ct)).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
        }
        let err = Encoding::from_headers(&HeaderMap::new()).unwrap_err();
        assert!(err.message().contains("missing Content-Type"));
    }
}
