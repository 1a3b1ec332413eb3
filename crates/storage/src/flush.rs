//! Turning a partition's buffered batches into one Parquet file.
//!
//! By default rows stay in arrival order: the spans of one request (so of one
//! trace and service) are already adjacent and time is nearly ascending, and
//! sorting measured no smaller (`benches/RESULTS.md`) while costing a copy of
//! every batch. The ids and times are nearly unique, so they skip the dictionary;
//! times are delta-encoded; zstd level 1 measured both smaller and faster than 3.
//! Each file has a [`TraceIdFilter`] kept in the catalog, which rules the file
//! out of a trace lookup before it is opened; a file of several row groups also
//! carries a bloom filter on `trace_id` per row group (in a file of one row
//! group it would repeat the catalog's answer at 0.7 B/span). Page statistics
//! (the page index) are kept for the id and time columns only. Columns are stored in the compact
//! layout of [`crate::layout`] (ids as bytes, no `end_time`).
//!
//! The `logs` and `errors` tables ([`encode_table_partition`]) are stored with
//! their table columns as they are, the same codec, statistics and trace-id
//! bloom filter; their volume is a fraction of the spans'.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Schema, TimestampNanosecondType};
use lighttrace_model::{columns, error_columns, spans_schema};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use xxhash_rust::xxh3::Xxh3Builder;

use crate::attribute_index::{AttributeIndex, AttributeIndexBuilder};
use crate::config::{ParquetOptions, SortOrder};
use crate::error::{Result, StorageError};
use crate::layout::{LAYOUT_METADATA_KEY, decode_lower_hex, file_schema, to_file_batch};
use crate::table::Table;
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
    /// The values of the span and resource attributes (`spans` files only).
    pub attribute_index: Option<AttributeIndex>,
}

fn writer_properties(
    options: &ParquetOptions,
    schema: &Schema,
    max_distinct_traces: usize,
) -> Result<WriterProperties> {
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
        // Not a sort by columns of the file: nothing to declare.
        SortOrder::TraceStart => vec![],
    };
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns((!sorting_columns.is_empty()).then_some(sorting_columns))
        .set_created_by(format!("lighttrace {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            LAYOUT_METADATA_KEY.to_string(),
            layout_name(schema),
        )]));
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
    // Leaves under the attribute maps, events and links: no query prunes by the
    // min/max of all attribute values, and computing them compares every value.
    //
    // Top-level columns other than the ids and times: row-group statistics
    // only. Rows are in arrival order, so their pages span nearly the whole
    // range of values and a page index on them would skip nothing.
    const PAGE_INDEXED: [&str; 6] = [
        columns::TRACE_ID,
        columns::SPAN_ID,
        columns::PARENT_SPAN_ID,
        columns::START_TIME,
        columns::END_TIME,
        columns::DURATION_NS,
    ];
    let parquet_schema = ArrowSchemaConverter::new().convert(schema)?;
    for leaf in parquet_schema.columns() {
        let parts = leaf.path().parts();
        if parts.len() > 1 && !options.nested_statistics {
            builder =
                builder.set_column_statistics_enabled(leaf.path().clone(), EnabledStatistics::None);
        } else if parts.len() == 1
            && !options.page_statistics_everywhere
            && !PAGE_INDEXED.contains(&parts[0].as_str())
        {
            builder = builder
                .set_column_statistics_enabled(leaf.path().clone(), EnabledStatistics::Chunk);
        }
    }
    let one_row_group = max_distinct_traces < options.row_group_rows;
    if let Some(fpp) = options.bloom_filter_fpp
        && (options.bloom_filter_single_row_group || !one_row_group)
    {
        let path = ColumnPath::from(columns::TRACE_ID);
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), fpp)
            .set_column_bloom_filter_max_ndv(path, max_distinct_traces.max(1) as u64);
    }
    Ok(builder.build())
}

/// Encodes one partition's batches of `table`. CPU-bound: call off the async runtime.
pub fn encode_table_partition(
    table: Table,
    batches: &[RecordBatch],
    options: &ParquetOptions,
) -> Result<EncodedFile> {
    match table {
        Table::Spans => encode_partition(batches, options),
        other => encode_plain(other, batches, options),
    }
}

