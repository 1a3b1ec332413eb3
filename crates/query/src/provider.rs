//! [`LakeTableProvider`]: a table of the lake (`spans`, `logs`, `errors`) =
//! buffered batches ∪ pruned Parquet files.

use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{
    ColumnStatistics, DFSchema, Result, ScalarValue, Statistics, project_schema,
};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, col, lit};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use lighttrace_model::columns;
use lighttrace_storage::{BufferedPartition, FileEntry, Lake, LakeSnapshot, Table};

use crate::ProjectScope;
use crate::attribute_pruning::AttributePruner;
use crate::exec::{CoveredExec, SpansScanExec};
use crate::layout::SpansFileAdapterFactory;
use crate::pruning::{PruneReason, PruningStats, ScanConstraints};

/// The URL under which the lake's object store is registered in DataFusion's
/// `RuntimeEnv`; [`FileEntry::path`] is relative to it.
pub const LAKE_OBJECT_STORE_URL: &str = "lighttrace://lake/";

/// The `spans` table's provider (the lake's main table).
pub type SpansTableProvider = LakeTableProvider;

/// One table of the lake, for one [`ProjectScope`].
///
/// Each scan reads one [`Lake::snapshot`], so every acknowledged row is read
/// exactly once (from its buffer or from its file), also while a flush commits.
/// [`new`](Self::new) takes a fresh snapshot per scan (for a long-lived
/// registration); [`pinned`](Self::pinned) takes one when it is created, so that
/// every scan of one query (both sides of a self-join, subqueries) sees the same
/// snapshot; the [`QueryEngine`](crate::QueryEngine) pins one per query.
///
/// Files and buffered partitions are pruned by the pushed-down filters before
/// anything is opened. The scope is enforced here, not by rewriting SQL: with
/// [`ProjectScope::Project`], other projects' files and buffers are never read
/// (nor counted in `EXPLAIN`), and every row read is filtered by `project` once
/// more.
pub struct LakeTableProvider {
    table: Table,
    lake: Arc<Lake>,
    scope: ProjectScope,
    pinned: Option<Arc<LakeSnapshot>>,
    schema: SchemaRef,
}

impl fmt::Debug for LakeTableProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeTableProvider")
            .field("table", &self.table)
            .field("scope", &self.scope)
            .field(
                "pinned_catalog_version",
                &self.pinned.as_ref().map(|s| s.catalog_version),
            )
            .finish_non_exhaustive()
    }
}

impl LakeTableProvider {
    /// The `spans` table, reading a fresh snapshot in every scan.
    pub fn new(lake: Arc<Lake>, scope: ProjectScope) -> Self {
        Self::of_table(Table::Spans, lake, scope)
    }

    /// The `spans` table, reading the snapshot taken now in every scan.
    pub fn pinned(lake: Arc<Lake>, scope: ProjectScope) -> Self {
        let snapshot = Arc::new(lake.snapshot());
        Self::of_snapshot(Table::Spans, lake, snapshot, scope)
    }

    /// `table`, reading a fresh snapshot in every scan.
    pub fn of_table(table: Table, lake: Arc<Lake>, scope: ProjectScope) -> Self {
        LakeTableProvider {
            table,
            lake,
            scope,
            pinned: None,
            schema: sql_schema(table),
        }
    }

    /// `table`, reading `snapshot` in every scan (one snapshot for every table
    /// of a query keeps them consistent with each other).
    pub fn of_snapshot(
        table: Table,
        lake: Arc<Lake>,
        snapshot: Arc<LakeSnapshot>,
        scope: ProjectScope,
    ) -> Self {
        LakeTableProvider {
            pinned: Some(snapshot),
            ..Self::of_table(table, lake, scope)
        }
    }

    fn scoped_project(&self) -> Option<&str> {
        match &self.scope {
            ProjectScope::All => None,
            ProjectScope::Project(p) => Some(p.as_str()),
        }
    }

