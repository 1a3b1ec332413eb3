"""The shipped Grafana files (deploy/grafana/) against a running LightTrace, the
way Grafana would use them, without a Grafana server.

Run by crates/cli/tests/grafana_provisioning.rs, which starts `lighttrace serve`
with --pg and a project, feeds it traces, and passes the addresses and the key.
This script starts nothing. It:

1. reads provisioning/datasources/lighttrace.yaml and expands environment
   variables as Grafana's provisioning does (pkg/services/provisioning/values:
   `$$` is a literal `$`, `$__env{VAR}`, then Go's os.ExpandEnv: `$VAR`,
   `${VAR}`, unset is empty), with the variables grafana.env names set to the
   server's addresses; checks what each data source needs (types, uids the
   dashboard references, the key as header and password, sslmode);
2. runs each data source's health check as Grafana's "Save & test" does
   (Tempo: GET /api/echo; Jaeger: GET /api/services with services in it;
   PostgreSQL: the pgx ping `-- ping` and a query);
3. reads provisioning/dashboards/lighttrace.yaml (a file provider) and the
   dashboard JSON; every data source reference resolves to a provisioned one;
4. the `service` variable: its SQL, macros expanded, run over the Postgres
   wire protocol; the options it yields become the variable's values (All);
5. every PostgreSQL panel: template variables replaced as Grafana's frontend
   does (SqlDatasource.interpolateVariable: quoted literals joined by commas
   for multi-value variables; $__interval and $__interval_ms from
   rangeutil.calculateInterval), then the backend's global substitutions and
   the macros of pkg/tsdb/grafana-postgresql-datasource/macros.go ported
   below, then sent as one simple-protocol query (pgx's PgConn.Exec). The
   result must be what Grafana's sqleng can turn into its frames: for
   time series, a `time` column (a timestamp or epoch number), sorted, the
   other columns numbers or strings (labels), at least one row; for the
   slowest-traces table, 32-hex trace ids. Repeated panels run once per value;
6. data links on the table: the Explore URL of each link, with the row's
   trace id, parsed; the trace is fetched as the Tempo data source
   (GET /api/v2/traces/{id}?start&end) and the Jaeger one
   (GET /jaeger/api/traces/{id}) would, and must hold the trace's spans;
7. every Tempo panel: the query with variables in the pipe format (Tempo's
   applyVariables), sent as Grafana's Tempo backend does
   (GET /api/metrics/query_range?q&start&end&exemplars, seconds) and read as
   tempopb.QueryRangeResponse JSON: series with labels and samples, and
   exemplars whose `trace:id` opens a trace whose span has the exemplar's
   duration. A 404 there is reported as the missing endpoint.

`--panels postgres` or `--panels tempo` runs only the panels of that data
source (1.–4. always run). Every check runs; failures are collected and printed, and the exit status is
1 when there is any. The last line of stdout is a JSON report.
"""

import argparse
import calendar
import datetime as dt
import json
import math
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

import psycopg
import yaml
from psycopg import pq

FAILURES = []
REPORT = {"datasources": {}, "health": {}, "variable": {}, "panels": [], "links": [], "tempo": []}


def fail(message):
    FAILURES.append(message)
    print(f"FAIL: {message}", file=sys.stderr)


def check(condition, message):
    if not condition:
        fail(message)
    return bool(condition)


# ---------------------------------------------------------------------------
# Provisioning: environment variables (pkg/services/provisioning/values)
# ---------------------------------------------------------------------------

