//! Jaeger's query API under `/jaeger/api/`: what Grafana's Jaeger data source
//! (and anything else written for Jaeger's `cmd/query` HTTP API) calls. Point
//! the data source at `http://HOST:4318/jaeger`; it appends `/api/services` etc.
//!
//! | route | answers `data` = |
//! |---|---|
//! | `GET /jaeger/api/services` | service names (with spans in the last 7 days), sorted |
//! | `GET /jaeger/api/services/{service}/operations` | the service's span names |
//! | `GET /jaeger/api/operations?service=&spanKind=` | `[{name, spanKind}]`; `spanKind` one of `server`, `client`, `producer`, `consumer`, `internal`, or empty for all |
//! | `GET /jaeger/api/traces?service=&operation=&tags=&start=&end=&minDuration=&maxDuration=&limit=` | whole traces with a span of the service (and operation) that has the tags and a duration in range, started in `[start, end]` (µs; default the last hour); newest first, at most `limit` (default 20) |
//! | `GET /jaeger/api/traces/{id}` | `[trace]`, across services; 404 when no span of it is visible |
//! | `GET /jaeger/api/dependencies?endTs=&lookback=` | `[{parent, child, callCount}]` for `[endTs − lookback, endTs)` (ms; default the last 24 hours), from the `service-graph` report |
//!
//! Every answer is Jaeger's envelope `{"data", "total", "limit", "offset",
//! "errors"}` (`total` is the length of `data` for services and operations
//! and 0 otherwise, as Jaeger sets it), errors included: `{"data": null, …,
//! "errors": [{"code": 400, "msg": "…"}]}` with the HTTP status of
//! [`ApiError`]. A trace is Jaeger's JSON model; `convert` documents how each
//! `spans` column maps to it. The caller's key picks the projects it reads, as
//! for the other query APIs.
//!
//! Tags in a search match span attributes, resource attributes (Jaeger's
//! process tags) and the tags Jaeger derives from a span's columns (`error`,
//! `span.kind`, `otel.status_code`, …); unlike Jaeger, not event (log) fields.

mod convert;
mod params;
mod store;

use axum::Router;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lighttrace_query::ProjectScope;
use lighttrace_query::trace::parse_trace_id;
use serde::Serialize;

use self::params::{DependencyWindow, QueryParams, TraceSearch, check_optional_micros};
use crate::Shared;
use crate::error::{ApiError, ErrorFormat};
use crate::sql::query_permit;

/// The routes, relative to `/jaeger/api`.
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/services", get(services))
        .route("/services/{service}/operations", get(service_operations))
        .route("/operations", get(operations))
        .route("/traces", get(search_traces))
        .route("/traces/{id}", get(get_trace))
        .route("/dependencies", get(dependencies))
        .fallback(unknown_route)
}

/// Jaeger's `structuredResponse` around a successful answer.
#[derive(Serialize)]
struct Envelope<T> {
    data: T,
    total: usize,
    limit: usize,
    offset: usize,
    errors: Option<()>,
}

/// `data` in the envelope, as JSON; encoded off the reactor (a search can
/// answer megabytes).
async fn answer<T: Serialize + Send + 'static>(
    data: T,
    total: usize,
) -> Result<Response, ApiError> {
    let body = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&Envelope {
            data,
            total,
            limit: 0,
            offset: 0,
            errors: None,
        })
    })
    .await
    .map_err(|err| ApiError::internal("Jaeger answer encoding task failed", err))?
    .map_err(|err| ApiError::internal("could not encode a Jaeger answer", err))?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The answer, or the error in Jaeger's envelope.
fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|err| err.with_format(ErrorFormat::Jaeger).into_response())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn scope(shared: &Shared, headers: &HeaderMap) -> Result<ProjectScope, ApiError> {
    Ok(shared.state.config.projects.caller(headers)?.scope())
}

