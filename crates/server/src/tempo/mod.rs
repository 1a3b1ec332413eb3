//! Tempo's query API at Tempo's own paths, for Grafana's Tempo data source:
//!
//! - `GET /api/echo` (`echo`), `GET /ready`, `GET /api/status/buildinfo`;
//! - `GET /api/traces/{id}` (Tempo's `Trace`: `{"batches": [ResourceSpans…]}`)
//!   and `GET /api/v2/traces/{id}` (`TraceByIDResponse`: `{"trace":
//!   {"resourceSpans": […]}}`), in Tempo's JSON (gogo `jsonpb`: ids in base64,
//!   enums by name, see [`otlp::jsonpb`]), or protobuf with `Accept:
//!   application/protobuf`; `start`/`end` (unix seconds) bound the spans when
//!   given; 404 when no span of the trace is visible;
//! - `GET /api/search` with `q` (TraceQL, see `lighttrace_query::traceql`),
//!   `limit` (20), `spss` (3), `start`/`end` (unix seconds, default the last
//!   hour), or the legacy `tags` (logfmt), `minDuration`, `maxDuration`;
//! - `GET /api/search/tags`, `GET /api/v2/search/tags` (`scope`),
//!   `GET /api/search/tag/{tag}/values`, `GET /api/v2/search/tag/{tag}/values`
//!   (typed values; `q` narrows them to the spans a one-spanset query matches).
//!
//! Every endpoint reads with the caller's project scope, like the SQL API.

pub(crate) mod metrics;
pub(crate) mod otlp;

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use datafusion::common::{ParamValues, ScalarValue};
use lighttrace_query::search::{SearchRequest, search};
use lighttrace_query::trace::parse_trace_id;
use lighttrace_query::traceql::{
    self, Attribute, Combination, Condition, Op, Query, Static, parse_duration,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, TracesData};
use prost::Message;
use serde_json::{Value, json};

use crate::Shared;
use crate::error::ApiError;
use crate::sql::query_permit;

/// The Tempo API version whose behaviour these endpoints follow (Grafana
/// enables features by it).
pub const TEMPO_API_VERSION: &str = "2.8.0";

const PROTOBUF: &str = "application/protobuf";
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 10_000;
const DEFAULT_SPSS: usize = 3;
const MAX_TAG_RESULTS: usize = 1_000;

/// `GET /api/echo`.
pub(crate) async fn echo() -> &'static str {
    "echo"
}

/// `GET /api/status/buildinfo`.
pub(crate) async fn buildinfo() -> Json<Value> {
    Json(json!({
        "version": TEMPO_API_VERSION,
        "revision": format!("lighttrace-{}", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

fn query_pairs(query: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A unix time in seconds (decimals allowed) as nanoseconds.
fn unix_seconds(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = param(pairs, name) else {
        return Ok(None);
    };
    let seconds: f64 = text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{name} must be a unix time in seconds, not {text:?}"
        ))
    })?;
    if !(0.0..=1e11).contains(&seconds) {
        return Err(ApiError::bad_request(format!(
            "{name} is out of range: {text}"
        )));
    }
    Ok(Some((seconds * 1e9).round() as i64))
}

fn count(pairs: &[(String, String)], name: &str, default: usize) -> Result<usize, ApiError> {
    match param(pairs, name) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(MAX_LIMIT)),
            _ => Err(ApiError::bad_request(format!(
                "{name} must be a positive integer, not {text:?}"
            ))),
        },
    }
}

fn time_range(pairs: &[(String, String)], default_seconds: i64) -> Result<(i64, i64), ApiError> {
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let end = unix_seconds(pairs, "end")?.unwrap_or(now);
    let start = unix_seconds(pairs, "start")?.unwrap_or(end - default_seconds * 1_000_000_000);
    if start > end {
        return Err(ApiError::bad_request("start must not be after end"));
    }
    // `end` is whole seconds: include spans that start within that second.
    Ok((start, end.saturating_add(1_000_000_000)))
}

fn timestamp(ns: i64) -> ScalarValue {
    ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into()))
}

