//! Settings of `lighttrace serve`: flags, `LIGHTTRACE_*` variables, a TOML file.
//!
//! Every setting comes from the first of these that has it:
//!
//! 1. the command-line flag (`--buffer-max-bytes 256MiB`);
//! 2. the environment variable `LIGHTTRACE_<FLAG>` (`LIGHTTRACE_BUFFER_MAX_BYTES=256MiB`);
//! 3. the TOML file named by `--config` / `LIGHTTRACE_CONFIG`
//!    (`buffer_max_bytes = "256MiB"`; the keys are the flag names with `_`);
//! 4. the default, which suits a laptop.
//!
//! Sizes are a number of bytes or a number with a unit (`64KiB`, `16MiB`, `1GiB`,
//! and the decimal `KB`, `MB`, `GB`). Durations are seconds or a number with a
//! unit (`500ms`, `30s`, `5m`, `1h`, `1d`). In the TOML file both may also be
//! plain numbers. An example file, with every key:
//!
//! ```toml
//! data = "/var/lib/lighttrace"        # local data directory (the WAL is always here)
//! store = "s3://bucket/prefix"        # Parquet files in object storage instead
//! http = "0.0.0.0:4318"               # OTLP/HTTP and the SQL API
//! grpc = "0.0.0.0:4317"               # OTLP/gRPC (TraceService/Export)
//! pg = "127.0.0.1:5432"               # Postgres wire protocol (off unless set)
//! project = ["1:key-one", "2:key-two"] # projects and keys: authentication on
//! flush_max_age = "60s"               # flush a partition once its oldest span is this old
//! flush_partition_bytes = "64MiB"     # … or once it holds this much Arrow data
//! buffer_max_bytes = "512MiB"         # all buffered data; beyond it ingest answers 503
//! wal_segment_bytes = "64MiB"         # WAL segment size
//! compaction_interval = "60s"         # merge closed hours' small files this often ("off": never)
//! compaction_min_age = "10m"          # … once their hour ended this long ago
//! compaction_target_rows = 524288     # … into files of at most this many spans
//! max_body_bytes = "16MiB"            # largest request body on the wire
//! max_decompressed_bytes = "64MiB"    # largest OTLP body once decompressed
//! max_inflight_ingest = 32            # ingest requests handled at once; more get 503
//! max_concurrent_queries = 4          # SQL queries run at once; more get 503
//! body_read_timeout = "30s"           # a request body must arrive within this
//! query_timeout = "30s"               # wall-clock limit of one SQL query
//! query_memory_limit = "1GiB"         # memory limit of one SQL query
//! query_threads = 2                   # threads (and partitions) of the query runtime
//! shutdown_timeout = "30s"            # SIGTERM to exit, at most
//! log_level = "info"                  # tracing filter, e.g. "info,lighttrace_storage=debug"
//! log_format = "text"                 # or "json"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use lighttrace_query::QueryConfig;
use lighttrace_server::{ProjectKey, Projects, ServerConfig};
use lighttrace_storage::{StorageConfig, StoreLocation};
use serde::{Deserialize, Deserializer};

