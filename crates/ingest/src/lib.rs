//! Receivers' decoders: wire formats (OTLP, Zipkin v2) in, Arrow `spans`
//! (and OTLP logs: `logs`) batches out.
//!
//! This crate is the "decode to Arrow RecordBatch" stage of the data path in
//! `DESIGN.md`. It is pure: no sockets, no files, no clocks, so every function
//! here can be unit-tested and fuzzed (see the top-level `fuzz/` folder).
//!
//! ```text
//! HTTP / gRPC body ──► decompress ──► decode_otlp_traces  ──► RecordBatch ──► WAL
//!   (server crate)     (this crate)     decode_zipkin_spans   (spans_schema)  (storage)
//!                                       decode_otlp_logs      (logs_schema)
//!                                       (this crate)
//!                                             │
//!                     encode_traces_response ◄┘ accepted / rejected counts
//! ```
//!
//! The server calls [`decompress`] with the request's `Content-Encoding` and its
//! body limit, then [`decode_otlp_traces`] (or [`decode_zipkin_spans`]) with
//! the encoding chosen from the `Content-Type`, writes [`DecodedSpans::batch`]
//! to the WAL, and answers with [`encode_traces_response`] (Zipkin: 202).
//! [`IngestError`] says which HTTP status fits: `Malformed` and
//! `BadCompression` are 400, `TooLarge` is 413, `UnsupportedContentEncoding`
//! is 415.
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
//! # OTLP logs to the `logs` table
//!
//! [`decode_otlp_logs`] reads an `ExportLogsServiceRequest` (the body of
//! `POST /v1/logs` and of gRPC `LogsService/Export`) the way traces are read:
//! protobuf in place by the same borrowing wire decoder (held to prost's
//! `ExportLogsServiceRequest` by differential tests and a fuzz target; the
//! prost path stays as `decode_otlp_logs_protobuf_with_prost`), JSON with
//! serde. Each log record becomes one row of
//! [`lighttrace_model::logs_schema`]:
//!
//! | OTLP `LogRecord` | `logs` column |
//! |---|---|
//! | `time_unix_nano`; when 0, `observed_time_unix_nano` (0 when both are) | `time` |
//! | `observed_time_unix_nano`; 0 is null | `observed_time` |
//! | `trace_id`: 16 bytes; empty or all zeros is null | `trace_id` (32 lowercase hex) |
//! | `span_id`: 8 bytes; empty or all zeros is null | `span_id` (16 lowercase hex) |
//! | `severity_number`, as sent | `severity_number` |
//! | `severity_text`; empty is null | `severity_text` |
//! | `body`: a string as it is; any other value rendered as an attribute value is (table above); no body, or one with no value set, is null | `body` |
//! | the type of a non-string `body` (`int`, `double`, `bool`, `bytes`, `array`, `kvlist`) | `body_type` (null for a string) |
//! | `attributes` | `attributes`, `attribute_types` |
//! | the resource's attributes | `resource_attributes`, `resource_attribute_types` |
//! | the scope's `name`, `version`; empty is null | `scope_name`, `scope_version` |
//! | `flags` | `flags` |
//! | `event_name`; empty is null | `event_name` |
//! | resource attribute `service.name` (a non-empty string), else `unknown_service` | `service_name` |
//! | (none) | `project` = the caller's argument, `source` = `otlp` |
//!
//! A record whose `trace_id` is neither empty nor 16 bytes, or whose
//! `span_id` is neither empty nor 8 bytes, is rejected and counted in
//! [`DecodedLogs::rejected`] (the rest is kept; OTLP partial success, answered
//! with [`encode_logs_response`]'s `rejectedLogRecords`). Every other record
//! is kept: a time past the year 2262 is stored as the largest timestamp. As
//! for spans, values nested deeper than 16 levels, or a request that would
//! expand to more than `max(64 MiB, 16 × body size)` of text, make the whole
//! request [`IngestError::Malformed`].
//!
//! ```
//! use arrow::array::AsArray;
//! use lighttrace_ingest::{OtlpEncoding, decode_otlp_logs};
//!
//! let body = br#"{"resourceLogs":[{
//!     "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"payment"}}]},
//!     "scopeLogs":[{"logRecords":[
//!         {"timeUnixNano":"1544712660300000000","severityNumber":17,"severityText":"ERROR",
//!          "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
//!          "body":{"stringValue":"card declined"}},
//!         {"timeUnixNano":"1544712660300000000","spanId":"eee1"}
//!     ]}]
//! }]}"#;
//! let decoded = decode_otlp_logs(body, OtlpEncoding::Json, "default")?;
//! assert_eq!((decoded.accepted, decoded.rejected), (1, 1));
//! let column = |name| decoded.batch.column_by_name(name).unwrap().as_string::<i32>().value(0);
//! assert_eq!(column("body"), "card declined");
//! assert_eq!(column("trace_id"), "5b8efff798038103d269b633813fc60c");
//! # Ok::<(), lighttrace_ingest::IngestError>(())
//! ```
//!
//! # Zipkin v2 to the `spans` table
//!
//! [`decode_zipkin_spans`] reads the body of `POST /api/v2/spans`: a JSON
//! array of Zipkin v2 spans, or a proto3 `zipkin.proto3.ListOfSpans`. Each span
//! is read (strings borrowed from the body), checked and appended to the
//! builder before the next one is read; there is no intermediate JSON tree.
//!
//! | Zipkin v2 | `spans` column |
//! |---|---|
//! | `traceId`: 1 to 32 hex digits (16 = a 64-bit id, 32 = 128-bit), any case; protobuf: 8 or 16 bytes | `trace_id`, left-padded with zeros to 32 digits: `463ac35c9f6413ad` is `0000000000000000463ac35c9f6413ad` |
//! | `id`: 1 to 16 hex digits; protobuf: 8 bytes | `span_id`, left-padded to 16 |
//! | `parentId` | `parent_span_id`; absent, empty or all zeros: null (a root) |
//! | `name` | `name` (absent: empty) |
//! | `kind`: `CLIENT`, `SERVER`, `PRODUCER`, `CONSUMER` (any case) | `client`, `server`, `producer`, `consumer` |
//! | `kind` absent or `null` (protobuf: 0) | `internal`: Zipkin's "local span", and what the OpenTelemetry exporters send for an internal span |
//! | `kind` of another value | `unspecified` |
//! | `timestamp` (µs since the epoch) | `start_time` = `timestamp` × 1000 |
//! | `duration` (µs) | `end_time` = `start_time` + `duration` × 1000; absent: 0 |
//! | `localEndpoint.serviceName` | `service_name` and `resource_attributes['service.name']`; absent or empty: `unknown_service` (and no resource attribute) |
//! | `tags` | `attributes`, every value a string (no `attribute_types` entry); a number or boolean sent as a tag value is kept as its JSON text, a `null` one is left out; of a key given twice the last value wins |
//! | `tags['otel.status_code']`: `OK`, `ERROR`, `UNSET` | `status_code` `ok`, `error`, `unset` |
//! | `tags['error']` (when `otel.status_code` is absent or another value) | `status_code` = `error` |
//! | `tags['error']`, else `tags['otel.status_description']`, when not empty and the status is `error` | `status_message` |
//! | `tags['otel.scope.name']` / `['otel.scope.version']` (else `otel.library.name` / `.version`) | `scope_name` / `scope_version` |
//! | `annotations[i]`: `timestamp`, `value` | an event at `timestamp` × 1000 named `value`, no attributes |
//! | an annotation `value` of the form `{"<name>": {<attributes>}}` (how the OpenTelemetry exporters write span events) | an event named `<name>` with those attributes: strings as they are; integers `int`, other numbers `double`, booleans `bool` (in `attribute_types`); `null` as an empty string; arrays and objects as their JSON text |
//! | `localEndpoint.ipv4` (else `.ipv6`) | `attributes['network.local.address']` |
//! | `localEndpoint.ipv6`, when there is also an `ipv4` | `attributes['zipkin.local_endpoint.ipv6']` |
//! | `localEndpoint.port` (1 to 65535) | `attributes['network.local.port']`, type `int` |
//! | `remoteEndpoint.serviceName` | `attributes['peer.service']` |
//! | `remoteEndpoint.ipv4` (else `.ipv6`) | `attributes['network.peer.address']` |
//! | `remoteEndpoint.ipv6`, when there is also an `ipv4` | `attributes['zipkin.remote_endpoint.ipv6']` |
//! | `remoteEndpoint.port` (1 to 65535) | `attributes['network.peer.port']`, type `int` |
//! | `debug`, `shared` (when sent, also `false`) | `attributes['zipkin.debug']`, `attributes['zipkin.shared']`, type `bool` |
//! | (none) | `source` = `zipkin`; `project` = the caller's argument; `trace_state`, `links`: empty |
//!
//! The attributes derived from endpoints and flags use the OpenTelemetry
//! semantic convention names where one fits (`network.*`, `peer.service`); a
//! tag of the same key wins over them. Tags are kept as sent, the ones the
//! status and scope are read from included. Zipkin has no resource: the
//! OpenTelemetry exporters copy the resource attributes into every span's
//! tags, so `service.version` and the like are in `attributes` for a span
//! that came through Zipkin (`resource_attributes` only holds `service.name`).
//! In protobuf, IP addresses are bytes and are rendered as text (`10.0.0.1`,
//! `2001:db8::1`); an address of another length is left out.
//!
//! A span is rejected (counted in [`DecodedSpans::rejected`], the rest kept)
//! when its `traceId` or `id` is missing, not hex, too long or all zeros, its
//! `parentId` is not hex, its `timestamp` is missing or 0, negative, not a
//! whole number or past the year 2262 in nanoseconds, its `duration` is
//! negative or too large, or an annotation has no timestamp (or, in JSON, no
//! value). The whole request is [`IngestError::Malformed`] when it is not a
//! JSON array of objects (or not a valid `ListOfSpans`), or a known field has
//! the wrong JSON type (`"traceId": 5`, a tag value that is an object): a
//! client with such a bug should hear about it rather than lose spans
//! silently. Unknown fields are skipped, `null` is the same as absent, and a
//! field given twice keeps its last value.
//!
//! ```
//! use arrow::array::AsArray;
//! use lighttrace_ingest::{ZipkinEncoding, decode_zipkin_spans};
//!
//! let body = br#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","name":"GET /cart",
//!     "timestamp":1714564800000000,"duration":1500,"kind":"SERVER",
//!     "localEndpoint":{"serviceName":"frontend","port":8080},"tags":{"http.route":"/cart"}}]"#;
//! let decoded = decode_zipkin_spans(body, ZipkinEncoding::Json, "default")?;
//! assert_eq!((decoded.accepted, decoded.rejected), (1, 0));
//! let column = |name| decoded.batch.column_by_name(name).unwrap().as_string::<i32>().value(0);
//! assert_eq!(column("trace_id"), "0000000000000000463ac35c9f6413ad");
//! assert_eq!(column("kind"), "server");
//! assert_eq!(column("source"), "zipkin");
//! # Ok::<(), lighttrace_ingest::IngestError>(())
//! ```
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
mod logs;
mod otlp;
mod protobuf;
mod zipkin;

