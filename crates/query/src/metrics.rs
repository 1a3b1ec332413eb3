//! TraceQL metrics ([`crate::traceql::parse_metrics`]) as Tempo's
//! `/api/metrics/query_range` and `/api/metrics/query` answer them: time series
//! of span rates, counts, quantiles, histograms and min/max/avg/sum of a
//! measured attribute, per step and per `by (…)` group, each series with
//! exemplars (real spans: trace id, span id, value, time) from its own steps.
//!
//! Two queries, both planned by DataFusion over `spans`:
//! 1. the aggregate: spans that start in `[start, end)` and match a spanset
//!    (in traces where the spansets combine, when there are several), grouped
//!    by the `by` keys and the step (and the power-of-two bucket for
//!    `histogram_over_time`), with the function's aggregate and the largest
//!    measured value (`duration` for `rate` and `count_over_time`: the slowest
//!    span) of each group as the exemplar candidate;
//! 2. the exemplars: the spans behind the chosen candidates, found by their
//!    measured value within the same range and filter, and by their start
//!    when the aggregate kept it (`step_series` does: only the files holding
//!    those starts are opened). The Parquet reader evaluates the filter before
//!    it decodes the id columns, so ids are read for a handful of rows, never
//!    for the whole range.
//!
//! Quantiles are exact (the `quantiles` aggregate), not read off histogram
//! buckets as Tempo does. Values of `duration` are in seconds, as in Tempo.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use datafusion::common::{ParamValues, ScalarValue};

use crate::search;
use crate::traceql::{self, Attribute, Combination, MetricsFunction, MetricsQuery};
use crate::{ProjectScope, QueryEngine, QueryError};

/// Tempo's default bound on exemplars per query.
pub const DEFAULT_EXEMPLARS: usize = 100;

/// What to compute.
#[derive(Debug, Clone)]
pub struct MetricsRequest {
    pub query: MetricsQuery,
    /// Spans starting in `[start_ns, end_ns)` (from the aligned start, see
    /// [`MetricsRequest::align`]); the last step may reach past `end_ns`.
    pub start_ns: i64,
    pub end_ns: i64,
    pub step_ns: i64,
    /// Whether steps start at multiples of `step_ns` (range queries, as in
    /// Tempo) or at `start_ns` (instant queries).
    pub align: bool,
    /// At most this many exemplars over all series.
    pub exemplars: usize,
}

impl MetricsRequest {
    /// The first step's start: `start_ns`, aligned down to the step when
    /// [`MetricsRequest::align`].
    pub fn aligned_start(&self) -> i64 {
        if self.align {
            self.start_ns - self.start_ns.rem_euclid(self.step_ns.max(1))
        } else {
            self.start_ns
        }
    }

    /// The number of steps covering `[aligned_start, end_ns)`.
    pub fn steps(&self) -> i64 {
        let step = self.step_ns.max(1);
        ((self.end_ns - self.aligned_start()).max(1) + step - 1) / step
    }
}

/// Tempo's default step for a range: about 240 points, rounded down to 5 s
/// (or to 1 s below that), at least 1 s.
pub fn default_step_ns(start_ns: i64, end_ns: i64) -> i64 {
    const SECOND: i64 = 1_000_000_000;
    let baseline = (end_ns - start_ns).max(0) / 240;
    let mut interval = baseline / (5 * SECOND) * (5 * SECOND);
    if interval < 5 * SECOND {
        interval = baseline / SECOND * SECOND;
    }
    interval.max(SECOND)
}

/// A label value.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelValue {
    String(String),
    Double(f64),
}

/// One series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `by` keys as written (`resource.service.name`), then `p` (quantiles)
    /// or `__bucket` (histograms); `__name__` = the function when there are
    /// no others.
    pub labels: Vec<(String, LabelValue)>,
    /// (step start in ms, value), in time order.
    pub samples: Vec<(i64, f64)>,
    pub exemplars: Vec<Exemplar>,
}

/// A span that stands for a step of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub trace_id: String,
    pub span_id: String,
    pub value: f64,
    /// The span's start, ms since the epoch.
    pub timestamp_ms: i64,
}

