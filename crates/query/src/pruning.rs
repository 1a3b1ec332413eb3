//! Which files and buffered partitions a scan of `spans` must read.
//!
//! DataFusion hands [`SpansTableProvider`](crate::SpansTableProvider) the filters
//! of the query as logical expressions. [`ScanConstraints`] keeps the ones the lake
//! can answer from metadata alone, before any object is opened:
//!
//! | filter | answered from |
//! |---|---|
//! | `project = 'p'`, `project IN (…)` (and the [`ProjectScope`]) | partition key |
//! | `service_name = 's'`, `service_name IN (…)` | partition key |
//! | `start_time` `>`, `>=`, `<`, `<=`, `=`, `BETWEEN` a timestamp | partition hour, file min/max start |
//! | `trace_id = '…'`, `trace_id IN (…)` | the file's trace-id filter ([`FileEntry::may_contain_trace`]) |
//! | conditions on `attributes['k']`, `resource_attributes['k']` alone | the file's attribute index ([`crate::attribute_pruning`]) |
//!
//! Anything else is ignored here (DataFusion applies every filter again above the
//! scan, so ignoring one only costs reading more). A constraint is only ever
//! derived when it is implied by the filter, so pruning never drops a matching span.

use std::collections::BTreeSet;
use std::fmt;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use lighttrace_model::{NANOS_PER_HOUR, columns};
use lighttrace_storage::layout::decode_lower_hex;
use lighttrace_storage::{BufferedPartition, FileEntry, PartitionKey};

use crate::ProjectScope;

/// What the filters of one scan say about the partitions, times and traces it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ScanConstraints {
    /// Allowed projects; `None` when unconstrained.
    pub projects: Option<BTreeSet<String>>,
    /// Allowed services; `None` when unconstrained.
    pub services: Option<BTreeSet<String>>,
    /// Inclusive bounds on `start_time` in nanoseconds.
    pub start_min_ns: Option<i64>,
    pub start_max_ns: Option<i64>,
    /// Allowed trace ids; `Some(empty)` when no trace can match.
    pub trace_ids: Option<BTreeSet<[u8; 16]>>,
}

/// A value constraint derived from one conjunct.
enum Derived {
    Values(Column, BTreeSet<String>),
    StartRange(Option<i64>, Option<i64>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Project,
    Service,
    TraceId,
}

impl ScanConstraints {
    /// The constraints implied by the conjunction of `filters` and the scope.
    /// The constraints of a `spans` scan.
    #[cfg(test)]
    pub fn new(filters: &[Expr], scope: &ProjectScope) -> Self {
        Self::with_time_column(filters, scope, columns::START_TIME)
    }

    /// The constraints of a scan of a table whose time column (the one its
    /// partitions and files are bounded by) is `time_column`.
    pub fn with_time_column(filters: &[Expr], scope: &ProjectScope, time_column: &str) -> Self {
        let mut constraints = ScanConstraints::default();
        if let ProjectScope::Project(project) = scope {
            constraints.projects = Some(BTreeSet::from([project.clone()]));
        }
        for filter in filters {
            for conjunct in split_conjunction(filter) {
                match derive(conjunct, time_column) {
                    Some(Derived::Values(column, values)) => constraints.add_values(column, values),
                    Some(Derived::StartRange(min, max)) => constraints.add_start_range(min, max),
                    None => {}
                }
            }
        }
        constraints
    }

    fn add_values(&mut self, column: Column, values: BTreeSet<String>) {
        match column {
            Column::Project => intersect(&mut self.projects, values),
            Column::Service => intersect(&mut self.services, values),
            Column::TraceId => {
                // Stored trace ids are 32 lowercase hex characters; any other
                // literal can match no span at all.
                let ids = values.iter().filter_map(|v| parse_trace_id(v)).collect();
                intersect(&mut self.trace_ids, ids);
            }
        }
    }

    fn add_start_range(&mut self, min: Option<i64>, max: Option<i64>) {
        if let Some(min) = min {
            self.start_min_ns = Some(self.start_min_ns.map_or(min, |m| m.max(min)));
        }
        if let Some(max) = max {
            self.start_max_ns = Some(self.start_max_ns.map_or(max, |m| m.min(max)));
        }
    }

    fn partition_allowed(&self, key: &PartitionKey) -> bool {
        self.projects
            .as_ref()
            .is_none_or(|p| p.contains(key.project.as_ref()))
            && self
                .services
                .as_ref()
                .is_none_or(|s| s.contains(key.service.as_ref()))
    }

