//! `lighttrace gen`: a load generator that makes realistic traces from a
//! service topology and sends them to a LightTrace server over OTLP/HTTP.
//!
//! The pieces, in the order a span flows through them:
//!
//! * [`topology`]: reads a topology file (the Omnition synthetic-load-generator
//!   format, e.g. `shared/data/topologies/hipster-shop.json`) into a validated
//!   [`Topology`].
//! * [`generator`]: [`Generator`] turns a topology and a seed into OTLP
//!   `ExportTraceServiceRequest`s: pure and deterministic, byte for byte. Its
//!   module doc describes the realism model.
//! * `wire`: the same requests as Zipkin v2 JSON or a Sentry envelope.
//! * `send`: sends the requests in the chosen [`Protocol`] (`{target}/v1/traces`,
//!   gRPC `TraceService/Export`, `{target}/api/v2/spans`,
//!   `{target}/api/{project}/envelope/`) with bounded concurrency, an optional
//!   span-rate limit, retries on 429/503 (gRPC: `UNAVAILABLE`) that honour
//!   `Retry-After` (gRPC: `RetryInfo`), and a progress bar.
//!
//! ```ignore
//! # fn demo() -> anyhow::Result<()> {
//! use crate::gen::{Generator, load_topology};
//! let topology = load_topology("hipster-shop.json".as_ref())?;
//! let start = 1_700_000_000_000_000_000; // Unix ns
//! let hour = 3_600_000_000_000;
//! let mut generator = Generator::new(topology, 1, start, hour).with_traces(10_000);
//! while let Some(request) = generator.next_request(1000) {
//!     // encode with prost::Message::encode_to_vec, write, send …
//! #   drop(request);
//! }
//! # Ok(()) }
//! ```

mod generator;
mod send;
mod topology;
mod wire;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

pub use generator::Generator;
pub use topology::{Topology, load_topology};

#[cfg(test)]
const HIPSTER_SHOP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/topologies/hipster-shop.json"
);

/// Generate realistic traces from a service topology, and send them to a
/// server (--target) or write them to a data directory (--data).
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("sink").required(true).args(["target", "data"])))]
pub struct GenArgs {
    /// Topology file (JSON, synthetic-load-generator format).
    #[arg(long, value_name = "FILE", env = "LIGHTTRACE_GEN_TOPOLOGY")]
    pub topology: PathBuf,

    /// Number of traces [default: the topology's tracesPerHour over --window].
    #[arg(long, value_name = "N")]
    pub traces: Option<u64>,

    /// Random seed: the same seed, topology, --start, --window and --traces
    /// give the same spans, byte for byte.
    #[arg(long, default_value_t = 1, env = "LIGHTTRACE_GEN_SEED")]
    pub seed: u64,

    /// Server to send to, e.g. http://127.0.0.1:4318 (spans go to URL/v1/traces,
    /// URL/api/v2/spans or URL/api/PROJECT/envelope/ by --protocol); for
    /// otlp-grpc the gRPC address, e.g. http://127.0.0.1:4317.
    #[arg(long, value_name = "URL", env = "LIGHTTRACE_GEN_TARGET")]
    pub target: Option<String>,

    /// Wire format to send the traces in (--target only); the same seed sends
    /// the same spans in every format.
    #[arg(long, value_enum, default_value_t = Protocol::OtlpHttp)]
    pub protocol: Protocol,

    /// Sentry project id of the envelope URL (--protocol sentry).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub sentry_project: u64,

    /// Data directory to write directly, instead of sending to a server.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Send at most this many spans per second (--target only).
    // `conflicts_with`, not `requires = "target"`: clap drops a requirement on an
    // argument that conflicts with a present one (--data, through the group).
    #[arg(long, value_name = "SPANS_PER_S", conflicts_with = "data", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Start of the time window, RFC 3339 (e.g. 2025-01-31T12:00:00Z)
    /// [default: now minus --window, so that the window ends now].
    #[arg(long, value_name = "RFC3339", value_parser = parse_start)]
    pub start: Option<DateTime<Utc>>,

    /// Length of the time window the traces' start times spread over:
    /// seconds, or a number with s, m, h or d.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub window: Duration,

