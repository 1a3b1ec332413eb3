//! Sending generated requests to a server: OTLP/HTTP protobuf, OTLP/gRPC,
//! Zipkin v2 JSON or Sentry envelopes (converted by `wire`), bounded
//! concurrency, an optional span-rate limit, and retries that honour
//! `Retry-After` (gRPC: `RetryInfo`).
//!
//! One blocking thread runs the [`Generator`] (it is CPU work and sequential);
//! requests flow through a small channel to the dispatcher, which waits for the
//! rate limiter and for a free slot (at most `concurrency` requests in
//! flight; a finished one is reaped, and its outcome recorded, first), then spawns a task per request that
//! encodes it (on the blocking pool), posts it and retries it. A request counts
//! only once the server answered 2xx (gRPC: `OK`). gRPC calls share one HTTP/2
//! connection, as an OTLP exporter's do.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use chrono::Utc;
use flate2::Compression;
use flate2::write::GzEncoder;
use indicatif::{ProgressBar, ProgressStyle};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use super::{GenSummary, Generator, Protocol, wire};

/// The longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// How far the rate limiter lets a slow period be caught up with a burst.
const RATE_BURST: Duration = Duration::from_secs(1);
/// Partial-success warnings printed before going quiet.
const MAX_WARNINGS: u64 = 5;

pub(crate) struct SendOptions {
    pub(crate) protocol: Protocol,
    /// `…/v1/traces`, `…/api/v2/spans`, `…/api/{project}/envelope/`, or the
    /// gRPC server's address.
    pub(crate) endpoint: reqwest::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) gzip: bool,
    pub(crate) concurrency: usize,
    /// Spans per second.
    pub(crate) rate: Option<f64>,
    pub(crate) batch_spans: usize,
    pub(crate) max_retries: u32,
    pub(crate) timeout: Duration,
    pub(crate) progress: bool,
}

struct Batch {
    request: ExportTraceServiceRequest,
    traces: u64,
    spans: u64,
}

/// The server's answer to one acknowledged request.
struct Acknowledged {
    traces: u64,
    spans: u64,
    rejected_spans: u64,
    retries: u64,
    /// Uncompressed bytes of the request's payload in its wire format.
    payload_bytes: u64,
    warning: Option<String>,
}

