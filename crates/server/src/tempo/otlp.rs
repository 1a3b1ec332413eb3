//! Span rows back to OTLP: `spans` rows (any projection that has the columns
//! used here) become `ResourceSpans`, one per (project, service, resource
//! attributes), each with one `ScopeSpans` per instrumentation scope. Typed
//! attributes come back with their OTLP types from the `*_types` maps (see
//! `lighttrace_model`): `int`, `double`, `bool`, `bytes`, `array` and `kvlist`
//! exactly as received; Sentry's `json` values as strings.

use std::collections::BTreeMap;

use arrow::array::{
    Array, AsArray, MapArray, RecordBatch, StringArray, StructArray, TimestampNanosecondArray,
};
use arrow::datatypes::TimestampNanosecondType;
use base64::Engine as _;
use lighttrace_model::columns;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

/// Why rows could not be turned into OTLP (a column missing or of another type).
#[derive(Debug, thiserror::Error)]
#[error("cannot build OTLP spans: {0}")]
pub struct ExportError(String);

fn missing(name: &str) -> ExportError {
    ExportError(format!(
        "column {name} is missing or has an unexpected type"
    ))
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, ExportError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| missing(name))
}

fn times<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a TimestampNanosecondArray, ExportError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
        .ok_or_else(|| missing(name))
}

fn maps<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a MapArray, ExportError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_map_opt())
        .ok_or_else(|| missing(name))
}

fn optional(array: &StringArray, row: usize) -> Option<&str> {
    array.is_valid(row).then(|| array.value(row))
}

/// The entries of one map value, in stored order.
fn map_entries(map: &MapArray, row: usize) -> Vec<(String, Option<String>)> {
    if map.is_null(row) {
        return Vec::new();
    }
    let entries: StructArray = map.value(row);
    let (Some(keys), Some(values)) = (
        entries.column(0).as_string_opt::<i32>(),
        entries.column(1).as_string_opt::<i32>(),
    ) else {
        return Vec::new();
    };
    (0..entries.len())
        .map(|i| {
            (
                keys.value(i).to_owned(),
                optional(values, i).map(str::to_owned),
            )
        })
        .collect()
}

/// Text and type (absent for strings) back to an OTLP value.
pub fn any_value(text: Option<&str>, kind: Option<&str>) -> AnyValue {
    let Some(text) = text else {
        return AnyValue { value: None };
    };
    let string = || any_value::Value::StringValue(text.to_owned());
    let value = match kind {
        Some("int") => text
            .parse()
            .map(any_value::Value::IntValue)
            .unwrap_or_else(|_| string()),
        Some("double") => parse_double(text)
            .map(any_value::Value::DoubleValue)
            .unwrap_or_else(string),
        Some("bool") => match text {
            "true" => any_value::Value::BoolValue(true),
            "false" => any_value::Value::BoolValue(false),
            _ => string(),
        },
        Some("bytes") => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(any_value::Value::BytesValue)
            .unwrap_or_else(|_| string()),
        Some("array") => serde_json::from_str::<Vec<AnyValue>>(text)
            .map(|values| any_value::Value::ArrayValue(ArrayValue { values }))
            .unwrap_or_else(|_| string()),
        Some("kvlist") => serde_json::from_str::<Vec<KeyValue>>(text)
            .map(|values| any_value::Value::KvlistValue(KeyValueList { values }))
            .unwrap_or_else(|_| string()),
        _ => string(),
    };
    AnyValue { value: Some(value) }
}

