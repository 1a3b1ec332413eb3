//! [`SpanBatchBuilder`]: decoded spans in, Arrow `RecordBatch` out.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Int64Builder, ListBuilder, MapBuilder, RecordBatch, StringBuilder,
    StructBuilder, TimestampNanosecondBuilder,
};

use crate::ids::hex_lower;
use crate::schema::{
    Source, SpanKind, StatusCode, event_fields, events_type, link_fields, links_type, spans_schema,
    with_shared_type,
};
use crate::text_columns::{AttrMapColumn, TextColumn, TextRun};

/// The type of a non-string attribute value; see the crate docs for the renderings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrType {
    String,
    Int,
    Double,
    Bool,
    Bytes,
    Array,
    KvList,
    /// A JSON object or array that is not OTLP/JSON (Sentry `data`, `tags`
    /// and attribute values): its compact JSON text.
    Json,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Int => "int",
            AttrType::Double => "double",
            AttrType::Bool => "bool",
            AttrType::Bytes => "bytes",
            AttrType::Array => "array",
            AttrType::KvList => "kvlist",
            AttrType::Json => "json",
        }
    }
}

/// One attribute, its value already rendered as text (see the crate docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Attr<'a> {
    pub key: Cow<'a, str>,
    pub value: Cow<'a, str>,
    pub ty: AttrType,
}

impl<'a> Attr<'a> {
    pub fn string(key: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) -> Self {
        Attr {
            key: key.into(),
            value: value.into(),
            ty: AttrType::String,
        }
    }

    pub fn typed(
        key: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, str>>,
        ty: AttrType,
    ) -> Self {
        Attr {
            key: key.into(),
            value: value.into(),
            ty,
        }
    }
}

/// A span event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord<'a> {
    pub time_ns: i64,
    pub name: Cow<'a, str>,
    pub attributes: Vec<Attr<'a>>,
}

/// A link to another span.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRecord<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub trace_state: Option<Cow<'a, str>>,
    pub attributes: Vec<Attr<'a>>,
}

/// One span, borrowed from whatever the decoder holds. Ids are already validated.
#[derive(Debug, Clone)]
pub struct SpanRecord<'a> {
    pub project: &'a str,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub trace_state: Option<&'a str>,
    pub service_name: &'a str,
    pub name: &'a str,
    pub kind: SpanKind,
    pub start_time_ns: i64,
    pub end_time_ns: i64,
    pub status_code: StatusCode,
    pub status_message: Option<&'a str>,
    pub attributes: &'a [Attr<'a>],
    pub resource_attributes: &'a [Attr<'a>],
    pub scope_name: Option<&'a str>,
    pub scope_version: Option<&'a str>,
    pub events: &'a [EventRecord<'a>],
    pub links: &'a [LinkRecord<'a>],
    pub source: Source,
}

/// Where a rendered attribute value is: borrowed from the request (or
/// static), or a range of the span's [`RenderedAttributes::text`].
#[derive(Debug, Clone, PartialEq)]
pub enum PendingValue<'r> {
    Borrowed(&'r str),
    Text(Range<usize>),
}

/// An attribute as a decoder renders it: every non-string value of a span goes
/// into one shared text, so that no value needs an allocation of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingAttr<'r> {
    pub key: &'r str,
    pub value: PendingValue<'r>,
    pub ty: AttrType,
}

impl PendingAttr<'_> {
    /// Bytes this attribute adds to the batch (key plus rendered value).
    pub fn text_len(&self) -> usize {
        self.key.len()
            + match &self.value {
                PendingValue::Borrowed(s) => s.len(),
                PendingValue::Text(range) => range.len(),
            }
    }
}

/// An event whose attributes are `attributes[range]` of its [`RenderedAttributes`].
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent<'r> {
    pub time_ns: i64,
    pub name: &'r str,
    pub attributes: Range<usize>,
}

/// A link whose attributes are `attributes[range]` of its [`RenderedAttributes`].
#[derive(Debug, Clone, PartialEq)]
pub struct PendingLink<'r> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Empty: no trace state (null).
    pub trace_state: &'r str,
    pub attributes: Range<usize>,
}

