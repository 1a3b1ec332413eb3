//! `lighttrace trace <id>`: one trace as a waterfall or JSON, from a running
//! server (`GET /api/v1/traces/{id}`) or straight from a data directory. Both
//! paths end in the same [`TraceView`] (`lighttrace_query::trace`), so they
//! print the same thing.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use lighttrace_query::trace::{TraceView, lookup_trace, parse_trace_id};
use lighttrace_query::{ProjectScope, QueryEngine};

use crate::sql::{Source, server_error_message, server_url};
use crate::{output, waterfall};

/// How `lighttrace trace` prints a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TraceFormat {
    /// Indented rows in tree order with bars drawn to scale, the critical path
    /// highlighted, and where the time went.
    #[default]
    Waterfall,
    /// The JSON of `GET /api/v1/traces/{id}`, pretty-printed.
    Json,
}

/// Arguments of `lighttrace trace`.
#[derive(clap::Args, Debug, Clone)]
pub struct TraceArgs {
    /// The trace id: hex, any case, leading zeros optional.
    pub id: String,

    #[command(flatten)]
    pub source: Source,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TraceFormat::Waterfall)]
    pub format: TraceFormat,

    /// Width of the waterfall in columns [default: the terminal's, else
    /// $COLUMNS, else 120].
    #[arg(long, value_name = "COLUMNS")]
    pub width: Option<usize>,
}

pub fn run(args: TraceArgs) -> anyhow::Result<()> {
    // Refused here, before any I/O, with the same message the server gives.
    let trace_id = parse_trace_id(&args.id)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // As in `sql`: the query engine's runtime is dropped outside `block_on`.
    let mut engine: Option<Arc<QueryEngine>> = None;
    let result = runtime.block_on(async {
        match &args.source.data {
            Some(data) => {
                let engine = engine.insert(args.source.open(data).await?);
                // Whoever can read the directory can read every project in it.
                lookup_trace(engine, &ProjectScope::All, trace_id)
                    .await?
                    .with_context(|| format!("trace {trace_id} not found in {}", data.display()))
            }
            None => fetch(args.source.server(), &args.id, args.source.key.as_deref()).await,
        }
    });
    drop(runtime);
    drop(engine);
    let trace = result?;
    let text = match args.format {
        TraceFormat::Json => {
            let mut json =
                serde_json::to_string_pretty(&trace).context("cannot encode the trace")?;
            json.push('\n');
            json
        }
        TraceFormat::Waterfall => {
            let stdout = std::io::stdout();
            let terminal = stdout.is_terminal();
            waterfall::render(
                &trace,
                &waterfall::Style {
                    color: wants_color(terminal, std::env::var_os("NO_COLOR")),
                    width: args.width.unwrap_or_else(|| terminal_width(terminal)),
                },
            )
        }
    };
    output::print(text.as_bytes())
}

async fn fetch(server: &str, id: &str, key: Option<&str>) -> anyhow::Result<TraceView> {
    let url = server_url(server)?;
    let endpoint = format!(
        "{}/api/v1/traces/{}",
        url.as_str().trim_end_matches('/'),
        id.trim()
    );
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot create the HTTP client")?;
    let mut request = client.get(&endpoint);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
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
    serde_json::from_slice(&body).context("the server's answer is not a trace")
}

/// Colour on a terminal only, and not when NO_COLOR (no-color.org) is set to
/// anything but the empty string.
fn wants_color(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// The terminal's width, else `$COLUMNS`, else 120.
fn terminal_width(terminal: bool) -> usize {
    if terminal {
        // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
        if rc == 0 && size.ws_col > 0 {
            return usize::from(size.ws_col);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c: &usize| c > 0)
        .unwrap_or(120)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(wants_color(true, None));
        assert!(wants_color(true, Some("".into())));
        assert!(!wants_color(true, Some("1".into())));
        assert!(!wants_color(false, None));
    }
}
