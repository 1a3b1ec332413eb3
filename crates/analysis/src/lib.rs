//! LightTrace analysis: what one trace's spans say about where the time went.
//!
//! This crate sits after the query in the read path: a trace lookup
//! (`lighttrace-query`) reads a trace's rows, turns them into [`Span`]s and
//! calls [`analyze`]; the server's `GET /api/v1/traces/{id}` and the CLI's
//! `lighttrace trace` show the result. Everything here is a pure function over
//! plain structs: no I/O, no Arrow, no LightTrace dependency, so it can be
//! tested (and fuzzed) with hand-made traces.
//!
//! [`analyze`] does, in this order:
//!
//! 1. **The span tree.** A span hangs under the span its `parent_span_id`
//!    names. Its parent not received: the span is an *orphan* and becomes a root
//!    of its own. A span without a parent that has a follows-from link to a span
//!    of the trace hangs under that span (a non-blocking edge, below). Two spans
//!    with one id (Zipkin's shared client/server spans, or a span sent twice)
//!    are chained: the server after the client, then by start time, each the
//!    child of the one before; the id's children hang under the last. Parent
//!    links that form a cycle are cut at the earliest-starting span of the
//!    cycle, which becomes a root. Orphans, several roots, duplicate ids and
//!    cycles are reported as [`Warning`]s. Siblings are ordered by (adjusted)
//!    start time.
//! 2. **Clock skew** ([`skew`]): a child whose clock is another one than its
//!    parent's (another service, or another host of the service) and that
//!    starts before its parent or ends after it is shifted into its parent,
//!    after Jaeger's clock-skew adjuster; its subtree on its own clock moves
//!    with it. The raw timestamps stay as they are; each span reports the shift
//!    applied to it ([`SpanAnalysis::clock_skew_ns`]).
//! 3. **Self time**: a span's interval minus the union of its children's
//!    intervals (clipped to the span).
//! 4. **The critical path** ([`critical_path`]): per root, the
//!    last-finishing-child walk; each span gets the time it spends on it
//!    ([`SpanAnalysis::critical_path_ns`]), and the per-root sums tile the
//!    roots' durations exactly.
//!
//! # Example
//!
//! The hand-computed trace of issue 4: a root A [0, 100 ms] with children
//! B [10, 25], D [28, 60] and C [30, 90].
//!
//! ```
//! use lighttrace_analysis::{Span, SpanKind, analyze};
//! const MS: i64 = 1_000_000;
//! let span = |id: &str, parent: Option<&str>, start: i64, end: i64| Span {
//!     parent_span_id: parent.map(str::to_owned),
//!     ..Span::new(id, "svc", id, SpanKind::Internal, start * MS, end * MS)
//! };
//! let spans = [
//!     span("a", None, 0, 100),
//!     span("b", Some("a"), 10, 25),
//!     span("d", Some("a"), 28, 60),
//!     span("c", Some("a"), 30, 90),
//! ];
//! let trace = analyze(&spans);
//! let critical: Vec<i64> = trace.spans.iter().map(|s| s.critical_path_ns / MS).collect();
//! assert_eq!(critical, [25, 15, 0, 60]); // A, B, D, C
//! assert_eq!(trace.spans[0].self_time_ns, 23 * MS);
//! assert!(trace.warnings.is_empty());
//! ```

mod critical_path;
pub mod skew;
mod tree;

use std::collections::BTreeMap;

pub use critical_path::Segment;

/// A span's kind, as far as the analysis cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// From the `kind` column's text (`server`, `client`, …); anything else is
    /// `Unspecified`. Case-insensitive.
    pub fn from_name(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// One span of the trace, as the analysis needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub span_id: String,
    /// `None` for a root.
    pub parent_span_id: Option<String>,
    pub name: String,
    pub service_name: String,
    pub kind: SpanKind,
    pub is_error: bool,
    /// Nanoseconds since the Unix epoch, as received.
    pub start_ns: i64,
    /// Nanoseconds since the Unix epoch, as received; an end before the start
    /// is taken as the start (a zero-length span).
    pub end_ns: i64,
    /// Which clock stamped this span: spans of one clock domain are never
    /// shifted against each other. [`Span::new`] uses the service name; the
    /// trace lookup adds the host (`host.name`) when the resource names it.
    pub clock_domain: String,
    /// Spans of the trace this span follows from (its cause, which does not
    /// wait for it): links marked follows-from, or a consumer's links.
    pub follows_from: Vec<String>,
}

