//! Named reports: the SQL files of `sql/reports/`, compiled into the binary.
//!
//! A report is one SQL statement with named placeholders (`$from`, `$service`,
//! …) and a header of comments that names it and declares its parameters:
//!
//! ```sql
//! -- latency: latency percentiles and error rate per service and operation
//! -- More lines of description.
//! -- @param from timestamp default=-24h  start of the range
//! -- @param bucket interval  one row per time bucket of this width
//! SELECT … WHERE start_time >= $from …
//! ```
//!
//! `@param NAME TYPE [default=VALUE] [required] HELP`: `TYPE` is `timestamp`
//! (RFC 3339, `now`, or relative to now: `-1h`, `-30m`, `-7d`, `now-2h`),
//! `interval` (`1m`, `30s`, `1h`), `float`, `int` or `text`. A parameter
//! without a value and without a default is NULL: the SQL treats that as "no
//! filter". Values are bound into the plan (DataFusion's parameter values),
//! never pasted into the SQL text; an unknown parameter or a value that does
//! not parse is an error that names it.

use std::collections::HashMap;
use std::sync::OnceLock;

use arrow::datatypes::IntervalMonthDayNano;
use chrono::{DateTime, Utc};
use datafusion::common::{ParamValues, ScalarValue};

use crate::{ProjectScope, QueryEngine, QueryError, QueryOutput};

/// The report files, by name (the file is `sql/reports/<name>.sql`).
const SOURCES: [(&str, &str); 6] = [
    ("latency", include_str!("../../../sql/reports/latency.sql")),
    (
        "bottlenecks",
        include_str!("../../../sql/reports/bottlenecks.sql"),
    ),
    (
        "exemplars",
        include_str!("../../../sql/reports/exemplars.sql"),
    ),
    ("errors", include_str!("../../../sql/reports/errors.sql")),
    (
        "n-plus-one",
        include_str!("../../../sql/reports/n-plus-one.sql"),
    ),
    (
        "service-graph",
        include_str!("../../../sql/reports/service-graph.sql"),
    ),
];

/// The type of a report parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Timestamp,
    Interval,
    Float,
    Int,
    Text,
}

impl ParamKind {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "timestamp" => ParamKind::Timestamp,
            "interval" => ParamKind::Interval,
            "float" => ParamKind::Float,
            "int" => ParamKind::Int,
            "text" => ParamKind::Text,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Timestamp => "timestamp",
            ParamKind::Interval => "interval",
            ParamKind::Float => "float",
            ParamKind::Int => "int",
            ParamKind::Text => "text",
        }
    }

    /// A NULL of the type the value of this kind has.
    fn null(self) -> ScalarValue {
        match self {
            ParamKind::Timestamp => ScalarValue::TimestampNanosecond(None, Some("UTC".into())),
            ParamKind::Interval => ScalarValue::IntervalMonthDayNano(None),
            ParamKind::Float => ScalarValue::Float64(None),
            ParamKind::Int => ScalarValue::Int64(None),
            ParamKind::Text => ScalarValue::Utf8(None),
        }
    }
}

/// A parameter a report declares.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamKind,
    pub default: Option<String>,
    pub required: bool,
    /// For numbers: the inclusive bounds (`range=0..100`, `range=1..`).
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub help: String,
}

/// One named report.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: &'static str,
    /// The header's first line, after the name.
    pub summary: String,
    /// The header's other description lines.
    pub description: String,
    pub params: Vec<ParamSpec>,
    pub sql: &'static str,
}

/// Every report, in a fixed order.
pub fn reports() -> &'static [Report] {
    static REPORTS: OnceLock<Vec<Report>> = OnceLock::new();
    REPORTS.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(name, sql)| {
                parse_report(name, sql)
                    .unwrap_or_else(|err| panic!("sql/reports/{name}.sql: {err}"))
            })
            .collect()
    })
}

/// The report called `name`.
pub fn find_report(name: &str) -> Option<&'static Report> {
    reports().iter().find(|r| r.name == name)
}

fn parse_report(name: &'static str, sql: &'static str) -> Result<Report, String> {
    let mut summary = None;
    let mut description = Vec::new();
    let mut params = Vec::new();
    for line in sql.lines() {
        let Some(comment) = line.strip_prefix("--") else {
            break;
        };
        let comment = comment.trim();
        if let Some(spec) = comment.strip_prefix("@param ") {
            params.push(parse_param(spec)?);
        } else if summary.is_none() {
            let rest = comment
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .ok_or_else(|| format!("the first line must be `-- {name}: <summary>`"))?;
            summary = Some(rest.trim().to_owned());
        } else if params.is_empty() {
            description.push(comment.to_owned());
        }
    }
    let summary = summary.ok_or("no header")?;
    for common in ["from", "to", "service", "name"] {
        if !params.iter().any(|p: &ParamSpec| p.name == common) {
            return Err(format!("every report takes `{common}`"));
        }
    }
    Ok(Report {
        name,
        summary,
        description: description.join("\n").trim().to_owned(),
        params,
        sql,
    })
}

