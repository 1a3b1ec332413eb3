//! `POST /api/v2/spans`: the Zipkin v2 receiver, for Zipkin's own clients and
//! the OpenTelemetry Zipkin exporters pointed at
//! `http://HOST:PORT/api/v2/spans`.
//!
//! The steps are those of the OTLP/HTTP receiver (`otlp.rs`), with Zipkin's
//! answers:
//!
//! 1. `Content-Type` picks the encoding: `application/json` (also when the
//!    header is missing, as Zipkin's own server assumes) or
//!    `application/x-protobuf` (proto3 `ListOfSpans`); anything else is 415.
//! 2. An ingest permit (shared with OTLP over HTTP and gRPC), else 503 with
//!    `Retry-After`.
//! 3. The body under `max_body_bytes` (413) and `body_read_timeout` (503),
//!    gzip or deflate inflated under `max_decompressed_bytes` (413).
//! 4. Decoded by [`decode_zipkin_spans`]: malformed JSON or protobuf is 400
//!    with what is wrong, a request whose every span is invalid is 400 with
//!    the reasons.
//! 5. The valid spans are written, the request logged in the WAL under
//!    [`ZIPKIN_WAL_KIND`], and only then answered 202 (Zipkin's answer). The
//!    body is empty, or `{"rejectedSpans": N, "errorMessage": "…"}` when some
//!    spans were invalid (Zipkin has no partial success; its clients ignore
//!    the body).
//!
//! Errors are `{"error": "…"}`.

use arrow::array::RecordBatch;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lighttrace_ingest::{ZipkinEncoding, decode_zipkin_spans};
use lighttrace_storage::WalRecordDecoder;

use crate::body::{BodyLimits, content_encoding, content_length, read_body};
use crate::error::ApiError;
use crate::receive::{Receiver, decode_request_record, ingest_records};
use crate::{DEFAULT_PROJECT, Shared};

/// WAL record kind of a Zipkin v2 request.
pub const ZIPKIN_WAL_KIND: u8 = 18;

/// The encoding from the request's `Content-Type`; parameters such as
/// `charset` are ignored.
fn encoding_from_headers(headers: &HeaderMap) -> Result<ZipkinEncoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(ZipkinEncoding::Json);
    };
    let text = value.to_str().unwrap_or("");
    let mime = text.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(ZipkinEncoding::Json)
    } else if mime.eq_ignore_ascii_case("application/x-protobuf") {
        Ok(ZipkinEncoding::Protobuf)
    } else {
        let shown: String = text.chars().take(100).collect();
        Err(ApiError::unsupported_media_type(format!(
            "unsupported Content-Type {shown:?}; use application/json (Zipkin v2 JSON) \
             or application/x-protobuf (zipkin.proto3.ListOfSpans)"
        )))
    }
}

fn wal_encoding_byte(encoding: ZipkinEncoding) -> u8 {
    match encoding {
        ZipkinEncoding::Json => 0,
        ZipkinEncoding::Protobuf => 1,
    }
}

/// Handler of `POST /api/v2/spans`.
pub(crate) async fn post_spans(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive(&shared, &headers, body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn receive(shared: &Shared, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let encoding = encoding_from_headers(headers)?;
    let caller = shared.state.config.projects.caller(headers)?;
    // Held until the spans are written: it bounds the memory held by requests.
    let _permit = shared.ingest_permit()?;
    let content_encoding = content_encoding(headers)?;
    let body = read_body(
        body,
        content_length(headers),
        BodyLimits::ingest(&shared.state.config),
    )
    .await?;
    let receiver = Receiver {
        name: "Zipkin",
        item: "span",
        wal_kind: ZIPKIN_WAL_KIND,
        wal_encoding: wal_encoding_byte(encoding),
    };
    let ingested = ingest_records(
        shared,
        receiver,
        body,
        content_encoding,
        caller.project_or(DEFAULT_PROJECT),
        move |request, project| decode_zipkin_spans(request, encoding, project),
    )
    .await?;
    if ingested.rejected == 0 {
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let body = serde_json::json!({
        "rejectedSpans": ingested.rejected,
        "errorMessage": ingested.rejection_message.unwrap_or_default(),
    });
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

/// Replays the Zipkin requests the receiver logged in the WAL (kind
/// [`ZIPKIN_WAL_KIND`]).
pub struct ZipkinWalDecoder;

impl WalRecordDecoder for ZipkinWalDecoder {
    fn decode(&self, kind: u8, body: &[u8]) -> Result<Vec<RecordBatch>, String> {
        if kind != ZIPKIN_WAL_KIND {
            return Err(format!("unknown WAL record kind {kind}"));
        }
        let (encoding, project, request) = decode_request_record("Zipkin", body)?;
        let encoding = match encoding {
            0 => ZipkinEncoding::Json,
            1 => ZipkinEncoding::Protobuf,
            other => return Err(format!("unknown Zipkin encoding {other} in WAL record")),
        };
        decode_zipkin_spans(request, encoding, project)
            .map(|decoded| vec![decoded.batch])
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use bytes::Bytes;

    use super::*;
    use crate::receive::{ReceiverWalDecoder, encode_request_record};

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
        let json = br#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","name":"get",
            "timestamp":1714564800000000,"duration":5,"localEndpoint":{"serviceName":"svc"}}]"#;
        let direct = decode_zipkin_spans(json, ZipkinEncoding::Json, "p7")
            .unwrap()
            .batch;
        let record = encode_request_record(
            wal_encoding_byte(ZipkinEncoding::Json),
            "p7",
            Bytes::from_static(json),
        )
        .unwrap()
        .concat();
        assert_eq!(
            ZipkinWalDecoder.decode(ZIPKIN_WAL_KIND, &record),
            Ok(vec![direct.clone()])
        );
        // The server's decoder dispatches by kind.
        assert_eq!(
            ReceiverWalDecoder.decode(ZIPKIN_WAL_KIND, &record),
            Ok(vec![direct])
        );
        assert!(ZipkinWalDecoder.decode(16, &record).is_err());
        assert!(
            ZipkinWalDecoder
                .decode(ZIPKIN_WAL_KIND, &record[..2])
                .is_err()
        );
        let mut unknown_encoding = record.clone();
        unknown_encoding[0] = 9;
        assert!(
            ZipkinWalDecoder
                .decode(ZIPKIN_WAL_KIND, &unknown_encoding)
                .is_err()
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            encoding_from_headers(&HeaderMap::new()).unwrap(),
            ZipkinEncoding::Json,
            "Zipkin's default"
        );
        assert_eq!(
            encoding_from_headers(&headers("application/json; charset=utf-8")).unwrap(),
            ZipkinEncoding::Json
        );
        assert_eq!(
            encoding_from_headers(&headers("Application/X-Protobuf")).unwrap(),
            ZipkinEncoding::Protobuf
        );
        for ct in ["text/plain", "application/x-thrift", ""] {
            let err = encoding_from_headers(&headers(ct)).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
        }
    }
}