/// Sends everything `generator` makes; stops at the first request that fails
/// for good (a 4xx other than 429, or retries exhausted).
pub(crate) async fn send_all(
    mut generator: Generator,
    options: SendOptions,
) -> anyhow::Result<GenSummary> {
    let started = Instant::now();
    let client = Client::new(&options)?;
    let bar = progress_bar(options.progress, generator.traces_total());
    let options = Arc::new(options);

    let (sender, mut receiver) = mpsc::channel::<Batch>(options.concurrency * 2);
    let batch_spans = options.batch_spans;
    let producer = tokio::task::spawn_blocking(move || {
        loop {
            let (traces, spans) = (generator.traces_generated(), generator.spans_generated());
            let Some(request) = generator.next_request(batch_spans) else {
                break;
            };
            let batch = Batch {
                request,
                traces: generator.traces_generated() - traces,
                spans: generator.spans_generated() - spans,
            };
            if sender.blocking_send(batch).is_err() {
                break; // the dispatcher stopped after a failure
            }
        }
    });

    let mut limiter = options.rate.map(RateLimiter::new);
    let mut tasks = JoinSet::new();
    let mut summary = GenSummary {
        traces: 0,
        spans: 0,
        requests: 0,
        elapsed: Duration::ZERO,
        retries: 0,
        rejected_spans: 0,
        payload_bytes: 0,
    };
    let mut warnings = 0;
    let mut failure = None;
    while let Some(batch) = receiver.recv().await {
        if let Some(limiter) = &mut limiter {
            let start_at = limiter.reserve(Instant::now(), batch.spans);
            tokio::time::sleep_until(start_at.into()).await;
        }
        // Reap a finished request before starting another, so that a failure
        // stops the run before anything more is sent.
        while tasks.len() >= options.concurrency {
            let done = tasks.join_next().await.expect("the set is not empty");
            if let Err(error) = record(done, &mut summary, &mut warnings, &bar, started) {
                failure = Some(error);
                break;
            }
        }
        if failure.is_some() {
            break;
        }
        let (client, options) = (client.clone(), Arc::clone(&options));
        tasks.spawn(async move { send_one(&client, &options, batch).await });
    }
    if failure.is_some() {
        tasks.abort_all();
    }
    while let Some(done) = tasks.join_next().await {
        if failure.is_some() {
            continue;
        }
        if let Err(error) = record(done, &mut summary, &mut warnings, &bar, started) {
            failure = Some(error);
            tasks.abort_all();
        }
    }
    drop(receiver);
    producer.await.context("the generator thread panicked")?;
    bar.finish_and_clear();
    if let Some(error) = failure {
        return Err(error);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn record(
    done: Result<anyhow::Result<Acknowledged>, tokio::task::JoinError>,
    summary: &mut GenSummary,
    warnings: &mut u64,
    bar: &ProgressBar,
    started: Instant,
) -> anyhow::Result<()> {
    let acknowledged = done.map_err(|e| anyhow!("a send task failed: {e}"))??;
    summary.traces += acknowledged.traces;
    summary.spans += acknowledged.spans - acknowledged.rejected_spans;
    summary.rejected_spans += acknowledged.rejected_spans;
    summary.requests += 1;
    summary.retries += acknowledged.retries;
    summary.payload_bytes += acknowledged.payload_bytes;
    if let Some(warning) = acknowledged.warning {
        *warnings += 1;
        if *warnings <= MAX_WARNINGS {
            bar.suspend(|| eprintln!("warning: {warning}"));
        }
    }
    bar.inc(acknowledged.traces);
    let seconds = started.elapsed().as_secs_f64().max(1e-3);
    bar.set_message(format!(
        "{} spans, {:.0} spans/s",
        summary.spans,
        summary.spans as f64 / seconds
    ));
    Ok(())
}

fn progress_bar(enabled: bool, traces: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} traces, {msg}")
            .expect("the template is valid")
            .progress_chars("=> ");
    ProgressBar::new(traces).with_style(style)
}

/// The connection(s) requests go out on.
#[derive(Clone)]
enum Client {
    Http(reqwest::Client),
    Grpc(TraceServiceClient<Channel>),
}

impl Client {
    fn new(options: &SendOptions) -> anyhow::Result<Client> {
        if options.protocol != Protocol::OtlpGrpc {
            let client = reqwest::Client::builder()
                .timeout(options.timeout)
                .pool_max_idle_per_host(options.concurrency)
                .build()
                .context("cannot build the HTTP client")?;
            return Ok(Client::Http(client));
        }
        let channel = Channel::from_shared(options.endpoint.to_string())
            .with_context(|| format!("--target {} is not a gRPC address", options.endpoint))?
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .connect_lazy();
        let mut client = TraceServiceClient::new(channel);
        if options.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        Ok(Client::Grpc(client))
    }
}

/// Encodes, sends and retries one request.
async fn send_one(
    client: &Client,
    options: &SendOptions,
    batch: Batch,
) -> anyhow::Result<Acknowledged> {
    match client {
        Client::Http(client) => send_http(client, options, batch).await,
        Client::Grpc(client) => send_grpc(client.clone(), options, batch).await,
    }
}

/// Calls `TraceService/Export`, retrying the codes OTLP exporters retry.
async fn send_grpc(
    mut client: TraceServiceClient<Channel>,
    options: &SendOptions,
    batch: Batch,
) -> anyhow::Result<Acknowledged> {
    let Batch {
        request,
        traces,
        spans,
    } = batch;
    let payload_bytes = request.encoded_len() as u64;
    let endpoint = &options.endpoint;
    let metadata = MetadataMap::from_headers(options.headers.clone());
    let mut retries = 0u32;
    loop {
        let mut call = tonic::Request::new(request.clone());
        *call.metadata_mut() = metadata.clone();
        let status = match client.export(call).await {
            Ok(response) => {
                let (rejected_spans, message) = match response.into_inner().partial_success {
                    Some(partial) => (partial.rejected_spans.max(0) as u64, partial.error_message),
                    None => (0, String::new()),
                };
                let warning = (rejected_spans > 0 || !message.is_empty())
                    .then(|| format!("the server rejected {rejected_spans} spans: {message}"));
                return Ok(Acknowledged {
                    traces,
                    spans,
                    rejected_spans: rejected_spans.min(spans),
                    retries: u64::from(retries),
                    payload_bytes,
                    warning,
                });
            }
            Err(status) => status,
        };
        let delay = status
            .get_details_retry_info()
            .and_then(|info| info.retry_delay);
        // OTLP/gRPC: these codes are retryable, RESOURCE_EXHAUSTED only when
        // the server says when to retry. A refused connection is UNAVAILABLE.
        let retryable = matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
                | tonic::Code::OutOfRange
                | tonic::Code::DataLoss
        ) || (status.code() == tonic::Code::ResourceExhausted && delay.is_some());
        if !retryable || retries >= options.max_retries {
            let after = if retryable {
                format!(" after {retries} retries")
            } else {
                String::new()
            };
            bail!(
                "{endpoint} answered {:?}{after}: {}",
                status.code(),
                status.message()
            );
        }
        retries += 1;
        let wait = delay.unwrap_or_else(|| backoff(retries - 1));
        tokio::time::sleep(wait.min(MAX_RETRY_WAIT)).await;
    }
}

