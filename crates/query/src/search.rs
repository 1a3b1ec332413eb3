//! Trace search with TraceQL ([`crate::traceql`]), as Tempo's `/api/search`
//! answers it: the newest matching traces with their root, duration, matched
//! spans and per-service counts.
//!
//! The answer: the `limit` traces with a span that starts in `[start, end)`
//! and satisfies a spanset's condition, kept when the spansets combine (the
//! query's `&&`/`||` over "the trace has such a span"), newest first by the
//! earliest such span (ties: the smaller trace id first); for each, every span
//! of the trace (no time bound) gives the root, duration, service counts and
//! matched spans.
//!
//! Searched newest first, like Tempo reads its newest blocks first: the
//! newest matching spans of the last minute (`ORDER BY start_time DESC LIMIT
//! n`: only `trace_id`, `start_time` and the condition's columns are read, and
//! the time bound prunes the lake's files by their start times) name
//! candidate traces; candidates are fetched whole, a few at a time, by
//! `trace_id IN (…)` (pruned by the catalog's trace filters), in the order of
//! their newest-scan bound, until `limit` of them are known to outrank every
//! trace not fetched yet. Any trace whose earliest matching span is newer than
//! the oldest span of the scan has all its matching spans in the scan, so it
//! is a candidate; a candidate's earliest matching span is no newer than its
//! earliest one in the scan. When that does not settle `limit` traces, the
//! scan widens (the window to about twice the traces asked for at the density
//! seen, at least 4×, or 4× the spans) and goes on; past a bound it
//! gives up for the grouped plan below. The answer is the same either way.
//!
//! The grouped plan, two queries planned by DataFusion over `spans`, answers
//! queries with trace-level conditions and those the newest-first search
//! gives up on:
//! 1. the matching traces: spans that start in `[start, end)` and satisfy a
//!    spanset's condition, grouped by trace, kept when the spansets combine
//!    (`bool_or` per spanset, then the query's `&&`/`||`), newest first by
//!    the earliest matching span, `LIMIT limit`;
//! 2. every span of those traces (`trace_id IN (…)`, pruned by the catalog's
//!    trace filters, no time bound), with each spanset's condition as a flag
//!    column, for the roots, durations, service counts and matched spans.
//!
//! A matched span carries, like Tempo's, each attribute and intrinsic
//! (`status`, `kind`, `statusMessage`, `nestedSetParent`) the query reads,
//! typed as the span keeps it (`attribute_types`), where one of the query's
//! conditions on it holds for the span (Tempo reads each column through the
//! query's predicates on it, so a value none of them accepts is not read);
//! `name` and `duration` have their own fields.
//!
//! Conditions on `trace:rootService`, `trace:rootName` and `trace:duration`
//! join a per-trace table (root = the earliest span without a parent, else
//! the earliest span; duration = last end − first start) computed over the
//! same spans.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{ParamValues, ScalarValue};

use crate::traceql::{self, Attribute, Combination, Condition, Op, Plan, Query, Static};
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
    /// The attributes and intrinsics the query reads that one of its
    /// conditions on them accepts for this span (Tempo's name for each, its
    /// typed value), in the order the query first reads them.
    pub attributes: Vec<(String, TypedValue)>,
}

/// A value of a matched span, with its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedValue {
    /// The value as the `spans` table keeps it (an int in decimal, a bool
    /// `true`/`false`, an array as OTLP/JSON…).
    pub text: String,
    /// Its OTLP type as the `attribute_types` maps name it (`int`, `double`,
    /// `bool`, `bytes`, `array`, `kvlist`); `None` for a string.
    pub kind: Option<String>,
}

impl TypedValue {
    pub fn string(text: impl Into<String>) -> Self {
        TypedValue {
            text: text.into(),
            kind: None,
        }
    }
}

