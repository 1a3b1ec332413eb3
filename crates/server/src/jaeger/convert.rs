//! `spans` rows → Jaeger's JSON trace (`model/json/model.go`, filled the way
//! Jaeger fills it for spans received over OTLP: the OpenTelemetry
//! Collector's `pkg/translator/jaeger` and Jaeger's `model/converter/json`).
//!
//! | `spans` | Jaeger |
//! |---|---|
//! | `trace_id`, `span_id` | `traceID` (16 hex digits when the high half is zero, as Jaeger prints it), `spanID` |
//! | `parent_span_id` | the first reference, `CHILD_OF` |
//! | `links` | further references: `FOLLOWS_FROM`, or `CHILD_OF` when the link's `opentracing.ref_type` is `child_of`; a link to the parent only sets the parent reference's type |
//! | `name` | `operationName` |
//! | `start_time`, `duration_ns` | `startTime`, `duration` in microseconds |
//! | `scope_name`, `scope_version` | tags `otel.scope.name`, `otel.scope.version` (first) |
//! | `attributes` (+ `attribute_types`) | tags, by key: `int` → `int64` (a string beyond ±2^53, as Jaeger does), `double` → `float64`, `bool`, `bytes` → `binary` (base64), arrays and kvlists → `string` holding their JSON |
//! | `kind` | tag `span.kind` (none for `unspecified`) |
//! | `status_code` | tag `otel.status_code` `OK` / `ERROR` (none for `unset`); `error` = `true` (bool) for `ERROR` |
//! | `status_message` | tag `otel.status_description` |
//! | `trace_state` | tag `w3c.tracestate` |
//! | `events` | `logs`: `timestamp` in µs; fields `event` = the name (unless an attribute is called `event`), then the attributes |
//! | `service_name`, `resource_attributes` | `processes` (`p1`, `p2`, … by first use), one per distinct service and resource; tags: the resource attributes but `service.name` |
//!
//! `warnings` are `null` (Jaeger's query service has nothing to say either:
//! LightTrace does not shift spans for clock skew here; `/api/v1/traces/{id}`
//! does that analysis). `flags` is absent: Jaeger omits it when 0, and the
//! OTLP translator leaves it 0.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Number, Value};