/// Encodes, posts and retries one request over HTTP.
async fn send_http(
    client: &reqwest::Client,
    options: &SendOptions,
    batch: Batch,
) -> anyhow::Result<Acknowledged> {
    let Batch {
        request,
        traces,
        spans,
    } = batch;
    let (gzip, protocol) = (options.gzip, options.protocol);
    let (body, payload_bytes) =
        tokio::task::spawn_blocking(move || encode(&request, protocol, gzip))
            .await
            .context("the encoding task panicked")??;
    let content_type = match protocol {
        Protocol::OtlpHttp | Protocol::OtlpGrpc => "application/x-protobuf",
        Protocol::Zipkin => "application/json",
        Protocol::Sentry => "application/x-sentry-envelope",
    };
    let endpoint = &options.endpoint;
    let mut retries = 0u32;
    loop {
        let mut post = client
            .post(endpoint.clone())
            .header(CONTENT_TYPE, content_type);
        if gzip {
            post = post.header(CONTENT_ENCODING, "gzip");
        }
        let outcome = post
            .headers(options.headers.clone())
            .body(body.clone())
            .send()
            .await;
        let retry_in = match outcome {
            Ok(response) if response.status().is_success() => {
                let (rejected_spans, warning) = if protocol == Protocol::OtlpHttp {
                    partial_success(response).await
                } else {
                    // Zipkin answers 202, Sentry an event id: nothing to count.
                    let _ = response.bytes().await;
                    (0, None)
                };
                return Ok(Acknowledged {
                    traces,
                    spans,
                    rejected_spans: rejected_spans.min(spans),
                    retries: u64::from(retries),
                    payload_bytes,
                    warning,
                });
            }
            Ok(response) => {
                let status = response.status();
                let retryable = matches!(
                    status,
                    StatusCode::TOO_MANY_REQUESTS
                        | StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                );
                if !retryable || retries >= options.max_retries {
                    let wait = retry_after(response.headers());
                    let message = server_message(response).await;
                    let after = if retryable {
                        format!(" after {retries} retries")
                    } else {
                        String::new()
                    };
                    let hint = match (retryable, wait) {
                        (true, Some(wait)) => format!(" (Retry-After {}s)", wait.as_secs()),
                        _ => String::new(),
                    };
                    bail!("{endpoint} answered {status}{after}{hint}: {message}");
                }
                retry_after(response.headers()).unwrap_or_else(|| backoff(retries))
            }
            Err(error) if retries < options.max_retries && is_transient(&error) => backoff(retries),
            Err(error) => {
                let after = if retries > 0 {
                    format!(" after {retries} retries")
                } else {
                    String::new()
                };
                return Err(anyhow!(error).context(format!("cannot send to {endpoint}{after}")));
            }
        };
        retries += 1;
        tokio::time::sleep(retry_in.min(MAX_RETRY_WAIT)).await;
    }
}

