//! LightTrace's servers: the OTLP/HTTP (traces and logs) and Zipkin receivers
//! and the SQL API on one port (axum), the OTLP/gRPC receivers on another
//! (tonic).
//!
//! This crate sits between the network and the rest of the data path: a request
//! body is decoded by `lighttrace-ingest`, written by `lighttrace-storage` (durable
//! and visible before the response), and queried through `lighttrace-query`.
//!
//! # Routes
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/traces` | OTLP/HTTP traces: `application/x-protobuf` or `application/json`, gzip or identity. Answers an `ExportTraceServiceResponse` in the request's encoding, with `partialSuccess` when some spans were rejected. Errors carry a `google.rpc.Status`. |
//! | `POST /v1/logs` | OTLP/HTTP logs into the `logs` table, with the same rules: an `ExportLogsServiceResponse`, with `partialSuccess` (`rejectedLogRecords`) when some log records were rejected (a trace or span id of a wrong length). |
//! | `POST /api/{project_id}/envelope/` | Sentry envelopes from the unmodified Sentry SDKs (DSN `http://KEY@HOST:PORT/PROJECT_ID`): transactions and span items become `spans` rows of the project `PROJECT_ID`; gzip, br, deflate or identity; any or no `Content-Type`. 200 `{"id": "…"}`; 400 `{"error": "…"}` for a malformed envelope; 413 over a size limit; 429 with `Retry-After` and `X-Sentry-Rate-Limits` under overload; 401 for a wrong key when projects are configured. Error events become rows of `errors`. See `sentry.rs`. |
//! | `POST /api/v2/spans` | Zipkin v2: a JSON array of spans (`application/json`, also when `Content-Type` is missing) or a proto3 `ListOfSpans` (`application/x-protobuf`), gzip or identity. 202 on success (with `{"rejectedSpans", "errorMessage"}` when some spans were invalid). Errors are `{"error": "…"}`. |
//! | `POST /api/v1/sql` | `{"sql": "…"}` → `{"columns": [{"name", "type"}], "rows": [[…]]}`; with `Accept: application/vnd.apache.arrow.stream`, an Arrow IPC stream instead. Errors are `{"error": "…"}`. |
//! | `GET /api/v1/traces/{id}` | One trace across services (and the projects the key may read), analyzed: the span tree, clock-skew adjustment, self time, critical path, and the trace's errors and logs; the shape is `lighttrace_query::trace::TraceView`. The id in any case, with or without leading zeros; 400 for an id that is not up to 32 hex digits, 404 `{"error": "…"}` when no span of it is visible. |
//! | `GET /api/v1/reports` | The named reports (`sql/reports/`) with their parameters: `{"reports": [{"name", "summary", "description", "params": [{"name", "type", "default", "required", "description"}]}]}`. |
//! | `GET /api/v1/reports/{name}?key=value…` | Runs a report with its parameters bound as values (`from`, `to`, `service`, `name`, …; see `lighttrace report --list NAME`) and answers like `/api/v1/sql` (JSON or Arrow IPC). 400 for an unknown parameter or a value that does not parse, 404 for an unknown report. |
//! | `GET /health`, `GET /ready` | 200 `ok` while the server runs. |
//!
//! On the optional Postgres port (`--pg`), the SQL of `POST /api/v1/sql` over
//! the Postgres wire protocol, for psql, psycopg, Grafana and BI tools: the
//! same sandbox, project scope, limits and query permits; see [`serve_pg`].
//!
//! On the gRPC port, two methods: `opentelemetry.proto.collector.trace.v1.TraceService/Export`
//! and `opentelemetry.proto.collector.logs.v1.LogsService/Export` (OTLP/gRPC),
//! identity or gzip (`grpc-encoding`). They are the OTLP/HTTP receivers behind
//! gRPC framing: the same decoders, limits and WAL records, with the errors as
//! gRPC status codes (`OK` with `partial_success` when some spans or log records
//! were invalid, `INVALID_ARGUMENT` for bad data, `RESOURCE_EXHAUSTED` over a
//! size limit, `UNAVAILABLE` with a `google.rpc.RetryInfo` under overload). See
//! [`OtlpGrpcService`].
//!
//! Authentication does not exist yet: OTLP spans and log records are written
//! to the project [`DEFAULT_PROJECT`], Sentry spans to the project of the
//! envelope's URL, and SQL reads every project.
//!
//! # Status codes
//!
//! [`ApiError`] is the one place that maps errors to status codes; its module
//! docs have the table. In short: 400 bad data or SQL, 413 over a size limit, 415
//! unsupported `Content-Type`/`Content-Encoding`, 422 query over its memory limit,
//! 503 with `Retry-After` on overload, 504 query over its time limit, 500 with a
//! generic body for everything else (the cause is logged).
//!
//! # Overload
//!
//! Ingest never queues without bound: at most
//! [`ServerConfig::max_inflight_ingest`] requests, over HTTP (OTLP and Sentry) and gRPC together,
//! hold a body at once (the next is answered 503 / `UNAVAILABLE` at once), a body must arrive within
//! [`ServerConfig::body_read_timeout`], and the storage answers `Overloaded` when
//! its buffers are full. All three become 503 with `Retry-After` (gRPC:
//! `UNAVAILABLE` with `RetryInfo`; the Sentry endpoint: 429 with `Retry-After`
//! and `X-Sentry-Rate-Limits`, which the Sentry SDKs honour).
//!
//! # Example
//!
//! ```no_run
//! # async fn run(lake: std::sync::Arc<lighttrace_storage::Lake>,
//! #              query: std::sync::Arc<lighttrace_query::QueryEngine>) -> std::io::Result<()> {
//! use lighttrace_server::{AppState, ServerConfig, serve};
//! let state = AppState { lake, query, config: ServerConfig::default() };
//! let http = tokio::net::TcpListener::bind("127.0.0.1:4318").await?;
//! let grpc = tokio::net::TcpListener::bind("127.0.0.1:4317").await?;
//! serve(http, grpc, state, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