/// The attributes, events and links of one span as a decoder renders them,
/// appended without first building [`Attr`]s, [`EventRecord`]s and
/// [`LinkRecord`]s (that conversion was a tenth of OTLP decoding).
#[derive(Debug, Clone, Copy)]
pub struct RenderedAttributes<'a> {
    /// The text that [`PendingValue::Text`] ranges point into.
    pub text: &'a str,
    /// The span's own attributes first, then those of its events and links.
    pub attributes: &'a [PendingAttr<'a>],
    /// How many of `attributes` belong to the span itself.
    pub span_attributes: usize,
    pub events: &'a [PendingEvent<'a>],
    pub links: &'a [PendingLink<'a>],
}

impl<'a> RenderedAttributes<'a> {
    pub(crate) fn value(&self, attr: &'a PendingAttr<'a>) -> &'a str {
        match &attr.value {
            PendingValue::Borrowed(s) => s,
            // A range that is not in `text` is the decoder's bug; an empty
            // value keeps the batch well-formed.
            PendingValue::Text(range) => self.text.get(range.clone()).unwrap_or_default(),
        }
    }

    pub(crate) fn attributes(&self, range: Range<usize>) -> &'a [PendingAttr<'a>] {
        self.attributes.get(range).unwrap_or_default()
    }
}

type AttrMapBuilder = MapBuilder<StringBuilder, StringBuilder>;