/// The name Tempo gives `attribute` among a matched span's attributes;
/// `None` when it does not show it there (`name` has its own field,
/// `duration` and the trace-level intrinsics are left out).
fn shown_key(attribute: &Attribute) -> Option<&str> {
    match attribute {
        Attribute::Status => Some("status"),
        Attribute::Kind => Some("kind"),
        Attribute::StatusMessage => Some("statusMessage"),
        Attribute::NestedSetParent => Some("nestedSetParent"),
        other => other.result_key(),
    }
}

/// The atomic conditions of `condition` on attributes Tempo shows, grouped
/// by attribute, in the order the attributes are first read.
fn shown_conditions(condition: &Condition, out: &mut Vec<(Attribute, Vec<Condition>)>) {
    match condition {
        Condition::And(a, b) | Condition::Or(a, b) => {
            shown_conditions(a, out);
            shown_conditions(b, out);
        }
        Condition::Literal(_) => {}
        Condition::Compare(attribute, ..) | Condition::Exists(attribute, _) => {
            if shown_key(attribute).is_none() {
                return;
            }
            match out.iter_mut().find(|(a, _)| a == attribute) {
                Some((_, conditions)) => conditions.push(condition.clone()),
                None => out.push((attribute.clone(), vec![condition.clone()])),
            }
        }
    }
}

/// What the second query reads for the matched spans' attributes.
struct Shown {
    /// Per attribute: Tempo's key, the SQL of its value (NULL unless one of
    /// the query's conditions on it holds for the span), the SQL of its type.
    columns: Vec<(String, String, String)>,
    /// The parameters of that SQL and of the spansets' conditions.
    params: Vec<(String, ScalarValue)>,
}

/// The SQL of what a matched span shows of `attribute`: (value, type).
fn shown_sql(attribute: &Attribute) -> (String, String) {
    const NO_TYPE: &str = "CAST(NULL AS VARCHAR)";
    let types = |map: &str, key: &str| format!("s.{map}[{}]", traceql::sql_string(key));
    let value = match attribute {
        Attribute::Status | Attribute::Kind | Attribute::StatusMessage => {
            traceql::column_sql(attribute)
        }
        // A root's is -1 in Tempo; other spans' count spans in an order
        // LightTrace does not keep, so they show none.
        Attribute::NestedSetParent => {
            return (
                "CASE WHEN s.parent_span_id IS NULL THEN '-1' END".to_owned(),
                "'int'".to_owned(),
            );
        }
        other => traceql::attribute_sql(other),
    };
    let kind = match attribute {
        Attribute::Resource(key) | Attribute::Any(key) if key == "service.name" => {
            NO_TYPE.to_owned()
        }
        Attribute::Span(key) => types("attribute_types", key),
        Attribute::Resource(key) => types("resource_attribute_types", key),
        Attribute::Any(key) => format!(
            "CASE WHEN s.attributes[{k}] IS NOT NULL THEN {span} ELSE {resource} END",
            k = traceql::sql_string(key),
            span = types("attribute_types", key),
            resource = types("resource_attribute_types", key),
        ),
        _ => NO_TYPE.to_owned(),
    };
    (value, kind)
}

impl Shown {
    /// Planned as extra spansets after `query`'s own, so that their
    /// parameters follow (and keep) those of `plan`.
    fn new(query: &Query, plan: &Plan) -> Self {
        let mut read = Vec::new();
        for condition in query.spansets.iter().flatten() {
            shown_conditions(condition, &mut read);
        }
        let mut spansets = query.spansets.clone();
        spansets.extend(read.iter().map(|(_, conditions)| {
            conditions
                .iter()
                .cloned()
                .reduce(|a, b| Condition::Or(Box::new(a), Box::new(b)))
        }));
        let extended = traceql::plan(&Query {
            spansets,
            combination: query.combination.clone(),
        });
        let own = query.spansets.len();
        debug_assert_eq!(extended.spanset_sql[..own], plan.spanset_sql[..]);
        let columns = read
            .iter()
            .zip(&extended.spanset_sql[own..])
            .map(|((attribute, _), holds)| {
                let (value, kind) = shown_sql(attribute);
                (
                    shown_key(attribute).unwrap_or_default().to_owned(),
                    format!("CASE WHEN {holds} THEN {value} END"),
                    kind,
                )
            })
            .collect();
        Shown {
            columns,
            params: extended.params,
        }
    }
}

