//! `POST /v1/traces` and `POST /v1/logs`: the OTLP/HTTP receivers of traces
//! and logs.
//!
//! Both are one receiver, parametrised by the [`Signal`]: a request goes
//! through these steps, each of which may answer early:
//!
//! 1. `Content-Type` picks the encoding (protobuf or JSON), else 415.
//! 2. An ingest permit is taken without waiting, else 503: at most
//!    `max_inflight_ingest` bodies (HTTP and gRPC together) are held in memory
//!    at once.
//! 3. The body is read under `max_body_bytes` (413) and `body_read_timeout` (503).
//! 4. It is decompressed (gzip, with `max_decompressed_bytes` enforced while
//!    inflating) and decoded into an Arrow batch, on the blocking pool unless small.
//! 5. A request whose every span (log record) is invalid is answered 400;
//!    otherwise [`Lake::write_logged`](lighttrace_storage::Lake::write_logged)
//!    makes the valid spans durable and visible in `spans` (log records in
//!    `logs`), and only then is the request answered 200, with
//!    `partialSuccess` counting the invalid ones (`rejectedSpans`,
//!    `rejectedLogRecords`).
//!
//! Steps 4 and 5 are `ingest_otlp`, which the OTLP/gRPC receiver (`grpc.rs`)
//! calls with the message bytes of an `Export` call; they are the path every
//! receiver shares (`receive.rs`). Traces are logged in the WAL under
//! [`OTLP_TRACES_WAL_KIND`], logs under [`OTLP_LOGS_WAL_KIND`].

use arrow::array::RecordBatch;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use lighttrace_ingest::{
    OtlpEncoding, decode_otlp_logs, decode_otlp_traces, encode_logs_response,
    encode_traces_response,
};
use lighttrace_storage::WalRecordDecoder;

use crate::body::{BodyLimits, content_encoding, content_length, read_body};
use crate::error::{ApiError, ErrorFormat};
use crate::receive::{Ingested, Receiver, decode_request_record, ingest_records};
use crate::{DEFAULT_PROJECT, Shared};

/// What an OTLP export request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// `ExportTraceServiceRequest`, into `spans`.
    Traces,
    /// `ExportLogsServiceRequest`, into `logs`.
    Logs,
}

impl Signal {
    fn receiver(self, encoding: OtlpEncoding) -> Receiver {
        let wal_encoding = wal_encoding_byte(encoding);
        match self {
            Signal::Traces => Receiver {
                name: "OTLP",
                item: "span",
                wal_kind: OTLP_TRACES_WAL_KIND,
                wal_encoding,
            },
            Signal::Logs => Receiver {
                name: "OTLP logs",
                item: "log record",
                wal_kind: OTLP_LOGS_WAL_KIND,
                wal_encoding,
            },
        }
    }
}

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
    export(&shared, Signal::Traces, &headers, body).await
}

/// Handler of `POST /v1/logs`.
pub(crate) async fn export_logs(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(&shared, Signal::Logs, &headers, body).await
}

async fn export(shared: &Shared, signal: Signal, headers: &HeaderMap, body: Body) -> Response {
    let encoding = match Encoding::from_headers(headers) {
        Ok(encoding) => encoding,
        // The client's encoding is unknown; JSON is the readable choice.
        Err(err) => return err.with_format(ErrorFormat::OtlpJson).into_response(),
    };
    match ingest(shared, signal, encoding, headers, body).await {
        Ok(response) => response,
        Err(err) => err.with_format(encoding.error_format()).into_response(),
    }
}