/// What was computed, with how many spans were aggregated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsResult {
    pub series: Vec<Series>,
    pub inspected_spans: u64,
}

/// The measured value of a span as SQL (seconds for `duration`), and the
/// value exemplars are ranked and found by.
fn value_sql(function: &MetricsFunction) -> Option<String> {
    function.attribute().map(|attribute| match attribute {
        Attribute::Duration => "CAST(s.duration_ns AS DOUBLE) / 1e9".to_owned(),
        other => format!("try_cast({} AS DOUBLE)", traceql::column_sql(other)),
    })
}

/// The exemplar key: the integer duration for time-based functions (exact
/// to compare), else the measured value.
fn exemplar_key_sql(function: &MetricsFunction) -> String {
    match function.attribute() {
        None | Some(Attribute::Duration) => "s.duration_ns".to_owned(),
        Some(_) => value_sql(function).expect("an attribute"),
    }
}

struct Sql {
    with: String,
    from_where: String,
    params: HashMap<String, ScalarValue>,
}

fn internal(err: impl std::fmt::Display) -> QueryError {
    QueryError::Internal(err.to_string())
}

/// `FROM spans s … WHERE …` for the spans the query measures.
fn spans_sql(request: &MetricsRequest) -> Sql {
    let query = &request.query;
    let plan = traceql::plan(&query.filter);
    let any = plan
        .spanset_sql
        .iter()
        .map(|sql| format!("({sql})"))
        .collect::<Vec<_>>()
        .join(" OR ");
    const RANGE: &str = "start_time >= $from AND start_time < $to";
    let (with, join) = if plan.needs_trace {
        (
            format!("WITH {} ", traceql::trace_table_sql(RANGE)),
            " LEFT JOIN t ON t.trace_id = s.trace_id",
        )
    } else {
        (String::new(), "")
    };
    // The conditions again as plain predicates on the columns the lake
    // prunes by (service partition, Parquet statistics), which the planner's
    // `coalesce(…)` hides.
    let prune = search::pruning_filter(&query.filter);
    let mut filter = format!("s.start_time >= $from AND s.start_time < $to AND ({any}){prune}");
    if !matches!(query.filter.combination, Combination::Spanset(_)) {
        // Several spansets: only spans of traces where they combine.
        let flags = plan
            .spanset_sql
            .iter()
            .enumerate()
            .map(|(i, sql)| format!("bool_or({sql}) AS m{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        filter.push_str(&format!(
            " AND s.trace_id IN (SELECT trace_id FROM (\
               SELECT s.trace_id, {flags} FROM spans s{join} \
               WHERE s.start_time >= $from AND s.start_time < $to AND ({any}){prune} \
               GROUP BY s.trace_id) WHERE {trace})",
            trace = plan.trace_sql
        ));
    }
    if let Some(value) = value_sql(&query.function) {
        // Spans without a numeric value are not measured (every span has a
        // duration: no filter to evaluate for it).
        if query.function.attribute() != Some(&Attribute::Duration) {
            filter.push_str(&format!(" AND {value} IS NOT NULL"));
        }
        if matches!(query.function, MetricsFunction::HistogramOverTime(_)) {
            // Log2 buckets start at 2 (ns for durations), as in Tempo.
            let raw = match query.function.attribute() {
                Some(Attribute::Duration) => "s.duration_ns".to_owned(),
                _ => value.clone(),
            };
            filter.push_str(&format!(" AND {raw} >= 2"));
        }
    }
    let mut values: HashMap<String, ScalarValue> = plan.params.into_iter().collect();
    let aligned = request.aligned_start();
    values.insert(
        "from".into(),
        ScalarValue::TimestampNanosecond(Some(aligned), Some("UTC".into())),
    );
    values.insert(
        "to".into(),
        ScalarValue::TimestampNanosecond(Some(request.end_ns), Some("UTC".into())),
    );
    values.insert("origin".into(), ScalarValue::Int64(Some(aligned)));
    values.insert(
        "step".into(),
        ScalarValue::Int64(Some(request.step_ns.max(1))),
    );
    Sql {
        with,
        from_where: format!("FROM spans s{join} WHERE {filter}"),
        params: values,
    }
}