    /// Spans per request, about (whole traces only).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = parse_positive)]
    pub batch_spans: usize,

    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = parse_positive)]
    pub concurrency: usize,

    /// Extra HTTP header for every request, NAME=VALUE or "NAME: VALUE"
    /// (repeatable), e.g. --header "Authorization=Bearer abc".
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// Compress request bodies with gzip.
    #[arg(long)]
    pub gzip: bool,

    /// Retries of one request on 429, 502, 503, 504 or a connection error.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_retries: u32,

    /// Timeout of one HTTP request: seconds, or a number with s, m, h or d.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Do not show a progress bar (it shows only when stderr is a terminal).
    #[arg(long)]
    pub no_progress: bool,

    /// Print the summary as one JSON object instead of a sentence (for benches).
    #[arg(long)]
    pub json: bool,
}

/// The wire format `lighttrace gen --target` sends.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP/HTTP protobuf, `POST {target}/v1/traces`.
    #[default]
    OtlpHttp,
    /// OTLP/gRPC, `TraceService/Export` at the target address.
    OtlpGrpc,
    /// Zipkin v2 JSON, `POST {target}/api/v2/spans`.
    Zipkin,
    /// Sentry envelopes of transactions, `POST {target}/api/{project}/envelope/`.
    Sentry,
}

/// What a `--target` run sent. Only requests the server acknowledged with a
/// 2xx count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSummary {
    /// Traces in acknowledged requests.
    pub traces: u64,
    /// Spans the server accepted (acknowledged, minus any it reported as
    /// rejected in an OTLP partial success).
    pub spans: u64,
    /// Acknowledged requests.
    pub requests: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Retried attempts (429/502/503/504 or connection errors).
    pub retries: u64,
    /// Spans the server acknowledged but reported as rejected (OTLP partial
    /// success).
    pub rejected_spans: u64,
    /// Uncompressed bytes of the acknowledged requests' payloads in the wire
    /// format sent (OTLP protobuf, Zipkin JSON, Sentry envelope).
    pub payload_bytes: u64,
}

impl GenSummary {
    /// The summary as one JSON object (`elapsed_s` in seconds).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "traces": self.traces,
            "spans": self.spans,
            "requests": self.requests,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "retries": self.retries,
            "rejected_spans": self.rejected_spans,
            "payload_bytes": self.payload_bytes,
        })
        .to_string()
    }

    /// Accepted spans per second of wall time.
    pub fn spans_per_second(&self) -> f64 {
        self.spans as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for GenSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "sent {} trace{}, {} span{} in {} request{} in {:.2}s ({:.0} spans/s, {} retr{})",
            self.traces,
            plural(self.traces),
            self.spans,
            plural(self.spans),
            self.requests,
            plural(self.requests),
            self.elapsed.as_secs_f64(),
            self.spans_per_second(),
            self.retries,
            if self.retries == 1 { "y" } else { "ies" },
        )?;
        if self.rejected_spans > 0 {
            write!(f, "; the server rejected {} spans", self.rejected_spans)?;
        }
        Ok(())
    }
}

