//! The query handlers: simple and extended protocol, and the session commands
//! answered without the engine (see the [module docs](super)).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use futures::sink::Sink;
use lighttrace_query::postgres::{PgSession, default_settings};
use lighttrace_query::{ProjectScope, QueryOutput, SqlDialect, SqlRequest, StatementShape};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::encode::{decode_param, encode_rows, fields, pg_type, text_rows};
use super::{query_error, user_error};
use crate::Shared;
use crate::auth::Caller;

/// A statement of the extended protocol: its text, and what it is when the
/// engine does not run it.
#[derive(Debug, Clone)]
pub(crate) struct PgStatement {
    sql: String,
    command: Option<SessionCommand>,
}

/// The statements answered here (see the module docs of [`super`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SessionCommand {
    Set {
        name: String,
        value: String,
    },
    Reset {
        name: Option<String>,
    },
    Show {
        name: Option<String>,
    },
    Begin,
    Commit,
    Rollback,
    Deallocate {
        name: Option<String>,
    },
    /// Accepted with this tag and no effect.
    NoOp(&'static str),
}

/// Settings a client may `SET`; the value is only remembered.
const SETTABLE: &[&str] = &[
    "application_name",
    "extra_float_digits",
    "datestyle",
    "client_encoding",
    "timezone",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "intervalstyle",
    "client_min_messages",
    "bytea_output",
    "standard_conforming_strings",
    "jit",
    "default_transaction_read_only",
    "default_transaction_isolation",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "plan_cache_mode",
    "row_security",
];

/// The session's settings (`SET`, `SHOW`, `current_setting()`).
struct Settings(Mutex<BTreeMap<String, String>>);

impl Settings {
    fn of<C: ClientInfo + ?Sized>(client: &C) -> Arc<Settings> {
        client.session_extensions().get_or_insert_with(|| {
            let mut settings = default_settings();
            for (key, name) in [
                (pgwire::api::METADATA_APPLICATION_NAME, "application_name"),
                ("DateStyle", "datestyle"),
                ("TimeZone", "timezone"),
                ("extra_float_digits", "extra_float_digits"),
            ] {
                if let Some(value) = client.metadata().get(key) {
                    settings.insert(name.to_owned(), value.clone());
                }
            }
            Settings(Mutex::new(settings))
        })
    }

    fn snapshot(&self) -> BTreeMap<String, String> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Parses the statements of the extended protocol.
#[derive(Debug)]
pub(crate) struct PgParser;

#[async_trait]
impl QueryParser for PgParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(PgStatement {
            sql: sql.to_owned(),
            command: session_command(sql)?,
        }))
    }

    // Describe is answered by the handler (it plans with the engine).
    fn get_parameter_types(&self, _stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(
        &self,
        _stmt: &PgStatement,
        _column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(Vec::new())
    }
}

/// Runs statements for one connection's caller, in the Postgres dialect.
pub(crate) struct PgQueryHandler {
    shared: Shared,
    parser: Arc<PgParser>,
}

impl PgQueryHandler {
    pub(crate) fn new(shared: Shared) -> Self {
        PgQueryHandler {
            shared,
            parser: Arc::new(PgParser),
        }
    }

