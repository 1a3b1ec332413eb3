//! [`SpansScanExec`]: the root of every `spans` scan; shows its pruning in `EXPLAIN`.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
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
/// SpansScanExec: files=3/120 (pruned: partition=100, time=15, trace_id=2), buffered=1/8, filters=[…]
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
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return datafusion::common::internal_err!(
                "SpansScanExec takes one child, got {}",
                children.len()
            );
        }
        let input = children.swap_remove(0);
        let mut next = SpansScanExec::clone(&self);
        next.properties = match options.children_properties {
            ChildrenPropertiesMode::Keep => Arc::clone(&self.properties),
            ChildrenPropertiesMode::Recompute => Arc::clone(input.properties()),
        };
        next.input = input;
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
