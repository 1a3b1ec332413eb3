//! The span and log model shared by every stage of LightTrace.
//!
//! This crate owns the Arrow schemas of the `spans` table (the SQL contract of
//! `DESIGN.md`), of the `logs` table (below) and of the `errors` table (Sentry
//! error events, [`errors_schema`]), the id types, and [`SpanBatchBuilder`],
//! [`LogBatchBuilder`] and [`ErrorBatchBuilder`], the one place that turns
//! decoded spans, log records and error events into Arrow `RecordBatch`es.
//! Receivers (`lighttrace-ingest`) decode wire formats straight into these
//! builders; storage and query only ever see the resulting batches.
//!
//! # Attribute values
//!
//! OTLP attribute values are typed (string, int, double, bool, bytes, array,
//! kvlist). SQL users want `attributes['http.route']` to be a plain string, so a
//! span carries two maps:
//!
//! * `attributes: Map<Utf8, Utf8>`: every attribute, its value rendered as text;
//! * `attribute_types: Map<Utf8, Utf8>`: the type of each attribute that is *not*
//!   a string (`int`, `double`, `bool`, `bytes`, `array`, `kvlist`, `json`).
//!
//! The renderings are chosen so that the type plus the text give back the exact
//! original value:
//!
//! | type | text |
//! |---|---|
//! | string | the string itself |
//! | int | decimal (`-42`) |
//! | double | shortest text that parses back to the same `f64` (`0.1`, `1`, `NaN`, `inf`) |
//! | bool | `true` / `false` |
//! | bytes | standard base64 with padding |
//! | array | the OTLP/JSON encoding of the array's values: `[{"stringValue":"a"},{"intValue":"1"}]` |
//! | kvlist | the OTLP/JSON encoding of the list's values: `[{"key":"k","value":{"boolValue":true}}]` |
//! | json | a JSON object or array from a Sentry SDK (span `data`, attribute values), as compact JSON text |
//!
//! Resource attributes (`resource_attributes` / `resource_attribute_types`), and
//! the attributes of events and links, follow the same rules.
//!
//! ```
//! use lighttrace_model::{Attr, SpanBatchBuilder, SpanKind, SpanRecord, StatusCode, Source};
//! let mut builder = SpanBatchBuilder::default();
//! builder.append(&SpanRecord {
//!     project: "default",
//!     trace_id: [1; 16],
//!     span_id: [2; 8],
//!     parent_span_id: None,
//!     trace_state: None,
//!     service_name: "frontend",
//!     name: "GET /cart",
//!     kind: SpanKind::Server,
//!     start_time_ns: 1_700_000_000_000_000_000,
//!     end_time_ns: 1_700_000_000_050_000_000,
//!     status_code: StatusCode::Ok,
//!     status_message: None,
//!     attributes: &[Attr::string("http.route", "/cart")],
//!     resource_attributes: &[Attr::string("service.name", "frontend")],
//!     scope_name: None,
//!     scope_version: None,
//!     events: &[],
//!     links: &[],
//!     source: Source::Otlp,
//! });
//! let batch = builder.finish();
//! assert_eq!(batch.num_rows(), 1);
//! ```
//!
//! # The `logs` table
//!
//! OpenTelemetry log records (OTLP `LogRecord`s), one row each, in
//! [`logs_schema`] order. Users type these names ([`log_columns`]); the
//! storage partitions by `project`, `service_name` and the hour of `time`
//! (`logs/project=P/service=S/date=YYYY-MM-DD/hour=HH/`) and prunes by
//! `trace_id`, as for spans.
//!
//! | column | SQL type | meaning |
//! |---|---|---|
//! | `project` | Utf8 | the tenant, as for spans |
//! | `time` | Timestamp(ns, UTC) | when the event happened: `time_unix_nano`, or `observed_time_unix_nano` when that is 0 (0 when both are) |
//! | `observed_time` | Timestamp(ns, UTC), null when not sent | when an SDK or collector saw the event |
//! | `trace_id` | Utf8, null when absent or all zeros | 32 lowercase hex chars: the trace the record was emitted in |
//! | `span_id` | Utf8, null when absent or all zeros | 16 lowercase hex chars: the span the record was emitted in |
//! | `severity_number` | Int32 | OTLP `SeverityNumber` as sent: 0 unspecified, 1–4 trace, 5–8 debug, 9–12 info, 13–16 warn, 17–20 error, 21–24 fatal |
//! | `severity_text` | Utf8, null when empty | as sent: `INFO`, `WARNING`, … |
//! | `body` | Utf8, null when absent | a string body as it is; any other value rendered as attribute values are (table above) |
//! | `body_type` | Utf8, null for a string (or absent) body | `int`, `double`, `bool`, `bytes`, `array`, `kvlist`, like `attribute_types` |
//! | `attributes`, `attribute_types` | Map(Utf8 → Utf8) | the record's attributes, as for spans |
//! | `resource_attributes`, `resource_attribute_types` | Map(Utf8 → Utf8) | its resource's attributes |
//! | `scope_name`, `scope_version` | Utf8, null when empty | the instrumentation scope (a Python logger's name) |
//! | `flags` | Int64 | OTLP `flags`: W3C trace flags in the low byte (1 = sampled) |
//! | `event_name` | Utf8, null when empty | the OTLP `event_name` of an event record |
//! | `service_name` | Utf8 | `service.name` of the resource, else `unknown_service` |
//! | `source` | Utf8 | `otlp` |
//!
//! ```
//! use lighttrace_model::{Attr, AttrType, LogBatchBuilder, LogBody, LogRecord, Source};
//! let mut builder = LogBatchBuilder::default();
//! builder.append(&LogRecord {
//!     project: "default",
//!     time_ns: 1_700_000_000_000_000_000,
//!     observed_time_ns: Some(1_700_000_000_000_100_000),
//!     trace_id: Some([1; 16]),
//!     span_id: Some([2; 8]),
//!     severity_number: 17,
//!     severity_text: Some("ERROR"),
//!     body: Some(LogBody { text: "card declined", ty: AttrType::String }),
//!     attributes: &[Attr::typed("code.lineno", "42", AttrType::Int)],
//!     resource_attributes: &[Attr::string("service.name", "payment")],
//!     scope_name: Some("payment.charge"),
//!     scope_version: None,
//!     flags: 1,
//!     event_name: None,
//!     service_name: "payment",
//!     source: Source::Otlp,
//! });
//! let batch = builder.finish();
//! assert_eq!(batch.schema(), lighttrace_model::logs_schema());
//! ```

mod builder;
mod errors;
mod ids;
mod log_builder;
mod schema;
mod tables;
mod text_columns;

pub use builder::{
    Attr, AttrType, BatchSizing, EventRecord, LinkRecord, PendingAttr, PendingEvent, PendingLink,
    PendingValue, RenderedAttributes, SharedAttributes, SpanBatchBuilder, SpanRecord,
};
pub use errors::{ErrorBatchBuilder, ErrorRecord};
pub use ids::{IdError, SpanId, TraceId, hex_lower};
pub use log_builder::{LogBatchBuilder, LogBody, LogRecord};
pub use schema::{
    Source, SpanKind, StatusCode, attribute_map_type, columns, events_type, links_type,
    spans_schema,
};
pub use tables::{error_columns, errors_schema, log_columns, logs_schema};

/// Nanoseconds in one hour; partitions and folders are per UTC hour.
pub const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// The UTC hour (hours since the Unix epoch) that a nanosecond timestamp falls in.
pub fn hour_of(time_ns: i64) -> i64 {
    time_ns.div_euclid(NANOS_PER_HOUR)
}
