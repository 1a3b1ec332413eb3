//! The span tree: parents, children, roots, tree order and depth.

use std::collections::HashMap;

use crate::{Span, SpanAnalysis, SpanKind, TraceAnalysis};

/// What [`build`] found besides the parent links it stored.
pub(crate) struct Shape {
    /// Spans without a parent in the tree, in no particular order.
    pub roots: Vec<usize>,
    pub duplicate_ids: Vec<String>,
    pub cycle_cuts: Vec<usize>,
}

/// Sets `parent`, `children`, `orphan` and `blocks_parent` of every span.
pub(crate) fn build(spans: &[Span], out: &mut [SpanAnalysis]) -> Shape {
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::with_capacity(spans.len());
    for (index, span) in spans.iter().enumerate() {
        by_id.entry(&span.span_id).or_default().push(index);
    }

    // The span that children naming an id hang under, and the spans whose
    // parent is decided by their own `parent_span_id`.
    let mut owner: HashMap<&str, usize> = HashMap::with_capacity(by_id.len());
    let mut heads = Vec::with_capacity(spans.len());
    let mut duplicate_ids = Vec::new();
    for (id, mut group) in by_id {
        if group.len() > 1 {
            // Zipkin's shared spans: the server half continues the client half.
            group.sort_by_key(|&i| (spans[i].kind == SpanKind::Server, spans[i].start_ns, i));
            for pair in group.windows(2) {
                out[pair[1]].parent = Some(pair[0]);
                out[pair[1]].blocks_parent = true;
            }
            duplicate_ids.push(id.to_owned());
        }
        heads.push(group[0]);
        owner.insert(id, group[group.len() - 1]);
    }
    duplicate_ids.sort();
    heads.sort_unstable();

    for &index in &heads {
        let span = &spans[index];
        let parent = match &span.parent_span_id {
            Some(parent_id) => match owner.get(parent_id.as_str()) {
                Some(&parent) => Some(parent),
                None => {
                    out[index].orphan = true;
                    None
                }
            },
            None => span
                .follows_from
                .iter()
                .filter_map(|id| owner.get(id.as_str()).copied())
                .find(|&cause| cause != index),
        };
        out[index].parent = parent;
        out[index].blocks_parent = match parent {
            Some(parent) => blocks(&spans[parent], span),
            None => true,
        };
    }

    for index in 0..spans.len() {
        if let Some(parent) = out[index].parent {
            out[parent].children.push(index);
        }
    }
    let mut roots: Vec<usize> = (0..spans.len())
        .filter(|&i| out[i].parent.is_none())
        .collect();

    // Whatever no root reaches hangs off a cycle of parent links.
    let mut reached = vec![false; spans.len()];
    for &root in &roots {
        mark_subtree(out, root, &mut reached);
    }
    let mut cycle_cuts = Vec::new();
    if reached.iter().any(|r| !r) {
        let mut unreached: Vec<usize> = (0..spans.len()).filter(|&i| !reached[i]).collect();
        unreached.sort_by_key(|&i| (spans[i].start_ns, i));
        for index in unreached {
            if reached[index] {
                continue;
            }
            if let Some(parent) = out[index].parent.take() {
                out[parent].children.retain(|&child| child != index);
            }
            out[index].blocks_parent = true;
            cycle_cuts.push(index);
            roots.push(index);
            mark_subtree(out, index, &mut reached);
        }
    }
    Shape {
        roots,
        duplicate_ids,
        cycle_cuts,
    }
}

/// Whether `parent` waits for `child`: not when a producer's message is
/// consumed, nor when the child only follows from it.
fn blocks(parent: &Span, child: &Span) -> bool {
    let messaging = parent.kind == SpanKind::Producer && child.kind == SpanKind::Consumer;
    !messaging && !child.follows_from.contains(&parent.span_id)
}

fn mark_subtree(spans: &[SpanAnalysis], root: usize, reached: &mut [bool]) {
    let mut stack = vec![root];
    while let Some(index) = stack.pop() {
        if std::mem::replace(&mut reached[index], true) {
            continue;
        }
        stack.extend(spans[index].children.iter().copied());
    }
}

/// Sorts siblings and roots by adjusted start, then sets `order`, `roots`,
/// `depth` and `root`. Needs the adjusted times.
pub(crate) fn order(spans: &[Span], analysis: &mut TraceAnalysis, mut roots: Vec<usize>) {
    let key = |out: &[SpanAnalysis], i: usize| (out[i].start_ns, out[i].end_ns, i);
    for index in 0..analysis.spans.len() {
        let mut children = std::mem::take(&mut analysis.spans[index].children);
        children.sort_by(|&a, &b| {
            key(&analysis.spans, a)
                .cmp(&key(&analysis.spans, b))
                .then_with(|| spans[a].span_id.cmp(&spans[b].span_id))
        });
        analysis.spans[index].children = children;
    }
    roots.sort_by_key(|&i| key(&analysis.spans, i));

    let mut order = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, usize, usize)> =
        roots.iter().rev().map(|&root| (root, 0, root)).collect();
    while let Some((index, depth, root)) = stack.pop() {
        order.push(index);
        let span = &mut analysis.spans[index];
        span.depth = depth;
        span.root = root;
        stack.extend(span.children.iter().rev().map(|&c| (c, depth + 1, root)));
    }
    analysis.order = order;
    analysis.roots = roots;
}