fn parse_double(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// A typed attribute list from a row's values and types maps.
fn key_values(values: &MapArray, types: &MapArray, row: usize) -> Vec<KeyValue> {
    let types: BTreeMap<String, Option<String>> = map_entries(types, row).into_iter().collect();
    map_entries(values, row)
        .into_iter()
        .map(|(key, text)| {
            let kind = types.get(&key).and_then(|k| k.as_deref());
            KeyValue {
                value: Some(any_value(text.as_deref(), kind)),
                key,
                ..Default::default()
            }
        })
        .collect()
}

/// OTLP's `SpanKind` number for a stored kind name.
pub fn kind_number(kind: &str) -> i32 {
    (match kind {
        "internal" => span::SpanKind::Internal,
        "server" => span::SpanKind::Server,
        "client" => span::SpanKind::Client,
        "producer" => span::SpanKind::Producer,
        "consumer" => span::SpanKind::Consumer,
        _ => span::SpanKind::Unspecified,
    }) as i32
}

/// OTLP's `StatusCode` number for a stored status name.
pub fn status_number(status: &str) -> i32 {
    (match status {
        "ok" => status::StatusCode::Ok,
        "error" => status::StatusCode::Error,
        _ => status::StatusCode::Unset,
    }) as i32
}

fn hex_bytes(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap_or_default()
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ResourceKey {
    project: String,
    service: String,
    attributes: Vec<(String, Option<String>, Option<String>)>,
}

/// Spans of one resource by (scope name, scope version).
type ScopeGroups = BTreeMap<(String, String), Vec<Span>>;

/// Builds the OTLP form of `batches` (rows of `spans`, every column).
pub fn resource_spans(batches: &[RecordBatch]) -> Result<Vec<ResourceSpans>, ExportError> {
    // (resource, scope) → spans, each group in the rows' order.
    let mut groups: BTreeMap<ResourceKey, (Resource, ScopeGroups)> = BTreeMap::new();
    for batch in batches {
        let project = strings(batch, columns::PROJECT)?;
        let trace_id = strings(batch, columns::TRACE_ID)?;
        let span_id = strings(batch, columns::SPAN_ID)?;
        let parent = strings(batch, columns::PARENT_SPAN_ID)?;
        let trace_state = strings(batch, columns::TRACE_STATE)?;
        let service = strings(batch, columns::SERVICE_NAME)?;
        let name = strings(batch, columns::NAME)?;
        let kind = strings(batch, columns::KIND)?;
        let start = times(batch, columns::START_TIME)?;
        let end = times(batch, columns::END_TIME)?;
        let status_code = strings(batch, columns::STATUS_CODE)?;
        let status_message = strings(batch, columns::STATUS_MESSAGE)?;
        let attributes = maps(batch, columns::ATTRIBUTES)?;
        let attribute_types = maps(batch, columns::ATTRIBUTE_TYPES)?;
        let resource = maps(batch, columns::RESOURCE_ATTRIBUTES)?;
        let resource_types = maps(batch, columns::RESOURCE_ATTRIBUTE_TYPES)?;
        let scope_name = strings(batch, columns::SCOPE_NAME)?;
        let scope_version = strings(batch, columns::SCOPE_VERSION)?;
        let events = batch
            .column_by_name(columns::EVENTS)
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| missing(columns::EVENTS))?;
        let links = batch
            .column_by_name(columns::LINKS)
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| missing(columns::LINKS))?;

        for row in 0..batch.num_rows() {
            let types: BTreeMap<String, Option<String>> =
                map_entries(resource_types, row).into_iter().collect();
            let key = ResourceKey {
                project: project.value(row).to_owned(),
                service: service.value(row).to_owned(),
                attributes: map_entries(resource, row)
                    .into_iter()
                    .map(|(k, v)| {
                        let t = types.get(&k).cloned().flatten();
                        (k, v, t)
                    })
                    .collect(),
            };
            let (_, scopes) = groups.entry(key).or_insert_with(|| {
                let mut attributes = key_values(resource, resource_types, row);
                if !attributes.iter().any(|kv| kv.key == "service.name") {
                    attributes.insert(
                        0,
                        KeyValue {
                            key: "service.name".into(),
                            value: Some(any_value(Some(service.value(row)), None)),
                            ..Default::default()
                        },
                    );
                }
                (
                    Resource {
                        attributes,
                        ..Default::default()
                    },
                    BTreeMap::new(),
                )
            });
            let scope = (
                optional(scope_name, row).unwrap_or_default().to_owned(),
                optional(scope_version, row).unwrap_or_default().to_owned(),
            );
            let start_ns = start.value(row);
            let end_ns = if end.is_valid(row) {
                end.value(row)
            } else {
                start_ns
            };
            let span = Span {
                trace_id: hex_bytes(trace_id.value(row)),
                span_id: hex_bytes(span_id.value(row)),
                trace_state: optional(trace_state, row).unwrap_or_default().to_owned(),
                parent_span_id: optional(parent, row).map(hex_bytes).unwrap_or_default(),
                flags: 0,
                name: name.value(row).to_owned(),
                kind: kind_number(kind.value(row)),
                start_time_unix_nano: start_ns.max(0) as u64,
                end_time_unix_nano: end_ns.max(0) as u64,
                attributes: key_values(attributes, attribute_types, row),
                dropped_attributes_count: 0,
                events: row_events(events, row)?,
                dropped_events_count: 0,
                links: row_links(links, row)?,
                dropped_links_count: 0,
                status: Some(Status {
                    message: optional(status_message, row).unwrap_or_default().to_owned(),
                    code: status_number(status_code.value(row)),
                }),
            };
            scopes.entry(scope).or_default().push(span);
        }
    }
    Ok(groups
        .into_values()
        .map(|(resource, scopes)| ResourceSpans {
            resource: Some(resource),
            scope_spans: scopes
                .into_iter()
                .map(|((name, version), spans)| ScopeSpans {
                    scope: (!name.is_empty() || !version.is_empty()).then(|| {
                        InstrumentationScope {
                            name,
                            version,
                            ..Default::default()
                        }
                    }),
                    spans,
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: String::new(),
        })
        .collect())
}

fn struct_field<'a>(items: &'a StructArray, name: &str) -> Result<&'a dyn Array, ExportError> {
    items
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| missing(name))
}

