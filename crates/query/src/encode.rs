//! Query results as bytes: Arrow IPC streams and JSON.
//!
//! The SQL API and the `lighttrace sql` command share these, so that a result
//! looks the same whichever way it was fetched. JSON values follow one set of
//! rules: timestamps as RFC 3339 strings with nanoseconds (`…T12:00:00.000000000Z`
//! for UTC), maps and structs as objects, lists as arrays, nulls and non-finite
//! floats as `null`, 64-bit integers as numbers. A type arrow-json cannot encode
//! (unions, for example) is shown as arrow's display string.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::writer::{Encoder, EncoderFactory, EncoderOptions, NullableEncoder, make_encoder};
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM_CONTENT_TYPE: &str = "application/vnd.apache.arrow.stream";

/// `strftime` format of UTC timestamps: RFC 3339, always nine fractional digits.
pub const UTC_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.9fZ";
/// `strftime` format of timestamps in another time zone: RFC 3339 with the offset.
pub const TZ_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.9f%:z";
/// `strftime` format of timestamps without a time zone (there is no offset to show).
pub const NAIVE_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.9f";

/// An Arrow IPC stream: the schema, then every batch.
pub fn ipc_stream(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    writer.into_inner()
}

/// The SQL API's shape: `{"columns": [{"name", "type"}], "rows": [[…]]}`, where
/// `type` is the Arrow `DataType` as arrow displays it.
pub fn json_rows(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"columns\":[");
    for (i, field) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let column = serde_json::json!({
            "name": field.name(),
            "type": field.data_type().to_string(),
        });
        serde_json::to_writer(&mut out, &column)
            .map_err(|e| ArrowError::JsonError(e.to_string()))?;
    }
    out.extend_from_slice(b"],\"rows\":[");
    write_rows(batches, &mut out, RowShape::Array)?;
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// One JSON array of objects, one object per row: `[{"name": "GET /", …}, …]`.
pub fn json_objects(batches: &[RecordBatch]) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::with_capacity(1024);
    out.push(b'[');
    write_rows(batches, &mut out, RowShape::Object)?;
    out.push(b']');
    Ok(out)
}

/// `batch` with every nested column (lists, maps, structs) replaced by a `Utf8`
/// column of its JSON text, for formats such as CSV that only hold scalars.
pub fn nested_as_json_text(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let options = encoder_options();
    let schema = batch.schema();
    let mut fields: Vec<FieldRef> = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !field.data_type().is_nested() {
            fields.push(field.clone());
            columns.push(column.clone());
            continue;
        }
        let mut encoder = CellEncoder::new(field, column.as_ref(), &options)?;
        let mut text = StringBuilder::with_capacity(column.len(), column.len() * 16);
        let mut cell = Vec::new();
        for row in 0..column.len() {
            if column.is_null(row) {
                text.append_null();
                continue;
            }
            cell.clear();
            encoder.encode(row, &mut cell);
            text.append_value(String::from_utf8_lossy(&cell));
        }
        fields.push(Arc::new(Field::new(field.name(), DataType::Utf8, true)));
        columns.push(Arc::new(text.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

fn encoder_options() -> EncoderOptions {
    EncoderOptions::default()
        .with_explicit_nulls(true)
        .with_encoder_factory(Arc::new(Rfc3339UtcFactory))
        .with_timestamp_tz_format(TZ_TIMESTAMP_FORMAT.to_owned())
        .with_timestamp_format(NAIVE_TIMESTAMP_FORMAT.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowShape {
    /// `[value, …]`
    Array,
    /// `{"column": value, …}`
    Object,
}

/// Appends the rows of `batches`, comma-separated, in the given shape.
fn write_rows(
    batches: &[RecordBatch],
    out: &mut Vec<u8>,
    shape: RowShape,
) -> Result<(), ArrowError> {
    let options = encoder_options();
    let mut first_row = true;
    for batch in batches {
        let schema = batch.schema();
        let mut encoders = Vec::with_capacity(batch.num_columns());
        let mut keys = Vec::with_capacity(batch.num_columns());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            encoders.push(CellEncoder::new(field, column.as_ref(), &options)?);
            let mut key = serde_json::to_vec(field.name())
                .map_err(|e| ArrowError::JsonError(e.to_string()))?;
            key.push(b':');
            keys.push(key);
        }
        let (open, close) = match shape {
            RowShape::Array => (b'[', b']'),
            RowShape::Object => (b'{', b'}'),
        };
        for row in 0..batch.num_rows() {
            if !first_row {
                out.push(b',');
            }
            first_row = false;
            out.push(open);
            for (i, encoder) in encoders.iter_mut().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if shape == RowShape::Object {
                    out.extend_from_slice(&keys[i]);
                }
                encoder.encode(row, out);
            }
            out.push(close);
        }
    }
    Ok(())
}

/// One column's cells as JSON values.
enum CellEncoder<'a> {
    Json(NullableEncoder<'a>),
    /// For types arrow-json cannot encode: arrow's display string.
    Display(&'a dyn Array, ArrayFormatter<'a>),
}

impl<'a> CellEncoder<'a> {
    fn new(
        field: &'a FieldRef,
        array: &'a dyn Array,
        options: &'a EncoderOptions,
    ) -> Result<Self, ArrowError> {
        match make_encoder(field, array, options) {
            Ok(encoder) => Ok(CellEncoder::Json(encoder)),
            Err(_) => {
                let formatter = ArrayFormatter::try_new(array, &FormatOptions::new())?;
                Ok(CellEncoder::Display(array, formatter))
            }
        }
    }

    fn encode(&mut self, row: usize, out: &mut Vec<u8>) {
        match self {
            CellEncoder::Json(encoder) if encoder.is_null(row) => out.extend_from_slice(b"null"),
            CellEncoder::Json(encoder) => encoder.encode(row, out),
            CellEncoder::Display(array, _) if array.is_null(row) => out.extend_from_slice(b"null"),
            CellEncoder::Display(_, formatter) => {
                let text = formatter.value(row).to_string();
                // Serializing a `str` into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &text);
            }
        }
    }
}

/// Encodes UTC timestamps (the `spans` table's time columns, also inside
/// `events`) as `2024-05-01T12:00:00.123456789Z`.
#[derive(Debug)]
struct Rfc3339UtcFactory;

impl EncoderFactory for Rfc3339UtcFactory {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        let DataType::Timestamp(_, Some(tz)) = array.data_type() else {
            return Ok(None);
        };
        if !is_utc(tz) {
            return Ok(None);
        }
        let options = FormatOptions::new()
            .with_display_error(true)
            .with_timestamp_tz_format(Some(UTC_TIMESTAMP_FORMAT));
        let formatter = ArrayFormatter::try_new(array, &options)?;
        Ok(Some(NullableEncoder::new(
            Box::new(QuotedFormatter(formatter)),
            array.logical_nulls(),
        )))
    }
}

/// Whether a time zone name means UTC.
pub fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "utc" | "Z" | "+00:00" | "Etc/UTC")
}