/// A table other than `spans`: columns as they are, rows in arrival order.
fn encode_plain(
    table: Table,
    batches: &[RecordBatch],
    options: &ParquetOptions,
) -> Result<EncodedFile> {
    let schema = table.schema();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return Err(StorageError::InvalidBatch("nothing to flush".into()));
    }
    let time_idx = schema.index_of(table.time_column())?;
    let trace_idx = schema.index_of(columns::TRACE_ID)?;
    let level = ZstdLevel::try_new(options.zstd_level)?;
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(options.row_group_rows.max(1)))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("lighttrace {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            LAYOUT_METADATA_KEY.to_string(),
            format!("1: {} table columns", table.name()),
        )]));
    for name in [columns::TRACE_ID, columns::SPAN_ID, error_columns::EVENT_ID] {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(name), false);
    }
    builder = builder.set_column_encoding(
        ColumnPath::from(table.time_column()),
        Encoding::DELTA_BINARY_PACKED,
    );
    builder = builder.set_column_dictionary_enabled(ColumnPath::from(table.time_column()), false);
    let parquet_schema = ArrowSchemaConverter::new().convert(&schema)?;
    for leaf in parquet_schema.columns() {
        if leaf.path().parts().len() > 1 && !options.nested_statistics {
            builder =
                builder.set_column_statistics_enabled(leaf.path().clone(), EnabledStatistics::None);
        }
    }
    if let Some(fpp) = options.bloom_filter_fpp {
        let path = ColumnPath::from(columns::TRACE_ID);
        builder = builder
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), fpp)
            .set_column_bloom_filter_max_ndv(path, rows.min(options.row_group_rows).max(1) as u64);
    }
    let mut writer = ArrowWriter::try_new_with_options(
        Vec::new(),
        Arc::clone(&schema),
        writer_options(builder.build()),
    )?;
    let mut distinct = HashSet::new();
    let (mut min_ns, mut max_ns) = (i64::MAX, i64::MIN);
    let mut id = [0u8; 16];
    for batch in batches {
        let times = batch
            .column(time_idx)
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| {
                StorageError::InvalidBatch(format!("{} is not a timestamp", table.time_column()))
            })?;
        let (lo, hi) = min_max(times.values());
        (min_ns, max_ns) = (min_ns.min(lo), max_ns.max(hi));
        if let Some(text) = batch.column(trace_idx).as_string_opt::<i32>() {
            for value in text.iter().flatten() {
                if decode_lower_hex(value.as_bytes(), &mut id).is_some() {
                    distinct.insert(id);
                }
            }
        }
        // The table schema without the buffers' field metadata.
        writer.write(&RecordBatch::try_new(
            Arc::clone(&schema),
            batch.columns().to_vec(),
        )?)?;
    }
    let bytes = writer.into_inner()?;
    let mut trace_filter = TraceIdFilter::with_capacity(distinct.len());
    for id in &distinct {
        trace_filter.insert(id);
    }
    Ok(EncodedFile {
        bytes,
        rows: rows as u64,
        min_start_ns: min_ns,
        max_start_ns: max_ns,
        min_end_ns: min_ns,
        max_end_ns: max_ns,
        trace_filter,
        attribute_index: None,
    })
}

/// Sorts and encodes one partition's batches. CPU-bound: call off the async runtime.
pub fn encode_partition(batches: &[RecordBatch], options: &ParquetOptions) -> Result<EncodedFile> {
    if let Some(file) = encode_with(batches, options)? {
        return Ok(file);
    }
    // An id column held something other than hex ids (only possible for
    // batches written directly): the whole file keeps ids as text.
    let text_ids = ParquetOptions {
        binary_ids: false,
        ..options.clone()
    };
    encode_with(batches, &text_ids)?.ok_or_else(|| {
        StorageError::InvalidBatch("span batch does not convert to the file layout".into())
    })
}

