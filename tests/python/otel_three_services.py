#!/usr/bin/env python3
"""One trace across three services, sent by the real OpenTelemetry Python SDK.

    frontend ──HTTP──► checkout ──HTTP──► payment
       (W3C `traceparent` carried in the request headers)

Each service is an HTTP server on 127.0.0.1 with its own TracerProvider: its own
`service.name` resource, its own BatchSpanProcessor and its own OTLP exporter
pointed at LightTrace: OTLP/HTTP protobuf (`--endpoint`) or, with `--grpc ADDR`,
the SDK's OTLP/gRPC exporter. By default only checkout's exporter compresses its
requests (gzip); `--compression gzip` makes every exporter do so. The trace
context crosses the services only through the `traceparent` header of real HTTP
calls, exactly as it does between real processes.

Usage: otel_three_services.py --endpoint http://127.0.0.1:PORT
       otel_three_services.py --grpc 127.0.0.1:PORT [--compression gzip]

Prints one JSON line on stdout:

    {"trace_id": "<32 hex>", "spans": [{"trace_id", "span_id", "parent_span_id",
     "service", "name", "kind"}, ...]}

with every span the SDK exported, as the SDK saw it. Exits 1 if LightTrace did not
accept every export (the exporter got a non-2xx answer or no answer), so the caller
never checks SQL against data that was never acknowledged.

The span names, kinds and attributes are a contract with
crates/cli/tests/otel_python_sdk.rs, which checks them in SQL.
"""

import argparse
import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

HTTP_TIMEOUT_S = 10


class RecordingExporter(SpanExporter):
    """Wraps the OTLP exporter to remember every span and every export result."""

    def __init__(self, inner):
        self.inner = inner
        self.lock = threading.Lock()
        self.spans = []
        self.failures = 0

    def export(self, spans):
        result = self.inner.export(spans)
        with self.lock:
            self.spans.extend(spans)
            if result is not SpanExportResult.SUCCESS:
                self.failures += 1
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def otlp_exporter(target, gzip):
    """The SDK's own exporter: `target` is ("http", base URL) or ("grpc", host:port)."""
    protocol, address = target
    if protocol == "grpc":
        return GrpcSpanExporter(
            endpoint=f"http://{address}",
            insecure=True,
            timeout=HTTP_TIMEOUT_S,
            compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression,
        )
    return OTLPSpanExporter(
        endpoint=f"{address}/v1/traces",
        timeout=HTTP_TIMEOUT_S,
        compression=Compression.Gzip if gzip else Compression.NoCompression,
    )


class Service:
    def __init__(self, name, target, gzip):
        self.name = name
        self.exporter = RecordingExporter(otlp_exporter(target, gzip))
        self.provider = TracerProvider(
            resource=Resource.create(
                {
                    "service.name": name,
                    "service.version": "1.2.3",
                    "deployment.environment": "e2e-test",
                }
            )
        )
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("lighttrace.e2e", "0.1.0")
        self.server = None

    def serve(self, handle):
        """Starts an HTTP server whose POST handler runs `handle(context, body)`."""
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                # The default getter looks keys up as written: HTTP header names are
                # case-insensitive, W3C's are lowercase.
                carrier = {key.lower(): value for key, value in self.headers.items()}
                ctx = propagate.extract(carrier)
                reply = handle(service, ctx, self.path, body)
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
        self.provider.force_flush()
        self.provider.shutdown()


def call(tracer, url, path, payload, span_name, extra_attributes):
    """A CLIENT span around a real HTTP POST that carries `traceparent`."""
    with tracer.start_as_current_span(span_name, kind=SpanKind.CLIENT) as span:
        span.set_attribute("http.request.method", "POST")
        for key, value in extra_attributes.items():
            span.set_attribute(key, value)
        headers = {"content-type": "application/json"}
        propagate.inject(headers)
        request = urllib.request.Request(
            url + path, data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            span.set_attribute("http.response.status_code", response.status)
            return json.loads(response.read())


def payment_handler(service, ctx, path, body):
    with service.tracer.start_as_current_span(
        "POST /api/charge", context=ctx, kind=SpanKind.SERVER
    ) as span:
        span.set_attribute("http.route", path)
        span.set_attribute("payment.amount", 42.5)
        span.set_attribute("payment.currency", "EUR")
        span.set_attribute("payment.fee_ratio", 0.1)
        with service.tracer.start_as_current_span("charge card") as card:
            card.set_attribute("payment.attempt", 2)
            card.set_attribute("payment.fraud_scores", [0.25, 1.5])
            card.set_attribute("payment.flags", [True, False])
            card.add_event("card.declined", {"decline.code": 51})
            card.set_status(Status(StatusCode.ERROR, "card declined"))
        span.set_attribute("http.response.status_code", 200)
    return {"charged": True}


def checkout_handler(payment_url):
    def handle(service, ctx, path, body):
        with service.tracer.start_as_current_span(
            "POST /api/checkout", context=ctx, kind=SpanKind.SERVER
        ) as span:
            span.set_attribute("http.route", path)
            span.set_attribute("order.total", 42.5)
            span.set_attribute("order.item_count", 3)
            span.set_attribute("order.quantities", [1, 2, 3])
            span.set_attribute("order.gift", False)
            call(service.tracer, payment_url, "/api/charge", {"amount": 42.5},
                 "POST /api/charge", {"peer.service": "payment"})
            span.set_attribute("http.response.status_code", 200)
        return {"order": "ok"}

    return handle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint",
                       help="OTLP/HTTP: LightTrace's HTTP base URL, e.g. http://127.0.0.1:4318")
    where.add_argument("--grpc", help="OTLP/gRPC: LightTrace's --grpc address, e.g. 127.0.0.1:4317")
    parser.add_argument("--compression", choices=["checkout", "gzip"], default="checkout",
                        help="gzip only checkout's exports (default) or every service's")
    args = parser.parse_args()
    if args.grpc:
        target = ("grpc", args.grpc)
    else:
        target = ("http", args.endpoint.rstrip("/"))
    endpoint = target[1]
    all_gzip = args.compression == "gzip"

    frontend = Service("frontend", target, all_gzip)
    checkout = Service("checkout", target, True)
    payment = Service("payment", target, all_gzip)
    services = [frontend, checkout, payment]
    try:
        payment_url = payment.serve(payment_handler)
        checkout_url = checkout.serve(checkout_handler(payment_url))

        with frontend.tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.request.method", "GET")
            root.set_attribute("http.route", "/checkout")
            root.set_attribute("user.premium", True)
            root.set_attribute("cart.items", ["sku-1", "sku-2", "sku-3"])
            call(frontend.tracer, checkout_url, "/api/checkout", {"items": 3},
                 "POST /api/checkout", {"peer.service": "checkout"})
            root.set_attribute("http.response.status_code", 200)
            trace_id = format(root.get_span_context().trace_id, "032x")
    finally:
        # Flushes each BatchSpanProcessor: every span is exported (or failed) after this.
        for service in services:
            service.close()

    spans = []
    failures = 0
    for service in services:
        failures += service.exporter.failures
        for span in service.exporter.spans:
            spans.append({
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
                "service": service.name,
                "name": span.name,
                "kind": span.kind.name.lower(),
            })
    print(json.dumps({"trace_id": trace_id, "spans": spans}), flush=True)
    if failures:
        print(f"{failures} OTLP export(s) to {endpoint} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