async fn services(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    respond(
        async {
            let scope = scope(&shared, &headers)?;
            let _permit = query_permit(&shared)?;
            let since = now_ns() - store::METADATA_LOOKBACK_NS;
            let names = store::services(&shared.state.query, &scope, since).await?;
            let total = names.len();
            answer(names, total).await
        }
        .await,
    )
}

async fn service_operations(
    State(shared): State<Shared>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let scope = scope(&shared, &headers)?;
            let _permit = query_permit(&shared)?;
            let since = now_ns() - store::METADATA_LOOKBACK_NS;
            let operations =
                store::operations(&shared.state.query, &scope, &service, None, since).await?;
            let mut names: Vec<String> = operations.into_iter().map(|op| op.name).collect();
            names.dedup();
            let total = names.len();
            answer(names, total).await
        }
        .await,
    )
}

async fn operations(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let scope = scope(&shared, &headers)?;
            let params = QueryParams::parse(query.as_deref());
            let service = params
                .first("service")
                .ok_or_else(|| ApiError::bad_request("parameter 'service' is required"))?;
            let kind = match params.first("spanKind") {
                None => None,
                Some(
                    kind @ ("server" | "client" | "producer" | "consumer" | "internal"
                    | "unspecified"),
                ) => Some(kind),
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "unable to parse param 'spanKind': {other:?} is none of server, client, \
                         producer, consumer, internal"
                    )));
                }
            };
            let _permit = query_permit(&shared)?;
            let since = now_ns() - store::METADATA_LOOKBACK_NS;
            let operations =
                store::operations(&shared.state.query, &scope, service, kind, since).await?;
            let total = operations.len();
            answer(operations, total).await
        }
        .await,
    )
}

async fn search_traces(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let scope = scope(&shared, &headers)?;
            let search = TraceSearch::parse(&QueryParams::parse(query.as_deref()), now_ns())
                .map_err(ApiError::bad_request)?;
            let _permit = query_permit(&shared)?;
            let engine = &shared.state.query;
            let ids = store::find_trace_ids(engine, &scope, &search).await?;
            let window = (
                search.start_ns.saturating_sub(store::TRACE_MARGIN_NS),
                search.end_ns.saturating_add(store::TRACE_MARGIN_NS),
            );
            let mut spans = store::trace_spans(engine, &scope, &ids, Some(window)).await?;
            let traces: Vec<convert::Trace> = ids
                .iter()
                .filter_map(|id| spans.remove(id))
                .map(convert::trace)
                .collect();
            answer(traces, 0).await
        }
        .await,
    )
}

async fn get_trace(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            // The key first: a caller without one learns nothing about the id.
            let scope = scope(&shared, &headers)?;
            let trace_id =
                parse_trace_id(&id).map_err(|err| ApiError::bad_request(err.to_string()))?;
            let params = QueryParams::parse(query.as_deref());
            for name in ["start", "end"] {
                check_optional_micros(&params, name).map_err(ApiError::bad_request)?;
            }
            let _permit = query_permit(&shared)?;
            let hex = trace_id.to_hex();
            let mut spans = store::trace_spans(
                &shared.state.query,
                &scope,
                std::slice::from_ref(&hex),
                None,
            )
            .await?;
            let Some(rows) = spans.remove(&hex) else {
                // Jaeger's own message (`spanstore.ErrTraceNotFound`).
                return Err(ApiError::not_found("trace not found"));
            };
            answer([convert::trace(rows)], 0).await
        }
        .await,
    )
}

async fn dependencies(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let scope = scope(&shared, &headers)?;
            let params = QueryParams::parse(query.as_deref());
            let window =
                DependencyWindow::parse(&params, now_ns()).map_err(ApiError::bad_request)?;
            let _permit = query_permit(&shared)?;
            let links =
                store::dependencies(&shared.state.query, &scope, window, params.first("service"))
                    .await?;
            answer(links, 0).await
        }
        .await,
    )
}

async fn unknown_route(method: Method, OriginalUri(uri): OriginalUri) -> Response {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
        .with_format(ErrorFormat::Jaeger)
        .into_response()
}
