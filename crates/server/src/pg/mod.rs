//! The Postgres wire protocol (`lighttrace serve --pg ADDR`): the SQL of
//! `POST /api/v1/sql` for psql, psycopg, Grafana's PostgreSQL data source and
//! BI tools.
//!
//! The protocol is [`pgwire`]'s (startup, simple and extended query, cancel);
//! what runs is LightTrace's: every statement goes through
//! [`QueryEngine::run`] in the [`SqlDialect::Postgres`] dialect, so it passes
//! the same sandbox, project scope, time and memory limits, and takes a slot
//! of the same [`ServerConfig::max_concurrent_queries`] permits as HTTP SQL.
//! A refusal or a failure is an `ErrorResponse` with an SQLSTATE (see
//! [`query_error`]); the connection stays usable.
//!
//! # Authentication
//!
//! Without projects, any user name and no password ("trust"); the session
//! reads every project, like HTTP SQL without a key. With projects
//! (`--project ID:KEY`), the server asks for a cleartext password, which must
//! be a project's key; the user name is not checked (use the project id, by
//! convention). The session then reads that project only. A wrong key is
//! `FATAL 28P01`. There is no TLS: keep the port on a trusted network or
//! behind a TLS-terminating proxy.
//!
//! # Statements
//!
//! Besides what the sandbox lets through (queries), a few statements that
//! clients send on their own are answered here, without touching data:
//!
//! * `SET`/`RESET` of Postgres session settings clients set when they connect
//!   (`application_name`, `extra_float_digits`, `DateStyle` (ISO only),
//!   `client_encoding` (UTF8 only), `TimeZone`, `search_path`, timeouts, …):
//!   accepted, remembered for `SHOW` and `current_setting()`, with no other
//!   effect. Every other `SET` (DataFusion's options among them) goes to the
//!   sandbox, which refuses it.
//! * `SHOW name` of those settings, `server_version`, `TimeZone`, ….
//! * `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK`, `ABORT`,
//!   `SET TRANSACTION …`, `DISCARD ALL`, `DEALLOCATE`: accepted (the data is
//!   read-only, so a transaction changes nothing).
//! * An empty query (`;`, `-- ping`) answers `EmptyQueryResponse`.
//!
//! # Types
//!
//! | Arrow | Postgres |
//! |---|---|
//! | `Utf8`, `LargeUtf8`, `Utf8View` | `text` |
//! | `Int8`, `Int16`, `UInt8` | `int2` |
//! | `Int32`, `UInt16` | `int4` |
//! | `Int64`, `UInt32`, `UInt64` | `int8` |
//! | `Float16`, `Float32` | `float4` |
//! | `Float64`, `Decimal*` | `float8` |
//! | `Boolean` | `bool` |
//! | `Timestamp(_, tz)` | `timestamptz` (microseconds, as Postgres keeps them) |
//! | `Timestamp(_, None)` | `timestamp` |
//! | `Date32`, `Date64` | `date` |
//! | `Binary` and the like | `bytea` |
//! | `Map`, `List`, `Struct` (`attributes`, `events`, `links`) | `json`, as the HTTP API writes them |
//! | anything else (intervals, durations) | `text`, as Arrow displays it |
//!
//! Results are sent in text or binary, as the client asks per column.
//! Parameters (`$1`, …) may be text or binary `int2`/`int4`/`int8`,
//! `float4`/`float8`, `bool`, `text`/`varchar`/`unknown`, `timestamp(tz)`,
//! `date`; they are bound as typed values into the plan, never pasted into
//! the SQL, and cast to the type the statement infers for them.

mod encode;
mod session;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::sink::Sink;
use lighttrace_query::QueryError;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthDriver, AuthOutcome, AuthSource, DefaultServerParameterProvider, LoginInfo, Password,
    StartupHandler,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ClientInfo, ConnectionManager, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::auth::{Caller, Projects};
use crate::{AppState, Shared};

#[cfg(doc)]
use crate::ServerConfig;
#[cfg(doc)]
use lighttrace_query::{QueryEngine, SqlDialect};

pub(crate) use session::PgQueryHandler;

/// Serves the Postgres wire protocol on `listener` until `shutdown`
/// completes; then stops accepting and closes the open connections (a query
/// running on one is cancelled).
pub async fn serve_pg<F>(listener: TcpListener, state: AppState, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    serve_pg_shared(listener, Shared::new(state), shutdown).await
}

