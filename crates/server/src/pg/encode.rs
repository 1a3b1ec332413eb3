//! Arrow results as Postgres rows, and Postgres parameters as DataFusion
//! values. The type mapping is in the [module docs](super).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Schema, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::common::ScalarValue;
use lighttrace_query::QueryOutput;
use lighttrace_query::encode::nested_as_json_text;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

use super::user_error;

/// The Postgres type of a result column of `data_type`.
pub(crate) fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 | DataType::Decimal32(..) | DataType::Decimal64(..) => Type::FLOAT8,
        DataType::Decimal128(..) | DataType::Decimal256(..) => Type::FLOAT8,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Dictionary(_, value) => pg_type(value),
        nested if nested.is_nested() => Type::JSON,
        _ => Type::TEXT,
    }
}

/// The Arrow type a parameter of Postgres type `pg` is decoded as.
fn arrow_type(pg: &Type) -> Option<DataType> {
    Some(match *pg {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 | Type::OID => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 | Type::NUMERIC => DataType::Float64,
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Nanosecond, None),
        Type::DATE => DataType::Date32,
        Type::BYTEA => DataType::Binary,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
            DataType::Utf8
        }
        _ => return None,
    })
}

/// The format of column `idx` (text when the client named fewer formats).
fn format_of(formats: &Format, idx: usize) -> FieldFormat {
    match formats {
        Format::Individual(codes) if idx >= codes.len() => FieldFormat::Text,
        _ => formats.format_for(idx),
    }
}

/// The row description of `schema`, each column in the client's format.
pub(crate) fn fields(schema: &Schema, formats: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            FieldInfo::new(
                field.name().clone(),
                None,
                None,
                pg_type(field.data_type()),
                format_of(formats, i),
            )
        })
        .collect()
}

/// Every row of `output`, encoded as `fields` say.
pub(crate) fn encode_rows(
    output: &QueryOutput,
    fields: &Arc<Vec<FieldInfo>>,
) -> PgWireResult<Vec<DataRow>> {
    let mut rows = Vec::with_capacity(output.num_rows());
    let mut encoder = DataRowEncoder::new(Arc::clone(fields));
    for batch in &output.batches {
        let batch = nested_as_json_text(batch).map_err(internal)?;
        let columns = batch
            .columns()
            .iter()
            .map(plain_column)
            .collect::<PgWireResult<Vec<_>>>()?;
        let formatters = columns
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        for row in 0..batch.num_rows() {
            for (column, formatter) in columns.iter().zip(&formatters) {
                encode_cell(&mut encoder, column.as_ref(), formatter, row)?;
            }
            rows.push(encoder.take_row());
        }
    }
    Ok(rows)
}

/// `column` with dictionaries unpacked and string and binary views as plain
/// arrays, so that [`encode_cell`] has fewer types to know.
fn plain_column(column: &ArrayRef) -> PgWireResult<ArrayRef> {
    let target = match column.data_type() {
        DataType::Dictionary(_, value) => Some(value.as_ref().clone()),
        DataType::LargeUtf8 | DataType::Utf8View => Some(DataType::Utf8),
        DataType::LargeBinary | DataType::BinaryView => Some(DataType::Binary),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Some(DataType::Float64),
        _ => None,
    };
    match target {
        Some(target) => {
            let column = cast(column, &target).map_err(internal)?;
            plain_column(&column)
        }
        None => Ok(Arc::clone(column)),
    }
}

