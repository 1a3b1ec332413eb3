//! The generated OTLP requests in the other wire formats LightTrace receives:
//! Zipkin v2 JSON and Sentry envelopes. (OTLP/gRPC sends the request as it is.)
//!
//! Both conversions keep every span's ids, parent, name and times (to the
//! format's precision: Zipkin counts microseconds, Sentry float seconds, which
//! the receiver rounds to the microsecond) and carry the attributes the way
//! the clients of that format do.
//!
//! **Zipkin** is what the OpenTelemetry Zipkin exporter writes: one span object
//! per span, `localEndpoint.serviceName` from the resource, the resource's
//! other attributes and the span's attributes as string `tags`, the status as
//! `otel.status_code` (and `error`), the scope as `otel.scope.*`, a CLIENT
//! span's `peer.service` as `remoteEndpoint.serviceName`, and events as
//! annotations of the form `{"<name>": {<attributes>}}`.
//!
//! **Sentry** is what an SDK sends, one `transaction` item per (trace,
//! service-local root): each server span, and each span whose parent is absent
//! or in another service instance, starts a transaction (`contexts.trace`), and
//! its descendants in the same service instance, down to the next server span,
//! are its `spans[]`. A span's `op` comes from its kind
//! and attributes (`http.server`, `grpc.server`, `http.client`, `grpc.client`,
//! `db`, `db.redis`, …), its `description` is its name, its attributes are its
//! `data`, its status a Sentry status (`ok`, `not_found`, `internal_error`, …).
//! The resource's `service.*`, `host.name` and `telemetry.*` attributes go to
//! `contexts.otel.resource` (as the OpenTelemetry-based SDKs send it: that is
//! where the receiver reads the service name), its other attributes (the
//! topology's service tags, `version`, `region`, …) to the transaction's
//! `tags`. All transactions of one request share one envelope: an SDK sends one
//! per envelope, which would measure HTTP round trips rather than ingest.
//! Span events (the generated `exception` events) are not sent: a Sentry SDK
//! reports an error as a separate `event` item, which has no span behind it.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::{Map, Value, json};

/// The Sentry SDK version the envelopes claim.
const SENTRY_SDK_VERSION: &str = "2.19.0";

/// Zipkin v2 JSON (`POST /api/v2/spans`) of every span of `request`.
pub(crate) fn zipkin_json(request: &ExportTraceServiceRequest) -> Vec<u8> {
    let mut spans = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let service = string_attr(resource, "service.name");
        for scope_spans in &resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref();
            for span in &scope_spans.spans {
                let mut tags = Map::new();
                for kv in resource.iter().filter(|kv| kv.key != "service.name") {
                    tags.insert(kv.key.clone(), Value::String(tag_text(kv.value.as_ref())));
                }
                for kv in &span.attributes {
                    tags.insert(kv.key.clone(), Value::String(tag_text(kv.value.as_ref())));
                }
                if let Some(scope) = scope.filter(|s| !s.name.is_empty()) {
                    tags.insert("otel.scope.name".into(), scope.name.clone().into());
                    tags.insert("otel.scope.version".into(), scope.version.clone().into());
                }
                match span.status.as_ref().map(|s| (s.code(), &s.message)) {
                    Some((StatusCode::Error, message)) => {
                        tags.insert("otel.status_code".into(), "ERROR".into());
                        let message = if message.is_empty() { "true" } else { message };
                        tags.insert("error".into(), message.into());
                    }
                    Some((StatusCode::Ok, _)) => {
                        tags.insert("otel.status_code".into(), "OK".into());
                    }
                    _ => {}
                }
                let start_micros = span.start_time_unix_nano / 1000;
                let end_micros = span.end_time_unix_nano / 1000;
                let mut zipkin = Map::new();
                zipkin.insert("traceId".into(), hex::encode(&span.trace_id).into());
                zipkin.insert("id".into(), hex::encode(&span.span_id).into());
                if let Some(parent) = parent_id(span) {
                    zipkin.insert("parentId".into(), hex::encode(parent).into());
                }
                zipkin.insert("name".into(), span.name.clone().into());
                let kind = match span.kind() {
                    SpanKind::Server => Some("SERVER"),
                    SpanKind::Client => Some("CLIENT"),
                    SpanKind::Producer => Some("PRODUCER"),
                    SpanKind::Consumer => Some("CONSUMER"),
                    SpanKind::Internal | SpanKind::Unspecified => None,
                };
                if let Some(kind) = kind {
                    zipkin.insert("kind".into(), kind.into());
                }
                zipkin.insert("timestamp".into(), start_micros.into());
                zipkin.insert(
                    "duration".into(),
                    end_micros.saturating_sub(start_micros).into(),
                );
                if let Some(service) = service {
                    zipkin.insert("localEndpoint".into(), json!({ "serviceName": service }));
                }
                if span.kind() == SpanKind::Client
                    && let Some(peer) = string_attr(&span.attributes, "peer.service")
                {
                    zipkin.insert("remoteEndpoint".into(), json!({ "serviceName": peer }));
                }
                if !span.events.is_empty() {
                    let annotations = span
                        .events
                        .iter()
                        .map(|event| {
                            let value =
                                json!({ event.name.as_str(): attrs_object(&event.attributes) });
                            json!({
                                "timestamp": event.time_unix_nano / 1000,
                                "value": value.to_string(),
                            })
                        })
                        .collect();
                    zipkin.insert("annotations".into(), Value::Array(annotations));
                }
                zipkin.insert("tags".into(), Value::Object(tags));
                spans.push(Value::Object(zipkin));
            }
        }
    }
    serde_json::to_vec(&spans).expect("JSON values always serialize")
}

