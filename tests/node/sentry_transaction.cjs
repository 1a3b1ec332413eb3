#!/usr/bin/env node
// One transaction with nested child spans, sent by the real `@sentry/node`.
//
// The SDK is initialised with a DSN pointing at LightTrace
// (`http://public@127.0.0.1:PORT/42`) and sends with its own Node transport
// (`makeNodeTransport`), unmodified: the wrapper below only records each
// answer's status.
//
//     GET /users                op http.server  (the transaction)
//     ├── SELECT * FROM users   op db           (attribute db.system)
//     │   └── users.serialize   op function
//     └── POST /charge          op http.client  status internal_error
//
// Usage: node sentry_transaction.cjs --dsn DSN   (NODE_PATH: tests/node's node_modules)
//
// @sentry/node 11 streams the spans as one `span` envelope item in the span v2
// format (`{"version": 2, "items": [...]}`) rather than a `transaction` item.
//
// Prints one JSON line on stdout:
//
//     {"trace_id", "spans": [{"span_id", "parent_span_id", "name"}],
//      "responses": [status, ...]}
//
// Exits 1 unless every envelope was answered 200. The names, ops and
// attributes are a contract with crates/cli/tests/sentry_sdks.rs.

"use strict";

const Sentry = require("@sentry/node");

function argument(name) {
  const index = process.argv.indexOf(name);
  if (index < 0 || index + 1 >= process.argv.length) {
    throw new Error(`usage: sentry_transaction.cjs --dsn DSN (missing ${name})`);
  }
  return process.argv[index + 1];
}

const responses = [];

function recordingTransport(options) {
  const transport = Sentry.makeNodeTransport(options);
  return {
    ...transport,
    async send(envelope) {
      const response = await transport.send(envelope);
      responses.push(response && response.statusCode);
      return response;
    },
  };
}

async function main() {
  Sentry.init({
    dsn: argument("--dsn"),
    tracesSampleRate: 1.0,
    release: "users@2.0.0",
    environment: "test",
    serverName: "users-host",
    transport: recordingTransport,
  });

  const spans = [];
  const record = (span, name) => {
    const context = span.spanContext();
    spans.push({ span_id: context.spanId, name, trace_id: context.traceId });
  };

  let traceId;
  await Sentry.startSpan({ name: "GET /users", op: "http.server" }, async (root) => {
    traceId = root.spanContext().traceId;
    record(root, "GET /users");
    root.setAttribute("customer", "acme");
    await Sentry.startSpan(
      { name: "SELECT * FROM users", op: "db", attributes: { "db.system": "sqlite" } },
      async (db) => {
        record(db, "SELECT * FROM users");
        await new Promise((resolve) => setTimeout(resolve, 5));
        Sentry.startSpan({ name: "users.serialize", op: "function" }, (serialize) => {
          record(serialize, "users.serialize");
        });
      },
    );
    Sentry.startSpan({ name: "POST /charge", op: "http.client" }, (charge) => {
      record(charge, "POST /charge");
      charge.setStatus({ code: 2, message: "internal_error" });
    });
  });

  const flushed = await Sentry.flush(30000);
  await Sentry.close(30000);
  process.stdout.write(JSON.stringify({ trace_id: traceId, spans, responses }) + "\n");
  if (!flushed || responses.length === 0 || responses.some((status) => status !== 200)) {
    process.stderr.write(`envelopes not acknowledged: ${JSON.stringify(responses)}\n`);
    process.exit(1);
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