/// The request's body in `protocol`'s format, gzipped when asked, and the
/// payload's size before compression.
fn encode(
    request: &ExportTraceServiceRequest,
    protocol: Protocol,
    gzip: bool,
) -> anyhow::Result<(Vec<u8>, u64)> {
    let bytes = match protocol {
        Protocol::OtlpHttp | Protocol::OtlpGrpc => request.encode_to_vec(),
        Protocol::Zipkin => wire::zipkin_json(request),
        Protocol::Sentry => wire::sentry_envelope(request),
    };
    let payload_bytes = bytes.len() as u64;
    if !gzip {
        return Ok((bytes, payload_bytes));
    }
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::fast());
    encoder.write_all(&bytes).context("gzip failed")?;
    Ok((encoder.finish().context("gzip failed")?, payload_bytes))
}

fn is_transient(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request()
}

/// Exponential backoff with jitter: about 100 ms, 200 ms, … up to 10 s.
fn backoff(retries: u32) -> Duration {
    let base = 0.1 * 2f64.powi(retries.min(7) as i32);
    Duration::from_secs_f64(base.min(10.0) * (0.5 + rand::random::<f64>()))
}

/// `Retry-After` as delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_WAIT.as_secs_f64())));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The message of an error response: `{"error": "…"}` (LightTrace), an OTLP
/// `google.rpc.Status`, or the body's text.
async fn server_message(response: reqwest::Response) -> String {
    let protobuf = content_type_is(&response, "protobuf");
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => return format!("(could not read the response body: {error})"),
    };
    if protobuf
        && let Ok(status) = RpcStatus::decode(body.as_ref())
        && !status.message.is_empty()
    {
        return status.message;
    }
    let text = String::from_utf8_lossy(&body);
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
        for key in ["error", "message"] {
            if let Some(message) = json.get(key).and_then(|m| m.as_str()) {
                return message.to_owned();
            }
        }
    }
    let text = text.trim();
    if text.is_empty() {
        return "(empty response body)".to_owned();
    }
    text.chars().take(1000).collect()
}

/// Spans the server reported as rejected in an OTLP partial success, and its
/// message.
async fn partial_success(response: reqwest::Response) -> (u64, Option<String>) {
    let json = content_type_is(&response, "json");
    let Ok(body) = response.bytes().await else {
        return (0, None);
    };
    let (rejected, message) = if json {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return (0, None);
        };
        let partial = &value["partialSuccess"];
        let rejected = match &partial["rejectedSpans"] {
            serde_json::Value::String(s) => s.parse().unwrap_or(0),
            other => other.as_u64().unwrap_or(0),
        };
        let message = partial["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (rejected, message)
    } else {
        match ExportTraceServiceResponse::decode(body.as_ref()) {
            Ok(ExportTraceServiceResponse {
                partial_success: Some(partial),
            }) => (partial.rejected_spans.max(0) as u64, partial.error_message),
            _ => return (0, None),
        }
    };
    let warning = (rejected > 0 || !message.is_empty())
        .then(|| format!("the server rejected {rejected} spans: {message}"));
    (rejected, warning)
}

fn content_type_is(response: &reqwest::Response, kind: &str) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(kind))
}

