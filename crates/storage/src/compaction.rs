//! Compaction: the small files of a closed hour merged into fewer, larger ones.
//!
//! The flusher writes a file whenever a partition's buffer is full, old, or
//! memory runs short, so an hour of one service usually ends up in several
//! small files. Every file a query opens costs its footer, its schema and its
//! pruning work, whatever its size, so a lake of many small files answers
//! slower than the same rows in a few files (`benches/RESULTS.md`).
//!
//! Once a partition's hour has ended (plus [`CompactionPolicy::min_age`] for
//! late spans), its files of fewer than half [`CompactionPolicy::target_rows`]
//! rows are merged, in the order they were written, into files of at most
//! `target_rows` rows, encoded exactly like a flush (same layout, trace-id
//! filter and attribute index). The new file is written first; then one
//! catalog commit removes the inputs and adds it, so a query sees either the
//! old files or the new one, never both and never neither. The merged file
//! keeps the highest WAL sequence of its inputs, so replay after a crash skips
//! exactly what it skipped before.
//!
//! A removed file is deleted only once no query of this process still reads
//! it (its snapshot holds it) and [`CompactionPolicy::delete_delay`] has passed,
//! which covers readers in other processes that loaded the catalog just
//! before. A file left behind by a crash between two of these steps is not in
//! the catalog; [`Lake::sweep_orphans`](crate::Lake::sweep_orphans) deletes
//! such files once they are old enough that no flush can still be committing
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use bytes::Bytes;
use lighttrace_model::NANOS_PER_HOUR;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::catalog::FileEntry;
use crate::config::ParquetOptions;
use crate::error::{Result, StorageError};
use crate::flush::{EncodedFile, encode_table_partition};
use crate::layout::to_table_batch;
use crate::partition::PartitionKey;
use crate::table::Table;

/// How old a file no catalog version lists must be before
/// [`Lake::sweep_orphans`](crate::Lake::sweep_orphans) is asked to delete it
/// (by the server's compactor and `lighttrace compact`): far beyond any flush's
/// or merge's write-to-commit time.
pub const ORPHAN_MIN_AGE: Duration = Duration::from_secs(3600);

/// When and how far files are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionPolicy {
    /// A partition is compacted once its hour ended at least this long ago:
    /// spans of an hour keep arriving for a while after it ends.
    pub min_age: Duration,
    /// Rows per merged file at most. Files of at least half of it are left as
    /// they are: merging them would rewrite many rows to save few opens.
    pub target_rows: u64,
    /// How long a removed file stays in the store after the commit that
    /// removed it, for readers in other processes that loaded the catalog
    /// before it. In this process it also stays while a query reads it.
    pub delete_delay: Duration,
    /// How often the lake compacts in the background; `None`: only when
    /// [`Lake::compact`](crate::Lake::compact) is called.
    pub interval: Option<Duration>,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            min_age: Duration::from_secs(10 * 60),
            target_rows: 512 * 1024,
            delete_delay: Duration::from_secs(5 * 60),
            interval: None,
        }
    }
}

/// What one compaction run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CompactionReport {
    /// Partitions with at least one merge.
    pub partitions: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub rows: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Removed files deleted from the store during this run (of this run or
    /// earlier ones whose delay has passed).
    pub files_deleted: usize,
}

/// The merges to do: per partition whose hour ended at least
/// `policy.min_age` before `now_ns`, its small files in write order, packed
/// greedily into groups of at most `policy.target_rows` rows. Only groups of
/// two files or more are returned.
pub fn plan(
    files: &[Arc<FileEntry>],
    policy: &CompactionPolicy,
    now_ns: i64,
) -> Vec<Vec<Arc<FileEntry>>> {
    let min_age_ns = i64::try_from(policy.min_age.as_nanos()).unwrap_or(i64::MAX);
    let small = policy.target_rows.div_ceil(2);
    let mut by_partition: BTreeMap<&PartitionKey, Vec<&Arc<FileEntry>>> = BTreeMap::new();
    for file in files {
        let hour_end = file
            .partition
            .hour
            .saturating_add(1)
            .saturating_mul(NANOS_PER_HOUR);
        if hour_end.saturating_add(min_age_ns) <= now_ns && file.row_count < small {
            by_partition.entry(&file.partition).or_default().push(file);
        }
    }
    let mut groups = Vec::new();
    for (_, mut candidates) in by_partition {
        if candidates.len() < 2 {
            continue;
        }
        // File names are UUIDv7: in write order, so arrival order survives.
        candidates.sort_by(|a, b| a.path.cmp(&b.path));
        let mut group: Vec<Arc<FileEntry>> = Vec::new();
        let mut rows = 0u64;
        for file in candidates {
            if !group.is_empty() && rows + file.row_count > policy.target_rows {
                if group.len() >= 2 {
                    groups.push(std::mem::take(&mut group));
                } else {
                    group.clear();
                }
                rows = 0;
            }
            rows += file.row_count;
            group.push(Arc::clone(file));
        }
        if group.len() >= 2 {
            groups.push(group);
        }
    }
    groups
}

