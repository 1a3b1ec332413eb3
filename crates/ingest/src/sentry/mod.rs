//! Sentry envelopes (`POST /api/{project_id}/envelope/`) into `spans` and
//! `errors` batches.
//!
//! See the crate docs for the mapping. The entry point is
//! [`decode_sentry_envelope`]; [`parse_sentry_envelope`] reads only the
//! framing, and the `sentry_key_from_*` functions find the DSN's public key
//! in the places the SDKs put it.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use arrow::array::RecordBatch;
use lighttrace_model::{
    Attr, AttrType, ErrorBatchBuilder, ErrorRecord, LinkRecord, Source, SpanBatchBuilder, SpanKind,
    SpanRecord, StatusCode,
};
use serde_json::Value;

use crate::otlp::{Budget, Rejection, SpanIdentity, ValidSpan, expansion_budget_for, validate};
use crate::{DecodedSpans, IngestError};

mod auth;
mod envelope;
mod json;

pub use auth::{sentry_key_from_auth_header, sentry_key_from_dsn, sentry_key_from_query};
pub use envelope::{Envelope, Item, Sdk};
use json::{
    AttributeV2, EventJson, Pairs, SpanJson, SpanV2, SpanV2Container, Text, Time, TraceContext,
    text,
};

/// Item types that become rows; every other type is skipped.
const DECODED_ITEM_TYPES: [&str; 3] = ["transaction", "span", "event"];

/// The `content_type` of a span v2 item (`{"items": [...]}`).
const SPAN_V2_CONTENT_TYPE: &str = "application/vnd.sentry.items.span.v2+json";

/// Rejection reasons spelled out in [`DecodedSpans::rejection_message`].
const MAX_LISTED_REJECTIONS: usize = 5;

/// Fixed-width columns and ids of one span, counted against the budget.
const SPAN_OVERHEAD_BYTES: usize = 128;

/// What an envelope's rows get from outside the envelope.
#[derive(Debug, Clone, Copy)]
pub struct SentryContext<'a> {
    /// The project id of the envelope's URL: the `project` of every row, and
    /// the `service_name` of rows whose SDK names no service.
    pub project: &'a str,
    /// When the server received the envelope, in nanoseconds since the Unix
    /// epoch: the `time` of an error event that has no usable timestamp.
    pub received_at_ns: i64,
    /// The answer's id for an envelope that names none (no `event_id` in its
    /// header or its items), and the `event_id` of an error event without one.
    pub fallback_event_id: [u8; 16],
}

/// The rows of one envelope, and what the caller needs to log and answer it.
#[derive(Debug, Clone)]
pub struct DecodedEnvelope {
    /// The id to answer with (`{"id": …}`), 32 lowercase hex chars: the
    /// envelope header's `event_id`, else the first item's, else the fallback.
    pub id: String,
    /// Spans of `transaction` and `span` items.
    pub spans: DecodedSpans,
    /// Rows of `event` items, for the `errors` table.
    pub errors: DecodedErrors,
    /// Items of other types (sessions, client reports, attachments, profiles,
    /// check-ins, …), skipped.
    pub ignored_items: usize,
    /// The public key of the envelope header's `dsn`, when it has one.
    pub dsn_key: Option<String>,
    /// The envelope reduced to the items that were decoded: the original header
    /// line, then each decoded item with a header of its `type`, `length` and
    /// `content_type` and its payload as sent. Decoding it again (with the same
    /// [`SentryContext`]) gives the same rows; this is what a caller logs, so
    /// that attachments and profiles stay out of its log.
    pub replayable: Vec<EnvelopePart>,
}

/// A piece of [`DecodedEnvelope::replayable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopePart {
    /// These bytes of the (decompressed) body that was decoded.
    Body(Range<usize>),
    /// New bytes (item headers, newlines).
    New(Vec<u8>),
}

impl DecodedEnvelope {
    /// [`replayable`](Self::replayable) as one buffer (`body` is the
    /// decompressed body that was decoded).
    pub fn replayable_bytes(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &self.replayable {
            match part {
                EnvelopePart::Body(range) => out.extend_from_slice(&body[range.clone()]),
                EnvelopePart::New(bytes) => out.extend_from_slice(bytes),
            }
        }
        out
    }
}

