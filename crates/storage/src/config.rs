//! Storage configuration.
use std::path::PathBuf;
use std::time::Duration;

/// Where the lake's objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `<data dir>` itself (the embedded default).
    DataDir,
    /// An `object_store` URL: `s3://bucket/prefix`, `file:///path`, `memory:///`.
    Url(String),
}

/// Row order inside a Parquet file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// As written: no sort, no copy. Spans of one request (and so of one trace
    /// and service) stay together, and time is almost ascending.
    Arrival,
    /// `(trace_id, start_time)`: a trace's spans adjacent, tight trace-id page stats.
    TraceId,
    /// `(start_time, trace_id)`: small timestamp deltas, tight time page stats.
    StartTime,
    /// Traces by the earliest start of their spans in the file, each trace's
    /// spans together by `start_time`: timestamps almost ascending (small
    /// deltas) while a trace's repeated ids stay adjacent.
    TraceStart,
}

/// How flushed Parquet files are encoded. The defaults are the measured choice
/// recorded in `benches/RESULTS.md` (`cargo bench -p lighttrace-storage --bench parquet_layout`).
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    pub row_group_rows: usize,
    pub zstd_level: i32,
    /// Split-block bloom filter on `trace_id` in each row group (`None`: none).
    pub bloom_filter_fpp: Option<f64>,
    /// Write the bloom filter also in a file of one row group. The catalog's
    /// per-file trace filter already answers "may this file hold the trace?"
    /// before the file is opened, so there it only costs bytes; off by default.
    pub bloom_filter_single_row_group: bool,
    pub sort_order: SortOrder,
    /// Dictionary-encode the id and time columns. Their values are nearly unique,
    /// so a dictionary only adds pages; off by default.
    pub dictionary_for_unique_columns: bool,
    /// `DELTA_BINARY_PACKED` for the time columns (else PLAIN + zstd).
    pub delta_encode_times: bool,
    /// Store ids as their bytes instead of hex text (see [`crate::layout`]).
    pub binary_ids: bool,
    /// Leave `end_time` out of files; readers derive it (see [`crate::layout`]).
    pub derive_end_time: bool,
    /// Min/max statistics for the leaves of attribute maps, events and links.
    pub nested_statistics: bool,
    /// Page-level statistics (the page index) for every top-level column. Off:
    /// only the id and time columns, whose pages a lookup or a time range can
    /// skip, have them; the others keep row-group statistics.
    pub page_statistics_everywhere: bool,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            row_group_rows: 64 * 1024,
            zstd_level: 1,
            bloom_filter_fpp: Some(0.01),
            bloom_filter_single_row_group: false,
            sort_order: SortOrder::Arrival,
            dictionary_for_unique_columns: false,
            delta_encode_times: true,
            binary_ids: true,
            derive_end_time: true,
            nested_statistics: false,
            page_statistics_everywhere: false,
        }
    }
}

/// Turns a WAL record that a receiver logged in its own format (see
/// [`Lake::write_logged`](crate::Lake::write_logged)) back into the batches it
/// produced (each of some [`Table`](crate::Table)'s schema). Must be
/// deterministic: replay relies on getting the same rows.
pub trait WalRecordDecoder: Send + Sync {
    /// `kind` is the record's kind byte (≥ 16), `body` what the receiver logged.
    fn decode(&self, kind: u8, body: &[u8]) -> std::result::Result<Vec<RecordBatch>, String>;
}

#[derive(Clone)]
pub struct StorageConfig {
    /// Local directory: the WAL always lives here, and the lake too by default.
    pub data_dir: PathBuf,
    pub store: StoreLocation,
    /// Flush a partition once its buffered Arrow data reaches this size.
    pub flush_partition_bytes: usize,
    /// Flush a partition once its oldest buffered span is this old.
    pub flush_max_age: Duration,
    /// Bound on all buffered Arrow data; writes beyond it get `Overloaded`.
    pub buffer_max_bytes: usize,
    /// Start a new WAL segment past this size.
    pub wal_segment_bytes: u64,
    pub parquet: ParquetOptions,
    /// Decoder for WAL records logged by receivers in their own format; needed to
    /// open a lake whose WAL holds such records.
    pub wal_decoder: Option<Arc<dyn WalRecordDecoder>>,
    /// When closed hours' files are merged; in the background only when its
    /// `interval` is set.
    pub compaction: CompactionPolicy,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("data_dir", &self.data_dir)
            .field("store", &self.store)
            .field("flush_partition_bytes", &self.flush_partition_bytes)
            .field("flush_max_age", &self.flush_max_age)
            .field("buffer_max_bytes", &self.buffer_max_bytes)
            .field("wal_segment_bytes", &self.wal_segment_bytes)
            .field("parquet", &self.parquet)
            .field("wal_decoder", &self.wal_decoder.is_some())
            .field("compaction", &self.compaction)
            .finish()
    }
}

