#!/usr/bin/env python3
"""One trace across an OpenTelemetry and a Sentry-instrumented service, and back.

    frontend (OpenTelemetry) ──traceparent──► billing (sentry-sdk) ──sentry-trace──► inventory (OpenTelemetry)

* frontend and inventory use the OpenTelemetry Python SDK and its OTLP/HTTP
  exporter (`--endpoint`), each with its own `service.name`;
* billing runs in a process of its own (`--role billing`), as a real service
  would, with the Python `sentry-sdk` and a DSN pointing at LightTrace (`--dsn`).

The trace context crosses both boundaries in real HTTP headers:

1. OpenTelemetry → Sentry: frontend sends W3C `traceparent`, which sentry-sdk
   does not read, so billing hands the trace over by hand: it rewrites
   `traceparent` (`00-TRACE-SPAN-01`) as a `sentry-trace` header (`TRACE-SPAN-1`)
   and continues from it with `sentry_sdk.continue_trace`.
2. Sentry → OpenTelemetry: sentry-sdk's own HTTP instrumentation (its stdlib
   integration) adds `sentry-trace` and `baggage` to billing's outgoing call;
   inventory reads them with sentry-sdk's OpenTelemetry propagator
   (`SentryPropagator`) next to the W3C one.

Usage: sentry_otel_cross.py --endpoint http://127.0.0.1:PORT --dsn DSN

Prints one JSON line on stdout:

    {"trace_id", "frontend": {"server_span_id", "client_span_id"},
     "inventory": {"span_id", "parent_span_id", "trace_id"},
     "billing_responses": [{"status", "items"}]}

Exits 1 if an export or an envelope was not acknowledged. The span names are a
contract with crates/cli/tests/sentry_sdks.rs.
"""

import argparse
import json
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTTP_TIMEOUT_S = 10


def run_billing(args):
    import sentry_sdk

    from sentry_transaction import RESPONSES, RecordingTransport

    sentry_sdk.init(
        dsn=args.dsn,
        traces_sample_rate=1.0,
        release="billing@1.0.0",
        environment="test",
        transport=RecordingTransport,
    )

    class Billing(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {}
            traceparent = self.headers.get("traceparent")
            if traceparent:
                _version, trace_id, span_id, flags = traceparent.split("-")
                sampled = "1" if int(flags, 16) & 1 else "0"
                headers["sentry-trace"] = f"{trace_id}-{span_id}-{sampled}"
            transaction = sentry_sdk.continue_trace(
                headers, op="http.server", name="POST /bill", source="route"
            )
            with sentry_sdk.start_transaction(transaction):
                # sentry-sdk's stdlib integration records this call as an
                # http.client span and adds sentry-trace and baggage to it.
                with urllib.request.urlopen(args.inventory, timeout=HTTP_TIMEOUT_S) as reply:
                    reply.read()
            body = b"billed"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            threading.Thread(target=self.server.shutdown, daemon=True).start()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Billing)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()
    sentry_sdk.flush(timeout=30)
    sentry_sdk.get_client().close(timeout=30)
    print(json.dumps({"responses": RESPONSES}), flush=True)


def run_main(args):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from sentry_sdk.integrations.opentelemetry.propagator import SentryPropagator

    failures = []

    def provider(service):
        exporter = OTLPSpanExporter(endpoint=f"{args.endpoint}/v1/traces")
        original_export = exporter.export

        def export(spans):
            result = original_export(spans)
            if result.name != "SUCCESS":
                failures.append(f"{service}: {result}")
            return result

        exporter.export = export
        tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        return tracer_provider

    frontend_provider = provider("frontend")
    inventory_provider = provider("inventory")
    frontend = frontend_provider.get_tracer("frontend")
    inventory = inventory_provider.get_tracer("inventory")
    w3c = TraceContextTextMapPropagator()
    incoming = CompositePropagator([w3c, SentryPropagator()])
    seen = {}

    class Inventory(BaseHTTPRequestHandler):
        def do_GET(self):
            context = incoming.extract(carrier={k.lower(): v for k, v in self.headers.items()})
            with inventory.start_as_current_span(
                "GET /stock", context=context, kind=SpanKind.SERVER
            ) as span:
                parent = span.parent
                seen["span_id"] = trace.format_span_id(span.get_span_context().span_id)
                seen["trace_id"] = trace.format_trace_id(span.get_span_context().trace_id)
                seen["parent_span_id"] = parent and trace.format_span_id(parent.span_id)
                seen["sentry_trace"] = self.headers.get("sentry-trace")
                seen["baggage"] = self.headers.get("baggage")
            body = b"in stock"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    inventory_server = ThreadingHTTPServer(("127.0.0.1", 0), Inventory)
    threading.Thread(target=inventory_server.serve_forever, daemon=True).start()
    inventory_url = f"http://127.0.0.1:{inventory_server.server_address[1]}/stock"

    billing = subprocess.Popen(
        [sys.executable, __file__, "--role", "billing", "--dsn", args.dsn,
         "--inventory", inventory_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    first = billing.stdout.readline().split()
    if first[:1] != ["listening"]:
        sys.exit(f"billing did not start: {first}")
    billing_url = f"http://127.0.0.1:{first[1]}/bill"

    with frontend.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as server_span:
        with frontend.start_as_current_span("call billing", kind=SpanKind.CLIENT) as client_span:
            headers = {}
            w3c.inject(headers)
            request = urllib.request.Request(billing_url, data=b"{}", headers=headers)
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as reply:
                reply.read()

    out, _ = billing.communicate(timeout=60)
    if billing.returncode != 0:
        sys.exit(f"billing failed ({billing.returncode}): {out}")
    billing_result = json.loads(out.strip().splitlines()[-1])
    inventory_server.shutdown()
    frontend_provider.shutdown()
    inventory_provider.shutdown()

    result = {
        "trace_id": trace.format_trace_id(server_span.get_span_context().trace_id),
        "frontend": {
            "server_span_id": trace.format_span_id(server_span.get_span_context().span_id),
            "client_span_id": trace.format_span_id(client_span.get_span_context().span_id),
        },
        "inventory": seen,
        "billing_responses": billing_result["responses"],
    }
    print(json.dumps(result))
    delivered = [r for r in result["billing_responses"] if "transaction" in r["items"]]
    if failures or not delivered or any(r["status"] != 200 for r in delivered):
        print(f"not acknowledged: {failures} {result['billing_responses']}", file=sys.stderr)
        sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["main", "billing"], default="main")
    parser.add_argument("--endpoint")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--inventory")
    args = parser.parse_args()
    if args.role == "billing":
        run_billing(args)
    else:
        if not args.endpoint:
            parser.error("--endpoint is required")
        run_main(args)


if __name__ == "__main__":
    main()