/// The rows of an envelope's `event` items.
#[derive(Debug, Clone)]
pub struct DecodedErrors {
    /// The schema is [`lighttrace_model::errors_schema`].
    pub batch: RecordBatch,
}

impl DecodedErrors {
    /// Error events in `batch`.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }
}

/// Reads the framing of a (decompressed) envelope: its header and every item.
pub fn parse_sentry_envelope(body: &[u8]) -> Result<Envelope<'_>, IngestError> {
    envelope::parse(body, |_| true).map(|(envelope, _)| envelope)
}

/// Decodes a Sentry envelope (already decompressed, see [`crate::decompress`]).
///
/// Fails only when the envelope as a whole is unusable: bad framing, an item
/// of a decoded type whose payload is not the JSON it should be, or a payload
/// that would expand past the decoder's budget. Spans that fail validation are
/// counted in [`DecodedSpans::rejected`] and left out.
pub fn decode_sentry_envelope(
    body: &[u8],
    context: &SentryContext<'_>,
) -> Result<DecodedEnvelope, IngestError> {
    let (envelope, ignored_items) =
        envelope::parse(body, |item_type| DECODED_ITEM_TYPES.contains(&item_type))?;
    let payload_bytes: usize = envelope.items.iter().map(|item| item.payload.len()).sum();
    let mut decoder = Decoder {
        context,
        envelope_sdk: &envelope.sdk,
        spans: SpanBatchBuilder::new(),
        errors: ErrorBatchBuilder::new(),
        accepted: 0,
        rejections: Rejections::default(),
        budget: Budget::new(expansion_budget_for(payload_bytes)),
        first_item_event_id: None,
    };
    let mut replayable = vec![
        EnvelopePart::Body(0..envelope.header_line.len()),
        EnvelopePart::New(b"\n".to_vec()),
    ];
    for (index, item) in envelope.items.iter().enumerate() {
        let number = index + 1;
        match item.item_type.as_ref() {
            "transaction" => decoder.transaction(number, item.payload)?,
            "event" => decoder.event(number, item.payload)?,
            _ => decoder.span_item(number, item)?,
        }
        let mut header = serde_json::json!({
            "type": item.item_type,
            "length": item.payload.len(),
        });
        if let Some(content_type) = &item.content_type {
            header["content_type"] = Value::from(content_type.as_ref());
        }
        let mut header = header.to_string().into_bytes();
        header.push(b'\n');
        replayable.push(EnvelopePart::New(header));
        replayable.push(EnvelopePart::Body(item.payload_range.clone()));
        replayable.push(EnvelopePart::New(b"\n".to_vec()));
    }
    let id = envelope
        .event_id
        .as_deref()
        .and_then(parse_event_id)
        .or(decoder.first_item_event_id)
        .unwrap_or(context.fallback_event_id);
    Ok(DecodedEnvelope {
        id: hex(&id),
        spans: DecodedSpans {
            batch: decoder.spans.finish(),
            accepted: decoder.accepted,
            rejected: decoder.rejections.count,
            rejection_message: decoder.rejections.message(),
        },
        errors: DecodedErrors {
            batch: decoder.errors.finish(),
        },
        ignored_items,
        dsn_key: envelope
            .dsn
            .as_deref()
            .and_then(sentry_key_from_dsn)
            .map(str::to_owned),
        replayable,
    })
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    lighttrace_model::hex_lower(bytes, &mut out);
    out
}

/// Exactly `N` bytes of hex text, any case.
fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = digit(text[2 * i])? << 4 | digit(text[2 * i + 1])?;
    }
    Some(out)
}

/// A trace id or event id: 32 hex chars, or a UUID with dashes.
fn decode_uuid(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    if text.len() == 36 {
        let bytes = text.as_bytes();
        if [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
            return None;
        }
        let compact: String = text.chars().filter(|&c| c != '-').collect();
        return decode_hex(&compact);
    }
    decode_hex(text)
}

fn parse_event_id(text: &str) -> Option<[u8; 16]> {
    decode_uuid(text).filter(|id| *id != [0; 16])
}

