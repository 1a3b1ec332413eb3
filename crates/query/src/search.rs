//! Trace search with TraceQL ([`crate::traceql`]), as Tempo's `/api/search`
//! answers it: the newest matching traces with their root, duration, matched
//! spans and per-service counts.
//!
//! Two queries, both planned by DataFusion over `spans`:
//! 1. the matching traces: spans that start in `[start, end)` and satisfy a
//!    spanset's condition, grouped by trace, kept when the spansets combine
//!    (`bool_or` per spanset, then the query's `&&`/`||`), newest first by
//!    the earliest matching span, `LIMIT limit`;
//! 2. every span of those traces (`trace_id IN (…)`, pruned by the catalog's
//!    trace filters, no time bound), with each spanset's condition as a flag
//!    column, for the roots, durations, service counts and matched spans.
//!
//! Conditions on `trace:rootService`, `trace:rootName` and `trace:duration`
//! join a per-trace table (root = the earliest span without a parent, else
//! the earliest span; duration = last end − first start) computed over the
//! same spans.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use datafusion::common::{ParamValues, ScalarValue};

use crate::traceql::{self, Attribute, Plan, Query};
use crate::{ProjectScope, QueryEngine, QueryError};

/// What to search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Query,
    /// Spans starting in `[start_ns, end_ns)`.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Traces to return.
    pub limit: usize,
    /// Matched spans to return per trace.
    pub spans_per_spanset: usize,
}

/// One trace found.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceHit {
    /// 32 hex digits.
    pub trace_id: String,
    pub root_service_name: String,
    pub root_trace_name: String,
    pub start_time_unix_nano: i64,
    pub duration_ns: i64,
    /// Matched spans, earliest first, at most `spans_per_spanset`.
    pub spans: Vec<MatchedSpan>,
    /// How many spans matched in all.
    pub matched: usize,
    /// Per service: (span count, error span count).
    pub service_stats: BTreeMap<String, (usize, usize)>,
}

/// A span that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedSpan {
    pub span_id: String,
    pub name: String,
    pub start_time_unix_nano: i64,
    pub duration_ns: i64,
    /// The attributes the query reads (Tempo's name for each, its value as text).
    pub attributes: Vec<(String, String)>,
}

fn params(plan: &Plan, extra: &[(&str, ScalarValue)]) -> ParamValues {
    let mut values: std::collections::HashMap<String, ScalarValue> =
        plan.params.iter().cloned().collect();
    for (name, value) in extra {
        values.insert((*name).to_owned(), value.clone());
    }
    ParamValues::from(values)
}

/// The per-trace table `t` over the spans that `filter` selects.
fn trace_table(filter: &str) -> String {
    format!(
        "t AS (SELECT trace_id, \
           first_value(service_name ORDER BY parent_span_id IS NOT NULL, start_time) AS root_service, \
           first_value(name ORDER BY parent_span_id IS NOT NULL, start_time) AS root_name, \
           CAST(max(end_time) AS BIGINT) - CAST(min(start_time) AS BIGINT) AS duration_ns \
         FROM spans WHERE {filter} GROUP BY trace_id)"
    )
}

const RANGE: &str = "start_time >= $from AND start_time < $to";

