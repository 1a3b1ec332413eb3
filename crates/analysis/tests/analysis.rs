//! The analysis against hand-computed traces, and properties that hold for any
//! trace (proptest).

use lighttrace_analysis::{Span, SpanKind, TraceAnalysis, Warning, analyze, time_by_operation};
use proptest::prelude::*;

const MS: i64 = 1_000_000;

/// A span of `service`, `[start_ms, end_ms]`.
fn span(id: &str, parent: Option<&str>, service: &str, start_ms: i64, end_ms: i64) -> Span {
    Span {
        parent_span_id: parent.map(str::to_owned),
        ..Span::new(
            id,
            service,
            format!("op {id}"),
            SpanKind::Internal,
            start_ms * MS,
            end_ms * MS,
        )
    }
}

fn with_kind(mut span: Span, kind: SpanKind) -> Span {
    span.kind = kind;
    span
}

/// `(span id, critical path ms)` of every span, in input order.
fn critical_ms(spans: &[Span], trace: &TraceAnalysis) -> Vec<(String, i64)> {
    spans
        .iter()
        .zip(&trace.spans)
        .map(|(s, a)| (s.span_id.clone(), a.critical_path_ns / MS))
        .collect()
}

fn ids(spans: &[Span], indices: &[usize]) -> Vec<String> {
    indices.iter().map(|&i| spans[i].span_id.clone()).collect()
}

fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(id, ms)| (id.to_string(), *ms)).collect()
}

#[test]
fn the_issue_example_critical_path_and_self_time() {
    let spans = [
        span("a", None, "svc", 0, 100),
        span("b", Some("a"), "svc", 10, 25),
        span("d", Some("a"), "svc", 28, 60),
        span("c", Some("a"), "svc", 30, 90),
    ];
    let trace = analyze(&spans);
    assert_eq!(
        critical_ms(&spans, &trace),
        pairs(&[("a", 25), ("b", 15), ("d", 0), ("c", 60)])
    );
    assert_eq!(trace.spans[0].self_time_ns, 23 * MS);
    assert_eq!(trace.spans[1].self_time_ns, 15 * MS);
    assert_eq!(ids(&spans, &trace.order), ["a", "b", "d", "c"]);
    assert_eq!(
        trace.spans.iter().map(|s| s.depth).collect::<Vec<_>>(),
        [0, 1, 1, 1]
    );
    assert_eq!((trace.start_ns, trace.end_ns), (0, 100 * MS));
    assert!(trace.warnings.is_empty(), "{:?}", trace.warnings);
    // The path in time order: A until B starts, B, A, C, A.
    let path: Vec<(String, i64, i64)> = trace
        .critical_path
        .iter()
        .map(|s| {
            (
                spans[s.span].span_id.clone(),
                s.start_ns / MS,
                s.end_ns / MS,
            )
        })
        .collect();
    let expected = [
        ("a", 0, 10),
        ("b", 10, 25),
        ("a", 25, 30),
        ("c", 30, 90),
        ("a", 90, 100),
    ];
    assert_eq!(
        path,
        expected
            .iter()
            .map(|(id, s, e)| (id.to_string(), *s, *e))
            .collect::<Vec<_>>()
    );

    let summary = time_by_operation(&spans, &trace);
    assert_eq!(summary[0].name, "op c");
    assert_eq!(summary[0].critical_path_ns, 60 * MS);
    assert_eq!(summary[1].name, "op a");
}

#[test]
fn a_child_ending_exactly_when_the_next_starts_is_on_the_path() {
    // Sequential calls: b ends at 40, c starts at 40.
    let spans = [
        span("a", None, "svc", 0, 100),
        span("b", Some("a"), "svc", 10, 40),
        span("c", Some("a"), "svc", 40, 90),
    ];
    let trace = analyze(&spans);
    assert_eq!(
        critical_ms(&spans, &trace),
        pairs(&[("a", 20), ("b", 30), ("c", 50)])
    );
}