    /// Whether spans starting in `[min_ns, max_ns]` may satisfy the time bounds.
    fn time_overlaps(&self, min_ns: i64, max_ns: i64) -> bool {
        self.start_min_ns.is_none_or(|lo| max_ns >= lo)
            && self.start_max_ns.is_none_or(|hi| min_ns <= hi)
    }

    /// True if the query has a time range and `[min_ns, max_ns]` lies wholly
    /// inside it: a file of such start times is read without the time filters
    /// ([`crate::exec::CoveredTimeExec`], which checks the filters themselves).
    pub fn covers(&self, min_ns: i64, max_ns: i64) -> bool {
        (self.start_min_ns.is_some() || self.start_max_ns.is_some())
            && self.start_min_ns.is_none_or(|lo| min_ns >= lo)
            && self.start_max_ns.is_none_or(|hi| max_ns <= hi)
    }

    fn hour_overlaps(&self, key: &PartitionKey) -> bool {
        let first = key.hour_start_ns();
        let last = first.saturating_add(NANOS_PER_HOUR - 1);
        self.time_overlaps(first, last)
    }

    /// Why a file is not read, or `None` when it must be.
    pub fn prune_file(&self, file: &FileEntry) -> Option<PruneReason> {
        if !self.partition_allowed(&file.partition) {
            return Some(PruneReason::Partition);
        }
        if !self.hour_overlaps(&file.partition)
            || !self.time_overlaps(file.min_start_ns, file.max_start_ns)
        {
            return Some(PruneReason::Time);
        }
        if let Some(ids) = &self.trace_ids
            && !ids.iter().any(|id| file.may_contain_trace(id))
        {
            return Some(PruneReason::TraceId);
        }
        None
    }

    /// Why a buffered partition is not read, or `None` when it must be.
    pub fn prune_buffered(&self, buffered: &BufferedPartition) -> Option<PruneReason> {
        if !self.partition_allowed(&buffered.key) {
            return Some(PruneReason::Partition);
        }
        if !self.hour_overlaps(&buffered.key)
            || !self.time_overlaps(buffered.min_start_ns, buffered.max_start_ns)
        {
            return Some(PruneReason::Time);
        }
        // Buffers keep no trace-id filter; only "no literal is a trace id" prunes.
        if self.trace_ids.as_ref().is_some_and(BTreeSet::is_empty) {
            return Some(PruneReason::TraceId);
        }
        None
    }
}

fn intersect<T: Ord>(current: &mut Option<BTreeSet<T>>, values: BTreeSet<T>) {
    *current = Some(match current.take() {
        None => values,
        Some(existing) => existing
            .into_iter()
            .filter(|v| values.contains(v))
            .collect(),
    });
}

/// 32 lowercase hex characters, as stored; anything else matches no span.
pub(crate) fn parse_trace_id(text: &str) -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    decode_lower_hex(text.as_bytes(), &mut id)?;
    Some(id)
}

/// Why a file or buffered partition was skipped; shown by `EXPLAIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PruneReason {
    Partition,
    Time,
    TraceId,
    /// The file's attribute index ([`crate::attribute_pruning`]).
    Attributes,
}

/// Counters of one scan's pruning, shown by [`SpansScanExec`](crate::SpansScanExec).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruningStats {
    /// Files in the snapshot that the scope allows (other projects' files are
    /// neither read nor counted).
    pub files_total: usize,
    pub files_scanned: usize,
    pub files_pruned_partition: usize,
    pub files_pruned_time: usize,
    pub files_pruned_trace_id: usize,
    pub files_pruned_attributes: usize,
    pub buffered_total: usize,
    pub buffered_scanned: usize,
}

impl PruningStats {
    pub(crate) fn count_file(&mut self, reason: Option<PruneReason>) {
        self.files_total += 1;
        match reason {
            None => self.files_scanned += 1,
            Some(PruneReason::Partition) => self.files_pruned_partition += 1,
            Some(PruneReason::Time) => self.files_pruned_time += 1,
            Some(PruneReason::TraceId) => self.files_pruned_trace_id += 1,
            Some(PruneReason::Attributes) => self.files_pruned_attributes += 1,
        }
    }
}

impl fmt::Display for PruningStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "files={}/{} (pruned: partition={}, time={}, trace_id={}, attributes={}), buffered={}/{}",
            self.files_scanned,
            self.files_total,
            self.files_pruned_partition,
            self.files_pruned_time,
            self.files_pruned_trace_id,
            self.files_pruned_attributes,
            self.buffered_scanned,
            self.buffered_total
        )
    }
}

