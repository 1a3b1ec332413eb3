#!/usr/bin/env python3
"""One transaction with nested child spans, sent by the real Python sentry-sdk.

The SDK is initialised with a DSN pointing at LightTrace
(`http://public@127.0.0.1:PORT/42`) and sends with its own HTTP transport,
unmodified: the transport class below only records each answer's status.

    POST /checkout            op http.server  (the transaction)
    ├── SELECT * FROM carts   op db           (data db.system, tag db.table)
    │   └── cart:42           op cache.get
    ├── POST /charge          op http.client  status internal_error
    └── serialize             op serialize    (no description: named by its op)

Usage: sentry_transaction.py --dsn DSN [--compression br|gzip|none]
                             [--capture-exception]

`--compression` picks the SDK's transport compression (its default is br when
the `brotli` package is installed, as in tests/requirements.txt).
`--capture-exception` also captures a ValueError inside the transaction: the
SDK sends it as an `event` item in an envelope of its own.

Prints one JSON line on stdout:

    {"trace_id", "transaction_span_id", "spans": [{"span_id", "parent_span_id",
     "op", "name"}], "responses": [{"status", "items": [item types]}]}

Exits 1 if an envelope holding a transaction was not answered 200, so the
caller never checks SQL against data that was never acknowledged.

The names, ops, tags and data are a contract with
crates/cli/tests/sentry_sdks.rs, which checks them in SQL.
"""

import argparse
import json
import sys
import threading

import sentry_sdk
from sentry_sdk.transport import HttpTransport

RESPONSES = []
LOCK = threading.Lock()


class RecordingTransport(HttpTransport):
    """The SDK's own HTTP transport; remembers the status of every answer."""

    def _handle_response(self, response, envelope):
        items = [item.type for item in envelope.items] if envelope else []
        with LOCK:
            RESPONSES.append({"status": response.status, "items": items})
        return super()._handle_response(response, envelope)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--compression", choices=["br", "gzip", "none"], default="br")
    parser.add_argument("--capture-exception", action="store_true")
    args = parser.parse_args()

    experiments = {}
    if args.compression == "none":
        experiments["transport_compression_level"] = 0
    else:
        experiments["transport_compression_algo"] = args.compression

    sentry_sdk.init(
        dsn=args.dsn,
        traces_sample_rate=1.0,
        release="shop@1.2.3",
        environment="test",
        transport=RecordingTransport,
        _experiments=experiments,
    )

    spans = []

    def record(span):
        spans.append(
            {
                "span_id": span.span_id,
                "parent_span_id": span.parent_span_id,
                "op": span.op,
                "name": span.description,
            }
        )

    with sentry_sdk.start_transaction(
        op="http.server", name="POST /checkout", source="route"
    ) as transaction:
        transaction.set_tag("customer", "acme")
        transaction.set_data("http.request.method", "POST")
        with sentry_sdk.start_span(op="db", name="SELECT * FROM carts") as db:
            db.set_data("db.system", "postgresql")
            db.set_data("db.rows", 3)
            db.set_tag("db.table", "carts")
            with sentry_sdk.start_span(op="cache.get", name="cart:42") as cache:
                record(cache)
            record(db)
        with sentry_sdk.start_span(op="http.client", name="POST /charge") as charge:
            charge.set_status("internal_error")
            record(charge)
        with sentry_sdk.start_span(op="serialize") as serialize:
            record(serialize)
        if args.capture_exception:
            try:
                raise ValueError("card declined")
            except ValueError as error:
                sentry_sdk.capture_exception(error)

    sentry_sdk.flush(timeout=30)
    client = sentry_sdk.get_client()
    client.close(timeout=30)

    print(
        json.dumps(
            {
                "trace_id": transaction.trace_id,
                "transaction_span_id": transaction.span_id,
                "spans": spans,
                "responses": RESPONSES,
            }
        )
    )
    delivered = [r for r in RESPONSES if "transaction" in r["items"]]
    if not delivered or any(r["status"] != 200 for r in delivered):
        print(f"transaction envelopes not acknowledged: {RESPONSES}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