#[test]
fn nested_children_walk_their_own_windows() {
    let spans = [
        span("root", None, "svc", 0, 100),
        span("mid", Some("root"), "svc", 10, 90),
        span("leaf1", Some("mid"), "svc", 20, 40),
        span("leaf2", Some("mid"), "svc", 35, 80),
        span("leaf3", Some("mid"), "svc", 30, 50),
    ];
    let trace = analyze(&spans);
    // mid's walk from 90: leaf2 [35, 80]; from 35 nothing ends at or before 35
    // except nothing (leaf1 ends 40, leaf3 50): mid owns [10, 35] and [80, 90].
    assert_eq!(
        critical_ms(&spans, &trace),
        pairs(&[
            ("root", 20),
            ("mid", 35),
            ("leaf1", 0),
            ("leaf2", 45),
            ("leaf3", 0)
        ])
    );
    assert_eq!(trace.spans[1].self_time_ns, 20 * MS); // 80 - [20, 80]
    assert_eq!(
        trace.spans.iter().map(|s| s.depth).collect::<Vec<_>>(),
        [0, 1, 2, 2, 2]
    );
    assert_eq!(
        ids(&spans, &trace.order),
        ["root", "mid", "leaf1", "leaf3", "leaf2"]
    );
}

#[test]
fn children_outliving_their_parent_are_clamped_on_the_path() {
    // Same clock (same service): no skew adjustment, the overhang is real.
    let spans = [
        span("a", None, "svc", 0, 100),
        span("b", Some("a"), "svc", 0, 10),
        span("late", Some("b"), "svc", 5, 60),
    ];
    let trace = analyze(&spans);
    assert_eq!(
        critical_ms(&spans, &trace),
        pairs(&[("a", 90), ("b", 5), ("late", 5)])
    );
    assert_eq!(trace.spans[1].self_time_ns, 5 * MS);
    assert_eq!(trace.spans[2].clock_skew_ns, 0);
}

#[test]
fn a_consumer_under_a_producer_does_not_block_it() {
    let spans = [
        span("root", None, "shop", 0, 20),
        with_kind(
            span("send", Some("root"), "shop", 2, 10),
            SpanKind::Producer,
        ),
        with_kind(
            span("receive", Some("send"), "mailer", 50, 80),
            SpanKind::Consumer,
        ),
        span("work", Some("receive"), "mailer", 55, 75),
    ];
    let trace = analyze(&spans);
    assert_eq!(
        critical_ms(&spans, &trace),
        pairs(&[("root", 12), ("send", 8), ("receive", 0), ("work", 0)])
    );
    // Starting after the producer ended is normal for a consumer: no shift.
    assert_eq!(trace.spans[2].clock_skew_ns, 0);
    assert!(!trace.spans[2].blocks_parent);
    assert_eq!((trace.start_ns, trace.end_ns), (0, 80 * MS));
}

#[test]
fn follows_from_links_attach_without_blocking() {
    let mut batch = span("batch", None, "worker", 30, 60);
    batch.follows_from = vec!["enqueue".into()];
    let mut linked_child = span("linked", Some("root"), "svc", 5, 95);
    linked_child.follows_from = vec!["root".into()];
    let spans = [
        span("root", None, "svc", 0, 100),
        span("enqueue", Some("root"), "svc", 10, 20),
        batch,
        linked_child,
    ];
    let trace = analyze(&spans);
    assert_eq!(trace.roots, [0], "the batch hangs under its cause");
    assert_eq!(trace.spans[2].parent, Some(1));
    assert!(!trace.spans[2].blocks_parent);
    assert!(!trace.spans[3].blocks_parent);
    assert_eq!(
        critical_ms(&spans, &trace),
        pairs(&[("root", 90), ("enqueue", 10), ("batch", 0), ("linked", 0)])
    );
    assert!(trace.warnings.is_empty(), "{:?}", trace.warnings);
}