/// Per row, the earliest `start_time` of the row's trace in `batch`.
fn trace_first_start(
    batch: &RecordBatch,
    trace_idx: usize,
    start_idx: usize,
) -> arrow::array::Int64Array {
    let traces = batch.column(trace_idx).as_string::<i32>();
    let starts = batch
        .column(start_idx)
        .as_primitive::<TimestampNanosecondType>()
        .values();
    let mut first: std::collections::HashMap<&str, i64> =
        std::collections::HashMap::with_capacity(batch.num_rows() / 2);
    for (trace, &start) in traces.iter().zip(starts.iter()) {
        let entry = first.entry(trace.unwrap_or_default()).or_insert(start);
        *entry = (*entry).min(start);
    }
    traces
        .iter()
        .map(|trace| first[trace.unwrap_or_default()])
        .collect::<Vec<i64>>()
        .into()
}

/// The writer's options: `properties`, and no embedded Arrow schema. The
/// Parquet schema alone reads back as the same Arrow types (a test checks), and
/// the embedded copy (~3.7 KB, base64 IPC) was 0.2 B/span on files of 18k spans.
fn writer_options(properties: WriterProperties) -> ArrowWriterOptions {
    ArrowWriterOptions::new()
        .with_properties(properties)
        .with_skip_arrow_metadata(true)
}

/// Rows per call into the Parquet writer when writing in arrival order
/// (`benches/RESULTS.md`: ~10 % less ingest CPU than one call per buffered batch).
const WRITE_CHUNK_ROWS: usize = 8192;

/// `batches` split into runs of consecutive batches of at least `rows` rows
/// each (the last may have fewer).
fn chunk_by_rows(batches: &[RecordBatch], rows: usize) -> Vec<&[RecordBatch]> {
    let mut chunks = Vec::new();
    let (mut start, mut in_chunk) = (0, 0);
    for (i, batch) in batches.iter().enumerate() {
        in_chunk += batch.num_rows();
        if in_chunk >= rows {
            chunks.push(&batches[start..=i]);
            (start, in_chunk) = (i + 1, 0);
        }
    }
    if start < batches.len() {
        chunks.push(&batches[start..]);
    }
    chunks
}