fn row_events(
    events: &arrow::array::ListArray,
    row: usize,
) -> Result<Vec<span::Event>, ExportError> {
    if events.is_null(row) {
        return Ok(Vec::new());
    }
    let items = events.value(row);
    let items = items
        .as_struct_opt()
        .ok_or_else(|| missing(columns::EVENTS))?;
    let time = struct_field(items, "time")?
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| missing("events.time"))?;
    let name = struct_field(items, "name")?
        .as_string_opt::<i32>()
        .ok_or_else(|| missing("events.name"))?;
    let attributes = struct_field(items, "attributes")?
        .as_map_opt()
        .ok_or_else(|| missing("events.attributes"))?;
    let types = struct_field(items, "attribute_types")?
        .as_map_opt()
        .ok_or_else(|| missing("events.attribute_types"))?;
    Ok((0..items.len())
        .map(|i| span::Event {
            time_unix_nano: time.value(i).max(0) as u64,
            name: name.value(i).to_owned(),
            attributes: key_values(attributes, types, i),
            dropped_attributes_count: 0,
        })
        .collect())
}

fn row_links(links: &arrow::array::ListArray, row: usize) -> Result<Vec<span::Link>, ExportError> {
    if links.is_null(row) {
        return Ok(Vec::new());
    }
    let items = links.value(row);
    let items = items
        .as_struct_opt()
        .ok_or_else(|| missing(columns::LINKS))?;
    let text = |name: &str| -> Result<&StringArray, ExportError> {
        struct_field(items, name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| missing(name))
    };
    let (trace_id, span_id, trace_state) =
        (text("trace_id")?, text("span_id")?, text("trace_state")?);
    let attributes = struct_field(items, "attributes")?
        .as_map_opt()
        .ok_or_else(|| missing("links.attributes"))?;
    let types = struct_field(items, "attribute_types")?
        .as_map_opt()
        .ok_or_else(|| missing("links.attribute_types"))?;
    Ok((0..items.len())
        .map(|i| span::Link {
            trace_id: hex_bytes(trace_id.value(i)),
            span_id: hex_bytes(span_id.value(i)),
            trace_state: optional(trace_state, i).unwrap_or_default().to_owned(),
            attributes: key_values(attributes, types, i),
            dropped_attributes_count: 0,
            flags: 0,
        })
        .collect())
}

/// The JSON Tempo writes for OTLP messages: gogo's `jsonpb.Marshaler{}` with
/// its defaults (`modules/frontend/combiner/common.go`,
/// `pkg/tempopb/trace_utils.go` `MarshalToJSONV1`). Unlike OTLP/JSON, ids are
/// `bytes` and so base64, and enums are their names (`SPAN_KIND_SERVER`,
/// `STATUS_CODE_ERROR`); like it, 64-bit integers are decimal strings, field
/// names lowerCamelCase, and fields at their zero value are left out (a oneof
/// member is written even when zero, a present message even when empty).
pub mod jsonpb {
    use super::*;
    use serde_json::{Map, Value, json};