/// Why one span was left out, before or after [`validate`].
#[derive(Debug)]
enum SentryRejection {
    MissingId(&'static str),
    BadId(&'static str, String),
    MissingTime(&'static str),
    BadTime(&'static str, &'static str),
    Invalid(Rejection),
}

impl fmt::Display for SentryRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SentryRejection::MissingId(what) => write!(f, "no {what}"),
            SentryRejection::BadId(what, text) => {
                let expected = if *what == "trace id" { 32 } else { 16 };
                let shown: String = text.chars().take(40).collect();
                write!(f, "{what} {shown:?} is not {expected} hex characters")
            }
            SentryRejection::MissingTime(what) => write!(f, "no {what}"),
            SentryRejection::BadTime(what, why) => write!(f, "{what} {why}"),
            SentryRejection::Invalid(why) => why.fmt(f),
        }
    }
}

/// Counts rejected spans and spells out the first few.
#[derive(Default)]
struct Rejections {
    count: usize,
    listed: String,
}

impl Rejections {
    fn add(&mut self, item: usize, span: &str, why: &SentryRejection) {
        use fmt::Write as _;
        self.count += 1;
        if self.count <= MAX_LISTED_REJECTIONS {
            if !self.listed.is_empty() {
                self.listed.push_str("; ");
            }
            let _ = write!(self.listed, "item {item} {span}: {why}");
        }
    }

    fn message(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let spans = if self.count == 1 { "span" } else { "spans" };
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

/// The identity and timing of a span as sent.
struct SentIdentity<'s> {
    trace_id: Option<&'s str>,
    span_id: Option<&'s str>,
    parent_span_id: Option<&'s str>,
    start: Option<Time>,
    end: Option<Time>,
    end_name: &'static str,
}

fn check(sent: &SentIdentity<'_>) -> Result<ValidSpan, SentryRejection> {
    let trace_id = sent
        .trace_id
        .ok_or(SentryRejection::MissingId("trace id"))?;
    let trace_id = decode_uuid(trace_id)
        .ok_or_else(|| SentryRejection::BadId("trace id", trace_id.to_owned()))?;
    let span_id = sent.span_id.ok_or(SentryRejection::MissingId("span id"))?;
    let span_id = decode_hex::<8>(span_id.trim())
        .ok_or_else(|| SentryRejection::BadId("span id", span_id.to_owned()))?;
    let parent_span_id = match sent.parent_span_id.map(str::trim) {
        None | Some("") => None,
        Some(parent) => Some(
            decode_hex::<8>(parent)
                .ok_or_else(|| SentryRejection::BadId("parent span id", parent.to_owned()))?,
        ),
    };
    let time = |time: Option<Time>, what: &'static str| match time {
        None => Err(SentryRejection::MissingTime(what)),
        Some(Time::Invalid(why)) => Err(SentryRejection::BadTime(what, why)),
        // Nanos are never negative (`Time` refuses times before 1970).
        Some(Time::Nanos(ns)) => Ok(ns as u64),
    };
    let start = time(sent.start, "start_timestamp")?;
    let end = time(sent.end, sent.end_name)?;
    validate(&SpanIdentity {
        trace_id: &trace_id,
        span_id: &span_id,
        parent_span_id: parent_span_id.as_ref().map_or(&[][..], |p| &p[..]),
        start_time_unix_nano: start,
        end_time_unix_nano: end,
    })
    .map_err(SentryRejection::Invalid)
}

/// `ok` is OK; any other Sentry status (`internal_error`, `not_found`,
/// `deadline_exceeded`, …, and the span v2 `error`) is an error whose message
/// is the status; none is unset.
fn map_status(status: Option<&str>) -> (StatusCode, Option<&str>) {
    match status.map(str::trim) {
        None | Some("") => (StatusCode::Unset, None),
        Some(s) if s.eq_ignore_ascii_case("ok") => (StatusCode::Ok, None),
        Some(s) => (StatusCode::Error, Some(s)),
    }
}

