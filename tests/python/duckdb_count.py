#!/usr/bin/env python3
"""Reads a LightTrace lake with DuckDB, as a user would, and prints span counts.

Usage: duckdb_count.py DATA_DIR

Reads DATA_DIR/spans/**/*.parquet with Hive partitioning (project=/service=/
date=/hour= folders) and prints one JSON line on stdout:

    {"files": F, "count": N,
     "by_service_name": {"<service_name column>": n, ...},
     "by_service_folder": {"<service= folder>": n, ...}}

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
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data_dir = sys.argv[1]
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
    except duckdb.Error as error:
        print(f"DuckDB cannot read the lake at {pattern}: {error}", file=sys.stderr)
        return 1

    print(json.dumps({
        "files": len(files),
        "count": count,
        "by_service_name": {str(name): n for name, n in by_name},
        "by_service_folder": {str(name): n for name, n in by_folder},
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