fn new_map_builder() -> AttrMapBuilder {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

/// Appends the attributes to the value map and the non-string types to the type map.
pub(crate) fn append_attrs(
    values: &mut AttrMapColumn,
    types: &mut AttrMapColumn,
    attrs: &[Attr<'_>],
) {
    append_attr_triples(
        values,
        types,
        attrs
            .iter()
            .map(|a| (a.key.as_ref(), a.value.as_ref(), a.ty)),
    );
}

/// [`append_attrs`] for `(key, value, type)` triples.
#[inline]
pub(crate) fn append_attr_triples<'s>(
    values: &mut AttrMapColumn,
    types: &mut AttrMapColumn,
    attrs: impl Iterator<Item = (&'s str, &'s str, AttrType)>,
) {
    for (key, value, ty) in attrs {
        values.push(key, value);
        if ty != AttrType::String {
            types.push(key, ty.as_str());
        }
    }
    values.end_row();
    types.end_row();
}

/// Attributes encoded once and appended to many spans as whole runs: the
/// resource attributes of an OTLP `ResourceSpans` are the same on each of its
/// spans, and copying them one string at a time was a large part of ingest.
#[derive(Debug, Clone)]
pub struct SharedAttributes {
    keys: TextRun,
    values: TextRun,
    type_keys: TextRun,
    type_values: TextRun,
}

impl SharedAttributes {
    pub fn new(attrs: &[Attr<'_>]) -> Self {
        let mut shared = SharedAttributes {
            keys: TextRun::default(),
            values: TextRun::default(),
            type_keys: TextRun::default(),
            type_values: TextRun::default(),
        };
        for attr in attrs {
            shared.keys.push(&attr.key);
            shared.values.push(&attr.value);
            if attr.ty != AttrType::String {
                shared.type_keys.push(&attr.key);
                shared.type_values.push(attr.ty.as_str());
            }
        }
        shared
    }

    pub(crate) fn append_to(&self, values: &mut AttrMapColumn, types: &mut AttrMapColumn) {
        values.push_runs(&self.keys, &self.values);
        types.push_runs(&self.type_keys, &self.type_values);
        values.end_row();
        types.end_row();
    }
}

/// Builds `spans` record batches. Not thread-safe; one per decoder.
pub struct SpanBatchBuilder {
    project: TextColumn,
    trace_id: TextColumn,
    span_id: TextColumn,
    parent_span_id: TextColumn,
    trace_state: TextColumn,
    service_name: TextColumn,
    name: TextColumn,
    kind: TextColumn,
    start_time: TimestampNanosecondBuilder,
    end_time: TimestampNanosecondBuilder,
    duration_ns: Int64Builder,
    status_code: TextColumn,
    status_message: TextColumn,
    attributes: AttrMapColumn,
    attribute_types: AttrMapColumn,
    resource_attributes: AttrMapColumn,
    resource_attribute_types: AttrMapColumn,
    scope_name: TextColumn,
    scope_version: TextColumn,
    events: ListBuilder<StructBuilder>,
    links: ListBuilder<StructBuilder>,
    source: TextColumn,
    /// Hex of link ids, which still go through Arrow builders.
    hex: String,
}

impl Default for SpanBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// What a batch about to be built will hold, to size its buffers once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSizing {
    pub spans: usize,
    /// Span attributes over all spans.
    pub span_attributes: usize,
    /// Text of their keys, and of their values (about).
    pub span_key_bytes: usize,
    pub span_value_bytes: usize,
    /// Resource attributes over all spans (each span repeats its resource's).
    pub resource_attributes: usize,
    /// Text of their keys, and of their values (about).
    pub resource_key_bytes: usize,
    pub resource_value_bytes: usize,
}

impl SpanBatchBuilder {
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// A builder sized for `spans` spans with about `attributes` span and resource
    /// attributes in all, so appending does not regrow (and copy) its buffers.
    pub fn with_capacity(spans: usize, attributes: usize) -> Self {
        Self::with_sizing(&BatchSizing {
            spans,
            span_attributes: attributes,
            span_key_bytes: attributes * 16,
            span_value_bytes: attributes * 16,
            resource_attributes: attributes,
            resource_key_bytes: attributes * 16,
            resource_value_bytes: attributes * 16,
        })
    }

    /// A builder sized for what `sizing` expects. The lake charges a batch's
    /// allocated memory, not only the bytes in use, against its buffer bound,
    /// so a close estimate means fuller buffers and larger files.
    pub fn with_sizing(sizing: &BatchSizing) -> Self {
        let spans = sizing.spans;
        let ts = || TimestampNanosecondBuilder::with_capacity(spans).with_timezone("UTC");
        let strings = |bytes_each: usize| TextColumn::with_capacity(spans, spans * bytes_each);
        let map = |entries: usize, key_bytes: usize, value_bytes: usize| {
            AttrMapColumn::with_capacity(spans, entries, key_bytes, value_bytes)
        };
        // Types are recorded for non-string values only, which the sizing does
        // not count: assume a quarter of the span attributes, named like the rest.
        let typed = sizing.span_attributes / 4;
        let typed_key_bytes = sizing.span_key_bytes / 4;
        let events = StructBuilder::new(
            event_fields(),
            vec![
                Box::new(ts()) as Box<dyn ArrayBuilder>,
                Box::new(StringBuilder::new()),
                Box::new(new_map_builder()),
                Box::new(new_map_builder()),
            ],
        );
        let links = StructBuilder::new(
            link_fields(),
            vec![
                Box::new(StringBuilder::new()) as Box<dyn ArrayBuilder>,
                Box::new(StringBuilder::new()),
                Box::new(StringBuilder::new()),
                Box::new(new_map_builder()),
                Box::new(new_map_builder()),
            ],
        );
        SpanBatchBuilder {
            project: strings(8),
            trace_id: strings(32),
            span_id: strings(16),
            parent_span_id: strings(16),
            trace_state: strings(0),
            service_name: strings(16),
            name: strings(24),
            kind: strings(6),
            start_time: ts(),
            end_time: ts(),
            duration_ns: Int64Builder::with_capacity(spans),
            status_code: strings(5),
            status_message: strings(0),
            attributes: map(
                sizing.span_attributes,
                sizing.span_key_bytes,
                sizing.span_value_bytes,
            ),
            attribute_types: map(typed, typed_key_bytes, typed * 4),
            resource_attributes: map(
                sizing.resource_attributes,
                sizing.resource_key_bytes,
                sizing.resource_value_bytes,
            ),
            resource_attribute_types: map(0, 0, 0),
            scope_name: strings(16),
            scope_version: strings(8),
            events: ListBuilder::with_capacity(events, spans),
            links: ListBuilder::with_capacity(links, spans),
            source: strings(5),
            hex: String::with_capacity(32),
        }
    }

    /// Number of spans appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.project.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append_hex_to(hex: &mut String, builder: &mut StringBuilder, bytes: &[u8]) {
        hex.clear();
        hex_lower(bytes, hex);
        builder.append_value(hex.as_str());
    }

    pub fn append(&mut self, span: &SpanRecord<'_>) {
        self.append_scalars(span);
        append_attrs(
            &mut self.resource_attributes,
            &mut self.resource_attribute_types,
            span.resource_attributes,
        );
        self.append_records(span);
    }

    /// Appends `span` with `resource` as its resource attributes, for callers
    /// that append many spans of one resource; `span.resource_attributes` is
    /// not read. The batch is the one [`append`](Self::append) would build.
    pub fn append_with_resource(&mut self, span: &SpanRecord<'_>, resource: &SharedAttributes) {
        self.append_scalars(span);
        resource.append_to(
            &mut self.resource_attributes,
            &mut self.resource_attribute_types,
        );
        self.append_records(span);
    }

    /// Appends `span` with its attributes, events and links taken from
    /// `rendered` (`span.attributes`, `events` and `links` are not read), and
    /// `resource` as its resource attributes, or `span.resource_attributes`
    /// when `None`. The batch is the one [`append`](Self::append) would build
    /// from the same values.
    pub fn append_rendered(
        &mut self,
        span: &SpanRecord<'_>,
        rendered: &RenderedAttributes<'_>,
        resource: Option<&SharedAttributes>,
    ) {
        self.append_scalars(span);
        match resource {
            Some(resource) => resource.append_to(
                &mut self.resource_attributes,
                &mut self.resource_attribute_types,
            ),
            None => append_attrs(
                &mut self.resource_attributes,
                &mut self.resource_attribute_types,
                span.resource_attributes,
            ),
        }
        append_attr_triples(
            &mut self.attributes,
            &mut self.attribute_types,
            rendered
                .attributes(0..rendered.span_attributes)
                .iter()
                .map(|a| (a.key, rendered.value(a), a.ty)),
        );
        self.scope_columns(span);
        let events = self.events.values();
        for event in rendered.events {
            let attrs = rendered.attributes(event.attributes.clone());
            append_event(
                events,
                event.time_ns,
                event.name,
                attrs.iter().map(|a| (a.key, rendered.value(a), a.ty)),
            );
        }
        self.events.append(true);
        let links = self.links.values();
        for link in rendered.links {
            let attrs = rendered.attributes(link.attributes.clone());
            append_link(
                &mut self.hex,
                links,
                &link.trace_id,
                &link.span_id,
                link.trace_state,
                attrs.iter().map(|a| (a.key, rendered.value(a), a.ty)),
            );
        }
        self.links.append(true);
        self.source.append(span.source.as_str());
    }

    /// The columns before the attributes.
    fn append_scalars(&mut self, span: &SpanRecord<'_>) {
        self.project.append(span.project);
        self.trace_id.append_hex(&span.trace_id);
        self.span_id.append_hex(&span.span_id);
        match &span.parent_span_id {
            Some(parent) => self.parent_span_id.append_hex(parent),
            None => self.parent_span_id.append_null(),
        }
        self.trace_state.append_non_empty(span.trace_state);
        self.service_name.append(span.service_name);
        self.name.append(span.name);
        self.kind.append(span.kind.as_str());
        self.start_time.append_value(span.start_time_ns);
        self.end_time.append_value(span.end_time_ns);
        self.duration_ns
            .append_value(span.end_time_ns.saturating_sub(span.start_time_ns));
        self.status_code.append(span.status_code.as_str());
        self.status_message.append_non_empty(span.status_message);
    }

    fn scope_columns(&mut self, span: &SpanRecord<'_>) {
        self.scope_name.append_non_empty(span.scope_name);
        self.scope_version.append_non_empty(span.scope_version);
    }

    /// The span's attributes, scope, events, links and source from `span`.
    fn append_records(&mut self, span: &SpanRecord<'_>) {
        append_attrs(
            &mut self.attributes,
            &mut self.attribute_types,
            span.attributes,
        );
        self.scope_columns(span);
        let events = self.events.values();
        for event in span.events {
            append_event(
                events,
                event.time_ns,
                &event.name,
                event
                    .attributes
                    .iter()
                    .map(|a| (a.key.as_ref(), a.value.as_ref(), a.ty)),
            );
        }
        self.events.append(true);
        let links = self.links.values();
        for link in span.links {
            append_link(
                &mut self.hex,
                links,
                &link.trace_id,
                &link.span_id,
                link.trace_state.as_deref().unwrap_or_default(),
                link.attributes
                    .iter()
                    .map(|a| (a.key.as_ref(), a.value.as_ref(), a.ty)),
            );
        }
        self.links.append(true);
        self.source.append(span.source.as_str());
    }

    /// The batch of everything appended so far; the builder is empty afterwards.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.project.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.end_time.finish()),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            self.attributes.finish(),
            self.attribute_types.finish(),
            self.resource_attributes.finish(),
            self.resource_attribute_types.finish(),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            with_shared_type(
                &(Arc::new(self.events.finish()) as ArrayRef),
                &events_type(),
            ),
            with_shared_type(&(Arc::new(self.links.finish()) as ArrayRef), &links_type()),
            Arc::new(self.source.finish()),
        ];
        RecordBatch::try_new(spans_schema(), columns)
            .expect("SpanBatchBuilder columns match spans_schema()")
    }
}

