#!/usr/bin/env python3
"""One trace across two services, sent by the real OpenTelemetry Python SDK with
its Zipkin JSON exporter (`opentelemetry-exporter-zipkin-json`), unmodified.

    frontend ──HTTP──► checkout
       (W3C `traceparent` carried in the request headers)

Each service is its own TracerProvider with its own `service.name` resource, its
own BatchSpanProcessor and its own exporter: by default the Zipkin JSON exporter
pointed at `ENDPOINT/api/v2/spans`; a service named with `--otlp SERVICE` uses
the OTLP/HTTP exporter (`ENDPOINT/v1/traces`) instead, so that one trace arrives
partly over Zipkin and partly over OTLP. The frontend's Zipkin exporter also
names its local endpoint (127.0.0.1:8080), which LightTrace keeps as the
`network.local.*` attributes.

Usage: otel_zipkin.py --endpoint http://127.0.0.1:PORT [--otlp frontend]

Prints one JSON line on stdout:

    {"trace_id": "<32 hex>", "spans": [{"trace_id", "span_id", "parent_span_id",
     "service", "name", "kind", "start_ns", "end_ns", "exporter"}, ...]}

with every span the SDK exported, as the SDK saw it. Exits 1 if LightTrace did not
accept every export (the exporter got an answer other than 200/202, or none).

The span names, kinds, attributes and events are a contract with
crates/cli/tests/otel_zipkin.rs, which checks them in SQL.
"""

import argparse
import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.zipkin.json import ZipkinExporter
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
    """Wraps the SDK's exporter to remember every span and every export result."""

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


class Service:
    def __init__(self, name, endpoint, otlp, local_endpoint=None):
        self.name = name
        if otlp:
            self.exporter_name = "otlp"
            inner = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=HTTP_TIMEOUT_S)
        else:
            self.exporter_name = "zipkin"
            ipv4, port = local_endpoint or (None, None)
            inner = ZipkinExporter(
                endpoint=f"{endpoint}/api/v2/spans",
                local_node_ipv4=ipv4,
                local_node_port=port,
                timeout=HTTP_TIMEOUT_S,
            )
        self.exporter = RecordingExporter(inner)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": name, "service.version": "1.2.3"})
        )
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("lighttrace.e2e", "0.1.0")
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
                data = json.dumps(handle(service, ctx, self.path)).encode()
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


def checkout_handler(service, ctx, path):
    tracer = service.tracer
    with tracer.start_as_current_span("POST /api/checkout", context=ctx, kind=SpanKind.SERVER) as span:
        span.set_attribute("http.route", path)
        span.set_attribute("order.total", 42.5)
        span.set_attribute("order.items", ["sku-1", "sku-2"])
        with tracer.start_as_current_span("charge card") as card:
            card.set_attribute("payment.attempt", 2)
            card.add_event("card.declined", {"decline.code": 51, "issuer": "visa"})
            card.set_status(Status(StatusCode.ERROR, "card declined"))
        with tracer.start_as_current_span("publish order", kind=SpanKind.PRODUCER) as publish:
            publish.set_attribute("messaging.system", "kafka")
    return {"order": "ok"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True,
                        help="LightTrace's HTTP base URL, e.g. http://127.0.0.1:4318")
    parser.add_argument("--otlp", action="append", default=[], choices=["frontend", "checkout"],
                        help="a service that exports over OTLP/HTTP instead of Zipkin")
    args = parser.parse_args()
    endpoint = args.endpoint.rstrip("/")

    frontend = Service("frontend", endpoint, "frontend" in args.otlp,
                       local_endpoint=("127.0.0.1", 8080))
    checkout = Service("checkout", endpoint, "checkout" in args.otlp)
    services = [frontend, checkout]
    try:
        checkout_url = checkout.serve(checkout_handler)
        tracer = frontend.tracer
        with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.route", "/checkout")
            root.set_attribute("user.premium", True)
            with tracer.start_as_current_span("POST /api/checkout", kind=SpanKind.CLIENT) as call:
                call.set_attribute("peer.service", "checkout")
                headers = {"content-type": "application/json"}
                propagate.inject(headers)
                request = urllib.request.Request(
                    checkout_url + "/api/checkout", data=b"{}", headers=headers, method="POST"
                )
                with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                    call.set_attribute("http.response.status_code", response.status)
                    response.read()
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
                "start_ns": span.start_time,
                "end_ns": span.end_time,
                "exporter": service.exporter_name,
            })
    print(json.dumps({"trace_id": trace_id, "spans": spans}), flush=True)
    if failures:
        print(f"{failures} export(s) to {endpoint} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
