"""Contract test of LightTrace's Tempo API, as Grafana's Tempo data source sees it.

(a) `/api/traces/{id}` and `/api/v2/traces/{id}` with `Accept: application/protobuf`,
    decoded with the official OpenTelemetry proto classes: v1 is Tempo's
    `tempopb.Trace { repeated ResourceSpans batches = 1; }`, wire-compatible with
    OTLP's `TracesData`; v2 is `tempopb.TraceByIDResponse { Trace trace = 1;
    TraceByIDMetrics metrics = 2; }`, described at run time below. Every span of
    the request the test sent (`--sent`, an `ExportTraceServiceRequest`) must
    come back: ids, parent, name, kind, times, trace state, every attribute with
    its OTLP type, events, links, status, resource attributes and scope.

(b) The JSON answers, compared with `--golden` (tests/golden/tempo/): what Grafana
    Tempo 2.x returns for the same trace. The golden notation is in that folder's
    README: `?key` for a field Tempo leaves out at its zero value, `$string`,
    `$uint64`, `$number` for values that vary, lists compared as multisets.
    A case with `known_difference` must still differ (it is a bug to fix, and
    the test says so once it is fixed).

Prints `ok <check>` per check; exits 1 on the first failed group of checks,
after printing every difference.
"""

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

PROTOBUF = "application/protobuf"


def get(endpoint, path, params=None, accept=None):
    url = endpoint + path
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url)
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def fail(message):
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


# ---------------------------------------------------------------------------
# (a) protobuf
# ---------------------------------------------------------------------------


def trace_by_id_response_class():
    """`tempopb.TraceByIDResponse` (pkg/tempopb/tempo.proto) on top of the
    official `opentelemetry.proto.trace.v1.ResourceSpans`."""
    pool = descriptor_pool.Default()
    name = "lighttrace_contract/tempopb.proto"
    try:
        pool.FindFileByName(name)
    except KeyError:
        file = descriptor_pb2.FileDescriptorProto(
            name=name,
            package="tempopb",
            syntax="proto3",
            dependency=[trace_pb2.DESCRIPTOR.name],
        )
        trace = file.message_type.add(name="Trace")
        trace.field.add(
            name="resourceSpans",  # `batches` before Tempo 2.5; same tag
            number=1,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
            type_name=".opentelemetry.proto.trace.v1.ResourceSpans",
        )
        metrics = file.message_type.add(name="TraceByIDMetrics")
        metrics.field.add(
            name="inspectedBytes",
            number=1,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
        )
        response = file.message_type.add(name="TraceByIDResponse")
        for field_name, number, type_name in [
            ("trace", 1, ".tempopb.Trace"),
            ("metrics", 2, ".tempopb.TraceByIDMetrics"),
        ]:
            response.field.add(
                name=field_name,
                number=number,
                label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
                type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                type_name=type_name,
            )
        pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tempopb.TraceByIDResponse")
    )


