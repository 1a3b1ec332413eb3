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
//! | `start_time` `>`, `>=`, `<`, `<=`, `=`, `BETWEEN` a timestamp, `IN (…)` timestamps | partition hour, file min/max start |
//! | `trace_id = '…'`, `trace_id IN (…)` | the file's trace-id filter ([`FileEntry::may_contain_trace`]) |
//! | conditions on `attributes['k']`, `resource_attributes['k']` alone | the file's attribute index ([`crate::attribute_pruning`]) |
//! | `AND` and `OR` of the above, as `(service_name = 'a' AND start_time = t) OR …` | all of these, per alternative |
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
///
/// The fields are what holds for every matching row. A filter that is a
/// disjunction of such constraints on several columns, as `(service_name = 'a'
/// AND start_time = t1) OR (service_name = 'b' AND start_time = t2)`, also
/// keeps its alternatives (up to [`MAX_REGIONS`]): a file must fit one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ScanConstraints {
    /// What every matching row fits.
    hull: Region,
    /// The alternatives, when there are several; empty otherwise (the hull
    /// is then the one alternative).
    regions: Vec<Region>,
}

/// Most alternatives a scan's constraints keep; past that, their hull (what
/// all of them allow) stands for them.
const MAX_REGIONS: usize = 256;

/// One alternative: rows whose project, service, start time and trace id are
/// each allowed (`None`: any value; an empty set: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Region {
    /// Allowed projects.
    projects: Option<BTreeSet<String>>,
    /// Allowed services.
    services: Option<BTreeSet<String>>,
    /// Inclusive bounds on the start time, in nanoseconds.
    start_min_ns: Option<i64>,
    start_max_ns: Option<i64>,
    /// Allowed trace ids.
    trace_ids: Option<BTreeSet<[u8; 16]>>,
}

/// The columns a value set constrains.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Project,
    Service,
    TraceId,
}

impl Region {
    /// No row fits.
    fn nothing() -> Self {
        Region {
            projects: Some(BTreeSet::new()),
            ..Region::default()
        }
    }

