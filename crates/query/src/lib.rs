//! LightTrace query: SQL over the lake with DataFusion.
//!
//! This crate sits at the read end of the data path:
//!
//! ```text
//! SQL (HTTP, CLI, Postgres wire) ──► QueryEngine::run ──► sandbox ──► DataFusion plan
//!                                                                       │ spans
//!                                                         ▼
//!                          SpansTableProvider: one Lake::snapshot() per scan
//!                             ├── files   pruned by project / service / time / trace id /
//!                             │           attribute values (the catalog's index),
//!                             │           then Parquet (row groups, page index, bloom filters)
//!                             └── buffers pruned by project / service / time
//!                                          ▼
//!                          SpansScanExec (EXPLAIN shows what was pruned)
//! ```
//!
//! * [`QueryEngine`] runs one statement per call on its own tokio runtime, with a
//!   per-query memory pool and a time limit ([`QueryConfig`]), and returns the
//!   collected batches ([`QueryOutput`]) or a [`QueryError`] whose variant says
//!   who is to blame (the server maps it to an HTTP status).
//! * The sandbox lets through only queries (`SELECT`, `WITH`, `VALUES`,
//!   `EXPLAIN`, `DESCRIBE`, `SHOW`): no DDL, DML, `COPY`, external tables, `SET`,
//!   file paths or file-reading table functions. See `sandbox.rs` for the layers.
//! * [`SpansTableProvider`] is the `spans` table of the DESIGN contract. It
//!   enforces the [`ProjectScope`] itself: with `Project(p)`, other projects'
//!   files and buffers are never read, whatever the SQL says (joins, subqueries
//!   and unions all go through the same provider).
//! * [`trace::lookup_trace`] reads one trace (spans, errors, logs) by id, without
//!   a time hint, and analyzes it with `lighttrace-analysis` (tree, clock skew,
//!   self time, critical path) into a serializable [`trace::TraceView`]: the
//!   server's `GET /api/v1/traces/{id}` and `lighttrace trace` share it.
//! * [`encode`] turns results into Arrow IPC streams and JSON, one set of rules
//!   for the SQL API, the CLI and trace lookups.
//! * [`QueryEngine::run`] and [`QueryEngine::describe`] take a [`SqlRequest`]:
//!   positional parameters (`$1`) bound as values, and the [`SqlDialect`]:
//!   DataFusion's, or Postgres' for the Postgres wire protocol, whose sessions
//!   also get `pg_catalog` and the functions Postgres clients call
//!   ([`postgres`]). `describe` plans without running: parameter types and
//!   result schema, through the same sandbox.
//! * [`reports`]: the named reports of `sql/reports/` (compiled in), their
//!   parameters bound as values; [`functions`]: SQL functions LightTrace adds
//!   (`critical_path`), registered in every session.
//! * `attributes['http.route']` works on the `Map(Utf8 → Utf8)` columns through
//!   DataFusion's map field access (`get_field`); a missing key gives `NULL`.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use lighttrace_query::{ProjectScope, QueryConfig, QueryEngine};
//! use lighttrace_storage::{Lake, StorageConfig};
//!
//! let lake = Lake::open(StorageConfig::new("./lighttrace-data")).await?;
//! let engine = QueryEngine::new(lake, QueryConfig::default())?;
//! let scope = ProjectScope::Project("default".into());
//! let output = engine
//!     .sql(
//!         "SELECT service_name, count(*) FROM spans \
//!          WHERE start_time > now() - INTERVAL '1 hour' GROUP BY 1",
//!         &scope,
//!     )
//!     .await?;
//! println!("{}", output.to_pretty_string()?);
//! // The plan shows which files were pruned before anything was opened:
//! let plan = engine
//!     .explain("SELECT * FROM spans WHERE trace_id = '4bf92f3577b34da6a3ce929d0e0e4736'", &scope)
//!     .await?;
//! assert!(plan.contains("SpansScanExec: files="));
//! # Ok(())
//! # }
//! ```

mod attribute_pruning;
pub mod encode;
mod engine;
mod error;
mod exec;
pub mod functions;
mod layout;
pub mod metrics;
pub mod postgres;
mod provider;
mod pruning;
mod quantiles;
pub mod reports;
mod sandbox;
pub mod search;
pub mod step_series;
pub mod trace;
pub mod traceql;

use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;

pub use engine::{QueryEngine, SPANS_TABLE, SqlDialect, SqlRequest, StatementShape};
pub use error::QueryError;
pub use exec::SpansScanExec;
pub use provider::{LAKE_OBJECT_STORE_URL, LakeTableProvider, SpansTableProvider};
pub use pruning::PruningStats;

/// Limits of the [`QueryEngine`]; the defaults suit a laptop.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Memory one query may use for hash tables, sorts and buffers; past it the
    /// query fails with [`QueryError::ResourcesExhausted`] (nothing spills to disk).
    pub memory_limit_bytes: usize,
    /// Wall-clock limit of one query, planning included; past it the query is
    /// cancelled and fails with [`QueryError::Timeout`].
    pub timeout: Duration,
    /// Parallelism of one query, and the number of threads of the engine's
    /// runtime.
    pub target_partitions: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            memory_limit_bytes: 1 << 30,
            timeout: Duration::from_secs(30),
            target_partitions: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
        }
    }
}

/// Which spans a query may read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProjectScope {
    /// Every project (authentication off, or an operator).
    All,
    /// Only this project: every read of `spans` is restricted to it.
    Project(String),
}

/// The collected result of a query.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The result as an ASCII table.
    pub fn to_pretty_string(&self) -> Result<String, ArrowError> {
        Ok(arrow::util::pretty::pretty_format_batches(&self.batches)?.to_string())
    }

    /// The text of an `EXPLAIN` result: its `plan` column, one plan after the
    /// other, each preceded by its `plan_type`. Empty for other results.
    pub fn explain_text(&self) -> String {
        let (Ok(type_index), Ok(plan_index)) = (
            self.schema.index_of("plan_type"),
            self.schema.index_of("plan"),
        ) else {
            return String::new();
        };
        let mut text = String::new();
        for batch in &self.batches {
            let (Some(types), Some(plans)) = (
                batch.column(type_index).as_string_opt::<i32>(),
                batch.column(plan_index).as_string_opt::<i32>(),
            ) else {
                continue;
            };
            for row in 0..batch.num_rows() {
                if types.is_valid(row) {
                    text.push_str(types.value(row));
                    text.push_str(":\n");
                }
                if plans.is_valid(row) {
                    text.push_str(plans.value(row));
                    text.push('\n');
                }
            }
        }
        text
    }
}