/// `GET /api/traces/{id}`: Tempo's `Trace`.
pub(crate) async fn trace_v1(
    shared: State<Shared>,
    id: Path<String>,
    query: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    trace_by_id(shared, id, query, headers, false).await
}

/// `GET /api/v2/traces/{id}`: Tempo's `TraceByIDResponse`.
pub(crate) async fn trace_v2(
    shared: State<Shared>,
    id: Path<String>,
    query: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    trace_by_id(shared, id, query, headers, true).await
}

async fn trace_by_id(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    v2: bool,
) -> Result<Response, ApiError> {
    let scope = shared.state.config.projects.caller(&headers)?.scope();
    let trace_id = parse_trace_id(&id).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let pairs = query_pairs(query);
    let start = unix_seconds(&pairs, "start")?;
    let end = unix_seconds(&pairs, "end")?;
    let mut sql = format!(
        "SELECT * FROM spans WHERE trace_id = '{}'",
        trace_id.to_hex()
    );
    let mut values = Vec::new();
    if let Some(start) = start {
        sql.push_str(" AND start_time >= $start");
        values.push(("start".to_owned(), timestamp(start)));
    }
    if let Some(end) = end {
        // Whole seconds: the end second is included.
        sql.push_str(" AND start_time < $end");
        values.push((
            "end".to_owned(),
            timestamp(end.saturating_add(1_000_000_000)),
        ));
    }
    sql.push_str(" ORDER BY start_time, span_id");
    let _permit = query_permit(&shared)?;
    let output = shared
        .state
        .query
        .sql_with_params(
            &sql,
            (!values.is_empty()).then(|| {
                ParamValues::from(
                    values
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
            }),
            &scope,
        )
        .await?;
    if output.num_rows() == 0 {
        return Err(ApiError::not_found(format!(
            "trace {} not found",
            trace_id.to_hex()
        )));
    }
    let protobuf = accepts(&headers, PROTOBUF);
    let body = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, &'static str), String> {
        let resource_spans = otlp::resource_spans(&output.batches).map_err(|e| e.to_string())?;
        Ok(if protobuf {
            (encode_trace_protobuf(resource_spans, v2), PROTOBUF)
        } else {
            (
                encode_trace_json(&resource_spans, v2).map_err(|e| e.to_string())?,
                "application/json",
            )
        })
    })
    .await
    .map_err(|err| ApiError::internal("trace encoding task failed", err))?
    .map_err(|err| ApiError::internal("could not encode the trace", err))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(body.1))],
        body.0,
    )
        .into_response())
}

/// Tempo's `TraceByIDResponse { Trace trace = 1; … }`; its `Trace` is
/// `repeated ResourceSpans = 1`, wire-identical to OTLP's `TracesData`.
#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
}

fn encode_trace_protobuf(resource_spans: Vec<ResourceSpans>, v2: bool) -> Vec<u8> {
    let trace = TracesData { resource_spans };
    if v2 {
        TraceByIdResponse { trace: Some(trace) }.encode_to_vec()
    } else {
        trace.encode_to_vec()
    }
}

/// Tempo's JSON of the trace (see [`otlp::jsonpb`]): v1 is its `Trace` with
/// the field named `batches` (`MarshalToJSONV1`), v2 the whole
/// `TraceByIDResponse`.
fn encode_trace_json(
    resource_spans: &[ResourceSpans],
    v2: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    let batches: Vec<Value> = resource_spans
        .iter()
        .map(otlp::jsonpb::resource_spans)
        .collect();
    if v2 {
        serde_json::to_vec(&json!({ "trace": { "resourceSpans": batches } }))
    } else {
        serde_json::to_vec(&json!({ "batches": batches }))
    }
}

fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(media)
        })
}