/// The group keys: `by` attributes, then the histogram bucket.
fn group_sql(query: &MetricsQuery) -> Vec<String> {
    let mut keys: Vec<String> = query
        .by
        .iter()
        .map(|attribute| format!("CAST({} AS VARCHAR)", traceql::column_sql(attribute)))
        .collect();
    if let MetricsFunction::HistogramOverTime(attribute) = &query.function {
        let raw = match attribute {
            Attribute::Duration => "CAST(s.duration_ns AS DOUBLE)".to_owned(),
            _ => value_sql(&query.function).expect("an attribute"),
        };
        let bucket = format!("power(2.0, ceil(log2({raw})))");
        keys.push(if *attribute == Attribute::Duration {
            format!("{bucket} / 1e9")
        } else {
            bucket
        });
    }
    keys
}

/// Most steps the exemplar lookup reads as scans of their own.
const MAX_EXEMPLAR_STEP_SCANS: usize = 16;

const STEP_SQL: &str = "(CAST(s.start_time AS BIGINT) - $origin) / $step";

/// Runs `request` for `scope`.
pub async fn query_range(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &MetricsRequest,
) -> Result<MetricsResult, QueryError> {
    let query = &request.query;
    let spans = spans_sql(request);
    let keys = group_sql(query);
    if let Some(groups) = step_series(engine, scope, request, &spans).await? {
        let mut result = build_series(request, &groups);
        attach_exemplars(engine, scope, request, &spans, &keys, &groups, &mut result).await?;
        return Ok(result);
    }
    let key_columns: String = keys
        .iter()
        .enumerate()
        .map(|(i, sql)| format!("{sql} AS k{i}, "))
        .collect();
    let group_by: String = (0..keys.len()).map(|i| format!("k{i}, ")).collect();
    let aggregate = match (&query.function, value_sql(&query.function)) {
        (MetricsFunction::QuantileOverTime(_, fractions), Some(value)) => {
            let list = fractions
                .iter()
                .map(|q| format!("{q:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("quantiles({value}, {list})")
        }
        (MetricsFunction::MinOverTime(_), Some(value)) => format!("min({value})"),
        (MetricsFunction::MaxOverTime(_), Some(value)) => format!("max({value})"),
        (MetricsFunction::AvgOverTime(_), Some(value)) => format!("avg({value})"),
        (MetricsFunction::SumOverTime(_), Some(value)) => format!("sum({value})"),
        _ => "CAST(NULL AS DOUBLE)".to_owned(),
    };
    let sql = format!(
        "{with}SELECT {key_columns}{STEP_SQL} AS step, count(*) AS n, {aggregate} AS v, \
           max({key}) AS x \
         {from_where} GROUP BY {group_by}step",
        with = spans.with,
        key = exemplar_key_sql(&query.function),
        from_where = spans.from_where,
    );
    let output = engine
        .sql_with_params(&sql, Some(ParamValues::from(spans.params.clone())), scope)
        .await?;
    let mut groups = Groups::default();
    for batch in &output.batches {
        groups.read(batch, keys.len())?;
    }
    let mut result = build_series(request, &groups);
    attach_exemplars(engine, scope, request, &spans, &keys, &groups, &mut result).await?;
    Ok(result)
}

/// The series of the common queries, `quantile_over_time`, `rate` and
/// `count_over_time` without `by` or `by(resource.service.name)`, with the
/// [`step_series`](crate::step_series) aggregate: one aggregate without
/// `GROUP BY` per service (the catalog names the services with spans in the
/// range), each scan pruned to its service's files. `None` for other queries,
/// which group in SQL.
///
/// Grouping 10M spans by service and step in SQL hashes the service name and
/// the step of every span; the service is a constant of each file.
async fn step_series(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &MetricsRequest,
    spans: &Sql,
) -> Result<Option<Groups>, QueryError> {
    let query = &request.query;
    // The value is also the exemplar key: durations in integer nanoseconds,
    // their quantiles in seconds (the divisor).
    let (fractions, value, divisor) = match &query.function {
        MetricsFunction::QuantileOverTime(Attribute::Duration, fractions) => {
            (fractions.clone(), "s.duration_ns".to_owned(), 1e9)
        }
        MetricsFunction::QuantileOverTime(_, fractions) => (
            fractions.clone(),
            value_sql(&query.function).expect("an attribute"),
            1.0,
        ),
        MetricsFunction::Rate | MetricsFunction::CountOverTime => {
            (Vec::new(), "s.duration_ns".to_owned(), 1.0)
        }
        _ => return Ok(None),
    };
    debug_assert_eq!(
        value == "s.duration_ns",
        exemplar_key_sql(&query.function) == "s.duration_ns"
    );
    let by_service = match query.by.as_slice() {
        [] => false,
        [attribute] if traceql::column_sql(attribute) == "s.service_name" => true,
        _ => return Ok(None),
    };
    let integer_key = matches!(query.function.attribute(), None | Some(Attribute::Duration));
    let fractions: String = fractions.iter().map(|q| format!(", {q:?}")).collect();
    let aggregate = format!(
        "step_series(CAST(s.start_time AS BIGINT), {value}, $origin, $step, {divisor:?}{fractions}) AS t"
    );
    let mut params = spans.params.clone();
    let sql = if by_service {
        let services = engine.services(scope, request.aligned_start(), request.end_ns);
        if services.is_empty() {
            return Ok(Some(Groups::default()));
        }
        let branches: Vec<String> = services
            .into_iter()
            .enumerate()
            .map(|(i, service)| {
                params.insert(format!("svc{i}"), ScalarValue::Utf8(Some(service)));
                format!(
                    "SELECT CAST($svc{i} AS VARCHAR) AS k0, {aggregate} {from_where} \
                     AND s.service_name = $svc{i}",
                    from_where = spans.from_where
                )
            })
            .collect();
        format!("{}{}", spans.with, branches.join(" UNION ALL "))
    } else {
        format!(
            "{}SELECT {aggregate} {from_where}",
            spans.with,
            from_where = spans.from_where
        )
    };
    let output = engine
        .sql_with_params(&sql, Some(ParamValues::from(params)), scope)
        .await?;
    let mut groups = Groups::default();
    let bad = || QueryError::Internal("unexpected step_series result".into());
    for batch in &output.batches {
        let series = batch
            .column(batch.num_columns() - 1)
            .as_struct_opt()
            .ok_or_else(bad)?;
        let list = |name: &str, row: usize| -> Result<ArrayRef, QueryError> {
            let column = series.column_by_name(name).ok_or_else(bad)?;
            Ok(column.as_list_opt::<i32>().ok_or_else(bad)?.value(row))
        };
        for row in 0..batch.num_rows() {
            let key = if by_service {
                vec![key_text(batch.column(0), row)?]
            } else {
                Vec::new()
            };
            let (steps, counts, xs, x_starts, quantiles) = (
                list("step", row)?,
                list("n", row)?,
                list("x", row)?,
                list("x_start", row)?,
                list("q", row)?,
            );
            let steps = steps.as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
            let counts = counts.as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
            let xs = xs.as_primitive_opt::<Float64Type>().ok_or_else(bad)?;
            let x_starts = x_starts.as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
            let quantiles = quantiles
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(bad)?;
            if steps.is_empty() {
                continue;
            }
            let per_step = quantiles.len() / steps.len();
            let rows = groups.rows.entry(key).or_default();
            for i in 0..steps.len() {
                let values = if per_step == 0 {
                    vec![None]
                } else {
                    (i * per_step..(i + 1) * per_step)
                        .map(|j| quantiles.is_valid(j).then(|| quantiles.value(j)))
                        .collect()
                };
                let exemplar_key = xs.is_valid(i).then(|| {
                    let x = xs.value(i);
                    if integer_key {
                        ScalarValue::Int64(Some(x as i64))
                    } else {
                        ScalarValue::Float64(Some(x))
                    }
                });
                rows.insert(
                    steps.value(i),
                    GroupRow {
                        count: counts.value(i),
                        values,
                        exemplar_key,
                        exemplar_start: x_starts.is_valid(i).then(|| x_starts.value(i)),
                    },
                );
            }
        }
    }
    Ok(Some(groups))
}

/// A group's key values (None: the span lacks the attribute).
type GroupKey = Vec<Option<String>>;

/// The first query's rows: per group key, per step.
#[derive(Default)]
struct Groups {
    /// Group key → step → row.
    rows: BTreeMap<GroupKey, BTreeMap<i64, GroupRow>>,
}

struct GroupRow {
    count: i64,
    /// The aggregate: quantiles (one per fraction), else one value.
    values: Vec<Option<f64>>,
    /// The largest exemplar key.
    exemplar_key: Option<ScalarValue>,
    /// The earliest start (ns) of the spans with that key, when the
    /// aggregate tells ([`step_series`](crate::step_series) does).
    exemplar_start: Option<i64>,
}

fn key_text(column: &ArrayRef, row: usize) -> Result<Option<String>, QueryError> {
    if column.is_null(row) {
        return Ok(None);
    }
    let value = ScalarValue::try_from_array(column, row).map_err(internal)?;
    Ok(Some(match value {
        ScalarValue::Float64(Some(x)) => format!("{x}"),
        other => other.to_string(),
    }))
}

impl Groups {
    fn read(&mut self, batch: &RecordBatch, keys: usize) -> Result<(), QueryError> {
        let bad = || QueryError::Internal("unexpected metrics result columns".into());
        let step = batch
            .column(keys)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(bad)?;
        let count = batch
            .column(keys + 1)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(bad)?;
        let value = batch.column(keys + 2);
        let list = value.as_list_opt::<i32>();
        // A single-valued aggregate (min, max, avg, sum, or NULL), as f64 once.
        let scalar = match list {
            Some(_) => None,
            None => Some(
                arrow::compute::cast(value, &arrow::datatypes::DataType::Float64)
                    .map_err(internal)?,
            ),
        };
        let scalar = scalar.as_ref().map(|s| s.as_primitive::<Float64Type>());
        let exemplar = batch.column(keys + 3);
        for row in 0..batch.num_rows() {
            let key = (0..keys)
                .map(|i| key_text(batch.column(i), row))
                .collect::<Result<Vec<_>, _>>()?;
            let values = match (list, scalar) {
                (Some(list), _) if list.is_null(row) => Vec::new(),
                (Some(list), _) => {
                    let item = list.value(row);
                    let item = item.as_primitive_opt::<Float64Type>().ok_or_else(bad)?;
                    item.iter().collect()
                }
                (None, Some(value)) => vec![value.is_valid(row).then(|| value.value(row))],
                (None, None) => unreachable!("a scalar column is cast above"),
            };
            let exemplar_key = if exemplar.is_null(row) {
                None
            } else {
                Some(ScalarValue::try_from_array(exemplar, row).map_err(internal)?)
            };
            self.rows.entry(key).or_default().insert(
                step.value(row),
                GroupRow {
                    count: count.value(row),
                    values,
                    exemplar_key,
                    exemplar_start: None,
                },
            );
        }
        Ok(())
    }
}

/// The labels of a group: its `by` keys (and histogram bucket).
fn group_labels(query: &MetricsQuery, key: &[Option<String>]) -> Vec<(String, LabelValue)> {
    let mut labels: Vec<(String, LabelValue)> = query
        .by
        .iter()
        .zip(key)
        .filter_map(|(attribute, value)| {
            Some((attribute.text(), LabelValue::String(value.clone()?)))
        })
        .collect();
    if matches!(query.function, MetricsFunction::HistogramOverTime(_))
        && let Some(Some(bucket)) = key.last()
        && let Ok(bucket) = bucket.parse::<f64>()
    {
        labels.push(("__bucket".into(), LabelValue::Double(bucket)));
    }
    labels
}

fn build_series(request: &MetricsRequest, groups: &Groups) -> MetricsResult {
    let query = &request.query;
    let step_seconds = request.step_ns.max(1) as f64 / 1e9;
    let origin = request.aligned_start();
    let millis = |step: i64| (origin + step * request.step_ns) / 1_000_000;
    let counts = matches!(
        query.function,
        MetricsFunction::Rate
            | MetricsFunction::CountOverTime
            | MetricsFunction::HistogramOverTime(_)
    );
    let mut result = MetricsResult::default();
    for (key, steps) in &groups.rows {
        result.inspected_spans += steps.values().map(|r| r.count as u64).sum::<u64>();
        let labels = group_labels(query, key);
        let fractions: Vec<Option<f64>> = match &query.function {
            MetricsFunction::QuantileOverTime(_, fractions) => {
                fractions.iter().copied().map(Some).collect()
            }
            _ => vec![None],
        };
        for (index, fraction) in fractions.iter().enumerate() {
            let mut labels = labels.clone();
            if let Some(q) = fraction {
                labels.push(("p".into(), LabelValue::Double(*q)));
            }
            if labels.is_empty() {
                labels.push((
                    "__name__".into(),
                    LabelValue::String(query.function.name().into()),
                ));
            }
            let samples = if counts {
                // Counts are 0 in steps without spans, as in Tempo.
                (0..request.steps())
                    .map(|step| {
                        let n = steps.get(&step).map_or(0, |r| r.count) as f64;
                        let value = if matches!(query.function, MetricsFunction::Rate) {
                            n / step_seconds
                        } else {
                            n
                        };
                        (millis(step), value)
                    })
                    .collect()
            } else {
                steps
                    .iter()
                    .filter_map(|(step, row)| {
                        Some((millis(*step), row.values.get(index).copied().flatten()?))
                    })
                    .collect()
            };
            result.series.push(Series {
                labels,
                samples,
                exemplars: Vec::new(),
            });
        }
    }
    result
}

/// A chosen exemplar: the series, the step, and the span's key value (and
/// start, when known).
struct Candidate {
    series: usize,
    key: GroupKey,
    step: i64,
    value: ScalarValue,
    start: Option<i64>,
}

/// Picks up to `request.exemplars` candidates spread over each series' steps,
/// fetches their spans, and attaches them.
async fn attach_exemplars(
    engine: &QueryEngine,
    scope: &ProjectScope,
    request: &MetricsRequest,
    spans: &Sql,
    keys: &[String],
    groups: &Groups,
    result: &mut MetricsResult,
) -> Result<(), QueryError> {
    if request.exemplars == 0 || result.series.is_empty() {
        return Ok(());
    }
    let query = &request.query;
    let quantiles = match &query.function {
        MetricsFunction::QuantileOverTime(_, fractions) => fractions.len(),
        _ => 1,
    };
    // Each group's steps, as (series, step, key value); a quantile group's
    // exemplar goes to the series whose value at that step is closest.
    let mut per_series: Vec<Vec<Candidate>> =
        (0..result.series.len()).map(|_| Vec::new()).collect();
    for (group_index, (key, steps)) in groups.rows.iter().enumerate() {
        for (step, row) in steps {
            let Some(value) = &row.exemplar_key else {
                continue;
            };
            let mut series = group_index * quantiles;
            if quantiles > 1 {
                let measured = scalar_f64(value, &query.function);
                series += row
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| Some((i, (v.as_ref()? - measured).abs())))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map_or(0, |(i, _)| i);
            }
            per_series[series].push(Candidate {
                series,
                key: key.clone(),
                step: *step,
                value: value.clone(),
                start: row.exemplar_start,
            });
        }
    }
    let with_candidates = per_series.iter().filter(|c| !c.is_empty()).count().max(1);
    let budget = (request.exemplars / with_candidates).max(1);
    let mut chosen: Vec<Candidate> = Vec::new();
    for candidates in per_series {
        let n = candidates.len();
        let take = budget.min(n);
        let mut candidates: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
        for i in 0..take {
            // Evenly spread over the series' steps.
            let index = if take == 1 {
                n - 1
            } else {
                i * (n - 1) / (take - 1)
            };
            if let Some(candidate) = candidates[index].take() {
                chosen.push(candidate);
            }
        }
        if chosen.len() >= request.exemplars {
            break;
        }
    }
    chosen.truncate(request.exemplars);
    if chosen.is_empty() {
        return Ok(());
    }

    let exemplar_key = exemplar_key_sql(&query.function);
    let mut params = spans.params.clone();
    let key_columns: String = keys
        .iter()
        .enumerate()
        .map(|(i, sql)| format!("{sql} AS k{i}, "))
        .collect();
    let select = format!(
        "SELECT {key_columns}{STEP_SQL} AS step, {exemplar_key} AS x, s.trace_id, s.span_id, \
           CAST(s.start_time AS BIGINT) AS start_ns {from_where}",
        from_where = spans.from_where,
    );
    let points: Option<Vec<(&Candidate, i64)>> =
        chosen.iter().map(|c| Some((c, c.start?))).collect();
    let conditions = if let Some(points) = points {
        point_conditions(&points, keys, &mut params)
    } else {
        step_conditions(request, &chosen, &exemplar_key, &mut params)
    };
    let branches: Vec<String> = conditions
        .into_iter()
        .map(|conditions| format!("{select}{conditions}"))
        .collect();
    let sql = format!(
        "{with}SELECT * FROM ({branches}) ORDER BY trace_id, span_id",
        with = spans.with,
        branches = branches.join(" UNION ALL "),
    );
    let output = engine
        .sql_with_params(&sql, Some(ParamValues::from(params)), scope)
        .await?;
    // (key, step, value) → first span found.
    let mut found: HashMap<(GroupKey, i64, String), (String, String, i64)> = HashMap::new();
    for batch in &output.batches {
        let n = keys.len();
        let bad = || QueryError::Internal("unexpected exemplar columns".into());
        let step = batch
            .column(n)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(bad)?;
        let trace = batch.column(n + 2).as_string_opt::<i32>().ok_or_else(bad)?;
        let span = batch.column(n + 3).as_string_opt::<i32>().ok_or_else(bad)?;
        let start = batch
            .column(n + 4)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(bad)?;
        for row in 0..batch.num_rows() {
            let key = (0..n)
                .map(|i| key_text(batch.column(i), row))
                .collect::<Result<Vec<_>, _>>()?;
            let value = ScalarValue::try_from_array(batch.column(n + 1), row)
                .map_err(internal)?
                .to_string();
            found
                .entry((key, step.value(row), value))
                .or_insert_with(|| {
                    (
                        trace.value(row).to_owned(),
                        span.value(row).to_owned(),
                        start.value(row),
                    )
                });
        }
    }
    for candidate in chosen {
        let Some((trace_id, span_id, start_ns)) = found.get(&(
            candidate.key.clone(),
            candidate.step,
            candidate.value.to_string(),
        )) else {
            continue;
        };
        let series = &mut result.series[candidate.series];
        let step_ms = (request.aligned_start() + candidate.step * request.step_ns) / 1_000_000;
        let value = match query.function.attribute() {
            // Counts: the series' own value at that step, as Tempo does.
            None => series
                .samples
                .iter()
                .find(|(ms, _)| *ms == step_ms)
                .map_or(0.0, |(_, v)| *v),
            // Measured functions, histograms included (a heatmap places the
            // exemplar at its duration): the span's own value.
            Some(_) => scalar_f64(&candidate.value, &query.function),
        };
        series.exemplars.push(Exemplar {
            trace_id: trace_id.clone(),
            span_id: span_id.clone(),
            value,
            timestamp_ms: start_ns / 1_000_000,
        });
    }
    for series in &mut result.series {
        series.exemplars.sort_by_key(|e| e.timestamp_ms);
    }
    Ok(())
}

/// The conditions that find the spans of candidates whose starts are known:
/// one branch per group key (a service), with that key and the candidates'
/// starts. The lake prunes a branch's files to those of its service that hold
/// one of its starts ([`crate::pruning`]), so the lookup opens a few files per
/// series instead of the whole range; in those, the Parquet reader tests the
/// starts first, one column, before it decodes anything else. The key values
/// are not part of the filter: a start in nanoseconds nearly always names one
/// span, the rows found are matched to candidates by value anyway, and each
/// further list in the predicate cost every opened file its pruning work
/// (`benches/RESULTS.md`: a quarter of the lookup).
fn point_conditions(
    points: &[(&Candidate, i64)],
    keys: &[String],
    params: &mut HashMap<String, ScalarValue>,
) -> Vec<String> {
    let mut by_key: BTreeMap<&GroupKey, Vec<(&Candidate, i64)>> = BTreeMap::new();
    for &(candidate, start) in points {
        by_key
            .entry(&candidate.key)
            .or_default()
            .push((candidate, start));
    }
    let mut branches = Vec::with_capacity(by_key.len());
    for (branch, (key, candidates)) in by_key.into_iter().enumerate() {
        let mut conditions = String::new();
        for (k, (sql, value)) in keys.iter().zip(key).enumerate() {
            match value {
                Some(value) => {
                    let name = format!("e{branch}_k{k}");
                    params.insert(name.clone(), ScalarValue::Utf8(Some(value.clone())));
                    conditions.push_str(&format!(" AND {sql} = ${name}"));
                }
                None => conditions.push_str(&format!(" AND {sql} IS NULL")),
            }
        }
        let mut starts: Vec<i64> = candidates.iter().map(|&(_, start)| start).collect();
        starts.sort_unstable();
        starts.dedup();
        let starts: Vec<String> = starts
            .into_iter()
            .enumerate()
            .map(|(i, start)| {
                let t = format!("e{branch}_t{i}");
                params.insert(
                    t.clone(),
                    ScalarValue::TimestampNanosecond(Some(start), Some("UTC".into())),
                );
                format!("${t}")
            })
            .collect();
        branches.push(format!(
            "{conditions} AND s.start_time IN ({})",
            starts.join(", ")
        ));
    }
    branches
}

/// The conditions that find the spans of candidates by their key value
/// within their step. With few distinct steps (series of one length choose
/// the same steps), one branch per step, whose time bounds prune the lake's
/// files by their start times: the lookup reads those steps instead of the
/// whole range again. Each branch is a scan of its own (~2 ms of planning and
/// opening files), so with more steps one scan of the range looks for every
/// value.
fn step_conditions(
    request: &MetricsRequest,
    chosen: &[Candidate],
    exemplar_key: &str,
    params: &mut HashMap<String, ScalarValue>,
) -> Vec<String> {
    let mut by_step: BTreeMap<Option<i64>, Vec<&ScalarValue>> = BTreeMap::new();
    for candidate in chosen {
        by_step
            .entry(Some(candidate.step))
            .or_default()
            .push(&candidate.value);
    }
    if by_step.len() > MAX_EXEMPLAR_STEP_SCANS {
        let all = by_step.into_values().flatten().collect();
        by_step = BTreeMap::from([(None, all)]);
    }
    let mut branches = Vec::with_capacity(by_step.len());
    for (branch, (step, values)) in by_step.iter().enumerate() {
        let mut wanted: Vec<String> = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let name = format!("x{branch}_{i}");
            wanted.push(format!("${name}"));
            params.insert(name, (*value).clone());
        }
        let mut bounds = String::new();
        if let Some(step) = step {
            let from = request.aligned_start() + step * request.step_ns;
            let to = from.saturating_add(request.step_ns);
            let (from_name, to_name) = (format!("s{branch}_from"), format!("s{branch}_to"));
            for (name, ns) in [(&from_name, from), (&to_name, to)] {
                params.insert(
                    name.clone(),
                    ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())),
                );
            }
            bounds = format!(" AND s.start_time >= ${from_name} AND s.start_time < ${to_name}");
        }
        branches.push(format!(
            "{bounds} AND {exemplar_key} IN ({wanted})",
            wanted = wanted.join(", ")
        ));
    }
    branches
}

/// An exemplar key as the series' unit (seconds for durations).
fn scalar_f64(value: &ScalarValue, function: &MetricsFunction) -> f64 {
    let raw = match value.cast_to(&arrow::datatypes::DataType::Float64) {
        Ok(ScalarValue::Float64(Some(x))) => x,
        _ => f64::NAN,
    };
    match function.attribute() {
        None | Some(Attribute::Duration) => raw / 1e9,
        Some(_) => raw,
    }
}
