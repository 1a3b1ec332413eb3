"""psycopg 3 against LightTrace's Postgres wire protocol (`lighttrace serve --pg`).

Run by crates/cli/tests/pgwire.rs against a server with two projects (keys
passed as arguments) whose spans it ingested over OTLP: project A has service
SERVICE_A, project B has SERVICE_B. Checks, each an assert (exit 1 on the first
that fails):

* bound parameters (server-side, extended protocol): text, int, timestamp;
* typed results: timestamptz as datetime, int8 as int, json as dict, in text
  and in binary result format;
* a refused DDL statement and a refused SET of a DataFusion option (SQLSTATE
  42501), and the connection still usable afterwards; SET/SHOW of session
  settings;
* a wrong password refused (28P01);
* project scoping: key A sees only project A, key B only project B;
* the queries Grafana's PostgreSQL data source sends when it connects and
  builds a query (health check ping, version, TimescaleDB probe, table list,
  column list, schema list) and a time-series query with its macros
  expanded, over the extended protocol (as pgx sends them) and the simple
  protocol (as lib/pq sends them).

Prints one JSON line with what it saw.
"""

import argparse
import datetime as dt
import json
import sys

import psycopg
from psycopg import errors, pq


def connect(args, password):
    return psycopg.connect(
        host="127.0.0.1",
        port=args.port,
        user=args.user,
        password=password,
        dbname="lighttrace",
        sslmode="disable",
        connect_timeout=10,
        application_name="lighttrace-e2e",
    )


# The queries of Grafana's PostgreSQL data source (public/app/plugins/datasource/
# grafana-postgresql-datasource/postgresMetaQuery.ts), as it builds them.
def schema_constraint():
    return """
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""


GRAFANA_VERSION = "SELECT current_setting('server_version_num')::int/100 as version"
GRAFANA_TIMESCALEDB = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
GRAFANA_SCHEMAS = """SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name"""
GRAFANA_TABLES = f"""SELECT
    CASE WHEN {schema_constraint()}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {schema_constraint()} THEN 0 ELSE 1 END, 1"""
GRAFANA_TABLES_OF_SCHEMA = """SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = 'public'
      ORDER BY 1"""


def grafana_columns(table):
    table_part = "'" + table.replace("'", "''") + "'"
    return f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({table_part}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({table_part}))[1]
          AND quote_ident(table_name) = (parse_ident({table_part}))[2]
        ELSE quote_ident(table_name) = {table_part}
          AND {schema_constraint()}
      END"""


def grafana_time_series(start, end):
    # $__timeGroupAlias(start_time, 1m), $__timeFilter(start_time) as the
    # macro engine expands them (pkg/tsdb/grafana-postgresql-datasource/macros.go).
    return f"""SELECT
  floor(extract(epoch from start_time)/60)*60 AS "time",
  count(*) AS "spans"
FROM spans
WHERE start_time BETWEEN '{start}' AND '{end}'
GROUP BY 1
ORDER BY 1"""


def empty_query_status(conn, sql):
    result = conn.pgconn.exec_(sql.encode())
    return result.status