/// Default `--data`.
pub const DEFAULT_DATA_DIR: &str = "./lighttrace-data";
/// Default `--http`.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:4318";
/// Default `--grpc`.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:4317";
/// Default `--compaction-interval`.
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(60);
/// Default `--shutdown-timeout`: the contract is "exit within 30 s of SIGTERM".
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `lighttrace serve`. Each also reads `LIGHTTRACE_<FLAG>`; unset ones
/// fall back to the `--config` file, then to the defaults.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML file with settings (keys are the flag names with `_`); flags and
    /// environment variables override it.
    #[arg(long, value_name = "FILE", env = "LIGHTTRACE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Local data directory: the WAL, and the lake unless --store is given
    /// [default: ./lighttrace-data].
    #[arg(long, value_name = "DIR", env = "LIGHTTRACE_DATA")]
    pub data: Option<PathBuf>,

    /// Object store for the Parquet files: s3://bucket/prefix, file:///path.
    /// S3 credentials, region and endpoint come from the AWS_* variables.
    #[arg(long, value_name = "URL", env = "LIGHTTRACE_STORE")]
    pub store: Option<String>,

    /// Address for HTTP: OTLP/HTTP, the SQL API, /health [default: 127.0.0.1:4318].
    #[arg(long, value_name = "ADDR", env = "LIGHTTRACE_HTTP")]
    pub http: Option<String>,

    /// Address for OTLP/gRPC, `TraceService/Export` [default: 127.0.0.1:4317].
    #[arg(long, value_name = "ADDR", env = "LIGHTTRACE_GRPC")]
    pub grpc: Option<String>,

    /// Address for the Postgres wire protocol: the SQL API for psql, psycopg,
    /// Grafana's PostgreSQL data source and BI tools (password: a project key
    /// when projects are configured) [default: off].
    #[arg(long, value_name = "ADDR", env = "LIGHTTRACE_PG")]
    pub pg: Option<String>,

    /// A project and its key, ID:KEY (repeatable; LIGHTTRACE_PROJECT takes a
    /// comma-separated list). With any, every request needs a key (`Authorization:
    /// Bearer KEY`, `x-lighttrace-key`, or the Sentry DSN's key), writes to the
    /// key's project and reads only it. Use digits for ids Sentry DSNs address.
    #[arg(
        long = "project",
        value_name = "ID:KEY",
        env = "LIGHTTRACE_PROJECT",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub projects: Vec<String>,

    /// Flush a buffered partition to Parquet once its oldest span is this old
    /// [default: 60s].
    #[arg(long, alias = "flush-interval", value_name = "DURATION", env = "LIGHTTRACE_FLUSH_MAX_AGE", value_parser = parse_duration)]
    pub flush_max_age: Option<Duration>,

    /// Flush a buffered partition once it holds this much Arrow data [default: 64MiB].
    #[arg(long, value_name = "SIZE", env = "LIGHTTRACE_FLUSH_PARTITION_BYTES", value_parser = parse_size)]
    pub flush_partition_bytes: Option<u64>,

    /// Bound on all buffered data; ingest beyond it answers 503 [default: 512MiB].
    #[arg(long, value_name = "SIZE", env = "LIGHTTRACE_BUFFER_MAX_BYTES", value_parser = parse_size)]
    pub buffer_max_bytes: Option<u64>,

    /// Start a new WAL segment past this size [default: 64MiB].
    #[arg(long, value_name = "SIZE", env = "LIGHTTRACE_WAL_SEGMENT_BYTES", value_parser = parse_size)]
    pub wal_segment_bytes: Option<u64>,

    /// How often the small files of closed hours are merged (compaction);
    /// `off`: never [default: 60s].
    #[arg(long, value_name = "DURATION|off", env = "LIGHTTRACE_COMPACTION_INTERVAL", value_parser = parse_interval)]
    pub compaction_interval: Option<Interval>,

    /// Compact an hour's files once the hour ended this long ago; later spans of
    /// it land in new files [default: 10m].
    #[arg(long, value_name = "DURATION", env = "LIGHTTRACE_COMPACTION_MIN_AGE", value_parser = parse_duration_or_zero)]
    pub compaction_min_age: Option<Duration>,

    /// Spans per compacted file at most; files of half as many stay as they are
    /// [default: 524288].
    #[arg(long, value_name = "N", env = "LIGHTTRACE_COMPACTION_TARGET_ROWS")]
    pub compaction_target_rows: Option<u64>,

    /// Largest request body on the wire, before decompression; larger is 413
    /// [default: 16MiB].
    #[arg(long, value_name = "SIZE", env = "LIGHTTRACE_MAX_BODY_BYTES", value_parser = parse_size)]
    pub max_body_bytes: Option<u64>,

    /// Largest OTLP body after decompression; larger is 413 [default: 64MiB].
    #[arg(long, value_name = "SIZE", env = "LIGHTTRACE_MAX_DECOMPRESSED_BYTES", value_parser = parse_size)]
    pub max_decompressed_bytes: Option<u64>,

    /// Ingest requests handled at once; more are answered 503 [default: 32].
    #[arg(long, value_name = "N", env = "LIGHTTRACE_MAX_INFLIGHT_INGEST")]
    pub max_inflight_ingest: Option<usize>,

    /// SQL queries run at once (each within --query-memory-limit); more are
    /// answered 503 [default: 4].
    #[arg(long, value_name = "N", env = "LIGHTTRACE_MAX_CONCURRENT_QUERIES")]
    pub max_concurrent_queries: Option<usize>,

    /// A request body must have arrived within this time, else 503 [default: 30s].
    #[arg(long, value_name = "DURATION", env = "LIGHTTRACE_BODY_READ_TIMEOUT", value_parser = parse_duration)]
    pub body_read_timeout: Option<Duration>,

    /// Wall-clock limit of one SQL query [default: 30s].
    #[arg(long, value_name = "DURATION", env = "LIGHTTRACE_QUERY_TIMEOUT", value_parser = parse_duration)]
    pub query_timeout: Option<Duration>,

    /// Memory limit of one SQL query [default: 1GiB].
    #[arg(long, value_name = "SIZE", env = "LIGHTTRACE_QUERY_MEMORY_LIMIT", value_parser = parse_size)]
    pub query_memory_limit: Option<u64>,

    /// Threads of the query runtime, and partitions of one query [default: the
    /// number of CPUs].
    #[arg(long, value_name = "N", env = "LIGHTTRACE_QUERY_THREADS")]
    pub query_threads: Option<usize>,

    /// After SIGTERM or Ctrl-C, exit (non-zero) if the shutdown has not finished
    /// within this time [default: 30s].
    #[arg(long, value_name = "DURATION", env = "LIGHTTRACE_SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// Log filter, e.g. `info` or `info,lighttrace_storage=debug`; RUST_LOG is
    /// used when neither this flag nor its variable is set [default: info].
    #[arg(long, value_name = "FILTER", env = "LIGHTTRACE_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Log line format [default: text].
    #[arg(long, value_enum, value_name = "FORMAT", env = "LIGHTTRACE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The `--config` file. Every key is optional; unknown keys are an error, so a
