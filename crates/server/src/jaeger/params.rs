//! The query parameters of Jaeger's API, parsed the way Jaeger's query service
//! parses them (`cmd/query/app/query_parser.go`): times as integers since the
//! epoch (microseconds for traces, milliseconds for dependencies), durations as
//! Go durations (`1.2s`, `100ms`, `500us`), tags as a JSON object or logfmt.
//!
//! Every error is a message for a 400 that names the parameter.

use std::collections::BTreeMap;

/// Traces a search returns when `limit` is absent or 0 (Grafana's default too).
pub(crate) const DEFAULT_LIMIT: usize = 20;
/// Most traces one search may return (the Jaeger UI's own maximum).
pub(crate) const MAX_LIMIT: usize = 1500;
/// A search without `start` looks back this far from `end`.
const DEFAULT_SEARCH_LOOKBACK_NS: i64 = 3_600_000_000_000;
/// `dependencies` without `lookback` covers this many milliseconds.
const DEFAULT_DEPENDENCY_LOOKBACK_MS: i64 = 24 * 3_600_000;

/// A query string as (name, value) pairs, in order, percent-decoded.
pub(crate) struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        QueryParams(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first non-empty value of `name`, as Go's `FormValue` (which treats
    /// an empty value as absent).
    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET /traces`: what to search for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceSearch {
    pub service: String,
    pub operation: Option<String>,
    /// Tag key → value; a span matches when it has every one.
    pub tags: BTreeMap<String, String>,
    /// Inclusive bounds on a matching span's start, nanoseconds since the epoch.
    pub start_ns: i64,
    pub end_ns: i64,
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    pub limit: usize,
}

impl TraceSearch {
    /// Parses the parameters of a search at time `now_ns`. Parameters Jaeger
    /// does not know are ignored, as Jaeger does (Grafana sends `lookback=custom`).
    pub(crate) fn parse(params: &QueryParams, now_ns: i64) -> Result<Self, String> {
        let end_ns = match params.first("end") {
            Some(text) => micros_to_nanos("end", text)?,
            None => now_ns,
        };
        let start_ns = match params.first("start") {
            Some(text) => micros_to_nanos("start", text)?,
            None => end_ns.saturating_sub(DEFAULT_SEARCH_LOOKBACK_NS),
        };
        if start_ns > end_ns {
            return Err("parameter 'start' must not be after 'end'".into());
        }
        let tags = parse_tags(params.all("tag"), params.all("tags"))?;
        let limit = match params.first("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<u64>() {
                Ok(0) => DEFAULT_LIMIT,
                Ok(n) if n <= MAX_LIMIT as u64 => n as usize,
                Ok(_) => {
                    return Err(format!(
                        "unable to parse param 'limit': {text} is over the maximum of {MAX_LIMIT}"
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "unable to parse param 'limit': {text:?} is not a non-negative integer"
                    ));
                }
            },
        };
        let duration = |name: &str| -> Result<Option<i64>, String> {
            params
                .first(name)
                .map(|text| {
                    parse_go_duration(text)
                        .map_err(|reason| format!("unable to parse param '{name}': {reason}"))
                })
                .transpose()
        };
        let min_duration_ns = duration("minDuration")?;
        let max_duration_ns = duration("maxDuration")?;
        if let (Some(min), Some(max)) = (min_duration_ns, max_duration_ns)
            && min != 0
            && max != 0
            && max < min
        {
            return Err("'maxDuration' should be greater than 'minDuration'".into());
        }
        let Some(service) = params.first("service") else {
            return Err("parameter 'service' is required".into());
        };
        Ok(TraceSearch {
            service: service.to_owned(),
            operation: params.first("operation").map(str::to_owned),
            tags,
            start_ns,
            end_ns,
            min_duration_ns: min_duration_ns.filter(|&d| d != 0),
            max_duration_ns: max_duration_ns.filter(|&d| d != 0),
            limit,
        })
    }
}

/// `GET /dependencies`: the window `[end - lookback, end)`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DependencyWindow {
    pub end_ms: i64,
    pub lookback_ms: i64,
}

impl DependencyWindow {
    pub(crate) fn parse(params: &QueryParams, now_ns: i64) -> Result<Self, String> {
        let integer = |name: &str, default: i64| -> Result<i64, String> {
            match params.first(name) {
                None => Ok(default),
                Some(text) => text.parse::<i64>().map_err(|_| {
                    format!(
                        "unable to parse param '{name}': {text:?} is not an integer (milliseconds)"
                    )
                }),
            }
        };
        let end_ms = integer("endTs", now_ns.div_euclid(1_000_000))?;
        let lookback_ms = integer("lookback", DEFAULT_DEPENDENCY_LOOKBACK_MS)?;
        if lookback_ms <= 0 {
            return Err(format!(
                "unable to parse param 'lookback': {lookback_ms} is not a positive number of milliseconds"
            ));
        }
        // Both must be timestamps that fit in nanoseconds.
        for (name, ms) in [
            ("endTs", end_ms),
            ("lookback", end_ms.saturating_sub(lookback_ms)),
        ] {
            if ms.checked_mul(1_000_000).is_none() {
                return Err(format!(
                    "unable to parse param '{name}': {ms} is out of range"
                ));
            }
        }
        Ok(DependencyWindow {
            end_ms,
            lookback_ms,
        })
    }
}

/// An optional time hint of `GET /traces/{id}` (`start`, `end` in
/// microseconds): checked, as Jaeger does, though a lookup by id needs none.
pub(crate) fn check_optional_micros(params: &QueryParams, name: &str) -> Result<(), String> {
    match params.first(name) {
        Some(text) => micros_to_nanos(name, text).map(|_| ()),
        None => Ok(()),
    }
}

fn micros_to_nanos(name: &str, text: &str) -> Result<i64, String> {
    let micros: i64 = text.parse().map_err(|_| {
        format!("unable to parse param '{name}': {text:?} is not an integer (microseconds since the Unix epoch)")
    })?;
    micros
        .checked_mul(1_000)
        .ok_or_else(|| format!("unable to parse param '{name}': {micros} is out of range"))
}

/// A Go duration (`time.ParseDuration`): a sequence of decimal numbers, each
/// with an optional fraction and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`), such as `300ms`, `1.5h` or `2h45m`; `0` alone is zero. Negative
/// durations are refused: no span lasts less than nothing.
pub(crate) fn parse_go_duration(text: &str) -> Result<i64, String> {
    let bad = || {
        format!("{text:?} is not a duration like 1.2s, 100ms or 500us (units ns, us, ms, s, m, h)")
    };
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(format!("{text:?} is negative"));
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                after.split_at(len)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_ns: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("{text:?} has a number without a unit")),
            _ => return Err(format!("{text:?} has an unknown unit {unit:?}")),
        };
        // At most 30 digits on either side keep the arithmetic inside i128.
        if int_part.len() > 30 {
            return Err(format!("{text:?} is out of range"));
        }
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        let mut nanos = whole * unit_ns;
        if !frac_part.is_empty() {
            let digits = &frac_part[..frac_part.len().min(18)];
            let numerator: i128 = digits.parse().map_err(|_| bad())?;
            nanos += numerator * unit_ns / 10i128.pow(digits.len() as u32);
        }
        total += nanos;
        if total > i64::MAX as i128 {
            return Err(format!("{text:?} is out of range"));
        }
        rest = after;
    }
    Ok(total as i64)
}