/// The span kind: the OpenTelemetry kind when the SDK recorded one (`otel.kind`
/// in the span's data), else from the Sentry op. See the crate docs.
fn map_kind(op: Option<&str>, otel_kind: Option<&str>) -> SpanKind {
    if let Some(kind) = otel_kind {
        for candidate in [
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
            SpanKind::Internal,
        ] {
            if kind.eq_ignore_ascii_case(candidate.as_str()) {
                return candidate;
            }
        }
    }
    let Some(op) = op.map(str::trim).filter(|op| !op.is_empty()) else {
        return SpanKind::Internal;
    };
    let op = op.to_ascii_lowercase();
    let mut segments = op.split('.');
    let first = segments.next().unwrap_or_default();
    let second = segments.next().unwrap_or_default();
    if op.split('.').any(|s| s == "server") {
        SpanKind::Server
    } else if op.split('.').any(|s| s == "client") || matches!(first, "db" | "cache") {
        SpanKind::Client
    } else if first == "queue" && matches!(second, "publish" | "submit") {
        SpanKind::Producer
    } else if first == "queue" && matches!(second, "process" | "task" | "receive") {
        SpanKind::Consumer
    } else {
        SpanKind::Internal
    }
}

/// A JSON value as attribute text and type: strings as they are, integers in
/// decimal (`int`), other numbers in shortest round-trip form (`double`),
/// booleans (`bool`), objects and arrays as compact JSON (`json`); `None` for
/// null, which is left out.
fn render_json(value: &Value) -> Option<(Cow<'_, str>, AttrType)> {
    Some(match value {
        Value::Null => return None,
        Value::String(s) => (Cow::Borrowed(s.as_str()), AttrType::String),
        Value::Bool(b) => (
            Cow::Borrowed(if *b { "true" } else { "false" }),
            AttrType::Bool,
        ),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                (Cow::Owned(i.to_string()), AttrType::Int)
            } else if let Some(u) = n.as_u64() {
                (Cow::Owned(u.to_string()), AttrType::Int)
            } else {
                (
                    Cow::Owned(n.as_f64().unwrap_or(f64::NAN).to_string()),
                    AttrType::Double,
                )
            }
        }
        Value::Array(_) | Value::Object(_) => (Cow::Owned(value.to_string()), AttrType::Json),
    })
}

/// A span v2 attribute: by its declared type when the value fits it.
fn render_v2<'a>(attribute: &'a AttributeV2<'a>) -> Option<(Cow<'a, str>, AttrType)> {
    match (text(&attribute.value_type), &attribute.value) {
        (Some("double"), Value::Number(n)) => Some((
            Cow::Owned(n.as_f64().unwrap_or(f64::NAN).to_string()),
            AttrType::Double,
        )),
        _ => render_json(&attribute.value),
    }
}

/// Attributes of one span, the first of each key kept.
#[derive(Default)]
struct Attrs<'a>(Vec<Attr<'a>>);

impl<'a> Attrs<'a> {
    fn string(&mut self, key: impl Into<Cow<'a, str>>, value: Option<&'a str>) {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            self.0.push(Attr::string(key, value));
        }
    }

    fn json_pairs(&mut self, pairs: Option<&'a Pairs<'a, Value>>) {
        for (key, value) in pairs.map(|p| p.0.as_slice()).unwrap_or_default() {
            if let Some((text, ty)) = render_json(value) {
                self.0.push(Attr::typed(key.as_ref(), text, ty));
            }
        }
    }

    fn v2_pairs(&mut self, pairs: Option<&'a Pairs<'a, AttributeV2<'a>>>) {
        for (key, value) in pairs.map(|p| p.0.as_slice()).unwrap_or_default() {
            if let Some((text, ty)) = render_v2(value) {
                self.0.push(Attr::typed(key.as_ref(), text, ty));
            }
        }
    }

    /// Sorted by key, the first attribute of each key kept (callers push the
    /// ones that win first).
    fn finish(mut self) -> Vec<Attr<'a>> {
        self.0.sort_by(|a, b| a.key.cmp(&b.key));
        self.0.dedup_by(|later, earlier| later.key == earlier.key);
        self.0
    }
}