    fn request<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        sql: &str,
        params: Option<ParamValues>,
    ) -> PgWireResult<SqlRequest> {
        let caller = client
            .session_extensions()
            .get::<Caller>()
            .ok_or_else(|| user_error("28000", "the connection is not authenticated"))?;
        let scope: ProjectScope = caller.scope();
        let user = client
            .metadata()
            .get(pgwire::api::METADATA_USER)
            .cloned()
            .unwrap_or_else(|| "lighttrace".to_owned());
        Ok(SqlRequest {
            sql: sql.to_owned(),
            params,
            scope,
            dialect: SqlDialect::Postgres(PgSession {
                user,
                settings: Arc::new(Settings::of(client).snapshot()),
            }),
        })
    }

    /// Runs one statement through the engine, holding one of the server's
    /// query permits (shared with HTTP SQL).
    async fn run<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        sql: &str,
        params: Option<ParamValues>,
    ) -> PgWireResult<QueryOutput> {
        let request = self.request(client, sql, params)?;
        let config = &self.shared.state.config;
        let _permit = self
            .shared
            .query_permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                user_error(
                    "53000",
                    format!(
                        "too many queries running (limit {}); retry later",
                        config.max_concurrent_queries
                    ),
                )
            })?;
        self.shared
            .state
            .query
            .run(request)
            .await
            .map_err(query_error)
    }

    async fn describe<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        sql: &str,
        params: Option<ParamValues>,
    ) -> PgWireResult<StatementShape> {
        let request = self.request(client, sql, params)?;
        self.shared
            .state
            .query
            .describe(request)
            .await
            .map_err(query_error)
    }

    /// The portal's parameters as values of the types the statement gives
    /// them (see [`decode_param`]).
    async fn bind<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        portal: &Portal<PgStatement>,
    ) -> PgWireResult<Option<ParamValues>> {
        if portal.parameter_len() == 0 {
            return Ok(None);
        }
        // `SELECT $1` leaves its type open: then the client's type decides.
        let inferred = self
            .describe(client, &portal.statement.statement.sql, None)
            .await
            .map(|shape| shape.parameter_types)
            .unwrap_or_default();
        let values = (0..portal.parameter_len())
            .map(|i| decode_param(portal, i, inferred.get(i).and_then(Option::as_ref)))
            .collect::<PgWireResult<Vec<ScalarValue>>>()?;
        Ok(Some(ParamValues::from(values)))
    }

    /// Answers a session command.
    fn command<C>(&self, client: &mut C, command: &SessionCommand) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let settings = Settings::of(client);
        let mut settings = settings
            .0
            .lock()
            .map_err(|_| user_error("XX000", "session settings are unavailable"))?;
        Ok(match command {
            SessionCommand::Set { name, value } => {
                check_setting(name, value)?;
                settings.insert(name.clone(), value.clone());
                Response::Execution(Tag::new("SET"))
            }
            SessionCommand::Reset { name } => {
                let defaults = default_settings();
                match name {
                    Some(name) => match defaults.get(name) {
                        Some(value) => {
                            settings.insert(name.clone(), value.clone());
                        }
                        None => {
                            settings.remove(name);
                        }
                    },
                    None => *settings = defaults,
                }
                Response::Execution(Tag::new("RESET"))
            }
            SessionCommand::Show { name } => {
                let (column, values) = match name {
                    Some(name) => (
                        name.clone(),
                        vec![settings.get(name).cloned().unwrap_or_default()],
                    ),
                    None => (
                        "setting".to_owned(),
                        settings.iter().map(|(k, v)| format!("{k} = {v}")).collect(),
                    ),
                };
                let (fields, rows) = text_rows(&column, &values)?;
                let mut response =
                    QueryResponse::new(fields, futures::stream::iter(rows.into_iter().map(Ok)));
                response.set_command_tag("SHOW");
                Response::Query(response)
            }
            SessionCommand::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            SessionCommand::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            SessionCommand::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            SessionCommand::Deallocate { name } => {
                if let Some(name) = name {
                    client.portal_store().rm_statement(name);
                }
                Response::Execution(Tag::new("DEALLOCATE"))
            }
            SessionCommand::NoOp(tag) => Response::Execution(Tag::new(tag)),
        })
    }

    async fn simple_statement<C>(&self, client: &mut C, sql: &str) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Send + Sync,
        C::PortalStore: PortalStore,
    {
        if let Some(command) = session_command(sql)? {
            return self.command(client, &command);
        }
        let output = self.run(client, sql, None).await?;
        let fields = Arc::new(fields(&output.schema, &Format::UnifiedText));
        query_response(sql, &output, fields)
    }
}

/// The rows of `output` as a response to `sql`.
fn query_response(
    sql: &str,
    output: &QueryOutput,
    fields: Arc<Vec<FieldInfo>>,
) -> PgWireResult<Response> {
    let rows = encode_rows(output, &fields)?;
    let mut response = QueryResponse::new(fields, futures::stream::iter(rows.into_iter().map(Ok)));
    let first = first_word(sql);
    if matches!(first.as_str(), "explain" | "show" | "describe" | "values") {
        response.set_command_tag(&first.to_uppercase());
    }
    Ok(Response::Query(response))
}

