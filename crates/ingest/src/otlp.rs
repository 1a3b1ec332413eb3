//! OTLP traces (protobuf or JSON) into a `spans` batch, and the export response.

use std::fmt;

use lighttrace_model::{
    Attr, BatchSizing, IdError, PendingEvent, PendingLink, RenderedAttributes, SharedAttributes,
    Source, SpanBatchBuilder, SpanId, SpanKind, SpanRecord, StatusCode, TraceId,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use crate::attributes::{PendingAttr, recycle_attrs, render_attributes, resolve};
use crate::{DecodedSpans, IngestError, OtlpEncoding};

/// The `service_name` of spans whose resource has no `service.name`.
pub(crate) const UNKNOWN_SERVICE: &str = "unknown_service";

/// Rejection reasons spelled out in [`DecodedSpans::rejection_message`]; the
/// rest are only counted.
const MAX_LISTED_REJECTIONS: usize = 5;

/// Bounds on the text a request may expand to in the batch (resource attributes
/// are copied onto every span, so a small body can expand a lot). The upper
/// bound also keeps every Arrow string column far below its 2 GiB offset limit.
const MIN_EXPANSION_BUDGET: usize = 64 << 20;
const MAX_EXPANSION_BUDGET: usize = 1 << 30;
const EXPANSION_FACTOR: usize = 16;

/// Fixed-width columns and ids of one span, counted against the budget.
const SPAN_OVERHEAD_BYTES: usize = 128;

/// Decodes an OTLP `ExportTraceServiceRequest` into a `spans` batch.
///
/// `body` must already be decompressed (see [`crate::decompress`]). Spans that
/// fail validation are counted in [`DecodedSpans::rejected`] and left out; the
/// call only fails when the body as a whole is unusable (not OTLP, or a
/// hostile payload such as attribute values nested deeper than 16 levels).
pub fn decode_otlp_traces(
    body: &[u8],
    encoding: OtlpEncoding,
    project: &str,
) -> Result<DecodedSpans, IngestError> {
    match encoding {
        OtlpEncoding::Protobuf => crate::protobuf::decode(body, project, expansion_budget(body)),
        OtlpEncoding::Json => append_request(
            &parse_json(body, "ExportTraceServiceRequest")?,
            project,
            expansion_budget(body),
        ),
    }
}

/// Decodes an OTLP/protobuf request the way [`decode_otlp_traces`] did before
/// it read the wire format itself: prost builds the request, which is then
/// appended like a JSON one. The result is the same, only slower; it stays as
/// the reference that differential tests, the fuzzer and the benchmark
/// compare the borrowing decoder with.
#[doc(hidden)]
pub fn decode_otlp_protobuf_with_prost(
    body: &[u8],
    project: &str,
) -> Result<DecodedSpans, IngestError> {
    let request = ExportTraceServiceRequest::decode(body)
        .map_err(|e| IngestError::Malformed(format!("invalid OTLP protobuf: {e}")))?;
    append_request(&request, project, expansion_budget(body))
}

pub(crate) fn expansion_budget(body: &[u8]) -> usize {
    expansion_budget_for(body.len())
}

/// The text that a request of `len` bytes may expand to in a batch.
pub(crate) fn expansion_budget_for(len: usize) -> usize {
    len.saturating_mul(EXPANSION_FACTOR)
        .clamp(MIN_EXPANSION_BUDGET, MAX_EXPANSION_BUDGET)
}

/// Reads an OTLP/JSON export request (`message` names it in errors).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    message: &str,
) -> Result<T, IngestError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(IngestError::Malformed(
                "invalid OTLP JSON: the body is empty".to_string(),
            ));
        }
        // serde would also read a struct from a JSON array, by field position.
        Some(b) if *b != b'{' => {
            return Err(IngestError::Malformed(format!(
                "invalid OTLP JSON: expected an {message} object"
            )));
        }
        Some(_) => {}
    }
    serde_json::from_slice(body).map_err(|e| {
        let full = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&position).unwrap_or(&full);
        if e.line() == 0 {
            IngestError::Malformed(format!("invalid OTLP JSON: {message}"))
        } else {
            IngestError::Malformed(format!(
                "invalid OTLP JSON at line {} column {}: {message}",
                e.line(),
                e.column()
            ))
        }
    })
}

