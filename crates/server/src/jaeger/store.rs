//! The queries behind Jaeger's API, on the `spans` table through the
//! [`QueryEngine`] with the caller's [`ProjectScope`].
//!
//! Every value from the request is bound as a parameter (`$service`, `$tv0`,
//! …), never pasted into the SQL text; the text only varies in which clauses
//! it has. Every query but a lookup by trace id is bounded by `start_time`, so
//! the lake prunes partitions by hour (and by service where one is given); a
//! lookup by id is pruned by the files' trace-id filters.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use datafusion::common::{ParamValues, ScalarValue};
use lighttrace_query::encode::json_objects;
use lighttrace_query::reports::{find_report, run_report};
use lighttrace_query::{ProjectScope, QueryEngine, QueryError, QueryOutput};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::convert::SpanRow;
use super::params::{DependencyWindow, TraceSearch};

/// How far back `services` and `operations` look: Jaeger's API has no time
/// range for them, and reading every hour ever stored would make their cost
/// grow with the lake (Jaeger's Elasticsearch storage looks back 72 hours).
pub(crate) const METADATA_LOOKBACK_NS: i64 = 7 * 24 * 3_600_000_000_000;

/// The spans of a found trace are read within this margin around the search's
/// time range: a trace's other spans may start before the range (a long
/// request) or after it.
pub(crate) const TRACE_MARGIN_NS: i64 = 3_600_000_000_000;

/// The columns [`SpanRow`] needs.
const SPAN_COLUMNS: &str = "trace_id, span_id, parent_span_id, trace_state, service_name, name, \
     kind, CAST(start_time AS BIGINT) AS start_ns, duration_ns, status_code, status_message, \
     attributes, attribute_types, resource_attributes, resource_attribute_types, \
     scope_name, scope_version, events, links";

fn timestamp(ns: i64) -> ScalarValue {
    ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into()))
}

fn text(value: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(value.to_owned()))
}

