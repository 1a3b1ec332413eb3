//! What a session needs so that Postgres clients (psql, psycopg, Grafana's
//! PostgreSQL data source, BI tools) can talk to it: the functions and catalog
//! tables they query when they connect, and the few Postgres rules of name
//! resolution that DataFusion does not follow.
//!
//! Only sessions of [`SqlDialect::Postgres`](crate::SqlDialect::Postgres) get
//! these; the sandbox and the project scope are the same as for every query.
//!
//! * Functions: `version()` (`PostgreSQL 16.6 (LightTrace …)`),
//!   `current_setting(name [, missing_ok])`, `current_database()`,
//!   `current_schema()`, `current_user`, `session_user`, `user`,
//!   `quote_ident(text)`, `parse_ident(text)`, `array_lower(array, dim)`,
//!   `array_upper(array, dim)`, `pg_table_is_visible(oid)`,
//!   `pg_get_userbyid(oid)`, `format_type(oid, typmod)`,
//!   `obj_description(…)` and `col_description(…)` (always NULL), and the
//!   table function `string_to_array(text, delimiter)` for Postgres' "scalar
//!   function in FROM".
//! * `pg_catalog`: small read-only tables: `pg_namespace`, `pg_class`,
//!   `pg_tables`, `pg_type`, `pg_database`, `pg_roles`, `pg_settings` and an
//!   empty `pg_extension`. Unqualified `pg_*` tables resolve there, as in
//!   Postgres. `information_schema` is DataFusion's.
//! * A function in `FROM` with a table alias and no column list names its
//!   one column after the alias (`generate_series(1, 3) AS i` has a column
//!   `i`), as in Postgres.
//! * `x IN (subquery)` in a select list or `ORDER BY` (DataFusion plans `IN`
//!   subqueries in filters only) is answered as `array_has` over the
//!   subquery's values: Grafana's table list is such a query.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, Int64Builder, ListBuilder,
    RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableFunctionImpl};
use datafusion::catalog::{TableFunctionArgs, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err, plan_err};
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Ident, ObjectName, ObjectNamePart, OrderBy, OrderByKind, Query, SelectItem,
    SetExpr, TableAlias, TableAliasColumnDef, TableFactor, VisitMut, VisitorMut,
    visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use lighttrace_storage::Table;

/// The database name clients see (`current_database()`, `pg_database`).
pub const DATABASE: &str = "lighttrace";
/// The schema of the lake's tables.
pub const SCHEMA: &str = "public";
/// The Postgres version LightTrace answers as (`server_version`): the one whose
/// catalog queries and syntax clients may assume.
pub const SERVER_VERSION: &str = "16.6";
/// `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "160006";

/// The Postgres session of one connection, as its queries see it.
#[derive(Debug, Clone)]
pub struct PgSession {
    /// The user name the client logged in with.
    pub user: String,
    /// Settings by lower-case name, for `current_setting()` and `pg_settings`
    /// (start from [`default_settings`]).
    pub settings: Arc<BTreeMap<String, String>>,
}

impl Default for PgSession {
    fn default() -> Self {
        PgSession {
            user: "lighttrace".to_owned(),
            settings: Arc::new(default_settings()),
        }
    }
}