#[async_trait]
impl SimpleQueryHandler for PgQueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut responses = Vec::new();
        for sql in split_statements(query) {
            match self.simple_statement(client, &sql).await {
                Ok(response) => responses.push(response),
                Err(err) => {
                    // Like Postgres: the statements before the error stand,
                    // the ones after it do not run.
                    responses.push(Response::Error(Box::new(ErrorInfo::from(err))));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for PgQueryHandler {
    type Statement = PgStatement;
    type QueryParser = PgParser;

    fn query_parser(&self) -> Arc<PgParser> {
        Arc::clone(&self.parser)
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<PgStatement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(command) = &target.statement.command {
            return Ok(match command {
                SessionCommand::Show { name } => DescribeStatementResponse::new(
                    Vec::new(),
                    show_fields(name.as_deref(), &Format::UnifiedText),
                ),
                _ => DescribeStatementResponse::no_data(),
            });
        }
        let shape = self.describe(client, &target.statement.sql, None).await?;
        let count = shape
            .parameter_types
            .len()
            .max(target.parameter_types.len());
        let parameter_types = (0..count)
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| {
                        shape
                            .parameter_types
                            .get(i)
                            .cloned()
                            .flatten()
                            .map(|t| pg_type(&t))
                    })
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        let fields = fields(&shape.schema, &Format::UnifiedText);
        Ok(DescribeStatementResponse::new(parameter_types, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(command) = &portal.statement.statement.command {
            return Ok(match command {
                SessionCommand::Show { name } => DescribePortalResponse::new(show_fields(
                    name.as_deref(),
                    &portal.result_column_format,
                )),
                _ => DescribePortalResponse::no_data(),
            });
        }
        let params = self.bind(client, portal).await?;
        let shape = self
            .describe(client, &portal.statement.statement.sql, params)
            .await?;
        Ok(DescribePortalResponse::new(fields(
            &shape.schema,
            &portal.result_column_format,
        )))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = &portal.statement.statement;
        if let Some(command) = &statement.command {
            // SHOW's one column is text, whose binary form is its text.
            return self.command(client, command);
        }
        let params = self.bind(client, portal).await?;
        let output = self.run(client, &statement.sql, params).await?;
        let fields = Arc::new(fields(&output.schema, &portal.result_column_format));
        query_response(&statement.sql, &output, fields)
    }
}

fn show_fields(name: Option<&str>, formats: &Format) -> Vec<FieldInfo> {
    let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
        name.unwrap_or("setting"),
        arrow::datatypes::DataType::Utf8,
        true,
    )]);
    fields(&schema, formats)
}

/// The statements of a simple query, each as its own text. A text that does
/// not parse is passed on whole, so that the engine reports the error.
fn split_statements(query: &str) -> Vec<String> {
    let dialect = PostgreSqlDialect {};
    let parsed = DFParserBuilder::new(query)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut parser| parser.parse_statements());
    match parsed {
        Ok(statements) if statements.len() > 1 => {
            statements.iter().map(ToString::to_string).collect()
        }
        Ok(statements) if statements.is_empty() => Vec::new(),
        _ => vec![query.to_owned()],
    }
}

fn first_word(sql: &str) -> String {
    sql.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches(';')
        .to_lowercase()
}

/// `value` with the quotes of a string literal or identifier removed.
fn unquote(value: &str) -> String {
    let value = value.trim();
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        value[1..value.len() - 1].replace("''", "'")
    } else {
        value.to_owned()
    }
}

/// The session command `sql` is, if it is one; `None` sends it to the engine
/// (and so through the sandbox).
fn session_command(sql: &str) -> PgWireResult<Option<SessionCommand>> {
    let text = sql.trim().trim_end_matches(';').trim();
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let command = match words.as_slice() {
        ["begin", ..] | ["start", "transaction", ..] => SessionCommand::Begin,
        ["commit"]
        | ["commit", "work" | "transaction"]
        | ["end"]
        | ["end", "work" | "transaction"] => SessionCommand::Commit,
        ["rollback"] | ["rollback", "work" | "transaction"] | ["abort"] => SessionCommand::Rollback,
        ["set", "transaction", ..] | ["set", "session", "characteristics", ..] => {
            SessionCommand::NoOp("SET")
        }
        ["discard", "all"] => SessionCommand::NoOp("DISCARD ALL"),
        ["deallocate", "all"] | ["deallocate", "prepare", "all"] => {
            SessionCommand::Deallocate { name: None }
        }
        ["deallocate", name] | ["deallocate", "prepare", name] => SessionCommand::Deallocate {
            name: Some(name.trim_matches('"').to_owned()),
        },
        ["show", "all"] => SessionCommand::Show { name: None },
        ["show", "time", "zone"] => SessionCommand::Show {
            name: Some("timezone".to_owned()),
        },
        ["show", "transaction", "isolation", "level"] => SessionCommand::Show {
            name: Some("transaction_isolation".to_owned()),
        },
        ["show", name] if default_settings().contains_key(*name) => SessionCommand::Show {
            name: Some((*name).to_owned()),
        },
        ["reset", "all"] => SessionCommand::Reset { name: None },
        ["reset", name] if SETTABLE.contains(name) => SessionCommand::Reset {
            name: Some((*name).to_owned()),
        },
        ["set", "time", "zone", ..] => SessionCommand::Set {
            name: "timezone".to_owned(),
            value: unquote(&text[lower.find("zone").unwrap_or(0) + 4..]),
        },
        ["set", "names", ..] => SessionCommand::Set {
            name: "client_encoding".to_owned(),
            value: unquote(&text[lower.find("names").unwrap_or(0) + 5..]),
        },
        ["set", ..] => return Ok(set_command(text)),
        _ => return Ok(None),
    };
    Ok(Some(command))
}

