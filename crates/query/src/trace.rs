//! Trace lookup: one trace's spans, errors and logs, analyzed, as one
//! serializable [`TraceView`].
//!
//! The server's `GET /api/v1/traces/{id}` and `lighttrace trace --data` both
//! call [`lookup_trace`], and `lighttrace trace --server` deserializes the
//! server's JSON into the same [`TraceView`], so the three cannot drift.
//!
//! The lookup runs three queries through the [`QueryEngine`] with the caller's
//! [`ProjectScope`]: `SELECT * FROM spans WHERE trace_id = '…'` (pruned by the
//! catalog's per-file trace filters and the row groups' bloom filters, so no
//! time hint is needed), and the same on `errors` and `logs`. The spans go
//! through [`lighttrace_analysis::analyze`]; errors and logs are attached to
//! the span their `span_id` names, or to the trace when it names none of its
//! spans.
//!
//! ```no_run
//! # async fn example(engine: &lighttrace_query::QueryEngine) -> Result<(), Box<dyn std::error::Error>> {
//! use lighttrace_query::ProjectScope;
//! use lighttrace_query::trace::{lookup_trace, parse_trace_id};
//! let id = parse_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736")?;
//! if let Some(trace) = lookup_trace(engine, &ProjectScope::All, id).await? {
//!     println!("{} spans, {} ns", trace.span_count, trace.duration_ns);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::TimestampNanosecondType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use lighttrace_analysis::{self as analysis, SpanKind, Warning};
use lighttrace_model::{TraceId, columns};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::encode::{UTC_TIMESTAMP_FORMAT, json_objects};
use crate::{ProjectScope, QueryEngine, QueryError};

/// Hex digits of a trace id.
pub const TRACE_ID_DIGITS: usize = 32;

/// Why a trace id was refused; the message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTraceId(String);

/// A trace id as users type it: hex in any case, with or without leading
/// zeros (left-padded to 32 digits, so Zipkin's 64-bit ids work), surrounding
/// whitespace ignored. Refused: empty, more than 32 digits, anything but hex,
/// all zeros (no valid trace has that id).
pub fn parse_trace_id(text: &str) -> Result<TraceId, InvalidTraceId> {
    let trimmed = text.trim();
    let shown: String = trimmed.chars().take(40).collect();
    if trimmed.is_empty() {
        return Err(InvalidTraceId("the trace id is empty".into()));
    }
    if !trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(InvalidTraceId(format!(
            "trace id {shown:?} is not hexadecimal (0-9, a-f)"
        )));
    }
    if trimmed.len() > TRACE_ID_DIGITS {
        return Err(InvalidTraceId(format!(
            "trace id {shown:?} has {} hex digits; at most {TRACE_ID_DIGITS}",
            trimmed.len()
        )));
    }
    TraceId::parse_hex(trimmed).map_err(|err| InvalidTraceId(format!("trace id {shown:?}: {err}")))
}