/// Jaeger's `tag=key:value` parameters and `tags` parameters; a `tags` value
/// is a JSON object (`{"http.status_code":"500"}`, what Grafana sends) or
/// logfmt (`http.status_code=500 error=true`; a bare key means `true`).
fn parse_tags<'a>(
    simple: impl Iterator<Item = &'a str>,
    structured: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, String> {
    let mut tags = BTreeMap::new();
    for tag in simple {
        let Some((key, value)) = tag.split_once(':') else {
            return Err(format!(
                "malformed 'tag' parameter, expecting key:value, received: {tag}"
            ));
        };
        tags.insert(key.to_owned(), value.to_owned());
    }
    for text in structured {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let parsed = if text.starts_with('{') {
            json_tags(text)
        } else {
            logfmt_tags(text)
        };
        tags.extend(parsed.map_err(|reason| format!("malformed 'tags' parameter: {reason}"))?);
    }
    if let Some(empty) = tags.keys().find(|k| k.is_empty()) {
        return Err(format!("malformed 'tags' parameter: empty key {empty:?}"));
    }
    Ok(tags)
}

fn json_tags(text: &str) -> Result<Vec<(String, String)>, String> {
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|err| format!("cannot unmarshal JSON object: {err}"))?;
    object
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(s) => Ok((key, s)),
            // Grafana turns logfmt values into strings; a number or a bool
            // typed by hand means the same.
            serde_json::Value::Number(n) => Ok((key, n.to_string())),
            serde_json::Value::Bool(b) => Ok((key, b.to_string())),
            other => Err(format!(
                "the value of {key:?} must be a string, not {other}"
            )),
        })
        .collect()
}