/// The rows of `output` as `T`s (through the SQL API's JSON encoding, so
/// maps are objects and times RFC 3339).
fn rows<T: DeserializeOwned>(output: &QueryOutput) -> Result<Vec<T>, QueryError> {
    let bytes = json_objects(&output.batches)
        .map_err(|err| QueryError::Internal(format!("cannot encode rows: {err}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|err| QueryError::Internal(format!("unexpected rows: {err}")))
}

/// Services with spans since `since_ns`, by name.
pub(crate) async fn services(
    engine: &QueryEngine,
    scope: &ProjectScope,
    since_ns: i64,
) -> Result<Vec<String>, QueryError> {
    #[derive(Deserialize)]
    struct Row {
        service_name: String,
    }
    let output = engine
        .sql_with_params(
            "SELECT DISTINCT service_name FROM spans WHERE start_time >= $since \
             ORDER BY service_name",
            Some(ParamValues::from(vec![("since", timestamp(since_ns))])),
            scope,
        )
        .await?;
    Ok(rows::<Row>(&output)?
        .into_iter()
        .map(|row| row.service_name)
        .collect())
}

/// One operation: a span name and the kind of its spans (Jaeger's
/// `spanKind`: `server`, `client`, …, or empty for unspecified).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub(crate) struct Operation {
    pub name: String,
    #[serde(rename = "spanKind")]
    pub span_kind: String,
}

/// The operations of `service` since `since_ns`, by name and kind; only
/// those of spans of kind `kind` when given (a `spans.kind` value).
pub(crate) async fn operations(
    engine: &QueryEngine,
    scope: &ProjectScope,
    service: &str,
    kind: Option<&str>,
    since_ns: i64,
) -> Result<Vec<Operation>, QueryError> {
    #[derive(Deserialize)]
    struct Row {
        name: String,
        kind: String,
    }
    let mut sql = String::from(
        "SELECT name, kind FROM spans WHERE service_name = $service AND start_time >= $since",
    );
    let mut params = vec![("service", text(service)), ("since", timestamp(since_ns))];
    if let Some(kind) = kind {
        sql.push_str(" AND kind = $kind");
        params.push(("kind", text(kind)));
    }
    sql.push_str(" GROUP BY name, kind");
    let output = engine
        .sql_with_params(&sql, Some(ParamValues::from(params)), scope)
        .await?;
    let unique: BTreeSet<Operation> = rows::<Row>(&output)?
        .into_iter()
        .map(|row| Operation {
            name: row.name,
            span_kind: jaeger_span_kind(&row.kind).to_owned(),
        })
        .collect();
    Ok(unique.into_iter().collect())
}

/// `spans.kind` as Jaeger's `span.kind` tag says it (nothing for unspecified).
pub(crate) fn jaeger_span_kind(kind: &str) -> &str {
    match kind {
        "unspecified" => "",
        other => other,
    }
}

/// The ids of the traces with a span that matches `search`, newest first
/// (by their latest matching span), at most `search.limit`.
pub(crate) async fn find_trace_ids(
    engine: &QueryEngine,
    scope: &ProjectScope,
    search: &TraceSearch,
) -> Result<Vec<String>, QueryError> {
    #[derive(Deserialize)]
    struct Row {
        trace_id: String,
    }
    let (sql, params) = search_sql(search);
    let output = engine.sql_with_params(&sql, Some(params), scope).await?;
    Ok(rows::<Row>(&output)?
        .into_iter()
        .map(|row| row.trace_id)
        .collect())
}

/// The statement and parameters of [`find_trace_ids`].
fn search_sql(search: &TraceSearch) -> (String, ParamValues) {
    let mut sql = String::from(
        "SELECT trace_id, max(start_time) AS latest FROM spans \
         WHERE service_name = $service AND start_time >= $start AND start_time <= $end",
    );
    let mut params: HashMap<String, ScalarValue> = HashMap::from([
        ("service".to_owned(), text(&search.service)),
        ("start".to_owned(), timestamp(search.start_ns)),
        ("end".to_owned(), timestamp(search.end_ns)),
        (
            "limit".to_owned(),
            ScalarValue::Int64(Some(search.limit as i64)),
        ),
    ]);
    if let Some(operation) = &search.operation {
        sql.push_str(" AND name = $operation");
        params.insert("operation".into(), text(operation));
    }
    if let Some(min) = search.min_duration_ns {
        sql.push_str(" AND duration_ns >= $min_duration");
        params.insert("min_duration".into(), ScalarValue::Int64(Some(min)));
    }
    if let Some(max) = search.max_duration_ns {
        sql.push_str(" AND duration_ns <= $max_duration");
        params.insert("max_duration".into(), ScalarValue::Int64(Some(max)));
    }
    for (i, (key, value)) in search.tags.iter().enumerate() {
        let (k, v) = (format!("tk{i}"), format!("tv{i}"));
        sql.push_str(" AND (");
        sql.push_str(&tag_condition(key, &k, &v));
        sql.push(')');
        params.insert(k, text(key));
        params.insert(v, text(value));
    }
    sql.push_str(" GROUP BY trace_id ORDER BY latest DESC, trace_id LIMIT $limit");
    (sql, ParamValues::from(params))
}

/// When a span has tag `key` = `$v` (placeholders `$k`, `$v`): an attribute
/// of the span or of its resource (Jaeger's process tags), or one of the tags
/// Jaeger derives from the span's columns (see `convert`). The key only picks
/// which columns to compare; both key and value are bound.
fn tag_condition(key: &str, k: &str, v: &str) -> String {
    let mut condition = format!("attributes[${k}] = ${v} OR resource_attributes[${k}] = ${v}");
    let derived = match key {
        "span.kind" => format!("kind = ${v}"),
        "error" => format!("(status_code = 'error' AND ${v} = 'true')"),
        "otel.status_code" => format!("(status_code <> 'unset' AND upper(status_code) = ${v})"),
        "otel.status_description" => format!("status_message = ${v}"),
        "otel.scope.name" | "otel.library.name" => format!("scope_name = ${v}"),
        "otel.scope.version" | "otel.library.version" => format!("scope_version = ${v}"),
        "w3c.tracestate" => format!("trace_state = ${v}"),
        _ => return condition,
    };
    condition.push_str(" OR ");
    condition.push_str(&derived);
    condition
}

/// Every span of the traces `trace_ids` (32 lowercase hex digits each),
/// grouped by trace; only spans starting within `window` (inclusive
/// nanoseconds) when given.
pub(crate) async fn trace_spans(
    engine: &QueryEngine,
    scope: &ProjectScope,
    trace_ids: &[String],
    window: Option<(i64, i64)>,
) -> Result<BTreeMap<String, Vec<SpanRow>>, QueryError> {
    if trace_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let placeholders: Vec<String> = (0..trace_ids.len()).map(|i| format!("$t{i}")).collect();
    let mut sql = format!(
        "SELECT {SPAN_COLUMNS} FROM spans WHERE trace_id IN ({})",
        placeholders.join(", ")
    );
    let mut params: Vec<(String, ScalarValue)> = trace_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("t{i}"), text(id)))
        .collect();
    if let Some((from, to)) = window {
        sql.push_str(" AND start_time >= $from AND start_time <= $to");
        params.push(("from".into(), timestamp(from)));
        params.push(("to".into(), timestamp(to)));
    }
    let output = engine
        .sql_with_params(&sql, Some(ParamValues::from(params)), scope)
        .await?;
    let mut traces: BTreeMap<String, Vec<SpanRow>> = BTreeMap::new();
    for row in rows::<SpanRow>(&output)? {
        traces.entry(row.trace_id.clone()).or_default().push(row);
    }
    Ok(traces)
}

