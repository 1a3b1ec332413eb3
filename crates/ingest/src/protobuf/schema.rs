//! The OTLP trace and logs messages as prost-generated code declares them
//! (opentelemetry-proto 0.33, `opentelemetry.proto.*.v1`), and a walk that
//! checks a body against them without keeping anything.
//!
//! The walk is what makes the borrowing decoder refuse exactly what prost
//! refuses in the parts of a request that it does not otherwise read (scope
//! attributes, entity refs, attributes of rejected spans, values a later
//! field overrides), and it decides between a wire error and a later-found
//! rejection of the whole request (see `super::decode`).

use super::wire::{Reader, Value, WireResult};

/// One message type of the OTLP trace or logs export request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    ExportLogsServiceRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    ExportTraceServiceRequest,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    InstrumentationScope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// How a known field is encoded. Enums, `int32`, `uint32`, `int64` and `bool`
/// are all varints; none of these messages has a repeated scalar, so no
/// field is ever packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Varint,
    Fixed32,
    Fixed64,
    Bytes,
    String,
    Embedded(Message),
}

impl Message {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Message::ExportLogsServiceRequest => "ExportLogsServiceRequest",
            Message::ResourceLogs => "ResourceLogs",
            Message::ScopeLogs => "ScopeLogs",
            Message::LogRecord => "LogRecord",
            Message::ExportTraceServiceRequest => "ExportTraceServiceRequest",
            Message::ResourceSpans => "ResourceSpans",
            Message::Resource => "Resource",
            Message::EntityRef => "EntityRef",
            Message::ScopeSpans => "ScopeSpans",
            Message::InstrumentationScope => "InstrumentationScope",
            Message::Span => "Span",
            Message::Event => "Span.Event",
            Message::Link => "Span.Link",
            Message::Status => "Status",
            Message::KeyValue => "KeyValue",
            Message::AnyValue => "AnyValue",
            Message::ArrayValue => "ArrayValue",
            Message::KeyValueList => "KeyValueList",
        }
    }

    /// The kind and the name (for errors) of field `tag`, if the message has one.
    fn field(self, tag: u32) -> Option<(Kind, &'static str)> {
        use Kind::*;
        use Message as M;
        let field = match (self, tag) {
            (M::ExportLogsServiceRequest, 1) => (
                Embedded(M::ResourceLogs),
                "ExportLogsServiceRequest.resource_logs",
            ),
            (M::ResourceLogs, 1) => (Embedded(M::Resource), "ResourceLogs.resource"),
            (M::ResourceLogs, 2) => (Embedded(M::ScopeLogs), "ResourceLogs.scope_logs"),
            (M::ResourceLogs, 3) => (String, "ResourceLogs.schema_url"),
            (M::ScopeLogs, 1) => (Embedded(M::InstrumentationScope), "ScopeLogs.scope"),
            (M::ScopeLogs, 2) => (Embedded(M::LogRecord), "ScopeLogs.log_records"),
            (M::ScopeLogs, 3) => (String, "ScopeLogs.schema_url"),
            (M::LogRecord, 1) => (Fixed64, "LogRecord.time_unix_nano"),
            (M::LogRecord, 2) => (Varint, "LogRecord.severity_number"),
            (M::LogRecord, 3) => (String, "LogRecord.severity_text"),
            (M::LogRecord, 5) => (Embedded(M::AnyValue), "LogRecord.body"),
            (M::LogRecord, 6) => (Embedded(M::KeyValue), "LogRecord.attributes"),
            (M::LogRecord, 7) => (Varint, "LogRecord.dropped_attributes_count"),
            (M::LogRecord, 8) => (Fixed32, "LogRecord.flags"),
            (M::LogRecord, 9) => (Bytes, "LogRecord.trace_id"),
            (M::LogRecord, 10) => (Bytes, "LogRecord.span_id"),
            (M::LogRecord, 11) => (Fixed64, "LogRecord.observed_time_unix_nano"),
            (M::LogRecord, 12) => (String, "LogRecord.event_name"),
            (M::ExportTraceServiceRequest, 1) => (
                Embedded(M::ResourceSpans),
                "ExportTraceServiceRequest.resource_spans",
            ),
            (M::ResourceSpans, 1) => (Embedded(M::Resource), "ResourceSpans.resource"),
            (M::ResourceSpans, 2) => (Embedded(M::ScopeSpans), "ResourceSpans.scope_spans"),
            (M::ResourceSpans, 3) => (String, "ResourceSpans.schema_url"),
            (M::Resource, 1) => (Embedded(M::KeyValue), "Resource.attributes"),
            (M::Resource, 2) => (Varint, "Resource.dropped_attributes_count"),
            (M::Resource, 3) => (Embedded(M::EntityRef), "Resource.entity_refs"),
            (M::EntityRef, 1) => (String, "EntityRef.schema_url"),
            (M::EntityRef, 2) => (String, "EntityRef.type"),
            (M::EntityRef, 3) => (String, "EntityRef.id_keys"),
            (M::EntityRef, 4) => (String, "EntityRef.description_keys"),
            (M::ScopeSpans, 1) => (Embedded(M::InstrumentationScope), "ScopeSpans.scope"),
            (M::ScopeSpans, 2) => (Embedded(M::Span), "ScopeSpans.spans"),
            (M::ScopeSpans, 3) => (String, "ScopeSpans.schema_url"),
            (M::InstrumentationScope, 1) => (String, "InstrumentationScope.name"),
            (M::InstrumentationScope, 2) => (String, "InstrumentationScope.version"),
            (M::InstrumentationScope, 3) => {
                (Embedded(M::KeyValue), "InstrumentationScope.attributes")
            }
            (M::InstrumentationScope, 4) => {
                (Varint, "InstrumentationScope.dropped_attributes_count")
            }
            (M::Span, 1) => (Bytes, "Span.trace_id"),
            (M::Span, 2) => (Bytes, "Span.span_id"),
            (M::Span, 3) => (String, "Span.trace_state"),
            (M::Span, 4) => (Bytes, "Span.parent_span_id"),
            (M::Span, 5) => (String, "Span.name"),
            (M::Span, 6) => (Varint, "Span.kind"),
            (M::Span, 7) => (Fixed64, "Span.start_time_unix_nano"),
            (M::Span, 8) => (Fixed64, "Span.end_time_unix_nano"),
            (M::Span, 9) => (Embedded(M::KeyValue), "Span.attributes"),
            (M::Span, 10) => (Varint, "Span.dropped_attributes_count"),
            (M::Span, 11) => (Embedded(M::Event), "Span.events"),
            (M::Span, 12) => (Varint, "Span.dropped_events_count"),
            (M::Span, 13) => (Embedded(M::Link), "Span.links"),
            (M::Span, 14) => (Varint, "Span.dropped_links_count"),
            (M::Span, 15) => (Embedded(M::Status), "Span.status"),
            (M::Span, 16) => (Fixed32, "Span.flags"),
            (M::Event, 1) => (Fixed64, "Event.time_unix_nano"),
            (M::Event, 2) => (String, "Event.name"),
            (M::Event, 3) => (Embedded(M::KeyValue), "Event.attributes"),
            (M::Event, 4) => (Varint, "Event.dropped_attributes_count"),
            (M::Link, 1) => (Bytes, "Link.trace_id"),
            (M::Link, 2) => (Bytes, "Link.span_id"),
            (M::Link, 3) => (String, "Link.trace_state"),
            (M::Link, 4) => (Embedded(M::KeyValue), "Link.attributes"),
            (M::Link, 5) => (Varint, "Link.dropped_attributes_count"),
            (M::Link, 6) => (Fixed32, "Link.flags"),
            (M::Status, 2) => (String, "Status.message"),
            (M::Status, 3) => (Varint, "Status.code"),
            (M::KeyValue, 1) => (String, "KeyValue.key"),
            (M::KeyValue, 2) => (Embedded(M::AnyValue), "KeyValue.value"),
            (M::KeyValue, 3) => (Varint, "KeyValue.key_strindex"),
            (M::AnyValue, 1) => (String, "AnyValue.string_value"),
            (M::AnyValue, 2) => (Varint, "AnyValue.bool_value"),
            (M::AnyValue, 3) => (Varint, "AnyValue.int_value"),
            (M::AnyValue, 4) => (Fixed64, "AnyValue.double_value"),
            (M::AnyValue, 5) => (Embedded(M::ArrayValue), "AnyValue.array_value"),
            (M::AnyValue, 6) => (Embedded(M::KeyValueList), "AnyValue.kvlist_value"),
            (M::AnyValue, 7) => (Bytes, "AnyValue.bytes_value"),
            (M::AnyValue, 8) => (Varint, "AnyValue.string_value_strindex"),
            (M::ArrayValue, 1) => (Embedded(M::AnyValue), "ArrayValue.values"),
            (M::KeyValueList, 1) => (Embedded(M::KeyValue), "KeyValueList.values"),
            _ => return None,
        };
        Some(field)
    }
}

/// Checks that `body` is a valid `message` whose fields are read with the
/// recursion budget `ctx`, as prost would decode it.
pub(crate) fn check(message: Message, body: &[u8], ctx: u32) -> WireResult<()> {
    let mut reader = Reader::new(body, message.name());
    while let Some((tag, value)) = reader.next_field()? {
        let Some((kind, name)) = message.field(tag) else {
            reader.skip_unknown(tag, value, ctx)?;
            continue;
        };
        check_value(kind, name, value, ctx)?;
    }
    Ok(())
}

fn check_value(kind: Kind, name: &'static str, value: Value<'_>, ctx: u32) -> WireResult<()> {
    match kind {
        Kind::Varint => value.varint(name).map(drop),
        Kind::Fixed32 => value.fixed32(name).map(drop),
        Kind::Fixed64 => value.fixed64(name).map(drop),
        Kind::Bytes => value.bytes(name).map(drop),
        Kind::String => value.string(name).map(drop),
        Kind::Embedded(inner) => check(inner, value.message(name, ctx)?, ctx - 1),
    }
}
