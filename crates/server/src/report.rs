//! `GET /api/v1/reports` and `GET /api/v1/reports/{name}?key=value…`: the named
//! reports of `sql/reports/` (see `lighttrace_query::reports`).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use lighttrace_query::reports::{find_report, reports, run_report};
use serde_json::{Value, json};

use crate::Shared;
use crate::error::ApiError;
use crate::sql::{encode_answer, query_permit};

/// Handler of `GET /api/v1/reports`: every report with its parameters.
pub(crate) async fn list_reports() -> Json<Value> {
    let list: Vec<Value> = reports()
        .iter()
        .map(|report| {
            let params: Vec<Value> = report
                .params
                .iter()
                .map(|spec| {
                    json!({
                        "name": spec.name,
                        "type": spec.kind.name(),
                        "default": spec.default,
                        "required": spec.required,
                        "description": spec.help,
                    })
                })
                .collect();
            json!({
                "name": report.name,
                "summary": report.summary,
                "description": report.description,
                "params": params,
            })
        })
        .collect();
    Json(json!({ "reports": list }))
}

/// Handler of `GET /api/v1/reports/{name}`: the report's rows as the SQL API
/// answers them (JSON `columns` and `rows`, or an Arrow IPC stream).
pub(crate) async fn get_report(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let scope = shared.state.config.projects.caller(&headers)?.scope();
    let Some(report) = find_report(&name) else {
        let names: Vec<&str> = reports().iter().map(|r| r.name).collect();
        return Err(ApiError::not_found(format!(
            "no report {name:?}; the reports are {}",
            names.join(", ")
        )));
    };
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let _permit = query_permit(&shared)?;
    let output = run_report(&shared.state.query, report, &params, &scope).await?;
    encode_answer(output, &headers).await
}