fn params(plan: &Plan, extra: &[(&str, ScalarValue)]) -> ParamValues {
    params_of(&plan.params, extra)
}

fn params_of(list: &[(String, ScalarValue)], extra: &[(&str, ScalarValue)]) -> ParamValues {
    let mut values: std::collections::HashMap<String, ScalarValue> = list.iter().cloned().collect();
    for (name, value) in extra {
        values.insert((*name).to_owned(), value.clone());
    }
    ParamValues::from(values)
}

const RANGE: &str = "start_time >= $from AND start_time < $to";

/// The first window of the newest-first search, before the end of the range.
const FIRST_WINDOW_NS: i64 = 60 * 1_000_000_000;
/// Matching spans the newest-first scan reads at first, per trace asked for.
const SCAN_SPANS_PER_TRACE: usize = 50;
/// The newest-first search gives up (for the grouped plan) past these.
const MAX_SCAN_SPANS: usize = 1 << 20;
const MAX_FETCHED_TRACES: usize = 4_000;

/// Runs `request` for `scope`.
pub async fn search(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &SearchRequest,
) -> Result<Vec<TraceHit>, QueryError> {
    let plan = traceql::plan(&request.query);
    let newest = if plan.needs_trace {
        None
    } else {
        newest_first(engine, scope, request, &plan).await?
    };
    let mut hits = match newest {
        Some(hits) => hits,
        None => grouped(engine, scope, request, &plan).await?,
    };
    // Newest first, as the trace list was ranked; ids break ties.
    hits.sort_by(|a, b| {
        b.start_time_unix_nano
            .cmp(&a.start_time_unix_nano)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
    Ok(hits)
}

fn timestamp(ns: i64) -> ScalarValue {
    ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into()))
}