    /// Rows that fit both.
    fn and(mut self, other: &Region) -> Region {
        intersect(&mut self.projects, other.projects.as_ref());
        intersect(&mut self.services, other.services.as_ref());
        intersect(&mut self.trace_ids, other.trace_ids.as_ref());
        self.start_min_ns = self.start_min_ns.max(other.start_min_ns);
        self.start_max_ns = match (self.start_max_ns, other.start_max_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }

    /// Whether no row can fit.
    fn is_empty(&self) -> bool {
        [
            self.projects.as_ref().map(BTreeSet::len),
            self.services.as_ref().map(BTreeSet::len),
            self.trace_ids.as_ref().map(BTreeSet::len),
        ]
        .contains(&Some(0))
            || self
                .start_min_ns
                .zip(self.start_max_ns)
                .is_some_and(|(lo, hi)| lo > hi)
    }

    /// What every row that fits one of `regions` fits.
    fn hull(regions: &[Region]) -> Region {
        let Some((first, rest)) = regions.split_first() else {
            return Region::nothing();
        };
        let mut hull = first.clone();
        for region in rest {
            unite(&mut hull.projects, region.projects.as_ref());
            unite(&mut hull.services, region.services.as_ref());
            unite(&mut hull.trace_ids, region.trace_ids.as_ref());
            hull.start_min_ns = hull
                .start_min_ns
                .zip(region.start_min_ns)
                .map(|(a, b)| a.min(b));
            hull.start_max_ns = hull
                .start_max_ns
                .zip(region.start_max_ns)
                .map(|(a, b)| a.max(b));
        }
        hull
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

    /// Whether spans starting in `[min_ns, max_ns]` may fit the time bounds.
    fn time_overlaps(&self, min_ns: i64, max_ns: i64) -> bool {
        self.start_min_ns.is_none_or(|lo| max_ns >= lo)
            && self.start_max_ns.is_none_or(|hi| min_ns <= hi)
    }

    fn hour_overlaps(&self, key: &PartitionKey) -> bool {
        let first = key.hour_start_ns();
        let last = first.saturating_add(NANOS_PER_HOUR - 1);
        self.time_overlaps(first, last)
    }

    /// Why no span of a partition's rows starting in `[min_ns, max_ns]` fits,
    /// or `None`. `may_contain_trace` answers for the file's trace ids
    /// (buffers: always yes).
    fn rejects(
        &self,
        key: &PartitionKey,
        min_ns: i64,
        max_ns: i64,
        may_contain_trace: impl Fn(&[u8; 16]) -> bool,
    ) -> Option<PruneReason> {
        if !self.partition_allowed(key) {
            return Some(PruneReason::Partition);
        }
        if !self.hour_overlaps(key) || !self.time_overlaps(min_ns, max_ns) {
            return Some(PruneReason::Time);
        }
        if let Some(ids) = &self.trace_ids
            && !ids.iter().any(&may_contain_trace)
        {
            return Some(PruneReason::TraceId);
        }
        None
    }
}

/// Rows in one of `l` and in one of `r`.
fn both(l: Vec<Region>, r: Vec<Region>) -> Vec<Region> {
    if l.len().saturating_mul(r.len()) > MAX_REGIONS {
        return vec![Region::hull(&l).and(&Region::hull(&r))];
    }
    let mut regions = Vec::with_capacity(l.len() * r.len());
    for a in &l {
        for b in &r {
            let region = a.clone().and(b);
            if !region.is_empty() {
                regions.push(region);
            }
        }
    }
    // No row fits: one empty alternative keeps the reason (a contradiction
    // in time prunes by time).
    if regions.is_empty()
        && let (Some(a), Some(b)) = (l.first(), r.first())
    {
        regions.push(a.clone().and(b));
    }
    regions
}

/// Rows in one of `l` or one of `r`.
fn either(mut l: Vec<Region>, r: Vec<Region>) -> Vec<Region> {
    l.extend(r);
    if l.len() > MAX_REGIONS {
        return vec![Region::hull(&l)];
    }
    l
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
        let mut regions = vec![Region::default()];
        if let ProjectScope::Project(project) = scope {
            regions[0].projects = Some(BTreeSet::from([project.clone()]));
        }
        for filter in filters {
            for conjunct in split_conjunction(filter) {
                if let Some(derived) = derive(conjunct, time_column) {
                    regions = both(regions, derived);
                }
            }
        }
        ScanConstraints {
            hull: Region::hull(&regions),
            regions: if regions.len() > 1 {
                regions
            } else {
                Vec::new()
            },
        }
    }

    /// True if the query has a time range and `[min_ns, max_ns]` lies wholly
    /// inside it: a file of such start times is read without the time filters
    /// ([`crate::exec::CoveredExec`], which checks the filters themselves).
    pub fn covers(&self, min_ns: i64, max_ns: i64) -> bool {
        let (start_min_ns, start_max_ns) = (self.hull.start_min_ns, self.hull.start_max_ns);
        (start_min_ns.is_some() || start_max_ns.is_some())
            && start_min_ns.is_none_or(|lo| min_ns >= lo)
            && start_max_ns.is_none_or(|hi| max_ns <= hi)
    }

    /// Why rows of `key` starting in `[min_ns, max_ns]` are not read, or
    /// `None` when they must be: the hull's reason, else, when no alternative
    /// fits, why those of the partition do not (by time before trace id), or
    /// `Partition` when none is of the partition.
    fn rejects(
        &self,
        key: &PartitionKey,
        min_ns: i64,
        max_ns: i64,
        may_contain_trace: impl Fn(&[u8; 16]) -> bool + Copy,
    ) -> Option<PruneReason> {
        if let Some(reason) = self.hull.rejects(key, min_ns, max_ns, may_contain_trace) {
            return Some(reason);
        }
        if self.regions.is_empty() {
            return None;
        }
        let mut reason = PruneReason::Partition;
        for region in &self.regions {
            match region.rejects(key, min_ns, max_ns, may_contain_trace) {
                None => return None,
                Some(PruneReason::Partition) => {}
                Some(PruneReason::Time) => reason = PruneReason::Time,
                Some(other) if reason == PruneReason::Partition => reason = other,
                Some(_) => {}
            }
        }
        Some(reason)
    }

    /// Why a file is not read, or `None` when it must be.
    pub fn prune_file(&self, file: &FileEntry) -> Option<PruneReason> {
        self.rejects(
            &file.partition,
            file.min_start_ns,
            file.max_start_ns,
            |id: &[u8; 16]| file.may_contain_trace(id),
        )
    }

    /// Why a buffered partition is not read, or `None` when it must be.
    /// Buffers keep no trace-id filter; only "no literal is a trace id" prunes.
    pub fn prune_buffered(&self, buffered: &BufferedPartition) -> Option<PruneReason> {
        self.rejects(
            &buffered.key,
            buffered.min_start_ns,
            buffered.max_start_ns,
            |_: &[u8; 16]| true,
        )
    }
}

/// `current` ∩ `other` (`None` is everything).
fn intersect<T: Ord + Clone>(current: &mut Option<BTreeSet<T>>, other: Option<&BTreeSet<T>>) {
    let Some(other) = other else {
        return;
    };
    *current = Some(match current.take() {
        None => other.clone(),
        Some(existing) => existing.into_iter().filter(|v| other.contains(v)).collect(),
    });
}

/// `current` ∪ `other` (`None` is everything).
fn unite<T: Ord + Clone>(current: &mut Option<BTreeSet<T>>, other: Option<&BTreeSet<T>>) {
    match (current.as_mut(), other) {
        (Some(values), Some(other)) => values.extend(other.iter().cloned()),
        _ => *current = None,
    }
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

/// The alternatives one conjunct implies, if it is of a form the lake can use.
fn derive(expr: &Expr, time_column: &str) -> Option<Vec<Region>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            // Each side of an AND holds on its own; when both say something,
            // rows fit an alternative of each.
            Operator::And => match (derive(left, time_column), derive(right, time_column)) {
                (Some(l), Some(r)) => Some(both(l, r)),
                (l, r) => l.or(r),
            },
            // An OR only says something when both sides do: `a = 'x' OR
            // a = 'y'` is `a IN ('x', 'y')`, two time ranges are two ranges.
            Operator::Or => Some(either(
                derive(left, time_column)?,
                derive(right, time_column)?,
            )),
            _ => derive_comparison(left, *op, right, time_column)
                .or_else(|| derive_comparison(right, op.swap()?, left, time_column))
                .map(|region| vec![region]),
        },
        // `start_time IN (t1, t2, …)`: one alternative per time.
        Expr::InList(in_list) if !in_list.negated && is_time(&in_list.expr, time_column) => {
            let mut regions = Vec::with_capacity(in_list.list.len());
            for item in &in_list.list {
                let t = match strip_casts(item) {
                    // A NULL matches nothing: it adds no alternative.
                    Expr::Literal(value, _) if value.is_null() => continue,
                    _ => timestamp_literal_ns(item)?,
                };
                regions.push(Region {
                    start_min_ns: Some(t),
                    start_max_ns: Some(t),
                    ..Region::default()
                });
            }
            if regions.is_empty() {
                regions.push(Region::nothing());
            }
            Some(either(regions, Vec::new()))
        }
        Expr::InList(in_list) if !in_list.negated => {
            let column = string_column(&in_list.expr)?;
            let mut values = BTreeSet::new();
            for item in &in_list.list {
                // A NULL in an IN list matches nothing: it adds no value.
                if let Some(v) = string_literal(item)? {
                    values.insert(v);
                }
            }
            Some(vec![values_region(column, values)])
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_time(expr, time_column) => Some(vec![Region {
            start_min_ns: Some(timestamp_literal_ns(low)?),
            start_max_ns: Some(timestamp_literal_ns(high)?),
            ..Region::default()
        }]),
        _ => None,
    }
}

