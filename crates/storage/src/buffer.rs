//! In-memory buffers: the acknowledged spans of each partition not yet in a
//! committed Parquet file.
//!
//! A partition's batches are `active` (receiving writes) or `flushing` (being
//! written to Parquet). Both stay visible to queries until the flush commits; then
//! the `flushing` batches are dropped in the same critical section that adds the
//! file to the catalog, so a query sees each span exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::TimestampNanosecondType;

use crate::table::Table;

/// Memory of one written batch, counted in the lake's buffered bytes until the
/// last slice of the batch is dropped (its partitions may flush at different
/// times, and slices share the batch's buffers).
#[derive(Debug)]
pub(crate) struct MemoryCharge {
    bytes: usize,
    counter: Arc<AtomicUsize>,
}

impl MemoryCharge {
    /// Takes over `bytes` already added to `counter`.
    pub fn new(bytes: usize, counter: Arc<AtomicUsize>) -> Arc<Self> {
        Arc::new(MemoryCharge { bytes, counter })
    }
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// One slice of one partition, from WAL record `seq`; `min_start_ns` and
/// `max_start_ns` bound its table's time column.
#[derive(Debug, Clone)]
pub(crate) struct Buffered {
    pub seq: u64,
    pub batch: RecordBatch,
    /// This slice's share of its batch's memory, for flush decisions.
    pub bytes: usize,
    pub min_start_ns: i64,
    pub max_start_ns: i64,
    _charge: Arc<MemoryCharge>,
}

impl Buffered {
    pub fn new(
        table: Table,
        seq: u64,
        batch: RecordBatch,
        bytes: usize,
        charge: Arc<MemoryCharge>,
    ) -> Self {
        let (mut min_start_ns, mut max_start_ns) = (i64::MAX, i64::MIN);
        if let Ok(idx) = batch.schema().index_of(table.time_column())
            && let Some(starts) = batch
                .column(idx)
                .as_primitive_opt::<TimestampNanosecondType>()
        {
            for &v in starts.values().iter() {
                min_start_ns = min_start_ns.min(v);
                max_start_ns = max_start_ns.max(v);
            }
        }
        Buffered {
            seq,
            batch,
            bytes,
            min_start_ns,
            max_start_ns,
            _charge: charge,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct PartitionBuffer {
    pub active: Vec<Buffered>,
    pub flushing: Vec<Buffered>,
    pub oldest_active: Option<Instant>,
    /// `oldest_active` of the batches now in `flushing`, kept for an abort.
    flushing_since: Option<Instant>,
}

impl PartitionBuffer {
    pub fn push(&mut self, item: Buffered) {
        if self.active.is_empty() {
            self.oldest_active = Some(Instant::now());
        }
        self.active.push(item);
    }

    pub fn active_bytes(&self) -> usize {
        self.active.iter().map(|b| b.bytes).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty() && self.flushing.is_empty()
    }

    /// Lowest WAL sequence still only in memory.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.flushing
            .iter()
            .chain(self.active.iter())
            .map(|b| b.seq)
            .min()
    }

    /// Moves the active batches to `flushing`; returns them.
    pub fn start_flush(&mut self) -> Vec<Buffered> {
        debug_assert!(self.flushing.is_empty());
        self.flushing = std::mem::take(&mut self.active);
        self.flushing_since = self.oldest_active.take();
        self.flushing.clone()
    }

    /// A failed flush: the batches go back in front of newer ones (sequence order).
    pub fn abort_flush(&mut self) {
        let mut flushing = std::mem::take(&mut self.flushing);
        if flushing.is_empty() {
            return;
        }
        flushing.append(&mut self.active);
        self.active = flushing;
        self.oldest_active = self
            .flushing_since
            .take()
            .or(self.oldest_active)
            .or_else(|| Some(Instant::now()));
    }
}
