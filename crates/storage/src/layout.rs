//! The physical layout of span files: how a `spans` batch is stored in Parquet.
//!
//! The `spans` table shows ids as lowercase hex text and has both `end_time` and
//! `duration_ns` (DESIGN.md). Stored that way, the ids cost their hex digits and
//! `end_time` repeats what `start_time + duration_ns` already says. Files are
//! therefore written in a compact layout (`benches/RESULTS.md` has the bytes):
//!
//! | table column | in the file |
//! |---|---|
//! | `trace_id` (32 hex chars) | `FixedSizeBinary(16)`, the id's bytes |
//! | `span_id`, `parent_span_id` (16 hex chars) | `FixedSizeBinary(8)` |
//! | `end_time` | absent: `start_time + duration_ns` |
//!
//! Lowercase hex sorts like the bytes it spells, so min/max statistics, page
//! indexes and bloom filters on the binary columns answer the same questions a
//! hex column would, given the literal converted to bytes. The query engine maps
//! file columns back to table columns per file (its expression adapter), so
//! files of either layout, old and new, read as the same table; [`to_table_batch`]
//! does the same for readers outside DataFusion. A partition whose ids are not
//! all lowercase hex of the right length (possible only for batches written
//! directly, not through a receiver) keeps that column as text, so nothing is
//! ever lost in the conversion.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimestampNanosecondType};
use lighttrace_model::{columns, spans_schema};

use crate::config::ParquetOptions;
use crate::error::{Result, StorageError};

/// Parquet key-value metadata naming the layout a file was written in.
pub const LAYOUT_METADATA_KEY: &str = "lighttrace.layout";

/// The id columns and their width in bytes.
pub const ID_COLUMNS: [(&str, i32); 3] = [
    (columns::TRACE_ID, 16),
    (columns::SPAN_ID, 8),
    (columns::PARENT_SPAN_ID, 8),
];

/// The batch to write for a `spans` batch under `options`: ids as bytes where
/// every value converts, `end_time` left out when `options` says so.
pub fn to_file_batch(batch: &RecordBatch, options: &ParquetOptions) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut arrays = Vec::with_capacity(schema.fields().len());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name().as_str();
        if name == columns::END_TIME && options.derive_end_time {
            continue;
        }
        let width = ID_COLUMNS
            .iter()
            .find(|(id, _)| *id == name)
            .map(|(_, width)| *width);
        let converted = match (width, array.as_string_opt::<i32>()) {
            (Some(width), Some(text)) if options.binary_ids => hex_to_binary(text, width),
            _ => None,
        };
        match converted {
            Some(binary) => {
                fields.push(Arc::new(
                    Field::new(name, binary.data_type().clone(), field.is_nullable())
                        .with_metadata(field.metadata().clone()),
                ));
                arrays.push(Arc::new(binary) as ArrayRef);
            }
            None => {
                fields.push(Arc::clone(field));
                arrays.push(Arc::clone(array));
            }
        }
    }
    let file_schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    Ok(RecordBatch::try_new(Arc::new(file_schema), arrays)?)
}

/// A batch read from a span file of any layout, as a batch of the `spans` table.
pub fn to_table_batch(batch: &RecordBatch) -> Result<RecordBatch> {
    let table = spans_schema();
    let mut arrays = Vec::with_capacity(table.fields().len());
    for field in table.fields() {
        let name = field.name().as_str();
        let array = match batch.column_by_name(name) {
            Some(array) => match array.data_type() {
                DataType::FixedSizeBinary(_) => {
                    Arc::new(binary_to_hex(array.as_fixed_size_binary())) as ArrayRef
                }
                _ => Arc::clone(array),
            },
            None if name == columns::END_TIME => derived_end_time(batch)?,
            None => {
                return Err(StorageError::InvalidBatch(format!(
                    "span file has no column {name:?}"
                )));
            }
        };
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(table, arrays)?)
}

