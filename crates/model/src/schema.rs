//! The Arrow schema of the `spans` table.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Column names of the `spans` table. Users type these; they are a contract.
pub mod columns {
    pub const PROJECT: &str = "project";
    pub const TRACE_ID: &str = "trace_id";
    pub const SPAN_ID: &str = "span_id";
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    pub const TRACE_STATE: &str = "trace_state";
    pub const SERVICE_NAME: &str = "service_name";
    pub const NAME: &str = "name";
    pub const KIND: &str = "kind";
    pub const START_TIME: &str = "start_time";
    pub const END_TIME: &str = "end_time";
    pub const DURATION_NS: &str = "duration_ns";
    pub const STATUS_CODE: &str = "status_code";
    pub const STATUS_MESSAGE: &str = "status_message";
    pub const ATTRIBUTES: &str = "attributes";
    pub const ATTRIBUTE_TYPES: &str = "attribute_types";
    pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
    pub const RESOURCE_ATTRIBUTE_TYPES: &str = "resource_attribute_types";
    pub const SCOPE_NAME: &str = "scope_name";
    pub const SCOPE_VERSION: &str = "scope_version";
    pub const EVENTS: &str = "events";
    pub const LINKS: &str = "links";
    pub const SOURCE: &str = "source";
}

/// Timestamp type of every time column: nanoseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// `Map(Utf8 -> Utf8)` with arrow's default field names (`entries`, `keys`, `values`),
/// as built by `arrow::array::MapBuilder`.
pub fn attribute_map_type() -> DataType {
    DataType::Map(Arc::new(map_entries_field()), false)
}

pub(crate) fn map_entries_field() -> Field {
    Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    )
}

pub(crate) fn event_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("name", DataType::Utf8, false),
        Field::new("attributes", attribute_map_type(), false),
        Field::new("attribute_types", attribute_map_type(), false),
    ])
}

pub(crate) fn link_fields() -> Fields {
    Fields::from(vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("attributes", attribute_map_type(), false),
        Field::new("attribute_types", attribute_map_type(), false),
    ])
}

/// `List(Struct(time, name, attributes, attribute_types))`.
pub fn events_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(event_fields()),
        true,
    )))
}

/// `List(Struct(trace_id, span_id, trace_state, attributes, attribute_types))`.
pub fn links_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(link_fields()),
        true,
    )))
}

/// The schema of the `spans` table, in column order.
pub fn spans_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use columns::*;
            Arc::new(Schema::new(vec![
                Field::new(PROJECT, DataType::Utf8, false),
                Field::new(TRACE_ID, DataType::Utf8, false),
                Field::new(SPAN_ID, DataType::Utf8, false),
                Field::new(PARENT_SPAN_ID, DataType::Utf8, true),
                Field::new(TRACE_STATE, DataType::Utf8, true),
                Field::new(SERVICE_NAME, DataType::Utf8, false),
                Field::new(NAME, DataType::Utf8, false),
                Field::new(KIND, DataType::Utf8, false),
                Field::new(START_TIME, timestamp_type(), false),
                Field::new(END_TIME, timestamp_type(), false),
                Field::new(DURATION_NS, DataType::Int64, false),
                Field::new(STATUS_CODE, DataType::Utf8, false),
                Field::new(STATUS_MESSAGE, DataType::Utf8, true),
                Field::new(ATTRIBUTES, attribute_map_type(), false),
                Field::new(ATTRIBUTE_TYPES, attribute_map_type(), false),
                Field::new(RESOURCE_ATTRIBUTES, attribute_map_type(), false),
                Field::new(RESOURCE_ATTRIBUTE_TYPES, attribute_map_type(), false),
                Field::new(SCOPE_NAME, DataType::Utf8, true),
                Field::new(SCOPE_VERSION, DataType::Utf8, true),
                Field::new(EVENTS, events_type(), false),
                Field::new(LINKS, links_type(), false),
                Field::new(SOURCE, DataType::Utf8, false),
            ]))
        })
        .clone()
}