/// `SET [SESSION | LOCAL] name {= | TO} value` of a [`SETTABLE`] setting.
fn set_command(text: &str) -> Option<SessionCommand> {
    let rest = text.get(3..)?.trim_start();
    let lower = rest.to_lowercase();
    let rest = if lower.starts_with("session ") {
        &rest[8..]
    } else if lower.starts_with("local ") {
        &rest[6..]
    } else {
        rest
    };
    let split = rest.find(|c: char| c == '=' || c.is_whitespace())?;
    let name = rest[..split].trim().trim_matches('"').to_lowercase();
    if !SETTABLE.contains(&name.as_str()) {
        return None;
    }
    let mut value = rest[split..].trim_start();
    if let Some(after) = value.strip_prefix('=') {
        value = after;
    } else if value.to_lowercase().starts_with("to ") {
        value = &value[3..];
    }
    let value = unquote(value);
    if value.eq_ignore_ascii_case("default") {
        return Some(SessionCommand::Reset { name: Some(name) });
    }
    Some(SessionCommand::Set { name, value })
}

/// Refuses values LightTrace cannot honour: it writes UTF-8 and ISO dates.
fn check_setting(name: &str, value: &str) -> PgWireResult<()> {
    let lower = value.to_lowercase();
    let ok = match name {
        "client_encoding" => matches!(lower.as_str(), "utf8" | "utf-8" | "unicode"),
        "datestyle" => lower.contains("iso"),
        "intervalstyle" => lower == "postgres",
        "standard_conforming_strings" => matches!(lower.as_str(), "on" | "true" | "1"),
        "bytea_output" => lower == "hex",
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(user_error(
            "0A000",
            format!(
                "{name} = {value:?} is not supported: LightTrace answers in UTF8, with ISO dates"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str) -> Option<SessionCommand> {
        Some(SessionCommand::Set {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }

    #[test]
    fn session_commands_are_recognised() {
        let cases = [
            ("SET extra_float_digits = 3", set("extra_float_digits", "3")),
            (
                "SET application_name TO 'psql'",
                set("application_name", "psql"),
            ),
            ("SET DateStyle = 'ISO, MDY';", set("datestyle", "ISO, MDY")),
            (
                "set client_encoding to 'UTF8'",
                set("client_encoding", "UTF8"),
            ),
            ("SET TIME ZONE 'UTC'", set("timezone", "UTC")),
            (
                "SET SESSION search_path = public",
                set("search_path", "public"),
            ),
            (
                "SHOW timezone",
                Some(SessionCommand::Show {
                    name: Some("timezone".into()),
                }),
            ),
            (
                "show server_version",
                Some(SessionCommand::Show {
                    name: Some("server_version".into()),
                }),
            ),
            ("BEGIN", Some(SessionCommand::Begin)),
            (
                "BEGIN ISOLATION LEVEL READ COMMITTED",
                Some(SessionCommand::Begin),
            ),
            ("commit", Some(SessionCommand::Commit)),
            ("ROLLBACK", Some(SessionCommand::Rollback)),
            (
                "SET TRANSACTION READ ONLY",
                Some(SessionCommand::NoOp("SET")),
            ),
            // To the engine, whose sandbox refuses them.
            ("SET datafusion.execution.batch_size = 1", None),
            ("SET foo = 1", None),
            ("SELECT 1", None),
            ("SHOW datafusion.execution.batch_size", None),
        ];
        for (sql, expected) in cases {
            assert_eq!(session_command(sql).unwrap(), expected, "{sql}");
        }
    }

    #[test]
    fn unsupported_values_are_refused() {
        assert!(check_setting("client_encoding", "LATIN1").is_err());
        assert!(check_setting("datestyle", "German").is_err());
        assert!(check_setting("client_encoding", "utf8").is_ok());
        assert!(check_setting("application_name", "anything").is_ok());
    }

    #[test]
    fn simple_queries_split_into_statements() {
        assert_eq!(split_statements("SELECT 1"), ["SELECT 1"]);
        assert_eq!(split_statements("SELECT 1; SELECT 2;").len(), 2);
        assert!(split_statements(";").is_empty());
        assert_eq!(split_statements("SELEC oops"), ["SELEC oops"]);
    }
}
