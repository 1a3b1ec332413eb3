//! The SQL sandbox: users may read `spans` (and `information_schema`), nothing else.
//!
//! Three layers, each with its own message:
//!
//! 1. the text parses into exactly one statement, and that statement is a query
//!    (`SELECT`, `WITH`, `VALUES`, `TABLE`, `EXPLAIN` of one, `DESCRIBE`, `SHOW`):
//!    DDL, DML, `COPY`, `CREATE EXTERNAL TABLE`, `SET` / `RESET`, prepared
//!    statements and transactions are refused before planning;
//! 2. no relation names a file or URL, and no table function reads files (the
//!    session has no URL tables either, and its object store registry holds only
//!    the lake);
//! 3. the logical plan passes DataFusion's [`SQLOptions`] with DDL, DML and
//!    statements all disallowed.

use std::ops::ControlFlow;

use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{ObjectName, SetExpr, Statement, visit_relations};
use datafusion::sql::sqlparser::dialect::Dialect;

use crate::QueryError;

const ONLY_QUERIES: &str = "only queries (SELECT, WITH, VALUES, EXPLAIN, DESCRIBE, SHOW) can run";

/// Parses `sql` (DataFusion's SQL) and checks that it is one read-only statement.
#[cfg(test)]
pub(crate) fn parse_checked(sql: &str, recursion_limit: usize) -> Result<DfStatement, QueryError> {
    parse_checked_with(
        sql,
        recursion_limit,
        &datafusion::sql::sqlparser::dialect::GenericDialect {},
    )
}

/// Parses `sql` in `dialect` and checks that it is one read-only statement.
/// Every dialect gets the same checks: the dialect only decides the syntax.
pub(crate) fn parse_checked_with(
    sql: &str,
    recursion_limit: usize,
    dialect: &dyn Dialect,
) -> Result<DfStatement, QueryError> {
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(dialect)
        .with_recursion_limit(recursion_limit)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
    if statements.len() > 1 {
        return Err(QueryError::Refused(format!(
            "only one statement per request, got {}",
            statements.len()
        )));
    }
    let statement = statements
        .pop_front()
        .ok_or_else(|| QueryError::Invalid("the SQL text holds no statement".into()))?;
    check_df_statement(&statement)?;
    Ok(statement)
}

/// Layer 3: DataFusion's own check of the plan.
pub(crate) fn verify_plan(plan: &LogicalPlan) -> Result<(), QueryError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| {
            let message = match e.find_root() {
                DataFusionError::Plan(m) => m.clone(),
                other => other.strip_backtrace(),
            };
            QueryError::Refused(format!("{message}; {ONLY_QUERIES}"))
        })
}

fn refused(class: &str, why: &str) -> QueryError {
    QueryError::Refused(format!("{class} is not allowed: {why}"))
}

fn check_df_statement(statement: &DfStatement) -> Result<(), QueryError> {
    match statement {
        DfStatement::Statement(inner) => check_statement(inner),
        DfStatement::Explain(explain) => check_df_statement(&explain.statement),
        DfStatement::CreateExternalTable(table) => Err(refused(
            "DDL",
            &format!(
                "CREATE EXTERNAL TABLE {} (reading files is not allowed); {ONLY_QUERIES}",
                table.name
            ),
        )),
        DfStatement::CopyTo(_) => Err(refused("COPY", "queries cannot write or read files")),
        DfStatement::Reset(_) => Err(refused("RESET", "session settings are fixed")),
    }
}

/// The statement's text, shortened for a message.
fn head(statement: &Statement) -> String {
    const MAX: usize = 60;
    let text = statement.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{} …", &text[..cut]),
        None => text,
    }
}

fn check_statement(statement: &Statement) -> Result<(), QueryError> {
    match statement {
        Statement::Query(query) => {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    check_set_expr(&cte.query.body)?;
                }
            }
            check_set_expr(&query.body)?;
        }
        Statement::Explain { statement, .. } => return check_statement(statement),
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCreate { .. } => {}
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Truncate(_) => {
            return Err(refused(
                "DML",
                &format!("{}; {ONLY_QUERIES}", head(statement)),
            ));
        }
        Statement::Copy { .. } | Statement::CopyIntoSnowflake { .. } | Statement::Unload { .. } => {
            return Err(refused("COPY", "queries cannot write or read files"));
        }
        Statement::Set(_) => return Err(refused("SET", "session settings are fixed")),
        Statement::Reset(_) => return Err(refused("RESET", "session settings are fixed")),
        Statement::Prepare { .. } | Statement::Execute { .. } | Statement::Deallocate { .. } => {
            return Err(refused(
                "PREPARE / EXECUTE",
                &format!("prepared statements are not supported; {ONLY_QUERIES}"),
            ));
        }
        Statement::LoadData { .. }
        | Statement::Load { .. }
        | Statement::Install { .. }
        | Statement::AttachDatabase { .. }
        | Statement::AttachDuckDBDatabase { .. }
        | Statement::Directory { .. } => {
            return Err(QueryError::Refused(format!(
                "reading files is not allowed: {}",
                head(statement)
            )));
        }
        other => {
            let text = head(other);
            let first = text.split_whitespace().next().unwrap_or("").to_uppercase();
            let class = match first.as_str() {
                "CREATE" | "DROP" | "ALTER" | "RENAME" | "COMMENT" => "DDL",
                "START" | "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" => {
                    "a transaction statement"
                }
                _ => "this statement",
            };
            return Err(refused(class, &format!("{text}; {ONLY_QUERIES}")));
        }
    }
    check_relations(statement)
}

