//! Receivers' decoders: wire formats in, Arrow `spans` batches out.
//!
//! This crate is the "decode to Arrow RecordBatch" stage of the data path in
//! `DESIGN.md`. It is pure: no sockets, no files, no clocks, so every function
//! here can be unit-tested and fuzzed (see the top-level `fuzz/` folder).
//!
//! ```text
//! HTTP / gRPC body ──► decompress ──► decode_otlp_traces ──► RecordBatch ──► WAL
//!   (server crate)     (this crate)     (this crate)         (spans_schema)  (storage)
//!                                             │
//!                     encode_traces_response ◄┘ accepted / rejected counts
//! ```
//!
//! The server calls [`decompress`] with the request's `Content-Encoding` and its
//! body limit, then [`decode_otlp_traces`] with the encoding chosen from the
//! `Content-Type`, writes [`DecodedSpans::batch`] to the WAL, and answers with
//! [`encode_traces_response`]. [`IngestError`] says which HTTP status fits:
//! `Malformed` and `BadCompression` are 400, `TooLarge` is 413,
//! `UnsupportedContentEncoding` is 415.
//!
//! # OTLP to the `spans` table
//!
//! Protobuf is read in place: a wire-format decoder borrows every string from
//! the body and appends each span to [`lighttrace_model::SpanBatchBuilder`] as
//! soon as it is read, with no intermediate request (building prost's
//! `ExportTraceServiceRequest` first cost twice the CPU). It accepts, merges
//! and refuses exactly what prost does; differential tests and a fuzz target
//! hold it to the prost path, which stays available as
//! `decode_otlp_protobuf_with_prost`. OTLP/JSON is decoded with serde into the
//! `opentelemetry-proto` structs, then appended the same way.
//!
//! * `service_name` is the resource attribute `service.name` when it is a
//!   non-empty string, else `unknown_service` (the OpenTelemetry convention).
//! * `project` is the caller's argument; `source` is `otlp`.
//! * Each span is checked on its own: a 16-byte non-zero trace id, an 8-byte
//!   non-zero span id, a parent span id that is empty or 8 bytes (8 zero bytes
//!   also mean "root"), `start_time_unix_nano > 0` and `end >= start`. A span
//!   that fails is rejected and counted, the rest of the request is kept (OTLP
//!   partial success). A link with an invalid id is dropped, its span kept.
//! * Attribute values become text with a type, as documented in
//!   [`lighttrace_model`]:
//!
//! | OTLP value | `attributes[key]` | `attribute_types[key]` |
//! |---|---|---|
//! | string | the string | (absent) |
//! | no value set | empty string | (absent) |
//! | int | decimal: `-42` | `int` |
//! | double | `f64::to_string`: `0.5`, `1`, `NaN`, `inf`, `-inf` | `double` |
//! | bool | `true` / `false` | `bool` |
//! | bytes | standard base64 with padding | `bytes` |
//! | array | OTLP/JSON of its values: `[{"stringValue":"a"},{"intValue":"1"}]` | `array` |
//! | kvlist | OTLP/JSON of its values: `[{"key":"k","value":{"boolValue":true}}]` | `kvlist` |
//!
//! Inside arrays and kvlists the OTLP/JSON conventions apply: ints are decimal
//! strings, doubles are JSON numbers (`"NaN"`, `"Infinity"`, `"-Infinity"` as
//! strings), bytes are base64 strings, a value with nothing set is `{}`.
//! Values nested deeper than 16 arrays/kvlists make the whole request
//! [`IngestError::Malformed`]: no honest SDK sends them. So does a request
//! whose spans would expand to more than `max(64 MiB, 16 × body size)` of text
//! (at most 1 GiB): resource attributes are copied onto each of their spans, and
//! a small body must not be able to make a huge batch.
//!
//! # Example
//!
//! ```
//! use arrow::array::AsArray;
//! use lighttrace_ingest::{OtlpEncoding, decode_otlp_traces, encode_traces_response};
//!
//! let body = br#"{"resourceSpans":[{
//!     "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
//!     "scopeSpans":[{"spans":[
//!         {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
//!          "name":"GET /cart","kind":2,
//!          "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
//!          "attributes":[{"key":"http.status_code","value":{"intValue":"200"}}]},
//!         {"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b175",
//!          "name":"bad","startTimeUnixNano":"1","endTimeUnixNano":"2"}
//!     ]}]
//! }]}"#;
//! let decoded = decode_otlp_traces(body, OtlpEncoding::Json, "default")?;
//! assert_eq!((decoded.accepted, decoded.rejected), (1, 1));
//! let services = decoded.batch.column_by_name("service_name").unwrap().as_string::<i32>();
//! assert_eq!(services.value(0), "checkout");
//!
//! let response = encode_traces_response(
//!     OtlpEncoding::Json,
//!     decoded.rejected,
//!     decoded.rejection_message.as_deref(),
//! );
//! assert!(response.starts_with(br#"{"partialSuccess":{"rejectedSpans":1,"#));
//! # Ok::<(), lighttrace_ingest::IngestError>(())
//! ```

mod attributes;
mod compression;
mod otlp;
mod protobuf;
mod sentry;

pub use compression::decompress;
#[doc(hidden)]
pub use otlp::decode_otlp_protobuf_with_prost;
pub use otlp::{decode_otlp_traces, encode_traces_response, traces_response};
pub use sentry::{
    DecodedEnvelope, DecodedErrors, Envelope, EnvelopePart, Item, Sdk, SentryContext,
    decode_sentry_envelope, parse_sentry_envelope, sentry_key_from_auth_header,
    sentry_key_from_dsn, sentry_key_from_query,
};

/// The wire encoding of an OTLP/HTTP request (and of its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtlpEncoding {
    /// `application/x-protobuf`, and the gRPC transport.
    Protobuf,
    /// `application/json` (OTLP/JSON).
    Json,
}

/// The spans of one export request, ready for the WAL.
#[derive(Debug, Clone)]
pub struct DecodedSpans {
    /// The accepted spans; the schema is [`lighttrace_model::spans_schema`].
    pub batch: arrow::array::RecordBatch,
    /// Spans in `batch`.
    pub accepted: usize,
    /// Spans dropped by validation (bad ids or times).
    pub rejected: usize,
    /// Why spans were rejected, for the OTLP partial-success `error_message`;
    /// `None` when nothing was rejected. Lists the first few reasons only, so
    /// its length stays bounded whatever the request holds.
    pub rejection_message: Option<String>,
}

/// Why a request could not be decoded at all.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a valid request; answer 400 with this message.
    #[error("{0}")]
    Malformed(String),
    /// The decompressed body is larger than the caller's limit; answer 413.
    #[error("decompressed body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// A `Content-Encoding` other than identity, gzip, deflate or br; answer 415.
    #[error("unsupported Content-Encoding {0:?}: use gzip, deflate, br or identity")]
    UnsupportedContentEncoding(String),
    /// The body does not inflate with its declared encoding; answer 400.
    #[error("{0}")]
    BadCompression(String),
}