impl StorageConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StorageConfig {
            data_dir: data_dir.into(),
            store: StoreLocation::DataDir,
            flush_partition_bytes: 64 << 20,
            flush_max_age: Duration::from_secs(60),
            buffer_max_bytes: 512 << 20,
            wal_segment_bytes: 64 << 20,
            parquet: ParquetOptions::default(),
            wal_decoder: None,
            compaction: CompactionPolicy::default(),
        }
    }
}

use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;

use crate::compaction::CompactionPolicy;
use crate::error::{Result, StorageError};

/// The local directory behind the lake's object store, when it is local. Objects
/// written there are fsynced (with their folders) by [`sync_local`]: the local
/// object store only renames a temporary file into place.
pub(crate) fn local_root(config: &StorageConfig) -> Option<PathBuf> {
    match &config.store {
        StoreLocation::DataDir => Some(config.data_dir.clone()),
        StoreLocation::Url(text) => {
            let url = url::Url::parse(text).ok()?;
            (url.scheme() == "file")
                .then(|| url.to_file_path().ok())
                .flatten()
        }
    }
}

/// Makes an object written under a local root durable: fsyncs the file, then each
/// folder from its parent up to the root (new partition folders included).
pub(crate) fn sync_local(root: &std::path::Path, location: &str) -> std::io::Result<()> {
    let path = root.join(location);
    std::fs::File::open(&path)?.sync_all()?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// Builds the object store the lake lives in, rooted at the lake root.
///
/// `s3://bucket/prefix` takes credentials, region and endpoint from the usual
/// `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, …); a plain-`http://`
/// endpoint (a local S3-compatible server) is allowed.
pub(crate) fn build_store(config: &StorageConfig) -> Result<Arc<dyn ObjectStore>> {
    match &config.store {
        StoreLocation::DataDir => {
            std::fs::create_dir_all(&config.data_dir)?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(
                &config.data_dir,
            )?))
        }
        StoreLocation::Url(text) => {
            let url = url::Url::parse(text)
                .map_err(|e| StorageError::Config(format!("--store {text:?}: {e}")))?;
            let prefix = url.path().trim_matches('/').to_string();
            let store: Arc<dyn ObjectStore> = match url.scheme() {
                "s3" | "s3a" => {
                    let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
                        StorageError::Config(format!("--store {text:?}: no bucket name"))
                    })?;
                    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                        .or_else(|_| std::env::var("AWS_ENDPOINT"))
                        .ok();
                    if endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://"))
                    {
                        builder = builder.with_allow_http(true);
                    }
                    if std::env::var("AWS_REGION").is_err()
                        && std::env::var("AWS_DEFAULT_REGION").is_err()
                    {
                        builder = builder.with_region("us-east-1");
                    }
                    let s3 = builder
                        .build()
                        .map_err(|e| StorageError::Config(format!("--store {text:?}: {e}")))?;
                    if prefix.is_empty() {
                        Arc::new(s3)
                    } else {
                        Arc::new(PrefixStore::new(s3, prefix.as_str()))
                    }
                }
                "file" => {
                    let path = url.to_file_path().map_err(|()| {
                        StorageError::Config(format!("--store {text:?}: not a local path"))
                    })?;
                    std::fs::create_dir_all(&path)?;
                    Arc::new(LocalFileSystem::new_with_prefix(path)?)
                }
                "memory" => Arc::new(InMemory::new()),
                other => {
                    return Err(StorageError::Config(format!(
                        "--store {text:?}: unsupported scheme {other:?} (use s3://, file:// or memory://)"
                    )));
                }
            };
            Ok(store)
        }
    }
}