/// A Sentry envelope (`POST /api/{project}/envelope/`) with one `transaction`
/// item per (trace, service-local root) of `request`.
pub(crate) fn sentry_envelope(request: &ExportTraceServiceRequest) -> Vec<u8> {
    // Every span, with the index of its `ResourceSpans` (one service instance).
    let mut spans: Vec<(usize, &Span)> = Vec::new();
    for (group, resource_spans) in request.resource_spans.iter().enumerate() {
        for scope_spans in &resource_spans.scope_spans {
            spans.extend(scope_spans.spans.iter().map(|span| (group, span)));
        }
    }
    let by_id: HashMap<(&[u8], &[u8]), usize> = spans
        .iter()
        .enumerate()
        .map(|(i, (_, span))| ((span.trace_id.as_slice(), span.span_id.as_slice()), i))
        .collect();
    // Transactions in order of their root's first appearance: (root, children).
    let mut transactions: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut transaction_of_root: HashMap<usize, usize> = HashMap::new();
    let mut owners = Vec::with_capacity(spans.len());
    for (i, &(group, _)) in spans.iter().enumerate() {
        let mut root = i;
        while !starts_transaction(spans[root].1)
            && let Some(parent) = parent_id(spans[root].1)
                .and_then(|parent| by_id.get(&(spans[root].1.trace_id.as_slice(), parent)))
                .filter(|&&parent| spans[parent].0 == group)
        {
            root = *parent;
        }
        owners.push(root);
    }
    for (i, &root) in owners.iter().enumerate() {
        let next = transactions.len();
        let transaction = *transaction_of_root.entry(root).or_insert(next);
        if transaction == next {
            transactions.push((root, Vec::new()));
        }
        if i != root {
            transactions[transaction].1.push(i);
        }
    }

    let mut out = Vec::new();
    let mut first = true;
    for (root, children) in &transactions {
        let (group, root_span) = spans[*root];
        let resource = request.resource_spans[group]
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let event_id = event_id(root_span);
        if first {
            // Each transaction names its own SDK: an envelope mixes services.
            let header = json!({ "event_id": event_id });
            serde_json::to_writer(&mut out, &header).expect("JSON values always serialize");
            out.push(b'\n');
            first = false;
        }
        let payload = transaction_json(&event_id, resource, root_span, children, &spans);
        let payload = serde_json::to_vec(&payload).expect("JSON values always serialize");
        let header = json!({ "type": "transaction", "length": payload.len() });
        serde_json::to_writer(&mut out, &header).expect("JSON values always serialize");
        out.push(b'\n');
        out.extend_from_slice(&payload);
        out.push(b'\n');
    }
    out
}

