//! The terminal waterfall of one trace.
//!
//! ```text
//! trace 4bf92f3577b34da6a3ce929d0e0e4736  2024-05-01T12:00:00.000000000Z  100.00 ms  4 spans  2 services  1 error
//!
//!      SERVICE   SPAN               DURATION |0                                  100.00 ms|
//!    * frontend  GET /checkout     100.00 ms |######==========================############|
//!    * backend     load cart        15.00 ms |     #######                                |
//!      backend     price            32.00 ms |              ===============               |
//!  ! * backend     charge           60.00 ms |               ############################ |
//!
//! # on the critical path  = rest of the span  ! error  * spends time on the critical path
//! where the time went (critical path 100.00 ms): 60.0% backend charge, 25.0% frontend GET /checkout, …
//! ```
//!
//! Rows are in tree order, names indented by depth. Bars are drawn to scale
//! over the trace's duration, after the clock-skew adjustment. With colour
//! (stdout a terminal, `NO_COLOR` unset), bars are blocks: the critical path
//! in bold yellow, the rest in cyan, errors in red.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use lighttrace_query::trace::{SpanView, TraceView};

/// How to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours.
    pub color: bool,
    /// Columns available.
    pub width: usize,
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const CRITICAL: &str = "\x1b[1;33m";
const BAR: &str = "\x1b[36m";

/// Most indentation a row gets; deeper rows show their depth instead.
const MAX_INDENT: usize = 32;
const DURATION_WIDTH: usize = 10;

/// The waterfall as text, ending in a newline.
pub fn render(trace: &TraceView, style: &Style) -> String {
    let paint = Paint(style.color);
    let mut out = String::new();

    let services = trace.services.len();
    let _ = write!(
        out,
        "{}trace {}{}  {}  {}  {} {}  {} {}",
        paint.on(BOLD),
        trace.trace_id,
        paint.off(),
        trace.start_time,
        format_duration(trace.duration_ns),
        trace.span_count,
        plural(trace.span_count, "span", "spans"),
        services,
        plural(services, "service", "services"),
    );
    if trace.error_span_count > 0 {
        let _ = write!(
            out,
            "  {}{} {}{}",
            paint.on(RED),
            trace.error_span_count,
            plural(trace.error_span_count, "error", "errors"),
            paint.off()
        );
    }
    out.push('\n');
    for warning in &trace.warnings {
        let _ = writeln!(out, "warning: {}", warning.message);
    }
    if !trace.errors.is_empty() || !trace.logs.is_empty() {
        let _ = writeln!(
            out,
            "not tied to a span: {} {}, {} log {}",
            trace.errors.len(),
            plural(trace.errors.len(), "error event", "error events"),
            trace.logs.len(),
            plural(trace.logs.len(), "record", "records"),
        );
    }
    out.push('\n');

    let labels: Vec<String> = trace.spans.iter().map(label).collect();
    let mut service_width = trace
        .spans
        .iter()
        .map(|s| s.service_name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp("SERVICE".len(), 24);
    let mut name_width = labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 48);
    // " ! * " service " " name " " duration " |" bar "|"
    let fixed = |service: usize, name: usize| 5 + service + 1 + name + 1 + DURATION_WIDTH + 2 + 1;
    let min_bar = 20;
    while style.width < fixed(service_width, name_width) + min_bar && name_width > 16 {
        name_width -= 1;
    }
    while style.width < fixed(service_width, name_width) + min_bar && service_width > 8 {
        service_width -= 1;
    }
    let bar_width = style
        .width
        .saturating_sub(fixed(service_width, name_width))
        .max(min_bar);

    let scale_end = format_duration(trace.duration_ns);
    let axis = format!(
        "0{}{scale_end}",
        " ".repeat(bar_width.saturating_sub(1 + scale_end.chars().count()))
    );
    let _ = writeln!(
        out,
        "     {}{:<service_width$} {:<name_width$} {:>DURATION_WIDTH$}{} |{axis}|",
        paint.on(DIM),
        "SERVICE",
        "SPAN",
        "DURATION",
        paint.off(),
    );

    let mut critical: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    for segment in &trace.critical_path {
        critical.entry(&segment.span_id).or_default().push((
            segment.start_offset_ns,
            segment.start_offset_ns.saturating_add(segment.duration_ns),
        ));
    }
    let scale = Scale {
        total_ns: trace.duration_ns,
        cells: bar_width,
    };
    for (span, label) in trace.spans.iter().zip(&labels) {
        let failed = span.is_error() || !span.errors.is_empty();
        let on_path = span.critical_path_ns > 0;
        let _ = write!(
            out,
            " {}{}{} {} ",
            paint.on(RED),
            if failed { '!' } else { ' ' },
            paint.off(),
            if on_path { '*' } else { ' ' },
        );
        let _ = write!(
            out,
            "{:<service_width$} ",
            truncate(&span.service_name, service_width)
        );
        let name = format!("{:<name_width$}", truncate(label, name_width));
        let emphasis = match (failed, on_path) {
            (true, _) => RED,
            (false, true) => BOLD,
            (false, false) => "",
        };
        if emphasis.is_empty() {
            out.push_str(&name);
        } else {
            let _ = write!(out, "{}{name}{}", paint.on(emphasis), paint.off());
        }
        let _ = write!(
            out,
            " {:>DURATION_WIDTH$} |",
            format_duration(span.duration_ns)
        );
        let sections = critical.get(span.span_id.as_str()).map_or(&[][..], |v| v);
        draw_bar(&mut out, span, sections, &scale, paint);
        out.push_str("|\n");
    }

    out.push('\n');
    if style.color {
        let _ = writeln!(
            out,
            "{}█{} on the critical path  {}█{} rest of the span  {}!{} error  * spends time on the critical path",
            paint.on(CRITICAL),
            paint.off(),
            paint.on(BAR),
            paint.off(),
            paint.on(RED),
            paint.off()
        );
    } else {
        out.push_str(
            "# on the critical path  = rest of the span  ! error  * spends time on the critical path\n",
        );
    }
    out.push_str(&summary(trace));
    out.push('\n');
    out
}