/// The ExportTraceServiceResponse for a request of which `rejected` spans were
/// invalid, for `message`: `partial_success` is set only when spans were
/// rejected, as the OTLP specification asks.
pub fn traces_response(rejected: usize, message: Option<&str>) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: message.unwrap_or_default().to_string(),
        }),
    }
}

/// The ExportTraceServiceResponse for a request, in the request's encoding.
///
/// `partial_success` is set only when spans were rejected, as the OTLP
/// specification asks; a full success is an empty message (`{}` in JSON).
pub fn encode_traces_response(
    encoding: OtlpEncoding,
    rejected: usize,
    message: Option<&str>,
) -> Vec<u8> {
    let response = traces_response(rejected, message);
    let partial = response.partial_success.is_some();
    encode_response(encoding, &response, partial)
}

/// An export response (traces or logs) in `encoding`; without a partial
/// success it is the empty message (`{}` in JSON).
pub(crate) fn encode_response<M: prost::Message + serde::Serialize>(
    encoding: OtlpEncoding,
    response: &M,
    partial: bool,
) -> Vec<u8> {
    match encoding {
        OtlpEncoding::Protobuf => response.encode_to_vec(),
        // The derived serializer would write `{"partialSuccess":null}`.
        OtlpEncoding::Json if !partial => b"{}".to_vec(),
        // Serializing plain integers and strings to a Vec cannot fail.
        OtlpEncoding::Json => serde_json::to_vec(response).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// Why one span was left out.
#[derive(Debug)]
pub(crate) enum Rejection {
    Id(IdError),
    ParentSpanIdLength(usize),
    StartTimeZero,
    TimeOutOfRange(&'static str, u64),
    EndBeforeStart { start: u64, end: u64 },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Id(e) => e.fmt(f),
            Rejection::ParentSpanIdLength(got) => {
                write!(f, "parent span id must be empty or 8 bytes, got {got}")
            }
            Rejection::StartTimeZero => f.write_str("start time is 0"),
            Rejection::TimeOutOfRange(what, value) => {
                write!(f, "{what} time {value} is after the year 2262")
            }
            Rejection::EndBeforeStart { start, end } => {
                write!(f, "end time {end} is before start time {start}")
            }
        }
    }
}

/// The identity and timing of a span as sent, before [`validate`].
pub(crate) struct SpanIdentity<'r> {
    pub trace_id: &'r [u8],
    pub span_id: &'r [u8],
    pub parent_span_id: &'r [u8],
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
}

impl<'r> SpanIdentity<'r> {
    fn of(span: &'r Span) -> Self {
        SpanIdentity {
            trace_id: &span.trace_id,
            span_id: &span.span_id,
            parent_span_id: &span.parent_span_id,
            start_time_unix_nano: span.start_time_unix_nano,
            end_time_unix_nano: span.end_time_unix_nano,
        }
    }
}

/// The checked identity and timing of a span.
pub(crate) struct ValidSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub start_time_ns: i64,
    pub end_time_ns: i64,
}

pub(crate) fn validate(span: &SpanIdentity<'_>) -> Result<ValidSpan, Rejection> {
    let trace_id = TraceId::from_bytes(span.trace_id).map_err(Rejection::Id)?.0;
    let span_id = SpanId::from_bytes(span.span_id).map_err(Rejection::Id)?.0;
    let parent_span_id = match span.parent_span_id.len() {
        0 => None,
        8 => SpanId::from_bytes(span.parent_span_id).ok().map(|id| id.0),
        got => return Err(Rejection::ParentSpanIdLength(got)),
    };
    let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
    if start == 0 {
        return Err(Rejection::StartTimeZero);
    }
    if end < start {
        return Err(Rejection::EndBeforeStart { start, end });
    }
    let start_time_ns =
        i64::try_from(start).map_err(|_| Rejection::TimeOutOfRange("start", start))?;
    let end_time_ns = i64::try_from(end).map_err(|_| Rejection::TimeOutOfRange("end", end))?;
    Ok(ValidSpan {
        trace_id,
        span_id,
        parent_span_id,
        start_time_ns,
        end_time_ns,
    })
}