/// `google.rpc.Status`, the body of OTLP/HTTP protobuf error responses.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Spaces requests so that spans flow at `rate` per second on average
/// (GCRA): each request may start once the spans before it have "drained";
/// after a slow period, at most [`RATE_BURST`] of it is caught up at once.
struct RateLimiter {
    seconds_per_span: f64,
    next_start: Option<Instant>,
}

impl RateLimiter {
    fn new(spans_per_second: f64) -> Self {
        RateLimiter {
            seconds_per_span: 1.0 / spans_per_second,
            next_start: None,
        }
    }

    /// When a request of `spans` spans may start, given that it is `now`.
    fn reserve(&mut self, now: Instant, spans: u64) -> Instant {
        let earliest = now.checked_sub(RATE_BURST).unwrap_or(now);
        let start = self.next_start.map_or(now, |next| next.max(earliest));
        self.next_start =
            Some(start + Duration::from_secs_f64(spans as f64 * self.seconds_per_span));
        start
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use flate2::read::GzDecoder;
    use std::io::Read;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::super::{GenArgs, HIPSTER_SHOP, Protocol, run};
    use super::*;

    /// What the fake server answers: status, extra headers, body.
    type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

    #[derive(Default)]
    struct Received {
        /// Decoded bodies of the requests answered 2xx.
        accepted: Vec<ExportTraceServiceRequest>,
        authorization: Vec<String>,
        attempts: usize,
    }

    /// A minimal HTTP/1.1 server: answers from `script` in order, then
    /// `otherwise`; records what it accepted.
    async fn fake_server(script: Vec<Answer>, otherwise: Answer) -> (String, Arc<Mutex<Received>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Received::default()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let state = Arc::clone(&received);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (state, script) = (Arc::clone(&state), Arc::clone(&script));
                let otherwise = otherwise.clone();
                tokio::spawn(async move {
                    let mut reader = BufReader::new(socket);
                    loop {
                        let mut headers = Vec::new();
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            headers.push(line.trim_end().to_ascii_lowercase());
                        }
                        let header = |name: &str| {
                            headers.iter().find_map(|h| {
                                h.strip_prefix(&format!("{name}: ")).map(str::to_owned)
                            })
                        };
                        let length: usize = header("content-length")
                            .and_then(|l| l.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).await.expect("body");
                        if header("content-encoding").as_deref() == Some("gzip") {
                            let mut plain = Vec::new();
                            GzDecoder::new(&body[..])
                                .read_to_end(&mut plain)
                                .expect("gzip");
                            body = plain;
                        }
                        let (status, extra, text) = script
                            .lock()
                            .expect("lock")
                            .pop_front()
                            .unwrap_or(otherwise.clone());
                        {
                            let mut state = state.lock().expect("lock");
                            state.attempts += 1;
                            if let Some(auth) = header("authorization") {
                                state.authorization.push(auth);
                            }
                            if (200..300).contains(&status) {
                                let request = ExportTraceServiceRequest::decode(&body[..])
                                    .expect("valid OTLP protobuf");
                                state.accepted.push(request);
                            }
                        }
                        let mut response = format!(
                            "HTTP/1.1 {status} Whatever\r\ncontent-length: {}\r\n",
                            text.len()
                        );
                        for (name, value) in extra {
                            response.push_str(&format!("{name}: {value}\r\n"));
                        }
                        response.push_str("\r\n");
                        response.push_str(text);
                        let socket = reader.get_mut();
                        if socket.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{address}"), received)
    }

    fn args(target: &str, traces: u64) -> GenArgs {
        GenArgs {
            topology: HIPSTER_SHOP.into(),
            traces: Some(traces),
            seed: 3,
            target: Some(target.to_owned()),
            protocol: Protocol::OtlpHttp,
            sentry_project: 1,
            data: None,
            rate: None,
            start: None,
            window: Duration::from_secs(3600),
            batch_spans: 100,
            concurrency: 3,
            headers: vec![("Authorization".into(), "Bearer secret".into())],
            gzip: true,
            max_retries: 3,
            timeout: Duration::from_secs(10),
            no_progress: true,
            json: false,
        }
    }

    fn span_count(requests: &[ExportTraceServiceRequest]) -> u64 {
        requests
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overload_is_retried_and_only_acknowledged_requests_count() {
        let (target, received) = fake_server(
            vec![
                (429, vec![("retry-after", "0")], ""),
                (503, vec![("retry-after", "0")], "{\"error\": \"busy\"}"),
            ],
            (200, vec![], ""),
        )
        .await;
        let summary = run(args(&target, 200)).await.expect("run succeeds");
        let received = received.lock().expect("lock");
        assert_eq!(summary.retries, 2);
        assert_eq!(summary.traces, 200);
        assert_eq!(summary.requests, received.accepted.len() as u64);
        assert_eq!(summary.spans, span_count(&received.accepted));
        assert_eq!(received.attempts, received.accepted.len() + 2);
        assert_eq!(summary.rejected_spans, 0);
        assert!(received.authorization.iter().all(|a| a == "bearer secret"));
        assert!(summary.to_string().starts_with(&format!(
            "sent 200 traces, {} spans in {} requests in ",
            summary.spans, summary.requests
        )));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_error_fails_with_the_servers_message() {
        let (target, received) = fake_server(
            vec![],
            (
                400,
                vec![("content-type", "application/json")],
                "{\"error\": \"span 3 has an empty trace_id\"}",
            ),
        )
        .await;
        let error = run(args(&target, 50)).await.expect_err("400 fails the run");
        let message = format!("{error:#}");
        assert!(message.contains("400"), "{message}");
        assert!(
            message.contains("span 3 has an empty trace_id"),
            "{message}"
        );
        assert!(received.lock().expect("lock").accepted.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endless_overload_gives_up_after_the_retry_limit() {
        let (target, received) =
            fake_server(vec![], (503, vec![("retry-after", "0")], "overloaded")).await;
        let mut args = args(&target, 10);
        args.concurrency = 1;
        args.max_retries = 2;
        let error = run(args).await.expect_err("gives up");
        let message = format!("{error:#}");
        assert!(
            message.contains("503") && message.contains("after 2 retries"),
            "{message}"
        );
        assert!(message.contains("overloaded"), "{message}");
        assert_eq!(received.lock().expect("lock").attempts, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partial_success_is_reported() {
        let (target, _received) = fake_server(
            vec![],
            (
                200,
                vec![("content-type", "application/json")],
                "{\"partialSuccess\": {\"rejectedSpans\": \"2\", \"errorMessage\": \"too old\"}}",
            ),
        )
        .await;
        let summary = run(args(&target, 20)).await.expect("run succeeds");
        assert_eq!(summary.rejected_spans, 2 * summary.requests);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grpc_without_a_server_is_retried_then_fails() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut args = args(&format!("http://127.0.0.1:{port}"), 5);
        args.protocol = Protocol::OtlpGrpc;
        args.concurrency = 1;
        args.max_retries = 1;
        let error = run(args).await.expect_err("nothing listens");
        let message = format!("{error:#}");
        assert!(
            message.contains("Unavailable") && message.contains("after 1 retries"),
            "{message}"
        );
    }

    #[test]
    fn rate_limiter_spaces_requests_by_their_spans() {
        let mut limiter = RateLimiter::new(1000.0);
        let t0 = Instant::now();
        assert_eq!(limiter.reserve(t0, 500), t0);
        assert_eq!(limiter.reserve(t0, 500), t0 + Duration::from_millis(500));
        assert_eq!(limiter.reserve(t0, 100), t0 + Duration::from_millis(1000));
        // After a long pause, only one second of backlog is caught up.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limiter.reserve(later, 100), later - RATE_BURST);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "3".parse().expect("value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(RETRY_AFTER, "100000".parse().expect("value"));
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_WAIT));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("value"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }
}