/// One `spans` row as the Jaeger queries select it (see `store::SPAN_COLUMNS`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SpanRow {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub trace_state: Option<String>,
    pub service_name: String,
    pub name: String,
    pub kind: String,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub status_code: String,
    pub status_message: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attribute_types: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource_attributes: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource_attribute_types: BTreeMap<String, Option<String>>,
    pub scope_name: Option<String>,
    pub scope_version: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: Vec<Option<EventRow>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Vec<Option<LinkRow>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EventRow {
    /// RFC 3339, as the query encoder writes timestamps.
    pub time: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attribute_types: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LinkRow {
    pub trace_id: String,
    pub span_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: BTreeMap<String, Option<String>>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Jaeger's `Trace`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Trace {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    pub spans: Vec<Span>,
    pub processes: BTreeMap<String, Process>,
    pub warnings: Option<Vec<String>>,
}

/// Jaeger's `Span`, as its UI model (`processID` instead of an embedded process).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Span {
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
    #[serde(rename = "operationName")]
    pub operation_name: String,
    pub references: Vec<Reference>,
    #[serde(rename = "startTime")]
    pub start_time: i64,
    pub duration: i64,
    pub tags: Vec<KeyValue>,
    pub logs: Vec<Log>,
    #[serde(rename = "processID")]
    pub process_id: String,
    pub warnings: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Reference {
    #[serde(rename = "refType")]
    pub ref_type: &'static str,
    #[serde(rename = "traceID")]
    pub trace_id: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Process {
    #[serde(rename = "serviceName")]
    pub service_name: String,
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Log {
    pub timestamp: i64,
    pub fields: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct KeyValue {
    pub key: String,
    #[serde(rename = "type")]
    pub value_type: &'static str,
    pub value: Value,
}

impl KeyValue {
    fn string(key: &str, value: &str) -> Self {
        KeyValue {
            key: key.to_owned(),
            value_type: "string",
            value: Value::String(value.to_owned()),
        }
    }
}

const CHILD_OF: &str = "CHILD_OF";
const FOLLOWS_FROM: &str = "FOLLOWS_FROM";
/// JavaScript's `Number.MAX_SAFE_INTEGER`: Jaeger sends larger `int64` tags as strings.
const JS_MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// One trace from its rows (at least one, all of the same trace). Spans are
/// in start order; processes are numbered by first use in that order.
pub(crate) fn trace(mut rows: Vec<SpanRow>) -> Trace {
    rows.sort_by(|a, b| {
        (a.start_ns, &a.span_id, &a.service_name).cmp(&(b.start_ns, &b.span_id, &b.service_name))
    });
    let trace_id = rows
        .first()
        .map(|row| jaeger_trace_id(&row.trace_id))
        .unwrap_or_default();
    let mut processes = BTreeMap::new();
    let mut process_ids: HashMap<(String, String), String> = HashMap::new();
    let spans = rows
        .into_iter()
        .map(|row| {
            let process = process(&row);
            // Processes are equal when their service and tags are.
            let identity = (
                process.service_name.clone(),
                serde_json::to_string(&process.tags).unwrap_or_default(),
            );
            let next = process_ids.len() + 1;
            let process_id = process_ids
                .entry(identity)
                .or_insert_with(|| {
                    let id = format!("p{next}");
                    processes.insert(id.clone(), process);
                    id
                })
                .clone();
            span(row, process_id)
        })
        .collect();
    Trace {
        trace_id,
        spans,
        processes,
        warnings: None,
    }
}

fn span(row: SpanRow, process_id: String) -> Span {
    let trace_id = jaeger_trace_id(&row.trace_id);
    Span {
        references: references(&row, &trace_id),
        span_id: row.span_id.clone(),
        operation_name: row.name.clone(),
        start_time: row.start_ns.div_euclid(1_000),
        duration: row.duration_ns.max(0) / 1_000,
        tags: span_tags(&row),
        logs: row.events.iter().flatten().map(log).collect(),
        process_id,
        warnings: None,
        trace_id,
    }
}

/// Jaeger prints a trace id whose high 64 bits are zero as 16 hex digits.
fn jaeger_trace_id(hex: &str) -> String {
    match hex.strip_prefix("0000000000000000") {
        Some(low) if low.len() == 16 => low.to_owned(),
        _ => hex.to_owned(),
    }
}

fn references(row: &SpanRow, trace_id: &str) -> Vec<Reference> {
    let mut references = Vec::with_capacity(row.links.len() + 1);
    if let Some(parent) = &row.parent_span_id {
        references.push(Reference {
            ref_type: CHILD_OF,
            trace_id: trace_id.to_owned(),
            span_id: parent.clone(),
        });
    }
    for link in row.links.iter().flatten() {
        let ref_type = match link
            .attributes
            .get("opentracing.ref_type")
            .and_then(Option::as_deref)
        {
            Some("child_of") => CHILD_OF,
            _ => FOLLOWS_FROM,
        };
        let link_trace_id = jaeger_trace_id(&link.trace_id);
        if row.parent_span_id.as_deref() == Some(link.span_id.as_str()) && link_trace_id == trace_id
        {
            // The parent is referenced already; the link only says how.
            references[0].ref_type = ref_type;
            continue;
        }
        references.push(Reference {
            ref_type,
            trace_id: link_trace_id,
            span_id: link.span_id.clone(),
        });
    }
    references
}

fn span_tags(row: &SpanRow) -> Vec<KeyValue> {
    let mut tags = Vec::with_capacity(row.attributes.len() + 6);
    for (key, value) in [
        ("otel.scope.name", &row.scope_name),
        ("otel.scope.version", &row.scope_version),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            tags.push(KeyValue::string(key, value));
        }
    }
    tags.extend(typed_tags(&row.attributes, &row.attribute_types, None));
    if row.kind != "unspecified" && !row.kind.is_empty() {
        tags.push(KeyValue::string("span.kind", &row.kind));
    }
    match row.status_code.as_str() {
        "ok" => tags.push(KeyValue::string("otel.status_code", "OK")),
        "error" => {
            tags.push(KeyValue::string("otel.status_code", "ERROR"));
            tags.push(KeyValue {
                key: "error".into(),
                value_type: "bool",
                value: Value::Bool(true),
            });
        }
        _ => {}
    }
    if let Some(message) = row.status_message.as_deref().filter(|m| !m.is_empty()) {
        tags.push(KeyValue::string("otel.status_description", message));
    }
    if let Some(state) = row.trace_state.as_deref().filter(|s| !s.is_empty()) {
        tags.push(KeyValue::string("w3c.tracestate", state));
    }
    tags
}

fn process(row: &SpanRow) -> Process {
    Process {
        service_name: row.service_name.clone(),
        tags: typed_tags(
            &row.resource_attributes,
            &row.resource_attribute_types,
            Some("service.name"),
        ),
    }
}

fn log(event: &EventRow) -> Log {
    let timestamp_ns =
        arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(&event.time).unwrap_or(0);
    let mut fields = Vec::with_capacity(event.attributes.len() + 1);
    if !event.name.is_empty() && !event.attributes.contains_key("event") {
        fields.push(KeyValue::string("event", &event.name));
    }
    fields.extend(typed_tags(&event.attributes, &event.attribute_types, None));
    Log {
        timestamp: timestamp_ns.div_euclid(1_000),
        fields,
    }
}

/// Attributes as typed tags, by key, without `skip`.
fn typed_tags(
    values: &BTreeMap<String, Option<String>>,
    types: &BTreeMap<String, Option<String>>,
    skip: Option<&str>,
) -> Vec<KeyValue> {
    values
        .iter()
        .filter(|(key, _)| Some(key.as_str()) != skip)
        .map(|(key, text)| {
            let ty = types.get(key).and_then(Option::as_deref);
            typed_tag(key, text.as_deref().unwrap_or_default(), ty)
        })
        .collect()
}

/// One attribute as Jaeger types it (the collector's `attributeToJaegerProtoTag`
/// and Jaeger's `convertKeyValues`). `ty` is the attribute's entry in
/// `attribute_types` (none for strings).
fn typed_tag(key: &str, text: &str, ty: Option<&str>) -> KeyValue {
    let (value_type, value) = match ty {
        Some("int") => match text.parse::<i64>() {
            Ok(n) if (-JS_MAX_SAFE_INTEGER..=JS_MAX_SAFE_INTEGER).contains(&n) => {
                ("int64", Value::from(n))
            }
            _ => ("int64", Value::String(text.to_owned())),
        },
        Some("double") => (
            "float64",
            text.parse::<f64>()
                .ok()
                .and_then(go_float)
                .map(Value::Number)
                // Go's encoder refuses NaN and infinities; text is all JSON has.
                .unwrap_or_else(|| Value::String(text.to_owned())),
        ),
        Some("bool") => match text {
            "true" => ("bool", Value::Bool(true)),
            "false" => ("bool", Value::Bool(false)),
            _ => ("string", Value::String(text.to_owned())),
        },
        // Stored as standard base64, which is how Go's encoder writes []byte.
        Some("bytes") => ("binary", Value::String(text.to_owned())),
        Some("array") | Some("kvlist") => (
            "string",
            Value::String(
                serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|otlp| otlp_values_as_json(&otlp, ty == Some("kvlist")))
                    .unwrap_or_else(|| text.to_owned()),
            ),
        ),
        _ => ("string", Value::String(text.to_owned())),
    };
    KeyValue {
        key: key.to_owned(),
        value_type,
        value,
    }
}

/// A float as Go's `encoding/json` writes it: integral values without a
/// fraction (`1`, not `1.0`).
fn go_float(value: f64) -> Option<Number> {
    if !value.is_finite() {
        return None;
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return Some(Number::from(value as i64));
    }
    Number::from_f64(value)
}

/// The stored OTLP/JSON values of an array (`[{"intValue":"1"}, …]`) or a
/// kvlist (`[{"key":"k","value":{…}}, …]`) as the collector's `AsString`
/// writes them: plain JSON (`[1, …]`, `{"k": …}`, keys sorted), with Go's
/// HTML-safe escapes.
fn otlp_values_as_json(otlp: &Value, kvlist: bool) -> Option<String> {
    let items = otlp.as_array()?;
    let raw = if kvlist {
        Value::Object(kvlist_raw(items)?)
    } else {
        Value::Array(items.iter().map(any_value_raw).collect::<Option<_>>()?)
    };
    let text = serde_json::to_string(&raw).ok()?;
    Some(go_html_escape(&text))
}

fn kvlist_raw(items: &[Value]) -> Option<Map<String, Value>> {
    let mut sorted = BTreeMap::new();
    for item in items {
        let key = item.get("key")?.as_str()?.to_owned();
        let value = item.get("value").map_or(Some(Value::Null), any_value_raw)?;
        sorted.insert(key, value);
    }
    // Inserted in key order, so the map is sorted whichever map serde_json uses.
    Some(sorted.into_iter().collect())
}

/// An OTLP/JSON `AnyValue` as the plain JSON value it holds.
fn any_value_raw(value: &Value) -> Option<Value> {
    let object = value.as_object()?;
    let Some((kind, inner)) = object.iter().next() else {
        return Some(Value::Null);
    };
    Some(match kind.as_str() {
        "stringValue" | "boolValue" | "bytesValue" => inner.clone(),
        "intValue" => match inner {
            Value::String(text) => text.parse::<i64>().map(Value::from).ok()?,
            other => other.clone(),
        },
        "doubleValue" => match inner {
            Value::Number(n) => n.as_f64().and_then(go_float).map(Value::Number)?,
            // "NaN", "Infinity": Go's encoder would fail; keep the text.
            other => other.clone(),
        },
        "arrayValue" => Value::Array(
            inner
                .get("values")
                .and_then(Value::as_array)
                .map(|values| values.iter().map(any_value_raw).collect::<Option<_>>())
                .unwrap_or(Some(Vec::new()))?,
        ),
        "kvlistValue" => Value::Object(
            inner
                .get("values")
                .and_then(Value::as_array)
                .map(|values| kvlist_raw(values))
                .unwrap_or(Some(Map::new()))?,
        ),
        _ => return None,
    })
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 in strings;
/// they cannot occur outside strings in JSON text.
fn go_html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tag(key: &str, text: &str, ty: Option<&str>) -> Value {
        serde_json::to_value(typed_tag(key, text, ty)).unwrap()
    }

    #[test]
    fn attribute_types_become_jaeger_value_types() {
        assert_eq!(
            tag("a", "x", None),
            json!({"key": "a", "type": "string", "value": "x"})
        );
        assert_eq!(tag("a", "-42", Some("int"))["value"], json!(-42));
        assert_eq!(tag("a", "-42", Some("int"))["type"], json!("int64"));
        assert_eq!(
            tag("a", "9007199254740993", Some("int"))["value"],
            json!("9007199254740993")
        );
        assert_eq!(
            tag("a", "0.25", Some("double")),
            json!({"key": "a", "type": "float64", "value": 0.25})
        );
        assert_eq!(tag("a", "2", Some("double"))["value"], json!(2));
        assert_eq!(tag("a", "NaN", Some("double"))["value"], json!("NaN"));
        assert_eq!(
            tag("a", "true", Some("bool")),
            json!({"key": "a", "type": "bool", "value": true})
        );
        assert_eq!(
            tag("a", "AAEC/w==", Some("bytes")),
            json!({"key": "a", "type": "binary", "value": "AAEC/w=="})
        );
        assert_eq!(
            tag(
                "a",
                r#"[{"stringValue":"x<y"},{"intValue":"7"},{"doubleValue":1.5},{"boolValue":false},{"arrayValue":{"values":[{"intValue":"1"}]}}]"#,
                Some("array")
            ),
            json!({"key": "a", "type": "string", "value": r#"["x\u003cy",7,1.5,false,[1]]"#})
        );
        assert_eq!(
            tag(
                "a",
                r#"[{"key":"z","value":{"boolValue":true}},{"key":"b","value":{"kvlistValue":{"values":[{"key":"c","value":{"stringValue":"d"}}]}}}]"#,
                Some("kvlist")
            )["value"],
            json!(r#"{"b":{"c":"d"},"z":true}"#)
        );
        assert_eq!(
            tag("a", "not json", Some("array"))["value"],
            json!("not json")
        );
        assert_eq!(
            tag("a", r#"{"k":1}"#, Some("json"))["value"],
            json!(r#"{"k":1}"#)
        );
    }

    #[test]
    fn trace_ids_drop_a_zero_high_half() {
        assert_eq!(
            jaeger_trace_id("00000000000000000000000000000abc"),
            "0000000000000abc"
        );
        let full = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(jaeger_trace_id(full), full);
    }
}
