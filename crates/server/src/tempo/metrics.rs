//! Tempo's TraceQL metrics API, for Grafana's Tempo data source (metrics
//! queries, exemplars) and Traces Drilldown:
//!
//! - `GET /api/metrics/query_range?q=&start=&end=&since=&step=&exemplars=`:
//!   Tempo's `QueryRangeResponse` (`series` with `labels`, `samples`
//!   (`timestampMs` as a string, the step's start), `exemplars`
//!   (`trace:id`, `span:id`, value, the span's start) and `promLabels`);
//! - `GET /api/metrics/query?q=&start=&end=&since=`: Tempo's
//!   `QueryInstantResponse` (one value per series over the whole range).
//!
//! `start`/`end` are unix seconds (decimals allowed), unix nanoseconds (more
//! than 10 digits) or RFC 3339; `since` (a duration) stands for
//! `start = end - since`; the default range is the last hour. `step` is
//! seconds or a duration (`30s`, `1m`); by default about 240 steps.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use lighttrace_query::metrics::{
    self, DEFAULT_EXEMPLARS, LabelValue, MetricsRequest, MetricsResult, Series,
};
use lighttrace_query::traceql::{self, parse_duration};
use serde_json::{Value, json};

use super::{param, query_pairs};
use crate::Shared;
use crate::error::ApiError;
use crate::sql::query_permit;

/// At most this many steps per query (Prometheus' bound).
const MAX_STEPS: i64 = 11_000;
const MAX_EXEMPLARS: usize = 1_000;

/// A time parameter as nanoseconds: unix seconds (up to 10 integer digits,
/// decimals allowed), unix nanoseconds, or RFC 3339.
fn time_param(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = param(pairs, name) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "{name} must be unix seconds, unix nanoseconds or RFC 3339, not {text:?}"
        ))
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return time.timestamp_nanos_opt().map(Some).ok_or_else(bad);
    }
    let integer_digits = text.split('.').next().unwrap_or("").len();
    if integer_digits > 10 && !text.contains('.') {
        return text.parse::<i64>().map(Some).map_err(|_| bad());
    }
    match text.parse::<f64>() {
        Ok(seconds) if (0.0..=1e11).contains(&seconds) => Ok(Some((seconds * 1e9).round() as i64)),
        _ => Err(bad()),
    }
}

/// A duration parameter: seconds (decimals allowed) or `30s`, `1m` ….
fn duration_param(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = param(pairs, name) else {
        return Ok(None);
    };
    let ns = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() => Some((seconds * 1e9).round() as i64),
        _ => parse_duration(text),
    };
    match ns {
        Some(ns) if ns > 0 => Ok(Some(ns)),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a positive duration (seconds, or 30s, 1m …), not {text:?}"
        ))),
    }
}

/// The query, range, step and exemplar bound of a metrics request; `instant`
/// makes the whole range one step.
fn request(pairs: &[(String, String)], instant: bool) -> Result<MetricsRequest, ApiError> {
    let text = param(pairs, "q").ok_or_else(|| {
        ApiError::bad_request("q is required: a TraceQL metrics query such as `{} | rate()`")
    })?;
    let query = traceql::parse_metrics(text)
        .map_err(|err| ApiError::bad_request(format!("invalid TraceQL metrics query: {err}")))?;
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let end = time_param(pairs, "end")?.unwrap_or(now);
    let start = match (time_param(pairs, "start")?, duration_param(pairs, "since")?) {
        (Some(start), _) => start,
        (None, Some(since)) => end.saturating_sub(since),
        (None, None) => end.saturating_sub(3_600_000_000_000),
    };
    if start >= end {
        return Err(ApiError::bad_request(format!(
            "start must be before end (start={start} ns, end={end} ns)"
        )));
    }
    let step_ns = if instant {
        end - start
    } else {
        duration_param(pairs, "step")?.unwrap_or_else(|| metrics::default_step_ns(start, end))
    };
    let exemplars = match param(pairs, "exemplars") {
        None => DEFAULT_EXEMPLARS,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "exemplars must be a non-negative integer, not {text:?}"
                ))
            })?
            .min(MAX_EXEMPLARS),
    };
    let request = MetricsRequest {
        query,
        start_ns: start,
        end_ns: end,
        step_ns,
        // An instant query's one step starts exactly at `start`.
        align: !instant,
        exemplars: if instant { 0 } else { exemplars },
    };
    if request.steps() > MAX_STEPS {
        return Err(ApiError::bad_request(format!(
            "the range holds {} steps of {} s; at most {MAX_STEPS}: raise step",
            request.steps(),
            step_ns as f64 / 1e9
        )));
    }
    Ok(request)
}