pub(crate) async fn serve_pg_shared<F>(
    listener: TcpListener,
    shared: Shared,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let handlers = Arc::new(PgHandlers::new(shared));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    if let Err(err) = socket.set_nodelay(true) {
                        tracing::debug!(error = %err, "could not set TCP_NODELAY");
                    }
                    let handlers = Arc::clone(&handlers);
                    connections.spawn(async move {
                        if let Err(err) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            tracing::debug!(%peer, error = %err, "Postgres connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %err, "cannot accept a Postgres connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// The handlers of every connection.
struct PgHandlers {
    startup: Arc<PgStartup>,
    query: Arc<PgQueryHandler>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgHandlers {
    fn new(shared: Shared) -> Self {
        let connections = Arc::new(ConnectionManager::new());
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = lighttrace_query::postgres::SERVER_VERSION.to_owned();
        parameters.search_path = "\"$user\", public".to_owned();
        parameters.default_transaction_read_only = true;
        parameters.is_superuser = false;
        let projects = shared.state.config.projects.clone();
        PgHandlers {
            startup: Arc::new(PgStartup {
                driver: AuthDriver::new(parameters)
                    .with_connection_manager(Arc::clone(&connections)),
                passwords: CleartextPasswordAuth::new(Arc::new(ProjectKeys(projects.clone()))),
                projects,
            }),
            query: Arc::new(PgQueryHandler::new(shared)),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

impl PgWireServerHandlers for PgHandlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.query)
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.query)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Startup: trust without projects, else a project key as the password. The
/// session's [`Caller`] is kept in the connection's session extensions.
struct PgStartup {
    driver: AuthDriver<DefaultServerParameterProvider, Caller>,
    passwords: CleartextPasswordAuth<ProjectKeys>,
    projects: Projects,
}

#[async_trait]
impl StartupHandler for PgStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                pgwire::api::auth::protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                if !self.projects.is_enabled() {
                    client.session_extensions().insert(Caller::Anyone);
                    return self.driver.complete_authentication(client, None).await;
                }
                let outcome = self
                    .driver
                    .begin_authentication(client, self.passwords.create())
                    .await?;
                self.finish(client, outcome).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let outcome = self.driver.advance_authentication(client, message).await?;
                self.finish(client, outcome).await
            }
            _ => Ok(()),
        }
    }
}

impl PgStartup {
    async fn finish<C>(&self, client: &mut C, outcome: AuthOutcome<Caller>) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated {
                identity,
                final_message,
            } => {
                let caller = identity.ok_or_else(|| wrong_password(client))?;
                client.session_extensions().insert(caller);
                self.driver
                    .complete_authentication(client, final_message)
                    .await
            }
        }
    }
}

fn wrong_password<C: ClientInfo>(client: &C) -> PgWireError {
    let user = client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .cloned()
        .unwrap_or_default();
    PgWireError::InvalidPassword(user)
}

/// Passwords are project keys, checked by hash in constant time
/// ([`Projects::project_of_key`]); keys are never recovered.
#[derive(Debug)]
struct ProjectKeys(Projects);

#[async_trait]
impl AuthSource<Caller> for ProjectKeys {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Only `verify_password` is used: keys are stored as hashes.
        Err(PgWireError::InvalidPassword(String::new()))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<Caller>> {
        let project = std::str::from_utf8(presented)
            .ok()
            .and_then(|key| self.0.project_of_key(key));
        match project {
            Some(id) => Ok(Some(Caller::Project(id.to_owned()))),
            None => Err(PgWireError::InvalidPassword(
                login.user().unwrap_or_default().to_owned(),
            )),
        }
    }
}

/// SQLSTATE of each [`QueryError`]: the one place the Postgres protocol maps
/// query errors (HTTP's is [`ApiError`](crate::ApiError)).
pub(crate) fn query_error(err: QueryError) -> PgWireError {
    let (code, message) = match err {
        // insufficient_privilege: the statement is not allowed here.
        QueryError::Refused(m) => ("42501", m),
        QueryError::Invalid(m) => (invalid_sqlstate(&m), m),
        // query_canceled, as for statement_timeout.
        QueryError::Timeout(_) => ("57014", err.to_string()),
        // out_of_memory
        QueryError::ResourcesExhausted(m) => ("53200", m),
        QueryError::Internal(m) => {
            tracing::error!(error = %m, "Postgres query failed");
            (
                "XX000",
                "internal error; the server log has the details".to_owned(),
            )
        }
    };
    user_error(code, message)
}

/// A syntax error, an unknown table or column, or any other mistake in the SQL.
fn invalid_sqlstate(message: &str) -> &'static str {
    let lower = message.to_lowercase();
    if lower.contains("parsererror") || lower.contains("sql error") {
        "42601"
    } else if lower.contains("table") && lower.contains("not found") {
        "42P01"
    } else if lower.contains("field") || lower.contains("column") {
        "42703"
    } else if lower.contains("function") {
        "42883"
    } else {
        "22023"
    }
}

pub(crate) fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}
