//! `GET /api/v1/traces/{id}`: one trace, analyzed (see `lighttrace_query::trace`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lighttrace_query::trace::{lookup_trace, parse_trace_id};

use crate::Shared;
use crate::error::ApiError;

/// Handler of `GET /api/v1/traces/{id}`.
pub(crate) async fn get_trace(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let config = &shared.state.config;
    // The key first: a caller without one learns nothing, not even whether
    // the id is well-formed.
    let scope = config.projects.caller(&headers)?.scope();
    let trace_id = parse_trace_id(&id).map_err(|err| ApiError::bad_request(err.to_string()))?;
    let _permit = crate::sql::query_permit(&shared)?;
    let Some(trace) = lookup_trace(&shared.state.query, &scope, trace_id).await? else {
        return Err(ApiError::not_found(format!("trace {trace_id} not found")));
    };
    // A large trace is a few MB of JSON: keep the encoding off the reactor.
    let body = tokio::task::spawn_blocking(move || serde_json::to_vec(&trace))
        .await
        .map_err(|err| ApiError::internal("trace encoding task failed", err))?
        .map_err(|err| ApiError::internal("could not encode the trace", err))?;
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