fn logfmt_tags(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(tags);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            return Err(format!("logfmt {text:?}: a pair has no key"));
        }
        if chars.next_if_eq(&'=').is_none() {
            tags.push((key, "true".to_owned()));
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("logfmt {text:?}: unterminated quoted value")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('r') => value.push('\r'),
                        Some(c) => value.push(c),
                        None => {
                            return Err(format!("logfmt {text:?}: unterminated quoted value"));
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        tags.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_NS: i64 = 1_714_564_800_000_000_000;

    fn params(query: &str) -> QueryParams {
        QueryParams::parse(Some(query))
    }

    #[test]
    fn go_durations_parse_like_go() {
        for (text, ns) in [
            ("0", 0),
            ("1.2s", 1_200_000_000),
            ("100ms", 100_000_000),
            ("500us", 500_000),
            ("500µs", 500_000),
            ("500μs", 500_000),
            ("7ns", 7),
            ("1h30m", 5_400_000_000_000),
            ("1.5m", 90_000_000_000),
            (".5s", 500_000_000),
            ("2.s", 2_000_000_000),
            ("+3ms", 3_000_000),
        ] {
            assert_eq!(parse_go_duration(text), Ok(ns), "{text}");
        }
        for (text, says) in [
            ("", "not a duration"),
            ("ms", "not a duration"),
            ("12", "without a unit"),
            ("1d", "unknown unit"),
            ("1.2.3s", "without a unit"),
            ("-1s", "negative"),
            ("99999999999h", "out of range"),
        ] {
            let err = parse_go_duration(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn search_parameters_default_and_parse() {
        let search = TraceSearch::parse(&params("service=cart&lookback=custom"), NOW_NS).unwrap();
        assert_eq!(search.service, "cart");
        assert_eq!(search.end_ns, NOW_NS);
        assert_eq!(search.start_ns, NOW_NS - 3_600_000_000_000);
        assert_eq!(search.limit, DEFAULT_LIMIT);
        assert_eq!(search.operation, None);
        assert!(search.tags.is_empty());

        let search = TraceSearch::parse(
            &params(
                "service=cart&operation=GET+%2Fcart&start=1714564800000000&end=1714564900000000\
                 &minDuration=1.5ms&maxDuration=2s&limit=5\
                 &tags=%7B%22http.status_code%22%3A%22500%22%2C%22error%22%3A%22true%22%7D\
                 &tag=peer.service:db:primary",
            ),
            NOW_NS,
        )
        .unwrap();
        assert_eq!(search.operation.as_deref(), Some("GET /cart"));
        assert_eq!(search.start_ns, 1_714_564_800_000_000_000);
        assert_eq!(search.end_ns, 1_714_564_900_000_000_000);
        assert_eq!(search.min_duration_ns, Some(1_500_000));
        assert_eq!(search.max_duration_ns, Some(2_000_000_000));
        assert_eq!(search.limit, 5);
        assert_eq!(
            search.tags,
            BTreeMap::from([
                ("error".to_owned(), "true".to_owned()),
                ("http.status_code".to_owned(), "500".to_owned()),
                ("peer.service".to_owned(), "db:primary".to_owned()),
            ])
        );
    }

    #[test]
    fn tags_are_json_or_logfmt() {
        let logfmt = parse_tags(
            std::iter::empty(),
            ["http.status_code=500 error  msg=\"a \\\"b\\\" c\" empty="].into_iter(),
        )
        .unwrap();
        assert_eq!(
            logfmt,
            BTreeMap::from([
                ("empty".to_owned(), String::new()),
                ("error".to_owned(), "true".to_owned()),
                ("http.status_code".to_owned(), "500".to_owned()),
                ("msg".to_owned(), "a \"b\" c".to_owned()),
            ])
        );
        let json = parse_tags(
            std::iter::empty(),
            [r#"{"http.status_code": 500, "error": true}"#].into_iter(),
        )
        .unwrap();
        assert_eq!(json["http.status_code"], "500");
        assert_eq!(json["error"], "true");
        for (tag, tags, says) in [
            (Some("nocolon"), None, "expecting key:value"),
            (None, Some("{\"a\":"), "cannot unmarshal"),
            (None, Some("{\"a\":[1]}"), "must be a string"),
            (None, Some("a=\"open"), "unterminated"),
            (None, Some("=x"), "no key"),
        ] {
            let err = parse_tags(tag.into_iter(), tags.into_iter()).unwrap_err();
            assert!(err.contains(says), "{tag:?} {tags:?}: {err}");
        }
    }

    #[test]
    fn bad_search_parameters_say_which() {
        for (query, says) in [
            ("", "parameter 'service' is required"),
            ("service=", "parameter 'service' is required"),
            ("service=a&start=yesterday", "param 'start'"),
            ("service=a&end=1.5", "param 'end'"),
            ("service=a&start=20&end=10", "must not be after"),
            ("service=a&limit=-1", "param 'limit'"),
            ("service=a&limit=100000", "maximum"),
            ("service=a&minDuration=fast", "param 'minDuration'"),
            ("service=a&maxDuration=1d", "param 'maxDuration'"),
            (
                "service=a&minDuration=2s&maxDuration=1s",
                "'maxDuration' should be greater than 'minDuration'",
            ),
            ("service=a&start=9223372036854775807", "out of range"),
        ] {
            let err = TraceSearch::parse(&params(query), NOW_NS).unwrap_err();
            assert!(err.contains(says), "{query}: {err}");
        }
    }

    #[test]
    fn dependency_windows_are_milliseconds() {
        let window = DependencyWindow::parse(&params(""), NOW_NS).unwrap();
        assert_eq!(window.end_ms, NOW_NS / 1_000_000);
        assert_eq!(window.lookback_ms, 86_400_000);
        let window =
            DependencyWindow::parse(&params("endTs=1714564800000&lookback=3600000"), NOW_NS)
                .unwrap();
        assert_eq!(
            window,
            DependencyWindow {
                end_ms: 1_714_564_800_000,
                lookback_ms: 3_600_000
            }
        );
        for (query, says) in [
            ("endTs=now", "param 'endTs'"),
            ("lookback=1h", "param 'lookback'"),
            ("lookback=0", "positive"),
            ("endTs=9223372036854775807", "out of range"),
        ] {
            let err = DependencyWindow::parse(&params(query), NOW_NS).unwrap_err();
            assert!(err.contains(says), "{query}: {err}");
        }
    }
}
