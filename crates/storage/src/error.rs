use std::time::Duration;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The buffers are full; the caller should retry after the given time.
    #[error("ingest buffers are full ({used_bytes} of {limit_bytes} bytes); retry later")]
    Overloaded {
        used_bytes: usize,
        limit_bytes: usize,
        retry_after: Duration,
    },
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    #[error("the lake is shutting down")]
    ShuttingDown,
    #[error("the lake was opened read-only")]
    ReadOnly,
    #[error("WAL: {0}")]
    Wal(String),
    #[error("catalog: {0}")]
    Catalog(String),
    #[error("invalid storage configuration: {0}")]
    Config(String),
    #[error("data directory {path} is in use by another process")]
    Locked { path: String },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
