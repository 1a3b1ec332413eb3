//! Runs the SQL behaviour files `sql/tests/*.slt` against the fixture lake.
//!
//! The format, one record per blank-line-separated block (`#` starts a comment):
//!
//! ```text
//! query [rowsort]              the SQL, `----`, then the expected rows: columns
//! SELECT …                     separated by ` | `, NULL as `NULL`
//! ----
//! frontend | 6
//!
//! statement ok                 the SQL must succeed
//! statement error [Kind] text  the SQL must fail with an error containing `text`;
//!                              Kind (Refused, Invalid, Timeout, ResourcesExhausted,
//!                              Internal) also checks the variant
//! explain                      `EXPLAIN <sql>` must contain every line after `----`
//! SELECT …
//! ----
//! SpansScanExec: files=2/10
//!
//! explain contains <text>      same, one line of text
//! control scope all | project <name>
//! control limits default | memory_bytes=<n> timeout_ms=<n>
//! ```
//!
//! `SLT_FILTER=<substring>` runs only the files whose name contains it.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use lighttrace_query::{ProjectScope, QueryConfig, QueryEngine, QueryError, QueryOutput};
use lighttrace_storage::Lake;

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/tests")
}

fn test_config() -> QueryConfig {
    QueryConfig {
        memory_limit_bytes: 256 << 20,
        timeout: Duration::from_secs(60),
        target_partitions: 2,
    }
}

#[derive(Debug)]
enum Record {
    Query {
        rowsort: bool,
        sql: String,
        expected: Vec<String>,
    },
    StatementOk {
        sql: String,
    },
    StatementError {
        kind: Option<String>,
        message: String,
        sql: String,
    },
    Explain {
        sql: String,
        expected: Vec<String>,
    },
    Scope(ProjectScope),
    Limits(QueryConfig),
}

struct Located {
    line: usize,
    record: Record,
}

fn parse_file(text: &str) -> Result<Vec<Located>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let header = lines[i].trim();
        if header.is_empty() || header.starts_with('#') {
            i += 1;
            continue;
        }
        let line = i + 1;
        i += 1;
        // The block: until a blank line; `----` splits SQL from expectations.
        let mut sql_lines = Vec::new();
        let mut expected = Vec::new();
        let mut in_expected = false;
        while i < lines.len() && !lines[i].trim().is_empty() {
            let l = lines[i];
            i += 1;
            if l.trim_start().starts_with('#') && !in_expected {
                continue;
            }
            if l.trim() == "----" {
                in_expected = true;
            } else if in_expected {
                expected.push(l.trim_end().to_string());
            } else {
                sql_lines.push(l);
            }
        }
        let sql = sql_lines.join("\n");
        let mut words = header.split_whitespace();
        let record = match (words.next(), words.next()) {
            (Some("query"), option) => Record::Query {
                rowsort: match option {
                    None => false,
                    Some("rowsort") => true,
                    Some(other) => {
                        return Err(format!("line {line}: unknown query option {other}"));
                    }
                },
                sql,
                expected,
            },
            (Some("statement"), Some("ok")) => Record::StatementOk { sql },
            (Some("statement"), Some("error")) => {
                let rest = header["statement error".len()..].trim();
                let (kind, message) = match rest.split_once(' ') {
                    Some((k, m)) if is_kind(k) => (Some(k.to_string()), m.trim().to_string()),
                    _ if is_kind(rest) => (Some(rest.to_string()), String::new()),
                    _ => (None, rest.to_string()),
                };
                Record::StatementError { kind, message, sql }
            }
            (Some("explain"), None) => Record::Explain { sql, expected },
            (Some("explain"), Some("contains")) => Record::Explain {
                sql,
                expected: vec![header["explain contains".len()..].trim().to_string()],
            },
            (Some("control"), Some("scope")) => {
                let rest: Vec<&str> = words.collect();
                match rest.as_slice() {
                    ["all"] => Record::Scope(ProjectScope::All),
                    ["project", name] => Record::Scope(ProjectScope::Project(name.to_string())),
                    _ => return Err(format!("line {line}: control scope all | project <name>")),
                }
            }
            (Some("control"), Some("limits")) => {
                let mut config = test_config();
                for setting in words {
                    match setting.split_once('=') {
                        None if setting == "default" => {}
                        Some(("memory_bytes", v)) => {
                            config.memory_limit_bytes =
                                v.parse().map_err(|e| format!("line {line}: {e}"))?
                        }
                        Some(("timeout_ms", v)) => {
                            config.timeout = Duration::from_millis(
                                v.parse().map_err(|e| format!("line {line}: {e}"))?,
                            )
                        }
                        _ => return Err(format!("line {line}: unknown limit {setting}")),
                    }
                }
                Record::Limits(config)
            }
            _ => return Err(format!("line {line}: unknown record {header:?}")),
        };
        records.push(Located { line, record });
    }
    Ok(records)
}