/// What a request holds a list of, for rejection and budget messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Noun {
    pub one: &'static str,
    pub many: &'static str,
}

pub(crate) const SPANS: Noun = Noun {
    one: "span",
    many: "spans",
};

pub(crate) const LOG_RECORDS: Noun = Noun {
    one: "log record",
    many: "log records",
};

/// Counts rejected spans (or log records) and spells out the first few.
pub(crate) struct Rejections {
    count: usize,
    listed: String,
    noun: Noun,
}

impl Default for Rejections {
    fn default() -> Self {
        Rejections::of(SPANS)
    }
}

impl Rejections {
    pub(crate) fn of(noun: Noun) -> Self {
        Rejections {
            count: 0,
            listed: String::new(),
            noun,
        }
    }

    /// A rejected item of an OTLP request, where `item` is its index in its scope.
    pub(crate) fn add(
        &mut self,
        resource: usize,
        scope: usize,
        item: usize,
        why: &dyn fmt::Display,
    ) {
        let one = self.noun.one;
        self.push(format_args!(
            "{one} {item} of scope {scope} of resource {resource}: {why}"
        ));
    }

    /// A rejected span of a request that is a flat list of spans (Zipkin).
    pub(crate) fn add_span(&mut self, span: usize, why: &dyn fmt::Display) {
        self.push(format_args!("span {span}: {why}"));
    }

    fn push(&mut self, reason: fmt::Arguments<'_>) {
        use fmt::Write as _;
        self.count += 1;
        if self.count <= MAX_LISTED_REJECTIONS {
            if !self.listed.is_empty() {
                self.listed.push_str("; ");
            }
            let _ = self.listed.write_fmt(reason);
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    pub(crate) fn message(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let spans = if self.count == 1 {
            self.noun.one
        } else {
            self.noun.many
        };
        let unlisted = self.count.saturating_sub(MAX_LISTED_REJECTIONS);
        let more = if unlisted > 0 {
            format!("; and {unlisted} more")
        } else {
            String::new()
        };
        Some(format!(
            "{} {spans} rejected: {}{more}",
            self.count, self.listed
        ))
    }
}

/// Reusable buffers, so that rendering a span allocates nothing once they
/// have grown to the request's largest span.
#[derive(Default)]
pub(crate) struct Scratch<'r> {
    /// Rendered non-string values of the current span, its events and links.
    pub text: String,
    /// Attributes of the span, then of each event and link.
    pub pending: Vec<PendingAttr<'r>>,
    /// How many of `pending` belong to the span itself.
    pub span_attribute_count: usize,
    pub events: Vec<PendingEvent<'r>>,
    pub links: Vec<PendingLink<'r>>,
}

impl Scratch<'_> {
    /// Forgets the previous span.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.pending.clear();
        self.events.clear();
        self.links.clear();
    }
}

pub(crate) fn nested_too_deep(e: crate::attributes::NestedTooDeep) -> IngestError {
    IngestError::Malformed(e.to_string())
}

/// The text that a request may still expand to, spent span by span (or log
/// record by log record).
pub(crate) struct Budget {
    limit: usize,
    spent: usize,
    noun: Noun,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Budget::of(limit, SPANS)
    }

    pub(crate) fn of(limit: usize, noun: Noun) -> Self {
        Budget {
            limit,
            spent: 0,
            noun,
        }
    }

    /// Spends the bytes of one accepted span, its resource's attributes included.
    pub(crate) fn spend(
        &mut self,
        resource_bytes: usize,
        span_bytes: usize,
    ) -> Result<(), IngestError> {
        self.spent = self
            .spent
            .saturating_add(resource_bytes)
            .saturating_add(span_bytes);
        if self.spent > self.limit {
            let one = self.noun.one;
            return Err(IngestError::Malformed(format!(
                "request expands to more than {} bytes of {one} data \
                 (resource attributes are repeated on every {one}); send smaller batches",
                self.limit
            )));
        }
        Ok(())
    }
}

/// The columns of a span that need no checking, as sent.
pub(crate) struct SpanText<'r> {
    pub trace_state: &'r str,
    pub name: &'r str,
    pub kind: i32,
    /// `(code, message)`, when the span has a status.
    pub status: Option<(i32, &'r str)>,
}