/// `GET /api/search`.
pub(crate) async fn search_traces(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let scope = shared.state.config.projects.caller(&headers)?.scope();
    let pairs = query_pairs(query);
    let limit = count(&pairs, "limit", DEFAULT_LIMIT)?;
    let spss = count(&pairs, "spss", DEFAULT_SPSS)?;
    let (start_ns, end_ns) = time_range(&pairs, 3600)?;
    let query = match param(&pairs, "q") {
        Some(text) => traceql::parse(text)
            .map_err(|err| ApiError::bad_request(format!("invalid TraceQL query: {err}")))?,
        None => legacy_query(&pairs)?,
    };
    let request = SearchRequest {
        query,
        start_ns,
        end_ns,
        limit,
        spans_per_spanset: spss,
    };
    let _permit = query_permit(&shared)?;
    let hits = search(&shared.state.query, &scope, &request).await?;
    let traces: Vec<Value> = hits
        .iter()
        .map(|hit| {
            let spans: Vec<Value> = hit
                .spans
                .iter()
                .map(|span| {
                    let attributes: Vec<Value> = span
                        .attributes
                        .iter()
                        .map(|(key, value)| {
                            // Typed as Tempo's `Static.AsAnyValue` types them
                            // (an int as `intValue`, a string in JSON).
                            let value = otlp::any_value(Some(&value.text), value.kind.as_deref());
                            json!({"key": key, "value": otlp::jsonpb::any_value(&value)})
                        })
                        .collect();
                    let mut object = json!({
                        "spanID": span.span_id,
                        "name": span.name,
                        "startTimeUnixNano": span.start_time_unix_nano.to_string(),
                        "durationNanos": span.duration_ns.to_string(),
                    });
                    if !attributes.is_empty() {
                        object["attributes"] = Value::Array(attributes);
                    }
                    object
                })
                .collect();
            let spanset = json!({ "spans": spans, "matched": hit.matched });
            let stats: serde_json::Map<String, Value> = hit
                .service_stats
                .iter()
                .map(|(service, (spans, errors))| {
                    let mut stats = json!({ "spanCount": spans });
                    if *errors > 0 {
                        stats["errorCount"] = json!(errors);
                    }
                    (service.clone(), stats)
                })
                .collect();
            let mut trace = json!({
                // Tempo drops leading zeros from ids in search results.
                "traceID": tempo_trace_id(&hit.trace_id),
                "rootServiceName": hit.root_service_name,
                "rootTraceName": hit.root_trace_name,
                "startTimeUnixNano": hit.start_time_unix_nano.to_string(),
                "spanSet": spanset,
                "spanSets": [spanset],
                "serviceStats": stats,
            });
            // A uint32 in Tempo's proto: jsonpb leaves it out at 0 (< 1 ms).
            let duration_ms = hit.duration_ns / 1_000_000;
            if duration_ms > 0 {
                trace["durationMs"] = json!(duration_ms);
            }
            trace
        })
        .collect();
    Ok(Json(json!({
        "traces": traces,
        "metrics": { "completedJobs": 1, "totalJobs": 1 },
    })))
}

fn tempo_trace_id(hex: &str) -> String {
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// The legacy search parameters (`tags` in logfmt, `minDuration`,
/// `maxDuration`) as one spanset: each tag matches a span or resource
/// attribute (`service.name`, `name` and `status.code` their intrinsics), the
/// durations the trace's.
fn legacy_query(pairs: &[(String, String)]) -> Result<Query, ApiError> {
    let mut conditions = Vec::new();
    if let Some(tags) = param(pairs, "tags") {
        for (key, value) in logfmt(tags).map_err(ApiError::bad_request)? {
            let condition = match key.as_str() {
                "name" => Condition::Compare(Attribute::Name, Op::Eq, Static::String(value)),
                "status.code" | "status" => {
                    let status = match value.to_ascii_lowercase().as_str() {
                        "error" | "2" => "error",
                        "ok" | "1" => "ok",
                        "unset" | "0" => "unset",
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "invalid tags: status {value:?} is not error, ok or unset"
                            )));
                        }
                    };
                    Condition::Compare(Attribute::Status, Op::Eq, Static::Status(status))
                }
                "error" if value == "true" => {
                    Condition::Compare(Attribute::Status, Op::Eq, Static::Status("error"))
                }
                _ => Condition::Compare(Attribute::Any(key), Op::Eq, Static::String(value)),
            };
            conditions.push(condition);
        }
    }
    for (name, op) in [("minDuration", Op::Ge), ("maxDuration", Op::Le)] {
        if let Some(text) = param(pairs, name) {
            let ns = parse_duration(text).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid {name}: {text:?} is not a duration like 100ms"
                ))
            })?;
            conditions.push(Condition::Compare(
                Attribute::TraceDuration,
                op,
                Static::Duration(ns),
            ));
        }
    }
    let condition = conditions
        .into_iter()
        .reduce(|a, b| Condition::And(Box::new(a), Box::new(b)));
    Ok(Query {
        spansets: vec![condition],
        combination: Combination::Spanset(0),
    })
}