/// typo does not silently fall back to a default. See the module docs for an
/// example with every key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Local data directory (`--data`).
    pub data: Option<PathBuf>,
    /// Object store URL for the Parquet files (`--store`).
    pub store: Option<String>,
    /// HTTP listen address (`--http`).
    pub http: Option<String>,
    /// OTLP/gRPC listen address (`--grpc`).
    pub grpc: Option<String>,
    /// Postgres wire protocol listen address (`--pg`); none: off.
    pub pg: Option<String>,
    /// Projects and keys, `ID:KEY` (`--project`).
    #[serde(default, rename = "project")]
    pub projects: Option<Vec<String>>,
    /// Flush a partition once its oldest span is this old (`--flush-max-age`).
    #[serde(default, deserialize_with = "de_duration")]
    pub flush_max_age: Option<Duration>,
    /// Flush a partition once it holds this much (`--flush-partition-bytes`).
    #[serde(default, deserialize_with = "de_size")]
    pub flush_partition_bytes: Option<u64>,
    /// Bound on all buffered data (`--buffer-max-bytes`).
    #[serde(default, deserialize_with = "de_size")]
    pub buffer_max_bytes: Option<u64>,
    /// WAL segment size (`--wal-segment-bytes`).
    #[serde(default, deserialize_with = "de_size")]
    pub wal_segment_bytes: Option<u64>,
    /// Compaction interval or `off` (`--compaction-interval`).
    #[serde(default, deserialize_with = "de_interval")]
    pub compaction_interval: Option<Interval>,
    /// Age of an hour before its files are compacted (`--compaction-min-age`).
    #[serde(default, deserialize_with = "de_duration_or_zero")]
    pub compaction_min_age: Option<Duration>,
    /// Spans per compacted file (`--compaction-target-rows`).
    pub compaction_target_rows: Option<u64>,
    /// Largest request body on the wire (`--max-body-bytes`).
    #[serde(default, deserialize_with = "de_size")]
    pub max_body_bytes: Option<u64>,
    /// Largest OTLP body once decompressed (`--max-decompressed-bytes`).
    #[serde(default, deserialize_with = "de_size")]
    pub max_decompressed_bytes: Option<u64>,
    /// Ingest requests handled at once (`--max-inflight-ingest`).
    pub max_inflight_ingest: Option<usize>,
    /// SQL queries run at once (`--max-concurrent-queries`).
    pub max_concurrent_queries: Option<usize>,
    /// Deadline for a request body (`--body-read-timeout`).
    #[serde(default, deserialize_with = "de_duration")]
    pub body_read_timeout: Option<Duration>,
    /// Wall-clock limit of one query (`--query-timeout`).
    #[serde(default, deserialize_with = "de_duration")]
    pub query_timeout: Option<Duration>,
    /// Memory limit of one query (`--query-memory-limit`).
    #[serde(default, deserialize_with = "de_size")]
    pub query_memory_limit: Option<u64>,
    /// Threads of the query runtime (`--query-threads`).
    pub query_threads: Option<usize>,
    /// Longest shutdown (`--shutdown-timeout`).
    #[serde(default, deserialize_with = "de_duration")]
    pub shutdown_timeout: Option<Duration>,
    /// Log filter (`--log-level`); RUST_LOG wins over this one.
    pub log_level: Option<String>,
    /// Log line format (`--log-format`).
    pub log_format: Option<LogFormat>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// Everything `lighttrace serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: String,
    pub grpc: String,
    /// `None`: no Postgres wire protocol.
    pub pg: Option<String>,
    pub storage: StorageConfig,
    pub server: ServerConfig,
    pub query: QueryConfig,
    pub shutdown_timeout: Duration,
    /// `None`: RUST_LOG, else `info`.
    pub log_filter: Option<String>,
    pub log_format: LogFormat,
}

