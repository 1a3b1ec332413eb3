//! Turning a partition's buffered batches into one Parquet file.
//!
//! By default rows stay in arrival order: the spans of one request (so of one
//! trace and service) are already adjacent and time is nearly ascending, and
//! sorting measured no smaller (`benches/RESULTS.md`) while costing a copy of
//! every batch. The ids and times are nearly unique, so they skip the dictionary;
//! times are delta-encoded; zstd level 1 measured both smaller and faster than 3.
//! Each row group carries a bloom filter on `trace_id`, and each file a
//! [`TraceIdFilter`] kept in the catalog.

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

fn writer_properties(options: &ParquetOptions, distinct_traces: usize) -> Result<WriterProperties> {
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
        SortOrder::Arrival => vec![],
        SortOrder::TraceId => vec![sorting(trace_idx), sorting(start_idx)],
        SortOrder::StartTime => vec![sorting(start_idx), sorting(trace_idx)],
    };
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns((!sorting_columns.is_empty()).then_some(sorting_columns))
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
    let trace_idx = schema.index_of(columns::TRACE_ID)?;
    let start_idx = schema.index_of(columns::START_TIME)?;
    let end_idx = schema.index_of(columns::END_TIME)?;
    // Arrival order writes the batches as they are; the other orders gather the
    // rows once, into one sorted batch.
    let sorted: Vec<RecordBatch> = match options.sort_order {
        SortOrder::Arrival => batches.to_vec(),
        order => {
            let batch = concat_batches(&schema, batches)?;
            let key = |idx: usize| SortColumn {
                values: batch.column(idx).clone(),
                options: None,
            };
            let keys = match order {
                SortOrder::StartTime => [key(start_idx), key(trace_idx)],
                _ => [key(trace_idx), key(start_idx)],
            };
            let indices = lexsort_to_indices(&keys, None)?;
            vec![take_record_batch(&batch, &indices)?]
        }
    };

    let mut distinct: HashSet<[u8; 16]> = HashSet::new();
    let mut id = [0u8; 16];
    let (mut min_start_ns, mut max_start_ns) = (i64::MAX, i64::MIN);
    let (mut min_end_ns, mut max_end_ns) = (i64::MAX, i64::MIN);
    let mut rows = 0usize;
    for batch in &sorted {
        rows += batch.num_rows();
        let trace_ids = batch.column(trace_idx).as_string::<i32>();
        for i in 0..trace_ids.len() {
            if trace_ids.is_valid(i) && hex::decode_to_slice(trace_ids.value(i), &mut id).is_ok() {
                distinct.insert(id);
            }
        }
        let (lo, hi) = min_max(
            batch
                .column(start_idx)
                .as_primitive::<TimestampNanosecondType>()
                .values(),
        );
        (min_start_ns, max_start_ns) = (min_start_ns.min(lo), max_start_ns.max(hi));
        let (lo, hi) = min_max(
            batch
                .column(end_idx)
                .as_primitive::<TimestampNanosecondType>()
                .values(),
        );
        (min_end_ns, max_end_ns) = (min_end_ns.min(lo), max_end_ns.max(hi));
    }
    if rows == 0 {
        return Err(StorageError::InvalidBatch("nothing to flush".into()));
    }
    let mut trace_filter = TraceIdFilter::with_capacity(distinct.len());
    for id in &distinct {
        trace_filter.insert(id);
    }

    let props = writer_properties(options, distinct.len())?;
    let mut bytes = Vec::with_capacity(rows * 64);
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(props))?;
    for batch in &sorted {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(EncodedFile {
        bytes,
        rows: rows as u64,
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
