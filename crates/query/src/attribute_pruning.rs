//! Skipping files by the values their spans' attributes can have.
//!
//! The catalog keeps, for each `spans` file, the value set of every attribute
//! key that has few values in it ([`AttributeIndex`]). A filter conjunct that
//! reads the two attribute maps only through entries with literal keys
//! (`attributes['http.route'] = '/cart'`, `TRY_CAST(attributes['code'] AS
//! DOUBLE) > 499`, a regex, `IS NULL`, …) is a function of those entries. For
//! a file whose index knows every value those entries can read as (NULL
//! included), the conjunct is evaluated — with DataFusion's own physical
//! expression, so with the query's exact semantics — on one synthetic row per
//! combination of values. When no row is true, no span of the file can pass
//! the filter and the file is not opened.
//!
//! The rows are a superset of what the file holds (every combination, not
//! only those that occur together), so a file is only ever skipped when the
//! filter rejects all of its spans.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, MapBuilder, RecordBatch, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use lighttrace_model::columns;
use lighttrace_storage::FileEntry;
use lighttrace_storage::attribute_index::{AttributeIndex, MapIndex};

/// Most synthetic rows evaluated per conjunct and file.
const MAX_COMBINATIONS: usize = 4096;

/// The two attribute maps of `spans` the index covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum MapColumn {
    Span,
    Resource,
}

impl MapColumn {
    fn of(name: &str) -> Option<Self> {
        match name {
            columns::ATTRIBUTES => Some(Self::Span),
            columns::RESOURCE_ATTRIBUTES => Some(Self::Resource),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Span => columns::ATTRIBUTES,
            Self::Resource => columns::RESOURCE_ATTRIBUTES,
        }
    }

    fn index(self, index: &AttributeIndex) -> &MapIndex {
        match self {
            Self::Span => &index.span,
            Self::Resource => &index.resource,
        }
    }
}

/// One conjunct that reads only attribute entries with literal keys.
#[derive(Debug)]
struct Condition {
    /// The entries it reads, distinct.
    entries: Vec<(MapColumn, String)>,
    /// The map columns it reads, in `schema` order.
    maps: Vec<MapColumn>,
    schema: SchemaRef,
    predicate: Arc<dyn PhysicalExpr>,
}

/// The conjuncts of a scan's filters that the attribute index can decide.
#[derive(Debug, Default)]
pub(crate) struct AttributePruner {
    conditions: Vec<Condition>,
}

impl AttributePruner {
    /// The usable conjuncts of `filters` over a table with `table_schema`
    /// (only tables with both attribute maps, i.e. `spans`, get any).
    pub fn new(filters: &[Expr], table_schema: &Schema) -> Self {
        let mut conditions = Vec::new();
        for filter in filters {
            for conjunct in split_conjunction(filter) {
                if let Some(condition) = Condition::new(conjunct, table_schema) {
                    conditions.push(condition);
                }
            }
        }
        Self { conditions }
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// True when the file's index proves that no span of it passes the filters.
    pub fn prunes(&self, file: &FileEntry) -> bool {
        let Some(index) = file.attribute_index.as_deref() else {
            return false;
        };
        self.conditions.iter().any(|c| c.rejects_all(index))
    }
}

impl Condition {
    fn new(conjunct: &Expr, table_schema: &Schema) -> Option<Self> {
        if conjunct.is_volatile() {
            return None;
        }
        let conjunct = unnormalize_col(conjunct.clone());
        let mut entries = BTreeSet::new();
        let mut usable = true;
        conjunct
            .apply(|expr| {
                if let Some(entry) = literal_entry(expr) {
                    entries.insert(entry);
                    return Ok(TreeNodeRecursion::Jump);
                }
                match expr {
                    // Any other read of a column (or of something outside
                    // the row) is not a function of the indexed entries.
                    Expr::Column(_)
                    | Expr::OuterReferenceColumn(..)
                    | Expr::Placeholder(_)
                    | Expr::ScalarSubquery(_)
                    | Expr::Exists(_)
                    | Expr::InSubquery(_) => {
                        usable = false;
                        Ok(TreeNodeRecursion::Stop)
                    }
                    _ => Ok(TreeNodeRecursion::Continue),
                }
            })
            .ok()?;
        if !usable || entries.is_empty() {
            return None;
        }
        let maps: Vec<MapColumn> = entries
            .iter()
            .map(|(m, _)| *m)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let fields: Vec<Field> = maps
            .iter()
            .map(|m| table_schema.field_with_name(m.name()).cloned())
            .collect::<Result<_, _>>()
            .ok()?;
        let schema = Arc::new(Schema::new(fields));
        let df_schema = DFSchema::try_from(Arc::clone(&schema)).ok()?;
        let predicate = create_physical_expr(
            &conjunct,
            &df_schema,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )
        .ok()?;
        Some(Self {
            entries: entries.into_iter().collect(),
            maps,
            schema,
            predicate,
        })
    }

