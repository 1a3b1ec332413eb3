//! Receivers' decoders: wire formats (OTLP traces and logs, Zipkin v2, Sentry
//! envelopes) in, Arrow `spans` (and `logs`, `errors`) batches out.
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
//!
//! Sentry envelope ──► decompress ──► decode_sentry_envelope ──► spans RecordBatch
//!                                                            └─► errors RecordBatch
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
//! # Sentry envelopes to the `spans` and `errors` tables
//!
//! [`decode_sentry_envelope`] reads what the Sentry SDKs send to
//! `POST /api/{project_id}/envelope/` (already decompressed by [`decompress`],
//! which takes `br` as well as gzip and deflate).
//!
//! **Framing** (Sentry's envelope specification): a header line (a JSON
//! object, `{}` will do), then items, each a header line and a payload of the
//! header's `length` bytes or, without `length`, up to the next newline. The
//! final newline is optional; blank lines where an item header is due are
//! skipped. Broken framing, more than 10,000 items, or a payload of a decoded
//! type that is not the JSON object it should be make the whole envelope
//! [`IngestError::Malformed`], with a message that names the item.
//!
//! **Items**: `transaction` and `span` become `spans` rows, `event` becomes an
//! `errors` row ([`lighttrace_model::errors_schema`]); every other type
//! (`session`, `sessions`, `client_report`, `attachment`, `profile`,
//! `check_in`, `replay_*`, `log`, …) is counted in
//! [`DecodedEnvelope::ignored_items`] and not even parsed.
//!
//! **Timestamps** are float (or integer) seconds since the epoch, rounded to
//! the microsecond (what an `f64` of today's time holds), or RFC 3339 strings
//! (any offset; none means UTC; full nanosecond precision), which the Python
//! SDK sends. Clock drift is not corrected with the envelope's `sent_at`.
//!
//! **Ids**: trace ids are 32 hex chars (a UUID with dashes is accepted too),
//! span ids 16, any case; they are stored lowercase. A parent span id of 16
//! zeros means none.
//!
//! **A `transaction` item** becomes one span for its `contexts.trace` (the
//! root of the transaction; its `parent_span_id` is the span it continues from
//! another service, if any) and one for each entry of `spans`:
//!
//! | `spans` column | transaction root | child span (`spans[]`) |
//! |---|---|---|
//! | `trace_id`, `span_id`, `parent_span_id` | `contexts.trace.*` | the span's, `trace_id` defaulting to the transaction's |
//! | `name` | `transaction`, else `op`, else `<unlabeled transaction>` | `description`, else `op`, else `<unlabeled span>` |
//! | `kind` | from `op` (below) | from `op` |
//! | `start_time`, `end_time` | `start_timestamp`, `timestamp` | the same |
//! | `status_code`, `status_message` | from `contexts.trace.status` (below) | from `status` |
//! | `attributes` | see below | see below |
//! | `resource_attributes` | `contexts.otel.resource` (OpenTelemetry-based SDKs), else empty | the same |
//! | `service_name` | `service.name` of `contexts.otel.resource`, else the project id | the same |
//! | `scope_name`, `scope_version` | `sdk.name`, `sdk.version` (the event's, else the envelope's) | the same |
//! | `project` | the project id of the URL | the same |
//! | `source` | `sentry` | `sentry` |
//!
//! A `service.name` that is only a placeholder (`unknown_service…`, or `node`
//! in the `sentry` namespace, which `@sentry/node` sets when the user names
//! none) counts as none: the project id is the better name.
//!
//! Attributes, where two sources give the same key the first listed wins:
//!
//! * every span of the transaction: `sentry.release`, `sentry.environment`,
//!   `sentry.sdk.name`, `sentry.platform` (from the event);
//! * `sentry.op` and `sentry.origin` (the span's `op` and `origin`);
//! * the root only: `sentry.span.source` (`transaction_info.source`) and
//!   `sentry.description` (`contexts.trace.description`, when sent);
//! * the span's `data` (the root's: `contexts.trace.data`), under their own
//!   keys (Sentry names them after OpenTelemetry's semantic conventions:
//!   `db.system`, `http.request.method`, `thread.name`, …);
//! * its `tags` under their own keys (the root has the event's `tags`);
//! * the root only: each measurement as `sentry.measurements.<name>` (type
//!   `double`) and its unit as `sentry.measurements.<name>.unit`.
//!
//! JSON values become attribute text like OTLP's: strings as they are,
//! integers in decimal (`int`), other numbers in shortest round-trip form
//! (`double`), booleans (`bool`), objects and arrays as compact JSON text
//! (type `json`); nulls are left out.
//!
//! **Kind**, from the span's `otel.kind` data when an OpenTelemetry-based SDK
//! recorded one (`SERVER`, `CLIENT`, …), else from the Sentry op, compared
//! without case by its dot-separated segments:
//!
//! | op | kind | examples |
//! |---|---|---|
//! | a segment `server` | `server` | `http.server`, `websocket.server`, `grpc.server` |
//! | a segment `client`, or starting with `db` or `cache` | `client` | `http.client`, `grpc.client`, `db`, `db.query`, `db.redis`, `cache.get` |
//! | `queue.publish…`, `queue.submit…` | `producer` | `queue.submit.celery` |
//! | `queue.process…`, `queue.task…`, `queue.receive…` | `consumer` | `queue.task.celery` |
//! | anything else, or none | `internal` | `function`, `ui.load`, `serialize` |
//!
//! **Status**: `ok` is `ok`; every other Sentry status (`internal_error`,
//! `deadline_exceeded`, `not_found`, `unknown`, …) is `error` with the Sentry
//! status as `status_message`; none is `unset`.
//!
//! **A `span` item** is either a span v2 container (`content_type`
//! `application/vnd.sentry.items.span.v2+json`, or a payload with `items`),
//! which `@sentry/node` 11 streams instead of transactions, or one standalone
//! span (the format of `spans[]`). A v2 span maps as a child span does, with
//! `name` as its name (else its `sentry.op` attribute), `start_timestamp` /
//! `end_timestamp`, its typed `attributes` under their keys (`integer` →
//! `int`, `double`, `boolean` → `bool`, `string`, arrays → `json`), `kind` from
//! its `sentry.op` attribute, `status` `ok` / `error` (the message from its
//! `sentry.status.message` attribute, else `error`), `service_name` from a
//! `service.name` attribute (else the project id), and its `links` (with their
//! attributes; a link with an invalid id is dropped).
//!
//! **Validation** is OTLP's: a non-zero trace and span id, `start > 0`,
//! `end >= start`; a missing or unreadable id or timestamp fails too. A span
//! that fails is left out and counted in [`DecodedSpans::rejected`], with the
//! first reasons in [`DecodedSpans::rejection_message`].
//!
//! **An `event` item** (an error or a message) becomes one `errors` row:
//! `event_id` (else the envelope's fallback id), `time` from `timestamp` (else
//! when the envelope was received), `trace_id` / `span_id` from
//! `contexts.trace` (null when absent or invalid), `level` (default `error`),
//! `exception_type` / `exception_value` / `stack_frames` from the last entry
//! of `exception.values` (Sentry lists chained exceptions from the cause to the
//! exception raised last, which titles the event; frames oldest call first,
//! each `{"filename", "function", "lineno", "in_app"}`, the filename falling
//! back to `abs_path`, then `module`), `exception_value` falling back to the
//! message (`logentry.formatted`, `logentry.message` or `message`) for events
//! without an exception, `release`, `environment`, `transaction`, `tags`
//! (values as text), and `service_name` as for spans.
//!
//! **Expansion**: attributes shared by a transaction's spans are copied onto
//! each, so an envelope whose rows would hold more than
//! `max(64 MiB, 16 × its decoded items' bytes)` (at most 1 GiB) of text is
//! refused, as OTLP requests are.
//!
//! ```
//! use lighttrace_ingest::{SentryContext, decode_sentry_envelope};
//!
//! // What the Python SDK sends (its transport compresses it; decompress first).
//! let envelope = concat!(
//!     r#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}"#, "\n",
//!     r#"{"type":"transaction","length":236}"#, "\n",
//!     r#"{"transaction":"GET /cart","contexts":{"trace":{"trace_id":"771a43a4192642f0b136d5159a501700","span_id":"aaaaaaaaaaaaaaa1","op":"http.server","status":"ok"}},"#,
//!     r#""start_timestamp":"2024-05-01T12:00:00Z","timestamp":1714564800.25,"spans":[]}"#, "\n",
//! );
//! let context = SentryContext {
//!     project: "42",
//!     received_at_ns: 1_714_564_801_000_000_000,
//!     fallback_event_id: [7; 16],
//! };
//! let decoded = decode_sentry_envelope(envelope.as_bytes(), &context)?;
//! assert_eq!(decoded.id, "9ec79c33ec9942ab8353589fcb2e04dc");
//! assert_eq!((decoded.spans.accepted, decoded.spans.rejected), (1, 0));
//! assert!(decoded.errors.is_empty());
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
mod sentry;
mod zipkin;

pub use compression::decompress;
#[doc(hidden)]
pub use logs::decode_otlp_logs_protobuf_with_prost;
pub use logs::{decode_otlp_logs, encode_logs_response, logs_response};
#[doc(hidden)]
pub use otlp::decode_otlp_protobuf_with_prost;
pub use otlp::{decode_otlp_traces, encode_traces_response, traces_response};
pub use sentry::{
    DecodedEnvelope, DecodedErrors, Envelope, EnvelopePart, Item, Sdk, SentryContext,
    decode_sentry_envelope, parse_sentry_envelope, sentry_key_from_auth_header,
    sentry_key_from_dsn, sentry_key_from_query,
};
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
    /// A `Content-Encoding` other than identity, gzip, deflate or br; answer 415.
    #[error("unsupported Content-Encoding {0:?}: use gzip, deflate, br or identity")]
    UnsupportedContentEncoding(String),
    /// The body does not inflate with its declared encoding; answer 400.
    #[error("{0}")]
    BadCompression(String),
}