/// Column names of the `errors` table (Sentry error events), a contract like
/// [`columns`].
pub mod error_columns {
    pub const PROJECT: &str = "project";
    pub const EVENT_ID: &str = "event_id";
    pub const TIME: &str = "time";
    pub const TRACE_ID: &str = "trace_id";
    pub const SPAN_ID: &str = "span_id";
    pub const LEVEL: &str = "level";
    pub const EXCEPTION_TYPE: &str = "exception_type";
    pub const EXCEPTION_VALUE: &str = "exception_value";
    pub const STACK_FRAMES: &str = "stack_frames";
    pub const RELEASE: &str = "release";
    pub const ENVIRONMENT: &str = "environment";
    pub const TRANSACTION: &str = "transaction";
    pub const TAGS: &str = "tags";
    pub const SERVICE_NAME: &str = "service_name";
    pub const SOURCE: &str = "source";
}

/// The schema of the `errors` table, in column order: one row per Sentry
/// error event, linked to its trace by `trace_id` (and `span_id`, the span
/// that was active when the error was captured).
///
/// | column | type | meaning |
/// |---|---|---|
/// | `project` | Utf8 | the Sentry project id of the envelope's URL |
/// | `event_id` | Utf8 | 32 lowercase hex chars |
/// | `time` | Timestamp(ns, UTC) | the event's `timestamp` |
/// | `trace_id` | Utf8, nullable | 32 lowercase hex chars, from `contexts.trace.trace_id` |
/// | `span_id` | Utf8, nullable | 16 lowercase hex chars, from `contexts.trace.span_id` |
/// | `level` | Utf8 | `fatal`, `error`, `warning`, `info`, `debug` |
/// | `exception_type` | Utf8, nullable | e.g. `ValueError` |
/// | `exception_value` | Utf8, nullable | the exception's message |
/// | `stack_frames` | Utf8, nullable | JSON: `[{"filename", "function", "lineno", "in_app"}, …]`, oldest call first |
/// | `release`, `environment`, `transaction` | Utf8, nullable | as the SDK sent them |
/// | `tags` | Map(Utf8 → Utf8) | the event's tags |
/// | `service_name` | Utf8 | like the `spans` column of the same name |
/// | `source` | Utf8 | `sentry` |
pub fn errors_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use error_columns::*;
            Arc::new(Schema::new(vec![
                Field::new(PROJECT, DataType::Utf8, false),
                Field::new(EVENT_ID, DataType::Utf8, false),
                Field::new(TIME, timestamp_type(), false),
                Field::new(TRACE_ID, DataType::Utf8, true),
                Field::new(SPAN_ID, DataType::Utf8, true),
                Field::new(LEVEL, DataType::Utf8, false),
                Field::new(EXCEPTION_TYPE, DataType::Utf8, true),
                Field::new(EXCEPTION_VALUE, DataType::Utf8, true),
                Field::new(STACK_FRAMES, DataType::Utf8, true),
                Field::new(RELEASE, DataType::Utf8, true),
                Field::new(ENVIRONMENT, DataType::Utf8, true),
                Field::new(TRANSACTION, DataType::Utf8, true),
                Field::new(TAGS, attribute_map_type(), false),
                Field::new(SERVICE_NAME, DataType::Utf8, false),
                Field::new(SOURCE, DataType::Utf8, false),
            ]))
        })
        .clone()
}

/// Span kind, stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// From the OTLP enum value; unknown values map to `Unspecified`.
    pub fn from_otlp(value: i32) -> Self {
        match value {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// Span status, stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }

    /// From the OTLP enum value; unknown values map to `Unset`.
    pub fn from_otlp(value: i32) -> Self {
        match value {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
}

/// Which receiver a span came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Otlp,
    Sentry,
    Zipkin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Otlp => "otlp",
            Source::Sentry => "sentry",
            Source::Zipkin => "zipkin",
        }
    }
}