/// `None` when a batch does not convert to the layout `options` ask for.
fn encode_with(batches: &[RecordBatch], options: &ParquetOptions) -> Result<Option<EncodedFile>> {
    let schema = spans_schema();
    let trace_idx = schema.index_of(columns::TRACE_ID)?;
    let start_idx = schema.index_of(columns::START_TIME)?;
    let end_idx = schema.index_of(columns::END_TIME)?;
    let attributes_idx = schema.index_of(columns::ATTRIBUTES)?;
    let resource_idx = schema.index_of(columns::RESOURCE_ATTRIBUTES)?;
    // Arrival order writes the batches in order, coalesced into chunks of
    // `WRITE_CHUNK_ROWS`; the other orders gather the rows once, into one sorted batch.
    let sorted: Vec<RecordBatch> = match options.sort_order {
        SortOrder::Arrival => Vec::new(),
        order => {
            let batch = concat_batches(&schema, batches)?;
            let key = |idx: usize| SortColumn {
                values: batch.column(idx).clone(),
                options: None,
            };
            let indices = match order {
                SortOrder::StartTime => {
                    lexsort_to_indices(&[key(start_idx), key(trace_idx)], None)?
                }
                SortOrder::TraceStart => {
                    let first_start = trace_first_start(&batch, trace_idx, start_idx);
                    let keys = [
                        SortColumn {
                            values: Arc::new(first_start),
                            options: None,
                        },
                        key(trace_idx),
                        key(start_idx),
                    ];
                    lexsort_to_indices(&keys, None)?
                }
                _ => lexsort_to_indices(&[key(trace_idx), key(start_idx)], None)?,
            };
            vec![take_record_batch(&batch, &indices)?]
        }
    };
    let chunks: Vec<&[RecordBatch]> = if sorted.is_empty() {
        chunk_by_rows(batches, WRITE_CHUNK_ROWS)
    } else {
        vec![&sorted]
    };
    let rows: usize = chunks
        .iter()
        .flat_map(|c| c.iter())
        .map(RecordBatch::num_rows)
        .sum();
    if rows == 0 {
        return Err(StorageError::InvalidBatch("nothing to flush".into()));
    }

    let file_schema = file_schema(options);
    // The bloom filters are sized for a row group of distinct traces and folded
    // down to the target false-positive rate once written.
    let props = writer_properties(options, &file_schema, rows.min(options.row_group_rows))?;
    let mut writer = ArrowWriter::try_new_with_options(
        Vec::with_capacity(rows * 40),
        Arc::clone(&file_schema),
        writer_options(props),
    )?;
    // Seeded per call: trace ids come from clients, which must not be able to
    // pick colliding ones. The spans of one request are adjacent, so most
    // repeats are of the id just seen and never reach the set.
    let seed =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
    let mut distinct: HashSet<[u8; 16], Xxh3Builder> =
        HashSet::with_hasher(Xxh3Builder::new().with_seed(seed));
    let mut last: Option<[u8; 16]> = None;
    let (mut min_start_ns, mut max_start_ns) = (i64::MAX, i64::MIN);
    let (mut min_end_ns, mut max_end_ns) = (i64::MAX, i64::MIN);
    let mut attribute_index = AttributeIndexBuilder::default();

    for chunk in chunks {
        // Buffered batches are small (one per request and partition): each call
        // into the Parquet writer costs per leaf column (levels, property
        // lookups, page checks), so they are concatenated first, a chunk at a
        // time to bound the copy's memory.
        let batch = &match chunk {
            [one] => one.clone(),
            many => concat_batches(&schema, many)?,
        };
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
        attribute_index.span.add(batch.column(attributes_idx));
        attribute_index.resource.add(batch.column(resource_idx));

        let converted = to_file_batch(batch, options)?;
        let same_types = converted
            .schema()
            .fields()
            .iter()
            .zip(file_schema.fields())
            .all(|(a, b)| a.data_type() == b.data_type());
        if !same_types {
            return Ok(None);
        }
        let trace_ids = converted.column_by_name(columns::TRACE_ID);
        if let Some(binary) = trace_ids.and_then(|c| c.as_fixed_size_binary_opt()) {
            for value in binary.iter().flatten() {
                if let Ok(id) = <[u8; 16]>::try_from(value)
                    && last != Some(id)
                {
                    distinct.insert(id);
                    last = Some(id);
                }
            }
        } else if let Some(text) = trace_ids.and_then(|c| c.as_string_opt::<i32>()) {
            let mut id = [0u8; 16];
            for value in text.iter().flatten() {
                if decode_lower_hex(value.as_bytes(), &mut id).is_some() {
                    distinct.insert(id);
                }
            }
        }
        // The file schema without the buffers' field metadata.
        let converted =
            RecordBatch::try_new(Arc::clone(&file_schema), converted.columns().to_vec())?;
        writer.write(&converted)?;
    }
    let bytes = writer.into_inner()?;

    let mut trace_filter = TraceIdFilter::with_capacity(distinct.len());
    for id in &distinct {
        trace_filter.insert(id);
    }
    Ok(Some(EncodedFile {
        bytes,
        rows: rows as u64,
        min_start_ns,
        max_start_ns,
        min_end_ns,
        max_end_ns,
        trace_filter,
        attribute_index: Some(attribute_index.finish()),
    }))
}

/// The layout recorded in a file's metadata: which table columns are stored differently.
fn layout_name(schema: &Schema) -> String {
    let binary_ids = schema
        .field_with_name(columns::SPAN_ID)
        .is_ok_and(|f| matches!(f.data_type(), DataType::FixedSizeBinary(_)));
    let derived_end = schema.field_with_name(columns::END_TIME).is_err();
    match (binary_ids, derived_end) {
        (true, true) => "2: binary ids, end_time derived",
        (true, false) => "2: binary ids",
        (false, true) => "2: end_time derived",
        (false, false) => "1: table columns",
    }
    .to_string()
}