/// One edge of the service graph: Jaeger's `DependencyLink`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct DependencyLink {
    pub parent: String,
    pub child: String,
    #[serde(rename = "callCount")]
    pub call_count: u64,
}

/// The calls between services in `window`, from the `service-graph` report
/// (client and producer spans with the service of their server or consumer
/// child, or the uninstrumented peer they name); only edges from or to
/// `service` when given, as Jaeger filters them.
pub(crate) async fn dependencies(
    engine: &QueryEngine,
    scope: &ProjectScope,
    window: DependencyWindow,
    service: Option<&str>,
) -> Result<Vec<DependencyLink>, QueryError> {
    #[derive(Deserialize)]
    struct Edge {
        caller: String,
        callee: String,
        requests: u64,
    }
    let report = find_report("service-graph")
        .ok_or_else(|| QueryError::Internal("the service-graph report is missing".into()))?;
    let given = [
        (
            "from".to_owned(),
            rfc3339_ms(window.end_ms - window.lookback_ms),
        ),
        ("to".to_owned(), rfc3339_ms(window.end_ms)),
    ];
    let output = run_report(engine, report, &given, scope).await?;
    // An edge can come twice (a peer named like a service); Jaeger sums them.
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for edge in rows::<Edge>(&output)? {
        if service.is_some_and(|s| edge.caller != s && edge.callee != s) {
            continue;
        }
        *counts.entry((edge.caller, edge.callee)).or_default() += edge.requests;
    }
    Ok(counts
        .into_iter()
        .map(|((parent, child), call_count)| DependencyLink {
            parent,
            child,
            call_count,
        })
        .collect())
}