/// One trace, analyzed: what `GET /api/v1/traces/{id}` answers.
///
/// Times are nanoseconds; `*_offset_ns` are from the trace's start after the
/// clock-skew adjustment. Spans are in tree order (each root, by start time,
/// followed by its subtree depth first), so `depth` is all a waterfall needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceView {
    pub trace_id: String,
    /// The earliest span start (adjusted), RFC 3339 with nanoseconds.
    pub start_time: String,
    pub start_time_unix_nano: i64,
    /// From the earliest start to the latest end (adjusted).
    pub duration_ns: i64,
    pub span_count: usize,
    /// Spans with `status_code = 'error'`.
    pub error_span_count: usize,
    /// The projects the spans belong to (those the caller may read).
    pub projects: Vec<String>,
    /// Every service of the trace, by name.
    pub services: Vec<ServiceView>,
    /// Orphans, several roots, clock-skew adjustments, duplicate ids, cycles.
    pub warnings: Vec<WarningView>,
    /// Each root's critical path in time order.
    pub critical_path: Vec<SegmentView>,
    /// Where the time went: critical-path and self time per (service,
    /// operation), most critical-path time first.
    pub time_by_operation: Vec<OperationView>,
    pub spans: Vec<SpanView>,
    /// `errors` rows of the trace whose `span_id` names none of its spans.
    pub errors: Vec<Value>,
    /// `logs` rows of the trace whose `span_id` names none of its spans.
    pub logs: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub service_name: String,
    pub span_count: usize,
    pub error_span_count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarningView {
    /// `orphans`, `multiple_roots`, `clock_skew_adjusted`,
    /// `duplicate_span_ids`, `parent_cycles`, `end_before_start`.
    pub kind: String,
    pub message: String,
    /// The spans concerned.
    pub span_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentView {
    pub span_id: String,
    pub start_offset_ns: i64,
    pub duration_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationView {
    pub service_name: String,
    pub name: String,
    pub span_count: usize,
    pub critical_path_ns: i64,
    pub self_time_ns: i64,
}

/// One span: its row (attributes, events, links as in the SQL API) and what
/// the analysis found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanView {
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub project: String,
    pub service_name: String,
    pub name: String,
    pub kind: String,
    pub status_code: String,
    pub status_message: Option<String>,
    /// 0 for roots (orphans included).
    pub depth: usize,
    /// Its parent was not received.
    pub orphan: bool,
    /// Whether its parent waits for it (false for a consumer under a producer
    /// or a follows-from child).
    pub blocks_parent: bool,
    /// As received (before the clock-skew adjustment), RFC 3339.
    pub start_time: String,
    pub end_time: String,
    /// Adjusted start minus the trace's start.
    pub start_offset_ns: i64,
    pub duration_ns: i64,
    pub self_time_ns: i64,
    pub critical_path_ns: i64,
    /// The clock-skew shift applied to it (positive: moved later).
    pub clock_skew_ns: i64,
    pub attributes: Value,
    pub attribute_types: Value,
    pub resource_attributes: Value,
    pub resource_attribute_types: Value,
    pub scope_name: Option<String>,
    pub scope_version: Option<String>,
    pub events: Value,
    pub links: Value,
    pub source: String,
    /// `errors` rows naming this span.
    pub errors: Vec<Value>,
    /// `logs` rows naming this span.
    pub logs: Vec<Value>,
}

impl SpanView {
    pub fn is_error(&self) -> bool {
        self.status_code == "error"
    }
}

/// Reads trace `trace_id` with `scope` and analyzes it; `None` when no span
/// of it is visible to `scope`.
pub async fn lookup_trace(
    engine: &QueryEngine,
    scope: &ProjectScope,
    trace_id: TraceId,
) -> Result<Option<TraceView>, QueryError> {
    let hex = trace_id.to_hex();
    // `hex` is 32 hex digits: safe to put in SQL text.
    let spans_sql = format!("SELECT * FROM spans WHERE trace_id = '{hex}'");
    let errors_sql = format!("SELECT * FROM errors WHERE trace_id = '{hex}' ORDER BY time");
    let logs_sql = format!("SELECT * FROM logs WHERE trace_id = '{hex}' ORDER BY time");
    let (spans, errors, logs) = futures::try_join!(
        engine.sql(&spans_sql, scope),
        engine.sql(&errors_sql, scope),
        engine.sql(&logs_sql, scope),
    )?;
    if spans.num_rows() == 0 {
        return Ok(None);
    }
    let rows = span_rows(&spans.batches)?;
    let errors = json_values(&errors.batches)?;
    let logs = json_values(&logs.batches)?;
    Ok(Some(build_view(hex, rows, errors, logs)))
}

/// A span row: its JSON object and its times.
struct SpanRow {
    object: Map<String, Value>,
    start_ns: i64,
    end_ns: i64,
}

fn encode_error(err: impl std::fmt::Display) -> QueryError {
    QueryError::Internal(format!("cannot encode the trace: {err}"))
}

fn span_rows(batches: &[RecordBatch]) -> Result<Vec<SpanRow>, QueryError> {
    let mut rows = Vec::new();
    for batch in batches {
        let times = |name: &str| -> Result<&TimestampNanosecondArray, QueryError> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
                .ok_or_else(|| encode_error(format!("no nanosecond column {name}")))
        };
        let (starts, ends) = (times(columns::START_TIME)?, times(columns::END_TIME)?);
        let objects = json_values(std::slice::from_ref(batch))?;
        for (row, object) in objects.into_iter().enumerate() {
            let Value::Object(object) = object else {
                return Err(encode_error("a row is not a JSON object"));
            };
            let start_ns = starts.value(row);
            let end_ns = if ends.is_valid(row) {
                ends.value(row)
            } else {
                start_ns
            };
            rows.push(SpanRow {
                object,
                start_ns,
                end_ns,
            });
        }
    }
    Ok(rows)
}

