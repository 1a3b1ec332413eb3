//! Clock-skew adjustment, after Jaeger's clock-skew adjuster.
//!
//! Spans are stamped by the clocks of the machines that ran them. A server
//! span whose host's clock runs 40 ms behind its caller's can start before the
//! client span that called it; drawn as received, the waterfall lies and the
//! critical path is wrong. The rules:
//!
//! 1. A span's **clock domain** ([`Span::clock_domain`](crate::Span)) says which
//!    clock stamped it: the service, and the host when known. Roots are never
//!    shifted.
//! 2. A child in its parent's clock domain is shifted by exactly as much as its
//!    parent was (their clocks agree, so their relative timing is real, even
//!    when the child outlives the parent).
//! 3. A child in another clock domain gets its own shift, computed against its
//!    parent's *adjusted* interval by [`shift_for`]:
//!    * it fits inside its parent: no shift;
//!    * it is longer than its parent: its start is aligned with its parent's
//!      start (the best one can do);
//!    * otherwise it is centred in its parent: the time between the parent's
//!      start and the child's start is taken to equal the time between the
//!      child's end and the parent's end (network latency split evenly between
//!      request and response).
//! 4. A child that does not block its parent (a consumer under a producer, a
//!    follows-from edge) may legitimately start or end after its parent ends;
//!    it is only shifted when it starts before its parent, onto the parent's
//!    start, since an effect cannot precede its cause.
//! 5. A shifted span's descendants in its clock domain move with it (rule 2),
//!    and the raw timestamps stay untouched: the shift is reported per span.

use crate::{Span, SpanAnalysis};

/// The shift (ns, positive = later) that moves a child from another clock
/// domain, received as `[child_start, child_end]`, into its parent's adjusted
/// interval `[parent_start, parent_end]`; see the module docs. `blocking` is
/// false for children the parent does not wait for.
pub fn shift_for(
    parent_start: i64,
    parent_end: i64,
    child_start: i64,
    child_end: i64,
    blocking: bool,
) -> i64 {
    let (parent_start, parent_end) = (i128::from(parent_start), i128::from(parent_end));
    let (child_start, child_end) = (i128::from(child_start), i128::from(child_end));
    let shift = if !blocking {
        if child_start < parent_start {
            parent_start - child_start
        } else {
            0
        }
    } else if child_start >= parent_start && child_end <= parent_end {
        0
    } else {
        let parent_duration = parent_end - parent_start;
        let child_duration = child_end - child_start;
        if child_duration > parent_duration {
            parent_start - child_start
        } else {
            parent_start + (parent_duration - child_duration) / 2 - child_start
        }
    };
    clamp_i64(shift)
}

fn clamp_i64(value: i128) -> i64 {
    value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Sets `clock_skew_ns`, `start_ns` and `end_ns` of every span, parents
/// before children. Needs the tree (`parent`, `children`, `blocks_parent`).
pub(crate) fn adjust(spans: &[Span], out: &mut [SpanAnalysis], roots: &[usize]) {
    let mut stack: Vec<usize> = roots.to_vec();
    while let Some(index) = stack.pop() {
        let span = &spans[index];
        let (start, end) = (span.start_ns, span.end_or_start());
        let shift = match out[index].parent {
            None => 0,
            Some(parent) if spans[parent].clock_domain == span.clock_domain => {
                out[parent].clock_skew_ns
            }
            Some(parent) => shift_for(
                out[parent].start_ns,
                out[parent].end_ns,
                start,
                end,
                out[index].blocks_parent,
            ),
        };
        let result = &mut out[index];
        result.clock_skew_ns = shift;
        result.start_ns = start.saturating_add(shift);
        result.end_ns = end.saturating_add(shift).max(result.start_ns);
        stack.extend(result.children.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_inside_its_parent_stays() {
        assert_eq!(shift_for(0, 100, 0, 100, true), 0);
        assert_eq!(shift_for(0, 100, 10, 20, true), 0);
    }

    #[test]
    fn a_child_sticking_out_is_centred() {
        // 80 long in a parent of 100: 10 on each side.
        assert_eq!(shift_for(0, 100, -20, 60, true), 30);
        assert_eq!(shift_for(0, 100, 50, 130, true), -40);
    }

    #[test]
    fn a_child_longer_than_its_parent_starts_with_it() {
        assert_eq!(shift_for(0, 50, 100, 200, true), -100);
        assert_eq!(shift_for(0, 50, -30, 70, true), 30);
    }

    #[test]
    fn a_non_blocking_child_only_moves_when_it_starts_too_early() {
        assert_eq!(shift_for(0, 10, 50, 80, false), 0);
        assert_eq!(shift_for(10, 20, 5, 30, false), 5);
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        assert_eq!(
            shift_for(i64::MAX, i64::MAX, i64::MIN, i64::MIN, true),
            i64::MAX
        );
        assert_eq!(
            shift_for(i64::MIN, i64::MIN, i64::MAX, i64::MAX, true),
            i64::MIN
        );
    }
}