impl Span {
    /// A span without parent, errors or links, whose clock is its service's.
    pub fn new(
        span_id: impl Into<String>,
        service_name: impl Into<String>,
        name: impl Into<String>,
        kind: SpanKind,
        start_ns: i64,
        end_ns: i64,
    ) -> Self {
        let service_name = service_name.into();
        Span {
            span_id: span_id.into(),
            parent_span_id: None,
            name: name.into(),
            clock_domain: service_name.clone(),
            service_name,
            kind,
            is_error: false,
            start_ns,
            end_ns,
            follows_from: Vec::new(),
        }
    }

    fn end_or_start(&self) -> i64 {
        self.end_ns.max(self.start_ns)
    }
}

/// What [`analyze`] found about one span; `TraceAnalysis::spans[i]` is about
/// the input's span `i`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpanAnalysis {
    /// The span it hangs under in the tree (an index into the input), `None`
    /// for a root.
    pub parent: Option<usize>,
    /// Its children, by adjusted start time.
    pub children: Vec<usize>,
    /// 0 for roots.
    pub depth: usize,
    /// The root of its tree.
    pub root: usize,
    /// Its `parent_span_id` names a span that is not in the trace.
    pub orphan: bool,
    /// Whether its parent waits for it: false for a consumer under a producer
    /// and for a follows-from edge (true for roots).
    pub blocks_parent: bool,
    /// The shift applied to its timestamps by the clock-skew adjustment
    /// (positive: moved later).
    pub clock_skew_ns: i64,
    /// Start and end after the clock-skew adjustment.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Its duration minus the union of its children's intervals.
    pub self_time_ns: i64,
    /// The time it spends on its tree's critical path.
    pub critical_path_ns: i64,
}

impl SpanAnalysis {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// Something about the trace's shape that a reader should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// These spans' parents were not received; each is shown as a root.
    Orphans(Vec<usize>),
    /// The trace has several roots (true roots and orphans), in tree order.
    MultipleRoots(Vec<usize>),
    /// These spans were shifted to fit their parents; the largest shift.
    ClockSkewAdjusted { spans: Vec<usize>, max_abs_ns: i64 },
    /// Several spans share an id; they were chained (see the crate docs).
    DuplicateSpanIds(Vec<String>),
    /// Parent links formed cycles; these spans were made roots to cut them.
    ParentCycles(Vec<usize>),
    /// These spans end before they start; they are taken as zero-length.
    EndBeforeStart(Vec<usize>),
}

impl Warning {
    /// A short machine-readable name: `orphans`, `multiple_roots`,
    /// `clock_skew_adjusted`, `duplicate_span_ids`, `parent_cycles`,
    /// `end_before_start`.
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::Orphans(_) => "orphans",
            Warning::MultipleRoots(_) => "multiple_roots",
            Warning::ClockSkewAdjusted { .. } => "clock_skew_adjusted",
            Warning::DuplicateSpanIds(_) => "duplicate_span_ids",
            Warning::ParentCycles(_) => "parent_cycles",
            Warning::EndBeforeStart(_) => "end_before_start",
        }
    }
}

/// The analysis of one trace. See the crate docs for the rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceAnalysis {
    /// One per input span, in input order.
    pub spans: Vec<SpanAnalysis>,
    /// Every span once, in tree order: each root (by start time) followed by its
    /// subtree, depth first, siblings by start time.
    pub order: Vec<usize>,
    /// The roots, by start time.
    pub roots: Vec<usize>,
    /// The earliest adjusted start and the latest adjusted end (0 and 0 for no
    /// spans).
    pub start_ns: i64,
    pub end_ns: i64,
    /// Each root's critical path in time order, the roots in tree order.
    pub critical_path: Vec<Segment>,
    pub warnings: Vec<Warning>,
}