#[test]
fn clock_skew_shifts_a_remote_child_and_its_local_subtree() {
    let spans = [
        with_kind(span("call", None, "frontend", 0, 100), SpanKind::Client),
        // backend's clock is 30 ms behind: received [-20, 60], 80 ms long.
        with_kind(
            span("serve", Some("call"), "backend", -20, 60),
            SpanKind::Server,
        ),
        span("query", Some("serve"), "backend", -10, 40),
        // A third service called by backend whose clock is right relative to
        // backend's *adjusted* time: fits, no shift of its own.
        span("cache", Some("serve"), "cache", 45, 50),
    ];
    let trace = analyze(&spans);
    let skews: Vec<i64> = trace.spans.iter().map(|s| s.clock_skew_ns / MS).collect();
    assert_eq!(skews, [0, 30, 30, 0]);
    assert_eq!(
        (trace.spans[1].start_ns / MS, trace.spans[1].end_ns / MS),
        (10, 90)
    );
    assert_eq!(
        (trace.spans[2].start_ns / MS, trace.spans[2].end_ns / MS),
        (20, 70)
    );
    assert_eq!(trace.start_ns, 0);
    // The raw times are the input's; durations do not change.
    assert_eq!(trace.spans[1].duration_ns(), 80 * MS);
    assert!(trace.warnings.iter().any(|w| matches!(
        w,
        Warning::ClockSkewAdjusted { spans, max_abs_ns } if spans == &[1, 2] && *max_abs_ns == 30 * MS
    )));
    // The adjusted tree is consistent: the path tiles the root.
    let total: i64 = trace.spans.iter().map(|s| s.critical_path_ns).sum();
    assert_eq!(total, 100 * MS);
    assert_eq!(
        critical_ms(&spans, &trace),
        pairs(&[("call", 20), ("serve", 30), ("query", 50), ("cache", 0)])
    );
}

#[test]
fn clock_skew_aligns_a_child_longer_than_its_parent() {
    let spans = [
        span("a", None, "frontend", 0, 50),
        span("b", Some("a"), "backend", 100, 200),
    ];
    let trace = analyze(&spans);
    assert_eq!(trace.spans[1].clock_skew_ns, -100 * MS);
    assert_eq!(trace.spans[1].start_ns, 0);
    // Clamped to the parent on the critical path.
    assert_eq!(critical_ms(&spans, &trace), pairs(&[("a", 0), ("b", 50)]));
}

#[test]
fn a_host_is_its_own_clock_domain() {
    let mut other_host = span("b", Some("a"), "svc", 90, 130);
    other_host.clock_domain = "svc@host-2".into();
    let spans = [span("a", None, "svc", 0, 100), other_host];
    let trace = analyze(&spans);
    assert_eq!(trace.spans[1].clock_skew_ns, -60 * MS); // centred: [30, 70]
}

#[test]
fn orphans_become_roots_and_are_reported() {
    let spans = [
        span("root", None, "svc", 0, 100),
        span("child", Some("root"), "svc", 10, 20),
        span("lost", Some("never-received"), "svc", 30, 60),
        span("under-lost", Some("lost"), "svc", 35, 50),
    ];
    let trace = analyze(&spans);
    assert_eq!(ids(&spans, &trace.roots), ["root", "lost"]);
    assert!(trace.spans[2].orphan);
    assert_eq!(trace.spans[3].depth, 1);
    assert_eq!(trace.spans[3].root, 2);
    assert_eq!(
        ids(&spans, &trace.order),
        ["root", "child", "lost", "under-lost"]
    );
    assert!(trace.warnings.contains(&Warning::Orphans(vec![2])));
    assert!(trace.warnings.contains(&Warning::MultipleRoots(vec![0, 2])));
    // Each tree has its own critical path.
    assert_eq!(
        critical_ms(&spans, &trace),
        pairs(&[
            ("root", 90),
            ("child", 10),
            ("lost", 15),
            ("under-lost", 15)
        ])
    );
}

#[test]
fn several_true_roots_are_reported_in_start_order() {
    let spans = [
        span("late", None, "svc", 50, 60),
        span("early", None, "svc", 0, 10),
    ];
    let trace = analyze(&spans);
    assert_eq!(ids(&spans, &trace.roots), ["early", "late"]);
    assert_eq!(trace.warnings, [Warning::MultipleRoots(vec![1, 0])]);
    assert_eq!((trace.start_ns, trace.end_ns), (0, 60 * MS));
}

#[test]
fn zero_length_and_overlapping_spans() {
    let spans = [
        span("a", None, "svc", 0, 100),
        span("mark", Some("a"), "svc", 100, 100),
        span("x", Some("a"), "svc", 10, 70),
        span("y", Some("a"), "svc", 20, 70),
        span("z", Some("a"), "svc", 60, 60),
        span("empty-root", None, "svc", 40, 40),
    ];
    let trace = analyze(&spans);
    // From 100: the zero-length mark (ends at 100) takes 0, then x and y end
    // together at 70: x started first and wins; from 10 nothing ends earlier.
    assert_eq!(
        critical_ms(&spans, &trace),
        pairs(&[
            ("a", 40),
            ("mark", 0),
            ("x", 60),
            ("y", 0),
            ("z", 0),
            ("empty-root", 0)
        ])
    );
    assert_eq!(trace.spans[0].self_time_ns, 40 * MS);
    assert_eq!(trace.spans[1].self_time_ns, 0);
    assert_eq!(trace.spans[5].self_time_ns, 0);
}