fn transaction_json(
    event_id: &str,
    resource: &[KeyValue],
    root: &Span,
    children: &[usize],
    spans: &[(usize, &Span)],
) -> Value {
    let mut otel_resource = Map::new();
    let mut tags = Map::new();
    for kv in resource {
        let key = kv.key.as_str();
        if key.starts_with("service.") || key.starts_with("telemetry.") || key == "host.name" {
            otel_resource.insert(kv.key.clone(), any_json(kv.value.as_ref()));
        } else {
            tags.insert(kv.key.clone(), Value::String(tag_text(kv.value.as_ref())));
        }
    }
    let language = string_attr(resource, "telemetry.sdk.language").unwrap_or("other");
    let service = string_attr(resource, "service.name").unwrap_or("unknown_service");
    let mut trace = Map::new();
    trace.insert("trace_id".into(), hex::encode(&root.trace_id).into());
    trace.insert("span_id".into(), hex::encode(&root.span_id).into());
    if let Some(parent) = parent_id(root) {
        trace.insert("parent_span_id".into(), hex::encode(parent).into());
    }
    trace.insert("op".into(), sentry_op(root).into());
    trace.insert("status".into(), sentry_status(root).into());
    trace.insert("origin".into(), sentry_origin(root).into());
    trace.insert("data".into(), attrs_object(&root.attributes));
    let child_spans: Vec<Value> = children
        .iter()
        .map(|&i| {
            let span = spans[i].1;
            let mut child = Map::new();
            child.insert("trace_id".into(), hex::encode(&span.trace_id).into());
            child.insert("span_id".into(), hex::encode(&span.span_id).into());
            if let Some(parent) = parent_id(span) {
                child.insert("parent_span_id".into(), hex::encode(parent).into());
            }
            child.insert("op".into(), sentry_op(span).into());
            child.insert("description".into(), span.name.clone().into());
            child.insert("status".into(), sentry_status(span).into());
            child.insert("origin".into(), sentry_origin(span).into());
            child.insert(
                "start_timestamp".into(),
                seconds(span.start_time_unix_nano).into(),
            );
            child.insert("timestamp".into(), seconds(span.end_time_unix_nano).into());
            child.insert("data".into(), attrs_object(&span.attributes));
            Value::Object(child)
        })
        .collect();
    let source = if root.kind() == SpanKind::Server {
        "route"
    } else {
        "custom"
    };
    let mut transaction = json!({
        "event_id": event_id,
        "type": "transaction",
        "platform": language,
        "transaction": root.name,
        "transaction_info": { "source": source },
        "start_timestamp": seconds(root.start_time_unix_nano),
        "timestamp": seconds(root.end_time_unix_nano),
        "environment": "production",
        "sdk": { "name": format!("sentry.{language}"), "version": SENTRY_SDK_VERSION },
        "contexts": {
            "trace": Value::Object(trace),
            "otel": { "resource": Value::Object(otel_resource) },
        },
        "tags": Value::Object(tags),
        "spans": child_spans,
    });
    if let Some(host) = string_attr(resource, "host.name") {
        transaction["server_name"] = host.into();
    }
    if let Some(version) = string_attr(resource, "version") {
        transaction["release"] = format!("{service}@{version}").into();
    }
    transaction
}

/// A server (or consumer) span starts a transaction even when its caller is
/// the same service instance: the SDK sees a new incoming request.
fn starts_transaction(span: &Span) -> bool {
    matches!(span.kind(), SpanKind::Server | SpanKind::Consumer)
}

/// Float seconds since the epoch, as the SDKs send them: microseconds, which
/// an `f64` of today's time holds exactly enough to round back.
fn seconds(unix_nanos: u64) -> f64 {
    (unix_nanos / 1000) as f64 / 1e6
}

/// A deterministic event id for the transaction rooted at `root`.
fn event_id(root: &Span) -> String {
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = root.trace_id.get(i).copied().unwrap_or(0)
            ^ root.span_id.get(i % 8).copied().unwrap_or(0)
            ^ 0x5a;
    }
    hex::encode(id)
}