fn check_set_expr(body: &SetExpr) -> Result<(), QueryError> {
    match body {
        SetExpr::Select(select) if select.into.is_some() => Err(refused(
            "DDL",
            &format!("SELECT … INTO creates a table; {ONLY_QUERIES}"),
        )),
        SetExpr::Query(query) => check_set_expr(&query.body),
        SetExpr::SetOperation { left, right, .. } => {
            check_set_expr(left)?;
            check_set_expr(right)
        }
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            Err(refused("DML", &format!("{}; {ONLY_QUERIES}", head(s))))
        }
        _ => Ok(()),
    }
}

/// Table functions that read files in DataFusion or its CLI; none is registered,
/// this only makes the message say why.
const FILE_TABLE_FUNCTIONS: &[&str] = &[
    "parquet_metadata",
    "parquet_scan",
    "metadata_cache",
    "statistics_cache",
    "list_files_cache",
    "glob",
];

const FILE_EXTENSIONS: &[&str] = &[
    ".parquet", ".csv", ".tsv", ".json", ".ndjson", ".jsonl", ".avro", ".arrow", ".ipc", ".orc",
    ".txt", ".gz", ".bz2", ".xz", ".zst", ".zstd",
];

/// Layer 2: no relation names a file, a URL or a file-reading table function.
fn check_relations(statement: &Statement) -> Result<(), QueryError> {
    let flow = visit_relations(statement, |name: &ObjectName| {
        match file_like_relation(name) {
            Some(why) => ControlFlow::Break(why),
            None => ControlFlow::Continue(()),
        }
    });
    match flow {
        ControlFlow::Break(why) => Err(QueryError::Refused(format!(
            "reading files is not allowed: {why}"
        ))),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn file_like_relation(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.clone(),
            None => part.to_string(),
        })
        .collect();
    let joined = parts.join(".");
    let lower = joined.to_lowercase();
    let looks_like_path = parts
        .iter()
        .any(|p| p.contains('/') || p.contains('\\') || p.contains("://") || p.starts_with('~'))
        || FILE_EXTENSIONS.iter().any(|ext| lower.ends_with(ext));
    if looks_like_path {
        return Some(format!("{joined:?} is a file path or URL, not a table"));
    }
    let last = parts.last().map(|p| p.to_lowercase()).unwrap_or_default();
    if last.starts_with("read_") || FILE_TABLE_FUNCTIONS.contains(&last.as_str()) {
        return Some(format!("table function {last}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(sql: &str) -> String {
        match parse_checked(sql, 50) {
            Err(QueryError::Refused(m)) => m,
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn queries_pass() {
        for sql in [
            "SELECT 1",
            "WITH t AS (SELECT * FROM spans) SELECT count(*) FROM t",
            "VALUES (1), (2)",
            "EXPLAIN SELECT * FROM spans",
            "EXPLAIN ANALYZE SELECT * FROM spans",
            "DESCRIBE spans",
            "SHOW TABLES",
            "SHOW COLUMNS FROM spans",
            "SELECT * FROM spans a JOIN spans b ON a.trace_id = b.trace_id",
            "SELECT * FROM generate_series(1, 3)",
        ] {
            parse_checked(sql, 50).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn every_statement_class_is_refused_with_its_name() {
        let cases = [
            ("CREATE TABLE t (a INT)", "DDL is not allowed: CREATE TABLE"),
            (
                "CREATE VIEW v AS SELECT 1",
                "DDL is not allowed: CREATE VIEW",
            ),
            ("DROP TABLE spans", "DDL is not allowed: DROP TABLE"),
            (
                "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc'",
                "DDL is not allowed: CREATE EXTERNAL TABLE",
            ),
            ("INSERT INTO spans VALUES (1)", "DML is not allowed: INSERT"),
            ("DELETE FROM spans", "DML is not allowed: DELETE"),
            ("UPDATE spans SET name = 'x'", "DML is not allowed: UPDATE"),
            ("COPY spans TO '/tmp/x.parquet'", "COPY is not allowed"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY is not allowed"),
            (
                "SET datafusion.execution.batch_size = 1",
                "SET is not allowed",
            ),
            (
                "RESET datafusion.execution.batch_size",
                "RESET is not allowed",
            ),
            ("PREPARE p AS SELECT 1", "prepared statements"),
            ("SELECT 1; SELECT 2", "only one statement per request"),
            (
                "SELECT * INTO t2 FROM spans",
                "SELECT … INTO creates a table",
            ),
            ("EXPLAIN CREATE TABLE t (a INT)", "DDL is not allowed"),
            (
                "SELECT * FROM '/etc/passwd'",
                "reading files is not allowed",
            ),
            (
                "SELECT * FROM 'data.parquet'",
                "reading files is not allowed",
            ),
            (
                "SELECT * FROM \"s3://bucket/x\"",
                "reading files is not allowed",
            ),
            (
                "SELECT * FROM read_parquet('x')",
                "reading files is not allowed",
            ),
            (
                "SELECT * FROM spans WHERE trace_id IN (SELECT a FROM 'x.csv')",
                "reading files is not allowed",
            ),
            ("BEGIN", "transaction statement is not allowed"),
        ];
        for (sql, expected) in cases {
            let message = refusal(sql);
            assert!(message.contains(expected), "{sql}: {message}");
        }
    }
}