    /// True when no combination of the values the file's index allows for
    /// the entries makes the conjunct true.
    fn rejects_all(&self, index: &AttributeIndex) -> bool {
        let mut choices: Vec<Vec<Option<&str>>> = Vec::with_capacity(self.entries.len());
        let mut rows = 1usize;
        for (map, key) in &self.entries {
            let Some(values) = map.index(index).possible_values(key) else {
                return false;
            };
            rows = rows.saturating_mul(values.len());
            choices.push(values);
        }
        if rows == 0 || rows > MAX_COMBINATIONS {
            return rows == 0;
        }
        let Ok(batch) = self.rows(&choices, rows) else {
            return false;
        };
        let Ok(result) = self
            .predicate
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
        else {
            return false;
        };
        let Some(result) = result.as_boolean_opt() else {
            return false;
        };
        result.true_count() == 0
    }

    /// Every combination of `choices` (one per entry), as rows of the map columns.
    fn rows(
        &self,
        choices: &[Vec<Option<&str>>],
        rows: usize,
    ) -> datafusion::error::Result<RecordBatch> {
        let mut builders: Vec<MapBuilder<StringBuilder, StringBuilder>> = self
            .maps
            .iter()
            .map(|_| MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()))
            .collect();
        for row in 0..rows {
            // Mixed radix: entry i takes value (row / product of the earlier
            // entries' counts) % its count.
            let mut rest = row;
            for ((map, key), values) in self.entries.iter().zip(choices) {
                let value = values[rest % values.len()];
                rest /= values.len();
                let Some(value) = value else {
                    // NULL: the key absent from the row.
                    continue;
                };
                let builder = &mut builders[self.map_position(*map)];
                builder.keys().append_value(key);
                builder.values().append_value(value);
            }
            for builder in &mut builders {
                builder.append(true)?;
            }
        }
        let columns = builders
            .iter_mut()
            .zip(self.schema.fields())
            .map(|(builder, field)| {
                let array: ArrayRef = Arc::new(builder.finish());
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    Ok(cast(&array, field.data_type())?)
                }
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    fn map_position(&self, map: MapColumn) -> usize {
        self.maps.iter().position(|m| *m == map).unwrap_or(0)
    }
}

/// `get_field(<attribute map>, '<key>')`: the entry it reads.
fn literal_entry(expr: &Expr) -> Option<(MapColumn, String)> {
    let Expr::ScalarFunction(function) = expr else {
        return None;
    };
    if function.name() != "get_field" {
        return None;
    }
    let [Expr::Column(column), Expr::Literal(key, _)] = function.args.as_slice() else {
        return None;
    };
    let map = MapColumn::of(&column.name)?;
    match key {
        ScalarValue::Utf8(Some(key))
        | ScalarValue::Utf8View(Some(key))
        | ScalarValue::LargeUtf8(Some(key)) => Some((map, key.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::sql_schema;
    use datafusion::prelude::SessionContext;
    use lighttrace_storage::Table;
    use lighttrace_storage::attribute_index::KeyValues;
    use lighttrace_storage::partition::PartitionKey;
    use lighttrace_storage::trace_filter::TraceIdFilter;

    fn values(values: &[&str], in_every_row: bool) -> KeyValues {
        KeyValues {
            in_every_row,
            values: Some(values.iter().map(|v| v.to_string()).collect()),
            null_value: false,
        }
    }

    /// A file whose spans have `code` in {200, 503} (always), `route` in {/a,
    /// /b} or absent, `ip` with unknown values, and resource `region` = eu.
    fn file() -> FileEntry {
        let mut span = MapIndex {
            complete: true,
            ..Default::default()
        };
        span.keys
            .insert("code".into(), values(&["200", "503"], true));
        span.keys
            .insert("route".into(), values(&["/a", "/b"], false));
        span.keys.insert(
            "ip".into(),
            KeyValues {
                in_every_row: true,
                values: None,
                null_value: false,
            },
        );
        let mut resource = MapIndex::default();
        resource.keys.insert("region".into(), values(&["eu"], true));
        let index = AttributeIndex { span, resource };
        FileEntry {
            path: "f.parquet".into(),
            size_bytes: 1,
            row_count: 1,
            partition: PartitionKey::new("p", "s", 1),
            min_start_ns: 0,
            max_start_ns: 0,
            min_end_ns: 0,
            max_end_ns: 0,
            max_wal_seq: 0,
            trace_filter: TraceIdFilter::with_capacity(1),
            attribute_index: Some(Arc::new(index)),
        }
    }

    /// A table that records the filters DataFusion pushes into its scan.
    #[derive(Debug, Default)]
    struct Capture {
        filters: std::sync::Mutex<Vec<Expr>>,
    }

    #[async_trait::async_trait]
    impl datafusion::catalog::TableProvider for Capture {
        fn schema(&self) -> SchemaRef {
            sql_schema(Table::Spans)
        }
        fn table_type(&self) -> datafusion::datasource::TableType {
            datafusion::datasource::TableType::Base
        }
        fn supports_filters_pushdown(
            &self,
            filters: &[&Expr],
        ) -> datafusion::error::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>>
        {
            Ok(vec![
                datafusion::logical_expr::TableProviderFilterPushDown::Inexact;
                filters.len()
            ])
        }
        async fn scan(
            &self,
            _state: &dyn datafusion::catalog::Session,
            projection: Option<&Vec<usize>>,
            filters: &[Expr],
            _limit: Option<usize>,
        ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            *self.filters.lock().unwrap() = filters.to_vec();
            let schema = datafusion::common::project_schema(&self.schema(), projection)?;
            Ok(Arc::new(datafusion::physical_plan::empty::EmptyExec::new(
                schema,
            )))
        }
    }

    /// Whether the `WHERE` clause `filter` of a query of `spans` prunes the file.
    async fn prunes(filter: &str) -> bool {
        let ctx = SessionContext::new();
        let capture = Arc::new(Capture::default());
        ctx.register_table("spans", capture.clone()).unwrap();
        ctx.sql(&format!("SELECT span_id FROM spans s WHERE {filter}"))
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let filters = capture.filters.lock().unwrap().clone();
        AttributePruner::new(&filters, &sql_schema(Table::Spans)).prunes(&file())
    }

    #[tokio::test]
    async fn prunes_only_what_no_span_can_pass() {
        let cases = [
            // TraceQL's forms, as the planner writes them.
            (
                "coalesce(TRY_CAST(s.attributes['code'] AS DOUBLE) = 500.0, FALSE)",
                true,
            ),
            (
                "coalesce(TRY_CAST(attributes['code'] AS DOUBLE) = 503.0, FALSE)",
                false,
            ),
            (
                "coalesce(TRY_CAST(attributes['code'] AS DOUBLE) >= 500.0, FALSE)",
                false,
            ),
            (
                "coalesce(TRY_CAST(attributes['code'] AS DOUBLE) > 503.0, FALSE)",
                true,
            ),
            ("coalesce(attributes['route'] = '/c', FALSE)", true),
            ("coalesce(attributes['route'] = '/b', FALSE)", false),
            (
                "coalesce(regexp_like(attributes['route'], '^(?:/c.*)$'), FALSE)",
                true,
            ),
            (
                "coalesce(regexp_like(attributes['route'], '^(?:/a.*)$'), FALSE)",
                false,
            ),
            // Absent from a complete index: NULL everywhere.
            ("attributes['missing'] IS NOT NULL", true),
            ("attributes['missing'] IS NULL", false),
            // `route` is absent from some rows, `code` from none.
            ("attributes['route'] IS NULL", false),
            ("attributes['code'] IS NULL", true),
            ("attributes['route'] <> '/a'", false),
            // Unknown values, or an incomplete index: never pruned.
            ("attributes['ip'] = '10.0.0.1'", false),
            ("resource_attributes['other'] = 'x'", false),
            ("resource_attributes['region'] = 'us'", true),
            (
                "coalesce(attributes['region'], resource_attributes['region']) = 'us'",
                true,
            ),
            (
                "coalesce(attributes['region'], resource_attributes['region']) = 'eu'",
                false,
            ),
            // Both entries in one conjunct, every combination tried.
            (
                "attributes['route'] = '/a' AND attributes['code'] = '404'",
                true,
            ),
            (
                "attributes['route'] = '/a' OR attributes['code'] = '404'",
                false,
            ),
            // Other columns make the conjunct undecidable here.
            ("attributes['code'] = '500' OR name = 'x'", false),
            ("cardinality(attributes) = 0", false),
        ];
        for (filter, expected) in cases {
            assert_eq!(prunes(filter).await, expected, "{filter}");
        }
    }

    #[test]
    fn files_without_an_index_are_kept() {
        let schema = sql_schema(Table::Spans);
        let filter = datafusion::functions::core::expr_fn::get_field(
            datafusion::prelude::col(columns::ATTRIBUTES),
            "code",
        )
        .eq(datafusion::prelude::lit("500"));
        let pruner = AttributePruner::new(&[filter], &schema);
        assert!(!pruner.is_empty());
        let mut file = file();
        assert!(pruner.prunes(&file));
        file.attribute_index = None;
        assert!(!pruner.prunes(&file));
    }
}
