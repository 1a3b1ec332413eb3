#!/usr/bin/env python3
"""Reads a LightTrace lake with DuckDB, as a user would, and prints span counts.

Usage: duckdb_count.py DATA_DIR [TRACE_ID]

Reads DATA_DIR/spans/**/*.parquet with Hive partitioning (project=/service=/
date=/hour= folders) and prints one JSON line on stdout:

    {"files": F, "count": N,
     "by_service_name": {"<service_name column>": n, ...},
     "by_service_folder": {"<service= folder>": n, ...},
     "trace": {"by_bytes": n, "by_hex": n, "span_ids": [...]}}

`trace` (only with TRACE_ID, 32 hex digits) counts the spans of that trace twice:
with `trace_id = unhex(…)`, which DuckDB pushes into the scan (statistics and
bloom filters of the binary id column), and with `lower(hex(trace_id)) = …`,
which it cannot push; `span_ids` lists the trace's span ids as hex text.

Both per-service maps are printed so the caller can check that every span sits in
the folder of its own service. Exits 1 (with DuckDB's message on stderr) if DuckDB
cannot read the lake.
"""

import glob
import json
import os
import sys

import duckdb


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    data_dir = sys.argv[1]
    trace_id = sys.argv[2] if len(sys.argv) == 3 else None
    pattern = os.path.join(data_dir, "spans", "**", "*.parquet")
    files = glob.glob(pattern, recursive=True)
    if not files:
        print(f"no Parquet files match {pattern}", file=sys.stderr)
        return 1

    con = duckdb.connect()
    source = "read_parquet(?, hive_partitioning = true)"
    try:
        (count,) = con.execute(f"SELECT count(*) FROM {source}", [pattern]).fetchone()
        by_name = con.execute(
            f"SELECT service_name, count(*) FROM {source} GROUP BY service_name", [pattern]
        ).fetchall()
        by_folder = con.execute(
            f"SELECT service, count(*) FROM {source} GROUP BY service", [pattern]
        ).fetchall()
        trace = None
        if trace_id is not None:
            (by_bytes,) = con.execute(
                f"SELECT count(*) FROM {source} WHERE trace_id = unhex(?)", [pattern, trace_id]
            ).fetchone()
            (by_hex,) = con.execute(
                f"SELECT count(*) FROM {source} WHERE lower(hex(trace_id)) = ?", [pattern, trace_id]
            ).fetchone()
            span_ids = [row[0] for row in con.execute(
                f"SELECT lower(hex(span_id)) FROM {source} WHERE trace_id = unhex(?) ORDER BY 1",
                [pattern, trace_id],
            ).fetchall()]
            trace = {"by_bytes": by_bytes, "by_hex": by_hex, "span_ids": span_ids}
    except duckdb.Error as error:
        print(f"DuckDB cannot read the lake at {pattern}: {error}", file=sys.stderr)
        return 1

    print(json.dumps({
        "files": len(files),
        "count": count,
        "by_service_name": {str(name): n for name, n in by_name},
        "by_service_folder": {str(name): n for name, n in by_folder},
        "trace": trace,
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