fn parse_param(spec: &str) -> Result<ParamSpec, String> {
    let mut words = spec.split_whitespace();
    let name = words.next().ok_or("@param without a name")?.to_owned();
    let kind_name = words
        .next()
        .ok_or_else(|| format!("@param {name} without a type"))?;
    let kind = ParamKind::parse(kind_name)
        .ok_or_else(|| format!("@param {name}: unknown type {kind_name:?}"))?;
    let mut default = None;
    let mut required = false;
    let (mut min, mut max) = (None, None);
    let mut help = Vec::new();
    for word in words {
        if help.is_empty()
            && let Some(value) = word.strip_prefix("default=")
        {
            default = Some(value.to_owned());
        } else if help.is_empty()
            && let Some(range) = word.strip_prefix("range=")
        {
            let (low, high) = range
                .split_once("..")
                .ok_or_else(|| format!("@param {name}: range must be LOW..HIGH"))?;
            let bound = |text: &str| -> Result<Option<f64>, String> {
                (!text.is_empty())
                    .then(|| {
                        text.parse()
                            .map_err(|_| format!("@param {name}: bad range"))
                    })
                    .transpose()
            };
            (min, max) = (bound(low)?, bound(high)?);
        } else if help.is_empty() && word == "required" {
            required = true;
        } else {
            help.push(word);
        }
    }
    Ok(ParamSpec {
        name,
        kind,
        default,
        required,
        min,
        max,
        help: help.join(" "),
    })
}

impl Report {
    /// The parameter values for `given` (name, text) pairs, at time `now`.
    pub fn bind(
        &self,
        given: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<ParamValues, QueryError> {
        let mut by_name: HashMap<&str, &str> = HashMap::new();
        for (name, value) in given {
            if !self.params.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
                return Err(QueryError::Invalid(format!(
                    "report {:?} has no parameter {name:?} (it takes {})",
                    self.name,
                    known.join(", ")
                )));
            }
            if by_name.insert(name, value).is_some() {
                return Err(QueryError::Invalid(format!(
                    "parameter {name:?} is given twice"
                )));
            }
        }
        let mut values = HashMap::new();
        for spec in &self.params {
            let text = by_name
                .get(spec.name.as_str())
                .copied()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .or(spec.default.as_deref());
            let value = match text {
                Some(text) => parse_value(spec, text, now).map_err(|reason| {
                    QueryError::Invalid(format!(
                        "parameter {:?} ({}): {reason}",
                        spec.name,
                        spec.kind.name()
                    ))
                })?,
                None if spec.required => {
                    return Err(QueryError::Invalid(format!(
                        "report {:?} needs parameter {:?}: {}",
                        self.name, spec.name, spec.help
                    )));
                }
                None => spec.kind.null(),
            };
            values.insert(spec.name.clone(), value);
        }
        if let (
            Some(ScalarValue::TimestampNanosecond(Some(from), _)),
            Some(ScalarValue::TimestampNanosecond(Some(to), _)),
        ) = (values.get("from"), values.get("to"))
            && from >= to
        {
            return Err(QueryError::Invalid(
                "parameter \"from\" must be before \"to\"".into(),
            ));
        }
        Ok(ParamValues::from(values))
    }
}

/// Runs `report` with `given` parameters for `scope`.
pub async fn run_report(
    engine: &QueryEngine,
    report: &Report,
    given: &[(String, String)],
    scope: &ProjectScope,
) -> Result<QueryOutput, QueryError> {
    let params = report.bind(given, Utc::now())?;
    engine
        .sql_with_params(report.sql, Some(params), scope)
        .await
}

fn parse_value(spec: &ParamSpec, text: &str, now: DateTime<Utc>) -> Result<ScalarValue, String> {
    let in_range = |value: f64| {
        let low = spec.min.unwrap_or(f64::NEG_INFINITY);
        let high = spec.max.unwrap_or(f64::INFINITY);
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            let show = |b: Option<f64>| b.map(|b| b.to_string()).unwrap_or_default();
            Err(format!(
                "{text} is outside {}..{}",
                show(spec.min),
                show(spec.max)
            ))
        }
    };
    Ok(match spec.kind {
        ParamKind::Timestamp => {
            let at = parse_time(text, now)?;
            let nanos = at
                .timestamp_nanos_opt()
                .ok_or_else(|| format!("{text:?} is out of range"))?;
            ScalarValue::TimestampNanosecond(Some(nanos), Some("UTC".into()))
        }
        ParamKind::Interval => {
            let nanos = parse_span(text)?;
            if nanos <= 0 {
                return Err(format!("{text:?} is not a positive interval"));
            }
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, nanos)))
        }
        ParamKind::Float => {
            let value: f64 = text
                .parse()
                .map_err(|_| format!("{text:?} is not a number"))?;
            if !value.is_finite() {
                return Err(format!("{text:?} is not a finite number"));
            }
            in_range(value)?;
            ScalarValue::Float64(Some(value))
        }
        ParamKind::Int => {
            let value: i64 = text
                .parse()
                .map_err(|_| format!("{text:?} is not an integer"))?;
            in_range(value as f64)?;
            ScalarValue::Int64(Some(value))
        }
        ParamKind::Text => ScalarValue::Utf8(Some(text.to_owned())),
    })
}