/// The span's name, indented by depth.
fn label(span: &SpanView) -> String {
    let indent = span.depth * 2;
    if indent <= MAX_INDENT {
        format!("{}{}", " ".repeat(indent), span.name)
    } else {
        format!("{}[{}] {}", " ".repeat(MAX_INDENT), span.depth, span.name)
    }
}

struct Scale {
    total_ns: i64,
    cells: usize,
}

impl Scale {
    /// The cells `[first, last)` that `[start, end]` covers; at least one.
    fn cells(&self, start_ns: i64, end_ns: i64) -> (usize, usize) {
        if self.total_ns <= 0 {
            return (0, 1);
        }
        let at = |ns: i64, round_up: bool| -> usize {
            let scaled = i128::from(ns.clamp(0, self.total_ns)) * self.cells as i128;
            let total = i128::from(self.total_ns);
            let cell = if round_up {
                (scaled + total - 1) / total
            } else {
                scaled / total
            };
            usize::try_from(cell).unwrap_or(0)
        };
        let first = at(start_ns, false).min(self.cells - 1);
        let last = at(end_ns, true).clamp(first + 1, self.cells);
        (first, last)
    }
}

fn draw_bar(
    out: &mut String,
    span: &SpanView,
    critical: &[(i64, i64)],
    scale: &Scale,
    paint: Paint,
) {
    let (first, last) = scale.cells(
        span.start_offset_ns,
        span.start_offset_ns.saturating_add(span.duration_ns),
    );
    let mut on_path = vec![false; scale.cells];
    for &(start, end) in critical {
        let (from, to) = scale.cells(start, end);
        for cell in &mut on_path[from..to] {
            *cell = true;
        }
    }
    out.push_str(&" ".repeat(first));
    let mut current: Option<bool> = None;
    for &critical_cell in &on_path[first..last] {
        if paint.0 {
            if current != Some(critical_cell) {
                out.push_str(paint.on(if critical_cell { CRITICAL } else { BAR }));
                current = Some(critical_cell);
            }
            out.push('█');
        } else {
            out.push(if critical_cell { '#' } else { '=' });
        }
    }
    if current.is_some() {
        out.push_str(paint.off());
    }
    out.push_str(&" ".repeat(scale.cells - last));
}