fn is_kind(word: &str) -> bool {
    matches!(
        word,
        "Refused" | "Invalid" | "Timeout" | "ResourcesExhausted" | "Internal"
    )
}

fn kind_of(err: &QueryError) -> &'static str {
    match err {
        QueryError::Refused(_) => "Refused",
        QueryError::Invalid(_) => "Invalid",
        QueryError::Timeout(_) => "Timeout",
        QueryError::ResourcesExhausted(_) => "ResourcesExhausted",
        QueryError::Internal(_) => "Internal",
    }
}

/// Every row as `a | b | c`.
fn format_rows(output: &QueryOutput) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in &output.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            let mut line = String::new();
            for (i, f) in formatters.iter().enumerate() {
                if i > 0 {
                    line.push_str(" | ");
                }
                write!(line, "{}", f.value(row)).expect("write to string");
            }
            rows.push(line.trim_end().to_string());
        }
    }
    rows
}

async fn run_file(lake: &Arc<Lake>, path: &Path) -> Vec<String> {
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let text = std::fs::read_to_string(path).expect("read slt file");
    let records = match parse_file(&text) {
        Ok(r) => r,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    let mut engine = QueryEngine::new(Arc::clone(lake), test_config()).expect("engine");
    let mut scope = ProjectScope::All;
    let mut failures = Vec::new();
    for Located { line, record } in records {
        let at = format!("{name}:{line}");
        match record {
            Record::Scope(s) => scope = s,
            Record::Limits(config) => {
                engine = QueryEngine::new(Arc::clone(lake), config).expect("engine");
            }
            Record::Query {
                rowsort,
                sql,
                expected,
            } => match engine.sql(&sql, &scope).await {
                Ok(output) => {
                    let mut rows = format_rows(&output);
                    if rowsort {
                        rows.sort();
                    }
                    if rows != expected {
                        failures.push(format!(
                            "{at}: wrong rows for\n{sql}\nexpected:\n{}\ngot:\n{}",
                            expected.join("\n"),
                            rows.join("\n")
                        ));
                    }
                }
                Err(e) => failures.push(format!("{at}: query failed: {e}\n{sql}")),
            },
            Record::StatementOk { sql } => {
                if let Err(e) = engine.sql(&sql, &scope).await {
                    failures.push(format!("{at}: statement failed: {e}\n{sql}"));
                }
            }
            Record::StatementError { kind, message, sql } => match engine.sql(&sql, &scope).await {
                Ok(output) => failures.push(format!(
                    "{at}: expected an error, got {} rows\n{sql}",
                    output.num_rows()
                )),
                Err(e) => {
                    let text = e.to_string();
                    let kind_ok = kind.as_deref().is_none_or(|k| k == kind_of(&e));
                    if !kind_ok || !text.contains(&message) {
                        failures.push(format!(
                            "{at}: expected {} error containing {message:?}, got {}: {text}\n{sql}",
                            kind.as_deref().unwrap_or("an"),
                            kind_of(&e)
                        ));
                    }
                }
            },
            Record::Explain { sql, expected } => match engine.explain(&sql, &scope).await {
                Ok(plan) => {
                    for want in &expected {
                        if !plan.contains(want.as_str()) {
                            failures.push(format!(
                                "{at}: EXPLAIN does not contain {want:?}\n{sql}\nplan:\n{plan}"
                            ));
                        }
                    }
                }
                Err(e) => failures.push(format!("{at}: EXPLAIN failed: {e}\n{sql}")),
            },
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_behaviour_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = common::fixture_lake(dir.path()).await;

    let filter = std::env::var("SLT_FILTER").ok();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(slt_dir())
        .expect("sql/tests exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            filter
                .as_deref()
                .is_none_or(|f| p.to_string_lossy().contains(f))
        })
        .collect();
    paths.sort();
    assert!(
        !paths.is_empty(),
        "no .slt files in {}",
        slt_dir().display()
    );

    let mut failures = Vec::new();
    for path in &paths {
        failures.extend(run_file(&lake, path).await);
    }
    lake.shutdown().await.expect("shutdown");
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
