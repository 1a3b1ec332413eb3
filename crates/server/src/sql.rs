//! `POST /api/v1/sql`: SQL over the lake, answered as JSON or as an Arrow IPC stream.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::Shared;
use crate::body::{BodyLimits, content_length, read_body};
use crate::encode::{ARROW_STREAM_CONTENT_TYPE, ipc_stream, json_rows};
use crate::error::ApiError;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

/// Handler of `POST /api/v1/sql`.
pub(crate) async fn run_sql(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let config = &shared.state.config;
    // A key reads its own project only; without projects, SQL reads them all.
    let scope = config.projects.caller(&headers)?.scope();
    let body = read_body(
        body,
        content_length(&headers),
        BodyLimits {
            max_bytes: config.max_sql_bytes,
            deadline: config.body_read_timeout,
            retry_after: config.overload_retry_after,
        },
    )
    .await?;
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|err| {
        ApiError::bad_request(format!(
            "the body must be a JSON object {{\"sql\": \"…\"}}: {err}"
        ))
    })?;
    if request.sql.trim().is_empty() {
        return Err(ApiError::bad_request("the \"sql\" field is empty"));
    }

    let _permit = query_permit(&shared)?;
    let output = shared.state.query.sql(&request.sql, &scope).await?;
    encode_answer(output, &headers).await
}

/// A slot among the queries allowed to run at once, or 503 with `Retry-After`.
pub(crate) fn query_permit(shared: &Shared) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let config = &shared.state.config;
    shared
        .query_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::overloaded(
                format!(
                    "too many queries running (limit {}); retry later",
                    config.max_concurrent_queries
                ),
                config.overload_retry_after,
            )
        })
}

/// A query result as the response: an Arrow IPC stream when `Accept` asks for
/// one, else `{"columns": […], "rows": […]}`.
pub(crate) async fn encode_answer(
    output: lighttrace_query::QueryOutput,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let arrow_stream = wants_arrow_stream(headers);
    // Encoding a large result is CPU work; keep it off the reactor.
    let encoded = tokio::task::spawn_blocking(move || {
        if arrow_stream {
            ipc_stream(&output.schema, &output.batches)
        } else {
            json_rows(&output.schema, &output.batches)
        }
    })
    .await
    .map_err(|err| ApiError::internal("SQL result encoding task failed", err))?
    .map_err(|err| ApiError::internal("could not encode the SQL result", err))?;

    let content_type = if arrow_stream {
        ARROW_STREAM_CONTENT_TYPE
    } else {
        "application/json"
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        encoded,
    )
        .into_response())
}

/// Whether the `Accept` header lists an Arrow IPC stream.
fn wants_arrow_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(ARROW_STREAM_CONTENT_TYPE)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_selects_arrow() {
        let mut headers = HeaderMap::new();
        assert!(!wants_arrow_stream(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_arrow_stream(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, application/vnd.apache.arrow.stream;q=0.9"),
        );
        assert!(wants_arrow_stream(&headers));
    }
}