def go_expand_env(text, env):
    """Go's os.ExpandEnv: `${name}`, `$name`, and the one-character special
    names (`$1`, `$*`, …); an unset variable is empty; `${` without `}` and a
    `$` before anything else are kept or dropped as os.Expand does."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            name, width = go_shell_name(text[i + 1:])
            if name == "" and width > 0:
                # Invalid syntax (`${}` or `${` unclosed): eaten.
                pass
            elif name == "":
                # A `$` before a character that starts no name: kept.
                out.append(text[i])
            else:
                out.append(env.get(name, ""))
            i += 1 + width
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def go_shell_name(s):
    special = "*#$@!?-0123456789"
    if s[0] == "{":
        if len(s) > 2 and s[1] in special and s[2] == "}":
            return s[1], 3
        for j in range(1, len(s)):
            if s[j] == "}":
                if j == 1:
                    return "", 2
                return s[1:j], j + 1
        return "", 1
    if s[0] in special:
        return s[0], 1
    j = 0
    while j < len(s) and (s[j] == "_" or s[j].isascii() and s[j].isalnum()):
        j += 1
    return s[:j], j


ENV_EXPANDER = re.compile(r"\$__env\{([^}]*)\}")


def grafana_interpolate(value, env):
    """values.interpolateValue: split at `$$`, expand `$__env{…}` (ExpandVar)
    and then the environment in each part, join with `$`."""
    parts = value.split("$$")
    expanded = []
    for part in parts:
        part = ENV_EXPANDER.sub(lambda m: env.get(m.group(1), ""), part)
        expanded.append(go_expand_env(part, env))
    return "$".join(expanded)


def interpolate_tree(node, env):
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return grafana_interpolate(node, env)
    return node


def referenced_variables(text):
    names = set()
    for part in text.split("$$"):
        for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", part):
            names.add(m.group(1) or m.group(2))
    return names


def read_env_file(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


# ---------------------------------------------------------------------------
# Grafana's time and interval helpers
# ---------------------------------------------------------------------------

def parse_relative(expr, now):
    """`now`, `now-1h`, `now-30m`, `now-2d` (the dashboard's time picker)."""
    m = re.fullmatch(r"now(?:-(\d+)([smhdw]))?", expr)
    if not m:
        raise ValueError(f"unsupported time expression {expr!r}")
    if not m.group(1):
        return now
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return now - dt.timedelta(seconds=int(m.group(1)) * seconds)


def round_interval(ms):
    """rangeutil.roundInterval of @grafana/data."""
    ladder = [
        (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500),
        (1500, 1000), (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000),
        (25000, 20000), (45000, 30000), (90000, 60000), (210000, 120000),
        (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
        (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
        (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
        (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
    ]
    for limit, value in ladder:
        if ms < limit:
            return value
    return 31536000000


INTERVAL_SECONDS = {"y": 31536000, "M": 2592000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def interval_to_ms(text):
    """rangeutil.intervalToMs (describeInterval)."""
    try:
        if float(text):
            return int(text) * 1000
    except ValueError:
        pass
    m = re.search(r"(-?\d+(?:\.\d+)?)(ms|[Mwdhmsy])", text)
    if not m:
        raise ValueError(f"invalid interval {text!r}")
    return INTERVAL_SECONDS[m.group(2)] * 1000 * int(float(m.group(1)))


def seconds_to_hms(seconds):
    """rangeutil.secondsToHms."""
    years = math.floor(seconds / 31536000)
    if years:
        return f"{years}y"
    days = math.floor((seconds % 31536000) / 86400)
    if days:
        return f"{days}d"
    hours = math.floor(((seconds % 31536000) % 86400) / 3600)
    if hours:
        return f"{hours}h"
    minutes = math.floor((((seconds % 31536000) % 86400) % 3600) / 60)
    if minutes:
        return f"{minutes}m"
    secs = math.floor((((seconds % 31536000) % 86400) % 3600) % 60)
    if secs:
        return f"{secs}s"
    millis = math.floor(seconds * 1000.0)
    if millis:
        return f"{millis}ms"
    return "less than a millisecond"


def calculate_interval(from_ms, to_ms, resolution, low_limit):
    """rangeutil.calculateInterval: (intervalMs, interval text)."""
    low_ms = interval_to_ms(low_limit) if low_limit else 1
    interval_ms = round_interval((to_ms - from_ms) / resolution)
    if low_ms > interval_ms:
        interval_ms = low_ms
    return interval_ms, seconds_to_hms(interval_ms / 1000)


GO_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


def go_parse_duration(text):
    """Go's time.ParseDuration, in nanoseconds."""
    if text in ("0", "+0", "-0"):
        return 0
    m = re.fullmatch(r"([+-]?)((?:\d*\.?\d+(?:ns|us|µs|μs|ms|s|m|h))+)", text)
    if not m:
        raise ValueError(f"time: invalid duration {text!r}")
    total = Decimal(0)
    for number, unit in re.findall(r"(\d*\.?\d+)(ns|us|µs|μs|ms|s|m|h)", m.group(2)):
        total += Decimal(number) * GO_UNITS[unit]
    total = int(total)
    return -total if m.group(1) == "-" else total


def add_months(when, months):
    month = when.month - 1 + months
    year = when.year + month // 12
    month = month % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


def gtime_parse_interval(text, now):
    """gtime.ParseInterval (grafana-plugin-sdk-go): d, w, M, y relative to now
    in UTC, else time.ParseDuration. Nanoseconds."""
    m = re.fullmatch(r"(\d+)([dwMy])", text)
    if not m:
        return go_parse_duration(text)
    num, period = int(m.group(1)), m.group(2)
    if period == "d":
        later = now + dt.timedelta(days=num)
    elif period == "w":
        later = now + dt.timedelta(days=7 * num)
    elif period == "M":
        later = add_months(now, num)
    else:
        later = add_months(now, 12 * num)
    return int((later - now).total_seconds() * 1_000_000_000)


def gtime_format_interval(ns):
    """gtime.FormatInterval (what the backend writes for $__interval)."""
    year, day = 365 * 86400 * 10**9, 86400 * 10**9
    for size, unit in ((year, "y"), (day, "d"), (3600 * 10**9, "h"), (60 * 10**9, "m"), (10**9, "s"), (10**6, "ms")):
        if ns >= size:
            return f"{ns // size}{unit}"
    return "1ms"


def go_format_float_v(x):
    """Go's fmt %v of a float64: strconv's 'g' with the shortest digits,
    which switches to an exponent below 1e-4 and from 1e6 on (`1e+06`,
    `1.0368e+06`)."""
    if x == 0:
        return "0"
    d = Decimal(repr(float(x)))
    exponent = d.adjusted()
    digits = d.normalize()
    if exponent < -4 or exponent >= 6:
        mantissa = format(digits.scaleb(-exponent), "f")
        return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return format(digits, "f")


def go_rfc3339_nano(when):
    """time.Time.UTC().Format(time.RFC3339Nano) for a datetime with
    microseconds (Grafana's time range has milliseconds)."""
    base = when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        base += ("." + f"{when.microsecond:06d}").rstrip("0")
    return base + "Z"


# ---------------------------------------------------------------------------
# The PostgreSQL data source: frontend variables, backend macros
# ---------------------------------------------------------------------------

TEMPLATE_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)


def template_replace(text, variables, scoped, formatter):
    """templateSrv.replace with a data source's format function. `variables`
    maps a name to (definition, current values); `scoped` to a value that
    overrides it (builtins like __interval, and a repeated panel's value)."""

    def replace(m):
        name = m.group(1) or m.group(2) or m.group(4)
        explicit = m.group(3) or m.group(6)
        if name in scoped:
            value, definition = scoped[name]
        elif name in variables:
            definition, value = variables[name]
        else:
            return m.group(0)
        if explicit:
            return format_explicit(value, explicit)
        return formatter(value, definition)

    return TEMPLATE_VARIABLE.sub(replace, text)


def format_explicit(value, fmt):
    values = value if isinstance(value, list) else [value]
    if fmt == "raw":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    raise ValueError(f"format {fmt} is not ported")


def sql_interpolate_variable(value, definition):
    """SqlDatasource.interpolateVariable (@grafana/sql), with
    PostgresQueryModel.quoteLiteral."""

    def quote(v):
        return "'" + str(v).replace("'", "''") + "'"

    if isinstance(value, list):
        return ",".join(quote(v) for v in value)
    if isinstance(value, (int, float)):
        return str(value)
    if definition.get("multi") or definition.get("includeAll"):
        return quote(value)
    return str(value).replace("'", "''")


def pipe_format(value, _definition):
    """VariableFormatID.Pipe (Tempo's applyVariables)."""
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return str(value)


def sqleng_interpolate(sql, interval_ms, from_time, to_time):
    """sqleng.Interpolate, the global substitutions of Grafana's SQL
    backends, before the data source's macros."""
    sql = sql.replace("$__interval_ms", str(int(interval_ms)))
    sql = sql.replace("$__interval", gtime_format_interval(int(interval_ms) * 1_000_000))
    sql = sql.replace("$__unixEpochFrom()", str(int(from_time.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(to_time.timestamp())))
    return sql


MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


class MacroError(Exception):
    pass


def postgres_macros(sql, from_time, to_time, now, timescaledb=False):
    """postgresMacroEngine.Interpolate of pkg/tsdb/grafana-postgresql-datasource/macros.go."""
    errors = []

    def evaluate(name, args):
        if name == "__time":
            if not args:
                raise MacroError(f"missing time column argument for macro {name}")
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            if not args:
                raise MacroError(f"missing time column argument for macro {name}")
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            if not args:
                raise MacroError(f"missing time column argument for macro {name}")
            return f"{args[0]} BETWEEN '{go_rfc3339_nano(from_time)}' AND '{go_rfc3339_nano(to_time)}'"
        if name == "__timeFrom":
            return f"'{go_rfc3339_nano(from_time)}'"
        if name == "__timeTo":
            return f"'{go_rfc3339_nano(to_time)}'"
        if name in ("__timeGroup", "__unixEpochGroup"):
            if len(args) < 2:
                raise MacroError(f"macro {name} needs time column and interval and optional fill value")
            try:
                interval_ns = gtime_parse_interval(args[1].strip("'"), now)
            except ValueError:
                raise MacroError(f"error parsing interval {args[1]}")
            if len(args) == 3:
                fill = args[2]
                if fill not in ("NULL", "previous"):
                    try:
                        float(fill)
                    except ValueError:
                        raise MacroError(f"error parsing fill value {fill}")
            seconds = interval_ns / 1e9
            if name == "__timeGroup":
                if timescaledb:
                    return f"time_bucket('{seconds:.3f}s',{args[0]})"
                return f"floor(extract(epoch from {args[0]})/{go_format_float_v(seconds)})*{go_format_float_v(seconds)}"
            return f"floor(({args[0]})/{go_format_float_v(seconds)})*{go_format_float_v(seconds)}"
        if name == "__timeGroupAlias":
            return evaluate("__timeGroup", args) + ' AS "time"'
        if name == "__unixEpochGroupAlias":
            return evaluate("__unixEpochGroup", args) + ' AS "time"'
        if name == "__unixEpochFilter":
            if not args:
                raise MacroError(f"missing time column argument for macro {name}")
            return (f"{args[0]} >= {int(from_time.timestamp())} AND "
                    f"{args[0]} <= {int(to_time.timestamp())}")
        if name == "__unixEpochNanoFilter":
            if not args:
                raise MacroError(f"missing time column argument for macro {name}")
            return f"{args[0]} >= {unix_nanos(from_time)} AND {args[0]} <= {unix_nanos(to_time)}"
        if name == "__unixEpochNanoFrom":
            return str(unix_nanos(from_time))
        if name == "__unixEpochNanoTo":
            return str(unix_nanos(to_time))
        raise MacroError(f'unknown macro "{name}"')

    def replace(m):
        whole, name, argument_text = m.group(0), m.group(1), m.group(2)
        # Pre-5.3 compatibility: `$__timeGroup(…),` means the alias form.
        if name == "__timeGroup":
            index = sql.find(whole)
            if index >= 0:
                index += len(whole)
                if len(sql) > index and sql[index] == ",":
                    name = "__timeGroupAlias"
        args = [arg.strip(" ") for arg in argument_text.split(",")]
        try:
            return evaluate(name, args)
        except MacroError as err:
            errors.append(str(err))
            return "macro_error()"

    expanded = MACRO.sub(replace, sql)
    if errors:
        raise MacroError(errors[0])
    return expanded


def unix_nanos(when):
    return int(Decimal(when.timestamp()).quantize(Decimal("0.000001")) * 1_000_000_000)


# Postgres type OIDs, as pgx names them.
OID_NAMES = {16: "bool", 20: "int8", 21: "int2", 23: "int4", 25: "text", 114: "json", 700: "float4",
             701: "float8", 1042: "bpchar", 1043: "varchar", 1082: "date", 1114: "timestamp",
             1184: "timestamptz", 1700: "numeric", 3802: "jsonb", 19: "name", 17: "bytea"}
NUMERIC = {"int2", "int4", "int8", "float4", "float8", "numeric"}
STRINGS = {"text", "varchar", "bpchar", "name"}
TIMES = {"timestamptz", "timestamp", "date"}


def run_simple(conn, sql):
    """One simple-protocol query, as pgx's PgConn.Exec sends Grafana's SQL:
    (column names, type names, rows of text values). Raises on an error."""
    result = conn.pgconn.exec_(sql.encode())
    if result.status == pq.ExecStatus.FATAL_ERROR:
        message = (result.error_message or b"").decode(errors="replace").strip()
        raise RuntimeError(message)
    if result.status == pq.ExecStatus.EMPTY_QUERY:
        return [], [], []
    if result.status != pq.ExecStatus.TUPLES_OK:
        raise RuntimeError(f"unexpected status {result.status}")
    names = [result.fname(i).decode() for i in range(result.nfields)]
    types = [OID_NAMES.get(result.ftype(i), f"oid {result.ftype(i)}") for i in range(result.nfields)]
    rows = []
    for r in range(result.ntuples):
        row = []
        for c in range(result.nfields):
            value = result.get_value(r, c)
            row.append(None if value is None else bytes(value).decode())
        rows.append(row)
    return names, types, rows


def parse_pg_time(text, type_name):
    if type_name in TIMES:
        value = text.replace(" ", "T")
        if re.search(r"[+-]\d\d$", value):
            value += ":00"
        return dt.datetime.fromisoformat(value).timestamp() * 1000
    value = float(text)
    # sqleng.epochPrecisionToMS: seconds (e+09) to ms, nanoseconds (e+18) to ms.
    exponent = Decimal(repr(value)).adjusted() if value else 0
    if exponent == 9:
        return value * 1e3
    if exponent == 18:
        return value / 1e6
    return value


def check_time_series(title, names, types, rows):
    """What sqleng needs of a time-series result, and what the frames hold."""
    summary = {"rows": len(rows), "columns": names, "types": types}
    if not check(rows, f"{title}: no rows in the time range"):
        return summary
    if not check("time" in names, f"{title}: no `time` column in {names} (time series need one)"):
        return summary
    ti = names.index("time")
    check(types[ti] in TIMES or types[ti] in NUMERIC,
          f"{title}: the time column is {types[ti]}, not a timestamp or an epoch number")
    times = [parse_pg_time(row[ti], types[ti]) for row in rows if row[ti] is not None]
    check(len(times) == len(rows), f"{title}: NULL time values")
    check(times == sorted(times), f"{title}: rows not sorted by time (Grafana's long-to-wide refuses that)")
    value_columns = []
    label_columns = []
    for i, (name, type_name) in enumerate(zip(names, types)):
        if i == ti:
            continue
        if type_name in STRINGS:
            label_columns.append(name)
        elif type_name in NUMERIC:
            value_columns.append(name)
        else:
            fail(f"{title}: column {name} is {type_name}: Grafana converts value columns to float and fails")
    check(value_columns, f"{title}: no numeric value column in {names}")
    series = {}
    for row in rows:
        labels = tuple(row[names.index(c)] for c in label_columns)
        for column in value_columns:
            value = row[names.index(column)]
            if value is not None:
                series.setdefault((column,) + labels, []).append(float(value))
    summary["series"] = len(series)
    summary["time_range_ms"] = [min(times), max(times)] if times else None
    summary["values"] = {" ".join(k): [min(v), max(v)] for k, v in sorted(series.items())[:40]}
    return summary


def self_test_macros():
    """The port against cases of Grafana's macros_test.go (and sqleng's
    global substitutions), so a wrong port fails here rather than passing
    SQL Grafana would never send."""
    start = dt.datetime(2018, 4, 12, 18, 0, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(minutes=5)
    cases = [
        ("select $__time(time_column)", 'select time_column AS "time"'),
        ("WHERE $__timeFilter(time_column)",
         "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"),
        ("select $__timeFrom()", "select '2018-04-12T18:00:00Z'"),
        ("select $__timeTo()", "select '2018-04-12T18:05:00Z'"),
        ("SELECT $__timeGroup(time_column,'5m'), value",
         'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value'),
        ("SELECT $__timeGroup(time_column,'5m') as time, value",
         "SELECT floor(extract(epoch from time_column)/300)*300 as time, value"),
        ("$__timeGroupAlias(time_column , '5m')", 'floor(extract(epoch from time_column)/300)*300 AS "time"'),
        ("SELECT $__unixEpochGroup(time_column+time_adjustment,'5m')",
         "SELECT floor((time_column+time_adjustment)/300)*300"),
        ("select $__unixEpochFilter(time)", "select time >= 1523556000 AND time <= 1523556300"),
        ("select $__unixEpochNanoFrom()", "select 1523556000000000000"),
        ("$__timeGroup(t, 1h)", "floor(extract(epoch from t)/3600)*3600"),
        ("$__timeGroup(t, 12d)", "floor(extract(epoch from t)/1.0368e+06)*1.0368e+06"),
        ("$__timeGroup(t, 500ms)", "floor(extract(epoch from t)/0.5)*0.5"),
    ]
    for sql, want in cases:
        got = postgres_macros(sql, start, end, start)
        assert got == want, f"macro port: {sql!r} gave {got!r}, Grafana gives {want!r}"
    for sql, want in [("GROUP BY $__timeGroup(time_column , '12d')", "GROUP BY time_bucket('1036800.000s',time_column)"),
                      ("GROUP BY $__timeGroup(time_column , '20ms')", "GROUP BY time_bucket('0.020s',time_column)")]:
        got = postgres_macros(sql, start, end, start, timescaledb=True)
        assert got == want, f"macro port: {sql!r} gave {got!r}, Grafana gives {want!r}"
    half = dt.datetime(1960, 2, 1, 7, 0, 0, 500000, tzinfo=dt.timezone.utc)
    assert go_rfc3339_nano(half) == "1960-02-01T07:00:00.5Z", go_rfc3339_nano(half)
    try:
        postgres_macros("$__nope(x)", start, end, start)
        raise AssertionError("an unknown macro was expanded")
    except MacroError as err:
        assert str(err) == 'unknown macro "__nope"', err
    assert sqleng_interpolate("$__interval $__interval_ms", 600000, start, end) == "10m 600000"
    assert calculate_interval(0, 3_600_000, 1000, "15s") == (15000, "15s")
    assert calculate_interval(0, 86_400_000, 1000, "15s") == (60000, "1m")
    assert calculate_interval(0, 3_600_000, 1000, None) == (5000, "5s")


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

def http_get(url, headers, accept="application/json"):
    request = urllib.request.Request(url, headers={**headers, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def datasource_headers(ds):
    headers = {}
    json_data = ds.get("jsonData") or {}
    secure = ds.get("secureJsonData") or {}
    n = 1
    while f"httpHeaderName{n}" in json_data:
        headers[json_data[f"httpHeaderName{n}"]] = secure.get(f"httpHeaderValue{n}", "")
        n += 1
    return headers


HEX32 = re.compile(r"^[0-9a-f]{32}$")


def otlp_span_count(body):
    trace = body.get("trace", body)
    count = 0
    for batch in trace.get("resourceSpans", trace.get("batches", [])) or []:
        for scope in batch.get("scopeSpans", batch.get("instrumentationLibrarySpans", [])) or []:
            count += len(scope.get("spans", []))
    return count


def otlp_spans(body):
    trace = body.get("trace", body)
    for batch in trace.get("resourceSpans", trace.get("batches", [])) or []:
        for scope in batch.get("scopeSpans", batch.get("instrumentationLibrarySpans", [])) or []:
            yield from scope.get("spans", [])


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--deploy", required=True, help="the deploy/grafana folder")
    parser.add_argument("--http", required=True, help="host:port of --http")
    parser.add_argument("--pg", required=True, help="host:port of --pg")
    parser.add_argument("--key", default="", help="the project key (empty without projects)")
    parser.add_argument("--width", type=int, default=1000, help="panel width in px (maxDataPoints)")
    parser.add_argument("--panels", choices=["all", "postgres", "tempo"], default="all",
                        help="which panels to run: those of the PostgreSQL or the Tempo data source")
    args = parser.parse_args()
    self_test_macros()

    http_host, http_port = args.http.rsplit(":", 1)
    pg_host, pg_port = args.pg.rsplit(":", 1)
    env_file = read_env_file(os.path.join(args.deploy, "grafana.env"))
    env = {"LIGHTTRACE_HOST": http_host, "LIGHTTRACE_HTTP_PORT": http_port,
           "LIGHTTRACE_PG_PORT": pg_port, "LIGHTTRACE_KEY": args.key}
    check(http_host == pg_host, "the test serves HTTP and pg on one host")
    check(set(env_file) == set(env),
          f"grafana.env names {sorted(env_file)}, the test sets {sorted(env)}")

    # 1. Data sources.
    ds_path = os.path.join(args.deploy, "provisioning/datasources/lighttrace.yaml")
    with open(ds_path) as f:
        raw_text = f.read()
    used = referenced_variables("\n".join(l for l in raw_text.splitlines() if not l.lstrip().startswith("#")))
    check(used <= set(env_file), f"{ds_path} uses {sorted(used - set(env_file))}, which grafana.env does not set")
    raw = yaml.safe_load(raw_text)
    check(raw.get("apiVersion") == 1, "datasources apiVersion must be 1")
    datasources = [interpolate_tree(ds, env) for ds in raw.get("datasources", [])]
    by_uid = {}
    for ds in datasources:
        for field in ("name", "type", "uid", "url", "access"):
            check(ds.get(field), f"data source {ds.get('name')} has no {field}")
        check(ds["uid"] not in by_uid, f"duplicate uid {ds['uid']}")
        check(len(ds["uid"]) <= 40, f"uid {ds['uid']} is longer than Grafana's 40 characters")
        by_uid[ds["uid"]] = ds
        REPORT["datasources"][ds["uid"]] = {"type": ds["type"], "url": ds["url"]}
    types = {ds["type"]: ds for ds in datasources}
    check(set(types) == {"tempo", "jaeger", "grafana-postgresql-datasource"}, f"data source types {sorted(types)}")
    tempo, jaeger, postgres = (types.get("tempo"), types.get("jaeger"), types.get("grafana-postgresql-datasource"))
    check(tempo and tempo["uid"] == "lighttrace-tempo", "the Tempo data source's uid is lighttrace-tempo")
    check(tempo and tempo["url"] == f"http://{args.http}", f"Tempo url {tempo and tempo['url']}")
    check(jaeger and jaeger["url"] == f"http://{args.http}/jaeger", f"Jaeger url {jaeger and jaeger['url']}")
    check(postgres and postgres["url"] == args.pg, f"PostgreSQL url {postgres and postgres['url']}")
    for ds in (tempo, jaeger):
        headers = datasource_headers(ds)
        check(headers.get("Authorization") == f"Bearer {args.key}",
              f"{ds['name']}: Authorization header is {headers.get('Authorization')!r}")
        check(not (ds.get("jsonData") or {}).get("streamingEnabled", {}).get("search"),
              f"{ds['name']}: gRPC streaming is on, LightTrace serves HTTP only")
    if tempo:
        for unsupported in ("tracesToLogs", "tracesToLogsV2", "serviceMap", "tracesToMetrics", "lokiSearch"):
            check(unsupported not in tempo.get("jsonData", {}), f"Tempo data source sets {unsupported}")
    pg_json = postgres.get("jsonData", {})
    check(pg_json.get("sslmode") == "disable", "PostgreSQL sslmode must be disable (no TLS on --pg)")
    check((postgres.get("secureJsonData") or {}).get("password") == args.key, "PostgreSQL password is the key")
    check(not pg_json.get("timescaledb"), "TimescaleDB macros must be off")
    database = pg_json.get("database") or postgres.get("database")
    check(database, "PostgreSQL data source names a database")

    # 2. Health checks ("Save & test").
    status, body = http_get(f"{tempo['url']}/api/echo", datasource_headers(tempo), accept="*/*")
    check(status == 200 and body.strip() == b"echo", f"Tempo health (GET /api/echo): {status} {body[:200]!r}")
    REPORT["health"]["tempo"] = status
    status, body = http_get(f"{jaeger['url']}/api/services", datasource_headers(jaeger))
    services_jaeger = json.loads(body).get("data") if status == 200 else None
    check(status == 200 and services_jaeger, f"Jaeger health (GET /api/services): {status} {body[:200]!r}")
    REPORT["health"]["jaeger"] = services_jaeger
    if args.key:
        status, _ = http_get(f"{tempo['url']}/api/echo", {"Authorization": "Bearer not-the-key"}, accept="*/*")
        status_search, _ = http_get(f"{tempo['url']}/api/search?q=%7B%7D", {"Authorization": "Bearer not-the-key"})
        check(status_search == 401, f"Tempo search with a wrong key answered {status_search}, not 401")

    host, port = postgres["url"].rsplit(":", 1)
    connect = dict(host=host, port=int(port), user=postgres.get("user"), dbname=database,
                   sslmode=pg_json.get("sslmode"), connect_timeout=10, application_name="Grafana")
    if args.key:
        try:
            psycopg.connect(**connect, password="not-the-key").close()
            fail("the PostgreSQL data source connected with a wrong key")
        except psycopg.OperationalError:
            pass
    conn = psycopg.connect(**connect, password=postgres["secureJsonData"]["password"] or None, autocommit=True)
    ping = conn.pgconn.exec_(b"-- ping")
    check(ping.status == pq.ExecStatus.EMPTY_QUERY, f"PostgreSQL health (pgx ping): {ping.status}")
    REPORT["health"]["postgres"] = run_simple(conn, "SELECT 1")[2]

    # 3. Dashboards.
    provider_path = os.path.join(args.deploy, "provisioning/dashboards/lighttrace.yaml")
    with open(provider_path) as f:
        providers = yaml.safe_load(f)
    check(providers.get("apiVersion") == 1, "dashboard providers apiVersion must be 1")
    for provider in providers.get("providers", []):
        check(provider.get("type") == "file", f"provider {provider.get('name')} is not a file provider")
        check((provider.get("options") or {}).get("path"), f"provider {provider.get('name')} has no options.path")
    dashboard_dir = os.path.join(args.deploy, "dashboards")
    dashboard_files = sorted(f for f in os.listdir(dashboard_dir) if f.endswith(".json"))
    check(dashboard_files == ["lighttrace.json"], f"dashboards: {dashboard_files}")
    with open(os.path.join(dashboard_dir, "lighttrace.json")) as f:
        dashboard = json.load(f)
    check(dashboard.get("uid") and len(dashboard["uid"]) <= 40, "the dashboard has a uid")
    check(36 <= dashboard.get("schemaVersion", 0) <= 41, f"schemaVersion {dashboard.get('schemaVersion')}")
    check(dashboard.get("id") is None, "a provisioned dashboard has no id")

    def ds_of(ref, where):
        if not isinstance(ref, dict) or ref.get("uid") not in by_uid:
            fail(f"{where}: data source {ref!r} is not a provisioned uid ({sorted(by_uid)})")
            return None
        ds = by_uid[ref["uid"]]
        check(ref.get("type") == ds["type"], f"{where}: data source type {ref.get('type')} != {ds['type']}")
        return ds

    # Grafana's time range has millisecond precision.
    now = dt.datetime.now(dt.timezone.utc)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    time_range = dashboard.get("time", {})
    from_time = parse_relative(time_range.get("from", "now-1h"), now)
    to_time = parse_relative(time_range.get("to", "now"), now)
    from_ms, to_ms = int(from_time.timestamp() * 1000), int(to_time.timestamp() * 1000)
    REPORT["range"] = [go_rfc3339_nano(from_time), go_rfc3339_nano(to_time)]

    def run_pg(sql, interval_ms, where):
        """Backend side: global substitutions, macros, one simple query."""
        expanded = sqleng_interpolate(sql, interval_ms, from_time, to_time)
        try:
            expanded = postgres_macros(expanded, from_time, to_time, now, bool(pg_json.get("timescaledb")))
        except MacroError as err:
            fail(f"{where}: interpolation failed: {err}")
            return None, None
        try:
            return expanded, run_simple(conn, expanded)
        except Exception as err:  # noqa: BLE001 - any server error is the finding
            fail(f"{where}: db query error: {err}\n--- SQL sent ---\n{expanded}")
            return expanded, None

    # 4. Template variables.
    variables = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        check(variable.get("type") == "query", f"variable {name} is a query variable")
        ds = ds_of(variable.get("datasource"), f"variable {name}")
        query = variable.get("query")
        query = query.get("rawSql") if isinstance(query, dict) else query
        check(query, f"variable {name} has a query")
        sql = template_replace(query, variables, {}, sql_interpolate_variable)
        expanded, result = run_pg(sql, 1000, f"variable {name}")
        if not result:
            continue
        names, types_, rows = result
        check(types_ and types_[0] in STRINGS, f"variable {name}: first column is {types_[:1]}")
        values = [row[0] for row in rows if row[0] is not None]
        if variable.get("regex"):
            values = [v for v in values if re.search(variable["regex"], v)]
        if variable.get("sort") == 1:
            values = sorted(set(values))
        check(values, f"variable {name}: no values in the time range")
        # The dashboard's default (All) and a one-value selection, both run below.
        variables[name] = (variable, values)
        REPORT["variable"][name] = {"sql": expanded, "values": values}
    services = variables.get("service", ({}, []))[1]
    check(services, "the `service` variable yields services")

    # 5.–7. Panels.
    panels = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)), f"panel ids repeat: {ids}")
    kinds_seen = set()
    for panel in panels:
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "")
        grid = panel.get("gridPos", {})
        check(all(k in grid for k in ("h", "w", "x", "y")) and grid["x"] + grid["w"] <= 24,
              f"{title}: gridPos {grid}")
        panel_ds = ds_of(panel.get("datasource"), f"panel {title}")
        repeat = panel.get("repeat")
        selections = [{}]
        if repeat:
            check(repeat in variables, f"{title}: repeats over unknown variable {repeat}")
            definition, values = variables.get(repeat, ({}, []))
            selections = [{repeat: (value, definition)} for value in values]
        for target in panel.get("targets", []):
            ds = ds_of(target.get("datasource") or panel.get("datasource"), f"panel {title} target")
            if ds is None or panel_ds is None:
                continue
            kinds_seen.add(ds["type"])
            if args.panels != "all" and ds["type"] != {"postgres": "grafana-postgresql-datasource",
                                                       "tempo": "tempo"}[args.panels]:
                continue
            low_limit = panel.get("interval") or (ds.get("jsonData") or {}).get("timeInterval")
            interval_ms, interval = calculate_interval(from_ms, to_ms, panel.get("maxDataPoints") or args.width,
                                                       low_limit)
            for selection in selections:
                scoped = {"__interval": (interval, {}), "__interval_ms": (str(interval_ms), {}), **selection}
                label = title + (f" [{', '.join(v[0] for v in selection.values())}]" if selection else "")
                if ds["type"] == "grafana-postgresql-datasource":
                    check_pg_target(panel, target, label, variables, scoped, interval_ms, run_pg, conn, by_uid,
                                    from_ms, to_ms, from_time, to_time)
                elif ds["type"] == "tempo":
                    check_tempo_target(panel, target, label, variables, scoped, ds, from_time, to_time, conn)
                else:
                    fail(f"{title}: no check for data source type {ds['type']}")
    check(kinds_seen == {"grafana-postgresql-datasource", "tempo"},
          f"the panels use {sorted(kinds_seen)}: PostgreSQL and Tempo panels expected")

    REPORT["checked"] = {"postgres": len(REPORT["panels"]), "tempo": len(REPORT["tempo"]),
                         "links": len(REPORT["links"])}
    REPORT["failures"] = FAILURES
    print(json.dumps(REPORT, default=str))
    if FAILURES:
        print(f"\n{len(FAILURES)} check(s) failed:", file=sys.stderr)
        for message in FAILURES:
            print(f"  - {message}", file=sys.stderr)
        sys.exit(1)


def check_pg_target(panel, target, label, variables, scoped, interval_ms, run_pg, conn, by_uid, from_ms, to_ms,
                    from_time, to_time):
    check(target.get("rawQuery") and target.get("editorMode") == "code", f"{label}: raw SQL in code mode")
    fmt = target.get("format", "time_series")
    # Grafana versions differ in what they do with SQL comments before the
    # macros (newer ones strip most): the shipped SQL has none.
    check("--" not in target["rawSql"] and "/*" not in target["rawSql"], f"{label}: SQL comments")
    sql = template_replace(target["rawSql"], variables, scoped, sql_interpolate_variable)
    expanded, result = run_pg(sql, interval_ms, label)
    entry = {"panel": label, "format": fmt, "sql": expanded}
    REPORT["panels"].append(entry)
    if not result:
        return
    names, types, rows = result
    if fmt == "time_series":
        entry.update(check_time_series(label, names, types, rows))
        check(panel.get("type") in ("timeseries", "heatmap", "barchart", "stat"),
              f"{label}: a time-series query in a {panel.get('type')} panel")
        check_values(panel, label, names, rows)
        return
    check(fmt == "table", f"{label}: format {fmt}")
    entry.update({"rows": len(rows), "columns": names, "types": types})
    check(rows, f"{label}: no rows in the time range")
    check("trace_id" in names, f"{label}: no trace_id column in {names}")
    if "trace_id" not in names or not rows:
        return
    ti = names.index("trace_id")
    trace_ids = [row[ti] for row in rows]
    check(all(t and HEX32.match(t) for t in trace_ids), f"{label}: trace ids {trace_ids[:3]}…")
    if "time" in names:
        check(types[names.index("time")] in TIMES, f"{label}: time column is {types[names.index('time')]}")
        times = [parse_pg_time(row[names.index("time")], types[names.index("time")]) for row in rows]
        check(all(from_ms - 1 <= t <= to_ms + 1 for t in times), f"{label}: rows outside the time range")
    if "duration" in names:
        durations = [float(row[names.index("duration")]) for row in rows]
        check(durations == sorted(durations, reverse=True), f"{label}: not slowest first: {durations[:5]}")
        # The slowest root span in the range, by an independent query.
        top = run_simple(conn, "SELECT max(duration_ns) / 1e6 FROM spans WHERE parent_span_id IS NULL AND "
                               f"start_time >= to_timestamp_millis({from_ms}) AND "
                               f"start_time <= to_timestamp_millis({to_ms})")[2][0][0]
        entry["slowest_root_ms"] = float(top)
        check(durations[0] <= float(top) + 1e-6, f"{label}: {durations[0]} ms is above the slowest root span {top}")
    # 6. The data links of the trace id column, with the slowest row's id.
    links = []
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        if override.get("matcher", {}).get("options") == "trace_id":
            for prop in override.get("properties", []):
                if prop.get("id") == "links":
                    links.extend(prop.get("value", []))
    check(links, f"{label}: no data link on trace_id")
    for link in links:
        follow_link(link, trace_ids[0], label, by_uid, conn, from_ms, to_ms)


def check_values(panel, label, names, rows):
    """Sanity of the numbers each kind of panel shows."""
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
    columns = {n: i for i, n in enumerate(names)}
    if {"p50", "p90", "p99"} <= set(columns):
        for row in rows:
            p50, p90, p99 = (float(row[columns[c]]) for c in ("p50", "p90", "p99"))
            if not check(0 < p50 <= p90 * 1.0001 and p90 <= p99 * 1.0001,
                         f"{label}: percentiles out of order {p50} {p90} {p99}"):
                break
    if unit == "percentunit":
        values = [float(row[i]) for row in rows for n, i in columns.items() if n not in ("time", "metric")]
        check(all(0 <= v <= 1 for v in values), f"{label}: a rate outside [0, 1]")
    if unit == "reqps":
        values = [float(row[i]) for row in rows for n, i in columns.items() if n not in ("time", "metric")]
        check(values and all(v > 0 for v in values), f"{label}: request rates {values[:5]}")


def interpolate_link(url, value, from_ms, to_ms):
    url = url.replace("${__value.raw}", value).replace("${__value.text}", value)
    url = url.replace("${__from}", str(from_ms)).replace("${__to}", str(to_ms)).replace("${__org}", "1")
    check("${" not in url, f"data link keeps an unknown variable: {url}")
    return url


def follow_link(link, trace_id, label, by_uid, conn, from_ms, to_ms):
    url = interpolate_link(link.get("url", ""), trace_id, from_ms, to_ms)
    parts = urllib.parse.urlsplit(url)
    where = f"{label}: link {link.get('title')!r}"
    if not check(parts.path == "/explore", f"{where}: not an Explore link: {url}"):
        return
    query = urllib.parse.parse_qs(parts.query)
    check(query.get("schemaVersion") == ["1"], f"{where}: Explore schemaVersion {query.get('schemaVersion')}")
    panes = json.loads(query["panes"][0])
    expected = int(run_simple(conn, f"SELECT count(*) FROM spans WHERE trace_id = '{trace_id}'")[2][0][0])
    for pane in panes.values():
        ds = by_uid.get(pane.get("datasource"))
        if not check(ds, f"{where}: pane data source {pane.get('datasource')} is not provisioned"):
            continue
        check(float(pane["range"]["from"]) == from_ms and float(pane["range"]["to"]) == to_ms,
              f"{where}: range {pane.get('range')}")
        for q in pane.get("queries", []):
            check((q.get("datasource") or {}).get("uid") == ds["uid"], f"{where}: query data source")
            check(q.get("query") == trace_id, f"{where}: query is {q.get('query')!r}, not the trace id")
            headers = datasource_headers(ds)
            shift = 3600
            if ds["type"] == "tempo":
                check(q.get("queryType") == "traceql", f"{where}: Tempo queryType {q.get('queryType')}")
                # A hex-only TraceQL query is a trace id lookup (isTraceIdQuery),
                # with the range widened by the data source's time shift.
                start, end = from_ms // 1000 - shift, to_ms // 1000 + shift
                status, body = http_get(f"{ds['url']}/api/v2/traces/{trace_id}?start={start}&end={end}", headers)
                got = otlp_span_count(json.loads(body)) if status == 200 else None
                status_pb, body_pb = http_get(f"{ds['url']}/api/traces/{trace_id}?start={start}&end={end}", headers,
                                              accept="application/protobuf")
                check(status_pb == 200 and body_pb, f"{where}: GET /api/traces/{trace_id} (protobuf): {status_pb}")
            else:
                status, body = http_get(f"{ds['url']}/api/traces/{trace_id}", headers)
                got = sum(len(t.get("spans", [])) for t in json.loads(body).get("data") or []) \
                    if status == 200 else None
            check(status == 200 and got == expected,
                  f"{where}: the {ds['type']} data source's trace view has {got} spans "
                  f"(status {status}), SQL has {expected}")
            REPORT["links"].append({"panel": label, "datasource": ds["uid"], "trace_id": trace_id,
                                    "spans": got, "status": status})


def check_tempo_target(panel, target, label, variables, scoped, ds, from_time, to_time, conn):
    query = template_replace(target.get("query", ""), variables, scoped, pipe_format)
    entry = {"panel": label, "query": query}
    REPORT["tempo"].append(entry)
    check("$" not in query, f"{label}: variables left in {query}")
    metrics = re.search(r"\|\s*(rate|count_over_time|avg_over_time|sum_over_time|max_over_time|min_over_time|"
                        r"quantile_over_time|histogram_over_time|compare)\s*\(", query)
    if not check(metrics, f"{label}: not a TraceQL metrics query: {query}"):
        return
    instant = target.get("metricsQueryType") == "instant"
    endpoint = "/api/metrics/query" if instant else "/api/metrics/query_range"
    params = {"q": query, "start": str(int(from_time.timestamp())), "end": str(int(to_time.timestamp()))}
    if target.get("step"):
        params["step"] = target["step"]
    if target.get("exemplars") is not None:
        params["exemplars"] = str(int(target["exemplars"]))
    url = f"{ds['url']}{endpoint}?{urllib.parse.urlencode(params)}"
    status, body = http_get(url, datasource_headers(ds))
    entry["status"] = status
    if status == 404:
        fail(f"{label}: GET {endpoint} answered 404: LightTrace does not serve Tempo's TraceQL metrics "
             f"endpoint {endpoint} (yet), so this panel shows nothing. Request: {url}")
        return
    if not check(status == 200, f"{label}: GET {endpoint} answered {status}: {body[:500]!r}"):
        return
    response = json.loads(body)
    series = response.get("series")
    if not check(isinstance(series, list) and series, f"{label}: no series in {str(response)[:300]}"):
        return
    entry["series"] = len(series)
    is_quantile = metrics.group(1) == "quantile_over_time"
    is_histogram = metrics.group(1) == "histogram_over_time"
    exemplars = []
    start_ms, end_ms = from_time.timestamp() * 1000, to_time.timestamp() * 1000
    label_keys = set()
    for s in series:
        labels = {}
        for kv in s.get("labels", []):
            value = kv.get("value", {})
            check(isinstance(kv.get("key"), str) and len(value) == 1,
                  f"{label}: a label is not {{key, value: {{xValue}}}}: {kv}")
            labels[kv.get("key")] = next(iter(value.values()), None)
        label_keys |= set(labels)
        samples = s.get("samples", [])
        check(samples, f"{label}: series {labels} has no samples")
        for sample in samples:
            ts = int(sample.get("timestampMs", 0))  # jsonpb: int64 as a string or a number
            check(start_ms - 3_600_000 <= ts <= end_ms + 3_600_000, f"{label}: sample at {ts} outside the range")
            # jsonpb leaves out zeros and writes non-finite doubles as strings.
            check(isinstance(sample.get("value", 0), (int, float)) or sample.get("value") in ("NaN", "Infinity"),
                  f"{label}: sample value {sample}")
        for exemplar in s.get("exemplars", []) or []:
            exemplars.append((labels, exemplar))
    if "by (resource.service.name)" in query:
        check("resource.service.name" in label_keys, f"{label}: series labels {sorted(label_keys)}")
    if is_quantile:
        check("p" in label_keys, f"{label}: quantile series have no `p` label ({sorted(label_keys)})")
    if is_histogram:
        check("__bucket" in label_keys, f"{label}: histogram series have no `__bucket` label")
    entry["exemplars"] = len(exemplars)
    if not check(exemplars, f"{label}: no exemplars with exemplars={params.get('exemplars')}: the dots that "
                            "link slow buckets to traces are missing"):
        return
    # The slowest exemplar: its trace must open, and hold a span that long.
    slowest = max(exemplars, key=lambda e: float(e[1].get("value", 0)))
    exemplar_labels = {kv.get("key"): next(iter(kv.get("value", {}).values()), None)
                       for kv in slowest[1].get("labels", [])}
    trace_id = (exemplar_labels.get("trace:id") or "").replace('"', "")
    entry["slowest_exemplar"] = {"trace_id": trace_id, "value": slowest[1].get("value"),
                                 "series": slowest[0]}
    # Tempo writes trace ids in hex, leading zeros trimmed; Grafana links them as they are.
    if not check(re.fullmatch(r"[0-9a-f]{1,32}", trace_id),
                 f"{label}: exemplar trace:id {trace_id!r} is not a hex trace id"):
        return
    ts = int(slowest[1].get("timestampMs", 0))
    check(start_ms - 60_000 <= ts <= end_ms + 60_000, f"{label}: exemplar at {ts} outside the range")
    headers = datasource_headers(ds)
    start, end = int(from_time.timestamp()) - 3600, int(to_time.timestamp()) + 3600
    status, body = http_get(f"{ds['url']}/api/v2/traces/{trace_id}?start={start}&end={end}", headers)
    if not check(status == 200, f"{label}: the exemplar's trace {trace_id} answers {status}"):
        return
    durations = [(int(span.get("endTimeUnixNano", 0)) - int(span.get("startTimeUnixNano", 0))) / 1e9
                 for span in otlp_spans(json.loads(body))]
    value = float(slowest[1].get("value", 0))
    check(any(abs(d - value) <= max(1e-3, value * 0.01) for d in durations),
          f"{label}: exemplar value {value} s matches no span of trace {trace_id} ({sorted(durations)[-3:]})")
    # The slowest exemplar is among the slow spans of the range.
    from_ms, to_ms = int(from_time.timestamp() * 1000), int(to_time.timestamp() * 1000)
    p90 = float(run_simple(conn, "SELECT approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_ns) / 1e9 "
                                 "FROM spans WHERE kind = 'server' AND "
                                 f"start_time >= to_timestamp_millis({from_ms}) AND "
                                 f"start_time <= to_timestamp_millis({to_ms})")[2][0][0])
    check(value >= p90, f"{label}: the slowest exemplar ({value} s) is below the p90 of server spans ({p90} s)")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - a check that cannot go on: say what failed before it
        import traceback

        traceback.print_exc()
        if FAILURES:
            print(f"\nstopped after {len(FAILURES)} failed check(s):", file=sys.stderr)
            for message in FAILURES:
                print(f"  - {message}", file=sys.stderr)
        sys.exit(1)
