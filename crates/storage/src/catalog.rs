//! The catalog: which Parquet files are live, with their partition values and
//! statistics, persisted in the object store so queries never LIST the bucket.

use crate::partition::PartitionKey;
use crate::trace_filter::TraceIdFilter;

/// One live Parquet file.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Object path relative to the lake root, e.g.
    /// `spans/project=default/service=frontend/date=2026-11-21/hour=07/<id>.parquet`.
    pub path: String,
    pub size_bytes: u64,
    pub row_count: u64,
    pub partition: PartitionKey,
    pub min_start_ns: i64,
    pub max_start_ns: i64,
    pub min_end_ns: i64,
    pub max_end_ns: i64,
    /// Highest WAL sequence number whose rows this file holds.
    pub max_wal_seq: u64,
    /// Membership filter over the file's trace ids.
    pub trace_filter: TraceIdFilter,
}

impl FileEntry {
    /// False only if the file holds no span of this trace.
    pub fn may_contain_trace(&self, trace_id: &[u8; 16]) -> bool {
        self.trace_filter.may_contain(trace_id)
    }
}
