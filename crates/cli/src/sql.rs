//! `lighttrace sql "SELECT …"`: ask a running server, or read a data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use lighttrace_query::{ProjectScope, QueryConfig, QueryEngine};
use lighttrace_server::ARROW_STREAM_CONTENT_TYPE;
use lighttrace_storage::{Lake, StorageConfig, StoreLocation};

use crate::output::{self, Format};
use crate::settings::{parse_duration, parse_size};

/// The server asked when neither `--server` nor `--data` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:4318";

/// Where `sql`, `trace` and `report` read from: a running server, or a data
/// directory opened read-only.
#[derive(clap::Args, Debug, Clone)]
pub struct Source {
    /// Server to ask [default: http://127.0.0.1:4318].
    #[arg(long, value_name = "URL", env = "LIGHTTRACE_SERVER")]
    pub server: Option<String>,

    /// The project key for a server started with --project: only that
    /// project's data is read.
    #[arg(
        long,
        value_name = "KEY",
        env = "LIGHTTRACE_KEY",
        hide_env_values = true
    )]
    pub key: Option<String>,

    /// Read this data directory directly instead of asking a server (read-only;
    /// a server may be running on it). Takes precedence over LIGHTTRACE_SERVER.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// With --data: the object store holding the lake's Parquet files, when the
    /// server runs with --store.
    #[arg(long, value_name = "URL", requires = "data")]
    pub store: Option<String>,

    /// With --data: time limit of the query.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// With --data: memory limit of each query.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub memory_limit: u64,
}

impl Source {
    /// The server to ask when no --data is given.
    pub fn server(&self) -> &str {
        self.server.as_deref().unwrap_or(DEFAULT_SERVER)
    }

    /// A query engine over --data (which must be set); see [`open_data_dir`].
    pub async fn open(&self, data: &Path) -> anyhow::Result<Arc<QueryEngine>> {
        open_data_dir(data, self.store.as_deref(), self.memory_limit, self.timeout).await
    }
}

/// Arguments of `lighttrace sql`.
#[derive(clap::Args, Debug, Clone)]
pub struct SqlArgs {
    /// The SQL statement, e.g. "SELECT service_name, count(*) FROM spans GROUP BY 1".
    pub sql: String,

    #[command(flatten)]
    pub source: Source,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, env = "LIGHTTRACE_FORMAT")]
    pub format: Format,
}

pub fn run(args: SqlArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // As in `serve`: the query engine's runtime is dropped outside `block_on`.
    let mut engine = None;
    let result = runtime.block_on(async {
        match &args.source.data {
            Some(data) => query_data_dir(&args, data, &mut engine).await,
            None => query_server(args.source.server(), &args.sql, args.source.key.as_deref()).await,
        }
    });
    drop(runtime);
    drop(engine);
    let (schema, batches) = result?;
    output::print(&output::render(args.format, &schema, &batches)?)
}

async fn query_data_dir(
    args: &SqlArgs,
    data: &Path,
    engine_slot: &mut Option<Arc<QueryEngine>>,
) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let engine = engine_slot.insert(args.source.open(data).await?);
    // Whoever can read the directory can read every project in it.
    let output = engine.sql(&args.sql, &ProjectScope::All).await?;
    Ok((output.schema, output.batches))
}

/// A query engine over the lake in `data`, opened read-only (a server may be
/// running on it); `store` is the object store of its Parquet files when the
/// server runs with `--store`. Drop the engine outside the runtime that
/// awaited this (it owns a runtime of its own).
pub(crate) async fn open_data_dir(
    data: &Path,
    store: Option<&str>,
    memory_limit: u64,
    timeout: Duration,
) -> anyhow::Result<Arc<QueryEngine>> {
    if !data.is_dir() {
        bail!("--data {}: no such directory", data.display());
    }
    let mut config = StorageConfig::new(data);
    config.wal_decoder = Some(lighttrace_server::wal_decoder());
    if let Some(store) = store {
        config.store = StoreLocation::Url(store.to_owned());
    }
    let lake = Lake::open_read_only(config)
        .await
        .with_context(|| format!("cannot open the lake in {}", data.display()))?;
    let engine = QueryEngine::new(
        lake,
        QueryConfig {
            memory_limit_bytes: usize::try_from(memory_limit)
                .context("--memory-limit is too large")?,
            timeout,
            ..QueryConfig::default()
        },
    )
    .context("cannot start the query engine")?;
    Ok(Arc::new(engine))
}

/// `--server` as a URL: `http://` only.
pub(crate) fn server_url(server: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(server)
        .with_context(|| format!("--server {server:?} is not a URL (e.g. {DEFAULT_SERVER})"))?;
    if url.scheme() != "http" {
        bail!("--server {server:?}: only http:// is supported");
    }
    Ok(url)
}

async fn query_server(
    server: &str,
    sql: &str,
    key: Option<&str>,
) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let url = server_url(server)?;
    let endpoint = format!("{}/api/v1/sql", url.as_str().trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot create the HTTP client")?;
    let mut request = client
        .post(&endpoint)
        .header(reqwest::header::ACCEPT, ARROW_STREAM_CONTENT_TYPE);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    arrow_answer(server, request.json(&serde_json::json!({ "sql": sql }))).await
}

/// Sends `request` to `server` and reads its answer, an Arrow IPC stream (or
/// an error whose message the server's JSON body gives).
pub(crate) async fn arrow_answer(
    server: &str,
    request: reqwest::RequestBuilder,
) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {server}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("the server at {server} did not send a whole answer"))?;
    if !status.is_success() {
        bail!("{}", server_error_message(status, &body));
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .context("the server's answer is not an Arrow IPC stream")?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .context("the server's Arrow IPC stream is damaged")?;
    Ok((schema, batches))
}

/// The `error` of a JSON error body, else the body's text, else the status.
pub(crate) fn server_error_message(status: reqwest::StatusCode, body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(message) = value.get("error").and_then(|m| m.as_str())
    {
        return message.to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        format!("the server answered {status}")
    } else {
        format!("the server answered {status}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_the_json_body() {
        let status = reqwest::StatusCode::BAD_REQUEST;
        assert_eq!(
            server_error_message(status, br#"{"error": "no such column: x"}"#),
            "no such column: x"
        );
        assert_eq!(
            server_error_message(status, b"plain text"),
            "the server answered 400 Bad Request: plain text"
        );
        assert_eq!(
            server_error_message(reqwest::StatusCode::BAD_GATEWAY, b""),
            "the server answered 502 Bad Gateway"
        );
    }
}