    /// Parquet scan of `files`, `projection` over the table schema.
    fn parquet_exec(
        &self,
        state: &dyn Session,
        files: &[Arc<FileEntry>],
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let url = ObjectStoreUrl::parse(LAKE_OBJECT_STORE_URL)?;
        let runtime = state.runtime_env();
        // The engine's runtime has the lake registered already; a session built
        // by someone else gets it on first use.
        let store = match runtime.object_store(&url) {
            Ok(store) => store,
            Err(_) => {
                let store = self.lake.object_store();
                runtime.register_object_store(url.as_ref(), Arc::clone(&store));
                store
            }
        };

        let mut options = state.table_options().parquet.clone();
        options.global.pruning = true;
        options.global.enable_page_index = true;
        options.global.bloom_filter_on_read = true;
        // Evaluate filters while decoding (late materialization): a trace-id
        // lookup decodes the other columns only for the matching rows.
        options.global.pushdown_filters = true;
        options.global.reorder_filters = true;
        // Text columns the table declares as Utf8View (`sql_schema`) are read
        // as views whatever this says; the others stay Utf8.
        options.global.schema_force_view_types = true;

        let reader_factory = CachedParquetFileReaderFactory::new(
            store,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        // No predicate here: DataFusion's filter pushdown hands the query's
        // filters (and the scope filter, and dynamic filters of TopK and joins)
        // to this source through `SpansScanExec`, for row-group, page-index and
        // bloom-filter pruning and row-level filtering.
        let source = ParquetSource::new(Arc::clone(&self.schema))
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(reader_factory));
        let target = state.config().target_partitions().max(1);
        let mut config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_groups(group_files(files, target, &self.schema))
            .with_projection_indices(projection)?
            .with_limit(limit);
        if self.table == Table::Spans {
            // Span files are stored in the compact layout (crate::layout).
            config = config.with_expr_adapter(Some(Arc::new(SpansFileAdapterFactory)));
        }
        let config = config.build();
        Ok(DataSourceExec::from_data_source(config))
    }

    /// Memory scan of the buffered batches, spread over the target partitions.
    fn buffered_exec(
        &self,
        state: &dyn Session,
        buffered: &[&BufferedPartition],
        projection: Option<Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let target = state.config().target_partitions().max(1);
        let batches: Vec<_> = buffered
            .iter()
            .flat_map(|b| b.batches.iter())
            .filter(|batch| batch.num_rows() > 0)
            .map(|batch| {
                // Buffers hold batches of the storage schema: text as Utf8 (cast
                // to views without copying the bytes), and field metadata
                // that may differ, which the memory source would reject.
                cast_to_schema(batch.clone(), &self.schema)
            })
            .collect::<Result<_>>()?;
        let mut partitions = vec![Vec::new(); target.min(batches.len()).max(1)];
        let count = partitions.len();
        for (i, batch) in batches.into_iter().enumerate() {
            partitions[i % count].push(batch);
        }
        let source =
            MemorySourceConfig::try_new(&partitions, Arc::clone(&self.schema), projection)?
                .with_limit(limit);
        Ok(DataSourceExec::from_data_source(source))
    }
}

/// The partition columns whose value is the same in every one of `files`
/// (each row of a file has its partition's service). An empty value is left
/// out: a null column value is stored in that partition too. `project` is
/// never left out of a scan: the scope filter on it is checked on every row,
/// whatever the catalog says about the files.
fn shared_partition(files: &[Arc<FileEntry>]) -> Vec<(&'static str, String)> {
    let Some(first) = files.first() else {
        return Vec::new();
    };
    let mut shared = Vec::new();
    let service = &first.partition.service;
    if !service.is_empty() && files.iter().all(|f| f.partition.service == *service) {
        shared.push((columns::SERVICE_NAME, service.to_string()));
    }
    shared
}

/// Splits files into at most `target` groups of similar byte size; files of one
/// partition and hour stay next to each other.
fn group_files(files: &[Arc<FileEntry>], target: usize, schema: &Schema) -> Vec<FileGroup> {
    let mut sorted: Vec<&Arc<FileEntry>> = files.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.partition, a.min_start_ns, &a.path).cmp(&(&b.partition, b.min_start_ns, &b.path))
    });
    let groups = target.min(sorted.len());
    if groups == 0 {
        return Vec::new();
    }
    let total: u64 = sorted.iter().map(|f| f.size_bytes).sum();
    let per_group = total.div_ceil(groups as u64).max(1);
    let mut out: Vec<Vec<PartitionedFile>> = vec![Vec::new()];
    let mut current_bytes = 0u64;
    for (i, file) in sorted.iter().enumerate() {
        let remaining_files = sorted.len() - i;
        let remaining_groups = groups - out.len();
        // Start a new group when this one is full, or when every remaining
        // group needs one of the remaining files.
        let full = current_bytes >= per_group || remaining_files <= remaining_groups;
        if !out.last().is_some_and(Vec::is_empty) && full && out.len() < groups {
            out.push(Vec::new());
            current_bytes = 0;
        }
        current_bytes += file.size_bytes;
        if let Some(group) = out.last_mut() {
            group.push(partitioned_file(file, schema));
        }
    }
    out.into_iter().map(FileGroup::new).collect()
}

