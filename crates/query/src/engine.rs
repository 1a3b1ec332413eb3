//! [`QueryEngine`]: one sandboxed, time- and memory-limited SQL query at a time per call.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use std::future::Future;

use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::{ParamValues, Result as DfResult};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionConfig;
use datafusion::sql::sqlparser::dialect::{GenericDialect, PostgreSqlDialect};
use futures::StreamExt;
use lighttrace_storage::{Lake, Table};
use object_store::ObjectStore;
use url::Url;

use crate::postgres::PgSession;
use crate::provider::{LAKE_OBJECT_STORE_URL, LakeTableProvider};
use crate::{ProjectScope, QueryConfig, QueryError, QueryOutput, sandbox};

/// The name users query.
pub const SPANS_TABLE: &str = "spans";

/// Runs user SQL over the lake.
///
/// Each query gets a fresh DataFusion session (its own catalog holding only
/// `spans` for the caller's [`ProjectScope`], plus `information_schema`) and its
/// own memory pool of [`QueryConfig::memory_limit_bytes`], with spilling to disk
/// disabled so that a query over the limit fails cleanly. Planning and execution
/// run on a tokio runtime owned by the engine, so CPU-heavy queries never occupy
/// the caller's (network) runtime; the caller only waits, at most
/// [`QueryConfig::timeout`], and a query past it is cancelled.
pub struct QueryEngine {
    lake: Arc<Lake>,
    config: QueryConfig,
    runtime: CpuRuntime,
    /// Shared by every query: the object store registry (the lake only), the
    /// disabled disk manager, and the Parquet metadata cache.
    base_env: Arc<RuntimeEnv>,
}

impl QueryEngine {
    pub fn new(lake: Arc<Lake>, config: QueryConfig) -> Result<Self, QueryError> {
        if config.memory_limit_bytes == 0 {
            return Err(QueryError::Internal(
                "query memory limit must be above 0 bytes".into(),
            ));
        }
        if config.timeout.is_zero() {
            return Err(QueryError::Internal(
                "query time limit must be above 0".into(),
            ));
        }
        let threads = config.target_partitions.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("lighttrace-query")
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("cannot start the query runtime: {e}")))?;
        let registry = LakeOnlyRegistry::new(lake.object_store())
            .map_err(|e| QueryError::Internal(e.strip_backtrace()))?;
        let base_env = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::new(registry))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| QueryError::Internal(e.strip_backtrace()))?;
        Ok(QueryEngine {
            lake,
            config,
            runtime: CpuRuntime(Some(runtime)),
            base_env,
        })
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// Runs one read-only statement for `scope` and collects its result.
    ///
    /// Must be called from within a tokio runtime (it times the query with
    /// `tokio::time`). Dropping the returned future cancels the query.
    /// The services with spans (in files or buffered) that may start in
    /// `[from_ns, to_ns)`, as the catalog and the buffers say, within `scope`.
    pub fn services(&self, scope: &ProjectScope, from_ns: i64, to_ns: i64) -> BTreeSet<String> {
        let snapshot = self.lake.snapshot();
        let in_scope = |project: &str| match scope {
            ProjectScope::All => true,
            ProjectScope::Project(p) => p == project,
        };
        let overlaps = |min: i64, max: i64| min < to_ns && max >= from_ns;
        let files = snapshot
            .files_of(Table::Spans)
            .filter(|f| overlaps(f.min_start_ns, f.max_start_ns))
            .map(|f| &f.partition);
        let buffered = snapshot
            .buffered_of(Table::Spans)
            .filter(|b| overlaps(b.min_start_ns, b.max_start_ns))
            .map(|b| &b.key);
        files
            .chain(buffered)
            .filter(|key| in_scope(&key.project))
            .map(|key| key.service.to_string())
            .collect()
    }

    pub async fn sql(&self, sql: &str, scope: &ProjectScope) -> Result<QueryOutput, QueryError> {
        self.sql_with_params(sql, None, scope).await
    }

    /// Like [`QueryEngine::sql`], with values for the statement's named
    /// placeholders (`$from`, `$service`, …). The values replace the
    /// placeholders in the logical plan, before optimization (so they prune
    /// like literals); they are never pasted into the SQL text.
    pub async fn sql_with_params(
        &self,
        sql: &str,
        params: Option<ParamValues>,
        scope: &ProjectScope,
    ) -> Result<QueryOutput, QueryError> {
        self.run(SqlRequest {
            sql: sql.to_owned(),
            params,
            scope: scope.clone(),
            dialect: SqlDialect::default(),
        })
        .await
    }

    /// Runs `request` (sandboxed, within the engine's time and memory limits)
    /// and collects its result.
    pub async fn run(&self, request: SqlRequest) -> Result<QueryOutput, QueryError> {
        let query = self.prepare(request);
        self.within_limits(query.execute()).await
    }

    /// Plans `request` without running it: the types of its positional
    /// parameters (`$1`, `$2`, …) and the schema of its result. The statement
    /// passes the same sandbox as [`QueryEngine::run`]; with `params`, they
    /// are bound first (so a placeholder's value decides the column type).
    pub async fn describe(&self, request: SqlRequest) -> Result<StatementShape, QueryError> {
        let query = self.prepare(request);
        self.within_limits(query.describe()).await
    }

    fn prepare(&self, request: SqlRequest) -> PreparedQuery {
        PreparedQuery {
            request,
            lake: Arc::clone(&self.lake),
            config: self.config.clone(),
            base_env: Arc::clone(&self.base_env),
        }
    }

    /// Runs `work` on the engine's runtime, cancelled past the time limit or
    /// when the caller stops waiting.
    async fn within_limits<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        let mut task = AbortOnDrop(self.runtime.handle().spawn(work));
        match tokio::time::timeout(self.config.timeout, &mut task.0).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) if join.is_panic() => {
                tracing::error!(error = %join, "query panicked");
                Err(QueryError::Internal("the query failed unexpectedly".into()))
            }
            Ok(Err(join)) => Err(QueryError::Internal(format!("query was cancelled: {join}"))),
            Err(_elapsed) => Err(QueryError::Timeout(self.config.timeout)),
            // `task` aborts the query when it goes out of scope here.
        }
    }

    /// `EXPLAIN <sql>` as text (the physical plan shows [`SpansScanExec`]'s
    /// pruning); for tests and for `lighttrace sql --explain`.
    ///
    /// [`SpansScanExec`]: crate::SpansScanExec
    pub async fn explain(&self, sql: &str, scope: &ProjectScope) -> Result<String, QueryError> {
        let output = self.sql(&format!("EXPLAIN {sql}"), scope).await?;
        Ok(output.explain_text())
    }
}