/// Rows whose `column` is one of `values`.
fn values_region(column: Column, values: BTreeSet<String>) -> Region {
    let mut region = Region::default();
    match column {
        Column::Project => region.projects = Some(values),
        Column::Service => region.services = Some(values),
        // Stored trace ids are 32 lowercase hex characters; any other
        // literal can match no span at all.
        Column::TraceId => {
            region.trace_ids = Some(values.iter().filter_map(|v| parse_trace_id(v)).collect())
        }
    }
    region
}

/// `column <op> literal`.
fn derive_comparison(
    column: &Expr,
    op: Operator,
    literal: &Expr,
    time_column: &str,
) -> Option<Region> {
    if let Some(column) = string_column(column) {
        if op != Operator::Eq {
            return None;
        }
        let values = match string_literal(literal)? {
            Some(v) => BTreeSet::from([v]),
            None => BTreeSet::new(), // `= NULL` is never true
        };
        return Some(values_region(column, values));
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
        return Some(Region {
            start_min_ns: min,
            start_max_ns: max,
            ..Region::default()
        });
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
        assert_eq!(
            c.hull.services,
            Some(BTreeSet::from(["a".into(), "b".into()]))
        );
        assert_eq!(c.hull.projects, Some(BTreeSet::from(["q".into()])));
    }

    #[test]
    fn scope_intersects_with_project_filters() {
        let filters = [col("project").eq(lit("other"))];
        let c = ScanConstraints::new(&filters, &ProjectScope::Project("mine".into()));
        assert_eq!(c.hull.projects, Some(BTreeSet::new()));
    }

    #[test]
    fn time_bounds_are_inclusive_and_intersected() {
        let filters = [
            col("start_time").gt(ts(100)),
            ts(500).gt_eq(col("start_time")),
            col("start_time").between(ts(0), ts(400)),
        ];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!(
            (c.hull.start_min_ns, c.hull.start_max_ns),
            (Some(101), Some(400))
        );
    }

    #[test]
    fn negations_and_other_operators_derive_nothing() {
        let filters = [
            col("service_name").not_eq(lit("a")),
            col("project").in_list(vec![lit("p")], true),
            col("start_time").not_eq(ts(5)),
            col("service_name")
                .eq(lit("a"))
                .or(col("kind").eq(lit("server"))),
        ];
        assert_eq!(
            ScanConstraints::new(&filters, &ProjectScope::All),
            ScanConstraints::default()
        );
    }

    /// A file of `service` in hour 490,000 with starts in `[min_ns, max_ns]`
    /// of that hour.
    fn file(service: &str, min_ns: i64, max_ns: i64) -> FileEntry {
        let hour = NANOS_PER_HOUR * 490_000;
        FileEntry {
            path: "f.parquet".into(),
            size_bytes: 1,
            row_count: 1,
            partition: PartitionKey::new("p", service, 490_000),
            min_start_ns: hour + min_ns,
            max_start_ns: hour + max_ns,
            min_end_ns: hour + max_ns,
            max_end_ns: hour + max_ns,
            max_wal_seq: 0,
            trace_filter: lighttrace_storage::trace_filter::TraceIdFilter::with_capacity(1),
            attribute_index: None,
        }
    }

    /// `(service = 'a' AND start_time = t1) OR (service = 'b' AND …)`: each
    /// file must fit one alternative, not only their hull.
    #[test]
    fn alternatives_on_several_columns_prune_apart() {
        let hour = NANOS_PER_HOUR * 490_000;
        let point = |service: &str, t: i64| {
            col("service_name")
                .eq(lit(service))
                .and(col("start_time").eq(ts(hour + t)))
        };
        let filters = [
            col("start_time").gt_eq(ts(hour)),
            point("a", 100).or(point("b", 500)).or(point("a", 900)),
        ];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        // The hull: both services, 100 ..= 900.
        assert_eq!(
            c.hull.services,
            Some(BTreeSet::from(["a".into(), "b".into()]))
        );
        assert_eq!(
            (c.hull.start_min_ns, c.hull.start_max_ns),
            (Some(hour + 100), Some(hour + 900))
        );
        assert_eq!(c.prune_file(&file("a", 50, 150)), None);
        assert_eq!(c.prune_file(&file("a", 850, 950)), None);
        assert_eq!(c.prune_file(&file("b", 450, 550)), None);
        // Inside the hull, but no alternative of its service.
        assert_eq!(c.prune_file(&file("a", 450, 550)), Some(PruneReason::Time));
        assert_eq!(c.prune_file(&file("b", 50, 150)), Some(PruneReason::Time));
        assert_eq!(
            c.prune_file(&file("c", 50, 150)),
            Some(PruneReason::Partition)
        );

        // Either side unbounded, or on different columns: alternatives only.
        let filters = [col("start_time")
            .gt(ts(hour + 500))
            .or(col("service_name").eq(lit("a")))];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!((c.hull.services.clone(), c.hull.start_min_ns), (None, None));
        assert_eq!(c.prune_file(&file("a", 0, 10)), None);
        assert_eq!(c.prune_file(&file("b", 600, 700)), None);
        assert_eq!(c.prune_file(&file("b", 0, 10)), Some(PruneReason::Time));

        // Past MAX_REGIONS alternatives, their hull prunes.
        let many = (0..MAX_REGIONS as i64 + 1)
            .map(|t| point("a", t * 10))
            .reduce(Expr::or)
            .unwrap();
        let c = ScanConstraints::new(&[many], &ProjectScope::All);
        assert!(c.regions.is_empty());
        assert_eq!(c.prune_file(&file("a", 15, 16)), None);
        assert_eq!(
            c.prune_file(&file("b", 15, 16)),
            Some(PruneReason::Partition)
        );
    }

    /// `start_time IN (…)`: a file must hold one of the times.
    #[test]
    fn time_in_lists_prune_by_each_time() {
        let hour = NANOS_PER_HOUR * 490_000;
        let filters = [
            col("service_name").eq(lit("a")),
            col("start_time").in_list(vec![ts(hour + 100), ts(hour + 900)], false),
        ];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!(c.prune_file(&file("a", 50, 150)), None);
        assert_eq!(c.prune_file(&file("a", 900, 950)), None);
        assert_eq!(c.prune_file(&file("a", 200, 800)), Some(PruneReason::Time));
        assert_eq!(
            c.prune_file(&file("b", 50, 150)),
            Some(PruneReason::Partition)
        );
    }

    #[test]
    fn contradictions_prune_by_their_column() {
        let c = ScanConstraints::new(
            &[col("start_time")
                .gt(ts(10))
                .and(col("start_time").lt(ts(5)))],
            &ProjectScope::All,
        );
        assert_eq!(c.prune_file(&file("a", 0, 100)), Some(PruneReason::Time));
        let c = ScanConstraints::new(
            &[
                col("service_name").eq(lit("a")),
                col("service_name").eq(lit("b")),
            ],
            &ProjectScope::All,
        );
        assert_eq!(
            c.prune_file(&file("a", 0, 100)),
            Some(PruneReason::Partition)
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
        assert_eq!(
            (c.hull.start_min_ns, c.hull.start_max_ns),
            (Some(10), Some(199))
        );
        assert_eq!(
            c.hull.services,
            Some(BTreeSet::from(["a".into(), "b".into()]))
        );

        let unbounded = [col("start_time").gt(ts(10)).or(col("start_time").lt(ts(5)))];
        let c = ScanConstraints::new(&unbounded, &ProjectScope::All);
        assert_eq!((c.hull.start_min_ns, c.hull.start_max_ns), (None, None));
    }

    #[test]
    fn trace_ids_must_be_lowercase_hex() {
        let good = "0123456789abcdef0123456789abcdef";
        let filters = [
            col("trace_id").in_list(vec![lit(good), lit(good.to_uppercase()), lit("xyz")], false)
        ];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!(c.hull.trace_ids.map(|ids| ids.len()), Some(1));

        let filters = [col("trace_id").eq(lit("not hex"))];
        let c = ScanConstraints::new(&filters, &ProjectScope::All);
        assert_eq!(c.hull.trace_ids, Some(BTreeSet::new()));
    }
}
