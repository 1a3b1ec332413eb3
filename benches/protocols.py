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
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPOLOGY = os.path.join(ROOT, "..", "shared", "data", "topologies", "hipster-shop.json")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lighttrace-release"))
BIN = os.path.join(TARGET, "release", "lighttrace")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROTOCOLS = ["otlp-http", "otlp-grpc", "zipkin", "sentry"]
LABELS = {
    "otlp-http": "OTLP/HTTP protobuf",
    "otlp-grpc": "OTLP/gRPC",
    "zipkin": "Zipkin v2 JSON",
    "sentry": "Sentry envelopes (transactions)",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Server:
    def __init__(self, data):
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_url = f"http://127.0.0.1:{self.grpc_port}"
        self.log = open(data.rstrip("/") + f"-server-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data", data, "--http", f"127.0.0.1:{self.port}",
             "--grpc", f"127.0.0.1:{self.grpc_port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"server did not start; see {self.log.name}")
                time.sleep(0.05)

    def sql(self, query):
        req = urllib.request.Request(self.url + "/api/v1/sql", data=json.dumps({"sql": query}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()

    def stop_with_cpu(self):
        """SIGTERM, wait for the exit; returns the CPU seconds of the whole run."""
        self.proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.log.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
        return usage.ru_utime + usage.ru_stime


def bench(workdir, protocol, traces, concurrency):
    data = os.path.join(workdir, protocol)
    server = Server(data)
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
    cpu = server.stop_with_cpu() - cpu0
    server = Server(data)
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