/// `batch` as a batch of `schema`, which has its columns in the same order:
/// the columns whose type differs are cast (Utf8 ↔ Utf8View, nested types
/// too), the others are shared; the schema's field metadata replaces the batch's.
pub(crate) fn cast_to_schema(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema_ref() == schema {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

/// The schema SQL sees for `table`: its storage schema, except that the text
/// columns of `spans` other than the hex ids are `Utf8View`.
///
/// Span files store these columns dictionary-encoded. Read as views, a
/// dictionary page decodes without copying every value into a new string
/// array, and filters, `GROUP BY` and sorts on them use DataFusion's view
/// kernels (length and prefix compared inline). Results leave the engine as
/// Utf8 ([`crate::engine`]), so clients see the types they always saw; only
/// `arrow_typeof` and `information_schema` tell. The ids stay Utf8: files
/// store them as bytes and the scan hex-encodes them ([`crate::layout`]).
pub(crate) fn sql_schema(table: Table) -> SchemaRef {
    static SPANS: OnceLock<SchemaRef> = OnceLock::new();
    if table != Table::Spans {
        return table.schema();
    }
    Arc::clone(SPANS.get_or_init(|| with_text_views(&table.schema())))
}

fn with_text_views(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            let id = matches!(
                field.name().as_str(),
                columns::TRACE_ID | columns::SPAN_ID | columns::PARENT_SPAN_ID
            );
            if field.data_type() == &DataType::Utf8 && !id {
                field.as_ref().clone().with_data_type(DataType::Utf8View)
            } else {
                field.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `file` for DataFusion's Parquet scan of a table with `schema`.
fn partitioned_file(file: &FileEntry, schema: &Schema) -> PartitionedFile {
    let mut partitioned = PartitionedFile::new(file.path.clone(), file.size_bytes);
    // `PartitionedFile::new` builds the location with `Path::from`, which would
    // escape the `%` of escaped partition values once more.
    partitioned.object_meta.location = file.object_path();
    partitioned.statistics = Some(Arc::new(partition_constants(file, schema)));
    partitioned
}

/// Statistics that declare `project` and `service_name` constant in `file`.
///
/// Every row of a file has its partition's project and service: rows are
/// buffered per partition, split by exactly these two (non-null) columns
/// ([`lighttrace_storage::partition::split_by_partition`]), and a flush writes one
/// partition per file. Given an exact min = max and no nulls, DataFusion's
/// Parquet opener replaces both columns by literals in the file's projection and
/// predicate, so the reader never decodes them (a dictionary page per column
/// chunk, and a copy of the value per row). Nothing else is declared: a row
/// count here would let DataFusion answer `count(*)` from statistics, and
/// unknown statistics leave plans as they were.
fn partition_constants(file: &FileEntry, schema: &Schema) -> Statistics {
    let mut statistics = Statistics::new_unknown(schema);
    for (column, value) in [
        (columns::PROJECT, &file.partition.project),
        (columns::SERVICE_NAME, &file.partition.service),
    ] {
        let Ok(index) = schema.index_of(column) else {
            continue;
        };
        let value = match schema.field(index).data_type() {
            DataType::Utf8 => ScalarValue::Utf8(Some(value.to_string())),
            DataType::Utf8View => ScalarValue::Utf8View(Some(value.to_string())),
            _ => continue,
        };
        statistics.column_statistics[index] = ColumnStatistics {
            null_count: Precision::Exact(0),
            min_value: Precision::Exact(value.clone()),
            max_value: Precision::Exact(value),
            ..ColumnStatistics::new_unknown()
        };
    }
    statistics
}

#[async_trait]
impl TableProvider for LakeTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the scan prunes with them, DataFusion still applies them.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snapshot = match &self.pinned {
            Some(pinned) => Arc::clone(pinned),
            None => Arc::new(self.lake.snapshot()),
        };
        let constraints =
            ScanConstraints::with_time_column(filters, &self.scope, self.table.time_column());
        let attributes = AttributePruner::new(filters, &self.schema);
        let scoped = self.scoped_project();
        let in_scope = |project: &str| scoped.is_none_or(|p| p == project);

        let mut pruning = PruningStats::default();
        let mut files = Vec::new();
        for file in snapshot.files_of(self.table) {
            if !in_scope(&file.partition.project) {
                continue;
            }
            let reason = constraints.prune_file(file).or_else(|| {
                (!attributes.is_empty() && attributes.prunes(file))
                    .then_some(PruneReason::Attributes)
            });
            pruning.count_file(reason);
            if reason.is_none() {
                files.push(Arc::clone(file));
            }
        }
        let mut buffered = Vec::new();
        for partition in snapshot.buffered_of(self.table) {
            if !in_scope(&partition.key.project) {
                continue;
            }
            pruning.buffered_total += 1;
            if constraints.prune_buffered(partition).is_none() {
                pruning.buffered_scanned += 1;
                buffered.push(partition);
            }
        }

        // With a scope, the `project` column is read even when the query does
        // not select it, filtered, and projected away again.
        let project_index = self.schema.index_of(columns::PROJECT)?;
        let mut inner_projection = projection.cloned();
        let mut trim_to = None;
        if scoped.is_some()
            && let Some(p) = &mut inner_projection
            && !p.contains(&project_index)
        {
            trim_to = Some(p.len());
            p.push(project_index);
        }
        let scope_filter = scoped.map(|p| col(columns::PROJECT).eq(lit(p)));
        // With the scope filter above the sources, a limit inside them could cut
        // rows before the filter; the limit moves to the filter instead.
        let source_limit = if scoped.is_some() { None } else { limit };

        // Files wholly inside the query's time range are read without its time
        // filters, the others with them; filters on the partition values all
        // files share are not pushed into either.
        let (covered, files): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|f| constraints.covers(f.min_start_ns, f.max_start_ns));
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let scan = self.parquet_exec(state, &files, inner_projection.clone(), source_limit)?;
            inputs.push(CoveredExec::wrap(scan, None, shared_partition(&files)));
        }
        if let (Some(min_ns), Some(max_ns)) = (
            covered.iter().map(|f| f.min_start_ns).min(),
            covered.iter().map(|f| f.max_start_ns).max(),
        ) {
            let scan =
                self.parquet_exec(state, &covered, inner_projection.clone(), source_limit)?;
            inputs.push(CoveredExec::wrap(
                scan,
                Some((self.table.time_column(), min_ns, max_ns)),
                shared_partition(&covered),
            ));
        }
        if !buffered.is_empty() {
            inputs.push(self.buffered_exec(
                state,
                &buffered,
                inner_projection.clone(),
                source_limit,
            )?);
        }
        let inner_schema = project_schema(&self.schema, inner_projection.as_ref())?;
        let mut plan: Arc<dyn ExecutionPlan> = if inputs.is_empty() {
            Arc::new(EmptyExec::new(Arc::clone(&inner_schema)))
        } else {
            UnionExec::try_new(inputs)?
        };

        if let Some(filter) = &scope_filter {
            let df_schema = DFSchema::try_from(Arc::clone(&inner_schema))?;
            let predicate = state.create_physical_expr(filter.clone(), &df_schema)?;
            let filtered = FilterExec::try_new(predicate, plan)?;
            plan = match limit.and_then(|_| filtered.with_fetch(limit)) {
                Some(limited) => limited,
                None => Arc::new(filtered),
            };
        }
        if let Some(keep) = trim_to {
            let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = inner_schema
                .fields()
                .iter()
                .take(keep)
                .enumerate()
                .map(|(i, field)| {
                    (
                        Arc::new(Column::new(field.name(), i)) as Arc<dyn PhysicalExpr>,
                        field.name().clone(),
                    )
                })
                .collect();
            plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        }

        let filters = filters.iter().map(ToString::to_string).collect();
        Ok(Arc::new(SpansScanExec::new(
            plan,
            pruning,
            filters,
            scoped.map(str::to_owned),
        )))
    }
}
