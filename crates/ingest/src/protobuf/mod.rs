//! OTLP/protobuf read in place, straight into a [`SpanBatchBuilder`].
//!
//! prost would first build the whole `ExportTraceServiceRequest` (a `String`
//! or `Vec` for every id, name, key and value) only for us to copy it into
//! Arrow and drop it; that was most of the CPU of an export. Here every
//! string is borrowed from the body and checked for UTF-8 where prost checks
//! it, and each span is appended as soon as it is read.
//!
//! The result is the one [`crate::decode_otlp_protobuf_with_prost`] gives,
//! byte for byte, including for hostile bodies:
//!
//! * The body is accepted or refused exactly as prost accepts or refuses it
//!   ([`wire`]): unknown fields of every wire type are skipped, fields may come
//!   in any order, a repeated scalar keeps its last value, an embedded message
//!   seen twice (`resource`, `scope`, `status`, `KeyValue.value`) is merged
//!   field by field, and the recursion limit is prost's. Parts that are not
//!   rendered (scope attributes, entity refs, rejected spans, overridden
//!   values) are still checked, by [`schema::check`].
//! * A request that prost decodes but that we refuse as a whole (an attribute
//!   nested too deep, or too much text) is refused only once the rest of the
//!   body has been checked, so that a wire error later in the body wins as it
//!   does when prost decodes everything first.
//! * Resource attributes, service name, rejections and their messages, and
//!   attribute renderings are those of [`crate::otlp`] and
//!   [`crate::attributes`], shared with the JSON path.

pub(crate) mod logs;
mod schema;
mod values;
pub(crate) mod wire;

use lighttrace_model::{
    Attr, AttrType, BatchSizing, PendingEvent, PendingLink, SharedAttributes, SpanBatchBuilder,
    SpanId, TraceId,
};

use crate::attributes::{
    NestedTooDeep, PendingAttr, PendingValue, recycle_attrs, resolve as resolve_attrs,
};
use crate::otlp::{
    Budget, Rejections, ResourceAttributes, Scratch, SpanContext, SpanIdentity, SpanText,
    UNKNOWN_SERVICE, append_span, nested_too_deep, span_bytes, validate,
};
use crate::{DecodedSpans, IngestError};
use schema::Message;
use values::{RenderError, render_key_value};
use wire::{RECURSION_LIMIT, Reader, Value, WireError};

/// Why decoding stopped early.
pub(super) enum Stop {
    /// The body is not a valid request.
    Wire(WireError),
    /// The body is valid protobuf that we refuse as a whole.
    Refused(IngestError),
}

impl From<WireError> for Stop {
    fn from(e: WireError) -> Self {
        Stop::Wire(e)
    }
}

impl From<RenderError> for Stop {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Wire(e) => Stop::Wire(e),
            RenderError::TooDeep => Stop::Refused(nested_too_deep(NestedTooDeep)),
        }
    }
}

pub(super) fn malformed(e: WireError) -> IngestError {
    IngestError::Malformed(format!("invalid OTLP protobuf: {e}"))
}

/// Decodes an OTLP/protobuf `ExportTraceServiceRequest`; see the module docs.
pub(crate) fn decode(
    body: &[u8],
    project: &str,
    budget: usize,
) -> Result<DecodedSpans, IngestError> {
    let sizing = estimate_size(body);
    let mut sink = Sink {
        project,
        builder: SpanBatchBuilder::with_sizing(&sizing),
        rejections: Rejections::default(),
        accepted: 0,
        budget: Budget::new(budget),
        scratch: Scratch::default(),
        span_attributes: Vec::new(),
        events: Vec::new(),
        links: Vec::new(),
    };
    match request(body, &mut sink) {
        Ok(()) => Ok(DecodedSpans {
            batch: sink.builder.finish(),
            accepted: sink.accepted,
            rejected: sink.rejections.count(),
            rejection_message: sink.rejections.message(),
        }),
        Err(Stop::Wire(e)) => Err(malformed(e)),
        Err(Stop::Refused(refusal)) => {
            match schema::check(Message::ExportTraceServiceRequest, body, RECURSION_LIMIT) {
                Err(e) => Err(malformed(e)),
                Ok(()) => Err(refusal),
            }
        }
    }
}