/// The constraint one conjunct implies, if it is of a form the lake can use.
fn derive(expr: &Expr, time_column: &str) -> Option<Derived> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            // Each side of an AND holds on its own; when both say something
            // about the same column, both hold.
            Operator::And => match (derive(left, time_column), derive(right, time_column)) {
                (Some(l), Some(r)) => Some(both(l, r)),
                (l, r) => l.or(r),
            },
            // An OR only says something when both sides constrain the same
            // column: `a = 'x' OR a = 'y'` is `a IN ('x', 'y')`, and two time
            // ranges give the range that covers both.
            Operator::Or => either(derive(left, time_column)?, derive(right, time_column)?),
            _ => derive_comparison(left, *op, right, time_column)
                .or_else(|| derive_comparison(right, op.swap()?, left, time_column)),
        },
        Expr::InList(in_list) if !in_list.negated => {
            let column = string_column(&in_list.expr)?;
            let mut values = BTreeSet::new();
            for item in &in_list.list {
                // A NULL in an IN list matches nothing: it adds no value.
                if let Some(v) = string_literal(item)? {
                    values.insert(v);
                }
            }
            Some(Derived::Values(column, values))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time(expr, time_column) => Some(Derived::StartRange(
            Some(timestamp_literal_ns(low)?),
            Some(timestamp_literal_ns(high)?),
        )),
        _ => None,
    }
}

/// What `l AND r` implies.
fn both(l: Derived, r: Derived) -> Derived {
    match (l, r) {
        (Derived::Values(lc, lv), Derived::Values(rc, rv)) if lc == rc => {
            Derived::Values(lc, lv.intersection(&rv).cloned().collect())
        }
        (Derived::StartRange(lmin, lmax), Derived::StartRange(rmin, rmax)) => Derived::StartRange(
            lmin.max(rmin),
            match (lmax, rmax) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        ),
        (l, _) => l,
    }
}

/// What `l OR r` implies, if anything.
fn either(l: Derived, r: Derived) -> Option<Derived> {
    match (l, r) {
        (Derived::Values(lc, mut lv), Derived::Values(rc, rv)) if lc == rc => {
            lv.extend(rv);
            Some(Derived::Values(lc, lv))
        }
        (Derived::StartRange(lmin, lmax), Derived::StartRange(rmin, rmax)) => {
            // An unbounded side leaves the union unbounded.
            let min = lmin.zip(rmin).map(|(a, b)| a.min(b));
            let max = lmax.zip(rmax).map(|(a, b)| a.max(b));
            (min.is_some() || max.is_some()).then_some(Derived::StartRange(min, max))
        }
        _ => None,
    }
}

/// `column <op> literal`.
fn derive_comparison(
    column: &Expr,
    op: Operator,
    literal: &Expr,
    time_column: &str,
) -> Option<Derived> {
    if let Some(column) = string_column(column) {
        if op != Operator::Eq {
            return None;
        }
        let values = match string_literal(literal)? {
            Some(v) => BTreeSet::from([v]),
            None => BTreeSet::new(), // `= NULL` is never true
        };
        return Some(Derived::Values(column, values));
    }
    if is_time(column, time_column) {
        let t = timestamp_literal_ns(literal)?;
        let (min, max) = match op {
            Operator::Eq => (Some(t), Some(t)),
            Operator::Gt => (Some(t.saturating_add(1)), None),
            Operator::GtEq => (Some(t), None),
            Operator::Lt => (None, Some(t.saturating_sub(1))),
            Operator::LtEq => (None, Some(t)),
            _ => return None,
        };
        return Some(Derived::StartRange(min, max));
    }
    None
}

/// The column, seen through casts that keep its values unchanged.
fn strip_casts(mut expr: &Expr) -> &Expr {
    loop {
        match expr {
            Expr::Cast(cast) if value_preserving_cast(cast.field.data_type()) => expr = &cast.expr,
            Expr::TryCast(cast) if value_preserving_cast(cast.field.data_type()) => {
                expr = &cast.expr
            }
            _ => return expr,
        }
    }
}