impl Settings {
    /// Merges flags (with their variables), the config file and the defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file, std::env::var("RUST_LOG").ok())
    }

    fn merge(args: ServeArgs, file: FileConfig, rust_log: Option<String>) -> anyhow::Result<Self> {
        let data = args
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let mut storage = StorageConfig::new(data);
        // The receivers log requests in the WAL; replay decodes them with this.
        storage.wal_decoder = Some(lighttrace_server::wal_decoder());
        if let Some(store) = args.store.or(file.store) {
            if store
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("memory:")
            {
                bail!(
                    "--store {store:?}: an in-memory store loses every flushed span on \
                     restart (the WAL is trimmed behind flushes); use a directory or a bucket"
                );
            }
            storage.store = StoreLocation::Url(store);
        }
        if let Some(age) = args.flush_max_age.or(file.flush_max_age) {
            storage.flush_max_age = age;
        }
        if let Some(bytes) = args.flush_partition_bytes.or(file.flush_partition_bytes) {
            storage.flush_partition_bytes = to_usize(bytes, "flush_partition_bytes")?;
        }
        if let Some(bytes) = args.buffer_max_bytes.or(file.buffer_max_bytes) {
            storage.buffer_max_bytes = to_usize(bytes, "buffer_max_bytes")?;
        }
        if let Some(bytes) = args.wal_segment_bytes.or(file.wal_segment_bytes) {
            storage.wal_segment_bytes = bytes;
        }
        storage.compaction.interval = match args.compaction_interval.or(file.compaction_interval) {
            None => Some(DEFAULT_COMPACTION_INTERVAL),
            Some(Interval::Off) => None,
            Some(Interval::Every(every)) => Some(every),
        };
        if let Some(age) = args.compaction_min_age.or(file.compaction_min_age) {
            storage.compaction.min_age = age;
        }
        if let Some(rows) = args.compaction_target_rows.or(file.compaction_target_rows) {
            if rows < 2 {
                bail!("compaction_target_rows must be at least 2");
            }
            storage.compaction.target_rows = rows;
        }

        let mut server = ServerConfig::default();
        let specs = if args.projects.is_empty() {
            file.projects.unwrap_or_default()
        } else {
            args.projects
        };
        let keys = specs
            .iter()
            .map(|spec| ProjectKey::parse(spec))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--project: {e}"))?;
        server.projects = Projects::new(keys).map_err(|e| anyhow::anyhow!("--project: {e}"))?;
        if let Some(bytes) = args.max_body_bytes.or(file.max_body_bytes) {
            server.max_body_bytes = to_usize(bytes, "max_body_bytes")?;
        }
        if let Some(bytes) = args.max_decompressed_bytes.or(file.max_decompressed_bytes) {
            server.max_decompressed_bytes = to_usize(bytes, "max_decompressed_bytes")?;
        }
        if let Some(n) = args.max_inflight_ingest.or(file.max_inflight_ingest) {
            if n == 0 {
                bail!("max_inflight_ingest must be at least 1");
            }
            server.max_inflight_ingest = n;
        }
        if let Some(n) = args.max_concurrent_queries.or(file.max_concurrent_queries) {
            if n == 0 {
                bail!("max_concurrent_queries must be at least 1");
            }
            server.max_concurrent_queries = n;
        }
        if let Some(timeout) = args.body_read_timeout.or(file.body_read_timeout) {
            server.body_read_timeout = timeout;
        }

        let mut query = QueryConfig::default();
        if let Some(timeout) = args.query_timeout.or(file.query_timeout) {
            query.timeout = timeout;
        }
        if let Some(bytes) = args.query_memory_limit.or(file.query_memory_limit) {
            query.memory_limit_bytes = to_usize(bytes, "query_memory_limit")?;
        }
        if let Some(n) = args.query_threads.or(file.query_threads) {
            if n == 0 {
                bail!("query_threads must be at least 1");
            }
            query.target_partitions = n;
        }

        let log_filter = args.log_level.or(rust_log).or(file.log_level);
        Ok(Settings {
            http: args
                .http
                .or(file.http)
                .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_owned()),
            grpc: args
                .grpc
                .or(file.grpc)
                .unwrap_or_else(|| DEFAULT_GRPC_ADDR.to_owned()),
            pg: args.pg.or(file.pg),
            storage,
            server,
            query,
            shutdown_timeout: args
                .shutdown_timeout
                .or(file.shutdown_timeout)
                .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            log_filter,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
        })
    }
}