fn append_event<'s>(
    events: &mut StructBuilder,
    time_ns: i64,
    name: &str,
    attrs: impl Iterator<Item = (&'s str, &'s str, AttrType)> + Clone,
) {
    events
        .field_builder::<TimestampNanosecondBuilder>(0)
        .expect("events.time")
        .append_value(time_ns);
    events
        .field_builder::<StringBuilder>(1)
        .expect("events.name")
        .append_value(name);
    append_two_maps(events, 2, 3, attrs);
    events.append(true);
}

fn append_link<'s>(
    hex: &mut String,
    links: &mut StructBuilder,
    trace_id: &[u8; 16],
    span_id: &[u8; 8],
    trace_state: &str,
    attrs: impl Iterator<Item = (&'s str, &'s str, AttrType)> + Clone,
) {
    SpanBatchBuilder::append_hex_to(
        hex,
        links
            .field_builder::<StringBuilder>(0)
            .expect("links.trace_id"),
        trace_id,
    );
    SpanBatchBuilder::append_hex_to(
        hex,
        links
            .field_builder::<StringBuilder>(1)
            .expect("links.span_id"),
        span_id,
    );
    links
        .field_builder::<StringBuilder>(2)
        .expect("links.trace_state")
        .append_option(Some(trace_state).filter(|s| !s.is_empty()));
    append_two_maps(links, 3, 4, attrs);
    links.append(true);
}