impl<'r> SpanText<'r> {
    fn of(span: &'r Span) -> Self {
        SpanText {
            trace_state: &span.trace_state,
            name: &span.name,
            kind: span.kind,
            status: span.status.as_ref().map(|s| (s.code, s.message.as_str())),
        }
    }
}

/// The bytes of text that a span rendered into `scratch` adds to the batch.
pub(crate) fn span_bytes(span: &SpanText<'_>, scratch: &Scratch<'_>) -> usize {
    let mut bytes = SPAN_OVERHEAD_BYTES
        + span.name.len()
        + span.trace_state.len()
        + span.status.map_or(0, |(_, message)| message.len());
    for event in &scratch.events {
        bytes += SPAN_OVERHEAD_BYTES / 4 + event.name.len();
    }
    for link in &scratch.links {
        bytes += SPAN_OVERHEAD_BYTES / 2 + link.trace_state.len();
    }
    bytes
        + scratch
            .pending
            .iter()
            .map(PendingAttr::text_len)
            .sum::<usize>()
}

fn append_request(
    request: &ExportTraceServiceRequest,
    project: &str,
    budget: usize,
) -> Result<DecodedSpans, IngestError> {
    // Size the Arrow buffers once instead of regrowing (and copying) them.
    fn text_len(kvs: &[KeyValue]) -> (usize, usize) {
        kvs.iter().fold((0, 0), |(keys, values), kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.len(),
                _ => 8,
            };
            (keys + kv.key.len(), values + value)
        })
    }
    let mut sizing = BatchSizing::default();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let (resource_keys, resource_values) = text_len(resource);
        for scope_spans in &resource_spans.scope_spans {
            let spans = scope_spans.spans.len();
            sizing.spans += spans;
            sizing.resource_attributes += spans * resource.len();
            sizing.resource_key_bytes += spans * resource_keys;
            sizing.resource_value_bytes += spans * resource_values;
            for span in &scope_spans.spans {
                let (keys, values) = text_len(&span.attributes);
                sizing.span_attributes += span.attributes.len();
                sizing.span_key_bytes += keys;
                sizing.span_value_bytes += values;
            }
        }
    }
    let mut builder = SpanBatchBuilder::with_sizing(&sizing);
    let mut rejections = Rejections::default();
    let mut accepted = 0usize;
    let mut budget = Budget::new(budget);
    let mut scratch = Scratch::default();
    let mut resource_text = String::new();
    let mut resource_pending: Vec<PendingAttr<'_>> = Vec::new();
    let mut resource_attrs_store: Vec<Attr<'static>> = Vec::new();

    for (resource_index, resource_spans) in request.resource_spans.iter().enumerate() {
        let resource_kvs = resource_spans
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        resource_text.clear();
        resource_pending.clear();
        render_attributes(resource_kvs, &mut resource_text, &mut resource_pending)
            .map_err(nested_too_deep)?;
        let resource_bytes: usize = resource_pending.iter().map(PendingAttr::text_len).sum();
        let service_name = resource_kvs
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
                _ => None,
            })
            .unwrap_or(UNKNOWN_SERVICE);
        let mut resource_attrs = recycle_attrs(std::mem::take(&mut resource_attrs_store));
        resolve(&resource_pending, &resource_text, &mut resource_attrs);

        for (scope_index, scope_spans) in resource_spans.scope_spans.iter().enumerate() {
            let scope = scope_spans.scope.as_ref();
            let scope_name = scope.map(|s| s.name.as_str());
            let scope_version = scope.map(|s| s.version.as_str());
            for (span_index, span) in scope_spans.spans.iter().enumerate() {
                let valid = match validate(&SpanIdentity::of(span)) {
                    Ok(valid) => valid,
                    Err(why) => {
                        rejections.add(resource_index, scope_index, span_index, &why);
                        continue;
                    }
                };
                render_span(span, &mut scratch)?;
                let text = SpanText::of(span);
                budget.spend(resource_bytes, span_bytes(&text, &scratch))?;
                append_span(
                    &mut builder,
                    &scratch,
                    &SpanContext {
                        project,
                        service_name,
                        resource_attributes: ResourceAttributes::Each(&resource_attrs),
                        scope_name,
                        scope_version,
                    },
                    &text,
                    &valid,
                );
                accepted += 1;
            }
        }
        resource_attrs_store = recycle_attrs(resource_attrs);
    }

    Ok(DecodedSpans {
        batch: builder.finish(),
        accepted,
        rejected: rejections.count,
        rejection_message: rejections.message(),
    })
}