/// The settings a session starts with, by lower-case name. They describe
/// what the server does; changing one (`SET`) changes nothing but what it
/// shows.
pub fn default_settings() -> BTreeMap<String, String> {
    [
        ("server_version", SERVER_VERSION),
        ("server_version_num", SERVER_VERSION_NUM),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, YMD"),
        ("intervalstyle", "postgres"),
        ("timezone", "Etc/UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("search_path", "\"$user\", public"),
        ("application_name", ""),
        ("extra_float_digits", "1"),
        ("transaction_isolation", "read committed"),
        ("default_transaction_isolation", "read committed"),
        ("transaction_read_only", "on"),
        ("default_transaction_read_only", "on"),
        ("is_superuser", "off"),
        ("max_identifier_length", "63"),
        ("bytea_output", "hex"),
        ("client_min_messages", "notice"),
        ("lc_collate", "C"),
        ("lc_ctype", "C"),
        ("statement_timeout", "0"),
        ("lock_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
        ("jit", "off"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

/// Adds the functions and `pg_catalog` to `ctx`.
pub(crate) fn install(ctx: &SessionContext, session: &PgSession) -> DfResult<()> {
    let text = |value: &str| ScalarValue::Utf8(Some(value.to_owned()));
    let version = format!(
        "PostgreSQL {SERVER_VERSION} (LightTrace {}, Apache DataFusion {})",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION
    );
    for (name, value) in [
        ("version", text(&version)),
        ("current_database", text(DATABASE)),
        ("current_catalog", text(DATABASE)),
        ("current_schema", text(SCHEMA)),
        ("current_user", text(&session.user)),
        ("session_user", text(&session.user)),
        ("user", text(&session.user)),
    ] {
        ctx.register_udf(ConstantFunction::nullary(name, value));
    }
    ctx.register_udf(ConstantFunction::udf(
        "pg_table_is_visible",
        Signature::any(1, Volatility::Stable),
        ScalarValue::Boolean(Some(true)),
    ));
    ctx.register_udf(ConstantFunction::udf(
        "pg_get_userbyid",
        Signature::any(1, Volatility::Stable),
        text(&session.user),
    ));
    for name in ["obj_description", "col_description", "shobj_description"] {
        ctx.register_udf(ConstantFunction::udf(
            name,
            Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Stable,
            ),
            ScalarValue::Utf8(None),
        ));
    }
    ctx.register_udf(ScalarUDF::from(CurrentSetting::new(Arc::clone(
        &session.settings,
    ))));
    ctx.register_udf(ScalarUDF::from(QuoteIdent::new()));
    ctx.register_udf(ScalarUDF::from(ParseIdent::new()));
    ctx.register_udf(ScalarUDF::from(ArrayBound::new("array_lower")));
    ctx.register_udf(ScalarUDF::from(ArrayBound::new("array_upper")));
    ctx.register_udf(ScalarUDF::from(FormatType::new()));
    ctx.register_udtf("string_to_array", Arc::new(StringToArrayTable));

    let catalog = ctx.catalog(DATABASE).ok_or_else(|| {
        datafusion::error::DataFusionError::Internal(format!("no catalog {DATABASE}"))
    })?;
    let pg_catalog = Arc::new(MemorySchemaProvider::new());
    for (name, table) in catalog_tables(session)? {
        pg_catalog.register_table(name.to_owned(), table)?;
    }
    catalog.register_schema("pg_catalog", pg_catalog)?;
    Ok(())
}

/// Table functions that return one column: aliased without a column list,
/// the column takes the alias' name, as in Postgres.
const SINGLE_COLUMN_FUNCTIONS: &[&str] = &["generate_series", "range", "string_to_array"];

/// Rewrites `statement` to Postgres' rules of name resolution (see the module
/// docs). It only qualifies names and names columns; the sandbox has checked
/// the statement before and checks its plan after.
pub(crate) fn rewrite(statement: &mut DfStatement) {
    match statement {
        DfStatement::Statement(inner) => {
            let _ = inner.visit(&mut PostgresNames);
        }
        DfStatement::Explain(explain) => rewrite(&mut explain.statement),
        _ => {}
    }
}

struct PostgresNames;

impl VisitorMut for PostgresNames {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        in_subqueries_as_arrays(query);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name, alias, args, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
            return ControlFlow::Continue(());
        };
        let lower = ident.value.to_lowercase();
        if args.is_none() && lower.starts_with("pg_") {
            *name = ObjectName(vec![
                ObjectNamePart::Identifier(Ident::new("pg_catalog")),
                ObjectNamePart::Identifier(ident.clone()),
            ]);
        } else if args.is_some()
            && SINGLE_COLUMN_FUNCTIONS.contains(&lower.as_str())
            && let Some(TableAlias {
                name: alias_name,
                columns,
                ..
            }) = alias
            && columns.is_empty()
        {
            columns.push(TableAliasColumnDef {
                name: alias_name.clone(),
                data_type: None,
            });
        }
        ControlFlow::Continue(())
    }
}

/// In the select list and `ORDER BY`, `x [NOT] IN (subquery)` becomes
/// `[NOT] coalesce(array_has((SELECT array_agg(v) FROM (subquery) AS t(v)), x), false)`:
/// DataFusion plans an `IN` subquery in a filter only, a scalar subquery
/// anywhere. Filters keep theirs (with SQL's NULL rules).
fn in_subqueries_as_arrays(query: &mut Query) {
    if let SetExpr::Select(select) = query.body.as_mut() {
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
                in_subquery_as_array(expr);
            }
        }
    }
    if let Some(OrderBy {
        kind: OrderByKind::Expressions(items),
        ..
    }) = &mut query.order_by
    {
        for item in items {
            in_subquery_as_array(&mut item.expr);
        }
    }
}

