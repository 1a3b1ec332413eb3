//! `lighttrace report <name>`: a named report of `sql/reports/`, from a running
//! server (`GET /api/v1/reports/{name}`) or straight from a data directory.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use lighttrace_query::reports::{Report, find_report, reports, run_report};
use lighttrace_query::{ProjectScope, QueryEngine};
use lighttrace_server::ARROW_STREAM_CONTENT_TYPE;

use crate::output::{self, Format};
use crate::sql::{Source, arrow_answer, server_url};

/// Arguments of `lighttrace report`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The report: latency, bottlenecks, exemplars, errors, n-plus-one,
    /// service-graph (`--list` describes them).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,

    /// List the reports with one line each (with a name: its parameters).
    #[arg(long)]
    pub list: bool,

    /// A parameter, `key=value` (repeatable): from=-1h, to=now, service=cart,
    /// name=GET /cart, bucket=1m, percentile=99 …
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,

    #[command(flatten)]
    pub source: Source,

    /// Output format (json: an array of objects).
    #[arg(long, value_enum, default_value_t = Format::Table, env = "LIGHTTRACE_FORMAT")]
    pub format: Format,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, got {text:?}"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    if args.list {
        let text = match args.name.as_deref() {
            None => list(),
            Some(name) => describe(known(name)?),
        };
        return output::print(text.as_bytes());
    }
    let name = args
        .name
        .as_deref()
        .expect("clap requires a name without --list");
    let report = known(name)?;
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
                let output = run_report(engine, report, &args.params, &ProjectScope::All)
                    .await
                    .with_context(|| format!("report {name}"))?;
                Ok::<_, anyhow::Error>((output.schema, output.batches))
            }
            None => {
                fetch(
                    args.source.server(),
                    name,
                    &args.params,
                    args.source.key.as_deref(),
                )
                .await
            }
        }
    });
    drop(runtime);
    drop(engine);
    let (schema, batches) = result?;
    output::print(&output::render(args.format, &schema, &batches)?)
}

fn known(name: &str) -> anyhow::Result<&'static Report> {
    match find_report(name) {
        Some(report) => Ok(report),
        None => {
            let names: Vec<&str> = reports().iter().map(|r| r.name).collect();
            bail!("no report {name:?}; the reports are {}", names.join(", "))
        }
    }
}

/// One line per report.
fn list() -> String {
    let width = reports().iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for report in reports() {
        text.push_str(&format!("{:width$}  {}\n", report.name, report.summary));
    }
    text
}

/// A report's description and parameters.
fn describe(report: &Report) -> String {
    let mut text = format!(
        "{}: {}\n\n{}\n\nParameters:\n",
        report.name, report.summary, report.description
    );
    for spec in &report.params {
        let default = match (&spec.default, spec.required) {
            (Some(default), _) => format!(" (default {default})"),
            (None, true) => " (required)".to_owned(),
            (None, false) => String::new(),
        };
        text.push_str(&format!(
            "  {} ({}){default}: {}\n",
            spec.name,
            spec.kind.name(),
            spec.help
        ));
    }
    text
}

async fn fetch(
    server: &str,
    name: &str,
    params: &[(String, String)],
    key: Option<&str>,
) -> anyhow::Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut url = server_url(server)?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("--server {server:?} cannot have a path"))?
        .pop_if_empty()
        .extend(["api", "v1", "reports", name]);
    url.query_pairs_mut()
        .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot create the HTTP client")?;
    let mut request = client
        .get(url)
        .header(reqwest::header::ACCEPT, ARROW_STREAM_CONTENT_TYPE);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    arrow_answer(server, request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_param("name=a=b").unwrap(),
            ("name".to_owned(), "a=b".to_owned())
        );
        assert_eq!(
            parse_param("service=").unwrap(),
            ("service".to_owned(), String::new())
        );
        assert!(parse_param("service").is_err());
        assert!(parse_param("=x").is_err());
    }

    #[test]
    fn the_list_has_one_line_per_report() {
        let text = list();
        assert_eq!(text.lines().count(), reports().len());
        assert!(text.lines().any(|l| l.starts_with("latency ")), "{text}");
        let text = describe(find_report("exemplars").unwrap());
        assert!(text.contains("percentile (float)"), "{text}");
        assert!(text.contains("from (timestamp) (default -24h)"), "{text}");
    }
}