#[test]
fn an_end_before_the_start_is_a_zero_length_span() {
    let spans = [
        span("a", None, "svc", 0, 100),
        span("b", Some("a"), "svc", 50, 40),
    ];
    let trace = analyze(&spans);
    assert_eq!(trace.spans[1].duration_ns(), 0);
    assert!(trace.warnings.contains(&Warning::EndBeforeStart(vec![1])));
    assert_eq!(trace.spans[0].critical_path_ns, 100 * MS);
}

#[test]
fn zipkin_shared_span_ids_chain_server_after_client() {
    let spans = [
        with_kind(span("s1", None, "frontend", 0, 100), SpanKind::Server),
        // Zipkin: the server half reuses the client's id.
        with_kind(span("s2", Some("s1"), "backend", 15, 85), SpanKind::Server),
        with_kind(span("s2", Some("s1"), "frontend", 10, 90), SpanKind::Client),
        span("db", Some("s2"), "backend", 20, 80),
    ];
    let trace = analyze(&spans);
    assert_eq!(trace.spans[2].parent, Some(0));
    assert_eq!(trace.spans[1].parent, Some(2));
    assert_eq!(trace.spans[3].parent, Some(1));
    assert_eq!(
        trace.spans.iter().map(|s| s.depth).collect::<Vec<_>>(),
        [0, 2, 1, 3]
    );
    assert!(
        trace
            .warnings
            .contains(&Warning::DuplicateSpanIds(vec!["s2".into()]))
    );
}

#[test]
fn parent_cycles_are_cut_at_the_earliest_span() {
    let spans = [
        span("root", None, "svc", 0, 100),
        span("x", Some("y"), "svc", 20, 30),
        span("y", Some("x"), "svc", 10, 40),
        span("self", Some("self"), "svc", 50, 60),
    ];
    let trace = analyze(&spans);
    assert_eq!(ids(&spans, &trace.roots), ["root", "y", "self"]);
    assert_eq!(trace.spans[1].parent, Some(2));
    assert!(trace.warnings.contains(&Warning::ParentCycles(vec![2, 3])));
    assert_eq!(trace.order.len(), 4);
}

#[test]
fn an_empty_trace_is_empty() {
    let trace = analyze(&[]);
    assert!(trace.order.is_empty() && trace.warnings.is_empty());
    assert_eq!(trace.duration_ns(), 0);
}