fn range(start_ns: i64, end_ns: i64) -> [(&'static str, ScalarValue); 2] {
    [("from", timestamp(start_ns)), ("to", timestamp(end_ns))]
}

/// The grouped plan (see the module documentation).
async fn grouped(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &SearchRequest,
    plan: &Plan,
) -> Result<Vec<TraceHit>, QueryError> {
    let range = range(request.start_ns, request.end_ns);
    let ids = matching_traces(engine, scope, request, plan, &range).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let shown = Shown::new(&request.query, plan);
    let traces = trace_rows(engine, scope, plan, &shown, &range, &ids).await?;
    Ok(traces
        .into_iter()
        .map(|(trace_id, rows)| hit(trace_id, rows, &shown, request.spans_per_spanset))
        .collect())
}

/// A trace fetched whole by the newest-first search.
struct Fetched {
    /// The earliest start of a span matching a spanset in the range; `None`
    /// when no span does (it does not match).
    first_start: Option<i64>,
    /// The spansets combine to a match.
    matches: bool,
    hit: TraceHit,
}

/// Where the traces not fetched yet can rank at best.
#[derive(Debug, Clone, Copy)]
enum Bound<'a> {
    /// At (earliest matching start, trace id), or below.
    At(i64, &'a str),
    /// Earliest matching start at or below this.
    NotAfter(i64),
}

/// Whether a trace ranks at or above `bound`: every trace not fetched yet
/// then ranks below it.
fn settled(first_start: i64, trace_id: &str, bound: Bound<'_>) -> bool {
    match bound {
        Bound::At(start, id) => first_start > start || (first_start == start && trace_id <= id),
        Bound::NotAfter(start) => first_start > start,
    }
}

fn combine(combination: &Combination, flags: &[bool]) -> bool {
    match combination {
        Combination::Spanset(i) => flags.get(*i).copied().unwrap_or(false),
        Combination::And(a, b) => combine(a, flags) && combine(b, flags),
        Combination::Or(a, b) => combine(a, flags) || combine(b, flags),
    }
}

/// A plain predicate that every span satisfying `condition` satisfies, on
/// the columns the lake prunes by: the service partition, and the Parquet
/// statistics of `duration_ns`, `name`, `status_code` and `kind`. The
/// planner's conditions (`coalesce(… , FALSE)`) hide them from pruning.
fn implied(condition: &Condition) -> Option<String> {
    match condition {
        Condition::And(a, b) => match (implied(a), implied(b)) {
            (Some(a), Some(b)) => Some(format!("({a} AND {b})")),
            (a, b) => a.or(b),
        },
        Condition::Or(a, b) => Some(format!("({} OR {})", implied(a)?, implied(b)?)),
        Condition::Exists(..) | Condition::Literal(_) => None,
        Condition::Compare(attribute, op, value) => {
            let column = match (attribute, value) {
                (Attribute::Duration, Static::Duration(_)) => "s.duration_ns",
                (Attribute::Status, Static::Status(_)) => "s.status_code",
                (Attribute::Kind, Static::Kind(_)) => "s.kind",
                (Attribute::Name, Static::String(_)) => "s.name",
                (Attribute::Resource(key) | Attribute::Any(key), Static::String(_))
                    if key == "service.name" =>
                {
                    "s.service_name"
                }
                _ => return None,
            };
            let op = match op {
                Op::Eq => "=",
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                Op::Le => "<=",
                Op::Ne | Op::Regex | Op::NotRegex => return None,
            };
            let value = match value {
                Static::Duration(ns) => ns.to_string(),
                Static::Status(text) | Static::Kind(text) => traceql::sql_string(text),
                Static::String(text) => traceql::sql_string(text),
                _ => return None,
            };
            Some(format!("{column} {op} {value}"))
        }
    }
}

/// ` AND …`: what every span matching a spanset of `query` satisfies (see
/// [`implied`]); empty when nothing is known.
pub(crate) fn pruning_filter(query: &Query) -> String {
    let mut any = Vec::new();
    for spanset in &query.spansets {
        match spanset.as_ref().and_then(implied) {
            Some(sql) => any.push(sql),
            None => return String::new(),
        }
    }
    if any.is_empty() {
        String::new()
    } else {
        format!(" AND ({})", any.join(" OR "))
    }
}

/// The newest-first search (see the module documentation); `None` when it
/// gives up.
async fn newest_first(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &SearchRequest,
    plan: &Plan,
) -> Result<Option<Vec<TraceHit>>, QueryError> {
    let (from, to) = (request.start_ns, request.end_ns);
    if from >= to {
        return Ok(Some(Vec::new()));
    }
    let limit = request.limit.max(1);
    let range = range(from, to);
    let mut window = FIRST_WINDOW_NS;
    let mut scan_spans = limit
        .saturating_mul(SCAN_SPANS_PER_TRACE)
        .min(MAX_SCAN_SPANS);
    let mut fetched: HashMap<String, Fetched> = HashMap::new();
    let shown = Shown::new(&request.query, plan);
    loop {
        let lo = to.saturating_sub(window).max(from);
        let spans = newest_spans(engine, scope, request, plan, lo, to, scan_spans).await?;
        let full = spans.len() >= scan_spans;
        // Every trace whose earliest matching span starts after this has all
        // its matching spans in `spans`.
        let oldest = if full {
            spans.last().map_or(lo - 1, |(_, start)| *start)
        } else {
            lo - 1
        };
        // Candidates by their earliest matching start in the scan (an upper
        // bound of the true one), newest first, ids breaking ties.
        let mut bounds: HashMap<&str, i64> = HashMap::new();
        for (trace_id, start) in &spans {
            let bound = bounds.entry(trace_id.as_str()).or_insert(*start);
            *bound = (*bound).min(*start);
        }
        let mut candidates: Vec<(i64, &str)> = bounds.into_iter().map(|(id, s)| (s, id)).collect();
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let everything = !full && lo == from;
        let mut next: usize = 0;
        let mut batch = limit.saturating_mul(2);
        loop {
            let end = next.saturating_add(batch).min(candidates.len());
            let ids: Vec<String> = candidates[next..end]
                .iter()
                .filter(|(_, id)| !fetched.contains_key(*id))
                .map(|(_, id)| (*id).to_owned())
                .collect();
            next = end;
            if !ids.is_empty() {
                let traces = trace_rows(engine, scope, plan, &shown, &range, &ids).await?;
                for (trace_id, rows) in traces {
                    let mut flags = vec![false; plan.spanset_sql.len()];
                    let mut first_start: Option<i64> = None;
                    for row in &rows {
                        for (flag, matched) in flags.iter_mut().zip(&row.flags) {
                            *flag |= matched;
                        }
                        if row.flags.iter().any(|f| *f) {
                            first_start =
                                Some(first_start.map_or(row.start_ns, |s| s.min(row.start_ns)));
                        }
                    }
                    let matches =
                        first_start.is_some() && combine(&request.query.combination, &flags);
                    let hit = hit(trace_id.clone(), rows, &shown, request.spans_per_spanset);
                    fetched.insert(
                        trace_id,
                        Fetched {
                            first_start,
                            matches,
                            hit,
                        },
                    );
                }
            }
            let bound = match candidates[..next].last() {
                Some((start, id)) if next < candidates.len() && *start > oldest => {
                    Bound::At(*start, id)
                }
                _ => Bound::NotAfter(oldest),
            };
            let known = fetched
                .values()
                .filter(|f| f.matches)
                .filter(|f| {
                    f.first_start
                        .is_some_and(|s| settled(s, &f.hit.trace_id, bound))
                })
                .count();
            if known >= limit || (everything && next >= candidates.len()) {
                let mut found: Vec<(i64, TraceHit)> = fetched
                    .into_values()
                    .filter(|f| f.matches)
                    .filter_map(|f| Some((f.first_start?, f.hit)))
                    .collect();
                found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.trace_id.cmp(&b.1.trace_id)));
                found.truncate(limit);
                return Ok(Some(found.into_iter().map(|(_, hit)| hit).collect()));
            }
            if next >= candidates.len() {
                break;
            }
            if fetched.len() >= MAX_FETCHED_TRACES {
                return Ok(None);
            }
            batch = batch.saturating_mul(2);
        }
        if full {
            if scan_spans >= MAX_SCAN_SPANS {
                return Ok(None);
            }
            scan_spans = scan_spans.saturating_mul(4).min(MAX_SCAN_SPANS);
        } else {
            // Wide enough for about twice the traces asked for, at the
            // density seen so far; all the rest of the range when none.
            let factor = match candidates.len() {
                0 => i64::MAX,
                seen => i64::try_from(limit.saturating_mul(2).div_ceil(seen))
                    .unwrap_or(i64::MAX)
                    .max(4),
            };
            window = window.saturating_mul(factor);
        }
        if fetched.len() >= MAX_FETCHED_TRACES {
            return Ok(None);
        }
    }
}