/// The Sentry op the SDKs' integrations give such a span.
fn sentry_op(span: &Span) -> &'static str {
    let has = |key: &str| span.attributes.iter().any(|kv| kv.key == key);
    match span.kind() {
        SpanKind::Server if has("rpc.system") => "grpc.server",
        SpanKind::Server => "http.server",
        SpanKind::Client if string_attr(&span.attributes, "db.system") == Some("redis") => {
            "db.redis"
        }
        SpanKind::Client if has("db.system") => "db",
        SpanKind::Client if has("rpc.system") => "grpc.client",
        SpanKind::Client => "http.client",
        SpanKind::Producer => "queue.publish",
        SpanKind::Consumer => "queue.process",
        SpanKind::Internal | SpanKind::Unspecified => "function",
    }
}

fn sentry_origin(span: &Span) -> &'static str {
    match span.kind() {
        SpanKind::Server | SpanKind::Client => {
            if span.attributes.iter().any(|kv| kv.key == "db.system") {
                "auto.db"
            } else if span.attributes.iter().any(|kv| kv.key == "rpc.system") {
                "auto.grpc"
            } else {
                "auto.http"
            }
        }
        _ => "manual",
    }
}

/// The Sentry status of a span: `ok` unless it failed, then the one Sentry
/// maps its HTTP status to (`internal_error` without one).
fn sentry_status(span: &Span) -> &'static str {
    if span.status.as_ref().map(|s| s.code()) != Some(StatusCode::Error) {
        return "ok";
    }
    let http_status = span
        .attributes
        .iter()
        .find(|kv| kv.key == "http.response.status_code")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(code) => Some(*code),
            _ => None,
        });
    match http_status {
        Some(400) => "invalid_argument",
        Some(401) => "unauthenticated",
        Some(403) => "permission_denied",
        Some(404) => "not_found",
        Some(409) => "already_exists",
        Some(429) => "resource_exhausted",
        Some(499) => "cancelled",
        Some(501) => "unimplemented",
        Some(503) => "unavailable",
        Some(504) => "deadline_exceeded",
        _ => "internal_error",
    }
}

/// The parent span id, unless the span is a root (empty or all zeros).
fn parent_id(span: &Span) -> Option<&[u8]> {
    Some(span.parent_span_id.as_slice()).filter(|p| !p.is_empty() && p.iter().any(|&b| b != 0))
}

fn string_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

fn attrs_object(attrs: &[KeyValue]) -> Value {
    Value::Object(
        attrs
            .iter()
            .map(|kv| (kv.key.clone(), any_json(kv.value.as_ref())))
            .collect(),
    )
}

/// An attribute value as the JSON value an SDK would send.
fn any_json(value: Option<&AnyValue>) -> Value {
    let Some(value) = value.and_then(|v| v.value.as_ref()) else {
        return Value::Null;
    };
    match value {
        any_value::Value::StringValue(s) => Value::String(s.clone()),
        any_value::Value::BoolValue(b) => Value::Bool(*b),
        any_value::Value::IntValue(i) => Value::from(*i),
        any_value::Value::DoubleValue(d) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        any_value::Value::ArrayValue(array) => {
            Value::Array(array.values.iter().map(|v| any_json(Some(v))).collect())
        }
        any_value::Value::KvlistValue(list) => attrs_object(&list.values),
        any_value::Value::BytesValue(bytes) => Value::String(hex::encode(bytes)),
        // An index into a profile's string table: not used by traces.
        any_value::Value::StringValueStrindex(index) => Value::from(*index),
    }
}