/// One line: the top critical-path contributors by operation, then by service.
fn summary(trace: &TraceView) -> String {
    let total: i64 = trace.spans.iter().map(|s| s.critical_path_ns).sum();
    if total <= 0 {
        return "where the time went: the trace has no duration".to_owned();
    }
    let share = |ns: i64| ns as f64 * 100.0 / total as f64;
    let top: Vec<String> = trace
        .time_by_operation
        .iter()
        .filter(|op| op.critical_path_ns > 0)
        .take(4)
        .map(|op| {
            format!(
                "{:.1}% {} {}",
                share(op.critical_path_ns),
                op.service_name,
                op.name
            )
        })
        .collect();
    let mut by_service: BTreeMap<&str, i64> = BTreeMap::new();
    for op in &trace.time_by_operation {
        *by_service.entry(&op.service_name).or_default() += op.critical_path_ns;
    }
    let mut services: Vec<(&str, i64)> = by_service.into_iter().filter(|(_, ns)| *ns > 0).collect();
    services.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let services: Vec<String> = services
        .iter()
        .map(|(service, ns)| format!("{service} {:.1}%", share(*ns)))
        .collect();
    format!(
        "where the time went (critical path {}): {}; by service: {}",
        format_duration(total),
        top.join(", "),
        services.join(", ")
    )
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `850 ns`, `12.5 µs`, `12.34 ms`, `1.234 s`.
pub fn format_duration(ns: i64) -> String {
    let value = ns as f64;
    match ns.unsigned_abs() {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", value / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", value / 1e6),
        _ => format!("{:.3} s", value / 1e9),
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// ANSI escapes, or nothing.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn on(self, code: &'static str) -> &'static str {
        if self.0 { code } else { "" }
    }

    fn off(self) -> &'static str {
        if self.0 { RESET } else { "" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lighttrace_query::trace::{OperationView, SegmentView, ServiceView};
    use serde_json::json;

    const MS: i64 = 1_000_000;

    fn span(id: &str, service: &str, name: &str, depth: usize, start_ms: i64, ms: i64) -> SpanView {
        SpanView {
            span_id: id.into(),
            parent_span_id: None,
            project: "default".into(),
            service_name: service.into(),
            name: name.into(),
            kind: "internal".into(),
            status_code: "unset".into(),
            status_message: None,
            depth,
            orphan: false,
            blocks_parent: true,
            start_time: String::new(),
            end_time: String::new(),
            start_offset_ns: start_ms * MS,
            duration_ns: ms * MS,
            self_time_ns: 0,
            critical_path_ns: 0,
            clock_skew_ns: 0,
            attributes: json!({}),
            attribute_types: json!({}),
            resource_attributes: json!({}),
            resource_attribute_types: json!({}),
            scope_name: None,
            scope_version: None,
            events: json!([]),
            links: json!([]),
            source: "otlp".into(),
            errors: vec![],
            logs: vec![],
        }
    }

    /// The issue's example trace, as the server would answer it.
    fn example() -> TraceView {
        let mut spans = vec![
            span("a", "frontend", "GET /checkout", 0, 0, 100),
            span("b", "backend", "load cart", 1, 10, 15),
            span("d", "backend", "price", 1, 28, 32),
            span("c", "backend", "charge", 1, 30, 60),
        ];
        for (span, critical) in spans.iter_mut().zip([25, 15, 0, 60]) {
            span.critical_path_ns = critical * MS;
        }
        spans[3].status_code = "error".into();
        let segment = |id: &str, start: i64, ms: i64| SegmentView {
            span_id: id.into(),
            start_offset_ns: start * MS,
            duration_ns: ms * MS,
        };
        let op = |service: &str, name: &str, ms: i64| OperationView {
            service_name: service.into(),
            name: name.into(),
            span_count: 1,
            critical_path_ns: ms * MS,
            self_time_ns: 0,
        };
        TraceView {
            trace_id: "00000000000000000000000000000abc".into(),
            start_time: "2024-05-01T12:00:00.000000000Z".into(),
            start_time_unix_nano: 0,
            duration_ns: 100 * MS,
            span_count: 4,
            error_span_count: 1,
            projects: vec!["default".into()],
            services: vec![
                ServiceView {
                    service_name: "backend".into(),
                    span_count: 3,
                    error_span_count: 1,
                },
                ServiceView {
                    service_name: "frontend".into(),
                    span_count: 1,
                    error_span_count: 0,
                },
            ],
            warnings: vec![],
            critical_path: vec![
                segment("a", 0, 10),
                segment("b", 10, 15),
                segment("a", 25, 5),
                segment("c", 30, 60),
                segment("a", 90, 10),
            ],
            time_by_operation: vec![
                op("backend", "charge", 60),
                op("frontend", "GET /checkout", 25),
                op("backend", "load cart", 15),
                op("backend", "price", 0),
            ],
            spans,
            errors: vec![],
            logs: vec![],
        }
    }

    #[test]
    fn plain_waterfall_draws_to_scale() {
        let text = render(
            &example(),
            &Style {
                color: false,
                width: 80,
            },
        );
        assert!(!text.contains('\x1b'), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("trace 00000000000000000000000000000abc"),
            "{text}"
        );
        assert!(lines[0].ends_with("1 error"), "{text}");
        let rows: Vec<&str> = lines.iter().copied().filter(|l| l.ends_with('|')).collect();
        assert_eq!(rows.len(), 5, "header and four spans:\n{text}");
        assert!(rows.iter().all(|r| r.chars().count() == 80), "{text}");
        let bar = |row: &str| {
            let start = row.find('|').unwrap() + 1;
            row[start..row.len() - 1].to_owned()
        };
        // 100 ms over 20 cells... of whatever width is left: A covers it all.
        let root_bar = bar(rows[1]);
        assert!(!root_bar.contains(' '), "{root_bar}");
        assert!(
            root_bar.starts_with('#') && root_bar.ends_with('#'),
            "{root_bar}"
        );
        assert!(root_bar.contains('='), "{root_bar}");
        // price is off the critical path: no '#'.
        assert!(
            rows[3].contains("    price") || rows[3].contains("  price"),
            "{text}"
        );
        assert!(!bar(rows[3]).contains('#') && bar(rows[3]).contains('='));
        assert!(rows[4].starts_with(" ! * backend"), "{}", rows[4]);
        assert!(rows[4].contains("60.00 ms"));
        assert!(
            lines.last().unwrap().starts_with(
                "where the time went (critical path 100.00 ms): 60.0% backend charge, 25.0% frontend GET /checkout, 15.0% backend load cart; by service: backend 75.0%, frontend 25.0%"
            ),
            "{text}"
        );
    }

    #[test]
    fn colour_uses_ansi_escapes() {
        let text = render(
            &example(),
            &Style {
                color: true,
                width: 100,
            },
        );
        assert!(text.contains(CRITICAL) && text.contains(RESET) && text.contains('█'));
    }

    #[test]
    fn narrow_terminals_still_get_a_bar() {
        let text = render(
            &example(),
            &Style {
                color: false,
                width: 10,
            },
        );
        assert!(text.lines().any(|l| l.contains("|##=")), "{text}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(850), "850 ns");
        assert_eq!(format_duration(12_500), "12.5 µs");
        assert_eq!(format_duration(12_345_678), "12.35 ms");
        assert_eq!(format_duration(1_234_000_000), "1.234 s");
    }
}
