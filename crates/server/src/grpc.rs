//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export` and
//! `opentelemetry.proto.collector.logs.v1.LogsService/Export`.
//!
//! The same receivers as `POST /v1/traces` and `POST /v1/logs` (`otlp.rs`),
//! behind gRPC framing, on one port. A call goes through these steps, each of
//! which may answer early:
//!
//! 1. The path picks the signal (traces or logs); any other method is
//!    `UNIMPLEMENTED`.
//! 2. An ingest permit is taken without waiting, from the pool the HTTP receiver
//!    uses too, else `UNAVAILABLE`.
//! 3. The HTTP/2 body is read under the HTTP receiver's limits: `max_body_bytes`
//!    on the wire (`RESOURCE_EXHAUSTED`) and `body_read_timeout` (`UNAVAILABLE`).
//! 4. tonic unframes the message and inflates it when `grpc-encoding: gzip`, with
//!    `max_decompressed_bytes` enforced while inflating (`RESOURCE_EXHAUSTED`).
//!    [`RawRequestCodec`] hands over the message's bytes undecoded.
//! 5. Those bytes take the HTTP receiver's path from there (`ingest_otlp`):
//!    `lighttrace_ingest::decode_otlp_traces` (`decode_otlp_logs`) as protobuf,
//!    `INVALID_ARGUMENT` when every span (log record) is invalid, then
//!    `Lake::write_logged` with the same WAL record (replay cannot tell which
//!    receiver logged it), and only then `OK`, with `partial_success` counting
//!    the invalid spans (log records).
//!
//! Every `UNAVAILABLE` carries a `google.rpc.RetryInfo` detail whose delay is the
//! overload's `Retry-After`, which OTLP exporters honour. Errors are mapped to
//! gRPC codes in one place, `From<ApiError> for tonic::Status` (`error.rs`).
//!
//! tonic's own framing errors are not all what OTLP asks for, so they are
//! rewritten (see [`fix_framing_status`]): a frame over the size limit is
//! `OUT_OF_RANGE` in tonic, a code OTLP exporters retry forever, and becomes
//! `RESOURCE_EXHAUSTED`; a broken gzip stream or frame header is `INTERNAL` in
//! tonic and becomes `INVALID_ARGUMENT`.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response};
use bytes::{Buf, Bytes};
use futures::FutureExt;
use futures::future::BoxFuture;
use lighttrace_ingest::{OtlpEncoding, logs_response, traces_response};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, UnaryService};
use tonic::{Code, Status};

use crate::body::{BodyLimits, content_length, read_body};
use crate::error::ApiError;
use crate::otlp::{Signal, ingest_otlp};
use crate::{DEFAULT_PROJECT, Shared};

/// The gRPC service name of the OTLP trace receiver.
pub const TRACE_SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";

/// The gRPC service name of the OTLP logs receiver.
pub const LOGS_SERVICE_NAME: &str = "opentelemetry.proto.collector.logs.v1.LogsService";

/// The one method of each service.
const TRACE_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const LOGS_EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// OTLP/gRPC `TraceService` and `LogsService`, as one tower service over
/// HTTP/2 requests (what `tonic::transport::Server` runs). Built by
/// [`endpoints`](crate::endpoints), which shares its ingest limits with the
/// HTTP receivers; served by [`serve`](crate::serve).
#[derive(Clone)]
pub struct OtlpGrpcService {
    shared: Shared,
}

impl OtlpGrpcService {
    pub(crate) fn new(shared: Shared) -> Self {
        OtlpGrpcService { shared }
    }
}

impl<B> tower::Service<Request<B>> for OtlpGrpcService
where
    B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            // A panic answers INTERNAL, as the HTTP routes answer 500, instead of
            // resetting the connection.
            let answer = std::panic::AssertUnwindSafe(export(shared, request))
                .catch_unwind()
                .await;
            Ok(answer.unwrap_or_else(|panic| {
                let detail = crate::panic_message(panic.as_ref());
                tracing::error!(panic = detail, "OTLP/gRPC handler panicked");
                Status::internal(format!("request handler panicked: {detail}")).into_http()
            }))
        })
    }
}

/// Serves OTLP/gRPC alone on `listener` until `shutdown` completes; then stops
/// accepting connections and waits for the calls in flight. [`serve`](crate::serve)
/// runs this beside the HTTP server.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    service: OtlpGrpcService,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(service, incoming, shutdown)
        .await
        .map_err(std::io::Error::other)
}

