#!/usr/bin/env python3
"""Log lines of one request across two services, sent by the real OpenTelemetry
Python SDK: Python `logging` through the SDK's `LoggingHandler`, exported with
its OTLP log exporter, inside the spans of one trace.

    frontend ──HTTP──► payment
       (W3C `traceparent` carried in the request headers)

Each service is its own process-like unit: its own `service.name` resource, its
own TracerProvider and LoggerProvider with batch processors, and its own OTLP
span and log exporters pointed at LightTrace: OTLP/HTTP protobuf (`--endpoint`)
or, with `--grpc ADDR`, the SDK's OTLP/gRPC exporters. By default only
payment's exporters compress (gzip); `--compression gzip` makes every exporter
do so. The log records get their trace and span ids from the span that is
active when `logging` is called, as in any instrumented application.

Usage: otel_logs.py --endpoint http://127.0.0.1:PORT
       otel_logs.py --grpc 127.0.0.1:PORT [--compression gzip]

Prints one JSON line on stdout:

    {"trace_id": "<32 hex>",
     "spans": [{"service", "name", "span_id"}, ...],
     "logs": [{"service", "body", "severity_number", "severity_text",
               "trace_id", "span_id", "attributes"}, ...]}

with every span and log record the SDK exported, as the SDK saw them (ids as
lowercase hex, null when the record has none). Exits 1 if LightTrace did not
accept every export, so the caller never checks SQL against data that was never
acknowledged.

The log lines (bodies, levels, attributes, the span each is emitted in) are a
contract with crates/cli/tests/otel_python_logs.rs, which checks them in SQL.
"""

import argparse
import json
import logging
import sys
import threading
import urllib.request
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

HTTP_TIMEOUT_S = 10

# The SDK's LoggingHandler warns that a handler in opentelemetry-instrumentation-
# logging will replace it; it is the SDK's own, and what applications run today.
warnings.filterwarnings("ignore", category=DeprecationWarning)


class Recording:
    """Wraps an exporter to remember what it exported and whether it failed."""

    def __init__(self, inner, success):
        self.inner = inner
        self.success = success
        self.lock = threading.Lock()
        self.exported = []
        self.failures = 0

    def export(self, batch):
        result = self.inner.export(batch)
        with self.lock:
            self.exported.extend(batch)
            if result is not self.success:
                self.failures += 1
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


class RecordingSpanExporter(Recording, SpanExporter):
    def __init__(self, inner):
        Recording.__init__(self, inner, SpanExportResult.SUCCESS)


class RecordingLogExporter(Recording, LogRecordExporter):
    def __init__(self, inner):
        Recording.__init__(self, inner, LogRecordExportResult.SUCCESS)


def exporters(target, gzip):
    """The SDK's own span and log exporters: `target` is ("http", base URL) or
    ("grpc", host:port)."""
    protocol, address = target
    if protocol == "grpc":
        compression = grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression
        options = dict(endpoint=f"http://{address}", insecure=True, timeout=HTTP_TIMEOUT_S,
                       compression=compression)
        return GrpcSpanExporter(**options), GrpcLogExporter(**options)
    compression = Compression.Gzip if gzip else Compression.NoCompression
    return (
        OTLPSpanExporter(endpoint=f"{address}/v1/traces", timeout=HTTP_TIMEOUT_S,
                         compression=compression),
        OTLPLogExporter(endpoint=f"{address}/v1/logs", timeout=HTTP_TIMEOUT_S,
                        compression=compression),
    )


