//! The Arrow schema of the `spans` table.

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayData, ArrayRef, make_array};
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
    static TYPE: OnceLock<DataType> = OnceLock::new();
    TYPE.get_or_init(|| DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())))
        .clone()
}

// The nested types below are built once and cloned, so every batch's arrays
// share their `Arc<Field>`s with the schema: comparing two of these types (as
// `concat` and `RecordBatch::try_new` do for every batch) is then a pointer
// comparison instead of a walk over field names and metadata.

/// `Map(Utf8 -> Utf8)` with arrow's default field names (`entries`, `keys`, `values`),
/// as built by `arrow::array::MapBuilder`.
pub fn attribute_map_type() -> DataType {
    static TYPE: OnceLock<DataType> = OnceLock::new();
    TYPE.get_or_init(|| DataType::Map(Arc::new(map_entries_field()), false))
        .clone()
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
    static FIELDS: OnceLock<Fields> = OnceLock::new();
    FIELDS
        .get_or_init(|| {
            Fields::from(vec![
                Field::new("time", timestamp_type(), false),
                Field::new("name", DataType::Utf8, false),
                Field::new("attributes", attribute_map_type(), false),
                Field::new("attribute_types", attribute_map_type(), false),
            ])
        })
        .clone()
}

pub(crate) fn link_fields() -> Fields {
    static FIELDS: OnceLock<Fields> = OnceLock::new();
    FIELDS
        .get_or_init(|| {
            Fields::from(vec![
                Field::new("trace_id", DataType::Utf8, false),
                Field::new("span_id", DataType::Utf8, false),
                Field::new("trace_state", DataType::Utf8, true),
                Field::new("attributes", attribute_map_type(), false),
                Field::new("attribute_types", attribute_map_type(), false),
            ])
        })
        .clone()
}

/// `List(Struct(time, name, attributes, attribute_types))`.
pub fn events_type() -> DataType {
    static TYPE: OnceLock<DataType> = OnceLock::new();
    TYPE.get_or_init(|| list_of_structs(event_fields())).clone()
}

/// `List(Struct(trace_id, span_id, trace_state, attributes, attribute_types))`.
pub fn links_type() -> DataType {
    static TYPE: OnceLock<DataType> = OnceLock::new();
    TYPE.get_or_init(|| list_of_structs(link_fields())).clone()
}

fn list_of_structs(fields: Fields) -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(fields), true)))
}

/// `array` with `ty`'s `Arc`s for its type and its children's types. `ty` must
/// equal the array's type (checked in debug builds): nothing but the type's
/// allocation changes. Arrow's builders make a fresh `Arc<Field>` for every
/// list, map and struct they finish; see [`attribute_map_type`] for why sharing
/// matters.
pub fn with_shared_type(array: &ArrayRef, ty: &DataType) -> ArrayRef {
    debug_assert_eq!(array.data_type(), ty);
    make_array(shared(array.to_data(), ty))
}

fn shared(data: ArrayData, ty: &DataType) -> ArrayData {
    let child_types: Vec<&DataType> = match ty {
        DataType::List(field) | DataType::LargeList(field) | DataType::Map(field, _) => {
            vec![field.data_type()]
        }
        DataType::Struct(fields) => fields.iter().map(|f| f.data_type()).collect(),
        _ => return data,
    };
    let children: Vec<ArrayData> = data
        .child_data()
        .iter()
        .zip(child_types)
        .map(|(child, ty)| shared(child.clone(), ty))
        .collect();
    let builder = data
        .into_builder()
        .data_type(ty.clone())
        .child_data(children);
    // SAFETY: only the type's allocation changes, to an equal type; the
    // buffers, children and lengths were valid for it before.
    unsafe { builder.build_unchecked() }
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