/// Spans, span and resource attributes in the body and their encoded sizes
/// (about the text they render to), to size the Arrow buffers once; a best
/// effort that stops at the first malformed byte.
fn estimate_size(body: &[u8]) -> BatchSizing {
    let mut sizing = BatchSizing::default();
    let mut request = Reader::new(body, "");
    while let Ok(Some((tag, value))) = request.next_field() {
        let (1, Value::Len(resource_spans)) = (tag, value) else {
            continue;
        };
        let (mut resource_attributes, mut resource_keys, mut resource_values) = (0, 0, 0);
        let mut reader = Reader::new(resource_spans, "");
        let spans_before = sizing.spans;
        while let Ok(Some((tag, value))) = reader.next_field() {
            match (tag, value) {
                (1, Value::Len(resource)) => {
                    let mut reader = Reader::new(resource, "");
                    while let Ok(Some((tag, value))) = reader.next_field() {
                        if let (1, Value::Len(kv)) = (tag, value) {
                            resource_attributes += 1;
                            let (key, value) = key_value_sizes(kv);
                            resource_keys += key;
                            resource_values += value;
                        }
                    }
                }
                (2, Value::Len(scope_spans)) => {
                    let mut reader = Reader::new(scope_spans, "");
                    while let Ok(Some((tag, value))) = reader.next_field() {
                        let (2, Value::Len(span)) = (tag, value) else {
                            continue;
                        };
                        sizing.spans += 1;
                        let mut reader = Reader::new(span, "");
                        while let Ok(Some((tag, value))) = reader.next_field() {
                            if let (9, Value::Len(kv)) = (tag, value) {
                                sizing.span_attributes += 1;
                                let (key, value) = key_value_sizes(kv);
                                sizing.span_key_bytes += key;
                                sizing.span_value_bytes += value;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let spans = sizing.spans - spans_before;
        sizing.resource_attributes += spans * resource_attributes;
        sizing.resource_key_bytes += spans * resource_keys;
        sizing.resource_value_bytes += spans * resource_values;
    }
    sizing
}

/// The key's length and about the rendered value's of an encoded `KeyValue`
/// whose key comes first, as encoders write it; the value's encoding is about
/// as long as its text (an int's decimal digits, a string's bytes).
pub(super) fn key_value_sizes(kv: &[u8]) -> (usize, usize) {
    match Reader::new(kv, "").next_field() {
        Ok(Some((1, Value::Len(key)))) => (key.len(), kv.len().saturating_sub(key.len() + 4)),
        _ => (kv.len() / 2, kv.len() / 2),
    }
}

/// Where spans go, and the buffers reused from span to span.
struct Sink<'r, 'p> {
    project: &'p str,
    builder: SpanBatchBuilder,
    rejections: Rejections,
    accepted: usize,
    budget: Budget,
    scratch: Scratch<'r>,
    /// `KeyValue`, `Event` and `Link` bodies of the current span.
    span_attributes: Vec<&'r [u8]>,
    events: Vec<&'r [u8]>,
    links: Vec<&'r [u8]>,
}

/// Skips, a second time, a field that the first pass over a message has
/// already checked; only groups need reading to be passed.
pub(super) fn pass_again<'r>(
    reader: &mut Reader<'r>,
    tag: u32,
    value: Value<'r>,
    ctx: u32,
) -> Result<(), Stop> {
    if matches!(value, Value::StartGroup | Value::EndGroup) {
        reader.skip_unknown(tag, value, ctx)?;
    }
    Ok(())
}

fn request<'r>(body: &'r [u8], sink: &mut Sink<'r, '_>) -> Result<(), Stop> {
    each_scope(
        body,
        &TRACES,
        |scope_spans, ctx, position, service_name, resource| {
            sink.scope_spans(scope_spans, ctx, position, service_name, resource)
        },
    )
}

/// The messages and field names of an OTLP export request's envelope: the
/// request's field 1 repeats `Resource*` messages, each with a `resource` (1),
/// repeated scope messages (2) and a `schema_url` (3). Traces and logs differ
/// only in these names.
pub(super) struct Envelope {
    pub request: Message,
    pub resource_message: Message,
    /// `ExportTraceServiceRequest.resource_spans` …
    pub request_field: &'static str,
    /// `ResourceSpans.resource`, `ResourceSpans.scope_spans`, `ResourceSpans.schema_url` …
    pub resource_fields: [&'static str; 3],
}

const TRACES: Envelope = Envelope {
    request: Message::ExportTraceServiceRequest,
    resource_message: Message::ResourceSpans,
    request_field: "ExportTraceServiceRequest.resource_spans",
    resource_fields: [
        "ResourceSpans.resource",
        "ResourceSpans.scope_spans",
        "ResourceSpans.schema_url",
    ],
};

/// Walks the request's resources: checks every field of each, renders its
/// resource attributes (merged, if it has several) once, and hands each scope
/// message (`ScopeSpans`, `ScopeLogs`) to `scope` with its position, the
/// resource's `service.name` and its attributes.
pub(super) fn each_scope<'r>(
    body: &'r [u8],
    envelope: &Envelope,
    mut scope: impl FnMut(&'r [u8], u32, &Position, &str, &SharedAttributes) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let ctx = RECURSION_LIMIT;
    let mut resource_text = String::new();
    let mut resource_pending: Vec<PendingAttr<'r>> = Vec::new();
    let mut resource_attrs_store: Vec<Attr<'static>> = Vec::new();
    let mut reader = Reader::new(body, envelope.request.name());
    let mut resource_index = 0;
    while let Some((tag, value)) = reader.next_field()? {
        if tag != 1 {
            reader.skip_unknown(tag, value, ctx)?;
            continue;
        }
        let resource_message = value.message(envelope.request_field, ctx)?;
        resource_text.clear();
        resource_pending.clear();
        read_resource_message(
            resource_message,
            envelope,
            ctx - 1,
            &mut resource_text,
            &mut resource_pending,
        )?;
        let resource_bytes: usize = resource_pending.iter().map(PendingAttr::text_len).sum();
        let service_name = resource_pending
            .iter()
            .find(|attr| attr.key == "service.name")
            .and_then(|attr| match attr.value {
                PendingValue::Borrowed(s) if attr.ty == AttrType::String && !s.is_empty() => {
                    Some(s)
                }
                _ => None,
            })
            .unwrap_or(UNKNOWN_SERVICE);
        let mut resource_attrs = recycle_attrs(std::mem::take(&mut resource_attrs_store));
        resolve_attrs(&resource_pending, &resource_text, &mut resource_attrs);
        let shared_resource = SharedAttributes::new(&resource_attrs);

        let mut reader = Reader::new(resource_message, envelope.resource_message.name());
        let mut scope_index = 0;
        while let Some((tag, value)) = reader.next_field()? {
            match (tag, value) {
                (2, Value::Len(scope_message)) => {
                    scope(
                        scope_message,
                        ctx - 2,
                        &Position {
                            resource: resource_index,
                            scope: scope_index,
                            resource_bytes,
                        },
                        service_name,
                        &shared_resource,
                    )?;
                    scope_index += 1;
                }
                (tag, value) => pass_again(&mut reader, tag, value, ctx - 1)?,
            }
        }
        resource_attrs_store = recycle_attrs(resource_attrs);
        resource_index += 1;
    }
    Ok(())
}

/// Checks every field of a `Resource*` message but its scopes, and renders
/// the attributes of its `resource` (merged, if it has several).
fn read_resource_message<'r>(
    body: &'r [u8],
    envelope: &Envelope,
    ctx: u32,
    text: &mut String,
    pending: &mut Vec<PendingAttr<'r>>,
) -> Result<(), Stop> {
    let [resource_field, scopes_field, schema_field] = envelope.resource_fields;
    let mut reader = Reader::new(body, envelope.resource_message.name());
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => {
                let resource = value.message(resource_field, ctx)?;
                read_resource(resource, ctx - 1, text, pending)?;
            }
            2 => {
                value.message(scopes_field, ctx)?;
            }
            3 => {
                value.string(schema_field)?;
            }
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    Ok(())
}

pub(super) fn read_resource<'r>(
    body: &'r [u8],
    ctx: u32,
    text: &mut String,
    pending: &mut Vec<PendingAttr<'r>>,
) -> Result<(), Stop> {
    let mut reader = Reader::new(body, Message::Resource.name());
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => {
                let key_value = value.message("Resource.attributes", ctx)?;
                render_key_value(key_value, ctx - 1, text, pending)?;
            }
            2 => {
                value.varint("Resource.dropped_attributes_count")?;
            }
            3 => {
                let entity_ref = value.message("Resource.entity_refs", ctx)?;
                schema::check(Message::EntityRef, entity_ref, ctx - 1)?;
            }
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    Ok(())
}

/// Where a span (or log record) is in the request, for rejection messages
/// and the budget.
pub(super) struct Position {
    pub resource: usize,
    pub scope: usize,
    /// Text of the resource's attributes, repeated on each of its spans.
    pub resource_bytes: usize,
}

/// The name and version of a scope, merged over its `scope` fields.
#[derive(Default)]
pub(super) struct Scope<'r> {
    pub name: Option<&'r str>,
    pub version: Option<&'r str>,
}

pub(super) fn read_scope<'r>(body: &'r [u8], ctx: u32, scope: &mut Scope<'r>) -> Result<(), Stop> {
    // Present, even if empty: like prost's `Some(InstrumentationScope)`.
    scope.name.get_or_insert("");
    scope.version.get_or_insert("");
    let mut reader = Reader::new(body, Message::InstrumentationScope.name());
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => scope.name = Some(value.string("InstrumentationScope.name")?),
            2 => scope.version = Some(value.string("InstrumentationScope.version")?),
            3 => {
                let key_value = value.message("InstrumentationScope.attributes", ctx)?;
                schema::check(Message::KeyValue, key_value, ctx - 1)?;
            }
            4 => {
                value.varint("InstrumentationScope.dropped_attributes_count")?;
            }
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    Ok(())
}

fn read_status<'r>(
    body: &'r [u8],
    ctx: u32,
    status: &mut Option<(i32, &'r str)>,
) -> Result<(), Stop> {
    let (code, message) = status.get_or_insert((0, ""));
    let mut reader = Reader::new(body, Message::Status.name());
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            2 => *message = value.string("Status.message")?,
            3 => *code = value.varint("Status.code")? as i32,
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    Ok(())
}

impl<'r> Sink<'r, '_> {
    fn scope_spans(
        &mut self,
        body: &'r [u8],
        ctx: u32,
        position: &Position,
        service_name: &str,
        resource: &SharedAttributes,
    ) -> Result<(), Stop> {
        let mut scope = Scope::default();
        let mut reader = Reader::new(body, Message::ScopeSpans.name());
        while let Some((tag, value)) = reader.next_field()? {
            match tag {
                1 => read_scope(value.message("ScopeSpans.scope", ctx)?, ctx - 1, &mut scope)?,
                2 => {
                    value.message("ScopeSpans.spans", ctx)?;
                }
                3 => {
                    value.string("ScopeSpans.schema_url")?;
                }
                _ => reader.skip_unknown(tag, value, ctx)?,
            }
        }
        let context = SpanContext {
            project: self.project,
            service_name,
            resource_attributes: ResourceAttributes::Shared(resource),
            scope_name: scope.name,
            scope_version: scope.version,
        };
        let mut reader = Reader::new(body, Message::ScopeSpans.name());
        let mut span_index = 0;
        while let Some((tag, value)) = reader.next_field()? {
            match (tag, value) {
                (2, Value::Len(span)) => {
                    self.span(span, ctx - 1, position, span_index, &context)?;
                    span_index += 1;
                }
                (tag, value) => pass_again(&mut reader, tag, value, ctx)?,
            }
        }
        Ok(())
    }

    fn span(
        &mut self,
        body: &'r [u8],
        ctx: u32,
        position: &Position,
        span_index: usize,
        context: &SpanContext<'_>,
    ) -> Result<(), Stop> {
        let mut identity = SpanIdentity {
            trace_id: &[],
            span_id: &[],
            parent_span_id: &[],
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
        };
        let mut text = SpanText {
            trace_state: "",
            name: "",
            kind: 0,
            status: None,
        };
        self.span_attributes.clear();
        self.events.clear();
        self.links.clear();
        let mut reader = Reader::new(body, Message::Span.name());
        while let Some((tag, value)) = reader.next_field()? {
            match tag {
                1 => identity.trace_id = value.bytes("Span.trace_id")?,
                2 => identity.span_id = value.bytes("Span.span_id")?,
                3 => text.trace_state = value.string("Span.trace_state")?,
                4 => identity.parent_span_id = value.bytes("Span.parent_span_id")?,
                5 => text.name = value.string("Span.name")?,
                6 => text.kind = value.varint("Span.kind")? as i32,
                7 => identity.start_time_unix_nano = value.fixed64("Span.start_time_unix_nano")?,
                8 => identity.end_time_unix_nano = value.fixed64("Span.end_time_unix_nano")?,
                9 => self
                    .span_attributes
                    .push(value.message("Span.attributes", ctx)?),
                10 => {
                    value.varint("Span.dropped_attributes_count")?;
                }
                11 => self.events.push(value.message("Span.events", ctx)?),
                12 => {
                    value.varint("Span.dropped_events_count")?;
                }
                13 => self.links.push(value.message("Span.links", ctx)?),
                14 => {
                    value.varint("Span.dropped_links_count")?;
                }
                15 => read_status(
                    value.message("Span.status", ctx)?,
                    ctx - 1,
                    &mut text.status,
                )?,
                16 => {
                    value.fixed32("Span.flags")?;
                }
                _ => reader.skip_unknown(tag, value, ctx)?,
            }
        }

        let valid = match validate(&identity) {
            Ok(valid) => valid,
            Err(why) => {
                self.rejections
                    .add(position.resource, position.scope, span_index, &why);
                // Not rendered, but prost would have decoded them all the same.
                for &key_value in &self.span_attributes {
                    schema::check(Message::KeyValue, key_value, ctx - 1)?;
                }
                for &event in &self.events {
                    schema::check(Message::Event, event, ctx - 1)?;
                }
                for &link in &self.links {
                    schema::check(Message::Link, link, ctx - 1)?;
                }
                return Ok(());
            }
        };

        let scratch = &mut self.scratch;
        scratch.clear();
        for &key_value in &self.span_attributes {
            render_key_value(key_value, ctx - 1, &mut scratch.text, &mut scratch.pending)?;
        }
        scratch.span_attribute_count = scratch.pending.len();
        for &event in &self.events {
            read_event(event, ctx - 1, scratch)?;
        }
        for &link in &self.links {
            read_link(link, ctx - 1, scratch)?;
        }
        self.budget
            .spend(position.resource_bytes, span_bytes(&text, scratch))
            .map_err(Stop::Refused)?;
        append_span(&mut self.builder, scratch, context, &text, &valid);
        self.accepted += 1;
        Ok(())
    }
}