class Service:
    def __init__(self, name, target, gzip):
        self.name = name
        resource = Resource.create(
            {"service.name": name, "service.version": "2.0.1", "deployment.environment": "e2e"}
        )
        span_exporter, log_exporter = exporters(target, gzip)
        self.span_exporter = RecordingSpanExporter(span_exporter)
        self.log_exporter = RecordingLogExporter(log_exporter)
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.span_exporter))
        self.tracer = self.tracer_provider.get_tracer("lighttrace.e2e", "0.1.0")
        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(self.log_exporter))
        # A plain `logging` logger, as applications have, with the SDK's handler.
        self.logger = logging.getLogger(f"lighttrace.e2e.{name}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(LoggingHandler(level=logging.INFO,
                                              logger_provider=self.logger_provider))
        self.server = None

    def serve(self, handle):
        """Starts an HTTP server whose POST handler runs `handle(service, context, path)`."""
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                self.rfile.read(length)
                carrier = {key.lower(): value for key, value in self.headers.items()}
                ctx = propagate.extract(carrier)
                reply = handle(service, ctx, self.path)
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for provider in (self.tracer_provider, self.logger_provider):
            provider.force_flush()
            provider.shutdown()


def payment_handler(service, ctx, path):
    log = service.logger
    with service.tracer.start_as_current_span("POST /api/charge", context=ctx,
                                              kind=SpanKind.SERVER) as span:
        span.set_attribute("http.route", path)
        # A mapping as the message: the SDK sends it as a kvlist body.
        log.info({"event": "charge", "amount": 42.5})
        with service.tracer.start_as_current_span("charge card") as card:
            log.error("card declined", extra={"decline.code": 51, "card.tags": ["visa", "debit"]})
            try:
                raise ValueError("insufficient funds")
            except ValueError:
                log.exception("charge failed")
            card.set_status(Status(StatusCode.ERROR, "card declined"))
    return {"charged": False}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint",
                       help="OTLP/HTTP: LightTrace's HTTP base URL, e.g. http://127.0.0.1:4318")
    where.add_argument("--grpc", help="OTLP/gRPC: LightTrace's --grpc address, e.g. 127.0.0.1:4317")
    parser.add_argument("--compression", choices=["payment", "gzip"], default="payment",
                        help="gzip only payment's exports (default) or every service's")
    args = parser.parse_args()
    target = ("grpc", args.grpc) if args.grpc else ("http", args.endpoint.rstrip("/"))
    all_gzip = args.compression == "gzip"

    frontend = Service("frontend", target, all_gzip)
    payment = Service("payment", target, True)
    services = [frontend, payment]
    try:
        payment_url = payment.serve(payment_handler)
        # Outside any span: a log line that belongs to no trace.
        frontend.logger.info("service ready")
        with frontend.tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
            frontend.logger.info("checkout started for %s", "ada",
                                 extra={"cart.items": 3, "user.premium": True})
            with frontend.tracer.start_as_current_span("POST /api/charge",
                                                       kind=SpanKind.CLIENT) as call:
                headers = {"content-type": "application/json"}
                propagate.inject(headers)
                request = urllib.request.Request(payment_url + "/api/charge", data=b"{}",
                                                 headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                    call.set_attribute("http.response.status_code", response.status)
                    response.read()
                frontend.logger.warning("payment slow", extra={"latency.ratio": 1.5})
            trace_id = format(root.get_span_context().trace_id, "032x")
    finally:
        # Flushes every batch processor: everything is exported (or failed) after this.
        for service in services:
            service.close()

    def hex_or_none(value, width):
        return format(value, f"0{width}x") if value else None

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    spans, logs, failures = [], [], 0
    for service in services:
        failures += service.span_exporter.failures + service.log_exporter.failures
        for span in service.span_exporter.exported:
            spans.append({
                "service": service.name,
                "name": span.name,
                "span_id": format(span.context.span_id, "016x"),
            })
        for readable in service.log_exporter.exported:
            record = readable.log_record
            logs.append({
                "service": service.name,
                "body": plain(record.body),
                "severity_number": record.severity_number.value,
                "severity_text": record.severity_text,
                "trace_id": hex_or_none(record.trace_id, 32),
                "span_id": hex_or_none(record.span_id, 16),
                "attributes": plain(dict(record.attributes or {})),
            })
    print(json.dumps({"trace_id": trace_id, "spans": spans, "logs": logs}), flush=True)
    if failures:
        print(f"{failures} OTLP export(s) to {target[1]} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
