//! Turning a partition's buffered batches into one sorted Parquet file.
//!
//! Rows are sorted by `(trace_id, start_time)`: a trace's spans sit together, so a
//! trace lookup touches one small stretch of a row group, and ids, names and
//! attributes of one trace compress against each other. The encoding choices
//! (zstd, row-group size, page statistics, a bloom filter on `trace_id`) are
//! measured in `benches/`.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::TimestampNanosecondType;
use lighttrace_model::{columns, spans_schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::config::{ParquetOptions, SortOrder};
use crate::error::{Result, StorageError};
use crate::trace_filter::TraceIdFilter;

/// A Parquet file image and what the catalog records about it.
pub struct EncodedFile {
    pub bytes: Vec<u8>,
    pub rows: u64,
    pub min_start_ns: i64,
    pub max_start_ns: i64,
    pub min_end_ns: i64,
    pub max_end_ns: i64,
    pub trace_filter: TraceIdFilter,
}

pub fn writer_properties(
    options: &ParquetOptions,
    distinct_traces: usize,
) -> Result<WriterProperties> {
    let schema = spans_schema();
    let trace_idx = schema.index_of(columns::TRACE_ID)?;
    let start_idx = schema.index_of(columns::START_TIME)?;
    let level = ZstdLevel::try_new(options.zstd_level)?;
    // Leaf indices; every column up to start_time is flat, so they equal the
    // field indices.
    let sorting = |idx: usize| SortingColumn {
        column_idx: idx as i32,
        descending: false,
        nulls_first: false,
    };
    let sorting_columns = match options.sort_order {
        SortOrder::TraceId => vec![sorting(trace_idx), sorting(start_idx)],
        SortOrder::StartTime => vec![sorting(start_idx), sorting(trace_idx)],
    };
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(sorting_columns))
        .set_created_by(format!("lighttrace {}", env!("CARGO_PKG_VERSION")));
    for name in [
        columns::TRACE_ID,
        columns::SPAN_ID,
        columns::PARENT_SPAN_ID,
        columns::START_TIME,
        columns::END_TIME,
        columns::DURATION_NS,
    ] {
        let path = ColumnPath::from(name);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), options.dictionary_for_unique_columns);
        let is_time = matches!(
            name,
            columns::START_TIME | columns::END_TIME | columns::DURATION_NS
        );
        if is_time && options.delta_encode_times && !options.dictionary_for_unique_columns {
            builder = builder.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        }
    }
    if let Some(fpp) = options.bloom_filter_fpp {
        let path = ColumnPath::from(columns::TRACE_ID);
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), fpp)
            .set_column_bloom_filter_max_ndv(path, distinct_traces.max(1) as u64);
    }
    Ok(builder.build())
}

/// Sorts and encodes one partition's batches. CPU-bound: call off the async runtime.
pub fn encode_partition(batches: &[RecordBatch], options: &ParquetOptions) -> Result<EncodedFile> {
    let schema = spans_schema();
    let batch = concat_batches(&schema, batches)?;
    let trace_idx = schema.index_of(columns::TRACE_ID)?;
    let start_idx = schema.index_of(columns::START_TIME)?;
    let end_idx = schema.index_of(columns::END_TIME)?;
    let key = |idx: usize| SortColumn {
        values: batch.column(idx).clone(),
        options: None,
    };
    let keys = match options.sort_order {
        SortOrder::TraceId => [key(trace_idx), key(start_idx)],
        SortOrder::StartTime => [key(start_idx), key(trace_idx)],
    };
    let indices = lexsort_to_indices(&keys, None)?;
    let sorted = take_record_batch(&batch, &indices)?;

    let trace_ids = sorted.column(trace_idx).as_string::<i32>();
    let mut distinct: HashSet<[u8; 16]> = HashSet::new();
    let mut id = [0u8; 16];
    for i in 0..trace_ids.len() {
        if trace_ids.is_valid(i) && hex::decode_to_slice(trace_ids.value(i), &mut id).is_ok() {
            distinct.insert(id);
        }
    }
    let mut trace_filter = TraceIdFilter::with_capacity(distinct.len());
    for id in &distinct {
        trace_filter.insert(id);
    }

    let starts = sorted
        .column(start_idx)
        .as_primitive::<TimestampNanosecondType>();
    let ends = sorted
        .column(end_idx)
        .as_primitive::<TimestampNanosecondType>();
    let (min_start_ns, max_start_ns) = min_max(starts.values());
    let (min_end_ns, max_end_ns) = min_max(ends.values());

    let props = writer_properties(options, distinct.len())?;
    let mut bytes = Vec::with_capacity(batch.get_array_memory_size() / 8);
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(props))?;
    writer.write(&sorted)?;
    writer.close()?;
    if sorted.num_rows() == 0 {
        return Err(StorageError::InvalidBatch("nothing to flush".into()));
    }
    Ok(EncodedFile {
        bytes,
        rows: sorted.num_rows() as u64,
        min_start_ns,
        max_start_ns,
        min_end_ns,
        max_end_ns,
        trace_filter,
    })
}

fn min_max(values: &[i64]) -> (i64, i64) {
    values
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}
