//! [`SpansScanExec`]: the root of every `spans` scan; shows its pruning in `EXPLAIN`.
//! [`CoveredTimeExec`]: files wholly inside the query's time range, read without its time filters.

use std::fmt;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
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

/// A scan of files whose rows all start within `[min_ns, max_ns]`, inside the
/// query's time range.
///
/// Time filters (`start_time` compared with constants, and conjunctions of
/// them) that hold for every time in `[min_ns, max_ns]` hold for every row of
/// these files, so they are not pushed into the files' scan, which would
/// decode `start_time` and compare every row for nothing (on the `latency`
/// report over 10M spans that was a fifth of the query's time). They are
/// reported to the parent as handled. Every other filter is pushed down as
/// usual. The scan is split this way only for files wholly inside the range
/// ([`crate::pruning::ScanConstraints::covers`]); files that straddle one of its
/// ends are read with the filters.
///
/// ```text
/// CoveredTimeExec: start_time in [1795210380000000000, 1795213979000000000] (time filters hold for every row)
/// ```
#[derive(Debug, Clone)]
pub(crate) struct CoveredTimeExec {
    input: Arc<dyn ExecutionPlan>,
    column: &'static str,
    min_ns: i64,
    max_ns: i64,
    properties: Arc<PlanProperties>,
}

impl CoveredTimeExec {
    pub(crate) fn new(
        input: Arc<dyn ExecutionPlan>,
        column: &'static str,
        min_ns: i64,
        max_ns: i64,
    ) -> Self {
        let properties = Arc::clone(input.properties());
        CoveredTimeExec {
            input,
            column,
            min_ns,
            max_ns,
            properties,
        }
    }

    /// True if `filter` holds for every row whose time is in `[min_ns, max_ns]`.
    ///
    /// Only comparisons of the time column with a constant and their
    /// conjunctions are recognized: each holds on a ray, a conjunction on an
    /// interval, so holding at both ends means holding everywhere between.
    /// Anything else is `false` (and simply pushed down).
    fn implied(&self, filter: &Arc<dyn PhysicalExpr>) -> bool {
        let Some(binary) = filter.downcast_ref::<BinaryExpr>() else {
            return false;
        };
        if *binary.op() == Operator::And {
            return self.implied(binary.left()) && self.implied(binary.right());
        }
        let time = |expr: &Arc<dyn PhysicalExpr>| {
            expr.downcast_ref::<Column>()
                .is_some_and(|c| c.name() == self.column)
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
            Operator::Gt => self.min_ns > value,
            Operator::GtEq => self.min_ns >= value,
            Operator::Lt => self.max_ns < value,
            Operator::LtEq => self.max_ns <= value,
            _ => false,
        }
    }
}

impl DisplayAs for CoveredTimeExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => {
                writeln!(f, "{} in [{}, {}]", self.column, self.min_ns, self.max_ns)
            }
            _ => write!(
                f,
                "CoveredTimeExec: {} in [{}, {}] (time filters hold for every row)",
                self.column, self.min_ns, self.max_ns
            ),
        }
    }
}

impl ExecutionPlan for CoveredTimeExec {
    fn name(&self) -> &str {
        "CoveredTimeExec"
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
        let mut next = CoveredTimeExec::clone(&self);
        (next.input, next.properties) =
            one_child("CoveredTimeExec", children, &self.properties, options)?;
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