    fn base64(bytes: &[u8]) -> Value {
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// `key: value` unless the value is the field's zero value.
    fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
        let zero = match &value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::Bool(b) => !b,
            Value::Object(_) => false,
        };
        if !zero {
            object.insert(key.to_owned(), value);
        }
    }

    fn uint64(n: u64) -> Value {
        if n == 0 {
            Value::Null
        } else {
            Value::String(n.to_string())
        }
    }

    /// A double as Go's jsonpb writes it (non-finite values as strings).
    fn double(f: f64) -> Value {
        if f.is_nan() {
            json!("NaN")
        } else if f == f64::INFINITY {
            json!("Infinity")
        } else if f == f64::NEG_INFINITY {
            json!("-Infinity")
        } else {
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
    }

    pub fn any_value(value: &AnyValue) -> Value {
        use any_value::Value as V;
        let mut object = Map::new();
        // A oneof member is written even at its zero value.
        match &value.value {
            // A string-table index belongs to OTLP profiles; Tempo's proto has
            // no such member and the spans read here never hold one.
            None | Some(V::StringValueStrindex(_)) => {}
            Some(V::StringValue(s)) => {
                object.insert("stringValue".into(), json!(s));
            }
            Some(V::BoolValue(b)) => {
                object.insert("boolValue".into(), json!(b));
            }
            Some(V::IntValue(i)) => {
                object.insert("intValue".into(), json!(i.to_string()));
            }
            Some(V::DoubleValue(f)) => {
                object.insert("doubleValue".into(), double(*f));
            }
            Some(V::BytesValue(b)) => {
                object.insert("bytesValue".into(), base64(b));
            }
            Some(V::ArrayValue(array)) => {
                let mut inner = Map::new();
                put(
                    &mut inner,
                    "values",
                    array.values.iter().map(any_value).collect(),
                );
                object.insert("arrayValue".into(), Value::Object(inner));
            }
            Some(V::KvlistValue(list)) => {
                let mut inner = Map::new();
                put(&mut inner, "values", key_values(&list.values));
                object.insert("kvlistValue".into(), Value::Object(inner));
            }
        }
        Value::Object(object)
    }

    fn key_values(values: &[KeyValue]) -> Value {
        values
            .iter()
            .map(|kv| {
                let mut object = Map::new();
                put(&mut object, "key", json!(kv.key));
                if let Some(value) = &kv.value {
                    object.insert("value".into(), any_value(value));
                }
                Value::Object(object)
            })
            .collect()
    }

    fn kind_name(kind: i32) -> &'static str {
        span::SpanKind::try_from(kind).map_or("", |k| k.as_str_name())
    }

    fn status_name(code: i32) -> &'static str {
        status::StatusCode::try_from(code).map_or("", |c| c.as_str_name())
    }

    fn span_json(span: &Span) -> Value {
        let mut object = Map::new();
        put(&mut object, "traceId", base64(&span.trace_id));
        put(&mut object, "spanId", base64(&span.span_id));
        put(&mut object, "traceState", json!(span.trace_state));
        put(&mut object, "parentSpanId", base64(&span.parent_span_id));
        put(&mut object, "flags", json!(span.flags));
        put(&mut object, "name", json!(span.name));
        // The zero value (UNSPECIFIED) is left out like any other.
        if span.kind != 0 {
            put(&mut object, "kind", json!(kind_name(span.kind)));
        }
        put(
            &mut object,
            "startTimeUnixNano",
            uint64(span.start_time_unix_nano),
        );
        put(
            &mut object,
            "endTimeUnixNano",
            uint64(span.end_time_unix_nano),
        );
        put(&mut object, "attributes", key_values(&span.attributes));
        put(
            &mut object,
            "droppedAttributesCount",
            json!(span.dropped_attributes_count),
        );
        let events: Vec<Value> = span
            .events
            .iter()
            .map(|event| {
                let mut e = Map::new();
                put(&mut e, "timeUnixNano", uint64(event.time_unix_nano));
                put(&mut e, "name", json!(event.name));
                put(&mut e, "attributes", key_values(&event.attributes));
                put(
                    &mut e,
                    "droppedAttributesCount",
                    json!(event.dropped_attributes_count),
                );
                Value::Object(e)
            })
            .collect();
        put(&mut object, "events", Value::Array(events));
        put(
            &mut object,
            "droppedEventsCount",
            json!(span.dropped_events_count),
        );
        let links: Vec<Value> = span
            .links
            .iter()
            .map(|link| {
                let mut l = Map::new();
                put(&mut l, "traceId", base64(&link.trace_id));
                put(&mut l, "spanId", base64(&link.span_id));
                put(&mut l, "traceState", json!(link.trace_state));
                put(&mut l, "attributes", key_values(&link.attributes));
                put(
                    &mut l,
                    "droppedAttributesCount",
                    json!(link.dropped_attributes_count),
                );
                put(&mut l, "flags", json!(link.flags));
                Value::Object(l)
            })
            .collect();
        put(&mut object, "links", Value::Array(links));
        put(
            &mut object,
            "droppedLinksCount",
            json!(span.dropped_links_count),
        );
        if let Some(status) = &span.status {
            let mut s = Map::new();
            put(&mut s, "message", json!(status.message));
            if status.code != 0 {
                put(&mut s, "code", json!(status_name(status.code)));
            }
            object.insert("status".into(), Value::Object(s));
        }
        Value::Object(object)
    }

    /// One `ResourceSpans` as Tempo's JSON.
    pub fn resource_spans(resource_spans: &ResourceSpans) -> Value {
        let mut object = Map::new();
        if let Some(resource) = &resource_spans.resource {
            let mut r = Map::new();
            put(&mut r, "attributes", key_values(&resource.attributes));
            put(
                &mut r,
                "droppedAttributesCount",
                json!(resource.dropped_attributes_count),
            );
            object.insert("resource".into(), Value::Object(r));
        }
        let scopes: Vec<Value> = resource_spans
            .scope_spans
            .iter()
            .map(|scope_spans| {
                let mut ss = Map::new();
                if let Some(scope) = &scope_spans.scope {
                    let mut s = Map::new();
                    put(&mut s, "name", json!(scope.name));
                    put(&mut s, "version", json!(scope.version));
                    put(&mut s, "attributes", key_values(&scope.attributes));
                    put(
                        &mut s,
                        "droppedAttributesCount",
                        json!(scope.dropped_attributes_count),
                    );
                    ss.insert("scope".into(), Value::Object(s));
                }
                put(
                    &mut ss,
                    "spans",
                    scope_spans.spans.iter().map(span_json).collect(),
                );
                put(&mut ss, "schemaUrl", json!(scope_spans.schema_url));
                Value::Object(ss)
            })
            .collect();
        put(&mut object, "scopeSpans", Value::Array(scopes));
        put(&mut object, "schemaUrl", json!(resource_spans.schema_url));
        Value::Object(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_come_back_with_their_otlp_types() {
        use any_value::Value;
        assert_eq!(
            any_value(Some("-42"), Some("int")).value,
            Some(Value::IntValue(-42))
        );
        assert_eq!(
            any_value(Some("0.5"), Some("double")).value,
            Some(Value::DoubleValue(0.5))
        );
        assert_eq!(
            any_value(Some("true"), Some("bool")).value,
            Some(Value::BoolValue(true))
        );
        assert_eq!(
            any_value(Some("AQI="), Some("bytes")).value,
            Some(Value::BytesValue(vec![1, 2]))
        );
        assert_eq!(
            any_value(
                Some(r#"[{"stringValue":"a"},{"intValue":"1"}]"#),
                Some("array")
            )
            .value,
            Some(Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(Value::StringValue("a".into()))
                    },
                    AnyValue {
                        value: Some(Value::IntValue(1))
                    },
                ]
            }))
        );
        assert_eq!(
            any_value(
                Some(r#"[{"key":"k","value":{"boolValue":true}}]"#),
                Some("kvlist")
            )
            .value,
            Some(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(AnyValue {
                        value: Some(Value::BoolValue(true)),
                    }),
                    ..Default::default()
                }]
            }))
        );
        assert_eq!(
            any_value(Some("x"), None).value,
            Some(Value::StringValue("x".into()))
        );
        // A value that does not parse as its type stays text rather than vanishing.
        assert_eq!(
            any_value(Some("zz"), Some("int")).value,
            Some(Value::StringValue("zz".into()))
        );
        assert!(any_value(Some("NaN"), Some("double")).value.is_some());
    }
}