/// Runs `request` for `scope`.
pub async fn search(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &SearchRequest,
) -> Result<Vec<TraceHit>, QueryError> {
    let plan = traceql::plan(&request.query);
    let range = [
        (
            "from",
            ScalarValue::TimestampNanosecond(Some(request.start_ns), Some("UTC".into())),
        ),
        (
            "to",
            ScalarValue::TimestampNanosecond(Some(request.end_ns), Some("UTC".into())),
        ),
    ];
    let ids = matching_traces(engine, scope, request, &plan, &range).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut hits = trace_details(engine, scope, request, &plan, &range, &ids).await?;
    // Newest first, as the trace list was ranked; ids break ties.
    hits.sort_by(|a, b| {
        b.start_time_unix_nano
            .cmp(&a.start_time_unix_nano)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
    Ok(hits)
}

async fn matching_traces(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &SearchRequest,
    plan: &Plan,
    range: &[(&str, ScalarValue)],
) -> Result<Vec<String>, QueryError> {
    let flags: Vec<String> = plan
        .spanset_sql
        .iter()
        .enumerate()
        .map(|(i, sql)| format!("bool_or({sql}) AS m{i}"))
        .collect();
    let any = plan
        .spanset_sql
        .iter()
        .map(|sql| format!("({sql})"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let (with, join) = if plan.needs_trace {
        (
            format!("WITH {} ", trace_table(RANGE)),
            " LEFT JOIN t ON t.trace_id = s.trace_id",
        )
    } else {
        (String::new(), "")
    };
    let sql = format!(
        "{with}SELECT trace_id FROM (\
           SELECT s.trace_id, min(s.start_time) AS first_start, {flags} \
           FROM spans s{join} \
           WHERE s.start_time >= $from AND s.start_time < $to AND ({any}) \
           GROUP BY s.trace_id\
         ) WHERE {trace} ORDER BY first_start DESC, trace_id LIMIT {limit}",
        flags = flags.join(", "),
        trace = plan.trace_sql,
        limit = request.limit.max(1),
    );
    let output = engine
        .sql_with_params(&sql, Some(params(plan, range)), scope)
        .await?;
    let mut ids = Vec::new();
    for batch in &output.batches {
        let column = batch.column(0).as_string::<i32>();
        ids.extend(column.iter().flatten().map(str::to_owned));
    }
    Ok(ids)
}

async fn trace_details(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &SearchRequest,
    plan: &Plan,
    range: &[(&str, ScalarValue)],
    ids: &[String],
) -> Result<Vec<TraceHit>, QueryError> {
    // Ids come from the first query: 32 hex digits each, safe as literals.
    let id_list = ids
        .iter()
        .filter(|id| id.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let in_ids = format!("trace_id IN ({id_list})");
    let flags: Vec<String> = plan
        .spanset_sql
        .iter()
        .enumerate()
        .map(|(i, sql)| {
            format!(
                "coalesce(({sql}) AND s.start_time >= $from AND s.start_time < $to, FALSE) AS m{i}"
            )
        })
        .collect();
    let attributes: Vec<String> = plan
        .attributes
        .iter()
        .enumerate()
        .map(|(i, attribute)| format!("{} AS a{i}", traceql::attribute_sql(attribute)))
        .collect();
    let (with, join) = if plan.needs_trace {
        (
            format!("WITH {} ", trace_table(&in_ids)),
            " LEFT JOIN t ON t.trace_id = s.trace_id",
        )
    } else {
        (String::new(), "")
    };
    let extra: String = flags
        .iter()
        .chain(attributes.iter())
        .map(|c| format!(", {c}"))
        .collect();
    let sql = format!(
        "{with}SELECT s.trace_id, s.span_id, s.parent_span_id, s.service_name, s.name, \
           CAST(s.start_time AS BIGINT) AS start_ns, s.duration_ns, s.status_code{extra} \
         FROM spans s{join} WHERE s.{in_ids}"
    );
    let output = engine
        .sql_with_params(&sql, Some(params(plan, range)), scope)
        .await?;
    let mut traces: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for batch in &output.batches {
        read_rows(batch, plan, &mut traces)?;
    }
    Ok(traces
        .into_iter()
        .map(|(trace_id, rows)| hit(trace_id, rows, plan, request.spans_per_spanset))
        .collect())
}

struct Row {
    span_id: String,
    has_parent: bool,
    service: String,
    name: String,
    start_ns: i64,
    duration_ns: i64,
    error: bool,
    matched: bool,
    attributes: Vec<Option<String>>,
}

fn read_rows(
    batch: &RecordBatch,
    plan: &Plan,
    traces: &mut BTreeMap<String, Vec<Row>>,
) -> Result<(), QueryError> {
    let bad = || QueryError::Internal("unexpected search result columns".into());
    let text = |i: usize| batch.column(i).as_string_opt::<i32>().ok_or_else(bad);
    let (trace, span, parent, service, name) = (text(0)?, text(1)?, text(2)?, text(3)?, text(4)?);
    let start = batch
        .column(5)
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(bad)?;
    let duration = batch
        .column(6)
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(bad)?;
    let status = text(7)?;
    let flag_count = plan.spanset_sql.len();
    let flags: Vec<_> = (0..flag_count)
        .map(|i| batch.column(8 + i).as_boolean_opt().ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    let attributes: Vec<_> = (0..plan.attributes.len())
        .map(|i| text(8 + flag_count + i))
        .collect::<Result<_, _>>()?;
    for row in 0..batch.num_rows() {
        traces
            .entry(trace.value(row).to_owned())
            .or_default()
            .push(Row {
                span_id: span.value(row).to_owned(),
                has_parent: parent.is_valid(row) && !parent.value(row).is_empty(),
                service: service.value(row).to_owned(),
                name: name.value(row).to_owned(),
                start_ns: start.value(row),
                duration_ns: duration.value(row),
                error: status.value(row) == "error",
                matched: flags.iter().any(|f| f.is_valid(row) && f.value(row)),
                attributes: attributes
                    .iter()
                    .map(|a| a.is_valid(row).then(|| a.value(row).to_owned()))
                    .collect(),
            });
    }
    Ok(())
}

fn hit(trace_id: String, mut rows: Vec<Row>, plan: &Plan, spss: usize) -> TraceHit {
    rows.sort_by(|a, b| (a.start_ns, &a.span_id).cmp(&(b.start_ns, &b.span_id)));
    let start = rows.iter().map(|r| r.start_ns).min().unwrap_or_default();
    let end = rows
        .iter()
        .map(|r| r.start_ns.saturating_add(r.duration_ns))
        .max()
        .unwrap_or_default();
    let root = rows.iter().find(|r| !r.has_parent).or_else(|| rows.first());
    let mut service_stats: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for row in &rows {
        let stats = service_stats.entry(row.service.clone()).or_default();
        stats.0 += 1;
        stats.1 += usize::from(row.error);
    }
    let matched: Vec<&Row> = rows.iter().filter(|r| r.matched).collect();
    let keys: Vec<String> = plan
        .attributes
        .iter()
        .map(|a: &Attribute| a.result_key().unwrap_or_default().to_owned())
        .collect();
    TraceHit {
        root_service_name: root.map(|r| r.service.clone()).unwrap_or_default(),
        root_trace_name: root.map(|r| r.name.clone()).unwrap_or_default(),
        start_time_unix_nano: start,
        duration_ns: end - start,
        matched: matched.len(),
        spans: matched
            .iter()
            .take(spss)
            .map(|r| MatchedSpan {
                span_id: r.span_id.clone(),
                name: r.name.clone(),
                start_time_unix_nano: r.start_ns,
                duration_ns: r.duration_ns,
                attributes: keys
                    .iter()
                    .zip(&r.attributes)
                    .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                    .collect(),
            })
            .collect(),
        service_stats,
        trace_id,
    }
}