impl TraceAnalysis {
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// Analyzes one trace's spans (any order; ids as text, compared exactly).
pub fn analyze(spans: &[Span]) -> TraceAnalysis {
    let mut analysis = TraceAnalysis {
        spans: vec![SpanAnalysis::default(); spans.len()],
        ..TraceAnalysis::default()
    };
    let ended_early: Vec<usize> = (0..spans.len())
        .filter(|&i| spans[i].end_ns < spans[i].start_ns)
        .collect();

    let shape = tree::build(spans, &mut analysis.spans);
    skew::adjust(spans, &mut analysis.spans, &shape.roots);
    tree::order(spans, &mut analysis, shape.roots);
    for index in 0..spans.len() {
        analysis.spans[index].self_time_ns = self_time(&analysis.spans, index);
    }
    analysis.critical_path = critical_path::compute(&mut analysis.spans, &analysis.roots);

    if !spans.is_empty() {
        analysis.start_ns = analysis.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        analysis.end_ns = analysis.spans.iter().map(|s| s.end_ns).max().unwrap_or(0);
    }

    let warnings = &mut analysis.warnings;
    if !shape.duplicate_ids.is_empty() {
        warnings.push(Warning::DuplicateSpanIds(shape.duplicate_ids));
    }
    let orphans: Vec<usize> = analysis
        .order
        .iter()
        .copied()
        .filter(|&i| analysis.spans[i].orphan)
        .collect();
    if !orphans.is_empty() {
        warnings.push(Warning::Orphans(orphans));
    }
    if !shape.cycle_cuts.is_empty() {
        warnings.push(Warning::ParentCycles(shape.cycle_cuts));
    }
    if analysis.roots.len() > 1 {
        warnings.push(Warning::MultipleRoots(analysis.roots.clone()));
    }
    let shifted: Vec<usize> = analysis
        .order
        .iter()
        .copied()
        .filter(|&i| analysis.spans[i].clock_skew_ns != 0)
        .collect();
    if !shifted.is_empty() {
        let max_abs_ns = shifted
            .iter()
            .map(|&i| analysis.spans[i].clock_skew_ns.saturating_abs())
            .max()
            .unwrap_or(0);
        warnings.push(Warning::ClockSkewAdjusted {
            spans: shifted,
            max_abs_ns,
        });
    }
    if !ended_early.is_empty() {
        warnings.push(Warning::EndBeforeStart(ended_early));
    }
    analysis
}

/// The span's duration minus the union of its children's (adjusted) intervals,
/// clipped to the span's own.
fn self_time(spans: &[SpanAnalysis], index: usize) -> i64 {
    let span = &spans[index];
    let mut intervals: Vec<(i64, i64)> = span
        .children
        .iter()
        .map(|&child| {
            let child = &spans[child];
            (
                child.start_ns.clamp(span.start_ns, span.end_ns),
                child.end_ns.clamp(span.start_ns, span.end_ns),
            )
        })
        .filter(|(start, end)| start < end)
        .collect();
    intervals.sort_unstable();
    let mut covered = 0i64;
    let mut current: Option<(i64, i64)> = None;
    for (start, end) in intervals {
        current = match current {
            Some((from, to)) if start <= to => Some((from, to.max(end))),
            Some((from, to)) => {
                covered = covered.saturating_add(to.saturating_sub(from));
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((from, to)) = current {
        covered = covered.saturating_add(to.saturating_sub(from));
    }
    span.duration_ns().saturating_sub(covered)
}

/// Critical-path and self time summed per (service, operation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationTime {
    pub service_name: String,
    pub name: String,
    pub spans: usize,
    pub critical_path_ns: i64,
    pub self_time_ns: i64,
}

/// Where the time went: every (service, operation) of the trace with the
/// critical-path time and self time of its spans, most critical-path time first
/// (then most self time, then by name).
pub fn time_by_operation(spans: &[Span], analysis: &TraceAnalysis) -> Vec<OperationTime> {
    let mut by_operation: BTreeMap<(&str, &str), OperationTime> = BTreeMap::new();
    for (span, result) in spans.iter().zip(&analysis.spans) {
        let entry = by_operation
            .entry((&span.service_name, &span.name))
            .or_insert_with(|| OperationTime {
                service_name: span.service_name.clone(),
                name: span.name.clone(),
                spans: 0,
                critical_path_ns: 0,
                self_time_ns: 0,
            });
        entry.spans += 1;
        entry.critical_path_ns = entry
            .critical_path_ns
            .saturating_add(result.critical_path_ns);
        entry.self_time_ns = entry.self_time_ns.saturating_add(result.self_time_ns);
    }
    let mut operations: Vec<OperationTime> = by_operation.into_values().collect();
    operations.sort_by(|a, b| {
        b.critical_path_ns
            .cmp(&a.critical_path_ns)
            .then(b.self_time_ns.cmp(&a.self_time_ns))
            .then_with(|| (&a.service_name, &a.name).cmp(&(&b.service_name, &b.name)))
    });
    operations
}
