//! The span model shared by every stage of LightTrace.
//!
//! This crate owns the Arrow schema of the `spans` table (the SQL contract of
//! `DESIGN.md`), the id types, and [`SpanBatchBuilder`], the one place that turns
//! decoded spans into Arrow `RecordBatch`es. The `errors` table (Sentry error
//! events) has its schema here too ([`errors_schema`]) and its
//! [`ErrorBatchBuilder`]. Receivers (`lighttrace-ingest`) decode
//! wire formats straight into this builder; storage and query only ever see the
//! resulting batches.
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

mod builder;
mod errors;
mod ids;
mod schema;
mod tables;
mod text_columns;

pub use builder::{
    Attr, AttrType, BatchSizing, EventRecord, LinkRecord, PendingAttr, PendingEvent, PendingLink,
    PendingValue, RenderedAttributes, SharedAttributes, SpanBatchBuilder, SpanRecord,
};
pub use errors::{ErrorBatchBuilder, ErrorRecord};
pub use ids::{IdError, SpanId, TraceId, hex_lower};
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
