//! The `logs` and `errors` tables, beside `spans` (DESIGN.md). All three share
//! the columns the storage partitions and prunes by: `project`, `service_name`,
//! a nanosecond UTC time (`start_time` for spans, `time` here) and `trace_id`
//! (32 lowercase hex characters), so one trace id finds a request's spans, log
//! lines and errors alike.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::schema::{attribute_map_type, timestamp_type};

/// Column names of the `logs` table (those shared with `spans` have the same names).
pub mod log_columns {
    pub use crate::schema::columns::{
        ATTRIBUTE_TYPES, ATTRIBUTES, PROJECT, RESOURCE_ATTRIBUTE_TYPES, RESOURCE_ATTRIBUTES,
        SCOPE_NAME, SCOPE_VERSION, SERVICE_NAME, SOURCE, SPAN_ID, TRACE_ID,
    };
    pub const TIME: &str = "time";
    pub const OBSERVED_TIME: &str = "observed_time";
    pub const SEVERITY_NUMBER: &str = "severity_number";
    pub const SEVERITY_TEXT: &str = "severity_text";
    pub const BODY: &str = "body";
    pub const BODY_TYPE: &str = "body_type";
    pub const FLAGS: &str = "flags";
    pub const EVENT_NAME: &str = "event_name";
}

/// Column names of the `errors` table.
pub mod error_columns {
    pub use crate::schema::columns::{PROJECT, SERVICE_NAME, SOURCE, SPAN_ID, TRACE_ID};
    pub const EVENT_ID: &str = "event_id";
    pub const TIME: &str = "time";
    pub const LEVEL: &str = "level";
    pub const EXCEPTION_TYPE: &str = "exception_type";
    pub const EXCEPTION_VALUE: &str = "exception_value";
    pub const STACK_FRAMES: &str = "stack_frames";
    pub const RELEASE: &str = "release";
    pub const ENVIRONMENT: &str = "environment";
    pub const TRANSACTION: &str = "transaction";
    pub const TAGS: &str = "tags";
}

/// The schema of the `logs` table (OTLP log records), in column order.
///
/// | column | type | |
/// |---|---|---|
/// | `project` | Utf8 | as for spans |
/// | `time` | Timestamp(ns, UTC) | the record's time, or its observed time when that is 0 |
/// | `observed_time` | Timestamp(ns, UTC), nullable | |
/// | `trace_id`, `span_id` | Utf8, nullable | lowercase hex; null when absent |
/// | `severity_number` | Int32 | OTLP severity number (0 = unspecified) |
/// | `severity_text` | Utf8, nullable | |
/// | `body` | Utf8, nullable | a string body as is, other values rendered like attribute values |
/// | `body_type` | Utf8, nullable | null for a string, else like `attribute_types` |
/// | `attributes`, `attribute_types`, `resource_attributes`, `resource_attribute_types` | Map(Utf8 → Utf8) | as for spans |
/// | `scope_name`, `scope_version` | Utf8, nullable | |
/// | `flags` | Int64 | OTLP log record flags |
/// | `event_name` | Utf8, nullable | |
/// | `service_name` | Utf8 | `service.name`, else `unknown_service` |
/// | `source` | Utf8 | `otlp` |
pub fn logs_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use log_columns::*;
            Arc::new(Schema::new(vec![
                Field::new(PROJECT, DataType::Utf8, false),
                Field::new(TIME, timestamp_type(), false),
                Field::new(OBSERVED_TIME, timestamp_type(), true),
                Field::new(TRACE_ID, DataType::Utf8, true),
                Field::new(SPAN_ID, DataType::Utf8, true),
                Field::new(SEVERITY_NUMBER, DataType::Int32, false),
                Field::new(SEVERITY_TEXT, DataType::Utf8, true),
                Field::new(BODY, DataType::Utf8, true),
                Field::new(BODY_TYPE, DataType::Utf8, true),
                Field::new(ATTRIBUTES, attribute_map_type(), false),
                Field::new(ATTRIBUTE_TYPES, attribute_map_type(), false),
                Field::new(RESOURCE_ATTRIBUTES, attribute_map_type(), false),
                Field::new(RESOURCE_ATTRIBUTE_TYPES, attribute_map_type(), false),
                Field::new(SCOPE_NAME, DataType::Utf8, true),
                Field::new(SCOPE_VERSION, DataType::Utf8, true),
                Field::new(FLAGS, DataType::Int64, false),
                Field::new(EVENT_NAME, DataType::Utf8, true),
                Field::new(SERVICE_NAME, DataType::Utf8, false),
                Field::new(SOURCE, DataType::Utf8, false),
            ]))
        })
        .clone()
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