/// Runs `lighttrace gen --target URL`: generates the traces, sends them, and
/// prints a one-line summary to stdout (callers need not print it again).
///
/// `--data` mode is not handled here (it returns an error): the caller writes
/// the lake from [`build_generator`]'s requests.
pub async fn run(args: GenArgs) -> anyhow::Result<GenSummary> {
    let Some(target) = &args.target else {
        bail!("gen::run sends to a server and needs --target; --data is written by the caller");
    };
    let endpoint = match args.protocol {
        Protocol::OtlpHttp => endpoint(target, "/v1/traces")?,
        Protocol::OtlpGrpc => endpoint(target, "")?,
        Protocol::Zipkin => endpoint(target, "/api/v2/spans")?,
        Protocol::Sentry => endpoint(target, &format!("/api/{}/envelope/", args.sentry_project))?,
    };
    let headers = header_map(&args.headers)?;
    let generator = build_generator(&args)?;
    let options = send::SendOptions {
        protocol: args.protocol,
        endpoint,
        headers,
        gzip: args.gzip,
        concurrency: args.concurrency.max(1),
        rate: args.rate,
        batch_spans: args.batch_spans.max(1),
        max_retries: args.max_retries,
        timeout: args.timeout,
        progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let summary = send::send_all(generator, options).await?;
    if args.json {
        println!("{}", summary.to_json());
    } else {
        println!("{summary}");
    }
    Ok(summary)
}

/// The generator `args` describe: topology loaded, start (default now minus
/// the window), window and trace count applied. Both modes use it; `--data`
/// callers then loop on `next_request(args.batch_spans)`.
pub fn build_generator(args: &GenArgs) -> anyhow::Result<Generator> {
    let topology: Topology = load_topology(&args.topology)?;
    let window_nanos = i64::try_from(args.window.as_nanos())
        .ok()
        .filter(|&w| w > 0)
        .context("--window must be between 1ns and about 292 years")?;
    let start_nanos = match args.start {
        Some(start) => start
            .timestamp_nanos_opt()
            .filter(|&n| n >= 0)
            .context("--start must lie between 1970 and 2262")?,
        None => {
            let now = Utc::now()
                .timestamp_nanos_opt()
                .context("the clock is outside 1970..2262")?;
            (now - window_nanos).max(0)
        }
    };
    let generator = Generator::new(topology, args.seed, start_nanos, window_nanos);
    Ok(match args.traces {
        Some(traces) => generator.with_traces(traces),
        None => generator,
    })
}

/// `{target}{path}`, unless the target already names that path.
fn endpoint(target: &str, path: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(target).with_context(|| {
        format!("--target {target:?} is not a URL (e.g. http://127.0.0.1:4318)")
    })?;
    match url.scheme() {
        "http" => {}
        "https" => bail!(
            "--target {target:?}: this build of lighttrace sends over plain HTTP only (no TLS)"
        ),
        other => bail!("--target {target:?}: unsupported scheme {other:?}, use http://"),
    }
    let bare = path.trim_end_matches('/');
    if bare.is_empty() || url.path().trim_end_matches('/').ends_with(bare) {
        return Ok(url);
    }
    let joined = format!("{}{path}", url.as_str().trim_end_matches('/'));
    reqwest::Url::parse(&joined).with_context(|| format!("--target {target:?}"))
}

fn header_map(headers: &[(String, String)]) -> anyhow::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("--header: {name:?} is not a valid header name"))?;
        let value = HeaderValue::from_str(value)
            .with_context(|| format!("--header {name}: the value is not a valid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .or_else(|| text.split_once(':'))
        .ok_or_else(|| format!("expected NAME=VALUE or \"NAME: VALUE\", got {text:?}"))?;
    let (name, value) = (name.trim(), value.trim());
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    HeaderValue::from_str(value)
        .map_err(|_| format!("the value of {name} is not a valid header value"))?;
    Ok((name.to_owned(), value.to_owned()))
}

fn parse_start(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 time like 2025-01-31T12:00:00Z: {e}"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m, h or d"
            ));
        }
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration like 90s, 30m, 1h or 2d, got {text:?}"))?;
    let seconds = number * seconds_per_unit;
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e10) {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "expected a positive number of spans per second, got {text:?}"
        )),
    }
}

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive integer, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        gen_args: GenArgs,
    }

    fn parse(args: &[&str]) -> Result<GenArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("gen").chain(args.iter().copied())).map(|c| c.gen_args)
    }

    #[test]
    fn exactly_one_of_target_and_data_is_required() {
        let none = parse(&["--topology", "t.json"]).unwrap_err();
        assert_eq!(none.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let both = parse(&[
            "--topology",
            "t.json",
            "--target",
            "http://x",
            "--data",
            "d",
        ])
        .unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        let data = parse(&["--topology", "t.json", "--data", "d"]).expect("--data alone");
        assert_eq!(data.data, Some(PathBuf::from("d")));
        assert_eq!(data.seed, 1);
        assert_eq!(data.batch_spans, 1000);
        assert_eq!(data.concurrency, 4);
        assert_eq!(data.window, Duration::from_secs(3600));
    }

    #[test]
    fn rate_needs_target() {
        let err = parse(&["--topology", "t.json", "--data", "d", "--rate", "100"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let args = parse(&[
            "--topology",
            "t.json",
            "--target",
            "http://h",
            "--rate",
            "100",
        ]);
        assert_eq!(args.expect("--rate with --target").rate, Some(100.0));
    }

    #[test]
    fn flags_parse() {
        let args = parse(&[
            "--topology",
            "t.json",
            "--target",
            "http://127.0.0.1:4318",
            "--traces",
            "10",
            "--seed",
            "7",
            "--rate",
            "5000",
            "--start",
            "2025-01-31T12:00:00+01:00",
            "--window",
            "30m",
            "--batch-spans",
            "500",
            "--concurrency",
            "8",
            "--header",
            "Authorization=Bearer abc",
            "--header",
            "X-Project: shop",
            "--gzip",
            "--no-progress",
        ])
        .expect("parses");
        assert_eq!(args.traces, Some(10));
        assert_eq!(args.seed, 7);
        assert_eq!(args.rate, Some(5000.0));
        assert_eq!(
            args.start.map(|s| s.to_rfc3339()).as_deref(),
            Some("2025-01-31T11:00:00+00:00")
        );
        assert_eq!(args.window, Duration::from_secs(1800));
        assert_eq!(
            args.headers,
            [
                ("Authorization".to_owned(), "Bearer abc".to_owned()),
                ("X-Project".to_owned(), "shop".to_owned())
            ]
        );
        assert!(args.gzip && args.no_progress);
        assert!(parse(&["--topology", "t", "--data", "d", "--header", "no separator"]).is_err());
        assert!(parse(&["--topology", "t", "--data", "d", "--batch-spans", "0"]).is_err());
        assert!(parse(&["--topology", "t", "--data", "d", "--window", "5 weeks"]).is_err());
        assert!(parse(&["--topology", "t", "--data", "d", "--start", "yesterday"]).is_err());
    }

    #[test]
    fn endpoint_appends_the_otlp_path_once() {
        let url = |t: &str| endpoint(t, "/v1/traces").map(|u| u.to_string());
        assert_eq!(
            url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(url("http://h:1/").unwrap(), "http://h:1/v1/traces");
        assert_eq!(url("http://h:1/otlp").unwrap(), "http://h:1/otlp/v1/traces");
        assert_eq!(url("http://h:1/v1/traces").unwrap(), "http://h:1/v1/traces");
        assert!(format!("{:#}", url("https://h").unwrap_err()).contains("plain HTTP"));
        assert!(url("127.0.0.1:4318").is_err());
        let sentry = endpoint("http://h:1", "/api/3/envelope/").expect("url");
        assert_eq!(sentry.as_str(), "http://h:1/api/3/envelope/");
        let zipkin = endpoint("http://h:1/api/v2/spans", "/api/v2/spans").expect("url");
        assert_eq!(zipkin.as_str(), "http://h:1/api/v2/spans");
        let grpc = endpoint("http://127.0.0.1:4317", "").expect("url");
        assert_eq!(grpc.as_str(), "http://127.0.0.1:4317/");
    }

    #[test]
    fn start_defaults_to_one_window_before_now() {
        let mut args = parse(&["--topology", HIPSTER_SHOP, "--data", "d"]).expect("parses");
        let before = Utc::now().timestamp_nanos_opt().expect("now") - 3_600_000_000_000;
        let generator = build_generator(&args).expect("builds");
        // The topology's natural load: 18440 traces per hour.
        assert_eq!(generator.traces_total(), 18_440);
        assert!(generator.start_unix_nanos() >= before);
        assert!(generator.start_unix_nanos() <= before + 60_000_000_000);

        args.start = Some(parse_start("2025-01-31T12:00:00Z").expect("time"));
        args.traces = Some(3);
        let generator = build_generator(&args).expect("builds");
        assert_eq!(generator.traces_total(), 3);
        assert_eq!(generator.start_unix_nanos(), 1_738_324_800_000_000_000);
    }

    #[tokio::test]
    async fn run_refuses_data_mode() {
        let args = parse(&["--topology", HIPSTER_SHOP, "--data", "d"]).expect("parses");
        let err = run(args).await.unwrap_err();
        assert!(err.to_string().contains("--target"), "{err}");
    }
}