fn json_values(batches: &[RecordBatch]) -> Result<Vec<Value>, QueryError> {
    let bytes = json_objects(batches).map_err(encode_error)?;
    match serde_json::from_slice(&bytes).map_err(encode_error)? {
        Value::Array(values) => Ok(values),
        _ => Err(encode_error("rows are not a JSON array")),
    }
}

fn text(object: &Map<String, Value>, key: &str) -> String {
    optional_text(object, key).unwrap_or_default()
}

fn optional_text(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn field(object: &Map<String, Value>, key: &str) -> Value {
    object.get(key).cloned().unwrap_or(Value::Null)
}

/// The analysis input of a row. A span's clock is its service's on its host
/// (`host.name`, when the resource names it); a link in the same trace counts
/// as follows-from when it says so (`opentracing.ref_type = follows_from`, as
/// Jaeger's and OpenTracing's bridges mark it), and every same-trace link of a
/// consumer does (messaging consumers link to the producers they read from).
fn analysis_span(row: &SpanRow, trace_hex: &str) -> analysis::Span {
    let object = &row.object;
    let service_name = text(object, columns::SERVICE_NAME);
    let kind = SpanKind::from_name(&text(object, columns::KIND));
    let host = object
        .get(columns::RESOURCE_ATTRIBUTES)
        .and_then(|attributes| attributes.get("host.name"))
        .and_then(Value::as_str);
    let clock_domain = match host {
        Some(host) => format!("{service_name}@{host}"),
        None => service_name.clone(),
    };
    let follows_from = object
        .get(columns::LINKS)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|link| link.get("trace_id").and_then(Value::as_str) == Some(trace_hex))
        .filter(|link| {
            kind == SpanKind::Consumer
                || link
                    .get("attributes")
                    .and_then(|a| a.get("opentracing.ref_type"))
                    .and_then(Value::as_str)
                    == Some("follows_from")
        })
        .filter_map(|link| link.get("span_id").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    analysis::Span {
        span_id: text(object, columns::SPAN_ID),
        parent_span_id: optional_text(object, columns::PARENT_SPAN_ID),
        name: text(object, columns::NAME),
        service_name,
        kind,
        is_error: text(object, columns::STATUS_CODE) == "error",
        start_ns: row.start_ns,
        end_ns: row.end_ns,
        clock_domain,
        follows_from,
    }
}

fn build_view(
    trace_id: String,
    rows: Vec<SpanRow>,
    errors: Vec<Value>,
    logs: Vec<Value>,
) -> TraceView {
    let inputs: Vec<analysis::Span> = rows.iter().map(|r| analysis_span(r, &trace_id)).collect();
    let result = analysis::analyze(&inputs);
    let trace_start = result.start_ns;
    let id_of = |index: usize| inputs[index].span_id.clone();

    // Errors and logs go to the first span (in tree order) with their span id.
    let mut span_of_id: HashMap<&str, usize> = HashMap::with_capacity(inputs.len());
    for &index in result.order.iter().rev() {
        span_of_id.insert(&inputs[index].span_id, index);
    }
    let mut attached: Vec<(Vec<Value>, Vec<Value>)> = vec![(Vec::new(), Vec::new()); rows.len()];
    let mut trace_errors = Vec::new();
    let mut trace_logs = Vec::new();
    for (values, is_error) in [(errors, true), (logs, false)] {
        for value in values {
            let span = value
                .get(columns::SPAN_ID)
                .and_then(Value::as_str)
                .and_then(|id| span_of_id.get(id).copied());
            match (span, is_error) {
                (Some(index), true) => attached[index].0.push(value),
                (Some(index), false) => attached[index].1.push(value),
                (None, true) => trace_errors.push(value),
                (None, false) => trace_logs.push(value),
            }
        }
    }

    let mut projects = BTreeMap::new();
    let mut services: BTreeMap<&str, ServiceView> = BTreeMap::new();
    for (row, input) in rows.iter().zip(&inputs) {
        projects.insert(text(&row.object, columns::PROJECT), ());
        let service = services
            .entry(&input.service_name)
            .or_insert_with(|| ServiceView {
                service_name: input.service_name.clone(),
                span_count: 0,
                error_span_count: 0,
            });
        service.span_count += 1;
        service.error_span_count += usize::from(input.is_error);
    }

    let mut row_slots: Vec<Option<SpanRow>> = rows.into_iter().map(Some).collect();
    let mut spans = Vec::with_capacity(row_slots.len());
    for &index in &result.order {
        let Some(row) = row_slots[index].take() else {
            continue;
        };
        let found = &result.spans[index];
        let (errors, logs) = std::mem::take(&mut attached[index]);
        let object = &row.object;
        spans.push(SpanView {
            span_id: inputs[index].span_id.clone(),
            parent_span_id: inputs[index].parent_span_id.clone(),
            project: text(object, columns::PROJECT),
            service_name: inputs[index].service_name.clone(),
            name: inputs[index].name.clone(),
            kind: text(object, columns::KIND),
            status_code: text(object, columns::STATUS_CODE),
            status_message: optional_text(object, columns::STATUS_MESSAGE),
            depth: found.depth,
            orphan: found.orphan,
            blocks_parent: found.blocks_parent,
            start_time: text(object, columns::START_TIME),
            end_time: text(object, columns::END_TIME),
            start_offset_ns: found.start_ns.saturating_sub(trace_start),
            duration_ns: found.duration_ns(),
            self_time_ns: found.self_time_ns,
            critical_path_ns: found.critical_path_ns,
            clock_skew_ns: found.clock_skew_ns,
            attributes: field(object, columns::ATTRIBUTES),
            attribute_types: field(object, columns::ATTRIBUTE_TYPES),
            resource_attributes: field(object, columns::RESOURCE_ATTRIBUTES),
            resource_attribute_types: field(object, columns::RESOURCE_ATTRIBUTE_TYPES),
            scope_name: optional_text(object, columns::SCOPE_NAME),
            scope_version: optional_text(object, columns::SCOPE_VERSION),
            events: field(object, columns::EVENTS),
            links: field(object, columns::LINKS),
            source: text(object, columns::SOURCE),
            errors,
            logs,
        });
    }

    let warnings = result
        .warnings
        .iter()
        .map(|warning| warning_view(warning, &inputs))
        .collect();
    let critical_path = result
        .critical_path
        .iter()
        .map(|segment| SegmentView {
            span_id: id_of(segment.span),
            start_offset_ns: segment.start_ns.saturating_sub(trace_start),
            duration_ns: segment.end_ns.saturating_sub(segment.start_ns),
        })
        .collect();
    let time_by_operation = analysis::time_by_operation(&inputs, &result)
        .into_iter()
        .map(|op| OperationView {
            service_name: op.service_name,
            name: op.name,
            span_count: op.spans,
            critical_path_ns: op.critical_path_ns,
            self_time_ns: op.self_time_ns,
        })
        .collect();
    TraceView {
        start_time: format_utc_ns(trace_start),
        start_time_unix_nano: trace_start,
        duration_ns: result.duration_ns(),
        span_count: spans.len(),
        error_span_count: inputs.iter().filter(|s| s.is_error).count(),
        projects: projects.into_keys().collect(),
        services: services.into_values().collect(),
        warnings,
        critical_path,
        time_by_operation,
        spans,
        errors: trace_errors,
        logs: trace_logs,
        trace_id,
    }
}

fn warning_view(warning: &Warning, spans: &[analysis::Span]) -> WarningView {
    let ids = |indices: &[usize]| -> Vec<String> {
        indices.iter().map(|&i| spans[i].span_id.clone()).collect()
    };
    let (message, span_ids) = match warning {
        Warning::Orphans(orphans) => (
            format!(
                "{} {} whose parent was not received; shown as {}",
                orphans.len(),
                plural(orphans.len(), "span", "spans"),
                plural(orphans.len(), "a root", "roots")
            ),
            ids(orphans),
        ),
        Warning::MultipleRoots(roots) => {
            (format!("the trace has {} roots", roots.len()), ids(roots))
        }
        Warning::ClockSkewAdjusted {
            spans: shifted,
            max_abs_ns,
        } => (
            format!(
                "clock skew: {} {} shifted into {} parents (up to {} ms); raw times kept",
                shifted.len(),
                plural(shifted.len(), "span", "spans"),
                plural(shifted.len(), "its", "their"),
                *max_abs_ns as f64 / 1e6
            ),
            ids(shifted),
        ),
        Warning::DuplicateSpanIds(duplicates) => (
            format!(
                "{} span {} used by several spans; chained one under the other",
                duplicates.len(),
                plural(duplicates.len(), "id is", "ids are")
            ),
            duplicates.clone(),
        ),
        Warning::ParentCycles(cuts) => (
            format!(
                "parent links form {} {}; cut at the spans listed, shown as roots",
                cuts.len(),
                plural(cuts.len(), "cycle", "cycles")
            ),
            ids(cuts),
        ),
        Warning::EndBeforeStart(early) => (
            format!(
                "{} {} before {} start; shown as zero-length",
                early.len(),
                plural(early.len(), "span ends", "spans end"),
                plural(early.len(), "its", "their")
            ),
            ids(early),
        ),
    };
    WarningView {
        kind: warning.kind().to_owned(),
        message,
        span_ids,
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `2024-05-01T12:00:00.000000000Z`, as the SQL API shows times.
fn format_utc_ns(ns: i64) -> String {
    let array = TimestampNanosecondArray::from(vec![ns]).with_timezone("UTC");
    let options = FormatOptions::new().with_timestamp_tz_format(Some(UTC_TIMESTAMP_FORMAT));
    match ArrayFormatter::try_new(&array as &dyn Array, &options) {
        Ok(formatter) => formatter.value(0).to_string(),
        Err(_) => ns.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_padded_lowercased_and_checked() {
        let id = parse_trace_id("ABC").unwrap();
        assert_eq!(id.to_hex(), "00000000000000000000000000000abc");
        let full = "4BF92F3577B34DA6A3CE929D0E0E4736";
        assert_eq!(
            parse_trace_id(&format!(" {full}\n")).unwrap().to_hex(),
            full.to_lowercase()
        );
        for (bad, says) in [
            ("", "empty"),
            ("xyz", "not hexadecimal"),
            ("0x12", "not hexadecimal"),
            ("12-34", "not hexadecimal"),
            (&"1".repeat(33), "at most 32"),
            ("000", "all zeros"),
        ] {
            let err = parse_trace_id(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn times_are_rfc3339_with_nanoseconds() {
        assert_eq!(
            format_utc_ns(1_714_564_800_000_000_001),
            "2024-05-01T12:00:00.000000001Z"
        );
    }
}
