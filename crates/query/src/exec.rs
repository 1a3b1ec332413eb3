//! [`SpansScanExec`]: the root of every `spans` scan; shows its pruning in `EXPLAIN`.
//! [`CoveredExec`]: files whose rows all satisfy some filters (a time range, a
//! service), read without them.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, InListExpr, Literal};
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{
    ChildFilterDescription, ChildPushdownResult, FilterDescription, FilterPushdownPhase,
    FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};

use crate::pruning::PruningStats;

/// Reads the `spans` rows a scan selected: Parquet files ∪ buffered batches.
///
/// It is a pass-through over its input (a union of a Parquet `DataSourceExec` and
/// a memory `DataSourceExec`, possibly under the project-scope filter); it exists
/// so that `EXPLAIN` shows what the lake pruned before anything was opened:
///
/// ```text
/// SpansScanExec: files=3/120 (pruned: partition=100, time=15, trace_id=2, attributes=0), buffered=1/8, filters=[…]
/// ```
#[derive(Debug, Clone)]
pub struct SpansScanExec {
    input: Arc<dyn ExecutionPlan>,
    pruning: PruningStats,
    /// The pushed-down filters, as DataFusion printed them.
    filters: Vec<String>,
    /// The project the scan is restricted to, if any.
    scope: Option<String>,
    properties: Arc<PlanProperties>,
}

impl SpansScanExec {
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        pruning: PruningStats,
        filters: Vec<String>,
        scope: Option<String>,
    ) -> Self {
        let properties = Arc::clone(input.properties());
        SpansScanExec {
            input,
            pruning,
            filters,
            scope,
            properties,
        }
    }

    /// What the scan pruned.
    pub fn pruning(&self) -> &PruningStats {
        &self.pruning
    }

    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

impl DisplayAs for SpansScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => {
                writeln!(f, "pruning={}", self.pruning)?;
                if let Some(project) = &self.scope {
                    writeln!(f, "scope=project {project:?}")?;
                }
                Ok(())
            }
            _ => {
                write!(
                    f,
                    "SpansScanExec: {}, filters=[{}]",
                    self.pruning,
                    self.filters.join(", ")
                )?;
                if let Some(project) = &self.scope {
                    write!(f, ", scope=project {project:?}")?;
                }
                Ok(())
            }
        }
    }
}

impl ExecutionPlan for SpansScanExec {
    fn name(&self) -> &str {
        "SpansScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut next = SpansScanExec::clone(&self);
        (next.input, next.properties) =
            one_child("SpansScanExec", children, &self.properties, options)?;
        Ok(Arc::new(next))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }

    // Let DataFusion push filters (including dynamic ones from TopK and joins)
    // through to the Parquet scan, where they prune row groups and pages.
    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}

/// The one child of a pass-through node replacing its children, and the
/// properties that go with it (`kept` or the child's, as `options` say).
fn one_child(
    node: &str,
    mut children: Vec<Arc<dyn ExecutionPlan>>,
    kept: &Arc<PlanProperties>,
    options: ReplaceChildrenOptions,
) -> Result<(Arc<dyn ExecutionPlan>, Arc<PlanProperties>)> {
    if children.len() != 1 {
        return datafusion::common::internal_err!("{node} takes one child, got {}", children.len());
    }
    let input = children.swap_remove(0);
    let properties = match options.children_properties {
        ChildrenPropertiesMode::Keep => Arc::clone(kept),
        ChildrenPropertiesMode::Recompute => Arc::clone(input.properties()),
    };
    Ok((input, properties))
}