fn to_usize(bytes: u64, what: &str) -> anyhow::Result<usize> {
    usize::try_from(bytes).with_context(|| format!("{what} = {bytes} is too large"))
}

/// A size: bytes, or a number with a unit (`KiB`, `MiB`, `GiB`, `TiB`, `KB`,
/// `MB`, `GB`, `TB`, `K`, `M`, `G`, `T` (binary), `B`), case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?}: use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
            ));
        }
    };
    let number = number.trim();
    let bytes = if let Ok(whole) = number.parse::<u64>() {
        whole.checked_mul(multiplier)
    } else {
        let value: f64 = number
            .parse()
            .map_err(|_| format!("expected a size like 1048576, 64KiB or 1.5GiB, got {text:?}"))?;
        let bytes = value * multiplier as f64;
        (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
    };
    bytes.ok_or_else(|| format!("{text:?} is out of range"))
}

/// A duration: seconds, or a number with `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?}: use ms, s, m, h or d"
            ));
        }
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration like 500ms, 30s, 5m or 1h, got {text:?}"))?;
    Duration::try_from_secs_f64(number * seconds_per_unit)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive duration"))
}

/// A duration that may be zero (`0`, `0s`).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    let number = text
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic());
    match number.trim().parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        _ => parse_duration(text),
    }
}

/// How often something periodic runs, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Off,
    Every(Duration),
}

/// `off`, or a positive duration.
pub fn parse_interval(text: &str) -> Result<Interval, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(Interval::Off);
    }
    parse_duration(text)
        .map(Interval::Every)
        .map_err(|e| format!("{e}, or off"))
}

/// A number or a string, as TOML gives it.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Int(u64),
    Float(f64),
    Text(String),
}

fn de_size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Int(n) => Ok(Some(n)),
        NumberOrText::Float(f) => parse_size(&f.to_string())
            .map(Some)
            .map_err(D::Error::custom),
        NumberOrText::Text(text) => parse_size(&text).map(Some).map_err(D::Error::custom),
    }
}

fn de_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Int(n) => n.to_string(),
        NumberOrText::Float(f) => f.to_string(),
        NumberOrText::Text(text) => text,
    })
}

fn de_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Interval>, D::Error> {
    use serde::de::Error;
    parse_interval(&de_text(deserializer)?)
        .map(Some)
        .map_err(D::Error::custom)
}