/// One statement to run or describe.
#[derive(Debug, Clone)]
pub struct SqlRequest {
    /// One statement.
    pub sql: String,
    /// Values of its placeholders: named (`$from`) or positional (`$1`).
    pub params: Option<ParamValues>,
    /// What it may read.
    pub scope: ProjectScope,
    /// How it is parsed, and what its session has besides the lake's tables.
    pub dialect: SqlDialect,
}

/// The SQL a statement is written in.
#[derive(Debug, Clone, Default)]
pub enum SqlDialect {
    /// DataFusion's SQL: the HTTP API, the CLI and the reports.
    #[default]
    DataFusion,
    /// PostgreSQL's, for the Postgres wire protocol: parsed with the Postgres
    /// dialect, in a session that also has `pg_catalog` and the functions
    /// Postgres clients call (see [`crate::postgres`]). The sandbox is the
    /// same.
    Postgres(PgSession),
}

/// What [`QueryEngine::describe`] found out about a statement.
#[derive(Debug, Clone)]
pub struct StatementShape {
    /// The type of `$1`, `$2`, …, in order; `None` where the statement does
    /// not decide it (`SELECT $1`).
    pub parameter_types: Vec<Option<DataType>>,
    /// The columns of its result.
    pub schema: SchemaRef,
}

struct PreparedQuery {
    request: SqlRequest,
    lake: Arc<Lake>,
    config: QueryConfig,
    base_env: Arc<RuntimeEnv>,
}

impl PreparedQuery {
    fn df_error(&self) -> impl Fn(DataFusionError) -> QueryError + use<> {
        let limit = self.config.memory_limit_bytes;
        move |e| QueryError::from_datafusion(e, limit)
    }

    /// The session and the sandboxed logical plan, with the parameters bound
    /// when there are any.
    async fn plan(&self) -> Result<(SessionContext, LogicalPlan), QueryError> {
        let df_error = self.df_error();
        let ctx = self.session().map_err(&df_error)?;
        let recursion_limit = ctx
            .state()
            .config_options()
            .sql_parser
            .recursion_limit
            .get();
        let statement = match &self.request.dialect {
            SqlDialect::DataFusion => {
                sandbox::parse_checked_with(&self.request.sql, recursion_limit, &GenericDialect {})?
            }
            SqlDialect::Postgres(_) => {
                let mut statement = sandbox::parse_checked_with(
                    &self.request.sql,
                    recursion_limit,
                    &PostgreSqlDialect {},
                )?;
                crate::postgres::rewrite(&mut statement);
                statement
            }
        };
        let state = ctx.state();
        let mut plan = state
            .statement_to_plan(statement)
            .await
            .map_err(&df_error)?;
        if let Some(params) = &self.request.params {
            plan = plan
                .with_param_values(params.clone())
                .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
        }
        sandbox::verify_plan(&plan)?;
        Ok((ctx, plan))
    }