/// An attribute value as a Zipkin (or Sentry) tag: strings as they are, other
/// values as their JSON text.
fn tag_text(value: Option<&AnyValue>) -> String {
    match any_json(value) {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::TimestampNanosecondType;
    use lighttrace_ingest::{SentryContext, ZipkinEncoding, decode_sentry_envelope};

    use super::super::{Generator, HIPSTER_SHOP, load_topology};
    use super::*;

    /// Per span id: (parent span id, name, start ns, end ns), as hex and nanos.
    type Rows = BTreeMap<String, (Option<String>, String, i64, i64)>;

    fn request() -> ExportTraceServiceRequest {
        let topology = load_topology(HIPSTER_SHOP.as_ref()).expect("topology");
        let start = 1_700_000_000_123_456_789;
        let mut generator = Generator::new(topology, 5, start, 3_600_000_000_000).with_traces(40);
        generator.next_request(100_000).expect("a request")
    }

    fn otlp_rows(request: &ExportTraceServiceRequest) -> Rows {
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|span| {
                (
                    hex::encode(&span.span_id),
                    (
                        parent_id(span).map(hex::encode),
                        span.name.clone(),
                        span.start_time_unix_nano as i64,
                        span.end_time_unix_nano as i64,
                    ),
                )
            })
            .collect()
    }

    fn batch_rows(batch: &RecordBatch) -> Rows {
        let text = |name: &str| batch.column_by_name(name).expect(name).as_string::<i32>();
        let time = |name: &str| {
            batch
                .column_by_name(name)
                .expect(name)
                .as_primitive::<TimestampNanosecondType>()
        };
        let (span_ids, parents, names) = (text("span_id"), text("parent_span_id"), text("name"));
        let (starts, ends) = (time("start_time"), time("end_time"));
        (0..batch.num_rows())
            .map(|i| {
                let parent = (!parents.is_null(i)).then(|| parents.value(i).to_owned());
                (
                    span_ids.value(i).to_owned(),
                    (
                        parent,
                        names.value(i).to_owned(),
                        starts.value(i),
                        ends.value(i),
                    ),
                )
            })
            .collect()
    }

    /// Same spans, parents and names; times within a microsecond.
    fn assert_same(sent: &Rows, decoded: &Rows) {
        assert_eq!(sent.len(), decoded.len());
        for (id, (parent, name, start, end)) in sent {
            let got = decoded.get(id).unwrap_or_else(|| panic!("span {id} lost"));
            assert_eq!((&got.0, &got.1), (parent, name), "span {id}");
            assert!(
                (got.2 - start).abs() < 1000,
                "start of {id}: {} vs {start}",
                got.2
            );
            assert!(
                (got.3 - end).abs() < 1000,
                "end of {id}: {} vs {end}",
                got.3
            );
        }
    }

    #[test]
    fn zipkin_decodes_back_to_the_same_spans() {
        let request = request();
        let body = zipkin_json(&request);
        let decoded = lighttrace_ingest::decode_zipkin_spans(&body, ZipkinEncoding::Json, "p")
            .expect("valid Zipkin JSON");
        assert_eq!(decoded.rejected, 0, "{:?}", decoded.rejection_message);
        assert_same(&otlp_rows(&request), &batch_rows(&decoded.batch));
        let kinds = decoded.batch.column_by_name("kind").expect("kind");
        let kinds = kinds.as_string::<i32>();
        assert!(kinds.iter().any(|k| k == Some("server")));
        assert!(kinds.iter().any(|k| k == Some("client")));
    }

    #[test]
    fn sentry_decodes_back_to_the_same_spans() {
        let request = request();
        let body = sentry_envelope(&request);
        let context = SentryContext {
            project: "1",
            received_at_ns: 1_700_000_000_000_000_000,
            fallback_event_id: [1; 16],
        };
        let decoded = decode_sentry_envelope(&body, &context).expect("valid envelope");
        assert_eq!(
            decoded.spans.rejected, 0,
            "{:?}",
            decoded.spans.rejection_message
        );
        assert_eq!(decoded.ignored_items, 0);
        assert_same(&otlp_rows(&request), &batch_rows(&decoded.spans.batch));

        // One transaction per server span (every service-local root is one),
        // and the service name comes through.
        let batch = &decoded.spans.batch;
        let kinds = batch
            .column_by_name("kind")
            .expect("kind")
            .as_string::<i32>();
        let servers = kinds.iter().filter(|k| *k == Some("server")).count();
        let envelope = lighttrace_ingest::parse_sentry_envelope(&body).expect("framing");
        assert_eq!(envelope.items.len(), servers);
        let services = batch
            .column_by_name("service_name")
            .expect("service_name")
            .as_string::<i32>();
        assert!(services.iter().any(|s| s == Some("frontend")));
        assert!(services.iter().all(|s| s != Some("1")));
        assert!(kinds.iter().any(|k| k == Some("client")));
    }
}