pub use compression::decompress;
#[doc(hidden)]
pub use logs::decode_otlp_logs_protobuf_with_prost;
pub use logs::{decode_otlp_logs, encode_logs_response, logs_response};
#[doc(hidden)]
pub use otlp::decode_otlp_protobuf_with_prost;
pub use otlp::{decode_otlp_traces, encode_traces_response, traces_response};
pub use zipkin::{ZipkinEncoding, decode_zipkin_spans};

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

/// The log records of one export request, ready for the WAL.
#[derive(Debug, Clone)]
pub struct DecodedLogs {
    /// The accepted log records; the schema is [`lighttrace_model::logs_schema`].
    pub batch: arrow::array::RecordBatch,
    /// Log records in `batch`.
    pub accepted: usize,
    /// Log records dropped by validation (trace or span ids of a wrong length).
    pub rejected: usize,
    /// Why log records were rejected, for the OTLP partial-success
    /// `error_message`; `None` when nothing was rejected. Lists the first few
    /// reasons only.
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
    /// A `Content-Encoding` other than identity, gzip or deflate; answer 415.
    #[error("unsupported Content-Encoding {0:?}: use gzip, deflate or identity")]
    UnsupportedContentEncoding(String),
    /// The body does not inflate with its declared encoding; answer 400.
    #[error("{0}")]
    BadCompression(String),
}
