//! [`Lake`]: the storage engine handle.

use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::ObjectStore;

use crate::catalog::FileEntry;
use crate::config::StorageConfig;
use crate::error::Result;
use crate::partition::PartitionKey;

/// What [`Lake::write`] returns once the spans are durable and visible.
#[derive(Debug, Clone, Copy)]
pub struct WriteReceipt {
    /// WAL sequence number of the record holding the spans.
    pub sequence: u64,
    pub rows: usize,
}

/// The batches of one partition not yet in a committed Parquet file.
#[derive(Debug, Clone)]
pub struct BufferedPartition {
    pub key: PartitionKey,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub min_start_ns: i64,
    pub max_start_ns: i64,
}

/// A consistent view of the lake: every acknowledged span is in exactly one of
/// `buffered` and `files`.
#[derive(Debug, Clone)]
pub struct LakeSnapshot {
    pub buffered: Vec<BufferedPartition>,
    pub files: Vec<Arc<FileEntry>>,
    pub catalog_version: u64,
}

/// Counters for logs, `/metrics` and benches.
#[derive(Debug, Clone, Default)]
pub struct LakeStats {
    pub buffered_bytes: usize,
    pub buffered_rows: usize,
    pub buffered_partitions: usize,
    pub files: usize,
    pub catalog_version: u64,
    pub wal_segments: usize,
}

pub struct Lake {
    _private: (),
}

impl Lake {
    /// Opens (or creates) the lake: loads the catalog, replays the WAL into the
    /// buffers, and starts the background flusher. Takes an exclusive lock on the
    /// data directory.
    pub async fn open(_config: StorageConfig) -> Result<Arc<Lake>> {
        todo!()
    }

    /// Opens the lake for reading only (no lock, no writes, no background tasks):
    /// the catalog plus whatever intact records the WAL holds.
    pub async fn open_read_only(_config: StorageConfig) -> Result<Arc<Lake>> {
        todo!()
    }

    /// Appends a `spans` batch. When this returns `Ok`, the spans are fsynced in the
    /// WAL and visible to [`snapshot`](Self::snapshot). Returns
    /// [`StorageError::Overloaded`](crate::StorageError::Overloaded) when the buffers
    /// are at their memory bound; nothing is written then.
    pub async fn write(&self, _batch: RecordBatch) -> Result<WriteReceipt> {
        todo!()
    }

    pub fn snapshot(&self) -> LakeSnapshot {
        todo!()
    }

    /// The object store rooted at the lake root (any `--store` prefix already applied);
    /// [`FileEntry::path`] is relative to it.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        todo!()
    }

    /// Flushes every buffered partition and commits the catalog.
    pub async fn flush_all(&self) -> Result<()> {
        todo!()
    }

    /// Stops accepting writes, flushes everything, stops background tasks.
    pub async fn shutdown(&self) -> Result<()> {
        todo!()
    }

    pub fn stats(&self) -> LakeStats {
        todo!()
    }
}