fn label_json(labels: &[(String, LabelValue)]) -> Vec<Value> {
    labels
        .iter()
        .map(|(key, value)| {
            let value = match value {
                LabelValue::String(s) => json!({ "stringValue": s }),
                LabelValue::Double(x) => json!({ "doubleValue": x }),
            };
            json!({ "key": key, "value": value })
        })
        .collect()
}

/// Prometheus' text form of the labels, sorted by name.
fn prom_labels(labels: &[(String, LabelValue)]) -> String {
    let mut parts: Vec<(String, String)> = labels
        .iter()
        .map(|(key, value)| {
            let key = if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                key.clone()
            } else {
                format!("{key:?}")
            };
            let value = match value {
                LabelValue::String(s) => format!("{s:?}"),
                LabelValue::Double(x) => format!("\"{x}\""),
            };
            (key, value)
        })
        .collect();
    parts.sort();
    let inner: Vec<String> = parts.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn series_json(series: &Series) -> Value {
    let samples: Vec<Value> = series
        .samples
        .iter()
        .map(|(ms, value)| json!({ "timestampMs": ms.to_string(), "value": value }))
        .collect();
    let exemplars: Vec<Value> = series
        .exemplars
        .iter()
        .map(|e| {
            json!({
                "labels": [
                    { "key": "trace:id", "value": { "stringValue": e.trace_id } },
                    { "key": "span:id", "value": { "stringValue": e.span_id } },
                ],
                "value": e.value,
                "timestampMs": e.timestamp_ms.to_string(),
            })
        })
        .collect();
    json!({
        "labels": label_json(&series.labels),
        "samples": samples,
        "exemplars": exemplars,
        "promLabels": prom_labels(&series.labels),
    })
}

async fn run(
    shared: &Shared,
    headers: &HeaderMap,
    request: &MetricsRequest,
) -> Result<MetricsResult, ApiError> {
    let scope = shared.state.config.projects.caller(headers)?.scope();
    let _permit = query_permit(shared)?;
    Ok(metrics::query_range(&shared.state.query, &scope, request).await?)
}

fn search_metrics(result: &MetricsResult) -> Value {
    json!({ "inspectedSpans": result.inspected_spans.to_string(), "completedJobs": 1, "totalJobs": 1 })
}

/// `GET /api/metrics/query_range`.
pub(crate) async fn query_range(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let request = request(&query_pairs(query), false)?;
    let result = run(&shared, &headers, &request).await?;
    Ok(Json(json!({
        "series": result.series.iter().map(series_json).collect::<Vec<_>>(),
        "metrics": search_metrics(&result),
    })))
}

/// `GET /api/metrics/query`.
pub(crate) async fn query_instant(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let request = request(&query_pairs(query), true)?;
    let result = run(&shared, &headers, &request).await?;
    let series: Vec<Value> = result
        .series
        .iter()
        .filter_map(|series| {
            let (_, value) = series.samples.first()?;
            Some(json!({
                "labels": label_json(&series.labels),
                "value": value,
                "promLabels": prom_labels(&series.labels),
            }))
        })
        .collect();
    Ok(Json(
        json!({ "series": series, "metrics": search_metrics(&result) }),
    ))
}