fn min_max(values: &[i64]) -> (i64, i64) {
    values
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use lighttrace_model::{
        Attr, AttrType, EventRecord, LinkRecord, SpanBatchBuilder, SpanKind, SpanRecord, StatusCode,
    };
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::layout::to_table_batch;

    /// `n` spans, ids from `first`, two spans per trace, an attribute each.
    fn spans(first: u64, n: u64) -> RecordBatch {
        let mut builder = SpanBatchBuilder::new();
        for id in first..first + n {
            let route = format!("/r{}", id % 7);
            let attrs = [
                Attr::string("http.route", &route),
                Attr {
                    key: "http.response.status_code".into(),
                    value: "200".into(),
                    ty: AttrType::Int,
                },
            ];
            let resource = [Attr::string("host.name", "h1")];
            // Every fifth span has an event and a link, so those columns hold
            // values and nulls both.
            let events = [EventRecord {
                time_ns: 1_700_000_000_000_000_100 + id as i64,
                name: "retry".into(),
                attributes: vec![Attr::string("attempt", "2")],
            }];
            let links = [LinkRecord {
                trace_id: [9; 16],
                span_id: [3; 8],
                trace_state: Some("k=v".into()),
                attributes: vec![],
            }];
            let some = id % 5 == 0;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(id / 2 + 1).to_be_bytes());
            let start = 1_700_000_000_000_000_000 + id as i64 * 1_000;
            builder.append(&SpanRecord {
                project: "p",
                trace_id,
                span_id: (id + 1).to_be_bytes(),
                parent_span_id: (id % 2 == 1).then(|| id.to_be_bytes()),
                trace_state: None,
                service_name: "s",
                name: "op",
                kind: SpanKind::Server,
                start_time_ns: start,
                end_time_ns: start + 500 + id as i64 % 13,
                status_code: if some {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                status_message: some.then_some("boom"),
                attributes: &attrs,
                resource_attributes: &resource,
                scope_name: Some("scope"),
                scope_version: None,
                events: if some { &events } else { &[] },
                links: if some { &links } else { &[] },
                source: lighttrace_model::Source::Otlp,
            });
        }
        builder.finish()
    }

    fn rows(batches: &[&[RecordBatch]]) -> Vec<usize> {
        batches
            .iter()
            .map(|c| c.iter().map(RecordBatch::num_rows).sum())
            .collect()
    }

    #[test]
    fn chunks_hold_at_least_the_rows_asked_for_in_order() {
        let batches: Vec<RecordBatch> = (0..10).map(|i| spans(i * 3, 3)).collect();
        assert_eq!(rows(&chunk_by_rows(&batches, 7)), [9, 9, 9, 3]);
        assert_eq!(rows(&chunk_by_rows(&batches, 3)), [3; 10]);
        assert_eq!(rows(&chunk_by_rows(&batches, 100)), [30]);
        assert!(chunk_by_rows(&[], 7).is_empty());
    }

    #[test]
    fn many_small_batches_are_written_whole_and_in_order() {
        // Over two writer chunks, as a flush of one request slice at a time holds.
        let batches: Vec<RecordBatch> = (0..300).map(|i| spans(i * 37, 37)).collect();
        let file = encode_partition(&batches, &ParquetOptions::default()).unwrap();
        assert_eq!(file.rows, 300 * 37);
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file.bytes))
            .unwrap()
            .build()
            .unwrap();
        // Read without the Arrow schema (not embedded): the Parquet schema
        // alone gives the file schema's types back.
        let file_types: Vec<_> = file_schema(&ParquetOptions::default())
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect();
        let read_types: Vec<_> = arrow::array::RecordBatchReader::schema(&reader)
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect();
        assert_eq!(read_types, file_types);
        let read: Vec<RecordBatch> = reader
            .map(|b| to_table_batch(&b.unwrap()).unwrap())
            .collect();
        let read = concat_batches(&read[0].schema(), &read).unwrap();
        let written = concat_batches(&spans_schema(), &batches).unwrap();
        assert_eq!(read.columns(), written.columns());
        assert_eq!(file.min_start_ns, 1_700_000_000_000_000_000);
        assert_eq!(
            file.max_start_ns,
            1_700_000_000_000_000_000 + (300 * 37 - 1) * 1_000
        );
        for trace in [1u64, 2_000, 300 * 37 / 2] {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&trace.to_be_bytes());
            assert!(file.trace_filter.may_contain(&id), "trace {trace}");
        }
    }
}