async fn export<B>(shared: Shared, request: Request<B>) -> Response<tonic::body::Body>
where
    B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let signal = match request.uri().path() {
        TRACE_EXPORT_PATH => Signal::Traces,
        LOGS_EXPORT_PATH => Signal::Logs,
        path => {
            let shown: String = path.chars().take(200).collect();
            return Status::unimplemented(format!(
                "no method {shown}; this server has {TRACE_EXPORT_PATH} and {LOGS_EXPORT_PATH}"
            ))
            .into_http();
        }
    };
    // The key comes as metadata, which arrives as HTTP/2 headers.
    let project = match shared.state.config.projects.caller(request.headers()) {
        Ok(caller) => caller.project_or(DEFAULT_PROJECT).to_owned(),
        Err(err) => return Status::from(ApiError::from(err)).into_http(),
    };
    // Held until the records are written: it bounds the memory held by requests.
    let _permit = match shared.ingest_permit() {
        Ok(permit) => permit,
        Err(err) => return Status::from(err).into_http(),
    };
    let config = &shared.state.config;
    let (parts, body) = request.into_parts();
    let body = match read_body(
        Body::new(body),
        content_length(&parts.headers),
        BodyLimits::ingest(config),
    )
    .await
    {
        Ok(body) => body,
        Err(err) => return Status::from(err).into_http(),
    };

    let reached = Arc::new(AtomicBool::new(false));
    let request = Request::from_parts(parts, Body::from(body));
    let response = match signal {
        Signal::Traces => {
            let method = ExportMethod {
                shared: shared.clone(),
                project: project.clone(),
                reached: reached.clone(),
                signal,
                respond: traces_response,
            };
            grpc::<ExportTraceServiceResponse>(config.max_decompressed_bytes)
                .unary(method, request)
                .await
        }
        Signal::Logs => {
            let method = ExportMethod {
                shared: shared.clone(),
                project: project.clone(),
                reached: reached.clone(),
                signal,
                respond: logs_response,
            };
            grpc::<ExportLogsServiceResponse>(config.max_decompressed_bytes)
                .unary(method, request)
                .await
        }
    };
    if reached.load(Ordering::Acquire) {
        response
    } else {
        fix_framing_status(response)
    }
}

/// tonic's unary call handling, with gzip and the decompressed size limit.
fn grpc<R: Message + Send + 'static>(max_decompressed: usize) -> Grpc<RawRequestCodec<R>> {
    Grpc::new(RawRequestCodec::default())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_decompressed)
}

/// Rewrites the status of a call that tonic answered before [`ExportMethod`] ran
/// (a framing, size or compression error) to the code OTLP asks for.
fn fix_framing_status(mut response: Response<tonic::body::Body>) -> Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let code = headers
        .get(Status::GRPC_STATUS)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(Code::from_i32);
    let fixed = match code {
        // A frame over `max_decoding_message_size`: not worth retrying.
        Some(Code::OutOfRange) => Code::ResourceExhausted,
        // A bad compressed-flag, a broken gzip stream, no message at all.
        Some(Code::Internal) => Code::InvalidArgument,
        _ => return response,
    };
    headers.insert(Status::GRPC_STATUS, HeaderValue::from(fixed as i32));
    response
}

/// The `Export` method proper: the message's bytes go to the receivers' common
/// path, [`ingest_otlp`]; `respond` builds the response message.
struct ExportMethod<R> {
    shared: Shared,
    /// The caller's project.
    project: String,
    /// Set once tonic has unframed the request and called the method.
    reached: Arc<AtomicBool>,
    signal: Signal,
    respond: fn(usize, Option<&str>) -> R,
}

impl<R: Send + 'static> UnaryService<Bytes> for ExportMethod<R> {
    type Response = R;
    type Future = BoxFuture<'static, Result<tonic::Response<R>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        self.reached.store(true, Ordering::Release);
        let (shared, signal, respond) = (self.shared.clone(), self.signal, self.respond);
        let project = self.project.clone();
        Box::pin(async move {
            let message = request.into_inner();
            let ingested = ingest_otlp(
                &shared,
                signal,
                message,
                None,
                OtlpEncoding::Protobuf,
                &project,
            )
            .await?;
            Ok(tonic::Response::new(respond(
                ingested.rejected,
                ingested.rejection_message.as_deref(),
            )))
        })
    }
}

/// A tonic codec that leaves the request undecoded (its bytes go to
/// `lighttrace_ingest`'s borrowing decoder, and to the WAL as they are) and
/// encodes the response `R` with prost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRequestCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for RawRequestCodec<R> {
    fn default() -> Self {
        RawRequestCodec(PhantomData)
    }
}

impl<R: Message + Send + 'static> Codec for RawRequestCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = ResponseEncoder<R>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> ResponseEncoder<R> {
        ResponseEncoder(PhantomData)
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Yields a message's bytes; tonic has unframed (and inflated) them already.
#[derive(Debug)]
pub(crate) struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // Splits tonic's buffer: no copy.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Writes the response message with prost.
#[derive(Debug)]
pub(crate) struct ResponseEncoder<R>(PhantomData<fn() -> R>);

impl<R: Message> Encoder for ResponseEncoder<R> {
    type Item = R;
    type Error = Status;

    fn encode(&mut self, item: R, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|err| Status::internal(format!("cannot encode the response: {err}")))
    }
}