fn read_event<'r>(body: &'r [u8], ctx: u32, scratch: &mut Scratch<'r>) -> Result<(), Stop> {
    let start = scratch.pending.len();
    let (mut time, mut name) = (0u64, "");
    let mut reader = Reader::new(body, Message::Event.name());
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => time = value.fixed64("Event.time_unix_nano")?,
            2 => name = value.string("Event.name")?,
            3 => {
                let key_value = value.message("Event.attributes", ctx)?;
                render_key_value(key_value, ctx - 1, &mut scratch.text, &mut scratch.pending)?;
            }
            4 => {
                value.varint("Event.dropped_attributes_count")?;
            }
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    scratch.events.push(PendingEvent {
        // Times past 2262 do not fit the Arrow timestamp; keep the event.
        time_ns: i64::try_from(time).unwrap_or(i64::MAX),
        name,
        attributes: start..scratch.pending.len(),
    });
    Ok(())
}

/// Renders a link with valid ids; checks and drops any other.
fn read_link<'r>(body: &'r [u8], ctx: u32, scratch: &mut Scratch<'r>) -> Result<(), Stop> {
    let (mut trace_id, mut span_id, mut trace_state): (&[u8], &[u8], &str) = (&[], &[], "");
    let mut attributes = false;
    let mut reader = Reader::new(body, Message::Link.name());
    while let Some((tag, value)) = reader.next_field()? {
        match tag {
            1 => trace_id = value.bytes("Link.trace_id")?,
            2 => span_id = value.bytes("Link.span_id")?,
            3 => trace_state = value.string("Link.trace_state")?,
            4 => {
                value.message("Link.attributes", ctx)?;
                attributes = true;
            }
            5 => {
                value.varint("Link.dropped_attributes_count")?;
            }
            6 => {
                value.fixed32("Link.flags")?;
            }
            _ => reader.skip_unknown(tag, value, ctx)?,
        }
    }
    let (Ok(trace_id), Ok(span_id)) = (TraceId::from_bytes(trace_id), SpanId::from_bytes(span_id))
    else {
        if attributes {
            schema::check(Message::Link, body, ctx)?;
        }
        return Ok(());
    };
    let start = scratch.pending.len();
    if attributes {
        let mut reader = Reader::new(body, Message::Link.name());
        while let Some((tag, value)) = reader.next_field()? {
            match (tag, value) {
                (4, Value::Len(key_value)) => {
                    render_key_value(key_value, ctx - 1, &mut scratch.text, &mut scratch.pending)?;
                }
                (tag, value) => pass_again(&mut reader, tag, value, ctx)?,
            }
        }
    }
    scratch.links.push(PendingLink {
        trace_id: trace_id.0,
        span_id: span_id.0,
        trace_state,
        attributes: start..scratch.pending.len(),
    });
    Ok(())
}