def grafana_replay(conn, cursor_class, expected_tables, window):
    seen = {}
    # Health check: pgx pings with "-- ping", lib/pq with ";".
    for ping in ("-- ping", ";"):
        status = empty_query_status(conn, ping)
        assert status == pq.ExecStatus.EMPTY_QUERY, (ping, status)
    with cursor_class(conn) if cursor_class else conn.cursor() as cur:
        cur.execute(GRAFANA_VERSION)
        version = cur.fetchone()[0]
        assert int(version) == 1600, version
        seen["version"] = int(version)
        cur.execute(GRAFANA_TIMESCALEDB)
        assert cur.fetchall() == [], "no TimescaleDB"
        cur.execute(GRAFANA_SCHEMAS)
        schemas = [row[0] for row in cur.fetchall()]
        assert schemas == ["public"], schemas
        cur.execute(GRAFANA_TABLES)
        tables = [row[0] for row in cur.fetchall()]
        assert tables == expected_tables, tables
        seen["tables"] = tables
        cur.execute(GRAFANA_TABLES_OF_SCHEMA)
        assert [row[0] for row in cur.fetchall()] == expected_tables
        for table in ("spans", "public.spans"):
            cur.execute(grafana_columns(table))
            columns = dict(cur.fetchall())
            for column in ("trace_id", "service_name", "start_time", "duration_ns", "attributes"):
                assert column in columns, (table, columns)
            seen["columns"] = len(columns)
        cur.execute(grafana_time_series(*window))
        buckets = cur.fetchall()
        assert buckets, "spans in the time window"
        assert all(isinstance(row[0], float) for row in buckets), buckets
        seen["buckets"] = sum(row[1] for row in buckets)
    return seen


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="lighttrace")
    parser.add_argument("--key-a", required=True)
    parser.add_argument("--key-b", required=True)
    parser.add_argument("--project-a", required=True)
    parser.add_argument("--project-b", required=True)
    parser.add_argument("--service-a", required=True)
    parser.add_argument("--service-b", required=True)
    parser.add_argument("--spans-a", type=int, required=True)
    parser.add_argument("--spans-b", type=int, required=True)
    args = parser.parse_args()
    report = {}

    # A wrong password: refused at connect, 28P01.
    try:
        connect(args, "not-a-key")
        raise AssertionError("a wrong password was accepted")
    except psycopg.OperationalError as err:
        assert "password" in str(err).lower(), str(err)
        report["wrong_password"] = str(err).strip().splitlines()[-1]

    with connect(args, args.key_a) as conn:
        # Bound parameters, server-side (psycopg sends Parse/Bind/Execute).
        with conn.cursor() as cur:
            cur.execute(
                "SELECT service_name, start_time, duration_ns, attributes, project "
                "FROM spans WHERE service_name = %s ORDER BY start_time, span_id",
                (args.service_a,),
            )
            rows = cur.fetchall()
            assert len(rows) == args.spans_a, rows
            service, start, duration, attributes, project = rows[0]
            assert service == args.service_a
            assert isinstance(start, dt.datetime) and start.tzinfo is not None, start
            assert isinstance(duration, int) and duration > 0, duration
            assert isinstance(attributes, dict), attributes
            assert project == args.project_a, project
            assert [d.name for d in cur.description][:3] == ["service_name", "start_time", "duration_ns"]

            cur.execute(
                "SELECT count(*) FROM spans WHERE duration_ns >= %s AND service_name = %s",
                (2_000_000, args.service_a),
            )
            long_spans = cur.fetchone()[0]
            assert isinstance(long_spans, int)
            assert 0 < long_spans < args.spans_a, long_spans
            report["long_spans"] = long_spans

            cur.execute("SELECT count(*) FROM spans WHERE start_time >= %s", (start,))
            assert cur.fetchone()[0] == args.spans_a
            cur.execute(
                "SELECT count(*) FROM spans WHERE start_time > %s",
                (start + dt.timedelta(days=1),),
            )
            assert cur.fetchone()[0] == 0
            # The parameter is a value, never SQL.
            cur.execute("SELECT count(*) FROM spans WHERE service_name = %s", ("x' OR '1'='1",))
            assert cur.fetchone()[0] == 0

        # Binary results.
        with conn.cursor(binary=True) as cur:
            cur.execute(
                "SELECT start_time, duration_ns, name, attributes FROM spans "
                "WHERE service_name = %s ORDER BY start_time LIMIT 1",
                (args.service_a,),
            )
            start_b, duration_b, name_b, attributes_b = cur.fetchone()
            assert start_b == start, (start_b, start)
            assert isinstance(duration_b, int) and isinstance(name_b, str)
            assert isinstance(attributes_b, dict), attributes_b

        # Session settings: accepted, shown; DataFusion's options refused.
        with conn.cursor() as cur:
            cur.execute("SET application_name = 'from-set'")
            cur.execute("SHOW application_name")
            assert cur.fetchone()[0] == "from-set"
            cur.execute("SET extra_float_digits = 3")
            cur.execute("SHOW timezone")
            report["timezone"] = cur.fetchone()[0]
        conn.commit()
        for statement, message in [
            ("CREATE TABLE t (a int)", "DDL is not allowed"),
            ("SET datafusion.execution.batch_size = 1", "SET is not allowed"),
            ("COPY spans TO '/tmp/x.csv'", "not allowed"),
        ]:
            try:
                with conn.cursor() as cur:
                    cur.execute(statement)
                raise AssertionError(f"{statement} was accepted")
            except errors.InsufficientPrivilege as err:
                assert message in str(err), str(err)
                assert err.sqlstate == "42501", err.sqlstate
                report.setdefault("refused", []).append(str(err).strip())
            conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT 1 + %s", (1,))
            assert cur.fetchone()[0] == 2, "the connection still works"

        # Project scope.
        with conn.cursor() as cur:
            cur.execute("SELECT project, count(*) FROM spans GROUP BY project")
            assert cur.fetchall() == [(args.project_a, args.spans_a)]

        # Grafana, over the extended protocol (pgx) and the simple one (lib/pq).
        window = (
            (start - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            (start + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        expected_tables = ["errors", "logs", "spans"]
        conn.commit()
        conn.autocommit = True
        report["grafana_extended"] = grafana_replay(conn, None, expected_tables, window)
        report["grafana_simple"] = grafana_replay(
            conn, psycopg.ClientCursor, expected_tables, window
        )
        assert report["grafana_extended"]["buckets"] == args.spans_a

    with connect(args, args.key_b) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT project, count(*) FROM spans GROUP BY project")
            assert cur.fetchall() == [(args.project_b, args.spans_b)]
            cur.execute("SELECT count(*) FROM spans WHERE service_name = %s", (args.service_a,))
            assert cur.fetchone()[0] == 0, "key B reads project A"

    print(json.dumps(report, default=str))


if __name__ == "__main__":
    try:
        main()
    except AssertionError:
        import traceback

        traceback.print_exc()
        sys.exit(1)