fn de_duration_or_zero<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    use serde::de::Error;
    parse_duration_or_zero(&de_text(deserializer)?)
        .map(Some)
        .map_err(D::Error::custom)
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    use serde::de::Error;
    parse_duration(&de_text(deserializer)?)
        .map(Some)
        .map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_memory_store_is_refused() {
        let args = ServeArgs {
            store: Some("memory:///".into()),
            ..ServeArgs::default()
        };
        let err = Settings::resolve(args).unwrap_err().to_string();
        assert!(err.contains("in-memory store"), "{err}");
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/lighttrace.toml");
        let file = FileConfig::load(&path).unwrap();
        assert_eq!(file.data.as_deref(), Some(Path::new("/var/lib/lighttrace")));
        assert_eq!(file.max_inflight_ingest, Some(32));
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("16 MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-3s").is_err());
    }

    #[test]
    fn compaction_is_on_by_default_and_can_be_turned_off() {
        let settings = Settings::merge(ServeArgs::default(), FileConfig::default(), None).unwrap();
        assert_eq!(
            settings.storage.compaction.interval,
            Some(DEFAULT_COMPACTION_INTERVAL)
        );
        let file: FileConfig = toml::from_str(
            r#"
            compaction_interval = "off"
            compaction_min_age = 0
            compaction_target_rows = 1000
            "#,
        )
        .unwrap();
        let settings = Settings::merge(ServeArgs::default(), file.clone(), None).unwrap();
        assert_eq!(settings.storage.compaction.interval, None);
        assert_eq!(settings.storage.compaction.min_age, Duration::ZERO);
        assert_eq!(settings.storage.compaction.target_rows, 1000);
        let args = ServeArgs {
            compaction_interval: Some(parse_interval("5m").unwrap()),
            ..ServeArgs::default()
        };
        let settings = Settings::merge(args, file, None).unwrap();
        assert_eq!(
            settings.storage.compaction.interval,
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_interval("0").unwrap_err().contains("or off"));
        let args = ServeArgs {
            compaction_target_rows: Some(1),
            ..ServeArgs::default()
        };
        let err = Settings::merge(args, FileConfig::default(), None).unwrap_err();
        assert!(err.to_string().contains("compaction_target_rows"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            data = "/from/file"
            http = "0.0.0.0:9999"
            pg = "127.0.0.1:5433"
            flush_max_age = 5
            buffer_max_bytes = "1MiB"
            query_timeout = "2m"
            log_format = "json"
            "#,
        )
        .unwrap();
        let args = ServeArgs {
            data: Some("/from/flag".into()),
            buffer_max_bytes: Some(2048),
            ..ServeArgs::default()
        };
        let settings = Settings::merge(args, file, None).unwrap();
        assert_eq!(settings.storage.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(settings.storage.buffer_max_bytes, 2048);
        assert_eq!(settings.storage.flush_max_age, Duration::from_secs(5));
        assert_eq!(settings.http, "0.0.0.0:9999");
        assert_eq!(settings.pg.as_deref(), Some("127.0.0.1:5433"));
        assert_eq!(settings.query.timeout, Duration::from_secs(120));
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.storage.store, StoreLocation::DataDir);
        assert_eq!(settings.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert_eq!(settings.server.max_body_bytes, 16 << 20);
    }

    #[test]
    fn projects_come_from_flags_or_the_file() {
        let ids = |settings: &Settings| -> Vec<String> {
            settings.server.projects.ids().map(str::to_owned).collect()
        };
        let file: FileConfig = toml::from_str(r#"project = ["1:one", "2:two"]"#).unwrap();
        let settings = Settings::merge(ServeArgs::default(), file.clone(), None).unwrap();
        assert_eq!(ids(&settings), ["1", "2"]);
        let args = ServeArgs {
            projects: vec!["7:seven".into()],
            ..ServeArgs::default()
        };
        let settings = Settings::merge(args, file, None).unwrap();
        assert_eq!(ids(&settings), ["7"]);
        assert!(
            !format!("{settings:?}").contains("seven"),
            "keys stay out of Debug"
        );
        let none = Settings::merge(ServeArgs::default(), FileConfig::default(), None).unwrap();
        assert!(!none.server.projects.is_enabled());
        for bad in [vec!["7"], vec!["7:a", "7:b"], vec!["7:a", "8:a"]] {
            let args = ServeArgs {
                projects: bad.iter().map(|s| s.to_string()).collect(),
                ..ServeArgs::default()
            };
            let err = Settings::merge(args, FileConfig::default(), None).unwrap_err();
            assert!(err.to_string().starts_with("--project"), "{err}");
        }
    }

    #[test]
    fn defaults_without_flags_or_file() {
        let settings = Settings::merge(ServeArgs::default(), FileConfig::default(), None).unwrap();
        assert_eq!(settings.storage.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(settings.http, DEFAULT_HTTP_ADDR);
        assert_eq!(settings.pg, None);
        assert_eq!(settings.log_filter, None);
    }

    #[test]
    fn log_level_flag_beats_rust_log_which_beats_the_file() {
        let file = FileConfig {
            log_level: Some("warn".into()),
            ..FileConfig::default()
        };
        let from_env = Settings::merge(ServeArgs::default(), file.clone(), Some("debug".into()));
        assert_eq!(from_env.unwrap().log_filter.as_deref(), Some("debug"));
        let args = ServeArgs {
            log_level: Some("error".into()),
            ..ServeArgs::default()
        };
        let from_flag = Settings::merge(args, file.clone(), Some("debug".into()));
        assert_eq!(from_flag.unwrap().log_filter.as_deref(), Some("error"));
        let from_file = Settings::merge(ServeArgs::default(), file, None);
        assert_eq!(from_file.unwrap().log_filter.as_deref(), Some("warn"));
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let err = toml::from_str::<FileConfig>("buffer_max_byte = 5").unwrap_err();
        assert!(err.to_string().contains("buffer_max_byte"), "{err}");
        let err = toml::from_str::<FileConfig>("flush_max_age = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
    }
}