fn in_subquery_as_array(expr: &mut SqlExpr) {
    let _ = visit_expressions_mut(expr, |e| {
        if let SqlExpr::InSubquery {
            expr: needle,
            subquery,
            negated,
        } = e
        {
            let text = format!(
                "{}coalesce(array_has((SELECT array_agg(__lighttrace_in.v) FROM ({subquery}) \
                 AS __lighttrace_in(v)), {needle}), false)",
                if *negated { "NOT " } else { "" }
            );
            if let Ok(rewritten) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&text)
                .and_then(|mut parser| parser.parse_expr())
            {
                *e = SqlExpr::Nested(Box::new(rewritten));
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

// ---------------------------------------------------------------------------
// pg_catalog
// ---------------------------------------------------------------------------

const PG_CATALOG_OID: i32 = 11;
const PUBLIC_OID: i32 = 2200;
const INFORMATION_SCHEMA_OID: i32 = 13000;
const OWNER_OID: i32 = 10;
const DATABASE_OID: i32 = 16384;
/// Oids of the lake's tables: `FIRST_TABLE_OID + position in Table::ALL`.
const FIRST_TABLE_OID: i32 = 16400;

/// `(oid, name, typlen, category)` of the types results use.
const TYPES: &[(i32, &str, i64, &str)] = &[
    (16, "bool", 1, "B"),
    (17, "bytea", -1, "U"),
    (19, "name", 64, "S"),
    (20, "int8", 8, "N"),
    (21, "int2", 2, "N"),
    (23, "int4", 4, "N"),
    (25, "text", -1, "S"),
    (26, "oid", 4, "N"),
    (114, "json", -1, "U"),
    (700, "float4", 4, "N"),
    (701, "float8", 8, "N"),
    (705, "unknown", -2, "X"),
    (1043, "varchar", -1, "S"),
    (1082, "date", 4, "D"),
    (1114, "timestamp", 8, "D"),
    (1184, "timestamptz", 8, "D"),
    (1186, "interval", 16, "T"),
    (1700, "numeric", -1, "N"),
];

fn catalog_tables(session: &PgSession) -> DfResult<Vec<(&'static str, Arc<dyn TableProvider>)>> {
    let tables: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    let table_oids: Vec<i32> = (0..tables.len() as i32)
        .map(|i| FIRST_TABLE_OID + i)
        .collect();
    let user = session.user.as_str();
    let n = tables.len();
    let settings: Vec<(&String, &String)> = session.settings.iter().collect();
    Ok(vec![
        (
            "pg_namespace",
            mem_table(vec![
                (
                    "oid",
                    int32([PG_CATALOG_OID, PUBLIC_OID, INFORMATION_SCHEMA_OID]),
                ),
                (
                    "nspname",
                    strings(["pg_catalog", SCHEMA, "information_schema"]),
                ),
                ("nspowner", int32([OWNER_OID; 3])),
            ])?,
        ),
        (
            "pg_class",
            mem_table(vec![
                ("oid", int32(table_oids.clone())),
                ("relname", strings(tables.clone())),
                ("relnamespace", int32(vec![PUBLIC_OID; n])),
                ("relkind", strings(vec!["r"; n])),
                ("relowner", int32(vec![OWNER_OID; n])),
                ("reltuples", Arc::new(Int64Array::from(vec![-1; n]))),
                ("relhasindex", bools(vec![false; n])),
                ("relispartition", bools(vec![false; n])),
            ])?,
        ),
        (
            "pg_tables",
            mem_table(vec![
                ("schemaname", strings(vec![SCHEMA; n])),
                ("tablename", strings(tables.clone())),
                ("tableowner", strings(vec![user; n])),
                ("tablespace", Arc::new(StringArray::new_null(n))),
                ("hasindexes", bools(vec![false; n])),
                ("hasrules", bools(vec![false; n])),
                ("hastriggers", bools(vec![false; n])),
                ("rowsecurity", bools(vec![false; n])),
            ])?,
        ),
        (
            "pg_type",
            mem_table(vec![
                ("oid", int32(TYPES.iter().map(|t| t.0))),
                ("typname", strings(TYPES.iter().map(|t| t.1))),
                ("typnamespace", int32(vec![PG_CATALOG_OID; TYPES.len()])),
                ("typowner", int32(vec![OWNER_OID; TYPES.len()])),
                (
                    "typlen",
                    Arc::new(Int64Array::from_iter_values(TYPES.iter().map(|t| t.2))),
                ),
                ("typtype", strings(vec!["b"; TYPES.len()])),
                ("typcategory", strings(TYPES.iter().map(|t| t.3))),
                ("typrelid", int32(vec![0; TYPES.len()])),
                ("typelem", int32(vec![0; TYPES.len()])),
                ("typbasetype", int32(vec![0; TYPES.len()])),
                ("typtypmod", int32(vec![-1; TYPES.len()])),
                ("typnotnull", bools(vec![false; TYPES.len()])),
            ])?,
        ),
        (
            "pg_database",
            mem_table(vec![
                ("oid", int32([DATABASE_OID])),
                ("datname", strings([DATABASE])),
                ("datdba", int32([OWNER_OID])),
                ("encoding", int32([6])),
                ("datcollate", strings(["C"])),
                ("datctype", strings(["C"])),
                ("datistemplate", bools([false])),
                ("datallowconn", bools([true])),
            ])?,
        ),
        (
            "pg_roles",
            mem_table(vec![
                ("oid", int32([OWNER_OID])),
                ("rolname", strings([user])),
                ("rolsuper", bools([false])),
                ("rolcreatedb", bools([false])),
                ("rolcreaterole", bools([false])),
                ("rolcanlogin", bools([true])),
            ])?,
        ),
        (
            "pg_settings",
            mem_table(vec![
                ("name", strings(settings.iter().map(|(k, _)| k.as_str()))),
                ("setting", strings(settings.iter().map(|(_, v)| v.as_str()))),
                ("unit", Arc::new(StringArray::new_null(settings.len()))),
                ("context", strings(vec!["user"; settings.len()])),
                ("vartype", strings(vec!["string"; settings.len()])),
                ("source", strings(vec!["default"; settings.len()])),
            ])?,
        ),
        (
            "pg_extension",
            mem_table(vec![
                ("oid", int32(Vec::new())),
                ("extname", strings(Vec::<&str>::new())),
                ("extowner", int32(Vec::new())),
                ("extnamespace", int32(Vec::new())),
                ("extrelocatable", bools(Vec::new())),
                ("extversion", strings(Vec::<&str>::new())),
            ])?,
        ),
    ])
}

fn int32(values: impl IntoIterator<Item = i32>) -> ArrayRef {
    Arc::new(Int32Array::from_iter_values(values))
}

fn strings<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn bools(values: impl IntoIterator<Item = bool>) -> ArrayRef {
    Arc::new(BooleanArray::from_iter(values.into_iter().map(Some)))
}

fn mem_table(columns: Vec<(&str, ArrayRef)>) -> DfResult<Arc<dyn TableProvider>> {
    let schema: SchemaRef = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        columns.into_iter().map(|(_, array)| array).collect(),
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

// ---------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------

/// A function whose value is fixed for the session (`version()`,
/// `current_user`, `pg_table_is_visible(oid)` …).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConstantFunction {
    name: String,
    signature: Signature,
    value: ScalarValue,
}

impl ConstantFunction {
    fn udf(name: &str, signature: Signature, value: ScalarValue) -> ScalarUDF {
        ScalarUDF::from(ConstantFunction {
            name: name.to_owned(),
            signature,
            value,
        })
    }

    fn nullary(name: &str, value: ScalarValue) -> ScalarUDF {
        Self::udf(name, Signature::nullary(Volatility::Stable), value)
    }
}

impl ScalarUDFImpl for ConstantFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `current_setting(name [, missing_ok])`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    settings: Arc<BTreeMap<String, String>>,
    signature: Signature,
}

impl CurrentSetting {
    fn new(settings: Arc<BTreeMap<String, String>>) -> Self {
        CurrentSetting {
            settings,
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }

    fn lookup(&self, name: Option<&str>, missing_ok: bool) -> DfResult<Option<String>> {
        let Some(name) = name else {
            return Ok(None);
        };
        match self.settings.get(&name.to_lowercase()) {
            Some(value) => Ok(Some(value.clone())),
            None if missing_ok => Ok(None),
            None => plan_err!("unrecognized configuration parameter \"{name}\""),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let missing_ok = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(b))) => b.unwrap_or(false),
            Some(_) => return exec_err!("current_setting: missing_ok must be a constant"),
            None => false,
        };
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(name)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Utf8(self.lookup(name.as_deref(), missing_ok)?),
            )),
            ColumnarValue::Array(names) => {
                let names = names.as_string::<i32>();
                let values = names
                    .iter()
                    .map(|name| self.lookup(name, missing_ok))
                    .collect::<DfResult<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
            other => exec_err!("current_setting: unexpected argument {other:?}"),
        }
    }
}