fn append_two_maps<'s>(
    parent: &mut StructBuilder,
    values_index: usize,
    types_index: usize,
    attrs: impl Iterator<Item = (&'s str, &'s str, AttrType)> + Clone,
) {
    // Two mutable borrows of sibling fields are not possible through
    // `field_builder`, so fill one map at a time.
    {
        let values = parent
            .field_builder::<AttrMapBuilder>(values_index)
            .expect("attributes map");
        for (key, value, _) in attrs.clone() {
            values.keys().append_value(key);
            values.values().append_value(value);
        }
        values
            .append(true)
            .expect("map keys and values stay aligned");
    }
    let types = parent
        .field_builder::<AttrMapBuilder>(types_index)
        .expect("attribute_types map");
    for (key, _, ty) in attrs.filter(|(_, _, ty)| *ty != AttrType::String) {
        types.keys().append_value(key);
        types.values().append_value(ty.as_str());
    }
    types
        .append(true)
        .expect("map keys and values stay aligned");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::attribute_map_type;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::DataType;

    fn record<'a>(
        attrs: &'a [Attr<'a>],
        events: &'a [EventRecord<'a>],
        links: &'a [LinkRecord<'a>],
    ) -> SpanRecord<'a> {
        SpanRecord {
            project: "p",
            trace_id: [0xab; 16],
            span_id: [0xcd; 8],
            parent_span_id: Some([0x01; 8]),
            trace_state: Some(""),
            service_name: "svc",
            name: "op",
            kind: SpanKind::Client,
            start_time_ns: 10,
            end_time_ns: 35,
            status_code: StatusCode::Error,
            status_message: Some("boom"),
            attributes: attrs,
            resource_attributes: &[],
            scope_name: None,
            scope_version: None,
            events,
            links,
            source: Source::Otlp,
        }
    }

    /// The `Arc<Field>` under a list, map or struct type (its first child field).
    fn child_field(ty: &DataType) -> &Arc<arrow::datatypes::Field> {
        match ty {
            DataType::List(field) | DataType::Map(field, _) => field,
            DataType::Struct(fields) => &fields[0],
            other => panic!("{other} has no child field"),
        }
    }

    #[test]
    fn nested_types_share_the_schemas_arcs() {
        let attrs = [Attr::string("k", "v")];
        let events = [EventRecord {
            time_ns: 1,
            name: "e".into(),
            attributes: vec![Attr::string("a", "b")],
        }];
        let schema = spans_schema();
        for _ in 0..2 {
            let mut builder = SpanBatchBuilder::new();
            builder.append(&record(&attrs, &events, &[]));
            let batch = builder.finish();
            for name in ["attributes", "resource_attributes", "events", "links"] {
                let ours = batch.column_by_name(name).unwrap().data_type();
                let theirs = schema.field_with_name(name).unwrap().data_type();
                assert!(
                    Arc::ptr_eq(child_field(ours), child_field(theirs)),
                    "{name}: a fresh Arc<Field>"
                );
            }
            // Inside the events' struct: the attribute map's entries field.
            let item = child_field(batch.column_by_name("events").unwrap().data_type());
            let DataType::Struct(fields) = item.data_type() else {
                panic!("events are a list of structs")
            };
            let map = fields.find("attributes").unwrap().1.data_type();
            assert!(Arc::ptr_eq(
                child_field(map),
                child_field(&attribute_map_type())
            ));
            let events = batch.column_by_name("events").unwrap().as_list::<i32>();
            let map_array = events
                .values()
                .as_struct()
                .column_by_name("attributes")
                .unwrap();
            assert!(Arc::ptr_eq(
                child_field(map_array.data_type()),
                child_field(&attribute_map_type())
            ));
        }
    }

    #[test]
    fn shared_resource_attributes_build_the_same_batch() {
        let resource = [
            Attr::string("service.name", "svc"),
            Attr::typed("host.cpus", "8", AttrType::Int),
            Attr::string("empty", ""),
            Attr::typed("tags", r#"[{"stringValue":"a"}]"#, AttrType::Array),
        ];
        let attrs = [Attr::typed("n", "1", AttrType::Int)];
        let shared = SharedAttributes::new(&resource);
        let no_resource = SharedAttributes::new(&[]);
        let mut one_by_one = SpanBatchBuilder::new();
        let mut bulk = SpanBatchBuilder::new();
        for i in 0..5 {
            let with = if i == 2 { &[][..] } else { &resource[..] };
            let mut span = record(&attrs, &[], &[]);
            span.resource_attributes = with;
            one_by_one.append(&span);
            span.resource_attributes = &[];
            bulk.append_with_resource(&span, if i == 2 { &no_resource } else { &shared });
        }
        assert_eq!(one_by_one.finish(), bulk.finish());
    }

    #[test]
    fn rendered_attributes_build_the_same_batch() {
        let attrs = [
            Attr::string("http.route", "/x"),
            Attr::typed("http.status", "500", AttrType::Int),
        ];
        let events = [
            EventRecord {
                time_ns: 20,
                name: "exception".into(),
                attributes: vec![Attr::typed("n", "1.5", AttrType::Double)],
            },
            EventRecord {
                time_ns: 21,
                name: "".into(),
                attributes: vec![],
            },
        ];
        let links = [
            LinkRecord {
                trace_id: [2; 16],
                span_id: [3; 8],
                trace_state: Some("".into()),
                attributes: vec![Attr::string("k", "v")],
            },
            LinkRecord {
                trace_id: [4; 16],
                span_id: [5; 8],
                trace_state: Some("a=b".into()),
                attributes: vec![],
            },
        ];
        let text = "5001.5";
        let pending = [
            PendingAttr {
                key: "http.route",
                value: PendingValue::Borrowed("/x"),
                ty: AttrType::String,
            },
            PendingAttr {
                key: "http.status",
                value: PendingValue::Text(0..3),
                ty: AttrType::Int,
            },
            PendingAttr {
                key: "n",
                value: PendingValue::Text(3..6),
                ty: AttrType::Double,
            },
            PendingAttr {
                key: "k",
                value: PendingValue::Borrowed("v"),
                ty: AttrType::String,
            },
        ];
        let rendered_events = [
            PendingEvent {
                time_ns: 20,
                name: "exception",
                attributes: 2..3,
            },
            PendingEvent {
                time_ns: 21,
                name: "",
                attributes: 3..3,
            },
        ];
        let rendered_links = [
            PendingLink {
                trace_id: [2; 16],
                span_id: [3; 8],
                trace_state: "",
                attributes: 3..4,
            },
            PendingLink {
                trace_id: [4; 16],
                span_id: [5; 8],
                trace_state: "a=b",
                attributes: 4..4,
            },
        ];
        let resource = [Attr::typed("host.cpus", "8", AttrType::Int)];
        let shared = SharedAttributes::new(&resource);
        let mut records = SpanBatchBuilder::new();
        let mut rendered = SpanBatchBuilder::new();
        for i in 0..3 {
            let mut span = match i {
                0 => record(&attrs, &events, &links),
                _ => record(&[], &[], &[]),
            };
            span.resource_attributes = &resource;
            records.append(&span);
            let parts = match i {
                0 => RenderedAttributes {
                    text,
                    attributes: &pending,
                    span_attributes: 2,
                    events: &rendered_events,
                    links: &rendered_links,
                },
                _ => RenderedAttributes {
                    text: "",
                    attributes: &[],
                    span_attributes: 0,
                    events: &[],
                    links: &[],
                },
            };
            let shared_resource = if i == 1 { None } else { Some(&shared) };
            // Only the scalar columns (and the resource, when not shared) are read.
            let bare = SpanRecord {
                resource_attributes: if i == 1 { &resource } else { &[] },
                ..record(&[], &[], &[])
            };
            rendered.append_rendered(&bare, &parts, shared_resource);
        }
        assert_eq!(records.finish(), rendered.finish());
    }

    #[test]
    fn builds_rows_matching_the_schema() {
        let attrs = [
            Attr::string("http.route", "/x"),
            Attr::typed("http.status", "500", AttrType::Int),
        ];
        let events = [EventRecord {
            time_ns: 20,
            name: "exception".into(),
            attributes: vec![Attr::typed("n", "1.5", AttrType::Double)],
        }];
        let links = [LinkRecord {
            trace_id: [2; 16],
            span_id: [3; 8],
            trace_state: None,
            attributes: vec![],
        }];
        let mut b = SpanBatchBuilder::new();
        b.append(&record(&attrs, &events, &links));
        b.append(&record(&[], &[], &[]));
        let batch = b.finish();
        assert_eq!(batch.num_rows(), 2);
        assert!(b.is_empty());
        let trace = batch.column(1).as_string::<i32>();
        assert_eq!(trace.value(0), "abababababababababababababababab");
        assert!(batch.column(4).is_null(0), "empty trace_state is null");
        let duration = batch
            .column(10)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(duration.value(0), 25);
        let types = batch.column(14).as_map();
        assert_eq!(types.value(0).len(), 1);
        assert_eq!(types.value(1).len(), 0);
        let events = batch.column(19).as_list::<i32>();
        assert_eq!(events.value(0).len(), 1);
        assert_eq!(events.value(1).len(), 0);
    }
}