/// Decodes `images` (the Parquet files of one partition of `table`, in
/// order) and encodes their rows as one file. CPU-bound: call off the async
/// runtime.
pub fn merge_files(
    table: Table,
    images: Vec<Bytes>,
    options: &ParquetOptions,
) -> Result<EncodedFile> {
    let schema = table.schema();
    let mut batches = Vec::new();
    for image in images {
        let reader = ParquetRecordBatchReaderBuilder::try_new(image)?
            .with_batch_size(64 * 1024)
            .build()?;
        for batch in reader {
            let batch = batch?;
            batches.push(match table {
                // Ids back to text, `end_time` back: the flush encoder takes
                // table batches, whatever layout the file was written in.
                Table::Spans => to_table_batch(&batch)?,
                _ => RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec()).map_err(
                    |e| {
                        StorageError::InvalidBatch(format!(
                            "a {} file does not read back as the table: {e}",
                            table.name()
                        ))
                    },
                )?,
            });
        }
    }
    encode_table_partition(table, &batches, options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace_filter::TraceIdFilter;

    const HOUR: i64 = 490_000;

    fn file(path: &str, service: &str, hour: i64, rows: u64) -> Arc<FileEntry> {
        Arc::new(FileEntry {
            path: path.to_string(),
            size_bytes: rows * 10,
            row_count: rows,
            partition: PartitionKey::new("p", service, hour),
            min_start_ns: hour * NANOS_PER_HOUR,
            max_start_ns: hour * NANOS_PER_HOUR,
            min_end_ns: hour * NANOS_PER_HOUR,
            max_end_ns: hour * NANOS_PER_HOUR,
            max_wal_seq: 1,
            trace_filter: TraceIdFilter::with_capacity(1),
            attribute_index: None,
        })
    }

    fn paths(groups: &[Vec<Arc<FileEntry>>]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|g| g.iter().map(|f| f.path.as_str()).collect())
            .collect()
    }

    fn policy(target_rows: u64) -> CompactionPolicy {
        CompactionPolicy {
            min_age: Duration::from_secs(600),
            target_rows,
            ..CompactionPolicy::default()
        }
    }

    #[test]
    fn only_hours_that_ended_min_age_ago_are_merged() {
        let files = [
            file("a/2", "a", HOUR, 10),
            file("a/1", "a", HOUR, 10),
            file("b/1", "b", HOUR + 1, 10),
            file("b/2", "b", HOUR + 1, 10),
        ];
        // 10 minutes into hour HOUR + 2: HOUR + 1 ended, but only just.
        let now = (HOUR + 2) * NANOS_PER_HOUR + 600 * 1_000_000_000 - 1;
        assert_eq!(paths(&plan(&files, &policy(100), now)), [["a/1", "a/2"]]);
        let later = now + 1;
        assert_eq!(
            paths(&plan(&files, &policy(100), later)),
            [["a/1", "a/2"], ["b/1", "b/2"]]
        );
    }

    #[test]
    fn groups_stay_under_the_target_and_big_files_stay_alone() {
        let files = [
            file("a/1", "a", HOUR, 40),
            file("a/2", "a", HOUR, 40),
            file("a/3", "a", HOUR, 40),
            file("a/4", "a", HOUR, 50), // half the target: left alone
            file("a/5", "a", HOUR, 10),
            file("a/6", "a", HOUR, 30),
            file("b/1", "b", HOUR, 10), // alone in its partition
            file("c/1", "c", HOUR, 49),
            file("c/2", "c", HOUR, 49),
            file("c/3", "c", HOUR, 49),
        ];
        let now = (HOUR + 5) * NANOS_PER_HOUR;
        assert_eq!(
            paths(&plan(&files, &policy(100), now)),
            vec![
                vec!["a/1", "a/2"],
                vec!["a/3", "a/5", "a/6"],
                vec!["c/1", "c/2"]
            ]
        );
    }

    #[test]
    fn partitions_of_other_tables_and_projects_are_not_mixed() {
        let mut logs = (*file("l/1", "a", HOUR, 10)).clone();
        logs.partition.table = Table::Logs;
        let mut other = (*file("o/1", "a", HOUR, 10)).clone();
        other.partition.project = "q".into();
        let files = [file("a/1", "a", HOUR, 10), Arc::new(logs), Arc::new(other)];
        assert!(plan(&files, &policy(100), (HOUR + 5) * NANOS_PER_HOUR).is_empty());
    }
}