/// The schema of files written under `options` when every id converts, without
/// field metadata.
pub(crate) fn file_schema(options: &ParquetOptions) -> SchemaRef {
    let fields: Vec<Field> = spans_schema()
        .fields()
        .iter()
        .filter(|f| !(options.derive_end_time && f.name() == columns::END_TIME))
        .map(|f| match ID_COLUMNS.iter().find(|(id, _)| id == f.name()) {
            Some((_, width)) if options.binary_ids => {
                Field::new(f.name(), DataType::FixedSizeBinary(*width), f.is_nullable())
            }
            _ => Field::new(f.name(), f.data_type().clone(), f.is_nullable()),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn derived_end_time(batch: &RecordBatch) -> Result<ArrayRef> {
    let missing =
        |name: &str| StorageError::InvalidBatch(format!("span file has no column {name:?}"));
    let start = batch
        .column_by_name(columns::START_TIME)
        .ok_or_else(|| missing(columns::START_TIME))?
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| StorageError::InvalidBatch("start_time is not a timestamp".into()))?;
    let duration = batch
        .column_by_name(columns::DURATION_NS)
        .ok_or_else(|| missing(columns::DURATION_NS))?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| StorageError::InvalidBatch("duration_ns is not Int64".into()))?;
    let values: Vec<i64> = start
        .values()
        .iter()
        .zip(duration.values().iter())
        .map(|(s, d)| s.wrapping_add(*d))
        .collect();
    let nulls = NullBuffer::union(start.nulls(), duration.nulls());
    let end = TimestampNanosecondArray::new(values.into(), nulls)
        .with_timezone_opt(start.timezone().map(Arc::<str>::from));
    Ok(Arc::new(end))
}

/// Lowercase hex of `width` bytes, to those bytes; `None` if any value is not.
fn hex_to_binary(text: &StringArray, width: i32) -> Option<FixedSizeBinaryArray> {
    let width_bytes = usize::try_from(width).ok()?;
    let mut bytes = vec![0u8; text.len() * width_bytes];
    for (i, out) in bytes.chunks_exact_mut(width_bytes).enumerate() {
        if text.is_null(i) {
            continue;
        }
        decode_lower_hex(text.value(i).as_bytes(), out)?;
    }
    FixedSizeBinaryArray::try_new(width, Buffer::from(bytes), text.nulls().cloned()).ok()
}

/// `hex` decoded into `out` if it is exactly `out.len()` bytes in lowercase hex,
/// the one spelling ids are stored in; `None` for anything else.
pub fn decode_lower_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    /// Value of each lowercase hex digit; 0xff for every other byte.
    const NIBBLE: [u8; 256] = {
        let mut table = [0xffu8; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            table[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        table
    };
    if hex.len() != out.len() * 2 {
        return None;
    }
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, low) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
        // Checked once per id: 0xff has the high bit set, a digit never does.
        invalid |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    (invalid & 0x80 == 0).then_some(())
}

/// Lowercase hex text of each value.
pub fn binary_to_hex(binary: &FixedSizeBinaryArray) -> StringArray {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let width = usize::try_from(binary.value_length()).unwrap_or(0);
    let mut text = Vec::with_capacity(binary.len() * width * 2);
    let mut offsets = Vec::with_capacity(binary.len() + 1);
    offsets.push(0i32);
    for i in 0..binary.len() {
        if binary.is_valid(i) {
            for b in binary.value(i) {
                text.push(DIGITS[usize::from(b >> 4)]);
                text.push(DIGITS[usize::from(b & 0x0f)]);
            }
        }
        // Offsets stay far below i32::MAX: a batch of ids is at most a few MiB.
        offsets.push(i32::try_from(text.len()).unwrap_or(i32::MAX));
    }
    StringArray::new(
        OffsetBuffer::new(offsets.into()),
        Buffer::from(text),
        binary.nulls().cloned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn options(binary_ids: bool, derive_end_time: bool) -> ParquetOptions {
        ParquetOptions {
            binary_ids,
            derive_end_time,
            ..ParquetOptions::default()
        }
    }

    #[test]
    fn lowercase_hex_round_trips_through_bytes() {
        let text = StringArray::from(vec![
            Some("00ff10a0b0c0d0e1"),
            None,
            Some("0123456789abcdef"),
        ]);
        let binary = hex_to_binary(&text, 8).unwrap();
        assert_eq!(
            binary.value(0),
            [0x00, 0xff, 0x10, 0xa0, 0xb0, 0xc0, 0xd0, 0xe1]
        );
        assert!(binary.is_null(1));
        assert_eq!(binary_to_hex(&binary), text);
    }

    #[test]
    fn anything_but_lowercase_hex_of_the_width_stays_text() {
        for bad in [
            "00FF10A0B0C0D0E1",
            "00ff10a0b0c0d0e",
            "00ff10a0b0c0d0e1f",
            "00ff10a0b0c0d0eg",
            "",
        ] {
            let text = StringArray::from(vec![Some("0123456789abcdef"), Some(bad)]);
            assert!(hex_to_binary(&text, 8).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn end_time_is_start_plus_duration() {
        let start = TimestampNanosecondArray::from(vec![10, 1_000]).with_timezone("UTC");
        let duration = Int64Array::from(vec![5, 0]);
        let schema = Schema::new(vec![
            Field::new(columns::START_TIME, start.data_type().clone(), false),
            Field::new(columns::DURATION_NS, DataType::Int64, false),
        ]);
        let batch =
            RecordBatch::try_new(Arc::new(schema), vec![Arc::new(start), Arc::new(duration)])
                .unwrap();
        let end = derived_end_time(&batch).unwrap();
        let end = end.as_primitive::<TimestampNanosecondType>();
        assert_eq!(end.values().as_ref(), [15, 1_000]);
        assert_eq!(
            end.data_type(),
            spans_schema()
                .field_with_name(columns::END_TIME)
                .unwrap()
                .data_type()
        );
    }

    #[test]
    fn file_columns_per_options() {
        let mut builder = lighttrace_model::SpanBatchBuilder::new();
        builder.append(&lighttrace_model::SpanRecord {
            project: "p",
            trace_id: [7; 16],
            span_id: [8; 8],
            parent_span_id: None,
            trace_state: None,
            service_name: "s",
            name: "n",
            kind: lighttrace_model::SpanKind::Server,
            start_time_ns: 100,
            end_time_ns: 150,
            status_code: lighttrace_model::StatusCode::Unset,
            status_message: None,
            attributes: &[],
            resource_attributes: &[],
            scope_name: None,
            scope_version: None,
            events: &[],
            links: &[],
            source: lighttrace_model::Source::Otlp,
        });
        let table = builder.finish();
        let compact = to_file_batch(&table, &options(true, true)).unwrap();
        assert!(compact.column_by_name(columns::END_TIME).is_none());
        assert_eq!(
            compact
                .column_by_name(columns::TRACE_ID)
                .unwrap()
                .data_type(),
            &DataType::FixedSizeBinary(16)
        );
        assert_eq!(
            compact
                .column_by_name(columns::PARENT_SPAN_ID)
                .unwrap()
                .data_type(),
            &DataType::FixedSizeBinary(8)
        );
        let round_trip = to_table_batch(&compact).unwrap();
        assert_eq!(round_trip.columns(), table.columns());
        let fields = |schema: &Schema| -> Vec<(String, DataType)> {
            schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        assert_eq!(
            fields(&compact.schema()),
            fields(&file_schema(&options(true, true)))
        );
        let plain = to_file_batch(&table, &options(false, false)).unwrap();
        assert_eq!(plain.schema().fields(), table.schema().fields());
    }
}