/// Renders the attributes of a span, its events and its valid links into
/// `scratch`.
fn render_span<'r>(span: &'r Span, scratch: &mut Scratch<'r>) -> Result<(), IngestError> {
    scratch.clear();
    render_attributes(&span.attributes, &mut scratch.text, &mut scratch.pending)
        .map_err(nested_too_deep)?;
    scratch.span_attribute_count = scratch.pending.len();
    for event in &span.events {
        let start = scratch.pending.len();
        render_attributes(&event.attributes, &mut scratch.text, &mut scratch.pending)
            .map_err(nested_too_deep)?;
        scratch.events.push(PendingEvent {
            // Times past 2262 do not fit the Arrow timestamp; keep the event.
            time_ns: i64::try_from(event.time_unix_nano).unwrap_or(i64::MAX),
            name: &event.name,
            attributes: start..scratch.pending.len(),
        });
    }
    for link in &span.links {
        let (Ok(trace_id), Ok(span_id)) = (
            TraceId::from_bytes(&link.trace_id),
            SpanId::from_bytes(&link.span_id),
        ) else {
            continue;
        };
        let start = scratch.pending.len();
        render_attributes(&link.attributes, &mut scratch.text, &mut scratch.pending)
            .map_err(nested_too_deep)?;
        scratch.links.push(PendingLink {
            trace_id: trace_id.0,
            span_id: span_id.0,
            trace_state: &link.trace_state,
            attributes: start..scratch.pending.len(),
        });
    }
    Ok(())
}

/// The resource attributes of a span.
pub(crate) enum ResourceAttributes<'a> {
    /// Appended one by one (the prost path, kept as it was).
    Each(&'a [Attr<'a>]),
    /// Encoded once per resource.
    Shared(&'a SharedAttributes),
}

/// What the spans of one scope share.
pub(crate) struct SpanContext<'a> {
    pub project: &'a str,
    pub service_name: &'a str,
    pub resource_attributes: ResourceAttributes<'a>,
    pub scope_name: Option<&'a str>,
    pub scope_version: Option<&'a str>,
}

/// Appends a span whose attributes, events and links are rendered in `scratch`.
pub(crate) fn append_span(
    builder: &mut SpanBatchBuilder,
    scratch: &Scratch<'_>,
    context: &SpanContext<'_>,
    span: &SpanText<'_>,
    valid: &ValidSpan,
) {
    let record = SpanRecord {
        project: context.project,
        trace_id: valid.trace_id,
        span_id: valid.span_id,
        parent_span_id: valid.parent_span_id,
        trace_state: Some(span.trace_state),
        service_name: context.service_name,
        name: span.name,
        kind: SpanKind::from_otlp(span.kind),
        start_time_ns: valid.start_time_ns,
        end_time_ns: valid.end_time_ns,
        status_code: StatusCode::from_otlp(span.status.map_or(0, |(code, _)| code)),
        status_message: span.status.map(|(_, message)| message),
        attributes: &[],
        resource_attributes: match context.resource_attributes {
            ResourceAttributes::Each(attrs) => attrs,
            ResourceAttributes::Shared(_) => &[],
        },
        scope_name: context.scope_name,
        scope_version: context.scope_version,
        events: &[],
        links: &[],
        source: Source::Otlp,
    };
    let rendered = RenderedAttributes {
        text: &scratch.text,
        attributes: &scratch.pending,
        span_attributes: scratch.span_attribute_count,
        events: &scratch.events,
        links: &scratch.links,
    };
    let shared = match context.resource_attributes {
        ResourceAttributes::Each(_) => None,
        ResourceAttributes::Shared(shared) => Some(shared),
    };
    builder.append_rendered(&record, &rendered, shared);
}