#[test]
fn a_deep_chain_does_not_overflow_the_stack() {
    let spans: Vec<Span> = (0..200_000i64)
        .map(|i| {
            let parent = (i > 0).then(|| (i - 1).to_string());
            span(&i.to_string(), parent.as_deref(), "svc", i, 400_000 - i)
        })
        .collect();
    let trace = analyze(&spans);
    assert_eq!(trace.spans[199_999].depth, 199_999);
    let total: i64 = trace.spans.iter().map(|s| s.critical_path_ns).sum();
    assert_eq!(total, 400_000 * MS);
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// A random trace: span `i`'s parent is one of the spans before it, or a
/// missing id, or none; kinds, services (clocks) and times at random.
fn arbitrary_trace() -> impl Strategy<Value = Vec<Span>> {
    let one = (
        any::<u32>(),
        0u8..8,
        0u8..3,
        -1_000i64..1_000,
        0i64..1_500,
        any::<bool>(),
    );
    prop::collection::vec(one, 1..40).prop_map(|rows| {
        let count = rows.len();
        rows.into_iter()
            .enumerate()
            .map(|(i, (parent_pick, kind, service, start, length, link))| {
                let parent = match parent_pick % 10 {
                    _ if i == 0 => None,
                    0 => None,
                    1 => Some("missing".to_string()),
                    // Occasionally any span, even later ones: cycles.
                    2 => Some((parent_pick as usize % count).to_string()),
                    _ => Some((parent_pick as usize % i).to_string()),
                };
                let kind = [
                    SpanKind::Server,
                    SpanKind::Client,
                    SpanKind::Internal,
                    SpanKind::Producer,
                    SpanKind::Consumer,
                    SpanKind::Unspecified,
                    SpanKind::Server,
                    SpanKind::Client,
                ][kind as usize];
                let mut span = Span::new(
                    i.to_string(),
                    format!("svc{service}"),
                    "op",
                    kind,
                    start,
                    start + length,
                );
                span.parent_span_id = parent;
                if link && i > 0 {
                    span.follows_from = vec![(parent_pick as usize % i).to_string()];
                }
                span
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_critical_path_tiles_each_root_exactly(spans in arbitrary_trace()) {
        let trace = analyze(&spans);
        for &root in &trace.roots {
            let on_path: i64 = trace
                .spans
                .iter()
                .filter(|s| s.root == root)
                .map(|s| s.critical_path_ns)
                .sum();
            prop_assert_eq!(on_path, trace.spans[root].duration_ns());
            let segments: Vec<_> = trace
                .critical_path
                .iter()
                .filter(|s| trace.spans[s.span].root == root)
                .collect();
            // Contiguous, in time order, from the root's start to its end.
            let mut cursor = trace.spans[root].start_ns;
            for segment in segments {
                prop_assert_eq!(segment.start_ns, cursor);
                prop_assert!(segment.end_ns > segment.start_ns);
                cursor = segment.end_ns;
            }
            if trace.spans[root].duration_ns() > 0 {
                prop_assert_eq!(cursor, trace.spans[root].end_ns);
            }
        }
    }

    #[test]
    fn self_time_and_critical_time_stay_within_the_span(spans in arbitrary_trace()) {
        let trace = analyze(&spans);
        for span in &trace.spans {
            prop_assert!(span.self_time_ns >= 0);
            prop_assert!(span.self_time_ns <= span.duration_ns());
            prop_assert!(span.critical_path_ns >= 0);
            prop_assert!(span.critical_path_ns <= span.duration_ns());
        }
    }

    #[test]
    fn the_tree_holds_every_span_once(spans in arbitrary_trace()) {
        let trace = analyze(&spans);
        let mut seen = vec![0; spans.len()];
        for &i in &trace.order {
            seen[i] += 1;
        }
        prop_assert!(seen.iter().all(|&n| n == 1));
        for (i, span) in trace.spans.iter().enumerate() {
            match span.parent {
                None => {
                    prop_assert_eq!(span.depth, 0);
                    prop_assert!(trace.roots.contains(&i));
                    prop_assert_eq!(span.root, i);
                }
                Some(parent) => {
                    prop_assert_eq!(span.depth, trace.spans[parent].depth + 1);
                    prop_assert!(trace.spans[parent].children.contains(&i));
                    prop_assert_eq!(span.root, trace.spans[parent].root);
                }
            }
            // Durations are the raw ones: the adjustment only shifts.
            prop_assert_eq!(
                span.duration_ns(),
                (spans[i].end_ns - spans[i].start_ns).max(0)
            );
        }
        // A parent comes before its children in tree order.
        let mut position = vec![0; spans.len()];
        for (at, &i) in trace.order.iter().enumerate() {
            position[i] = at;
        }
        for (i, span) in trace.spans.iter().enumerate() {
            if let Some(parent) = span.parent {
                prop_assert!(position[parent] < position[i]);
            }
        }
    }

    #[test]
    fn a_blocking_child_on_another_clock_ends_up_inside_its_parent(spans in arbitrary_trace()) {
        let trace = analyze(&spans);
        for (i, span) in trace.spans.iter().enumerate() {
            let Some(parent) = span.parent else { continue };
            let parent_span = &trace.spans[parent];
            // Unless it is longer than its parent: then it starts with it.
            if spans[parent].clock_domain != spans[i].clock_domain && span.blocks_parent {
                prop_assert!(span.start_ns >= parent_span.start_ns);
                if span.duration_ns() <= parent_span.duration_ns() {
                    prop_assert!(span.end_ns <= parent_span.end_ns);
                } else {
                    prop_assert_eq!(span.start_ns, parent_span.start_ns);
                }
            }
        }
    }
}