fn encode_cell(
    encoder: &mut DataRowEncoder,
    column: &dyn Array,
    formatter: &ArrayFormatter,
    row: usize,
) -> PgWireResult<()> {
    macro_rules! primitive {
        ($arrow:ty, $rust:ty) => {{
            let values = column.as_primitive::<$arrow>();
            let value = values.is_valid(row).then(|| values.value(row) as $rust);
            encoder.encode_field(&value)
        }};
    }
    let valid = column.is_valid(row);
    match column.data_type() {
        DataType::Null => encoder.encode_field(&None::<String>),
        DataType::Boolean => {
            let values = column.as_boolean();
            encoder.encode_field(&valid.then(|| values.value(row)))
        }
        DataType::Int8 => primitive!(Int8Type, i16),
        DataType::Int16 => primitive!(Int16Type, i16),
        DataType::UInt8 => primitive!(UInt8Type, i16),
        DataType::Int32 => primitive!(Int32Type, i32),
        DataType::UInt16 => primitive!(UInt16Type, i32),
        DataType::Int64 => primitive!(Int64Type, i64),
        DataType::UInt32 => primitive!(UInt32Type, i64),
        DataType::UInt64 => {
            let values = column.as_primitive::<UInt64Type>();
            let value = match valid {
                true => Some(i64::try_from(values.value(row)).map_err(|_| {
                    user_error(
                        "22003",
                        format!("{} does not fit in an int8", values.value(row)),
                    )
                })?),
                false => None,
            };
            encoder.encode_field(&value)
        }
        DataType::Float16 => {
            let values = column.as_primitive::<Float16Type>();
            encoder.encode_field(&valid.then(|| values.value(row).to_f32()))
        }
        DataType::Float32 => primitive!(Float32Type, f32),
        DataType::Float64 => primitive!(Float64Type, f64),
        DataType::Utf8 => {
            let values = column.as_string::<i32>();
            encoder.encode_field(&valid.then(|| values.value(row)))
        }
        DataType::Binary => {
            let values = column.as_binary::<i32>();
            encoder.encode_field(&valid.then(|| values.value(row)))
        }
        DataType::FixedSizeBinary(_) => {
            let values = column.as_fixed_size_binary();
            encoder.encode_field(&valid.then(|| values.value(row)))
        }
        DataType::Timestamp(_, tz) => {
            let nanos = timestamp_nanos(column, row)?;
            match tz {
                Some(_) => encoder.encode_field(&nanos.map(DateTime::<Utc>::from_timestamp_nanos)),
                None => encoder.encode_field(
                    &nanos.map(|n| DateTime::<Utc>::from_timestamp_nanos(n).naive_utc()),
                ),
            }
        }
        DataType::Date32 => {
            let values = column.as_primitive::<Date32Type>();
            let date = match valid {
                true => Some(date_from_days(values.value(row))?),
                false => None,
            };
            encoder.encode_field(&date)
        }
        DataType::Date64 => {
            let days = cast(&column.slice(row, 1), &DataType::Date32).map_err(internal)?;
            let days = days.as_primitive::<Date32Type>();
            let date = match days.is_valid(0) {
                true => Some(date_from_days(days.value(0))?),
                false => None,
            };
            encoder.encode_field(&date)
        }
        // Everything else (intervals, durations, times …) is text, as Arrow
        // displays it; nested types arrive here as JSON text already.
        _ => {
            let text = valid.then(|| formatter.value(row).to_string());
            encoder.encode_field(&text)
        }
    }
}

fn timestamp_nanos(column: &dyn Array, row: usize) -> PgWireResult<Option<i64>> {
    if column.is_null(row) {
        return Ok(None);
    }
    let DataType::Timestamp(unit, _) = column.data_type() else {
        return Ok(None);
    };
    let value = column
        .as_primitive_opt::<Int64Type>()
        .map(|v| v.value(row))
        .or_else(|| {
            let cast = cast(&column.slice(row, 1), &DataType::Int64).ok()?;
            Some(cast.as_primitive::<Int64Type>().value(0))
        })
        .unwrap_or_default();
    let nanos = match unit {
        TimeUnit::Second => value.checked_mul(1_000_000_000),
        TimeUnit::Millisecond => value.checked_mul(1_000_000),
        TimeUnit::Microsecond => value.checked_mul(1_000),
        TimeUnit::Nanosecond => Some(value),
    };
    nanos
        .map(Some)
        .ok_or_else(|| user_error("22008", "timestamp out of range"))
}

fn date_from_days(days: i32) -> PgWireResult<NaiveDate> {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(days.into())))
        .ok_or_else(|| user_error("22008", "date out of range"))
}

fn internal(err: impl std::fmt::Display) -> pgwire::error::PgWireError {
    super::query_error(lighttrace_query::QueryError::Internal(err.to_string()))
}