fn attrs_bytes(attrs: &[Attr<'_>]) -> usize {
    attrs.iter().map(|a| a.key.len() + a.value.len()).sum()
}

/// A string `key` of JSON pairs.
fn pairs_str<'p>(pairs: Option<&'p Pairs<'_, Value>>, key: &str) -> Option<&'p str> {
    pairs?
        .0
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_str())
}

/// The SDK's `service.name`, unless it is a placeholder: OpenTelemetry's
/// `unknown_service…`, or `@sentry/node`'s own default (`node` in the
/// `sentry` namespace).
fn sdk_service_name<'p>(resource: Option<&'p Pairs<'_, Value>>) -> Option<&'p str> {
    let name = pairs_str(resource, "service.name")?.trim();
    if name.is_empty() || name.starts_with("unknown_service") {
        return None;
    }
    if name == "node" && pairs_str(resource, "service.namespace") == Some("sentry") {
        return None;
    }
    Some(name)
}

/// What every span of one transaction (or span item) shares.
struct Shared<'a> {
    service_name: &'a str,
    resource: Vec<Attr<'a>>,
    resource_bytes: usize,
    scope_name: Option<&'a str>,
    scope_version: Option<&'a str>,
    /// `sentry.release`, `sentry.environment`, `sentry.sdk.name`, `sentry.platform`.
    common: Vec<Attr<'a>>,
}

struct Decoder<'c, 'e> {
    context: &'c SentryContext<'c>,
    envelope_sdk: &'e Sdk<'e>,
    spans: SpanBatchBuilder,
    errors: ErrorBatchBuilder,
    accepted: usize,
    rejections: Rejections,
    budget: Budget,
    first_item_event_id: Option<[u8; 16]>,
}

fn parse_payload<'p, T: serde::Deserialize<'p>>(
    number: usize,
    item_type: &str,
    payload: &'p [u8],
) -> Result<T, IngestError> {
    if !envelope::starts_object(payload) {
        return Err(IngestError::Malformed(format!(
            "invalid Sentry envelope: the payload of item {number} ({item_type}) is not \
             a JSON object"
        )));
    }
    serde_json::from_slice(payload).map_err(|e| {
        IngestError::Malformed(format!(
            "invalid Sentry envelope: the payload of item {number} ({item_type}) is not \
             a valid {item_type}: {e}"
        ))
    })
}

impl<'c, 'e> Decoder<'c, 'e> {
    fn note_event_id(&mut self, event_id: Option<&Text<'_>>) {
        if self.first_item_event_id.is_none() {
            self.first_item_event_id = event_id.and_then(|id| parse_event_id(id.as_str()));
        }
    }

