#!/usr/bin/env python3
"""Ingest rate per receiver: OTLP/HTTP, OTLP/gRPC, Zipkin v2 JSON, Sentry envelopes (issue 3).

    python3 benches/protocols.py [--traces N] [--protocols otlp-http,otlp-grpc,zipkin,sentry] [--out FILE]

For each protocol in turn, starts the release binary on a fresh data directory,
sends the same N generated hipster-shop traces (`lighttrace gen --seed 7
--protocol P`: same seed, same spans) and reports:
  * spans accepted (and counted back by SQL after a restart),
  * wall spans/s of the generator run (the generator shares the machine),
  * spans per server CPU-second: the server is stopped right after the
    generator finishes, so its CPU time (utime+stime from wait4, minus what
    startup used) includes flushing every span to Parquet, as in spine.py,
  * payload bytes per span as sent (uncompressed, in the protocol's format).
Only the standard library is used. Results are printed as Markdown; --out appends
them to a file (benches/RESULTS.md keeps the history).
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPOLOGY = os.path.join(ROOT, "..", "shared", "data", "topologies", "hipster-shop.json")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lighttrace-release"))
BIN = os.path.join(TARGET, "release", "lighttrace")
PROTOCOLS = ["otlp-http", "otlp-grpc", "zipkin", "sentry"]
LABELS = {
    "otlp-http": "OTLP/HTTP protobuf",
    "otlp-grpc": "OTLP/gRPC",
    "zipkin": "Zipkin v2 JSON",
    "sentry": "Sentry envelopes (transactions)",
}


# The server harness is spine.py's (this file's folder is on sys.path when run).
from spine import Server, cpu_seconds  # noqa: E402


def bench(workdir, protocol, traces, concurrency):
    data = os.path.join(workdir, protocol)
    server = Server(data, grpc=True, binary=BIN)
    cpu0 = cpu_seconds(server.proc.pid)
    target = server.grpc_url if protocol == "otlp-grpc" else server.url
    t0 = time.time()
    out = subprocess.run([BIN, "gen", "--topology", TOPOLOGY, "--traces", str(traces), "--seed", "7",
                          "--target", target, "--protocol", protocol, "--no-progress",
                          "--concurrency", str(concurrency), "--json"],
                         check=True, capture_output=True, text=True)
    wall = time.time() - t0
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    # Stop at once: the shutdown flush writes what is still buffered, and its
    # CPU belongs to these spans.
    cpu = server.stop_with_usage()[0] - cpu0
    server = Server(data, binary=BIN)
    count = server.sql("SELECT count(*) FROM spans")["rows"][0][0]
    server.stop()
    shutil.rmtree(data, ignore_errors=True)
    spans = summary["spans"]
    return {
        "protocol": protocol,
        "spans": spans,
        "counted": count,
        "wall_s": wall,
        "cpu_s": cpu,
        "payload_bytes": summary["payload_bytes"],
        "retries": summary["retries"],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=50_000)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out")
    args = parser.parse_args()
    protocols = [p for p in args.protocols.split(",") if p]
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        sys.exit(f"unknown protocol(s) {unknown}; choose from {PROTOCOLS}")
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: CARGO_TARGET_DIR={TARGET} cargo build --release -p lighttrace-cli")
    workdir = tempfile.mkdtemp(prefix="lighttrace-protocols-")
    load_before = os.getloadavg()
    rows = []
    try:
        for protocol in protocols:
            rows.append(bench(workdir, protocol, args.traces, args.concurrency))
            print(f"{protocol}: done", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    header = (f"\n## {time.strftime('%Y-%m-%d')} — ingest rate per protocol, {platform.node()}, "
              f"{os.cpu_count()} cores ({cpu}), "
              f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB\n\n"
              f"`python3 benches/protocols.py {' '.join(sys.argv[1:])}`\n\n"
              f"Load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
              "the generator runs on the same cores.\n\n"
              "| protocol | spans (counted by SQL) | wall spans/s | spans per server CPU-s (incl. shutdown flush) "
              "| server CPU-s | payload B/span as sent | retries |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        spans = r["spans"]
        lines.append(
            f"| {LABELS[r['protocol']]} | {spans:,} ({r['counted']:,}) | {spans / r['wall_s']:,.0f} "
            f"| **{spans / r['cpu_s']:,.0f}** | {r['cpu_s']:.1f} | {r['payload_bytes'] / spans:.1f} "
            f"| {r['retries']} |\n")
    text = header + "".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