/// The newest `n` spans that start in `[lo, to)` and match a spanset: (trace
/// id, start), newest first.
async fn newest_spans(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &SearchRequest,
    plan: &Plan,
    lo: i64,
    to: i64,
    n: usize,
) -> Result<Vec<(String, i64)>, QueryError> {
    let any = plan
        .spanset_sql
        .iter()
        .map(|sql| format!("({sql})"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let sql = format!(
        "SELECT s.trace_id, CAST(s.start_time AS BIGINT) AS start_ns FROM spans s \
         WHERE s.start_time >= $from AND s.start_time < $to AND ({any}){prune} \
         ORDER BY s.start_time DESC LIMIT {n}",
        prune = pruning_filter(&request.query),
    );
    let output = engine
        .sql_with_params(&sql, Some(params(plan, &range(lo, to))), scope)
        .await?;
    let bad = || QueryError::Internal("unexpected search result columns".into());
    let mut spans = Vec::with_capacity(output.num_rows());
    for batch in &output.batches {
        let ids = batch.column(0).as_string_opt::<i32>().ok_or_else(bad)?;
        let starts = batch
            .column(1)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(bad)?;
        for row in 0..batch.num_rows() {
            if ids.is_valid(row) && starts.is_valid(row) {
                spans.push((ids.value(row).to_owned(), starts.value(row)));
            }
        }
    }
    // Newest first (batches of a sorted plan arrive in order; sort anyway).
    spans.sort_by_key(|(_, start)| std::cmp::Reverse(*start));
    Ok(spans)
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
            format!("WITH {} ", traceql::trace_table_sql(RANGE)),
            " LEFT JOIN t ON t.trace_id = s.trace_id",
        )
    } else {
        (String::new(), "")
    };
    let sql = format!(
        "{with}SELECT trace_id FROM (\
           SELECT s.trace_id, min(s.start_time) AS first_start, {flags} \
           FROM spans s{join} \
           WHERE s.start_time >= $from AND s.start_time < $to AND ({any}){prune} \
           GROUP BY s.trace_id\
         ) WHERE {trace} ORDER BY first_start DESC, trace_id LIMIT {limit}",
        flags = flags.join(", "),
        trace = plan.trace_sql,
        limit = request.limit.max(1),
        prune = pruning_filter(&request.query),
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

/// Every span of the traces `ids`, per trace, with the spansets' flags and
/// the values `shown`.
async fn trace_rows(
    engine: &QueryEngine,
    scope: &ProjectScope,
    plan: &Plan,
    shown: &Shown,
    range: &[(&str, ScalarValue)],
    ids: &[String],
) -> Result<BTreeMap<String, Vec<Row>>, QueryError> {
    // Ids come from the first query: 32 hex digits each, safe as literals.
    let id_list = ids
        .iter()
        .filter(|id| id.chars().all(|c| c.is_ascii_hexdigit()))
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ");
    if id_list.is_empty() {
        return Ok(BTreeMap::new());
    }
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
    let attributes: Vec<String> = shown
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, value, kind))| format!("{value} AS a{i}, {kind} AS k{i}"))
        .collect();
    let (with, join) = if plan.needs_trace {
        (
            format!("WITH {} ", traceql::trace_table_sql(&in_ids)),
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
        .sql_with_params(&sql, Some(params_of(&shown.params, range)), scope)
        .await?;
    let mut traces: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for batch in &output.batches {
        read_rows(
            batch,
            plan.spanset_sql.len(),
            shown.columns.len(),
            &mut traces,
        )?;
    }
    Ok(traces)
}

struct Row {
    span_id: String,
    has_parent: bool,
    service: String,
    name: String,
    start_ns: i64,
    duration_ns: i64,
    error: bool,
    /// Per spanset: the span starts in the range and satisfies it.
    flags: Vec<bool>,
    /// Per [`Shown`] column.
    attributes: Vec<Option<TypedValue>>,
}

fn read_rows(
    batch: &RecordBatch,
    flag_count: usize,
    shown_count: usize,
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
    let flags: Vec<_> = (0..flag_count)
        .map(|i| batch.column(8 + i).as_boolean_opt().ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    // Value and type per shown attribute, as text whatever SQL made of them.
    let shown: Vec<ArrayRef> = (0..2 * shown_count)
        .map(|i| cast(batch.column(8 + flag_count + i), &DataType::Utf8).map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let shown: Vec<_> = shown
        .iter()
        .map(|c| c.as_string_opt::<i32>().ok_or_else(bad))
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
                flags: flags
                    .iter()
                    .map(|f| f.is_valid(row) && f.value(row))
                    .collect(),
                attributes: shown
                    .chunks(2)
                    .map(|pair| {
                        let (value, kind) = (pair[0], pair[1]);
                        value.is_valid(row).then(|| TypedValue {
                            text: value.value(row).to_owned(),
                            kind: kind.is_valid(row).then(|| kind.value(row).to_owned()),
                        })
                    })
                    .collect(),
            });
    }
    Ok(())
}