async fn ingest(
    shared: &Shared,
    signal: Signal,
    encoding: Encoding,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Refused before the body is read: a wrong key costs nothing.
    let caller = shared.state.config.projects.caller(headers)?;
    // Held until the records are written: it bounds the memory held by requests.
    let _permit = shared.ingest_permit()?;

    let content_encoding = content_encoding(headers)?;
    let body = read_body(
        body,
        content_length(headers),
        BodyLimits::ingest(&shared.state.config),
    )
    .await?;

    let ingested = ingest_otlp(
        shared,
        signal,
        body,
        content_encoding,
        encoding.ingest(),
        caller.project_or(DEFAULT_PROJECT),
    )
    .await?;
    let (rejected, message) = (ingested.rejected, ingested.rejection_message.as_deref());
    let body = match signal {
        Signal::Traces => encode_traces_response(encoding.ingest(), rejected, message),
        Signal::Logs => encode_logs_response(encoding.ingest(), rejected, message),
    };
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

/// The receivers' common part (OTLP/HTTP and OTLP/gRPC): decodes `body` and
/// writes its valid spans or log records, logging the request in the WAL (see
/// [`ingest_records`]). When this returns `Ok`, they are durable and visible.
pub(crate) async fn ingest_otlp(
    shared: &Shared,
    signal: Signal,
    body: Bytes,
    content_encoding: Option<String>,
    encoding: OtlpEncoding,
    project: &str,
) -> Result<Ingested, ApiError> {
    let receiver = signal.receiver(encoding);
    match signal {
        Signal::Traces => {
            ingest_records(
                shared,
                receiver,
                body,
                content_encoding,
                project,
                move |request, project| decode_otlp_traces(request, encoding, project),
            )
            .await
        }
        Signal::Logs => {
            ingest_records(
                shared,
                receiver,
                body,
                content_encoding,
                project,
                move |request, project| decode_otlp_logs(request, encoding, project),
            )
            .await
        }
    }
}

/// WAL record kind of an OTLP trace export request.
pub const OTLP_TRACES_WAL_KIND: u8 = 16;

/// WAL record kind of an OTLP logs export request.
pub const OTLP_LOGS_WAL_KIND: u8 = 19;

/// The encoding byte of an OTLP request record (see [`crate::receive`]).
fn wal_encoding_byte(encoding: OtlpEncoding) -> u8 {
    match encoding {
        OtlpEncoding::Protobuf => 0,
        OtlpEncoding::Json => 1,
    }
}

/// Replays the OTLP requests the receiver logged in the WAL (kind
/// [`OTLP_TRACES_WAL_KIND`]): decoding is deterministic, so replay yields the
/// rows the request was acknowledged with.
pub struct OtlpWalDecoder;

impl WalRecordDecoder for OtlpWalDecoder {
    fn decode(&self, kind: u8, body: &[u8]) -> Result<Vec<RecordBatch>, String> {
        if kind != OTLP_TRACES_WAL_KIND {
            return Err(format!("unknown WAL record kind {kind}"));
        }
        let (encoding, project, request) = decode_request_record("OTLP", body)?;
        let encoding = wal_encoding("OTLP", encoding)?;
        decode_otlp_traces(request, encoding, project)
            .map(|decoded| vec![decoded.batch])
            .map_err(|e| e.to_string())
    }
}

/// The encoding of an OTLP request record.
fn wal_encoding(receiver: &str, byte: u8) -> Result<OtlpEncoding, String> {
    match byte {
        0 => Ok(OtlpEncoding::Protobuf),
        1 => Ok(OtlpEncoding::Json),
        other => Err(format!("unknown {receiver} encoding {other} in WAL record")),
    }
}

/// Replays the OTLP logs requests the receiver logged in the WAL (kind
/// [`OTLP_LOGS_WAL_KIND`]) into `logs` batches.
pub struct OtlpLogsWalDecoder;

impl WalRecordDecoder for OtlpLogsWalDecoder {
    fn decode(&self, kind: u8, body: &[u8]) -> Result<Vec<RecordBatch>, String> {
        if kind != OTLP_LOGS_WAL_KIND {
            return Err(format!("unknown WAL record kind {kind}"));
        }
        let (encoding, project, request) = decode_request_record("OTLP logs", body)?;
        let encoding = wal_encoding("OTLP logs", encoding)?;
        decode_otlp_logs(request, encoding, project)
            .map(|decoded| vec![decoded.batch])
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::encode_request_record;

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
        let record = encode_request_record(
            wal_encoding_byte(OtlpEncoding::Json),
            "p7",
            Bytes::from_static(json),
        )
        .unwrap()
        .concat();
        let replayed = OtlpWalDecoder
            .decode(OTLP_TRACES_WAL_KIND, &record)
            .unwrap();
        assert_eq!(replayed, vec![direct]);
        assert!(OtlpWalDecoder.decode(1, &record).is_err());
        assert!(
            OtlpWalDecoder
                .decode(OTLP_TRACES_WAL_KIND, &record[..2])
                .is_err()
        );
    }

    #[test]
    fn logs_wal_records_decode_back_to_the_same_rows() {
        let json = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeLogs":[{"logRecords":[{"timeUnixNano":"1714564800000000000","traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","body":{"stringValue":"hello"}}]}]}]}"#;
        let direct = decode_otlp_logs(json, OtlpEncoding::Json, "p7")
            .unwrap()
            .batch;
        assert_eq!(direct.num_rows(), 1);
        let record = encode_request_record(
            wal_encoding_byte(OtlpEncoding::Json),
            "p7",
            Bytes::from_static(json),
        )
        .unwrap()
        .concat();
        assert_eq!(
            OtlpLogsWalDecoder.decode(OTLP_LOGS_WAL_KIND, &record),
            Ok(vec![direct.clone()])
        );
        // The server's decoder dispatches by kind.
        assert_eq!(
            crate::ReceiverWalDecoder.decode(OTLP_LOGS_WAL_KIND, &record),
            Ok(vec![direct])
        );
        assert!(
            OtlpLogsWalDecoder
                .decode(OTLP_TRACES_WAL_KIND, &record)
                .is_err()
        );
        let mut bad_encoding = record.clone();
        bad_encoding[0] = 7;
        assert_eq!(
            OtlpLogsWalDecoder.decode(OTLP_LOGS_WAL_KIND, &bad_encoding),
            Err("unknown OTLP logs encoding 7 in WAL record".to_string())
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