/// A formatter whose output never needs JSON escaping, written as a JSON string.
struct QuotedFormatter<'a>(ArrayFormatter<'a>);

impl Encoder for QuotedFormatter<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        out.push(b'"');
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}", self.0.value(idx));
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        AsArray, Float64Array, Int64Array, ListBuilder, MapBuilder, StringArray,
        TimestampNanosecondArray,
    };
    use serde_json::{Value, json};

    fn sample() -> RecordBatch {
        let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        map.keys().append_value("http.route");
        map.values().append_value("/cart");
        map.append(true).unwrap();
        map.append(false).unwrap();
        let mut list = ListBuilder::new(StringBuilder::new());
        list.values().append_value("a");
        list.values().append_null();
        list.append(true);
        list.append(true);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("x"), None])),
            Arc::new(
                TimestampNanosecondArray::from(vec![1_700_000_000_123_456_789, 5])
                    .with_timezone("UTC"),
            ),
            Arc::new(TimestampNanosecondArray::from(vec![Some(0), None])),
            Arc::new(Int64Array::from(vec![1, -2])),
            Arc::new(Float64Array::from(vec![0.5, f64::NAN])),
            Arc::new(map.finish()),
            Arc::new(list.finish()),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn json_rows_have_rfc3339_nanos_maps_lists_and_nulls() {
        let batch = sample();
        let bytes = json_rows(&batch.schema(), &[batch.clone(), batch]).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["columns"][0], json!({"name": "c0", "type": "Utf8"}));
        assert_eq!(value["rows"].as_array().unwrap().len(), 4);
        assert_eq!(
            value["rows"][0],
            json!([
                "x",
                "2023-11-14T22:13:20.123456789Z",
                "1970-01-01T00:00:00.000000000",
                1,
                0.5,
                {"http.route": "/cart"},
                ["a", null]
            ])
        );
        assert_eq!(
            value["rows"][1],
            json!([
                null,
                "1970-01-01T00:00:00.000000005Z",
                null,
                -2,
                null,
                null,
                []
            ])
        );
    }

    #[test]
    fn json_objects_are_keyed_by_column() {
        let bytes = json_objects(&[sample()]).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value[0]["c0"], json!("x"));
        assert_eq!(value[1]["c5"], json!(null));
        assert_eq!(value.as_array().unwrap().len(), 2);
        assert_eq!(json_objects(&[]).unwrap(), b"[]");
    }

    #[test]
    fn an_empty_result_still_has_its_columns() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let bytes = json_rows(&schema, &[]).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            value,
            json!({"columns": [{"name": "n", "type": "Int64"}], "rows": []})
        );
    }

    #[test]
    fn nested_columns_become_json_text() {
        let batch = nested_as_json_text(&sample()).unwrap();
        assert_eq!(batch.schema().field(5).data_type(), &DataType::Utf8);
        let maps = batch.column(5).as_string::<i32>();
        assert_eq!(maps.value(0), r#"{"http.route":"/cart"}"#);
        assert!(maps.is_null(1));
        assert_eq!(batch.column(6).as_string::<i32>().value(0), r#"["a",null]"#);
        assert_eq!(batch.schema().field(1), sample().schema().field(1));
    }

    #[test]
    fn ipc_streams_round_trip() {
        let batch = sample();
        let bytes = ipc_stream(&batch.schema(), std::slice::from_ref(&batch)).unwrap();
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let read: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(read, vec![batch]);
    }
}