    async fn describe(self) -> Result<StatementShape, QueryError> {
        let (_ctx, plan) = self.plan().await?;
        let types = plan
            .get_parameter_types()
            .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
        let count = types
            .keys()
            .filter_map(|name| name.strip_prefix('$')?.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        let parameter_types = (1..=count)
            .map(|i| types.get(&format!("${i}")).cloned().flatten())
            .collect();
        Ok(StatementShape {
            parameter_types,
            schema: text_results(&Arc::new(plan.schema().as_arrow().clone())),
        })
    }

    async fn execute(self) -> Result<QueryOutput, QueryError> {
        let df_error = self.df_error();
        let (ctx, plan) = self.plan().await?;
        let state = ctx.state();
        let physical = state.create_physical_plan(&plan).await.map_err(&df_error)?;
        let schema = text_results(&physical.schema());
        // The collected result counts against the query's memory limit too, so
        // `SELECT * FROM spans` over a large lake fails cleanly instead of
        // growing the server without bound.
        let result_memory =
            MemoryConsumer::new("query result").register(&ctx.runtime_env().memory_pool);
        let mut stream = execute_stream(physical, ctx.task_ctx()).map_err(&df_error)?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(&df_error)?;
            result_memory
                .try_grow(batch.get_array_memory_size())
                .map_err(&df_error)?;
            batches.push(crate::provider::cast_to_schema(batch, &schema).map_err(&df_error)?);
        }
        Ok(QueryOutput { schema, batches })
    }

    fn session(&self) -> DfResult<SessionContext> {
        let runtime = RuntimeEnvBuilder::from_runtime_env(&self.base_env)
            .with_memory_limit(self.config.memory_limit_bytes, 1.0)
            .build_arc()?;
        let mut config = SessionConfig::new()
            .with_target_partitions(self.config.target_partitions.max(1))
            .with_information_schema(true);
        if let SqlDialect::Postgres(_) = &self.request.dialect {
            config = config.with_default_catalog_and_schema(
                crate::postgres::DATABASE,
                crate::postgres::SCHEMA,
            );
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            // No `CREATE EXTERNAL TABLE` formats (refused earlier anyway).
            .with_table_factories(HashMap::new())
            .build();
        // URL tables (`SELECT * FROM 'file.parquet'`) stay off: never call
        // `enable_url_table` here.
        let ctx = SessionContext::new_with_state(state);
        for function in crate::functions::aggregate_functions() {
            ctx.register_udaf(function);
        }
        // One snapshot for the whole query: every scan in it (self-joins,
        // subqueries, a trace's spans joined with its logs and errors) sees
        // the same rows.
        let snapshot = Arc::new(self.lake.snapshot());
        for table in Table::ALL {
            ctx.register_table(
                table.name(),
                Arc::new(LakeTableProvider::of_snapshot(
                    table,
                    Arc::clone(&self.lake),
                    Arc::clone(&snapshot),
                    self.request.scope.clone(),
                )),
            )?;
        }
        if let SqlDialect::Postgres(pg) = &self.request.dialect {
            crate::postgres::install(&ctx, pg)?;
        }
        Ok(ctx)
    }
}

/// An object store registry that knows the lake and nothing else: no `file://`,
/// so no query can reach the local file system through DataFusion.
#[derive(Debug)]
struct LakeOnlyRegistry {
    lake_url: Url,
    lake: Arc<dyn ObjectStore>,
}

impl LakeOnlyRegistry {
    fn new(lake: Arc<dyn ObjectStore>) -> DfResult<Self> {
        let parsed = ObjectStoreUrl::parse(LAKE_OBJECT_STORE_URL)?;
        let url: &Url = parsed.as_ref();
        Ok(LakeOnlyRegistry {
            lake_url: url.clone(),
            lake,
        })
    }

    fn is_lake(&self, url: &Url) -> bool {
        url.scheme() == self.lake_url.scheme() && url.host_str() == self.lake_url.host_str()
    }
}

impl ObjectStoreRegistry for LakeOnlyRegistry {
    fn register_store(
        &self,
        _url: &Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        // Fixed at construction; nothing else may be registered.
        None
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if self.is_lake(url) {
            Ok(Arc::clone(&self.lake))
        } else {
            datafusion::common::plan_err!(
                "reading files is not allowed: no object store for {}",
                url.scheme()
            )
        }
    }
}

/// The engine's own runtime for planning and execution.
struct CpuRuntime(Option<tokio::runtime::Runtime>);

impl CpuRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives until CpuRuntime is dropped")
            .handle()
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        // The engine may be dropped inside another runtime, where a blocking
        // shutdown would panic; running queries are cancelled either way.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Cancels the query when the caller stops waiting (timeout or dropped future).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `schema` with Utf8 wherever it has Utf8View, also inside lists, structs
/// and maps.
///
/// The `spans` table reads its text columns as views
/// ([`crate::provider::sql_schema`]); results go back to clients (JSON, Arrow
/// IPC, the Postgres wire, the CLI, the reports' callers) as Utf8, the type the
/// API has always reported.
fn text_results(schema: &SchemaRef) -> SchemaRef {
    if !schema.fields().iter().any(|f| holds_view(f.data_type())) {
        return Arc::clone(schema);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            f.as_ref()
                .clone()
                .with_data_type(without_views(f.data_type()))
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn holds_view(data_type: &DataType) -> bool {
    without_views(data_type) != *data_type
}

fn without_views(data_type: &DataType) -> DataType {
    let field = |f: &FieldRef| {
        Arc::new(
            f.as_ref()
                .clone()
                .with_data_type(without_views(f.data_type())),
        )
    };
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(field).collect()),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        other => other.clone(),
    }
}