    fn shared<'a>(&self, event: &'a EventJson<'a>) -> Shared<'a>
    where
        'e: 'a,
        'c: 'a,
    {
        let resource_pairs = event
            .contexts
            .as_ref()
            .and_then(|c| c.otel.as_ref())
            .and_then(|otel| otel.resource.as_ref());
        let mut resource = Attrs::default();
        resource.json_pairs(resource_pairs);
        let resource = resource.finish();
        let sdk = event.sdk.as_ref().unwrap_or(self.envelope_sdk);
        let mut common = Vec::new();
        for (key, value) in [
            ("sentry.release", text(&event.release)),
            ("sentry.environment", text(&event.environment)),
            ("sentry.sdk.name", sdk.name.as_deref()),
            ("sentry.platform", text(&event.platform)),
        ] {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                common.push(Attr::string(key, value));
            }
        }
        Shared {
            service_name: sdk_service_name(resource_pairs).unwrap_or(self.context.project),
            resource_bytes: attrs_bytes(&resource),
            resource,
            scope_name: sdk.name.as_deref(),
            scope_version: sdk.version.as_deref(),
            common,
        }
    }

    /// Checks a span and appends it, or counts it as rejected.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        item: usize,
        label: &str,
        sent: &SentIdentity<'_>,
        shared: &Shared<'_>,
        name: &str,
        kind: SpanKind,
        status: Option<&str>,
        attributes: &[Attr<'_>],
        links: &[LinkRecord<'_>],
    ) -> Result<(), IngestError> {
        let valid = match check(sent) {
            Ok(valid) => valid,
            Err(why) => {
                self.rejections.add(item, label, &why);
                return Ok(());
            }
        };
        let (status_code, status_message) = map_status(status);
        let span_bytes = SPAN_OVERHEAD_BYTES
            + name.len()
            + status_message.map_or(0, str::len)
            + attrs_bytes(attributes)
            + links
                .iter()
                .map(|l| SPAN_OVERHEAD_BYTES / 2 + attrs_bytes(&l.attributes))
                .sum::<usize>();
        self.budget.spend(shared.resource_bytes, span_bytes)?;
        self.spans.append(&SpanRecord {
            project: self.context.project,
            trace_id: valid.trace_id,
            span_id: valid.span_id,
            parent_span_id: valid.parent_span_id,
            trace_state: None,
            service_name: shared.service_name,
            name,
            kind,
            start_time_ns: valid.start_time_ns,
            end_time_ns: valid.end_time_ns,
            status_code,
            status_message,
            attributes,
            resource_attributes: &shared.resource,
            scope_name: shared.scope_name,
            scope_version: shared.scope_version,
            events: &[],
            links,
            source: Source::Sentry,
        });
        self.accepted += 1;
        Ok(())
    }

    fn transaction(&mut self, number: usize, payload: &[u8]) -> Result<(), IngestError> {
        let event: EventJson<'_> = parse_payload(number, "transaction", payload)?;
        self.note_event_id(event.event_id.as_ref());
        let shared = self.shared(&event);
        let empty = TraceContext::default();
        let trace = event
            .contexts
            .as_ref()
            .and_then(|c| c.trace.as_ref())
            .unwrap_or(&empty);

        // The root: the transaction itself.
        let op = text(&trace.op);
        let mut attrs = Attrs::default();
        attrs.0.extend(shared.common.iter().cloned());
        attrs.string("sentry.op", op);
        attrs.string("sentry.origin", text(&trace.origin));
        attrs.string(
            "sentry.span.source",
            event
                .transaction_info
                .as_ref()
                .and_then(|info| text(&info.source)),
        );
        attrs.string("sentry.description", text(&trace.description));
        attrs.json_pairs(trace.data.as_ref());
        attrs.json_pairs(event.tags.as_ref());
        let mut measurement_keys = Vec::new();
        for (name, measurement) in event
            .measurements
            .as_ref()
            .map(|m| m.0.as_slice())
            .unwrap_or_default()
        {
            if let Some(value) = measurement.value {
                measurement_keys.push((
                    format!("sentry.measurements.{name}"),
                    value.to_string(),
                    text(&measurement.unit),
                ));
            }
        }
        for (key, value, unit) in &measurement_keys {
            attrs
                .0
                .push(Attr::typed(key.as_str(), value.as_str(), AttrType::Double));
            if let Some(unit) = unit.filter(|u| !u.is_empty()) {
                attrs
                    .0
                    .push(Attr::string(format!("{key}.unit"), unit.to_string()));
            }
        }
        let attributes = attrs.finish();
        let name = text(&event.transaction)
            .filter(|n| !n.is_empty())
            .or(op)
            .unwrap_or("<unlabeled transaction>");
        let trace_id = text(&trace.trace_id);
        self.append(
            number,
            "transaction",
            &SentIdentity {
                trace_id,
                span_id: text(&trace.span_id),
                parent_span_id: text(&trace.parent_span_id),
                start: event.start_timestamp,
                end: event.timestamp,
                end_name: "timestamp",
            },
            &shared,
            name,
            map_kind(op, pairs_str(trace.data.as_ref(), "otel.kind")),
            text(&trace.status),
            &attributes,
            &[],
        )?;

        for (index, span) in event.spans.iter().flatten().enumerate() {
            let label = format!("span {index}");
            // A child span without a trace id belongs to its transaction's trace.
            self.child_span(number, &label, span, &shared, trace_id)?;
        }
        Ok(())
    }

    fn child_span(
        &mut self,
        number: usize,
        label: &str,
        span: &SpanJson<'_>,
        shared: &Shared<'_>,
        default_trace_id: Option<&str>,
    ) -> Result<(), IngestError> {
        let op = text(&span.op);
        let mut attrs = Attrs::default();
        attrs.0.extend(shared.common.iter().cloned());
        attrs.string("sentry.op", op);
        attrs.string("sentry.origin", text(&span.origin));
        attrs.json_pairs(span.data.as_ref());
        attrs.json_pairs(span.tags.as_ref());
        let attributes = attrs.finish();
        let name = text(&span.description)
            .filter(|d| !d.is_empty())
            .or(op)
            .unwrap_or("<unlabeled span>");
        self.append(
            number,
            label,
            &SentIdentity {
                trace_id: text(&span.trace_id).or(default_trace_id),
                span_id: text(&span.span_id),
                parent_span_id: text(&span.parent_span_id),
                start: span.start_timestamp,
                end: span.timestamp,
                end_name: "timestamp",
            },
            shared,
            name,
            map_kind(op, pairs_str(span.data.as_ref(), "otel.kind")),
            text(&span.status),
            &attributes,
            &[],
        )
    }

    /// A `span` item: the span v2 container, or one standalone span.
    fn span_item(&mut self, number: usize, item: &Item<'_>) -> Result<(), IngestError> {
        let is_v2 = item
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.eq_ignore_ascii_case(SPAN_V2_CONTENT_TYPE))
            || looks_like_container(item.payload);
        let no_event = EventJson::empty();
        if !is_v2 {
            let span: SpanJson<'_> = parse_payload(number, "span", item.payload)?;
            let mut shared = self.shared(&no_event);
            shared.common.clear();
            return self.child_span(number, "span", &span, &shared, None);
        }
        let container: SpanV2Container<'_> = parse_payload(number, "span", item.payload)?;
        for (index, span) in container.items.iter().enumerate() {
            self.span_v2(number, index, span, &no_event)?;
        }
        Ok(())
    }

    fn span_v2<'a>(
        &mut self,
        number: usize,
        index: usize,
        span: &'a SpanV2<'a>,
        no_event: &'a EventJson<'a>,
    ) -> Result<(), IngestError> {
        let attribute = |key: &str| {
            span.attributes
                .as_ref()?
                .0
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, a)| a.value.as_str())
        };
        let op = attribute("sentry.op");
        let mut shared = self.shared(no_event);
        shared.common.clear();
        if let Some(service) = attribute("service.name").filter(|s| !s.trim().is_empty()) {
            shared.service_name = service;
        }
        let mut attrs = Attrs::default();
        attrs.v2_pairs(span.attributes.as_ref());
        let attributes = attrs.finish();
        let mut links = Vec::new();
        for link in span.links.iter().flatten() {
            let (Some(trace_id), Some(span_id)) = (
                text(&link.trace_id).and_then(decode_uuid),
                text(&link.span_id).and_then(|s| decode_hex::<8>(s.trim())),
            ) else {
                continue;
            };
            if trace_id == [0; 16] || span_id == [0; 8] {
                continue;
            }
            let mut link_attrs = Attrs::default();
            link_attrs.v2_pairs(link.attributes.as_ref());
            links.push(LinkRecord {
                trace_id,
                span_id,
                trace_state: None,
                attributes: link_attrs.finish(),
            });
        }
        let name = text(&span.name)
            .filter(|n| !n.is_empty())
            .or(op)
            .unwrap_or("<unlabeled span>");
        // `@sentry/node` sends `"status": "error"` and the Sentry status apart.
        let status = match (text(&span.status), attribute("sentry.status.message")) {
            (Some(status), Some(message))
                if !status.eq_ignore_ascii_case("ok") && !message.is_empty() =>
            {
                Some(message)
            }
            (status, _) => status,
        };
        self.append(
            number,
            &format!("span {index}"),
            &SentIdentity {
                trace_id: text(&span.trace_id),
                span_id: text(&span.span_id),
                parent_span_id: text(&span.parent_span_id),
                start: span.start_timestamp,
                end: span.end_timestamp,
                end_name: "end_timestamp",
            },
            &shared,
            name,
            map_kind(op, attribute("otel.kind")),
            status,
            &attributes,
            &links,
        )
    }

    /// An `event` item: one row of the `errors` table.
    fn event(&mut self, number: usize, payload: &[u8]) -> Result<(), IngestError> {
        let event: EventJson<'_> = parse_payload(number, "event", payload)?;
        self.note_event_id(event.event_id.as_ref());
        let shared = self.shared(&event);
        let trace = event.contexts.as_ref().and_then(|c| c.trace.as_ref());
        let trace_id = trace
            .and_then(|t| text(&t.trace_id))
            .and_then(decode_uuid)
            .filter(|id| *id != [0; 16]);
        let span_id = trace
            .and_then(|t| text(&t.span_id))
            .and_then(|s| decode_hex::<8>(s.trim()))
            .filter(|id| *id != [0; 8]);
        let event_id = text(&event.event_id)
            .and_then(parse_event_id)
            .unwrap_or(self.context.fallback_event_id);
        let time_ns = match event.timestamp {
            Some(Time::Nanos(ns)) => ns,
            _ => self.context.received_at_ns,
        };
        // Sentry lists chained exceptions from the cause to the one raised
        // last, which titles the event; that one is stored.
        let exception = event.exception.as_ref().and_then(|e| e.0.last());
        let message = event
            .logentry
            .as_ref()
            .and_then(|m| m.0.as_deref())
            .or_else(|| event.message.as_ref().and_then(|m| m.0.as_deref()));
        let exception_type = exception.and_then(|e| text(&e.exception_type));
        let exception_value = exception.and_then(|e| text(&e.value)).or(message);
        let stack_frames = exception
            .and_then(|e| e.stacktrace.as_ref())
            .and_then(|s| s.frames.as_ref())
            .map(|frames| {
                let frames: Vec<Value> = frames
                    .iter()
                    .map(|frame| {
                        serde_json::json!({
                            "filename": text(&frame.filename)
                                .or(text(&frame.abs_path))
                                .or(text(&frame.module)),
                            "function": text(&frame.function),
                            "lineno": frame.lineno.as_ref().filter(|l| l.is_u64()),
                            "in_app": frame.in_app,
                        })
                    })
                    .collect();
                Value::Array(frames).to_string()
            });
        let tag_text: Vec<(&str, Cow<'_, str>)> = event
            .tags
            .as_ref()
            .map(|t| t.0.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, v)| render_json(v).map(|(text, _)| (k.as_ref(), text)))
            .collect();
        let tags: Vec<(&str, &str)> = tag_text.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        // Frames are rewritten with all four keys, so `[{}, {}, …]` expands.
        let bytes = SPAN_OVERHEAD_BYTES
            + stack_frames.as_ref().map_or(0, String::len)
            + tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.budget.spend(0, bytes)?;
        self.errors.append(&ErrorRecord {
            project: self.context.project,
            event_id,
            time_ns,
            trace_id,
            span_id,
            level: text(&event.level)
                .filter(|l| !l.is_empty())
                .unwrap_or("error"),
            exception_type,
            exception_value,
            stack_frames: stack_frames.as_deref(),
            release: text(&event.release),
            environment: text(&event.environment),
            transaction: text(&event.transaction),
            tags: &tags,
            service_name: shared.service_name,
            source: Source::Sentry,
        });
        Ok(())
    }
}

/// A JSON object with an `items` key: the span v2 container, also when an
/// SDK leaves out its `content_type`.
fn looks_like_container(payload: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        items: Option<serde::de::IgnoredAny>,
    }
    envelope::starts_object(payload)
        && serde_json::from_slice::<Probe>(payload).is_ok_and(|probe| probe.items.is_some())
}

impl EventJson<'_> {
    fn empty() -> Self {
        EventJson {
            event_id: None,
            transaction: None,
            transaction_info: None,
            start_timestamp: None,
            timestamp: None,
            contexts: None,
            spans: None,
            tags: None,
            measurements: None,
            release: None,
            environment: None,
            platform: None,
            sdk: None,
            level: None,
            exception: None,
            message: None,
            logentry: None,
        }
    }
}

#[cfg(test)]
mod tests;