/// Applies `f` to every value of a one-`Utf8`-argument call.
fn map_text(
    args: &ScalarFunctionArgs,
    mut f: impl FnMut(&str) -> Option<String>,
) -> DfResult<ColumnarValue> {
    match &args.args[0] {
        ColumnarValue::Scalar(ScalarValue::Utf8(value)) => Ok(ColumnarValue::Scalar(
            ScalarValue::Utf8(value.as_deref().and_then(&mut f)),
        )),
        ColumnarValue::Array(values) => {
            let values = values.as_string::<i32>();
            let mapped: StringArray = values.iter().map(|v| v.and_then(&mut f)).collect();
            Ok(ColumnarValue::Array(Arc::new(mapped)))
        }
        other => exec_err!("unexpected argument {other:?}"),
    }
}

/// `quote_ident(text)`: the identifier, double-quoted when Postgres would
/// need the quotes.
#[derive(Debug, PartialEq, Eq, Hash)]
struct QuoteIdent {
    signature: Signature,
}

impl QuoteIdent {
    fn new() -> Self {
        QuoteIdent {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

/// `ident` as Postgres' `quote_ident` writes it.
pub fn quote_ident(ident: &str) -> String {
    let plain = !ident.is_empty()
        && ident
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED_WORDS.contains(&ident);
    if plain {
        ident.to_owned()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

/// The Postgres keywords that `quote_ident` quotes (reserved ones).
const RESERVED_WORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

impl ScalarUDFImpl for QuoteIdent {
    fn name(&self) -> &str {
        "quote_ident"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        map_text(&args, |ident| Some(quote_ident(ident)))
    }
}

/// `parse_ident(text)`: a qualified name split into its parts, unquoted parts
/// lower-cased, as a `List(Utf8)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ParseIdent {
    signature: Signature,
}

impl ParseIdent {
    fn new() -> Self {
        ParseIdent {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

/// The parts of a qualified name, as Postgres' `parse_ident` splits it.
pub fn parse_ident(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                part.push('"');
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            c if quoted => part.push(c),
            c => part.extend(c.to_lowercase()),
        }
    }
    parts.push(part);
    parts.into_iter().map(|p| p.trim().to_owned()).collect()
}

impl ScalarUDFImpl for ParseIdent {
    fn name(&self) -> &str {
        "parse_ident"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::new_list(DataType::Utf8, true))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let values = args.args[0].to_array(args.number_rows)?;
        let values = values.as_string::<i32>();
        let mut lists = ListBuilder::new(StringBuilder::new());
        for value in values {
            match value {
                Some(value) => {
                    for part in parse_ident(value) {
                        lists.values().append_value(part);
                    }
                    lists.append(true);
                }
                None => lists.append_null(),
            }
        }
        let array: ArrayRef = Arc::new(lists.finish());
        if matches!(args.args[0], ColumnarValue::Scalar(_)) {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(array))
        }
    }
}

/// `array_lower(array, dim)` / `array_upper(array, dim)` of one-dimensional
/// arrays: 1 and the length; NULL for an empty array or another dimension.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayBound {
    name: &'static str,
    signature: Signature,
}

impl ArrayBound {
    fn new(name: &'static str) -> Self {
        ArrayBound {
            name,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ArrayBound {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match args.first() {
            Some(DataType::List(_) | DataType::LargeList(_) | DataType::Null) => {
                Ok(DataType::Int64)
            }
            other => plan_err!(
                "{}: the first argument must be an array, got {other:?}",
                self.name
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let dims = arrow::compute::cast(&arrays[1], &DataType::Int64)?;
        let dims = dims.as_primitive::<arrow::datatypes::Int64Type>();
        let lengths: Vec<Option<i64>> = match arrays[0].data_type() {
            DataType::List(_) => {
                let lists = arrays[0].as_list::<i32>();
                (0..lists.len())
                    .map(|i| lists.is_valid(i).then(|| lists.value_length(i) as i64))
                    .collect()
            }
            DataType::LargeList(_) => {
                let lists = arrays[0].as_list::<i64>();
                (0..lists.len())
                    .map(|i| lists.is_valid(i).then(|| lists.value_length(i)))
                    .collect()
            }
            _ => vec![None; arrays[0].len()],
        };
        let mut out = Int64Builder::with_capacity(lengths.len());
        for (i, length) in lengths.into_iter().enumerate() {
            let dim = dims.is_valid(i).then(|| dims.value(i));
            match (length, dim) {
                (Some(length), Some(1)) if length > 0 => out.append_value(match self.name {
                    "array_lower" => 1,
                    _ => length,
                }),
                _ => out.append_null(),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(array))
        }
    }
}

/// `format_type(type_oid, typmod)`: the type's name.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FormatType {
    signature: Signature,
}

impl FormatType {
    fn new() -> Self {
        FormatType {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The SQL name of a type oid, as `format_type` writes it.
fn type_name(oid: i64) -> Option<&'static str> {
    Some(match oid {
        16 => "boolean",
        17 => "bytea",
        19 => "name",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        25 => "text",
        26 => "oid",
        114 => "json",
        700 => "real",
        701 => "double precision",
        705 => "unknown",
        1043 => "character varying",
        1082 => "date",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        1700 => "numeric",
        _ => return None,
    })
}

impl ScalarUDFImpl for FormatType {
    fn name(&self) -> &str {
        "format_type"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let oids = args.args[0].to_array(args.number_rows)?;
        let oids = arrow::compute::cast(&oids, &DataType::Int64)?;
        let oids = oids.as_primitive::<arrow::datatypes::Int64Type>();
        let names: StringArray = oids
            .iter()
            .map(|oid| oid.map(|oid| type_name(oid).unwrap_or("???")))
            .collect();
        let array: ArrayRef = Arc::new(names);
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(array))
        }
    }
}

/// `string_to_array(text, delimiter)` in `FROM`: one row, one `List(Utf8)`
/// column, as Postgres treats a scalar function in `FROM`. The arguments must
/// be constants.
#[derive(Debug)]
struct StringToArrayTable;

impl TableFunctionImpl for StringToArrayTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let text = |i: usize| match args.exprs().get(i) {
            Some(Expr::Literal(ScalarValue::Utf8(value), _)) => Ok(value.clone()),
            other => plan_err!(
                "string_to_array in FROM takes two constant texts, got {}",
                other.map(|e| e.to_string()).unwrap_or_default()
            ),
        };
        let (value, delimiter) = (text(0)?, text(1)?);
        let mut lists = ListBuilder::new(StringBuilder::new());
        match value {
            Some(value) => {
                let parts: Vec<&str> = match delimiter.as_deref() {
                    Some("") => vec![value.as_str()],
                    Some(delimiter) => value.split(delimiter).collect(),
                    None => value
                        .char_indices()
                        .map(|(i, c)| &value[i..i + c.len_utf8()])
                        .collect(),
                };
                for part in parts {
                    lists.values().append_value(part);
                }
                lists.append(true);
            }
            None => lists.append_null(),
        }
        mem_table(vec![("string_to_array", Arc::new(lists.finish()))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_quotes_like_postgres() {
        assert_eq!(quote_ident("spans"), "spans");
        assert_eq!(quote_ident("span_2"), "span_2");
        assert_eq!(quote_ident("Spans"), "\"Spans\"");
        assert_eq!(quote_ident("my table"), "\"my table\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("2x"), "\"2x\"");
    }

    #[test]
    fn parse_ident_splits_and_folds_like_postgres() {
        assert_eq!(parse_ident("spans"), ["spans"]);
        assert_eq!(parse_ident("Public.Spans"), ["public", "spans"]);
        assert_eq!(parse_ident("\"My.Schema\".t"), ["My.Schema", "t"]);
        assert_eq!(parse_ident("\"a\"\"b\""), ["a\"b"]);
    }
}
