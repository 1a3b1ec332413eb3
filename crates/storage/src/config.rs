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

#[derive(Debug, Clone)]
pub struct ParquetOptions {
    pub row_group_rows: usize,
    pub zstd_level: i32,
    pub bloom_filter_fpp: f64,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            row_group_rows: 64 * 1024,
            zstd_level: 3,
            bloom_filter_fpp: 0.01,
        }
    }
}

#[derive(Debug, Clone)]
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
        }
    }
}