/// Milliseconds since the epoch as RFC 3339 (`2024-05-01T12:00:00.000Z`).
fn rfc3339_ms(ms: i64) -> String {
    match arrow::temporal_conversions::timestamp_ms_to_datetime(ms) {
        Some(at) => at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        // Out of chrono's range; the report refuses it with a message.
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_sql_binds_every_value() {
        let search = TraceSearch {
            service: "x' OR '1'='1".into(),
            operation: Some("GET /".into()),
            tags: BTreeMap::from([
                ("error".to_owned(), "true".to_owned()),
                ("http.route'--".to_owned(), "/a'".to_owned()),
            ]),
            start_ns: 1,
            end_ns: 2,
            min_duration_ns: Some(3),
            max_duration_ns: Some(4),
            limit: 5,
        };
        let (sql, params) = search_sql(&search);
        for value in ["x'", "GET /", "http.route", "/a'"] {
            assert!(!sql.contains(value), "{value} in {sql}");
        }
        assert!(
            sql.contains("status_code = 'error' AND $tv0 = 'true'"),
            "{sql}"
        );
        let ParamValues::Map(params) = params else {
            panic!("named parameters");
        };
        assert_eq!(params["tk1"].value, text("http.route'--"));
        assert_eq!(params["service"].value, text("x' OR '1'='1"));
        assert_eq!(params.len(), 11);
    }

    /// Three flushed files: frontend at hour 0 and at hour 5, payments at
    /// hour 0 (one trace each). `EXPLAIN` shows what each query reads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searches_are_pruned_by_time_service_and_trace_id() {
        use lighttrace_model::{Source, SpanBatchBuilder, SpanKind, SpanRecord, StatusCode};
        use lighttrace_query::QueryConfig;
        use lighttrace_storage::{Lake, StorageConfig};

        const BASE: i64 = 1_714_564_800_000_000_000;
        const HOUR: i64 = 3_600_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(StorageConfig::new(dir.path())).await.unwrap();
        for (trace, service, start) in [
            (1u8, "frontend", BASE),
            (2, "frontend", BASE + 5 * HOUR),
            (3, "payments", BASE),
        ] {
            let mut builder = SpanBatchBuilder::default();
            builder.append(&SpanRecord {
                project: "default",
                trace_id: [trace; 16],
                span_id: [trace; 8],
                parent_span_id: None,
                trace_state: None,
                service_name: service,
                name: "op",
                kind: SpanKind::Server,
                start_time_ns: start,
                end_time_ns: start + 1_000,
                status_code: StatusCode::Unset,
                status_message: None,
                attributes: &[],
                resource_attributes: &[],
                scope_name: None,
                scope_version: None,
                events: &[],
                links: &[],
                source: Source::Otlp,
            });
            lake.write(builder.finish()).await.unwrap();
        }
        lake.flush_all().await.unwrap();
        let engine = QueryEngine::new(lake.clone(), QueryConfig::default()).unwrap();
        let explain = |sql: String, params: ParamValues| {
            let engine = &engine;
            async move {
                engine
                    .sql_with_params(&format!("EXPLAIN {sql}"), Some(params), &ProjectScope::All)
                    .await
                    .unwrap()
                    .explain_text()
            }
        };

        let search = TraceSearch {
            service: "frontend".into(),
            operation: None,
            tags: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            start_ns: BASE,
            end_ns: BASE + 60_000_000_000,
            min_duration_ns: None,
            max_duration_ns: None,
            limit: 20,
        };
        let (sql, params) = search_sql(&search);
        let plan = explain(sql, params).await;
        assert!(
            plan.contains("files=0/3 (pruned: partition=1, time=1, trace_id=0, attributes=1)"),
            "{plan}"
        );

        let trace = "01".repeat(16);
        let by_id = format!("SELECT {SPAN_COLUMNS} FROM spans WHERE trace_id IN ($t0)");
        let plan = explain(by_id, ParamValues::from(vec![("t0", text(&trace))])).await;
        assert!(
            plan.contains("files=1/3 (pruned: partition=0, time=0, trace_id=2, attributes=0)"),
            "{plan}"
        );
    }

    #[test]
    fn dependency_times_are_rfc3339() {
        assert_eq!(rfc3339_ms(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
    }
}