/// RFC 3339, `now`, `-1h`, `now-1h`, `now+5m`.
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let relative = text.strip_prefix("now").unwrap_or(text);
    if relative.is_empty() {
        return Ok(now);
    }
    let (sign, span) = match relative.as_bytes()[0] {
        b'-' => (-1, &relative[1..]),
        b'+' => (1, &relative[1..]),
        _ => {
            return Err(format!(
                "{text:?} is neither RFC 3339 (2026-11-21T10:00:00Z) nor relative (now, -1h, -30m, -7d)"
            ));
        }
    };
    let nanos = parse_span(span)?;
    now.checked_add_signed(chrono::Duration::nanoseconds(sign * nanos))
        .ok_or_else(|| format!("{text:?} is out of range"))
}

/// `90s`, `5m`, `1h30m`, `7d`, `1w`, `250ms` as nanoseconds.
fn parse_span(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration like 30s, 5m, 1h30m or 7d");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: i64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 604_800_000_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(unit)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| format!("{text:?} is out of range"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn every_report_parses_and_takes_the_common_parameters() {
        let names: Vec<&str> = reports().iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            [
                "latency",
                "bottlenecks",
                "exemplars",
                "errors",
                "n-plus-one",
                "service-graph"
            ]
        );
        for report in reports() {
            assert!(!report.summary.is_empty(), "{}", report.name);
            let from = report.params.iter().find(|p| p.name == "from").unwrap();
            assert_eq!(from.kind, ParamKind::Timestamp);
            assert_eq!(from.default.as_deref(), Some("-24h"));
            // Every declared parameter is used, and every placeholder declared.
            for spec in &report.params {
                assert!(
                    report.sql.contains(&format!("${}", spec.name)),
                    "{}: ${} unused",
                    report.name,
                    spec.name
                );
            }
        }
    }

    #[test]
    fn times_parse_absolute_and_relative() {
        let now = at("2026-11-21T12:00:00Z");
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("-1h", now).unwrap(), at("2026-11-21T11:00:00Z"));
        assert_eq!(
            parse_time("now-90m", now).unwrap(),
            at("2026-11-21T10:30:00Z")
        );
        assert_eq!(
            parse_time("now+1d", now).unwrap(),
            at("2026-11-22T12:00:00Z")
        );
        assert_eq!(
            parse_time("2026-11-20T08:00:00+01:00", now).unwrap(),
            at("2026-11-20T07:00:00Z")
        );
        assert_eq!(
            parse_time("-1h30m", now).unwrap(),
            at("2026-11-21T10:30:00Z")
        );
        for bad in ["yesterday", "-1x", "-", "1h", "2026-13-01T00:00:00Z", "-h"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn binding_checks_names_and_values() {
        let report = find_report("latency").unwrap();
        let now = at("2026-11-21T12:00:00Z");
        let given = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let ParamValues::Map(values) = report.bind(&given(&[("service", "cart")]), now).unwrap()
        else {
            panic!("named values");
        };
        assert_eq!(
            values["from"].value,
            ScalarValue::TimestampNanosecond(
                Some(at("2026-11-20T12:00:00Z").timestamp_nanos_opt().unwrap()),
                Some("UTC".into())
            )
        );
        assert_eq!(
            values["service"].value,
            ScalarValue::Utf8(Some("cart".into()))
        );
        assert_eq!(values["name"].value, ScalarValue::Utf8(None));

        let err = report.bind(&given(&[("servce", "x")]), now).unwrap_err();
        assert!(err.to_string().contains("no parameter \"servce\""), "{err}");
        let err = report.bind(&given(&[("from", "soon")]), now).unwrap_err();
        assert!(err.to_string().contains("parameter \"from\""), "{err}");
        let err = report.bind(&given(&[("bucket", "0s")]), now).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
        let err = report
            .bind(&given(&[("from", "-1h"), ("to", "-2h")]), now)
            .unwrap_err();
        assert!(err.to_string().contains("before"), "{err}");
        let err = report
            .bind(&given(&[("service", "a"), ("service", "b")]), now)
            .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        // Text is a value, whatever it contains.
        let ParamValues::Map(values) = report
            .bind(&given(&[("service", "x' OR '1'='1")]), now)
            .unwrap()
        else {
            panic!("named values");
        };
        assert_eq!(
            values["service"].value,
            ScalarValue::Utf8(Some("x' OR '1'='1".into()))
        );
    }
}