fn hit(trace_id: String, mut rows: Vec<Row>, shown: &Shown, spss: usize) -> TraceHit {
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
    let matched: Vec<&Row> = rows.iter().filter(|r| r.flags.iter().any(|f| *f)).collect();
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
                attributes: shown_attributes(shown, &r.attributes),
            })
            .collect(),
        service_stats,
        trace_id,
    }
}

/// A span's shown attributes: one per (key, value), as Tempo keys them
/// (`resource.x` and `.x` reading the same value show it once).
fn shown_attributes(shown: &Shown, values: &[Option<TypedValue>]) -> Vec<(String, TypedValue)> {
    let mut attributes: Vec<(String, TypedValue)> = Vec::new();
    for ((key, ..), value) in shown.columns.iter().zip(values) {
        if let Some(value) = value {
            let pair = (key.clone(), value.clone());
            if !attributes.contains(&pair) {
                attributes.push(pair);
            }
        }
    }
    attributes
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use lighttrace_model::{Attr, Source, SpanBatchBuilder, SpanKind, SpanRecord, StatusCode};
    use lighttrace_storage::{Lake, StorageConfig};

    use super::*;
    use crate::QueryConfig;

    /// 2024-01-01T00:00:00Z.
    const BASE_NS: i64 = 1_704_067_200 * 1_000_000_000;
    const SECOND: i64 = 1_000_000_000;

    /// A small deterministic generator (no dependency).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    /// 600 traces over 20 minutes, 1 to 6 spans each, some children up to
    /// three minutes after their root (longer than the first window), some
    /// traces starting at the same nanosecond; the first half in Parquet, the
    /// rest buffered.
    fn batch(rng: &mut Lcg, traces: std::ops::Range<u32>) -> RecordBatch {
        let services = ["a", "b", "c"];
        let routes = ["/x", "/y", "/z"];
        let names = ["op0", "op1", "op2"];
        let mut builder = SpanBatchBuilder::new();
        let mut start = BASE_NS + i64::from(traces.start) * 2 * SECOND;
        for t in traces {
            if t % 7 != 0 {
                start += i64::try_from(rng.next(4 * SECOND as u64)).unwrap();
            }
            let mut trace_id = [0u8; 16];
            trace_id[..4].copy_from_slice(&(t.wrapping_mul(2_654_435_761)).to_be_bytes());
            trace_id[15] = 1;
            let spans = 1 + rng.next(6) as u8;
            for i in 0..spans {
                let offset = if i == 0 {
                    0
                } else if rng.next(10) == 0 {
                    i64::try_from(rng.next(180 * SECOND as u64)).unwrap()
                } else {
                    i64::try_from(rng.next(SECOND as u64)).unwrap()
                };
                let begin = start + offset;
                let duration = i64::try_from(rng.next(100_000_000)).unwrap();
                let error = rng.next(10) == 0;
                let route = routes[rng.next(3) as usize];
                let status = if error { "500" } else { "200" };
                let attributes = [
                    Attr::string("http.route", route),
                    Attr::typed(
                        "http.response.status_code",
                        status,
                        lighttrace_model::AttrType::Int,
                    ),
                ];
                let service = services[rng.next(3) as usize];
                let resource = [Attr::string("service.name", service)];
                builder.append(&SpanRecord {
                    project: "p",
                    trace_id,
                    span_id: [
                        t.to_be_bytes()[0],
                        t.to_be_bytes()[1],
                        t.to_be_bytes()[2],
                        t.to_be_bytes()[3],
                        i,
                        0,
                        0,
                        1,
                    ],
                    parent_span_id: (i > 0).then(|| {
                        let p = t.to_be_bytes();
                        [p[0], p[1], p[2], p[3], 0, 0, 0, 1]
                    }),
                    trace_state: None,
                    service_name: service,
                    name: names[rng.next(3) as usize],
                    kind: SpanKind::Server,
                    start_time_ns: begin,
                    end_time_ns: begin + duration,
                    status_code: if error {
                        StatusCode::Error
                    } else {
                        StatusCode::Ok
                    },
                    status_message: None,
                    attributes: &attributes,
                    resource_attributes: &resource,
                    scope_name: None,
                    scope_version: None,
                    events: &[],
                    links: &[],
                    source: Source::Otlp,
                });
            }
        }
        builder.finish()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn newest_first_answers_like_the_grouped_plan() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StorageConfig::new(dir.path());
        config.flush_max_age = Duration::from_secs(24 * 3600);
        let lake = Lake::open(config).await.unwrap();
        let mut rng = Lcg(7);
        lake.write(batch(&mut rng, 0..300)).await.unwrap();
        lake.flush_all().await.unwrap();
        lake.write(batch(&mut rng, 300..600)).await.unwrap();
        let engine = QueryEngine::new(
            Arc::clone(&lake),
            QueryConfig {
                memory_limit_bytes: 256 << 20,
                timeout: Duration::from_secs(60),
                target_partitions: 2,
            },
        )
        .unwrap();
        let scope = ProjectScope::All;
        let queries = [
            "{}",
            "{ status = error }",
            r#"{ resource.service.name = "b" && span.http.route = "/y" }"#,
            r#"{ span.http.response.status_code = 500 } && { resource.service.name = "c" }"#,
            r#"{ name = "op1" && status = error } || { span.http.route = "/z" && duration < 1ms }"#,
            r#"{ resource.service.name = "nothing" }"#,
            r#"{ kind = server && duration >= 50ms } || { resource.service.name = "a" || name = "op2" }"#,
        ];
        let minute = 60 * SECOND;
        let ranges = [
            (BASE_NS, BASE_NS + 40 * minute),
            (BASE_NS + 5 * minute, BASE_NS + 12 * minute),
            (BASE_NS + 19 * minute, BASE_NS + 19 * minute + 30 * SECOND),
            (BASE_NS - 10 * minute, BASE_NS),
        ];
        let mut compared = 0;
        // Matched spans' typed attributes and intrinsics, in both plans.
        let (mut typed, mut intrinsics) = (0, 0);
        for q in queries {
            let query = traceql::parse(q).unwrap();
            let plan = traceql::plan(&query);
            for (start_ns, end_ns) in ranges {
                for limit in [1, 3, 20, 1000] {
                    let request = SearchRequest {
                        query: query.clone(),
                        start_ns,
                        end_ns,
                        limit,
                        spans_per_spanset: 3,
                    };
                    let fast = newest_first(&engine, &scope, &request, &plan)
                        .await
                        .unwrap()
                        .expect("the newest-first search answers");
                    let mut slow = grouped(&engine, &scope, &request, &plan).await.unwrap();
                    let mut fast = fast;
                    for hits in [&mut fast, &mut slow] {
                        hits.sort_by(|a, b| {
                            b.start_time_unix_nano
                                .cmp(&a.start_time_unix_nano)
                                .then_with(|| a.trace_id.cmp(&b.trace_id))
                        });
                    }
                    assert_eq!(fast, slow, "{q} limit {limit} in [{start_ns}, {end_ns})");
                    compared += usize::from(!slow.is_empty());
                    for (key, value) in slow
                        .iter()
                        .flat_map(|hit| &hit.spans)
                        .flat_map(|span| &span.attributes)
                    {
                        match key.as_str() {
                            "http.response.status_code" => {
                                assert_eq!(value.kind.as_deref(), Some("int"), "{q}");
                                typed += 1;
                            }
                            "status" => {
                                assert_eq!(value, &TypedValue::string("error"), "{q}");
                                intrinsics += 1;
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        assert!(compared >= 30, "{compared}");
        assert!(typed > 0 && intrinsics > 0, "{typed} {intrinsics}");
    }
}