def any_value(value):
    """An AnyValue as (its OTLP type, its value), recursively."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return (kind, [any_value(v) for v in value.array_value.values])
    if kind == "kvlist_value":
        return (kind, key_values(value.kvlist_value.values))
    if kind is None:
        return (None, None)
    return (kind, getattr(value, kind))


def key_values(values):
    keys = [kv.key for kv in values]
    if len(keys) != len(set(keys)):
        fail(f"duplicate attribute keys: {keys}")
    return sorted((kv.key, any_value(kv.value)) for kv in values)


def spans_by_id(resource_spans, trace_id):
    """span id (hex) -> everything about the span, its resource and scope."""
    spans = {}
    for rs in resource_spans:
        resource = key_values(rs.resource.attributes)
        for ss in rs.scope_spans:
            scope = (ss.scope.name, ss.scope.version)
            for s in ss.spans:
                if s.trace_id.hex() != trace_id:
                    fail(f"span {s.span_id.hex()} of another trace {s.trace_id.hex()}")
                span_id = s.span_id.hex()
                if span_id in spans:
                    fail(f"span {span_id} twice")
                spans[span_id] = {
                    "resource": resource,
                    "scope": scope,
                    "parent": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": trace_pb2.Span.SpanKind.Name(s.kind),
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "trace_state": s.trace_state,
                    "attributes": key_values(s.attributes),
                    "events": [
                        (e.time_unix_nano, e.name, key_values(e.attributes))
                        for e in s.events
                    ],
                    "links": [
                        (
                            link.trace_id.hex(),
                            link.span_id.hex(),
                            link.trace_state,
                            key_values(link.attributes),
                        )
                        for link in s.links
                    ],
                    "status": (
                        trace_pb2.Status.StatusCode.Name(s.status.code),
                        s.status.message,
                    ),
                }
    return spans


def compare_spans(what, got, sent):
    if set(got) != set(sent):
        fail(f"{what}: span ids {sorted(got)} != sent {sorted(sent)}")
    for span_id, expected in sent.items():
        for field, value in expected.items():
            if got[span_id][field] != value:
                fail(
                    f"{what}: span {span_id} {field}:\n  got  {got[span_id][field]!r}\n"
                    f"  sent {value!r}"
                )


def no_unknown_fields(what, message):
    unknown = UnknownFieldSet(message)
    if len(unknown):
        fail(f"{what}: unknown fields {[f.field_number for f in unknown]}")


def check_protobuf(args, sent):
    for path, v2 in [("/api/traces", False), ("/api/v2/traces", True)]:
        status, content_type, body = get(
            args.endpoint,
            f"{path}/{args.trace_id}",
            {"start": args.start, "end": args.end},
            accept=PROTOBUF,
        )
        if status != 200 or not content_type.startswith(PROTOBUF):
            fail(f"{path}: {status} {content_type}: {body[:300]!r}")
        if v2:
            response = trace_by_id_response_class().FromString(body)
            no_unknown_fields(path, response)
            if not response.HasField("trace"):
                fail(f"{path}: no trace (field 1)")
            resource_spans = response.trace.resourceSpans
        else:
            trace = TracesData.FromString(body)
            no_unknown_fields(path, trace)
            resource_spans = trace.resource_spans
        compare_spans(path, spans_by_id(resource_spans, args.trace_id), sent)
        print(f"ok protobuf {path}: {len(sent)} spans, every field and attribute type")
    # Grafana asks v2 first and falls back to v1 on a 404.
    for path in ["/api/traces", "/api/v2/traces"]:
        status, _, _ = get(args.endpoint, f"{path}/{'1' * 32}", accept=PROTOBUF)
        if status != 404:
            fail(f"{path} of an unknown trace: {status}, not 404")


# ---------------------------------------------------------------------------
# (b) JSON against the golden files
# ---------------------------------------------------------------------------

PLACEHOLDERS = {
    "$string": lambda v: isinstance(v, str),
    "$uint64": lambda v: isinstance(v, str) and re.fullmatch(r"[0-9]+", v) is not None,
    "$number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "$hex": lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]+", v) is not None,
}


def kind_of(value):
    return type(value).__name__


def match(actual, golden, path="$"):
    """Differences between `actual` and the golden notation, as strings."""
    if isinstance(golden, str) and golden in PLACEHOLDERS:
        if PLACEHOLDERS[golden](actual):
            return []
        return [f"{path}: {actual!r} is not {golden}"]
    if isinstance(golden, dict) and "$each" in golden:
        if not isinstance(actual, list) or not actual:
            return [f"{path}: expected a non-empty list, got {actual!r}"]
        return [e for i, item in enumerate(actual) for e in match(item, golden["$each"], f"{path}[{i}]")]
    if isinstance(golden, dict) and "$contains" in golden:
        if not isinstance(actual, list):
            return [f"{path}: expected a list, got {kind_of(actual)}"]
        return match_multiset(actual, golden["$contains"], golden.get("$optional", []), path)
    if isinstance(golden, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {kind_of(actual)} {actual!r}"]
        errors = []
        known = set()
        for key, value in golden.items():
            name = key[1:] if key.startswith("?") else key
            known.add(name)
            if name in actual:
                errors += match(actual[name], value, f"{path}.{name}")
            elif not key.startswith("?"):
                errors.append(f"{path}: missing key {name!r}")
        for extra in sorted(set(actual) - known):
            errors.append(f"{path}: unexpected key {extra!r} = {json.dumps(actual[extra])[:200]}")
        return errors
    if isinstance(golden, list):
        if not isinstance(actual, list):
            return [f"{path}: expected a list, got {kind_of(actual)}"]
        return match_multiset(actual, golden, [], path)
    if type(actual) is not type(golden) and not (
        isinstance(actual, (int, float))
        and isinstance(golden, (int, float))
        and not isinstance(actual, bool)
        and not isinstance(golden, bool)
    ):
        return [f"{path}: {kind_of(actual)} {actual!r}, expected {kind_of(golden)} {golden!r}"]
    if actual != golden:
        return [f"{path}: {actual!r}, expected {golden!r}"]
    return []


def match_multiset(actual, required, optional, path):
    """Each actual element matches a distinct golden element; every required
    one is used. Small lists: a backtracking search."""
    golden = [(g, True) for g in required] + [(g, False) for g in optional]
    fits = [[match(a, g, f"{path}[{i}]") == [] for g, _ in golden] for i, a in enumerate(actual)]
    used = [False] * len(golden)

    def assign(i):
        if i == len(actual):
            return all(used[j] or not golden[j][1] for j in range(len(golden)))
        for j in range(len(golden)):
            if not used[j] and fits[i][j]:
                used[j] = True
                if assign(i + 1):
                    return True
                used[j] = False
        return False

    if assign(0):
        return []
    errors = [f"{path}: {len(actual)} elements do not match the golden {len(required)} (+{len(optional)} optional)"]
    # Say why, element by element, against the closest golden element.
    for i, a in enumerate(actual):
        if not any(fits[i]):
            reasons = min((match(a, g, f"{path}[{i}]") for g, _ in golden), key=len, default=[])
            errors += reasons or [f"{path}[{i}]: {json.dumps(a)[:200]} matches nothing"]
    for j, (g, needed) in enumerate(golden):
        if needed and not any(fits[i][j] for i in range(len(actual))):
            errors.append(f"{path}: nothing matches golden {json.dumps(g)[:200]}")
    return errors


def get_json(args, path, params):
    status, content_type, body = get(args.endpoint, path, params, accept="application/json")
    if status != 200 or not content_type.startswith("application/json"):
        fail(f"{path} {params}: {status} {content_type}: {body[:300]!r}")
    return json.loads(body)


def golden(args, name):
    return json.loads((Path(args.golden) / name).read_text())


def check_case(what, actual, case):
    errors = match(actual, case["response"])
    known = case.get("known_difference")
    if known:
        if not errors:
            fail(f"{what}: the known difference is gone ({known}); remove `known_difference` from the golden case")
        print(f"known difference {what}: {known}\n    " + "\n    ".join(errors))
        return
    if errors:
        print(f"FAIL {what}: {json.dumps(actual)[:2000]}")
        fail(f"{what}:\n  " + "\n  ".join(errors))


def check_json(args):
    window = {"start": args.start, "end": args.end}
    for path, name in [("/api/traces", "trace_v1.json"), ("/api/v2/traces", "trace_v2.json")]:
        actual = get_json(args, f"{path}/{args.trace_id}", window)
        check_case(f"{path}/{{id}}", actual, {"response": golden(args, name)})
        print(f"ok json {path}/{{id}} matches {name}")

    search = golden(args, "search.json")
    for case in search["cases"]:
        params = {"q": case["q"], "limit": 20, "spss": 3, **window, **case.get("params", {})}
        check_case(f"/api/search q={case['q']}", get_json(args, "/api/search", params), case)
    known = sum(1 for c in search["cases"] if c.get("known_difference"))
    print(f"ok json /api/search: {len(search['cases'])} TraceQL queries checked against search.json ({known} known differences)")

    check_case("/api/search/tags", get_json(args, "/api/search/tags", window), {"response": golden(args, "tags_v1.json")})
    print("ok json /api/search/tags matches tags_v1.json")
    check_case(
        "/api/v2/search/tags",
        get_json(args, "/api/v2/search/tags", {**window, "limit": 5000}),
        {"response": golden(args, "tags_v2.json")},
    )
    print("ok json /api/v2/search/tags matches tags_v2.json")

    values = golden(args, "tag_values_v2.json")
    for case in values["cases"]:
        params = {**window, "limit": 5000}
        if "q" in case:
            params["q"] = case["q"]
        path = f"/api/v2/search/tag/{urllib.parse.quote(case['tag'])}/values"
        check_case(f"{path} q={case.get('q')}", get_json(args, path, params), case)
    print(f"ok json /api/v2/search/tag/{{tag}}/values: {len(values['cases'])} cases match tag_values_v2.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", required=True, help="http://host:port of lighttrace")
    parser.add_argument("--trace-id", required=True)
    parser.add_argument("--start", required=True, help="unix seconds")
    parser.add_argument("--end", required=True, help="unix seconds")
    parser.add_argument("--sent", required=True, help="the ExportTraceServiceRequest sent, protobuf")
    parser.add_argument("--golden", required=True, help="tests/golden/tempo")
    args = parser.parse_args()

    request = ExportTraceServiceRequest.FromString(Path(args.sent).read_bytes())
    sent = spans_by_id(request.resource_spans, args.trace_id)
    if not sent:
        fail("the sent request holds no span of the trace")
    check_protobuf(args, sent)
    check_json(args)


if __name__ == "__main__":
    main()