/// A scan of files of which something holds for every row: their start times
/// lie within `[min_ns, max_ns]`, inside the query's time range, or they are
/// all of one service.
///
/// Time filters (`start_time` compared with constants, and conjunctions of
/// them) that hold for every time in `[min_ns, max_ns]` hold for every row of
/// these files, so they are not pushed into the files' scan, which would
/// decode `start_time` and compare every row for nothing (on the `latency`
/// report over 10M spans that was a fifth of the query's time). Likewise a
/// partition column compared with its files' one value (`service_name =
/// 'cart'`, `service_name IN (…)`): the lake pruned the other partitions already,
/// and each filter pushed into a scan costs every file it opens the building
/// of its pruning predicates (a quarter of the exemplar lookup of TraceQL
/// metrics, `benches/RESULTS.md`). Implied filters are reported to the parent
/// as handled; every other filter is pushed down as usual. The time part is
/// set only for files wholly inside the range
/// ([`crate::pruning::ScanConstraints::covers`]); files that straddle one of
/// its ends are read with the time filters.
///
/// ```text
/// CoveredExec: start_time in [1795210380000000000, 1795213979000000000], service_name = cart (these hold for every row)
/// ```
#[derive(Debug, Clone)]
pub(crate) struct CoveredExec {
    input: Arc<dyn ExecutionPlan>,
    /// The time column and the range every row's time lies in.
    time: Option<(&'static str, i64, i64)>,
    /// Columns with one value in every row: (column, value).
    values: Vec<(&'static str, String)>,
    properties: Arc<PlanProperties>,
}

impl CoveredExec {
    /// `None` when nothing is covered: the scan is then used as it is.
    pub(crate) fn wrap(
        input: Arc<dyn ExecutionPlan>,
        time: Option<(&'static str, i64, i64)>,
        values: Vec<(&'static str, String)>,
    ) -> Arc<dyn ExecutionPlan> {
        if time.is_none() && values.is_empty() {
            return input;
        }
        let properties = Arc::clone(input.properties());
        Arc::new(CoveredExec {
            input,
            time,
            values,
            properties,
        })
    }

    /// True if `filter` holds for every row of the files.
    ///
    /// Recognized: comparisons of the time column with a constant (each holds
    /// on a ray, a conjunction on an interval, so holding at both ends means
    /// holding everywhere between), a covered column `= 'value'` or `IN (…,
    /// 'value', …)`, and conjunctions of these. Anything else is `false` (and
    /// simply pushed down).
    fn implied(&self, filter: &Arc<dyn PhysicalExpr>) -> bool {
        if let Some(list) = filter.downcast_ref::<InListExpr>() {
            return !list.negated()
                && self
                    .value_of(list.expr())
                    .is_some_and(|value| list.list().iter().any(|item| text(item) == Some(value)));
        }
        let Some(binary) = filter.downcast_ref::<BinaryExpr>() else {
            return false;
        };
        if *binary.op() == Operator::And {
            return self.implied(binary.left()) && self.implied(binary.right());
        }
        if *binary.op() == Operator::Eq {
            let equal = |column: &Arc<dyn PhysicalExpr>, literal: &Arc<dyn PhysicalExpr>| {
                self.value_of(column)
                    .is_some_and(|value| text(literal) == Some(value))
            };
            if equal(binary.left(), binary.right()) || equal(binary.right(), binary.left()) {
                return true;
            }
        }
        let Some((column, min_ns, max_ns)) = self.time else {
            return false;
        };
        let time = |expr: &Arc<dyn PhysicalExpr>| {
            expr.downcast_ref::<Column>()
                .is_some_and(|c| c.name() == column)
        };
        let constant =
            |expr: &Arc<dyn PhysicalExpr>| match expr.downcast_ref::<Literal>().map(Literal::value)
            {
                Some(ScalarValue::TimestampNanosecond(Some(v), _)) => Some(*v),
                _ => None,
            };
        // As `time <op> value`.
        let (op, value) = if time(binary.left()) {
            match constant(binary.right()) {
                Some(v) => (*binary.op(), v),
                None => return false,
            }
        } else if time(binary.right()) {
            match (constant(binary.left()), binary.op().swap()) {
                (Some(v), Some(op)) => (op, v),
                _ => return false,
            }
        } else {
            return false;
        };
        match op {
            Operator::Gt => min_ns > value,
            Operator::GtEq => min_ns >= value,
            Operator::Lt => max_ns < value,
            Operator::LtEq => max_ns <= value,
            _ => false,
        }
    }

    /// The one value of a covered column, if `expr` is one.
    fn value_of(&self, expr: &Arc<dyn PhysicalExpr>) -> Option<&str> {
        let column = expr.downcast_ref::<Column>()?;
        self.values
            .iter()
            .find(|(name, _)| *name == column.name())
            .map(|(_, value)| value.as_str())
    }
}

/// The text of a string literal.
fn text(expr: &Arc<dyn PhysicalExpr>) -> Option<&str> {
    match expr.downcast_ref::<Literal>()?.value() {
        ScalarValue::Utf8(Some(v))
        | ScalarValue::Utf8View(Some(v))
        | ScalarValue::LargeUtf8(Some(v)) => Some(v.as_str()),
        _ => None,
    }
}

impl CoveredExec {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((column, min_ns, max_ns)) = self.time {
            parts.push(format!("{column} in [{min_ns}, {max_ns}]"));
        }
        for (column, value) in &self.values {
            parts.push(format!("{column} = {value}"));
        }
        parts.join(", ")
    }
}

impl DisplayAs for CoveredExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => writeln!(f, "{}", self.describe()),
            _ => write!(
                f,
                "CoveredExec: {} (these hold for every row)",
                self.describe()
            ),
        }
    }
}

impl ExecutionPlan for CoveredExec {
    fn name(&self) -> &str {
        "CoveredExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut next = CoveredExec::clone(&self);
        (next.input, next.properties) =
            one_child("CoveredExec", children, &self.properties, options)?;
        Ok(Arc::new(next))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        // An implied filter is offered to the child as a column no schema has,
        // which `from_child` marks unsupported: the child never sees it.
        let offered: Vec<Arc<dyn PhysicalExpr>> = parent_filters
            .iter()
            .map(|filter| {
                if self.implied(filter) {
                    Arc::new(Column::new("", usize::MAX)) as Arc<dyn PhysicalExpr>
                } else {
                    Arc::clone(filter)
                }
            })
            .collect();
        Ok(FilterDescription::new()
            .with_child(ChildFilterDescription::from_child(&offered, &self.input)?))
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let filters = child_pushdown_result
            .parent_filters
            .iter()
            .map(|result| {
                if self.implied(&result.filter) {
                    PushedDown::Yes
                } else {
                    result.all()
                }
            })
            .collect();
        Ok(FilterPushdownPropagation::with_parent_pushdown_result(
            filters,
        ))
    }
}