/// `k=v k2="v 2"` pairs.
fn logfmt(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!(
                "invalid tags: {key:?} has no value (write key=value)"
            ));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("invalid tags: the value of {key:?} is not closed"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(format!("invalid tags: tag {key} has been set twice"));
        }
        pairs.push((key, value));
    }
}

/// The intrinsics TraceQL queries here can use, as Tempo lists them.
const INTRINSICS: [&str; 8] = [
    "duration",
    "kind",
    "name",
    "status",
    "statusMessage",
    "trace:duration",
    "trace:rootName",
    "trace:rootService",
];

async fn attribute_keys(
    shared: &Shared,
    scope: &lighttrace_query::ProjectScope,
    column: &str,
    range: (i64, i64),
) -> Result<BTreeSet<String>, ApiError> {
    let sql = format!(
        "SELECT DISTINCT k FROM (SELECT unnest(map_keys({column})) AS k FROM spans \
         WHERE start_time >= $from AND start_time < $to) ORDER BY k LIMIT {MAX_TAG_RESULTS}"
    );
    let output = shared
        .state
        .query
        .sql_with_params(&sql, Some(range_params(range)), scope)
        .await?;
    Ok(strings(&output.batches, 0).into_iter().collect())
}

fn range_params(range: (i64, i64)) -> ParamValues {
    ParamValues::from(
        [
            ("from".to_owned(), timestamp(range.0)),
            ("to".to_owned(), timestamp(range.1)),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>(),
    )
}

fn strings(batches: &[arrow::array::RecordBatch], column: usize) -> Vec<String> {
    use arrow::array::{Array, AsArray};
    let mut values = Vec::new();
    for batch in batches {
        if let Some(array) = batch.column(column).as_string_opt::<i32>() {
            values.extend(
                (0..array.len())
                    .filter(|&i| array.is_valid(i))
                    .map(|i| array.value(i).to_owned()),
            );
        }
    }
    values
}

/// `GET /api/search/tags`: `{"tagNames": […]}`, span and resource attribute names.
pub(crate) async fn tags_v1(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller_scope = shared.state.config.projects.caller(&headers)?.scope();
    let pairs = query_pairs(query);
    let range = time_range(&pairs, 24 * 3600)?;
    let _permit = query_permit(&shared)?;
    let scope = param(&pairs, "scope").unwrap_or("all");
    let mut names = BTreeSet::new();
    if matches!(scope, "all" | "span") {
        names.extend(attribute_keys(&shared, &caller_scope, "attributes", range).await?);
    }
    if matches!(scope, "all" | "resource") {
        names.extend(attribute_keys(&shared, &caller_scope, "resource_attributes", range).await?);
        names.insert("service.name".to_owned());
    }
    Ok(Json(json!({ "tagNames": names })))
}

/// `GET /api/v2/search/tags`: names per scope (`resource`, `span`, `intrinsic`).
pub(crate) async fn tags_v2(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller_scope = shared.state.config.projects.caller(&headers)?.scope();
    let pairs = query_pairs(query);
    let range = time_range(&pairs, 24 * 3600)?;
    let wanted = param(&pairs, "scope").unwrap_or("all");
    if !matches!(wanted, "all" | "span" | "resource" | "intrinsic") {
        return Err(ApiError::bad_request(format!(
            "scope must be span, resource, intrinsic or all, not {wanted:?}"
        )));
    }
    let _permit = query_permit(&shared)?;
    let mut scopes = Vec::new();
    if matches!(wanted, "all" | "resource") {
        let mut names =
            attribute_keys(&shared, &caller_scope, "resource_attributes", range).await?;
        names.insert("service.name".to_owned());
        scopes.push(json!({ "name": "resource", "tags": names }));
    }
    if matches!(wanted, "all" | "span") {
        let names = attribute_keys(&shared, &caller_scope, "attributes", range).await?;
        scopes.push(json!({ "name": "span", "tags": names }));
    }
    if matches!(wanted, "all" | "intrinsic") {
        scopes.push(json!({ "name": "intrinsic", "tags": INTRINSICS }));
    }
    Ok(Json(json!({ "scopes": scopes })))
}

/// `GET /api/search/tag/{tag}/values`: `{"tagValues": ["…"]}`.
pub(crate) async fn tag_values_v1(
    State(shared): State<Shared>,
    Path(tag): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let scope = shared.state.config.projects.caller(&headers)?.scope();
    let pairs = query_pairs(query);
    let range = time_range(&pairs, 24 * 3600)?;
    let attribute = match tag.as_str() {
        "name" => Attribute::Name,
        "status.code" => Attribute::Status,
        _ => Attribute::Any(tag.clone()),
    };
    let _permit = query_permit(&shared)?;
    let values = tag_values(&shared, &scope, &attribute, None, range).await?;
    let values: Vec<String> = values.into_iter().map(|(value, _)| value).collect();
    Ok(Json(json!({ "tagValues": values })))
}

/// `GET /api/v2/search/tag/{tag}/values`: `{"tagValues": [{"type", "value"}]}`.
pub(crate) async fn tag_values_v2(
    State(shared): State<Shared>,
    Path(tag): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let scope = shared.state.config.projects.caller(&headers)?.scope();
    let pairs = query_pairs(query);
    let range = time_range(&pairs, 24 * 3600)?;
    // The tag as TraceQL spells it: `resource.service.name`, `span.x`, `.x`, `name`…
    let attribute = match traceql::parse(&format!("{{ {tag} = \"\" }}")) {
        Ok(Query { spansets, .. }) => match spansets.into_iter().next().flatten() {
            Some(Condition::Compare(attribute, _, _)) => attribute,
            _ => return Err(ApiError::bad_request(format!("unknown tag {tag:?}"))),
        },
        Err(_) => match traceql::parse(&format!("{{ {tag} = error }}")) {
            Ok(_) => Attribute::Status,
            Err(_) => match traceql::parse(&format!("{{ {tag} = server }}")) {
                Ok(_) => Attribute::Kind,
                Err(err) => {
                    return Err(ApiError::bad_request(format!("unknown tag {tag:?}: {err}")));
                }
            },
        },
    };
    if matches!(
        attribute,
        Attribute::Duration | Attribute::TraceDuration | Attribute::NestedSetParent
    ) {
        return Err(ApiError::bad_request(format!(
            "{tag} has no list of values"
        )));
    }
    // `q` narrows the values to the spans a one-spanset query matches.
    let filter = match param(&pairs, "q") {
        Some(text) => match traceql::parse(text) {
            Ok(query) if query.spansets.len() == 1 => Some(query),
            Ok(_) => None,
            Err(err) => {
                return Err(ApiError::bad_request(format!(
                    "invalid TraceQL query: {err}"
                )));
            }
        },
        None => None,
    };
    let _permit = query_permit(&shared)?;
    let values = tag_values(&shared, &scope, &attribute, filter.as_ref(), range).await?;
    let values: Vec<Value> = values
        .into_iter()
        .map(|(value, kind)| json!({ "type": kind, "value": value }))
        .collect();
    Ok(Json(json!({ "tagValues": values })))
}

/// Distinct values of `attribute` with their TraceQL type names.
async fn tag_values(
    shared: &Shared,
    scope: &lighttrace_query::ProjectScope,
    attribute: &Attribute,
    filter: Option<&Query>,
    range: (i64, i64),
) -> Result<Vec<(String, String)>, ApiError> {
    let type_of = |map: &str, key: &str| {
        format!(
            "CASE s.{map}[{key}] WHEN 'int' THEN 'int' WHEN 'double' THEN 'float' \
             WHEN 'bool' THEN 'bool' ELSE 'string' END",
            key = traceql::sql_string(key)
        )
    };
    let (value_sql, type_sql) = match attribute {
        Attribute::Name => ("s.name".to_owned(), "'string'".to_owned()),
        Attribute::Status => ("s.status_code".to_owned(), "'keyword'".to_owned()),
        Attribute::Kind => ("s.kind".to_owned(), "'keyword'".to_owned()),
        Attribute::StatusMessage => ("s.status_message".to_owned(), "'string'".to_owned()),
        Attribute::RootService | Attribute::RootName => {
            let column = if *attribute == Attribute::RootService {
                "s.service_name"
            } else {
                "s.name"
            };
            (
                format!("CASE WHEN s.parent_span_id IS NULL THEN {column} END"),
                "'string'".to_owned(),
            )
        }
        Attribute::Resource(key) | Attribute::Any(key) if key == "service.name" => {
            ("s.service_name".to_owned(), "'string'".to_owned())
        }
        Attribute::Span(key) => (
            traceql::attribute_sql(attribute),
            type_of("attribute_types", key),
        ),
        Attribute::Resource(key) => (
            traceql::attribute_sql(attribute),
            type_of("resource_attribute_types", key),
        ),
        Attribute::Any(key) => (
            traceql::attribute_sql(attribute),
            format!(
                "CASE WHEN s.attributes[{k}] IS NOT NULL THEN {span} ELSE {resource} END",
                k = traceql::sql_string(key),
                span = type_of("attribute_types", key),
                resource = type_of("resource_attribute_types", key),
            ),
        ),
        Attribute::Duration | Attribute::TraceDuration | Attribute::NestedSetParent => {
            unreachable!("refused above")
        }
    };
    let mut params: std::collections::HashMap<String, ScalarValue> = [
        ("from".to_owned(), timestamp(range.0)),
        ("to".to_owned(), timestamp(range.1)),
    ]
    .into_iter()
    .collect();
    let mut condition = "TRUE".to_owned();
    if let Some(query) = filter {
        let plan = traceql::plan(query);
        if !plan.needs_trace {
            condition = plan.spanset_sql[0].clone();
            params.extend(plan.params);
        }
    }
    let sql = format!(
        "SELECT v, max(t) FROM (SELECT {value_sql} AS v, {type_sql} AS t FROM spans s \
         WHERE s.start_time >= $from AND s.start_time < $to AND {condition}) \
         WHERE v IS NOT NULL GROUP BY v ORDER BY v LIMIT {MAX_TAG_RESULTS}"
    );
    let output = shared
        .state
        .query
        .sql_with_params(&sql, Some(ParamValues::from(params)), scope)
        .await?;
    let values = strings(&output.batches, 0);
    let kinds = strings(&output.batches, 1);
    let mut seen = BTreeMap::new();
    for (value, kind) in values.into_iter().zip(kinds) {
        seen.entry(value).or_insert(kind);
    }
    Ok(seen.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_pairs() {
        assert_eq!(
            logfmt(r#"service.name=cart  http.route="/a b" x=1"#).unwrap(),
            vec![
                ("service.name".to_owned(), "cart".to_owned()),
                ("http.route".to_owned(), "/a b".to_owned()),
                ("x".to_owned(), "1".to_owned()),
            ]
        );
        assert!(logfmt("a").unwrap_err().contains("no value"));
        assert!(logfmt("a=1 a=2").unwrap_err().contains("set twice"));
        assert!(logfmt("a=\"x").unwrap_err().contains("not closed"));
    }

    #[test]
    fn search_ids_drop_leading_zeros_like_tempo() {
        assert_eq!(tempo_trace_id("00000000000000000000000000000abc"), "abc");
        assert_eq!(
            tempo_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