/// Parameter `idx` of `portal` as a value of `inferred` (the type the statement
/// gives it), else of the type the client declared, else as text.
///
/// The wire value is read as the client's type (`text` when it sent none), then
/// cast to the inferred type: a text `'42'` for an `Int64` column becomes 42,
/// a psycopg `int2` becomes an `Int64`.
pub(crate) fn decode_param<S: Clone>(
    portal: &Portal<S>,
    idx: usize,
    inferred: Option<&DataType>,
) -> PgWireResult<ScalarValue> {
    let declared = portal
        .statement
        .parameter_types
        .get(idx)
        .cloned()
        .flatten()
        .filter(|t| *t != Type::UNKNOWN && t.oid() != 0);
    let binary = portal.parameter_format.is_binary(idx);
    let wire_type = match (&declared, inferred) {
        (Some(declared), _) => declared.clone(),
        // A binary value must be read as some type: the one the statement
        // infers.
        (None, Some(inferred)) if binary => pg_type(inferred),
        (None, _) => Type::TEXT,
    };
    let bad = |what: String| user_error("22P02", format!("parameter ${}: {what}", idx + 1));
    let value = match wire_type {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(idx, &wire_type)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(idx, &wire_type)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(idx, &wire_type)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(idx, &wire_type)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(idx, &wire_type)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(idx, &wire_type)?),
        Type::TIMESTAMPTZ => {
            let value = portal.parameter::<DateTime<chrono::FixedOffset>>(idx, &wire_type)?;
            let nanos = value
                .map(|v| {
                    v.timestamp_nanos_opt()
                        .ok_or_else(|| bad("timestamp out of range".into()))
                })
                .transpose()?;
            ScalarValue::TimestampNanosecond(nanos, Some("UTC".into()))
        }
        Type::TIMESTAMP => {
            let value = portal.parameter::<NaiveDateTime>(idx, &wire_type)?;
            let nanos = value
                .map(|v| {
                    v.and_utc()
                        .timestamp_nanos_opt()
                        .ok_or_else(|| bad("timestamp out of range".into()))
                })
                .transpose()?;
            ScalarValue::TimestampNanosecond(nanos, None)
        }
        Type::DATE => {
            let value = portal.parameter::<NaiveDate>(idx, &wire_type)?;
            ScalarValue::Date32(value.map(|d| {
                (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
            }))
        }
        Type::BYTEA => ScalarValue::Binary(portal.parameter::<Vec<u8>>(idx, &wire_type)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON => {
            ScalarValue::Utf8(portal.parameter::<String>(idx, &Type::TEXT)?)
        }
        other if !binary => {
            // A type we do not decode ourselves, sent as text: its text, cast
            // below like an untyped literal.
            let text = portal.parameter::<String>(idx, &Type::TEXT)?;
            if arrow_type(&other).is_none() && inferred.is_none() {
                return Err(bad(format!(
                    "parameters of type {} are not supported; send it as text",
                    other.name()
                )));
            }
            ScalarValue::Utf8(text)
        }
        other => {
            return Err(bad(format!(
                "binary parameters of type {} are not supported; send it as text",
                other.name()
            )));
        }
    };
    match inferred {
        Some(target) if *target != value.data_type() && *target != DataType::Null => {
            value.cast_to(target).map_err(|e| {
                bad(format!(
                    "cannot be read as {target}: {}",
                    e.strip_backtrace()
                ))
            })
        }
        _ => Ok(value),
    }
}

/// A one-column text result of `rows`, for `SHOW`.
pub(crate) fn text_rows(
    column: &str,
    rows: &[String],
) -> PgWireResult<(Arc<Vec<FieldInfo>>, Vec<DataRow>)> {
    let schema = Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
        column,
        DataType::Utf8,
        true,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(arrow::array::StringArray::from_iter_values(rows))],
    )
    .map_err(internal)?;
    let fields = Arc::new(fields(&schema, &Format::UnifiedText));
    let output = QueryOutput {
        schema,
        batches: vec![batch],
    };
    let rows = encode_rows(&output, &fields)?;
    Ok((fields, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        Int64Array, MapBuilder, StringArray, StringBuilder, TimestampNanosecondArray,
    };
    use arrow::datatypes::Field;

    #[test]
    fn types_map_as_documented() {
        assert_eq!(pg_type(&DataType::Utf8), Type::TEXT);
        assert_eq!(pg_type(&DataType::Int64), Type::INT8);
        assert_eq!(pg_type(&DataType::Float64), Type::FLOAT8);
        assert_eq!(pg_type(&DataType::Boolean), Type::BOOL);
        assert_eq!(
            pg_type(&DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("UTC".into())
            )),
            Type::TIMESTAMPTZ
        );
        let map = lighttrace_model::spans_schema();
        assert_eq!(
            pg_type(map.field_with_name("attributes").unwrap().data_type()),
            Type::JSON
        );
        assert_eq!(
            pg_type(map.field_with_name("events").unwrap().data_type()),
            Type::JSON
        );
    }

    #[test]
    fn rows_encode_in_text() {
        let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        map.keys().append_value("http.route");
        map.values().append_value("/cart");
        map.append(true).unwrap();
        map.append(false).unwrap();
        let map = map.finish();
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
            Field::new("attributes", map.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("GET /"), None])),
                Arc::new(Int64Array::from(vec![Some(42), Some(-1)])),
                Arc::new(
                    TimestampNanosecondArray::from(vec![Some(1_700_000_000_123_456_789), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(map),
            ],
        )
        .unwrap();
        let output = QueryOutput {
            schema: Arc::clone(&schema),
            batches: vec![batch],
        };
        let fields = Arc::new(fields(&schema, &Format::UnifiedText));
        assert_eq!(fields[3].datatype(), &Type::JSON);
        let rows = encode_rows(&output, &fields).unwrap();
        assert_eq!(rows.len(), 2);
        let text = String::from_utf8_lossy(&rows[0].data);
        assert!(text.contains("GET /"), "{text}");
        assert!(text.contains("42"), "{text}");
        assert!(text.contains("2023-11-14 22:13:20.123456+00"), "{text}");
        assert!(text.contains(r#"{"http.route":"/cart"}"#), "{text}");
    }
}