#![warn(missing_docs)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lighttrace_query::QueryEngine;
use lighttrace_storage::Lake;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultMakeSpan, DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

pub mod auth;
mod body;
/// Query results as bytes (Arrow IPC, JSON); shared with `lighttrace sql`.
pub use lighttrace_query::encode;
mod error;
mod grpc;
mod jaeger;
mod otlp;
mod pg;
mod receive;
mod report;
mod sentry;
mod sql;
mod tempo;
mod trace;
mod zipkin;

pub use auth::{Caller, ProjectKey, Projects};
pub use encode::ARROW_STREAM_CONTENT_TYPE;
pub use error::ApiError;
pub use grpc::{LOGS_SERVICE_NAME, OtlpGrpcService, TRACE_SERVICE_NAME, serve_grpc};
pub use otlp::{OTLP_LOGS_WAL_KIND, OTLP_TRACES_WAL_KIND, OtlpLogsWalDecoder, OtlpWalDecoder};
pub use pg::serve_pg;
pub use receive::{ReceiverWalDecoder, wal_decoder};
pub use sentry::{SENTRY_ENVELOPE_WAL_KIND, SentryWalDecoder};
pub use zipkin::{ZIPKIN_WAL_KIND, ZipkinWalDecoder};

/// The project of every request until authentication exists.
pub const DEFAULT_PROJECT: &str = "default";

/// Limits of the HTTP and gRPC servers. The defaults suit a laptop. The ingest
/// limits hold for OTLP/HTTP, OTLP/gRPC and Zipkin alike; where a field says 413, gRPC
/// answers `RESOURCE_EXHAUSTED`, and where it says 503, `UNAVAILABLE` with a
/// `RetryInfo`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Projects and their keys; none: authentication off (see [`auth`]).
    pub projects: Projects,
    /// Largest request body on the wire, before decompression (413 beyond).
    pub max_body_bytes: usize,
    /// Largest OTLP body after decompression; enforced while inflating, so a gzip
    /// bomb stops at this size (413 beyond).
    pub max_decompressed_bytes: usize,
    /// Ingest requests handled at once, over HTTP and gRPC together; the next one
    /// is answered 503 at once.
    /// Together with the two size limits this bounds the memory ingest holds.
    pub max_inflight_ingest: usize,
    /// A request body must have fully arrived within this time (503 otherwise).
    pub body_read_timeout: Duration,
    /// `Retry-After` (gRPC: the `RetryInfo` delay) sent with the server's own
    /// overload answers (in-flight limit, slow body). Storage overload sends the
    /// storage's own delay.
    pub overload_retry_after: Duration,
    /// Largest `POST /api/v1/sql` body.
    pub max_sql_bytes: usize,
    /// SQL queries run at once; the next one is answered 503 at once. Each query
    /// has its own memory limit, so this bounds the memory queries can take.
    pub max_concurrent_queries: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            projects: Projects::default(),
            max_body_bytes: 16 << 20,
            max_decompressed_bytes: 64 << 20,
            max_inflight_ingest: 32,
            body_read_timeout: Duration::from_secs(30),
            overload_retry_after: Duration::from_secs(1),
            max_sql_bytes: 1 << 20,
            max_concurrent_queries: 4,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Where ingested spans are written.
    pub lake: Arc<Lake>,
    /// Runs the SQL API's queries (on its own runtime).
    pub query: Arc<QueryEngine>,
    /// Limits.
    pub config: ServerConfig,
}

/// [`AppState`] plus what [`endpoints`] derives from it.
#[derive(Clone)]
pub(crate) struct Shared {
    pub state: AppState,
    pub ingest_permits: Arc<Semaphore>,
    pub query_permits: Arc<Semaphore>,
}

impl Shared {
    fn new(state: AppState) -> Self {
        Shared {
            ingest_permits: Arc::new(Semaphore::new(state.config.max_inflight_ingest.max(1))),
            query_permits: Arc::new(Semaphore::new(state.config.max_concurrent_queries.max(1))),
            state,
        }
    }