fn value_preserving_cast(to: &DataType) -> bool {
    // Between string types, and between nanosecond timestamps (a UTC timestamp
    // keeps its value under a change of time zone or dropping it).
    matches!(
        to,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Timestamp(TimeUnit::Nanosecond, _)
    ) || matches!(to, DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
}

fn column_name(expr: &Expr) -> Option<&str> {
    match strip_casts(expr) {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

fn string_column(expr: &Expr) -> Option<Column> {
    match column_name(expr)? {
        columns::PROJECT => Some(Column::Project),
        columns::SERVICE_NAME => Some(Column::Service),
        columns::TRACE_ID => Some(Column::TraceId),
        _ => None,
    }
}

fn is_time(expr: &Expr, time_column: &str) -> bool {
    column_name(expr) == Some(time_column)
}

/// `Some(Some(text))` for a string literal, `Some(None)` for a NULL literal.
fn string_literal(expr: &Expr) -> Option<Option<String>> {
    let Expr::Literal(value, _) = strip_casts(expr) else {
        return None;
    };
    let value = match value {
        ScalarValue::Dictionary(_, inner) => inner.as_ref(),
        other => other,
    };
    match value {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            Some(v.clone())
        }
        ScalarValue::Null => Some(None),
        _ => None,
    }
}

/// Nanoseconds since the epoch of a timestamp literal.
fn timestamp_literal_ns(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = strip_casts(expr) else {
        return None;
    };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(ns: i64) -> Expr {
        Expr::Literal(
            ScalarValue::TimestampNanosecond(Some(ns), Some("UTC".into())),
            None,
        )
    }

    #[test]
    fn equalities_and_in_lists_become_value_sets() {
        let filters = [
            col("service_name")
                .eq(lit("a"))
                .or(col("service_name").eq(lit("b"))),
            col("project").in_list(vec![lit("p"), lit("q")], false),
            lit("q").eq(col("project")),
        ];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!(c.services, Some(BTreeSet::from(["a".into(), "b".into()])));
        assert_eq!(c.projects, Some(BTreeSet::from(["q".into()])));
    }

    #[test]
    fn scope_intersects_with_project_filters() {
        let filters = [col("project").eq(lit("other"))];
        let c = ScanConstraints::new(&filters, &ProjectScope::Project("mine".into()));
        assert_eq!(c.projects, Some(BTreeSet::new()));
    }

    #[test]
    fn time_bounds_are_inclusive_and_intersected() {
        let filters = [
            col("start_time").gt(ts(100)),
            ts(500).gt_eq(col("start_time")),
            col("start_time").between(ts(0), ts(400)),
        ];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!((c.start_min_ns, c.start_max_ns), (Some(101), Some(400)));
    }

    #[test]
    fn negations_and_other_operators_derive_nothing() {
        let filters = [
            col("service_name").not_eq(lit("a")),
            col("project").in_list(vec![lit("p")], true),
            col("start_time").not_eq(ts(5)),
            col("service_name")
                .eq(lit("a"))
                .or(col("project").eq(lit("b"))),
            col("start_time")
                .gt(ts(5))
                .or(col("service_name").eq(lit("a"))),
        ];
        assert_eq!(
            ScanConstraints::new(&filters, &ProjectScope::All),
            ScanConstraints::default()
        );
    }

    #[test]
    fn or_and_and_combine_constraints_on_one_column() {
        let filters = [
            col("start_time")
                .between(ts(10), ts(20))
                .or(col("start_time")
                    .gt_eq(ts(100))
                    .and(col("start_time").lt(ts(200)))),
            col("service_name")
                .eq(lit("a"))
                .and(col("kind").eq(lit("server")))
                .or(col("service_name").eq(lit("b"))),
        ];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!((c.start_min_ns, c.start_max_ns), (Some(10), Some(199)));
        assert_eq!(c.services, Some(BTreeSet::from(["a".into(), "b".into()])));

        let unbounded = [col("start_time").gt(ts(10)).or(col("start_time").lt(ts(5)))];
        let c = ScanConstraints::new(&unbounded, &ProjectScope::All);
        assert_eq!((c.start_min_ns, c.start_max_ns), (None, None));
    }

    #[test]
    fn trace_ids_must_be_lowercase_hex() {
        let good = "0123456789abcdef0123456789abcdef";
        let filters = [
            col("trace_id").in_list(vec![lit(good), lit(good.to_uppercase()), lit("xyz")], false)
        ];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!(c.trace_ids.map(|ids| ids.len()), Some(1));

        let filters = [col("trace_id").eq(lit("not hex"))];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!(c.trace_ids, Some(BTreeSet::new()));
    }
}
