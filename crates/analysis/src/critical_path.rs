//! The critical path: the chain of work that decided when each root finished.
//!
//! The last-finishing-child walk (as in Jaeger's trace view), per root, over
//! the adjusted times:
//!
//! 1. Walk a span's window `[lo, hi]` (a root's: its interval) backwards from
//!    a cursor at `hi`.
//! 2. Its candidate children are those that block it (a consumer under a
//!    producer, or a follows-from child, never does), each clamped to the
//!    window: a child that outlives its parent counts only up to the parent's
//!    end (and from its start); a child wholly outside counts not at all.
//! 3. The last-finishing candidate that ends at or before the cursor (a child
//!    ending exactly when the next one starts still counts) takes the path: the
//!    span owns `[child end, cursor]`, the child's own window is walked the same
//!    way, and the cursor moves to the child's start. Among children ending at
//!    the same time the one that started first wins.
//! 4. With no such child left, the span owns `[lo, cursor]`.
//!
//! Every window is tiled by its span's sections and its chosen children's
//! windows, so the sections of one root add up to its duration exactly.
//! Children are walked with an explicit stack: a trace may be deep.

use crate::SpanAnalysis;

/// One section of a critical path: `span` (an input index) over `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub span: usize,
    pub start_ns: i64,
    pub end_ns: i64,
}

struct Window {
    span: usize,
    lo: i64,
    cursor: i64,
    /// Candidate children `(start, end, index)`, clamped, last-finishing first.
    candidates: Vec<(i64, i64, usize)>,
    next: usize,
}

impl Window {
    fn new(spans: &[SpanAnalysis], span: usize, lo: i64, hi: i64) -> Self {
        let mut candidates: Vec<(i64, i64, usize)> = spans[span]
            .children
            .iter()
            .filter(|&&child| spans[child].blocks_parent)
            .filter_map(|&child| {
                let (start, end) = (spans[child].start_ns, spans[child].end_ns);
                (start <= hi && end >= lo).then(|| (start.max(lo), end.min(hi), child))
            })
            .collect();
        // Latest end first; then earliest start; then input order.
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)).then(a.2.cmp(&b.2)));
        Window {
            span,
            lo,
            cursor: hi,
            candidates,
            next: 0,
        }
    }
}

/// Sets `critical_path_ns` of every span; returns the segments, each root's in
/// time order, roots in the order given.
pub(crate) fn compute(spans: &mut [SpanAnalysis], roots: &[usize]) -> Vec<Segment> {
    let mut all = Vec::new();
    for &root in roots {
        let mut segments = Vec::new();
        let (lo, hi) = (spans[root].start_ns, spans[root].end_ns);
        let mut stack = vec![Window::new(spans, root, lo, hi)];
        while let Some(window) = stack.last_mut() {
            let chosen = loop {
                let Some(&(start, end, child)) = window.candidates.get(window.next) else {
                    break None;
                };
                window.next += 1;
                if end <= window.cursor {
                    break Some((start, end, child));
                }
            };
            match chosen {
                Some((start, end, child)) => {
                    push(&mut segments, window.span, end, window.cursor);
                    window.cursor = start;
                    let next = Window::new(spans, child, start, end);
                    stack.push(next);
                }
                None => {
                    push(&mut segments, window.span, window.lo, window.cursor);
                    stack.pop();
                }
            }
        }
        for segment in &segments {
            let span = &mut spans[segment.span];
            span.critical_path_ns = span
                .critical_path_ns
                .saturating_add(segment.end_ns.saturating_sub(segment.start_ns));
        }
        segments.reverse();
        all.extend(segments);
    }
    all
}

/// Records a non-empty section; the walk goes backwards in time.
fn push(segments: &mut Vec<Segment>, span: usize, start_ns: i64, end_ns: i64) {
    if end_ns > start_ns {
        segments.push(Segment {
            span,
            start_ns,
            end_ns,
        });
    }
}