    /// One of the permits every ingest request holds until its spans are written
    /// (OTLP over HTTP and gRPC, Zipkin), taken without waiting: when
    /// [`ServerConfig::max_inflight_ingest`] requests are in flight, the next one
    /// is refused at once.
    pub(crate) fn ingest_permit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let config = &self.state.config;
        self.ingest_permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                ApiError::overloaded(
                    format!(
                        "too many ingest requests in flight (limit {}); retry later",
                        config.max_inflight_ingest
                    ),
                    config.overload_retry_after,
                )
            })
    }
}

/// The HTTP router and the OTLP/gRPC service of one server. They share the
/// ingest limits: at most [`ServerConfig::max_inflight_ingest`] requests in
/// flight over both.
pub struct Endpoints {
    /// Every HTTP route (see [`app`]).
    pub http: Router,
    /// OTLP/gRPC `TraceService/Export` and `LogsService/Export` (see
    /// [`OtlpGrpcService`]).
    pub grpc: OtlpGrpcService,
}

/// Builds the [`Endpoints`] of one server over `state`.
pub fn endpoints(state: AppState) -> Endpoints {
    endpoints_of(Shared::new(state))
}

fn endpoints_of(shared: Shared) -> Endpoints {
    Endpoints {
        grpc: OtlpGrpcService::new(shared.clone()),
        http: router(shared),
    }
}

/// The router with every route, request tracing and panic recovery. Tests call
/// it with `tower::ServiceExt::oneshot`; [`serve`] runs it on a listener.
pub fn app(state: AppState) -> Router {
    router(Shared::new(state))
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/traces", post(otlp::export_traces))
        .route("/v1/logs", post(otlp::export_logs))
        .route("/api/{project_id}/envelope/", post(sentry::envelope))
        .route("/api/{project_id}/envelope", post(sentry::envelope))
        .route("/api/v2/spans", post(zipkin::post_spans))
        .route("/api/v1/sql", post(sql::run_sql))
        .route("/api/v1/traces/{id}", get(trace::get_trace))
        .route("/api/v1/reports", get(report::list_reports))
        .route("/api/v1/reports/{name}", get(report::get_report))
        .route("/api/echo", get(tempo::echo))
        .route("/api/status/buildinfo", get(tempo::buildinfo))
        .route("/api/traces/{id}", get(tempo::trace_v1))
        .route("/api/v2/traces/{id}", get(tempo::trace_v2))
        .route("/api/search", get(tempo::search_traces))
        .route("/api/metrics/query_range", get(tempo::metrics::query_range))
        .route("/api/metrics/query", get(tempo::metrics::query_instant))
        .route("/api/search/tags", get(tempo::tags_v1))
        .route("/api/v2/search/tags", get(tempo::tags_v2))
        .route("/api/search/tag/{tag}/values", get(tempo::tag_values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(tempo::tag_values_v2))
        .nest("/jaeger/api", jaeger::routes())
        .route("/health", get(health))
        .route("/ready", get(health))
        .fallback(not_found)
        .with_state(shared)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                // 5xx: overload is expected under load, and internal errors are
                // logged with their cause where they happen.
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
}

/// Serves the HTTP routes on `http` and OTLP/gRPC on `grpc` until `shutdown`
/// completes; then both stop accepting connections and wait for the requests in
/// flight to finish.
///
/// The lake is not shut down here: the caller does that after this returns, so
/// that every acknowledged request has finished writing first. If either server
/// fails, the other is stopped and the error returned.
pub async fn serve<F>(
    http: tokio::net::TcpListener,
    grpc: tokio::net::TcpListener,
    state: AppState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with_pg(http, grpc, None, state, shutdown).await
}

/// [`serve`], and the Postgres wire protocol on `pg` when given (see
/// [`serve_pg`]); HTTP SQL and Postgres share the query permits
/// ([`ServerConfig::max_concurrent_queries`]). All of them stop on `shutdown`.
pub async fn serve_with_pg<F>(
    http: tokio::net::TcpListener,
    grpc: tokio::net::TcpListener,
    pg: Option<tokio::net::TcpListener>,
    state: AppState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    use axum::serve::ListenerExt;
    use futures::FutureExt;
    let shared = Shared::new(state);
    let Endpoints {
        http: router,
        grpc: otlp_service,
    } = endpoints_of(shared.clone());
    let shutdown = shutdown.shared();
    let http = http.tap_io(|stream| {
        // Small OTLP requests and responses should not wait for Nagle's algorithm.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
    });
    let http = axum::serve(http, router)
        .with_graceful_shutdown(shutdown.clone())
        .into_future();
    let grpc = serve_grpc(grpc, otlp_service, shutdown.clone());
    let pg = async move {
        match pg {
            Some(listener) => pg::serve_pg_shared(listener, shared, shutdown).await,
            None => Ok(()),
        }
    };
    tokio::try_join!(http, grpc, pg).map(|_| ())
}

async fn health() -> &'static str {
    "ok"
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("request handler panicked", panic_message(panic.as_ref())).into_response()
}

/// The message a panic was raised with.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}
